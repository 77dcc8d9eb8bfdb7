//! Identity policies for S3, evaluated by the KMS policy engine (`crate::kms::policy`)
//! through its public API.
//!
//! The engine evaluates key policies: every statement names a `Principal`, actions are
//! `kms:*` names, and condition keys come from a fixed set of KMS facts. An S3 identity
//! policy has no `Principal`, `s3:*` actions and S3 condition keys, so each statement is
//! *compiled* into a one-statement key policy the engine accepts:
//!
//! - `"Principal": "*"` is added (an identity policy applies to the key it is attached to);
//! - an action `s3:NAME` becomes `kms:NAME` (the request's action is mapped the same way,
//!   so wildcards and case-insensitivity keep their meaning); only `s3:` actions and `*`
//!   are accepted;
//! - every condition key `K` becomes `kms:EncryptionContext:<k lowercased>`, and the
//!   request's condition values are handed to the engine as that "encryption context"
//!   ([`super::context`]), so String/Arn/Bool/Null/IpAddress operators, `...IfExists` and
//!   `ForAnyValue`/`ForAllValues` are the engine's own;
//! - Numeric and Date operators, which the engine lacks, are taken out of the statement
//!   and evaluated here ([`OwnCondition`]);
//! - policy variables (`${aws:username}`, ...) are substituted when the policy is
//!   compiled for a principal, in `Resource`/`NotResource` and in String/Arn condition
//!   values, as IAM does for `"Version": "2012-10-17"` policies.
//!
//! Invariants: a compiled [`IdentityPolicy`] exists only if every statement compiled, so
//! evaluation never fails; a condition key sealgate does not supply, a request-dependent
//! policy variable or a variable in a policy without `"Version": "2012-10-17"` is refused
//! when the configuration is loaded, never silently evaluated as absent or literal.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::context::{self, KeyKind};
use crate::auth::Principal;
use crate::kms::policy::{Decision, Policy, RequestFacts};

/// The prefix that carries an S3 condition key through the KMS engine.
const CARRIER: &str = "kms:EncryptionContext:";

/// What one policy decides about one (action, resource) in a request context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A statement denies: nothing else matters.
    Deny,
    /// A statement allows and none denies.
    Allow,
    /// No statement applies.
    NoMatch,
}

/// A Numeric or Date condition, evaluated here (the engine has neither).
#[derive(Debug, Clone)]
struct OwnCondition {
    op: NumOp,
    date: bool,
    if_exists: bool,
    /// Lowercased condition key.
    key: String,
    /// Numbers, or dates as epoch milliseconds.
    values: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Equals,
    NotEquals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl NumOp {
    fn parse(s: &str) -> Option<NumOp> {
        Some(match s {
            "Equals" => NumOp::Equals,
            "NotEquals" => NumOp::NotEquals,
            "LessThan" => NumOp::LessThan,
            "LessThanEquals" => NumOp::LessThanEquals,
            "GreaterThan" => NumOp::GreaterThan,
            "GreaterThanEquals" => NumOp::GreaterThanEquals,
            _ => return None,
        })
    }

    fn holds(self, request: f64, policy: f64) -> bool {
        match self {
            NumOp::Equals | NumOp::NotEquals => request == policy,
            NumOp::LessThan => request < policy,
            NumOp::LessThanEquals => request <= policy,
            NumOp::GreaterThan => request > policy,
            NumOp::GreaterThanEquals => request >= policy,
        }
    }
}

impl OwnCondition {
    fn holds(&self, ctx: &BTreeMap<String, String>) -> bool {
        let value = ctx.get(&self.key).and_then(|v| {
            if self.date {
                parse_date_ms(v)
            } else {
                v.trim().parse::<f64>().ok()
            }
        });
        let negated = self.op == NumOp::NotEquals;
        match value {
            // Absent (or not a number/date): positive operators fail, the negated one
            // holds, `...IfExists` always holds (IAM's rule for missing keys).
            None => self.if_exists || negated,
            Some(v) if negated => !self.values.iter().any(|p| self.op.holds(v, *p)),
            Some(v) => self.values.iter().any(|p| self.op.holds(v, *p)),
        }
    }
}

/// Parses a W3C/ISO 8601 date (`2026-01-31`, `2026-01-31T12:00:00Z`, with fractions or an
/// offset) or epoch seconds into epoch milliseconds.
pub fn parse_date_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<f64>().ok().map(|secs| secs * 1000.0);
    }
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as f64);
    }
    // A date without time, or a time without seconds or zone, as IAM accepts them (UTC).
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date_only) {
        return Some((d.midnight().assume_utc().unix_timestamp() * 1000) as f64);
    }
    let forms = [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    let bare = s.strip_suffix('Z').unwrap_or(s);
    forms.iter().find_map(|f| {
        time::PrimitiveDateTime::parse(bare, f)
            .ok()
            .map(|t| (t.assume_utc().unix_timestamp() * 1000) as f64)
    })
}

