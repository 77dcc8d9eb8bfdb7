//! Parsing a policy statement: Effect, Principal (key policies only), Action/NotAction,
//! Resource and Condition (`condition.rs`), with errors that name the offending element.

use serde_json::Value;

use super::condition::parse_conditions;
use super::variables::{Text, Variables};
use super::{Effect, PolicyKind, PrincipalPat, Statement};

/// String or list of strings; errors are relative to the element.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}[{i}]: expected a string"))
            })
            .collect(),
        _ => Err(format!(
            "{what}: expected a string or a non-empty list of strings"
        )),
    }
}

pub(super) fn parse_statement(
    v: &Value,
    kind: PolicyKind,
    variables: Variables,
) -> Result<Statement, String> {
    let Some(o) = v.as_object() else {
        return Err("expected a JSON object".into());
    };
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(format!("{k}: unknown statement element"));
        }
    }
    let sid = match o.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("Sid: expected a string".into()),
    };
    let effect = match o.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err("Effect: expected Allow or Deny".into()),
    };
    let (principals, service) = match kind {
        PolicyKind::KeyPolicy => {
            if o.contains_key("NotPrincipal") {
                return Err("NotPrincipal: not supported in key policies; use Principal".into());
            }
            (
                parse_principal(o.get("Principal").ok_or("Principal: missing")?)?,
                "kms",
            )
        }
        PolicyKind::Identity { service } => {
            for p in ["Principal", "NotPrincipal"] {
                if o.contains_key(p) {
                    return Err(format!(
                        "{p}: not allowed in an identity policy (it applies to the principals \
                         it is attached to)"
                    ));
                }
            }
            (Vec::new(), service)
        }
    };
    let (actions, not_action) = exactly_one(o, "Action", "NotAction")?;
    for (i, a) in actions.iter().enumerate() {
        let lower = a.to_ascii_lowercase();
        if a != "*" && !lower.starts_with(&format!("{service}:")) {
            let el = if not_action { "NotAction" } else { "Action" };
            return Err(format!(
                "{el}[{i}]: '{a}' is not an action of {} (expected {service}:<Operation> or *)",
                service.to_ascii_uppercase()
            ));
        }
    }
    let (resources, not_resource) = exactly_one(o, "Resource", "NotResource")?;
    let el = if not_resource {
        "NotResource"
    } else {
        "Resource"
    };
    if matches!(kind, PolicyKind::Identity { .. }) {
        // IAM refuses an identity policy whose resources are not ARNs.
        for (i, r) in resources.iter().enumerate() {
            if r != "*" && !r.starts_with("arn:") {
                return Err(format!(
                    "{el}[{i}]: '{r}' is not an ARN (expected arn:... or *)"
                ));
            }
        }
    }
    let resources = resources
        .iter()
        .enumerate()
        .map(|(i, r)| Text::parse(r, variables).map_err(|e| format!("{el}[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let conditions = match o.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, variables)?,
    };
    Ok(Statement {
        sid,
        effect,
        principals,
        actions,
        not_action,
        resources,
        not_resource,
        conditions,
    })
}

fn exactly_one(
    o: &serde_json::Map<String, Value>,
    pos: &str,
    neg: &str,
) -> Result<(Vec<String>, bool), String> {
    match (o.get(pos), o.get(neg)) {
        (Some(v), None) => Ok((strings(v, pos)?, false)),
        (None, Some(v)) => Ok((strings(v, neg)?, true)),
        (Some(_), Some(_)) => Err(format!("{pos}: use either {pos} or {neg}, not both")),
        (None, None) => Err(format!("{pos}: missing")),
    }
}

fn parse_principal(v: &Value) -> Result<Vec<PrincipalPat>, String> {
    if v.as_str() == Some("*") {
        return Ok(vec![PrincipalPat::Anyone]);
    }
    let o = v
        .as_object()
        .ok_or("Principal: expected \"*\" or an object like {\"AWS\": ...}")?;
    let mut out = Vec::new();
    for (kind, val) in o {
        let at = format!("Principal.{kind}");
        let list = strings(val, &at)?;
        match kind.as_str() {
            "AWS" => {
                for (i, p) in list.iter().enumerate() {
                    out.push(
                        parse_aws_principal(p)
                            .ok_or_else(|| format!("{at}[{i}]: invalid principal '{p}'"))?,
                    );
                }
            }
            "Service" | "Federated" | "CanonicalUser" => out.push(PrincipalPat::Other),
            _ => return Err(format!("{at}: unknown principal type")),
        }
    }
    if out.is_empty() {
        return Err("Principal: no principal given".into());
    }
    Ok(out)
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_aws_principal(p: &str) -> Option<PrincipalPat> {
    if p == "*" {
        return Some(PrincipalPat::Anyone);
    }
    if is_account(p) {
        return Some(PrincipalPat::Account(p.to_string()));
    }
    let rest = p
        .strip_prefix("arn:aws:iam::")
        .or_else(|| p.strip_prefix("arn:aws:sts::"))?;
    let (account, resource) = rest.split_once(':')?;
    if !is_account(account) || resource.is_empty() {
        return None;
    }
    if p.starts_with("arn:aws:iam::") && resource == "root" {
        return Some(PrincipalPat::Account(account.to_string()));
    }
    if p.starts_with("arn:aws:iam::")
        && let Some(name) = resource.strip_prefix("user/")
    {
        // IAM user paths: `user/path/name`; sealgate users have no path.
        if name.is_empty() || name.contains('*') {
            return None;
        }
        return Some(PrincipalPat::User {
            account: account.to_string(),
            name: name.to_string(),
        });
    }
    Some(PrincipalPat::Other)
}
