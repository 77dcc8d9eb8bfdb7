//! IAM condition blocks: parsing `"Condition": {"<operator>": {"<key>": values}}` and
//! evaluating it against any `ConditionKeys` (the request's condition keys and their
//! values). Nothing here knows KMS: the S3 side evaluates identity policies with it too.
//!
//! Operators: String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,NotLike},
//! Numeric{Equals,NotEquals,LessThan,LessThanEquals,GreaterThan,GreaterThanEquals},
//! Date{Equals,NotEquals,LessThan,LessThanEquals,GreaterThan,GreaterThanEquals}, Bool,
//! IpAddress/NotIpAddress, Arn{Equals,NotEquals,Like,NotLike}, Null; each but Null also
//! with `...IfExists`, and with the `ForAnyValue:` / `ForAllValues:` set qualifiers. An
//! operator outside this list (BinaryEquals, a typo) is refused at parse time, so a
//! policy never contains a condition sealgate cannot evaluate.
//!
//! Invariants: values of typed operators (numbers, dates, booleans, CIDRs) are checked
//! when the policy is parsed; evaluation never fails. A missing key fails positive
//! operators and satisfies negated ones (IAM's rule), unless `...IfExists`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::glob;
use super::variables::{Text, Variables};

/// The condition keys of a request and their values (one key may have several).
pub trait ConditionKeys {
    /// The values of `key` (as written in the policy; matching is case-insensitive on the
    /// key name, and exact on what follows a `/` or `kms:EncryptionContext:`), or None
    /// when the request has no such key.
    fn values(&self, key: &str) -> Option<Vec<Cow<'_, str>>>;
}

/// A request context given as data: condition key → values, key names case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionMap {
    keys: BTreeMap<String, Vec<String>>,
}

impl ConditionMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `values` (replacing earlier ones).
    pub fn set(&mut self, key: &str, values: impl IntoIterator<Item = impl Into<String>>) {
        self.keys.insert(
            key.to_ascii_lowercase(),
            values.into_iter().map(Into::into).collect(),
        );
    }

    /// Builder form of `set` for a single value.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, [value.into()]);
        self
    }
}

impl ConditionKeys for ConditionMap {
    fn values(&self, key: &str) -> Option<Vec<Cow<'_, str>>> {
        self.keys
            .get(&key.to_ascii_lowercase())
            .map(|v| v.iter().map(|s| Cow::Borrowed(s.as_str())).collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    StringIgnoreCase,
    StringLike,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Ip,
    ArnEquals,
    ArnLike,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, request: f64, policy: f64) -> bool {
        match self {
            Cmp::Eq => request == policy,
            Cmp::Lt => request < policy,
            Cmp::Le => request <= policy,
            Cmp::Gt => request > policy,
            Cmp::Ge => request >= policy,
        }
    }
}

/// An operator: what it compares and whether it is negated (`...Not...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operator {
    kind: Kind,
    negated: bool,
}

fn operator(name: &str) -> Option<Operator> {
    let (kind, negated) = match name {
        "StringEquals" => (Kind::String, false),
        "StringNotEquals" => (Kind::String, true),
        "StringEqualsIgnoreCase" => (Kind::StringIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Kind::StringIgnoreCase, true),
        "StringLike" => (Kind::StringLike, false),
        "StringNotLike" => (Kind::StringLike, true),
        "NumericEquals" => (Kind::Numeric(Cmp::Eq), false),
        "NumericNotEquals" => (Kind::Numeric(Cmp::Eq), true),
        "NumericLessThan" => (Kind::Numeric(Cmp::Lt), false),
        "NumericLessThanEquals" => (Kind::Numeric(Cmp::Le), false),
        "NumericGreaterThan" => (Kind::Numeric(Cmp::Gt), false),
        "NumericGreaterThanEquals" => (Kind::Numeric(Cmp::Ge), false),
        "DateEquals" => (Kind::Date(Cmp::Eq), false),
        "DateNotEquals" => (Kind::Date(Cmp::Eq), true),
        "DateLessThan" => (Kind::Date(Cmp::Lt), false),
        "DateLessThanEquals" => (Kind::Date(Cmp::Le), false),
        "DateGreaterThan" => (Kind::Date(Cmp::Gt), false),
        "DateGreaterThanEquals" => (Kind::Date(Cmp::Ge), false),
        "Bool" => (Kind::Bool, false),
        "IpAddress" => (Kind::Ip, false),
        "NotIpAddress" => (Kind::Ip, true),
        "ArnEquals" => (Kind::ArnEquals, false),
        "ArnNotEquals" => (Kind::ArnEquals, true),
        "ArnLike" => (Kind::ArnLike, false),
        "ArnNotLike" => (Kind::ArnLike, true),
        "Null" => (Kind::Null, false),
        _ => return None,
    };
    Some(Operator { kind, negated })
}