#[derive(Debug, Clone)]
struct Statement {
    /// The statement as a one-statement key policy.
    engine: Policy,
    own: Vec<OwnCondition>,
}

/// A parsed, validated identity policy, compiled for one principal.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    /// `Some(name)` for a named policy (`[policies.NAME]`): an explicit deny names it
    /// as AWS names a managed policy.
    pub name: Option<String>,
    statements: Vec<Statement>,
}

/// The principal facts policy variables resolve to.
struct Vars<'a> {
    principal: &'a Principal,
}

impl Vars<'_> {
    /// The value of a principal variable; `Ok(None)` when the principal has no such value
    /// (a root principal has no user name), `Err` for variables sealgate cannot
    /// substitute when a policy is loaded.
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        let p = self.principal;
        Ok(match name.to_ascii_lowercase().as_str() {
            "aws:username" => (!p.is_root).then(|| p.name.clone()),
            "aws:userid" => Some(context::user_id(p)),
            "aws:principalaccount" => Some(p.account.clone()),
            "aws:principalarn" => Some(p.arn()),
            "aws:principaltype" => Some(context::principal_type(p).to_string()),
            _ if context::kind(name).is_some() => {
                return Err(format!(
                    "the policy variable ${{{name}}} depends on the request; sealgate substitutes \
                     principal variables only (aws:username, aws:userid, aws:PrincipalAccount, \
                     aws:PrincipalArn, aws:PrincipalType)"
                ));
            }
            _ => return Err(format!("unknown policy variable ${{{name}}}")),
        })
    }
}

