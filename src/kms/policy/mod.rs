//! Key policies: parsing with AWS-style error positions, and IAM-style evaluation.
//!
//! Invariants: a `Policy` value only exists if its document parsed and validated, so
//! evaluation never fails; evaluation is pure (no I/O, no clock) and allocation-free
//! unless a statement has conditions. Explicit Deny beats Allow; no matching statement
//! means "no decision" (the caller then consults grants, and denies if none applies).
//!
//! Principal model (sealgate has no IAM policies): `arn:aws:iam::ACCOUNT:root` (or the
//! bare account id) in a key policy stands for *every* principal of that account, as it
//! does on AWS when the account's IAM policies allow the call; `arn:aws:iam::A:user/N`
//! names one user; `"*"` / `{"AWS":"*"}` is everyone. See docs/kms.md.
//!
//! Files: this one holds the policy model and its evaluation; `parse.rs` turns a
//! statement's JSON into that model.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::EncryptionContext;
use crate::auth::Principal;

mod parse;

/// The default key policy AWS gives a key created without one: the account has full
/// access (which, without IAM, lets every principal of the account use the key).
pub fn default_policy_text(account: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    )
}

/// The fixed policy of a service-managed key (`alias/aws/<service>`), as AWS writes it:
/// principals of the account may use the key only through the service, and may read
/// its metadata directly. Nobody may change it.
pub fn service_policy_text(account: &str, service: &str, region: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Id":"auto-{service}-2","Statement":[{{"Sid":"Allow access through {service} for all principals in the account that are authorized to use {service}","Effect":"Allow","Principal":{{"AWS":"*"}},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*","Condition":{{"StringEquals":{{"kms:CallerAccount":"{account}","kms:ViaService":"{service}.{region}.amazonaws.com"}}}}}},{{"Sid":"Allow direct access to key metadata to the account","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":["kms:Describe*","kms:Get*","kms:List*"],"Resource":"*"}}]}}"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One principal pattern from `Principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalPat {
    Anyone,
    /// `arn:aws:iam::A:root` or `A`: every principal of account A.
    Account(String),
    /// `arn:aws:iam::A:user/N`.
    User {
        account: String,
        name: String,
    },
    /// Anything else that is well-formed (roles, services): never matches a sealgate
    /// principal, but is accepted as AWS accepts it.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Bool,
    Null,
    IpAddress,
    NotIpAddress,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "StringEquals" => Op::StringEquals,
            "StringNotEquals" => Op::StringNotEquals,
            "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
            "StringLike" => Op::StringLike,
            "StringNotLike" => Op::StringNotLike,
            "ArnEquals" => Op::ArnEquals,
            "ArnNotEquals" => Op::ArnNotEquals,
            "ArnLike" => Op::ArnLike,
            "ArnNotLike" => Op::ArnNotLike,
            "Bool" => Op::Bool,
            "Null" => Op::Null,
            "IpAddress" => Op::IpAddress,
            "NotIpAddress" => Op::NotIpAddress,
            _ => return None,
        })
    }

    fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::ArnNotEquals
                | Op::ArnNotLike
                | Op::NotIpAddress
        )
    }

    /// Does one request value match one policy value (the positive form)?
    fn matches_one(self, value: &str, pat: &CondValue) -> bool {
        match (self, pat) {
            (Op::StringEquals | Op::StringNotEquals | Op::ArnEquals | Op::ArnNotEquals, _) => {
                value == pat.text
            }
            (Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase, _) => {
                value.eq_ignore_ascii_case(&pat.text)
            }
            (Op::StringLike | Op::StringNotLike | Op::ArnLike | Op::ArnNotLike, _) => {
                glob(pat.text.as_bytes(), value.as_bytes(), false)
            }
            (Op::Bool, _) => value.eq_ignore_ascii_case(&pat.text),
            (Op::IpAddress | Op::NotIpAddress, _) => match (value.parse::<IpAddr>(), pat.cidr) {
                (Ok(ip), Some(c)) => c.contains(ip),
                _ => false,
            },
            (Op::Null, _) => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone)]
struct CondValue {
    text: String,
    cidr: Option<Cidr>,
}

#[derive(Debug, Clone)]
struct Condition {
    op: Op,
    qualifier: Qualifier,
    if_exists: bool,
    key: String,
    values: Vec<CondValue>,
}

#[derive(Debug, Clone)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    principals: Vec<PrincipalPat>,
    actions: Vec<String>,
    not_action: bool,
    resources: Vec<String>,
    not_resource: bool,
    conditions: Vec<Condition>,
}

