//! Identity policies for S3: IAM JSON documents parsed and evaluated by sealgate's policy
//! engine (`crate::kms::policy`, as `PolicyKind::Identity { service: "s3" }`), which does
//! Effect/Action/NotAction/Resource/NotResource, every condition operator sealgate
//! evaluates, and policy variables. What is S3-specific lives here: which condition keys
//! and policy variables a policy may use.
//!
//! Invariants: a policy exists only if it parsed and every condition key in it is one
//! sealgate supplies for S3 requests (`context::KNOWN`), every Numeric/Date operator is
//! on a numeric/date key, and every policy variable is a principal variable (its value
//! comes from the configuration, never from the request, so it cannot carry wildcards);
//! anything else is refused when the configuration is loaded, never silently evaluated as
//! absent or literal. Evaluation never fails.

use crate::auth::Principal;
use crate::kms::constraints::MAX_POLICY_BYTES;
use crate::kms::policy::{ConditionMap, Decision, Policy, PolicyKind, Request};

use super::context::{self, KeyKind};

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

/// The policy variables sealgate substitutes: facts of the principal (lowercase).
pub const VARIABLES: &[&str] = &[
    "aws:username",
    "aws:userid",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principaltype",
];

/// A parsed, validated identity policy.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    /// `Some(name)` for a named policy (`[policies.NAME]`): an explicit deny names it as
    /// AWS names a managed policy.
    pub name: Option<String>,
    policy: Policy,
}

