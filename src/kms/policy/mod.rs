//! IAM-style policies: parsing with AWS-style error positions, and evaluation. Key
//! policies of KMS keys (`Policy::parse`, evaluated with the KMS's `RequestFacts`) and,
//! with the same engine, identity policies of another service (`Policy::parse_as` with
//! `PolicyKind::Identity`, evaluated with `Policy::decide` against any `ConditionKeys`,
//! e.g. a `ConditionMap` of the request's condition keys): nothing but `RequestFacts`
//! knows KMS.
//!
//! Invariants: a `Policy` value only exists if its document parsed and validated (every
//! condition operator is one sealgate evaluates), so evaluation never fails; evaluation
//! is pure (no I/O, no clock: the time is a condition key like any other) and
//! allocation-free unless a statement has conditions. Explicit Deny beats Allow; no
//! matching statement means "no decision" (the caller then consults grants, and denies
//! if none applies).
//!
//! Principal model (sealgate has no IAM policies for KMS): `arn:aws:iam::ACCOUNT:root`
//! (or the bare account id) in a key policy stands for *every* principal of that
//! account, as it does on AWS when the account's IAM policies allow the call;
//! `arn:aws:iam::A:user/N` names one user; `"*"` / `{"AWS":"*"}` is everyone. See
//! docs/kms.md.
//!
//! Files: this one holds the policy model and its evaluation; `parse.rs` turns a
//! statement's JSON into that model; `condition.rs` the Condition element.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::EncryptionContext;
use crate::auth::Principal;

mod condition;
mod parse;
mod variables;

use condition::Condition;
pub use condition::{ConditionKeys, ConditionMap, parse_date};
use variables::{Text, Variables};

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

#[derive(Debug, Clone)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    principals: Vec<PrincipalPat>,
    actions: Vec<String>,
    not_action: bool,
    resources: Vec<Text>,
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
    /// `aws:SecureTransport`: whether the request came over TLS (None: no transport).
    pub secure_transport: Option<bool>,
    /// `aws:CurrentTime` / `aws:EpochTime`, in ms (the KMS's clock).
    pub now_ms: Option<i64>,
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
            secure_transport: None,
            now_ms: None,
            tags: None,
            grant: None,
            bypass_lockout: None,
        }
    }
}

impl<'a> ConditionKeys for RequestFacts<'a> {
    /// The values of a condition key in this request; `None` when the key is absent.
    /// Key names are case-insensitive; the part after `kms:EncryptionContext:` and
    /// `aws:ResourceTag/` is matched exactly.
    fn values(&self, key: &str) -> Option<Vec<Cow<'_, str>>> {
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
            "aws:securetransport" => self
                .secure_transport
                .map(|t| vec![Cow::Borrowed(if t { "true" } else { "false" })]),
            "aws:currenttime" => self
                .now_ms
                .map(|ms| vec![Cow::Owned(crate::kms::audit::format_time(ms))]),
            "aws:epochtime" => self
                .now_ms
                .map(|ms| vec![Cow::Owned(ms.div_euclid(1000).to_string())]),
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

/// What kind of policy a document is, which decides what its statements may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A KMS key policy (a resource policy): every statement names a `Principal`, actions
    /// are `kms:...`.
    KeyPolicy,
    /// An identity policy attached to a principal: no `Principal` element, actions are
    /// `<service>:...` (e.g. `s3`), resources are ARNs.
    Identity { service: &'static str },
}

/// A request as an identity policy sees it: who, what, on which resource, and the
/// condition keys (see `ConditionKeys`, `ConditionMap`).
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    /// `s3:GetObject`, `kms:Decrypt`, ...
    pub action: &'a str,
    /// The resource ARN.
    pub resource: &'a str,
    pub keys: &'a dyn ConditionKeys,
}