/// Substitutes `${...}` in `s`. `Ok(None)`: a variable has no value for this principal
/// (the element then matches nothing, as on AWS).
fn substitute(s: &str, vars: &Vars<'_>) -> Result<Option<String>, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated policy variable in '{s}'"))?;
        let inner = &after[..end];
        rest = &after[end + 1..];
        match inner {
            "$" => out.push('$'),
            "*" | "?" => {
                return Err(format!(
                    "'${{{inner}}}' (a literal {inner}) is not supported by sealgate's policy engine"
                ));
            }
            _ => {
                // `${key, 'default'}`
                let (name, default) = match inner.split_once(',') {
                    Some((n, d)) => {
                        let d = d.trim();
                        let d = d
                            .strip_prefix('\'')
                            .and_then(|d| d.strip_suffix('\''))
                            .ok_or_else(|| {
                                format!("the default of ${{{inner}}} must be in single quotes")
                            })?;
                        (n.trim(), Some(d))
                    }
                    None => (inner.trim(), None),
                };
                match vars.get(name)?.or(default.map(str::to_string)) {
                    Some(v) => out.push_str(&v),
                    None => return Ok(None),
                }
            }
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn strings(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// `s3:Name` → `kms:Name` (the engine only takes `kms:` actions); `*` stays.
pub fn engine_action(action: &str) -> String {
    match action.get(..3) {
        Some(p) if p.eq_ignore_ascii_case("s3:") => format!("kms:{}", &action[3..]),
        _ => action.to_string(),
    }
}

/// The engine's key for an S3 condition key.
pub fn carrier_key(key: &str) -> String {
    format!("{CARRIER}{}", key.to_ascii_lowercase())
}

impl IdentityPolicy {
    /// Parses `text` and compiles it for `principal`. `name` is the policy's name for a
    /// named policy. Errors name the offending element (`Statement[1].Action[0]: ...`).
    pub fn compile(
        name: Option<&str>,
        text: &str,
        principal: &Principal,
    ) -> Result<IdentityPolicy, String> {
        if text.len() > crate::kms::policy::MAX_POLICY_BYTES {
            return Err(format!(
                "the policy is {} bytes; the limit is {}",
                text.len(),
                crate::kms::policy::MAX_POLICY_BYTES
            ));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let obj = doc.as_object().ok_or("the policy must be a JSON object")?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(format!("{k}: unknown policy element"));
            }
        }
        let version = match obj.get("Version") {
            None => None,
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => Some(v.as_str()),
            Some(_) => return Err("Version: expected \"2012-10-17\" or \"2008-10-17\"".into()),
        };
        let stmts = match obj.get("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a.iter().collect::<Vec<_>>(),
            Some(o @ Value::Object(_)) => vec![o],
            Some(_) => return Err("Statement: expected a statement or a non-empty list".into()),
            None => return Err("Statement: missing".into()),
        };
        let vars = Vars { principal };
        let variables = version == Some("2012-10-17");
        let statements = stmts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                compile_statement(s, version, variables, &vars)
                    .map_err(|e| format!("Statement[{i}].{e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IdentityPolicy {
            name: name.map(str::to_string),
            statements: statements.into_iter().flatten().collect(),
        })
    }

    /// What this policy says about `action` (`s3:GetObject`) on `resource` for the
    /// request described by `ctx` (lowercased condition keys → values).
    pub fn evaluate(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        ctx: &BTreeMap<String, String>,
    ) -> Verdict {
        let action = engine_action(action);
        let mut facts = RequestFacts::new(principal, &action, resource);
        facts.encryption_context = Some(ctx);
        let mut allowed = false;
        for s in &self.statements {
            let d = s.engine.evaluate(&facts);
            if d == Decision::NoMatch || !s.own.iter().all(|c| c.holds(ctx)) {
                continue;
            }
            match d {
                Decision::Deny(_) => return Verdict::Deny,
                Decision::Allow(_) => allowed = true,
                Decision::NoMatch => {}
            }
        }
        if allowed {
            Verdict::Allow
        } else {
            Verdict::NoMatch
        }
    }
}

/// Compiles one statement; `Ok(None)` when it can match nothing for this principal (every
/// `Resource` names a variable the principal has no value for).
fn compile_statement(
    v: &Value,
    version: Option<&str>,
    variables: bool,
    vars: &Vars<'_>,
) -> Result<Option<Statement>, String> {
    let o = v.as_object().ok_or("expected a JSON object")?;
    let mut out = Map::new();
    for (k, val) in o {
        match k.as_str() {
            "Sid" | "Effect" => {
                out.insert(k.clone(), val.clone());
            }
            "Principal" | "NotPrincipal" => {
                return Err(format!(
                    "{k}: an identity policy names no principal (it applies to the access keys it is attached to)"
                ));
            }
            "Action" | "NotAction" => {
                let list = strings(val)
                    .ok_or_else(|| format!("{k}: expected a string or a list of strings"))?;
                let mut mapped = Vec::with_capacity(list.len());
                for (i, a) in list.iter().enumerate() {
                    let s3 = a.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("s3:"));
                    if *a != "*" && !s3 {
                        return Err(format!(
                            "{k}[{i}]: '{a}' is not an S3 action; sealgate's identity policies \
                             govern S3 only (KMS access is decided by key policies and grants)"
                        ));
                    }
                    mapped.push(Value::String(engine_action(a)));
                }
                out.insert(k.clone(), Value::Array(mapped));
            }
            "Resource" | "NotResource" => {
                let list = strings(val)
                    .ok_or_else(|| format!("{k}: expected a string or a list of strings"))?;
                let mut kept = Vec::with_capacity(list.len());
                for (i, r) in list.iter().enumerate() {
                    if *r != "*" && !r.starts_with("arn:") {
                        return Err(format!(
                            "{k}[{i}]: '{r}' is not an ARN (expected arn:aws:s3:::BUCKET, \
                             arn:aws:s3:::BUCKET/KEY or *)"
                        ));
                    }
                    let r = if variables {
                        substitute(r, vars).map_err(|e| format!("{k}[{i}]: {e}"))?
                    } else {
                        refuse_variables(r, version).map_err(|e| format!("{k}[{i}]: {e}"))?;
                        Some(r.to_string())
                    };
                    // An entry whose variable has no value matches nothing.
                    if let Some(r) = r {
                        kept.push(Value::String(r));
                    }
                }
                if kept.is_empty() {
                    if k == "Resource" && !list.is_empty() {
                        return Ok(None);
                    }
                    // NotResource of entries that match nothing: every resource.
                    out.insert("Resource".into(), Value::String("*".into()));
                } else {
                    out.insert(k.clone(), Value::Array(kept));
                }
            }
            "Condition" => {}
            _ => return Err(format!("{k}: unknown statement element")),
        }
    }
    let mut own = Vec::new();
    if let Some(c) = o.get("Condition") {
        let engine = compile_conditions(c, version, variables, vars, &mut own)?;
        if !engine.is_empty() {
            out.insert("Condition".into(), Value::Object(engine));
        }
    }
    out.insert("Principal".into(), Value::String("*".into()));
    let mut doc = Map::new();
    if let Some(v) = version {
        doc.insert("Version".into(), Value::String(v.into()));
    }
    doc.insert("Statement".into(), Value::Object(out));
    let engine = Policy::parse(&Value::Object(doc).to_string()).map_err(|e| {
        // Say it in the policy's own terms.
        e.trim_start_matches("Statement[0].")
            .replace(CARRIER, "")
            .replace("'kms:", "'s3:")
    })?;
    Ok(Some(Statement { engine, own }))
}

fn refuse_variables(s: &str, version: Option<&str>) -> Result<(), String> {
    if s.contains("${") {
        return Err(format!(
            "'{s}' uses a policy variable, which IAM takes literally in a policy {}; \
             add \"Version\": \"2012-10-17\"",
            match version {
                Some(v) => format!("with \"Version\": \"{v}\""),
                None => "without \"Version\"".into(),
            }
        ));
    }
    Ok(())
}

/// Splits a Condition block: what the engine evaluates (returned, keys rewritten to the
/// carrier) and the Numeric/Date conditions evaluated here (`own`).
fn compile_conditions(
    c: &Value,
    version: Option<&str>,
    variables: bool,
    vars: &Vars<'_>,
    own: &mut Vec<OwnCondition>,
) -> Result<Map<String, Value>, String> {
    let o = c.as_object().ok_or("Condition: expected an object")?;
    let mut engine = Map::new();
    for (op_name, block) in o {
        let at = format!("Condition.{op_name}");
        let block = block
            .as_object()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("{at}: expected an object of condition keys"))?;
        let (qualified, rest) = match op_name.split_once(':') {
            Some((q @ ("ForAnyValue" | "ForAllValues"), r)) => (Some(q), r),
            _ => (None, op_name.as_str()),
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) if b != "Null" => (b, true),
            _ => (rest, false),
        };
        let numeric = base.strip_prefix("Numeric").and_then(NumOp::parse);
        let date = base.strip_prefix("Date").and_then(NumOp::parse);
        if let Some(op) = numeric.or(date) {
            if qualified.is_some() {
                return Err(format!(
                    "{at}: ForAnyValue/ForAllValues apply to multivalued keys; sealgate's numeric and date keys have one value"
                ));
            }
            for (key, vals) in block {
                let at = format!("{at}.{key}");
                let kind = context::kind(key).ok_or_else(|| unknown_key(&at, key))?;
                let is_date = date.is_some();
                let fits = if is_date {
                    matches!(kind, KeyKind::Date | KeyKind::DateOrNumber)
                } else {
                    matches!(kind, KeyKind::Number | KeyKind::DateOrNumber)
                };
                if !fits {
                    return Err(format!(
                        "{at}: {key} is not a {} key",
                        if is_date { "date" } else { "numeric" }
                    ));
                }
                let texts = cond_texts(vals).ok_or_else(|| format!("{at}: expected values"))?;
                let mut values = Vec::with_capacity(texts.len());
                for (i, t) in texts.iter().enumerate() {
                    let v = if is_date {
                        parse_date_ms(t)
                    } else {
                        t.trim().parse::<f64>().ok()
                    };
                    values.push(v.ok_or_else(|| {
                        format!(
                            "{at}[{i}]: '{t}' is not a {}",
                            if is_date { "date" } else { "number" }
                        )
                    })?);
                }
                own.push(OwnCondition {
                    op,
                    date: is_date,
                    if_exists,
                    key: key.to_ascii_lowercase(),
                    values,
                });
            }
            continue;
        }
        // Operators with policy variables: String* and Arn* (IAM substitutes nowhere else).
        let substitutes = base.starts_with("String") || base.starts_with("Arn");
        let mut keys = Map::new();
        for (key, vals) in block {
            let at = format!("{at}.{key}");
            context::kind(key).ok_or_else(|| unknown_key(&at, key))?;
            let vals = match (substitutes && variables, cond_texts(vals)) {
                (true, Some(texts)) => {
                    let mut out = Vec::with_capacity(texts.len());
                    for (i, t) in texts.iter().enumerate() {
                        // A value whose variable has no value matches nothing: drop it.
                        if let Some(v) = substitute(t, vars).map_err(|e| format!("{at}[{i}]: {e}"))? {
                            out.push(Value::String(v));
                        }
                    }
                    if out.is_empty() {
                        // Nothing left to compare with: keep a value no request has.
                        out.push(Value::String("${unresolved}".into()));
                    }
                    Value::Array(out)
                }
                (_, Some(texts)) => {
                    for (i, t) in texts.iter().enumerate() {
                        if substitutes {
                            refuse_variables(t, version).map_err(|e| format!("{at}[{i}]: {e}"))?;
                        } else if t.contains("${") {
                            return Err(format!(
                                "{at}[{i}]: policy variables are substituted in String and Arn conditions only"
                            ));
                        }
                    }
                    vals.clone()
                }
                // Not a value list: the engine says what is wrong with it.
                (_, None) => vals.clone(),
            };
            keys.insert(carrier_key(key), vals);
        }
        engine.insert(op_name.clone(), Value::Object(keys));
    }
    Ok(engine)
}