/// `ForAnyValue:` / `ForAllValues:` (multi-valued keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

/// One policy value, parsed for its operator.
#[derive(Debug, Clone)]
enum Pattern {
    /// String and ARN operators (with policy variables in identity policies).
    Text(Text),
    Number(f64),
    /// Epoch seconds.
    Date(f64),
    Bool(bool),
    Cidr(Cidr),
}

/// One `"<operator>": {"<key>": [values]}` entry.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    /// The operator as written (`ForAnyValue:StringLikeIfExists`).
    name: String,
    op: Operator,
    qualifier: Qualifier,
    if_exists: bool,
    key: String,
    values: Vec<Pattern>,
}

/// Seconds since the epoch of an IAM date: ISO 8601 (`2026-01-31T12:00:00Z`, with or
/// without fractions and offset, or a date `2026-01-31`), or epoch seconds.
pub fn parse_date(s: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(n) = s.parse::<i64>() {
        return Some(n as f64);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos() as f64 / 1e9);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() as f64)
}

impl Pattern {
    fn parse(kind: Kind, text: String, variables: Variables) -> Result<Pattern, String> {
        Ok(match kind {
            Kind::Numeric(_) => Pattern::Number(
                text.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("'{text}' is not a number"))?,
            ),
            Kind::Date(_) => {
                Pattern::Date(parse_date(&text).ok_or_else(|| format!("'{text}' is not a date"))?)
            }
            Kind::Bool | Kind::Null => match text.to_ascii_lowercase().as_str() {
                "true" => Pattern::Bool(true),
                "false" => Pattern::Bool(false),
                _ => return Err("expected true or false".into()),
            },
            Kind::Ip => Pattern::Cidr(
                Cidr::parse(&text).ok_or_else(|| format!("'{text}' is not an IP or CIDR"))?,
            ),
            _ => Pattern::Text(Text::parse(&text, variables)?),
        })
    }
}

/// Condition values may also be booleans or numbers (`"Bool": {"k": true}`).
fn texts(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let one = |x: &Value, at: String| match x {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{at}: expected a string")),
    };
    match v {
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, x)| one(x, format!("{what}[{i}]")))
            .collect(),
        Value::Array(_) => Err(format!("{what}: empty list")),
        x => Ok(vec![one(x, what.to_string())?]),
    }
}