impl IdentityPolicy {
    /// Parses and checks `text`; `name` is the policy's name for a named policy. Errors
    /// name the offending element (`Statement[1].Action[0]: ...`).
    pub fn parse(name: Option<&str>, text: &str) -> Result<IdentityPolicy, String> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(format!(
                "the policy is {} bytes; the limit is {MAX_POLICY_BYTES}",
                text.len()
            ));
        }
        let policy = Policy::parse_as(text, PolicyKind::Identity { service: "s3" })?;
        for (i, operator, key) in policy.condition_keys() {
            let at = format!("Statement[{i}].Condition.{operator}.{key}");
            let kind = context::kind(key).ok_or_else(|| {
                format!(
                    "{at}: sealgate does not supply the condition key {key} for S3 requests \
                     (known keys: {})",
                    context::KNOWN
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let base = operator.rsplit(':').next().unwrap_or(operator);
            let (family, fits) = if base.starts_with("Numeric") {
                (
                    "numeric",
                    matches!(kind, KeyKind::Number | KeyKind::DateOrNumber),
                )
            } else if base.starts_with("Date") {
                (
                    "date",
                    matches!(kind, KeyKind::Date | KeyKind::DateOrNumber),
                )
            } else {
                ("", true)
            };
            if !fits {
                return Err(format!("{at}: {key} is not a {family} key"));
            }
        }
        for (i, var) in policy.variables() {
            if !VARIABLES.contains(&var.to_ascii_lowercase().as_str()) {
                let why = if context::kind(var).is_some() {
                    "depends on the request"
                } else {
                    "is unknown"
                };
                return Err(format!(
                    "Statement[{i}]: the policy variable ${{{var}}} {why}; sealgate substitutes principal \
                     variables only (aws:username, aws:userid, aws:PrincipalAccount, \
                     aws:PrincipalArn, aws:PrincipalType)"
                ));
            }
        }
        Ok(IdentityPolicy {
            name: name.map(str::to_string),
            policy,
        })
    }

    /// What this policy says about `action` (`s3:GetObject`) on `resource` for a request
    /// of `principal` whose condition keys are `keys`.
    pub fn evaluate(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        keys: &ConditionMap,
    ) -> Verdict {
        match self.policy.decide(&Request {
            principal,
            action,
            resource,
            keys,
        }) {
            Decision::Deny(_) => Verdict::Deny,
            Decision::Allow(_) => Verdict::Allow,
            Decision::NoMatch => Verdict::NoMatch,
        }
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

    /// The keys of a request of bob: his principal facts plus `pairs`.
    fn keys(pairs: &[(&str, &str)]) -> ConditionMap {
        let mut m = ConditionMap::new()
            .with("aws:username", "bob")
            .with("aws:userid", "111122223333:bob");
        for (k, v) in pairs {
            m.set(k, [*v]);
        }
        m
    }

    fn eval(doc: &str, action: &str, resource: &str, c: &[(&str, &str)]) -> Verdict {
        IdentityPolicy::parse(None, doc)
            .unwrap()
            .evaluate(&bob(), action, resource, &keys(c))
    }

    const OWN_PREFIX: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::shared/${aws:username}/*"},
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::shared",
         "Condition":{"StringLike":{"s3:prefix":["${aws:username}/*","${aws:username}"]}}}]}"#;

    #[test]
    fn actions_resources_and_variables_match_as_iam_does() {
        let shared = "arn:aws:s3:::shared";
        assert_eq!(
            eval(
                OWN_PREFIX,
                "s3:GetObject",
                "arn:aws:s3:::shared/bob/a/b",
                &[]
            ),
            Verdict::Allow
        );
        assert_eq!(
            eval(
                OWN_PREFIX,
                "s3:GetObject",
                "arn:aws:s3:::shared/alice/a",
                &[]
            ),
            Verdict::NoMatch
        );
        assert_eq!(
            eval(
                OWN_PREFIX,
                "s3:DeleteObject",
                "arn:aws:s3:::shared/bob/a",
                &[]
            ),
            Verdict::NoMatch
        );
        let listing = |prefix: &[(&str, &str)]| eval(OWN_PREFIX, "s3:ListBucket", shared, prefix);
        assert_eq!(listing(&[("s3:prefix", "bob/x")]), Verdict::Allow);
        assert_eq!(listing(&[("s3:prefix", "alice/")]), Verdict::NoMatch);
        assert_eq!(
            listing(&[]),
            Verdict::NoMatch,
            "no prefix: StringLike on a missing key fails"
        );
        // Action names are case-insensitive, resources are not.
        let doc =
            r#"{"Statement":{"Effect":"Allow","Action":"S3:get*","Resource":"arn:aws:s3:::B/*"}}"#;
        assert_eq!(
            eval(doc, "s3:GetObject", "arn:aws:s3:::B/k", &[]),
            Verdict::Allow
        );
        assert_eq!(
            eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &[]),
            Verdict::NoMatch
        );
        assert_eq!(
            eval(doc, "s3:PutObject", "arn:aws:s3:::B/k", &[]),
            Verdict::NoMatch
        );
    }

    #[test]
    fn explicit_deny_wins_and_not_action_not_resource_invert() {
        let doc = r#"{"Statement":[
            {"Effect":"Allow","Action":"s3:*","Resource":"*"},
            {"Effect":"Deny","NotAction":["s3:Get*","s3:List*"],"NotResource":"arn:aws:s3:::scratch/*"}]}"#;
        assert_eq!(
            eval(doc, "s3:GetObject", "arn:aws:s3:::b/k", &[]),
            Verdict::Allow
        );
        assert_eq!(
            eval(doc, "s3:PutObject", "arn:aws:s3:::b/k", &[]),
            Verdict::Deny
        );
        assert_eq!(
            eval(doc, "s3:PutObject", "arn:aws:s3:::scratch/k", &[]),
            Verdict::Allow
        );
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
        let obj = "arn:aws:s3:::b/k";
        let ok = [
            ("aws:SecureTransport", "true"),
            ("aws:SourceIp", "10.1.2.3"),
        ];
        assert_eq!(eval(doc, "s3:GetObject", obj, &ok), Verdict::Allow);
        // No SSE header: StringNotEquals holds on a missing key, so the Deny applies.
        assert_eq!(eval(doc, "s3:PutObject", obj, &ok), Verdict::Deny);
        let kms = [
            ("aws:SecureTransport", "true"),
            ("aws:SourceIp", "127.0.0.1"),
            ("s3:x-amz-server-side-encryption", "aws:kms"),
        ];
        assert_eq!(eval(doc, "s3:PutObject", obj, &kms), Verdict::Allow);
        let sse_s3 = [
            ("aws:SecureTransport", "true"),
            ("aws:SourceIp", "127.0.0.1"),
            ("s3:x-amz-server-side-encryption", "AES256"),
        ];
        assert_eq!(eval(doc, "s3:PutObject", obj, &sse_s3), Verdict::Deny);
        let plain = [
            ("aws:SecureTransport", "false"),
            ("aws:SourceIp", "10.1.2.3"),
        ];
        assert_eq!(eval(doc, "s3:GetObject", obj, &plain), Verdict::Deny);
        let far = [
            ("aws:SecureTransport", "true"),
            ("aws:SourceIp", "192.0.2.1"),
        ];
        assert_eq!(eval(doc, "s3:GetObject", obj, &far), Verdict::Deny);
    }

    #[test]
    fn numeric_and_date_conditions_on_s3_keys() {
        let doc = r#"{"Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*",
            "Condition":{"NumericLessThanEquals":{"s3:max-keys":"100"},
                         "DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},
                         "StringEquals":{"s3:delimiter":"/"}}}]}"#;
        fn c<'a>(mk: &'a str, now: &'a str) -> [(&'a str, &'a str); 3] {
            [
                ("s3:max-keys", mk),
                ("aws:CurrentTime", now),
                ("s3:delimiter", "/"),
            ]
        }
        let r = "arn:aws:s3:::b";
        let list = |keys: &[(&str, &str)]| eval(doc, "s3:ListBucket", r, keys);
        assert_eq!(list(&c("50", "2029-12-31T23:59:59Z")), Verdict::Allow);
        assert_eq!(list(&c("500", "2029-12-31T23:59:59Z")), Verdict::NoMatch);
        assert_eq!(list(&c("50", "2030-01-01T00:00:00Z")), Verdict::NoMatch);
        let epoch = r#"{"Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*",
            "Condition":{"NumericGreaterThanIfExists":{"aws:EpochTime":"2000000000"}}}]}"#;
        let at = |keys: &[(&str, &str)]| eval(epoch, "s3:GetObject", r, keys);
        assert_eq!(at(&[("aws:EpochTime", "2000000001")]), Verdict::Deny);
        assert_eq!(at(&[("aws:EpochTime", "1999999999")]), Verdict::NoMatch);
        assert_eq!(at(&[]), Verdict::Deny, "IfExists on a missing key");
    }

    #[test]
    fn mistakes_are_refused_naming_the_element() {
        let cases = [
            (
                r#"{"Statement":{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}}"#,
                "Statement[0].Action[0]: 'kms:Decrypt' is not an action of S3",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
                "Statement[0].Principal: not allowed in an identity policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket/*"}}"#,
                "Statement[0].Resource[0]: 'bucket/*' is not an ARN",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:username}/*"}}"#,
                "add it",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${s3:prefix}"}}"#,
                "Statement[0]: the policy variable ${s3:prefix} depends on the request",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringLike":{"s3:prefix":"${aws:nonsense}/*"}}}}"#,
                "${aws:nonsense} is unknown",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"s3:x-amz-server-side-encrpytion":"aws:kms"}}}}"#,
                "Statement[0].Condition.StringEquals.s3:x-amz-server-side-encrpytion: sealgate does not supply",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NumericLessThan":{"aws:SourceIp":"1"}}}}"#,
                "Statement[0].Condition.NumericLessThan.aws:SourceIp: aws:SourceIp is not a numeric key",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"ForAnyValue:DateLessThan":{"s3:prefix":"2026-01-01"}}}}"#,
                "s3:prefix is not a date key",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"soon"}}}}"#,
                "'soon' is not a date",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringSortOf":{"s3:prefix":"a"}}}}"#,
                "Statement[0].Condition.StringSortOf: unsupported condition operator",
            ),
            (
                r#"{"Statement":{"Effect":"Perhaps","Action":"s3:*","Resource":"*"}}"#,
                "Statement[0].Effect: expected Allow or Deny",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#,
                "Statement[0].Resource: missing",
            ),
            (r#"{"Statement":[]}"#, "Statement: expected"),
            ("{\"Statement\":", "not valid JSON"),
        ];
        for (doc, want) in cases {
            let err = IdentityPolicy::parse(None, doc).unwrap_err();
            assert!(err.contains(want), "{doc}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn a_variable_without_a_value_matches_nothing() {
        // A request without aws:username (as a root principal's) matches no resource
        // built from it, unless the variable has a default.
        let p = IdentityPolicy::parse(None, OWN_PREFIX).unwrap();
        let no_name = ConditionMap::new();
        let home = "arn:aws:s3:::shared/bob/k";
        assert_eq!(
            p.evaluate(&bob(), "s3:GetObject", home, &no_name),
            Verdict::NoMatch
        );
        let with_default = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username, 'nobody'}/*"}}"#;
        let p = IdentityPolicy::parse(None, with_default).unwrap();
        let nobody = "arn:aws:s3:::home/nobody/k";
        assert_eq!(
            p.evaluate(&bob(), "s3:GetObject", nobody, &no_name),
            Verdict::Allow
        );
    }
}