fn unknown_key(at: &str, key: &str) -> String {
    format!(
        "{at}: sealgate does not supply the condition key {key} for S3 requests (known keys: {})",
        context::KNOWN.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
    )
}

/// Condition values as text (strings, booleans, numbers).
fn cond_texts(v: &Value) -> Option<Vec<String>> {
    let one = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(one).collect(),
        Value::Array(_) => None,
        x => one(x).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Principal {
        Principal {
            name: "bob".into(),
            account: "111122223333".into(),
            is_root: false,
        }
    }

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    fn eval(doc: &str, action: &str, resource: &str, c: &[(&str, &str)]) -> Verdict {
        IdentityPolicy::compile(None, doc, &bob())
            .unwrap()
            .evaluate(&bob(), action, resource, &ctx(c))
    }

    const OWN_PREFIX: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::shared/${aws:username}/*"},
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::shared",
         "Condition":{"StringLike":{"s3:prefix":["${aws:username}/*","${aws:username}"]}}}]}"#;

    #[test]
    fn actions_resources_and_variables_match_as_iam_does() {
        assert_eq!(
            eval(OWN_PREFIX, "s3:GetObject", "arn:aws:s3:::shared/bob/a/b", &[]),
            Verdict::Allow
        );
        assert_eq!(
            eval(OWN_PREFIX, "s3:GetObject", "arn:aws:s3:::shared/alice/a", &[]),
            Verdict::NoMatch
        );
        assert_eq!(
            eval(OWN_PREFIX, "s3:DeleteObject", "arn:aws:s3:::shared/bob/a", &[]),
            Verdict::NoMatch
        );
        assert_eq!(
            eval(OWN_PREFIX, "s3:ListBucket", "arn:aws:s3:::shared", &[("s3:prefix", "bob/x")]),
            Verdict::Allow
        );
        assert_eq!(
            eval(OWN_PREFIX, "s3:ListBucket", "arn:aws:s3:::shared", &[("s3:prefix", "alice/")]),
            Verdict::NoMatch
        );
        assert_eq!(
            eval(OWN_PREFIX, "s3:ListBucket", "arn:aws:s3:::shared", &[]),
            Verdict::NoMatch,
            "no prefix: StringLike on a missing key fails"
        );
        // Action names are case-insensitive, resources are not.
        let doc = r#"{"Statement":{"Effect":"Allow","Action":"S3:get*","Resource":"arn:aws:s3:::B/*"}}"#;
        assert_eq!(eval(doc, "s3:GetObject", "arn:aws:s3:::B/k", &[]), Verdict::Allow);
        assert_eq!(eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &[]), Verdict::NoMatch);
        assert_eq!(eval(doc, "s3:PutObject", "arn:aws:s3:::B/k", &[]), Verdict::NoMatch);
    }

    #[test]
    fn explicit_deny_wins_and_not_action_not_resource_invert() {
        let doc = r#"{"Statement":[
            {"Effect":"Allow","Action":"s3:*","Resource":"*"},
            {"Effect":"Deny","NotAction":["s3:Get*","s3:List*"],"NotResource":"arn:aws:s3:::scratch/*"}]}"#;
        assert_eq!(eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &[]), Verdict::Allow);
        assert_eq!(eval(doc, "s3:PutObject", "arn:aws:s3:::b/k", &[]), Verdict::Deny);
        assert_eq!(eval(doc, "s3:PutObject", "arn:aws:s3:::scratch/k", &[]), Verdict::Allow);
    }

    #[test]
    fn conditions_on_s3_and_global_keys() {
        let doc = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:*","Resource":"*"},
            {"Effect":"Deny","Action":"s3:PutObject","Resource":"*",
             "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}},
            {"Effect":"Deny","Action":"s3:*","Resource":"*",
             "Condition":{"Bool":{"aws:SecureTransport":"false"}}},
            {"Effect":"Deny","Action":"s3:*","Resource":"*",
             "Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","127.0.0.1"]}}}]}"#;
        let ok = [("aws:SecureTransport", "true"), ("aws:SourceIp", "10.1.2.3")];
        assert_eq!(eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &ok), Verdict::Allow);
        // No SSE header: StringNotEquals holds on a missing key, so the Deny applies.
        assert_eq!(eval(doc, "s3:PutObject", "arn:aws:s3:::b/k", &ok), Verdict::Deny);
        let kms = [
            ("aws:SecureTransport", "true"),
            ("aws:SourceIp", "127.0.0.1"),
            ("s3:x-amz-server-side-encryption", "aws:kms"),
        ];
        assert_eq!(eval(doc, "s3:PutObject", "arn:aws:s3:::b/k", &kms), Verdict::Allow);
        let plain = [("aws:SecureTransport", "false"), ("aws:SourceIp", "10.1.2.3")];
        assert_eq!(eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &plain), Verdict::Deny);
        let far = [("aws:SecureTransport", "true"), ("aws:SourceIp", "192.0.2.1")];
        assert_eq!(eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &far), Verdict::Deny);
    }

    #[test]
    fn numeric_and_date_conditions_are_evaluated_by_the_adapter() {
        let doc = r#"{"Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*",
            "Condition":{"NumericLessThanEquals":{"s3:max-keys":"100"},
                         "DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},
                         "StringEquals":{"s3:delimiter":"/"}}}]}"#;
        fn c<'a>(mk: &'a str, now: &'a str) -> [(&'a str, &'a str); 3] {
            [("s3:max-keys", mk), ("aws:CurrentTime", now), ("s3:delimiter", "/")]
        }
        let r = "arn:aws:s3:::b";
        assert_eq!(eval(doc, "s3:ListBucket", r, &c("50", "2029-12-31T23:59:59Z")), Verdict::Allow);
        assert_eq!(eval(doc, "s3:ListBucket", r, &c("500", "2029-12-31T23:59:59Z")), Verdict::NoMatch);
        assert_eq!(eval(doc, "s3:ListBucket", r, &c("50", "2030-01-01T00:00:00Z")), Verdict::NoMatch);
        let epoch = r#"{"Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*",
            "Condition":{"NumericGreaterThanIfExists":{"aws:EpochTime":"2000000000"}}}]}"#;
        assert_eq!(eval(epoch, "s3:GetObject", r, &[("aws:EpochTime", "2000000001")]), Verdict::Deny);
        assert_eq!(eval(epoch, "s3:GetObject", r, &[("aws:EpochTime", "1999999999")]), Verdict::NoMatch);
        assert_eq!(eval(epoch, "s3:GetObject", r, &[]), Verdict::Deny, "IfExists on a missing key");
        assert_eq!(parse_date_ms("2026-01-31"), parse_date_ms("2026-01-31T00:00:00Z"));
        assert_eq!(parse_date_ms("1769817600"), parse_date_ms("2026-01-31T00:00:00Z"));
        assert_eq!(parse_date_ms("2026-01-31T00:00"), parse_date_ms("2026-01-31T00:00:00Z"));
    }

    #[test]
    fn mistakes_are_refused_naming_the_element() {
        let cases = [
            (r#"{"Statement":{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}}"#, "Statement[0].Action[0]: 'kms:Decrypt' is not an S3 action"),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#, "Statement[0].Principal: an identity policy names no principal"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket/*"}}"#, "Statement[0].Resource[0]: 'bucket/*' is not an ARN"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:username}/*"}}"#, "add \"Version\": \"2012-10-17\""),
            (r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${s3:prefix}"}}"#, "depends on the request"),
            (r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:nonsense}"}}"#, "unknown policy variable"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"s3:x-amz-server-side-encrpytion":"aws:kms"}}}}"#, "Statement[0].Condition.StringEquals.s3:x-amz-server-side-encrpytion: sealgate does not supply"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NumericLessThan":{"aws:SourceIp":"1"}}}}"#, "not a numeric key"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"soon"}}}}"#, "'soon' is not a date"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringSortOf":{"s3:prefix":"a"}}}}"#, "Statement[0].Condition.StringSortOf: unsupported condition operator"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"maybe"}}}}"#, "Condition.Bool.aws:securetransport[0]: expected true or false"),
            (r#"{"Statement":{"Effect":"Perhaps","Action":"s3:*","Resource":"*"}}"#, "Statement[0].Effect: expected Allow or Deny"),
            (r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#, "Statement[0].Resource: missing"),
            (r#"{"Statement":[]}"#, "Statement: expected"),
        ];
        for (doc, want) in cases {
            let err = IdentityPolicy::compile(None, doc, &bob()).unwrap_err();
            assert!(err.contains(want), "{doc}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn a_root_principal_has_no_user_name_so_such_resources_match_nothing() {
        let root = Principal {
            name: "admin".into(),
            account: "111122223333".into(),
            is_root: true,
        };
        let p = IdentityPolicy::compile(None, OWN_PREFIX, &root).unwrap();
        assert_eq!(
            p.evaluate(&root, "s3:GetObject", "arn:aws:s3:::shared/admin/k", &ctx(&[])),
            Verdict::NoMatch
        );
        let with_default = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username, 'nobody'}/*"}}"#;
        let p = IdentityPolicy::compile(None, with_default, &root).unwrap();
        assert_eq!(
            p.evaluate(&root, "s3:GetObject", "arn:aws:s3:::home/nobody/k", &ctx(&[])),
            Verdict::Allow
        );
    }
}