/// A parsed, validated key policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// What the request is, as far as conditions can see. Values are computed on demand,
/// only when a statement has a condition on that key.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub principal: &'a Principal,
    /// `kms:Decrypt` etc.
    pub action: &'a str,
    /// The key ARN.
    pub resource: &'a str,
    pub encryption_context: Option<&'a EncryptionContext>,
    /// `kms:ViaService` (e.g. `s3.us-east-1.amazonaws.com`) when a service calls for the user.
    pub via_service: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    pub tags: Option<&'a BTreeMap<String, String>>,
    /// CreateGrant only: the grant being created.
    pub grant: Option<GrantFacts<'a>>,
    /// CreateKey / PutKeyPolicy only.
    pub bypass_lockout: Option<bool>,
}

/// The facts of a CreateGrant request that `kms:Grant*` condition keys expose.
#[derive(Debug, Clone, Copy)]
pub struct GrantFacts<'a> {
    pub operations: &'a [String],
    pub grantee: &'a str,
    pub retiring: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    pub fn new(principal: &'a Principal, action: &'a str, resource: &'a str) -> Self {
        RequestFacts {
            principal,
            action,
            resource,
            encryption_context: None,
            via_service: None,
            source_ip: None,
            tags: None,
            grant: None,
            bypass_lockout: None,
        }
    }

    /// The values of a condition key in this request; `None` when the key is absent.
    /// Key names are case-insensitive; the part after `kms:EncryptionContext:` and
    /// `aws:ResourceTag/` is matched exactly.
    fn values(&self, key: &str) -> Option<Vec<Cow<'a, str>>> {
        let lower = key.to_ascii_lowercase();
        let one = |s: Cow<'a, str>| Some(vec![s]);
        if lower.starts_with("kms:encryptioncontext:") {
            let k = &key["kms:EncryptionContext:".len()..];
            return self
                .encryption_context?
                .get(k)
                .map(|v| vec![Cow::Borrowed(v.as_str())]);
        }
        if lower.starts_with("aws:resourcetag/") {
            let k = &key["aws:ResourceTag/".len()..];
            return self.tags?.get(k).map(|v| vec![Cow::Borrowed(v.as_str())]);
        }
        match lower.as_str() {
            "kms:encryptioncontextkeys" => {
                let ctx = self.encryption_context?;
                Some(ctx.keys().map(|k| Cow::Borrowed(k.as_str())).collect())
            }
            "kms:calleraccount" | "aws:principalaccount" => {
                one(Cow::Borrowed(&self.principal.account))
            }
            "aws:principalarn" => one(Cow::Owned(self.principal.arn())),
            "aws:username" if !self.principal.is_root => one(Cow::Borrowed(&self.principal.name)),
            "kms:viaservice" => self.via_service.map(|s| vec![Cow::Borrowed(s)]),
            "aws:sourceip" => self.source_ip.map(|ip| vec![Cow::Owned(ip.to_string())]),
            "kms:grantoperations" => Some(
                self.grant?
                    .operations
                    .iter()
                    .map(|o| Cow::Borrowed(o.as_str()))
                    .collect(),
            ),
            "kms:granteeprincipal" => one(Cow::Borrowed(self.grant?.grantee)),
            "kms:retiringprincipal" => self.grant?.retiring.map(|r| vec![Cow::Borrowed(r)]),
            "kms:bypasspolicylockoutsafetycheck" => one(Cow::Borrowed(if self.bypass_lockout? {
                "true"
            } else {
                "false"
            })),
            _ => None,
        }
    }
}

/// The outcome of evaluating a policy: which statement decided, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Deny(usize),
    Allow(usize),
    NoMatch,
}

impl Policy {
    /// Parses and validates a policy document. Errors name the offending place,
    /// e.g. `Statement[2].Effect: expected Allow or Deny`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let obj = doc.as_object().ok_or("the policy must be a JSON object")?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(format!("{k}: unknown policy element"));
            }
        }
        if let Some(v) = obj.get("Version")
            && !matches!(v.as_str(), Some("2012-10-17" | "2008-10-17"))
        {
            return Err("Version: expected \"2012-10-17\" or \"2008-10-17\"".into());
        }
        let stmts = match obj.get("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a.iter().collect::<Vec<_>>(),
            Some(o @ Value::Object(_)) => vec![o],
            Some(_) => return Err("Statement: expected a statement or a non-empty list".into()),
            None => return Err("Statement: missing".into()),
        };
        let statements = stmts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if !s.is_object() {
                    return Err(format!("Statement[{i}]: expected a JSON object"));
                }
                parse::parse_statement(s).map_err(|e| format!("Statement[{i}].{e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// Explicit Deny wins over any Allow; otherwise the first matching Allow decides.
    pub fn evaluate(&self, f: &RequestFacts<'_>) -> Decision {
        let mut allow = None;
        for (i, s) in self.statements.iter().enumerate() {
            if !s.matches(f) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::Deny(i),
                Effect::Allow if allow.is_none() => allow = Some(i),
                Effect::Allow => {}
            }
        }
        allow.map_or(Decision::NoMatch, Decision::Allow)
    }

    /// The `Sid` of statement `i`, if it has one.
    pub fn sid(&self, i: usize) -> Option<&str> {
        self.statements.get(i).and_then(|s| s.sid.as_deref())
    }

    /// `Statement[i]` plus its Sid when present, for messages.
    pub fn describe_statement(&self, i: usize) -> String {
        match self.sid(i) {
            Some(sid) => format!("Statement[{i}] (Sid \"{sid}\")"),
            None => format!("Statement[{i}]"),
        }
    }
}