/// Parses a statement's `Condition` element; errors name the place
/// (`Condition.NumericLessThan.kms:x[0]: 'a' is not a number`).
pub(super) fn parse_conditions(v: &Value, variables: Variables) -> Result<Vec<Condition>, String> {
    let o = v.as_object().ok_or("Condition: expected an object")?;
    let mut out = Vec::new();
    for (op_name, block) in o {
        let at = format!("Condition.{op_name}");
        let (qualifier, rest) = if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, r)
        } else if let Some(r) = op_name.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, r)
        } else {
            (Qualifier::None, op_name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) if b != "Null" => (b, true),
            _ => (rest, false),
        };
        let op = operator(base).ok_or_else(|| {
            format!("{at}: unsupported condition operator (sealgate cannot evaluate it)")
        })?;
        let block = block
            .as_object()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("{at}: expected an object of condition keys"))?;
        for (key, vals) in block {
            let at = format!("{at}.{key}");
            let values = texts(vals, &at)?
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    Pattern::parse(op.kind, t, variables).map_err(|e| format!("{at}[{i}]: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Condition {
                name: op_name.clone(),
                op,
                qualifier,
                if_exists,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

impl Condition {
    /// The operator as written.
    pub(super) fn operator(&self) -> &str {
        &self.name
    }

    /// The condition key as written.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// The policy variables in this condition's values.
    pub(super) fn variables(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .flat_map(|p| match p {
                Pattern::Text(t) => Some(t.variables()),
                _ => None,
            })
            .flatten()
    }

    /// Does one request value match one policy value (the positive form)? A policy value
    /// whose variable has no value in the request matches nothing.
    fn matches_one(&self, value: &str, pat: &Pattern, keys: &dyn ConditionKeys) -> bool {
        match (self.op.kind, pat) {
            (Kind::String | Kind::ArnEquals, Pattern::Text(t)) => {
                t.render(keys).is_some_and(|t| value == t)
            }
            (Kind::StringIgnoreCase, Pattern::Text(t)) => t
                .render(keys)
                .is_some_and(|t| value.eq_ignore_ascii_case(&t)),
            (Kind::StringLike | Kind::ArnLike, Pattern::Text(t)) => t
                .render(keys)
                .is_some_and(|t| glob(t.as_bytes(), value.as_bytes(), false)),
            (Kind::Numeric(c), Pattern::Number(n)) => {
                value.trim().parse::<f64>().is_ok_and(|v| c.holds(v, *n))
            }
            (Kind::Date(c), Pattern::Date(d)) => {
                parse_date(value.trim()).is_some_and(|v| c.holds(v, *d))
            }
            (Kind::Bool, Pattern::Bool(b)) => {
                value.eq_ignore_ascii_case(if *b { "true" } else { "false" })
            }
            (Kind::Ip, Pattern::Cidr(c)) => value.parse::<IpAddr>().is_ok_and(|ip| c.contains(ip)),
            _ => false,
        }
    }

    /// Whether the condition holds for the request.
    pub(super) fn holds(&self, keys: &dyn ConditionKeys) -> bool {
        let values = keys.values(&self.key);
        if self.op.kind == Kind::Null {
            // Null: true means the key must be absent, false that it must be present.
            let absent = values.as_ref().is_none_or(|v| v.is_empty());
            return self
                .values
                .iter()
                .any(|p| matches!(p, Pattern::Bool(b) if *b == absent));
        }
        let Some(values) = values.filter(|v| !v.is_empty()) else {
            return match self.qualifier {
                // ForAllValues over an empty set is vacuously true.
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                // A missing key: positive operators fail, negated ones hold (IAM rule);
                // `...IfExists` makes every operator hold.
                Qualifier::None => self.if_exists || self.op.negated,
            };
        };
        let positive = |v: &str| self.values.iter().any(|p| self.matches_one(v, p, keys));
        // For a negated operator, one value "matches" when it matches none of the list.
        let one = |v: &str| positive(v) != self.op.negated;
        match self.qualifier {
            Qualifier::ForAnyValue => values.iter().any(|v| one(v)),
            Qualifier::ForAllValues => values.iter().all(|v| one(v)),
            Qualifier::None if self.op.negated => !values.iter().any(|v| positive(v)),
            Qualifier::None => values.iter().any(|v| positive(v)),
        }
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(super) fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(cond: Value, keys: &ConditionMap) -> bool {
        parse_conditions(&cond, Variables::Literal)
            .unwrap()
            .iter()
            .all(|c| c.holds(keys))
    }

    #[test]
    fn numeric_operators_compare_numbers() {
        let k = ConditionMap::new().with("kms:x", "10");
        assert!(holds(json!({"NumericEquals": {"kms:x": 10}}), &k));
        assert!(holds(json!({"NumericLessThan": {"kms:x": "10.5"}}), &k));
        assert!(!holds(json!({"NumericLessThan": {"kms:x": 10}}), &k));
        assert!(holds(json!({"NumericLessThanEquals": {"kms:x": 10}}), &k));
        assert!(holds(json!({"NumericGreaterThan": {"kms:x": 9}}), &k));
        assert!(holds(
            json!({"NumericGreaterThanEquals": {"kms:x": 10}}),
            &k
        ));
        assert!(holds(json!({"NumericNotEquals": {"kms:x": [1, 2]}}), &k));
        assert!(!holds(json!({"NumericNotEquals": {"kms:x": [10]}}), &k));
        // Absent: positive fails, IfExists holds.
        let none = ConditionMap::new();
        assert!(!holds(json!({"NumericLessThan": {"kms:x": 1}}), &none));
        assert!(holds(
            json!({"NumericLessThanIfExists": {"kms:x": 1}}),
            &none
        ));
        assert!(
            parse_conditions(
                &json!({"NumericEquals": {"kms:x": "ten"}}),
                Variables::Literal
            )
            .is_err()
        );
    }

    #[test]
    fn date_operators_take_iso_8601_and_epoch_seconds() {
        let k = ConditionMap::new().with("aws:CurrentTime", "2026-06-01T12:00:00Z");
        assert!(holds(
            json!({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}),
            &k
        ));
        assert!(holds(
            json!({"DateLessThan": {"aws:CurrentTime": "2027-01-01"}}),
            &k
        ));
        assert!(!holds(
            json!({"DateLessThan": {"aws:CurrentTime": "2026-06-01T11:59:59Z"}}),
            &k
        ));
        assert!(holds(
            json!({"DateEquals": {"aws:CurrentTime": "1780315200"}}),
            &k
        ));
        assert!(holds(
            json!({"DateLessThanEquals": {"aws:CurrentTime": 1780315200}}),
            &k
        ));
        assert!(holds(
            json!({"DateNotEquals": {"aws:CurrentTime": "2026-06-01"}}),
            &k
        ));
        assert!(
            parse_conditions(
                &json!({"DateEquals": {"aws:CurrentTime": "soon"}}),
                Variables::Literal
            )
            .is_err()
        );
    }

    #[test]
    fn null_bool_and_set_qualifiers() {
        let k = ConditionMap::new()
            .with("aws:SecureTransport", "false")
            .with("kms:a", "1");
        assert!(holds(json!({"Bool": {"aws:SecureTransport": false}}), &k));
        assert!(!holds(json!({"Bool": {"aws:SecureTransport": "true"}}), &k));
        assert!(holds(
            json!({"Null": {"kms:missing": "true", "kms:a": "false"}}),
            &k
        ));
        assert!(!holds(json!({"Null": {"kms:a": true}}), &k));
        let mut multi = ConditionMap::new();
        multi.set("kms:EncryptionContextKeys", ["a", "b"]);
        assert!(holds(
            json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b", "c"]}}),
            &multi
        ));
        assert!(!holds(
            json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}),
            &multi
        ));
        assert!(holds(
            json!({"ForAnyValue:StringLike": {"kms:EncryptionContextKeys": "b*"}}),
            &multi
        ));
    }

    #[test]
    fn operators_sealgate_cannot_evaluate_are_refused() {
        for bad in [
            json!({"BinaryEquals": {"kms:x": "AAAA"}}),
            json!({"StringSortOf": {"kms:x": "a"}}),
            json!({"NullIfExists": {"kms:x": "true"}}),
            json!({"ForSomeValues:StringEquals": {"kms:x": "a"}}),
        ] {
            let e = parse_conditions(&bad, Variables::Literal).unwrap_err();
            assert!(e.contains("unsupported condition operator"), "{bad}: {e}");
        }
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
}