impl Policy {
    /// Parses and validates a key policy document. Errors name the offending place,
    /// e.g. `Statement[2].Effect: expected Allow or Deny`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        Self::parse_as(text, PolicyKind::KeyPolicy)
    }

    /// Parses and validates a policy document of `kind`.
    pub fn parse_as(text: &str, kind: PolicyKind) -> Result<Policy, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let obj = doc.as_object().ok_or("the policy must be a JSON object")?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(format!("{k}: unknown policy element"));
            }
        }
        let version = match obj.get("Version") {
            None => None,
            Some(v) => match v.as_str() {
                Some(v @ ("2012-10-17" | "2008-10-17")) => Some(v),
                _ => return Err("Version: expected \"2012-10-17\" or \"2008-10-17\"".into()),
            },
        };
        let variables = match (kind, version) {
            (PolicyKind::KeyPolicy, _) => Variables::Literal,
            (PolicyKind::Identity { .. }, Some("2012-10-17")) => Variables::Substituted,
            (PolicyKind::Identity { .. }, _) => Variables::Refused,
        };
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
                parse::parse_statement(s, kind, variables)
                    .map_err(|e| format!("Statement[{i}].{e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// A key policy's decision on a KMS request.
    pub fn evaluate(&self, f: &RequestFacts<'_>) -> Decision {
        self.decide(&Request {
            principal: f.principal,
            action: f.action,
            resource: f.resource,
            keys: f,
        })
    }

    /// Explicit Deny wins over any Allow; otherwise the first matching Allow decides.
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        let mut allow = None;
        for (i, s) in self.statements.iter().enumerate() {
            if !s.matches(r) {
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

    /// The policy variables the policy uses, as (statement index, name), e.g.
    /// `(0, "aws:username")`, so a caller can refuse those it does not supply or whose
    /// values it does not control.
    pub fn variables(&self) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        for (i, s) in self.statements.iter().enumerate() {
            let names = s.resources.iter().flat_map(Text::variables);
            out.extend(names.map(|n| (i, n)));
            let names = s.conditions.iter().flat_map(Condition::variables);
            out.extend(names.map(|n| (i, n)));
        }
        out
    }

    /// Every condition of the policy as (statement index, operator as written, condition
    /// key as written), e.g. `(1, "ForAnyValue:StringLike", "s3:prefix")`, so a caller can
    /// refuse keys it does not supply.
    pub fn condition_keys(&self) -> Vec<(usize, &str, &str)> {
        let mut out = Vec::new();
        for (i, s) in self.statements.iter().enumerate() {
            out.extend(s.conditions.iter().map(|c| (i, c.operator(), c.key())));
        }
        out
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
    fn matches(&self, f: &Request<'_>) -> bool {
        // Identity policies have no Principal element: they apply to their principal.
        let p = self.principals.is_empty()
            || self
                .principals
                .iter()
                .any(|p| principal_matches(p, f.principal));
        let a = self
            .actions
            .iter()
            .any(|a| glob(a.as_bytes(), f.action.as_bytes(), true));
        // A resource whose variable has no value in this request matches nothing.
        let r = self.resources.iter().any(|r| {
            r.render(f.keys)
                .is_some_and(|r| glob(r.as_bytes(), f.resource.as_bytes(), false))
        });
        p && (a != self.not_action)
            && (r != self.not_resource)
            && self.conditions.iter().all(|c| c.holds(f.keys))
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

    /// The engine without KMS: an S3 identity policy decided on a map of condition keys.
    #[test]
    fn identity_policies_of_another_service_use_the_same_engine() {
        let doc = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::photos/*",
             "Condition":{"Bool":{"aws:SecureTransport":"true"}}},
            {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::photos",
             "Condition":{"StringLike":{"s3:prefix":"2026/*"}}},
            {"Effect":"Deny","Action":"s3:*","Resource":"*",
             "Condition":{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}}}]}"#;
        let kind = PolicyKind::Identity { service: "s3" };
        let p = Policy::parse_as(doc, kind).unwrap();
        let who = Principal {
            name: "bob".into(),
            account: "000000000000".into(),
            is_root: false,
        };
        let tls = ConditionMap::new()
            .with("aws:SecureTransport", "true")
            .with("aws:SourceIp", "192.0.2.9");
        let req = |action, resource, keys: &ConditionMap| {
            p.decide(&Request {
                principal: &who,
                action,
                resource,
                keys,
            })
        };
        assert!(matches!(
            req("s3:GetObject", "arn:aws:s3:::photos/a.jpg", &tls),
            Decision::Allow(0)
        ));
        let plain = tls.clone().with("aws:SecureTransport", "false");
        assert_eq!(
            req("s3:GetObject", "arn:aws:s3:::photos/a.jpg", &plain),
            Decision::NoMatch
        );
        let listing = tls.clone().with("s3:prefix", "2026/06/");
        assert!(matches!(
            req("s3:ListBucket", "arn:aws:s3:::photos", &listing),
            Decision::Allow(1)
        ));
        let elsewhere = tls.with("aws:SourceIp", "198.51.100.1");
        assert_eq!(
            req("s3:GetObject", "arn:aws:s3:::photos/a.jpg", &elsewhere),
            Decision::Deny(2)
        );
        // Identity policies name no Principal and act on their own service only.
        let with_principal =
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#;
        assert!(Policy::parse_as(with_principal, kind).is_err());
        let kms_action =
            r#"{"Statement":{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}}"#;
        assert!(Policy::parse_as(kms_action, kind).is_err());
    }

    /// Policy variables: substituted per request in identity policies of Version
    /// 2012-10-17, refused in older ones, plain text in key policies.
    #[test]
    fn identity_policies_substitute_policy_variables() {
        let doc = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::home/${aws:username}/*"},
            {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::home",
             "Condition":{"StringLike":{"s3:prefix":"${aws:username}/*"}}}]}"#;
        let kind = PolicyKind::Identity { service: "s3" };
        let p = Policy::parse_as(doc, kind).unwrap();
        assert_eq!(p.variables(), [(0, "aws:username"), (1, "aws:username")]);
        assert_eq!(p.condition_keys(), [(1, "StringLike", "s3:prefix")]);
        let who = Principal {
            name: "bob".into(),
            account: "000000000000".into(),
            is_root: false,
        };
        let bob = ConditionMap::new().with("aws:username", "bob");
        let decide = |action, resource, keys: &ConditionMap| {
            p.decide(&Request {
                principal: &who,
                action,
                resource,
                keys,
            })
        };
        let own = "arn:aws:s3:::home/bob/a";
        assert_eq!(decide("s3:GetObject", own, &bob), Decision::Allow(0));
        let other = "arn:aws:s3:::home/alice/a";
        assert_eq!(decide("s3:GetObject", other, &bob), Decision::NoMatch);
        let listing = bob.clone().with("s3:prefix", "bob/x/");
        assert_eq!(
            decide("s3:ListBucket", "arn:aws:s3:::home", &listing),
            Decision::Allow(1)
        );
        let snooping = bob.clone().with("s3:prefix", "alice/");
        assert_eq!(
            decide("s3:ListBucket", "arn:aws:s3:::home", &snooping),
            Decision::NoMatch
        );
        // No value for the variable: the element matches nothing.
        assert_eq!(
            decide(
                "s3:GetObject",
                "arn:aws:s3:::home/${aws:username}/a",
                &ConditionMap::new()
            ),
            Decision::NoMatch
        );
        // IAM would match `${...}` literally without Version 2012-10-17: refused.
        let old = doc.replace("2012-10-17", "2008-10-17");
        let e = Policy::parse_as(&old, kind).unwrap_err();
        assert!(e.starts_with("Statement[0].Resource[0]: "), "{e}");
        // Identity policies name ARNs.
        let not_arn = r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"b/*"}}"#;
        let e = Policy::parse_as(not_arn, kind).unwrap_err();
        assert!(e.contains("'b/*' is not an ARN"), "{e}");
        // Key policies keep `${` as text (their matching is unchanged).
        let key_policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"${x}"}}"#;
        let kp = Policy::parse(key_policy).unwrap();
        assert!(kp.variables().is_empty());
        let f = RequestFacts::new(&who, "kms:Decrypt", "${x}");
        assert_eq!(kp.evaluate(&f), Decision::Allow(0));
    }

    #[test]
    fn default_and_service_policies_parse() {
        Policy::parse(&default_policy_text("000000000000")).unwrap();
        Policy::parse(&service_policy_text("000000000000", "s3", "us-east-1")).unwrap();
    }
}