impl Statement {
    fn matches(&self, f: &RequestFacts<'_>) -> bool {
        let p = self
            .principals
            .iter()
            .any(|p| principal_matches(p, f.principal));
        let a = self
            .actions
            .iter()
            .any(|a| glob(a.as_bytes(), f.action.as_bytes(), true));
        let r = self
            .resources
            .iter()
            .any(|r| glob(r.as_bytes(), f.resource.as_bytes(), false));
        p && (a != self.not_action)
            && (r != self.not_resource)
            && self.conditions.iter().all(|c| c.holds(f))
    }
}

fn principal_matches(p: &PrincipalPat, who: &Principal) -> bool {
    match p {
        PrincipalPat::Anyone => true,
        PrincipalPat::Account(a) => who.account == *a,
        PrincipalPat::User { account, name } => {
            !who.is_root && who.account == *account && who.name == *name
        }
        PrincipalPat::Other => false,
    }
}

impl Condition {
    fn holds(&self, f: &RequestFacts<'_>) -> bool {
        let values = f.values(&self.key);
        if self.op == Op::Null {
            // Null: "true" means the key must be absent.
            let absent = values.as_ref().is_none_or(|v| v.is_empty());
            return self.values.iter().any(|c| {
                c.text
                    .eq_ignore_ascii_case(if absent { "true" } else { "false" })
            });
        }
        let Some(values) = values.filter(|v| !v.is_empty()) else {
            return match self.qualifier {
                // ForAllValues over an empty set is vacuously true.
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                // A missing key: positive operators fail, negated ones hold (IAM rule);
                // `...IfExists` makes every operator hold.
                Qualifier::None => self.if_exists || self.op.negated(),
            };
        };
        let positive = |v: &str| self.values.iter().any(|c| self.op.matches_one(v, c));
        // For a negated operator, one value "matches" when it matches none of the list.
        let one = |v: &str| positive(v) != self.op.negated();
        match self.qualifier {
            Qualifier::ForAnyValue => values.iter().any(|v| one(v)),
            Qualifier::ForAllValues => values.iter().all(|v| one(v)),
            Qualifier::None if self.op.negated() => !values.iter().any(|v| positive(v)),
            Qualifier::None => values.iter().any(|v| positive(v)),
        }
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(a.to_bits()), u128::from(b.to_bits()), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// Glob with `*` (any run) and `?` (one character), optionally ASCII case-insensitive.
pub fn glob(pat: &[u8], s: &[u8], ci: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if ci {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || (pat[p] != b'*' && eq(pat[p], s[i]))) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_handles_stars_questions_and_case() {
        assert!(glob(b"kms:*", b"kms:Decrypt", false));
        assert!(glob(b"KMS:generatedatakey*", b"kms:GenerateDataKey", true));
        assert!(!glob(
            b"KMS:generatedatakey*",
            b"kms:GenerateDataKey",
            false
        ));
        assert!(glob(b"a*b*c", b"axxbyyc", false));
        assert!(!glob(b"a*b*c", b"axxbyy", false));
        assert!(glob(b"?bc", b"abc", false));
        assert!(glob(b"*", b"", false));
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped_addresses() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn malformed_policies_name_the_offending_place() {
        let cases = [
            (r#"{"Statement":[]}"#, "Statement: expected"),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
                "Statement[2].Effect: expected Allow or Deny",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::000000000000:root","bob"]},"Action":"kms:*","Resource":"*"}}"#,
                "Statement[0].Principal.AWS[1]: invalid principal 'bob'",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":["kms:Decrypt","s3:GetObject"],"Resource":"*"}}"#,
                "Statement[0].Action[1]",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringSortOf":{"a":"b"}}}}"#,
                "Statement[0].Condition.StringSortOf: unsupported condition operator",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.300"}}}}"#,
                "Statement[0].Condition.IpAddress.aws:SourceIp[0]",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Resource":"*"}}"#,
                "Statement[0].Action: missing",
            ),
            (r#"{"Version":"2020-01-01","Statement":{}}"#, "Version"),
            ("not json", "not valid JSON"),
        ];
        for (doc, want) in cases {
            let err = Policy::parse(doc).unwrap_err();
            assert!(err.contains(want), "{doc}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn default_and_service_policies_parse() {
        Policy::parse(&default_policy_text("000000000000")).unwrap();
        Policy::parse(&service_policy_text("000000000000", "s3", "us-east-1")).unwrap();
    }
}
