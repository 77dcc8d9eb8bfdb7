//! Grants: delegations of a subset of a key's operations to a grantee principal,
//! optionally constrained by the encryption context. Persisted in redb (`grants` table)
//! and held in memory with their key, so checking a grant costs no I/O.
//!
//! Invariants: a grant only ever *adds* permission where the key policy made no
//! decision (an explicit Deny in the key policy still wins); its operations are a
//! validated subset of the grantable rows of `ops`; grant tokens are opaque, name exactly one
//! grant, and carry no authority of their own (grants take effect at once here).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::KeyRecord;
use super::ops::{self, Grantable, Op};
use super::{EncryptionContext, KmsError};
use crate::auth::Principal;

pub use super::constraints::MAX_GRANTS_PER_KEY;

/// `Constraints` of a grant (exactly AWS's JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<EncryptionContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<EncryptionContext>,
    /// `SourceArn` (2025): sealgate has no AWS service callers to match it against, so a
    /// grant that names one is refused rather than created without the constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<String>,
}

impl GrantConstraints {
    /// Does a request's encryption context satisfy the constraints?
    pub fn allow(&self, ctx: Option<&EncryptionContext>) -> bool {
        let empty = EncryptionContext::new();
        let ctx = ctx.unwrap_or(&empty);
        self.encryption_context_equals
            .as_ref()
            .is_none_or(|eq| eq == ctx)
            && self
                .encryption_context_subset
                .as_ref()
                .is_none_or(|sub| sub.iter().all(|(k, v)| ctx.get(k) == Some(v)))
    }
}

/// One grant as stored (JSON in the `grants` table) and returned by ListGrants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grant_id: String,
    pub key_id: Uuid,
    pub name: Option<String>,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// ARN of the account root of the principal that created the grant.
    pub issuing_account: String,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub created_ms: i64,
    /// Region of the key copy the grant is on (multi-Region keys share their id); None =
    /// the home region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// What CreateGrant asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantRequest {
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub name: Option<String>,
}

/// Does an ARN in a grant denote this principal? An account-root ARN stands for every
/// principal of the account (the same model as key policies).
pub fn arn_denotes(arn: &str, who: &Principal) -> bool {
    if arn == "*" {
        return false;
    }
    if let Some(acct) = arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.strip_suffix(":root"))
    {
        return who.account == acct;
    }
    !who.is_root && arn == who.arn()
}

impl Grant {
    /// Does this grant let `who` perform `action` (`kms:Decrypt`) with context `ctx`?
    pub fn allows(&self, who: &Principal, action: &str, ctx: Option<&EncryptionContext>) -> bool {
        let op = action.strip_prefix("kms:").unwrap_or(action);
        arn_denotes(&self.grantee_principal, who)
            && self.operations.iter().any(|o| o == op)
            && self.constraints.as_ref().is_none_or(|c| c.allow(ctx))
    }

    /// Same parameters (for CreateGrant's Name idempotency).
    pub fn same_request(&self, r: &GrantRequest) -> bool {
        let mut a = self.operations.clone();
        let mut b = r.operations.clone();
        a.sort();
        b.sort();
        self.grantee_principal == r.grantee_principal
            && self.retiring_principal == r.retiring_principal
            && a == b
            && self.constraints == r.constraints
    }

    /// An opaque token naming this grant.
    pub fn token(&self) -> String {
        B64URL.encode(format!("sgt1:{}:{}", self.key_id, self.grant_id))
    }

    /// May `who` retire this grant (retiring principal, or grantee with RetireGrant)?
    pub fn retirable_by(&self, who: &Principal) -> bool {
        self.retiring_principal
            .as_deref()
            .is_some_and(|r| arn_denotes(r, who))
            || (arn_denotes(&self.grantee_principal, who)
                && self.operations.iter().any(|o| o == Op::RetireGrant.name()))
    }
}

/// Parses a grant token into (key id, grant id).
pub fn parse_token(token: &str) -> Result<(Uuid, String), KmsError> {
    let bad = || KmsError::InvalidGrantToken("The grant token is not valid.".into());
    let raw = B64URL.decode(token.trim()).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = s.strip_prefix("sgt1:").ok_or_else(bad)?;
    let (key, grant) = rest.split_once(':').ok_or_else(bad)?;
    Ok((Uuid::parse_str(key).map_err(|_| bad())?, grant.to_string()))
}

/// Checks the shape of a grant request (AWS's validation rules).
pub fn validate(r: &GrantRequest) -> Result<(), KmsError> {
    if r.operations.is_empty() {
        return Err(KmsError::constraint(
            "[]",
            "operations",
            "Member must have length greater than or equal to 1",
        ));
    }
    for op in &r.operations {
        if grantable(op) == Grantable::No {
            let all: Vec<&str> = ops::grant_operations().collect();
            return Err(KmsError::constraint(
                op,
                "operations",
                &format!("Member must satisfy enum value set: [{}]", all.join(", ")),
            ));
        }
    }
    let fields = [
        ("granteePrincipal", Some(&r.grantee_principal)),
        ("retiringPrincipal", r.retiring_principal.as_ref()),
    ];
    for (field, p) in fields.into_iter().filter_map(|(f, p)| p.map(|p| (f, p))) {
        super::constraints::text(p, field, 1, 256)?;
        let pattern_ok = p
            .chars()
            .all(|c| c.is_alphanumeric() || "_+=,.@:/-".contains(c));
        if !pattern_ok {
            return Err(super::constraints::pattern(p, field, "^[\\w+=,.@:/-]+$"));
        }
        let ok = p.starts_with("arn:aws:iam::") || p.starts_with("arn:aws:sts::");
        if !ok {
            return Err(KmsError::Validation(format!(
                "'{p}' is not a valid principal ARN."
            )));
        }
    }
    if let Some(n) = &r.name
        && (n.is_empty()
            || n.len() > 256
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-')))
    {
        return Err(KmsError::constraint(
            n,
            "name",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if let Some(c) = &r.constraints {
        if c.source_arn.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "The SourceArn grant constraint is not supported by sealgate's KMS (it has no AWS service principals to match it against).".into(),
            ));
        }
        for ctx in [&c.encryption_context_equals, &c.encryption_context_subset]
            .into_iter()
            .flatten()
        {
            if ctx.len() > 8 || ctx.values().any(|v| v.chars().count() > 384) {
                return Err(KmsError::Validation(
                    "An encryption context grant constraint may have at most 8 pairs, each value at most 384 characters.".into(),
                ));
            }
        }
        if c.encryption_context_equals.is_some() && c.encryption_context_subset.is_some() {
            return Err(KmsError::Validation(
                "Specify EncryptionContextEquals or EncryptionContextSubset, not both.".into(),
            ));
        }
        if let Some(op) = r
            .operations
            .iter()
            .find(|o| grantable(o) != Grantable::WithConstraints)
        {
            return Err(KmsError::Validation(format!(
                "Grant constraints are not permitted with the {op} operation."
            )));
        }
    }
    Ok(())
}

/// The rules of a grant that depend on its key (AWS's "grant operations"): every
/// operation must be one the key's spec and usage support, and encryption-context
/// constraints exist only for symmetric encryption keys (ValidationException).
pub fn check_for_key(r: &GrantRequest, rec: &KeyRecord, arn: &str) -> Result<(), KmsError> {
    let invalid: Vec<&str> = r
        .operations
        .iter()
        .filter(|o| {
            Op::from_action(o).is_some_and(|op| {
                super::asym::check_usage(rec.key_spec, rec.key_usage, arn, op).is_err()
            })
        })
        .map(String::as_str)
        .collect();
    if !invalid.is_empty() {
        return Err(KmsError::Validation(format!(
            "Grant operations {} are not valid for {arn} (KeySpec {}, KeyUsage {}).",
            invalid.join(", "),
            rec.key_spec,
            rec.key_usage
        )));
    }
    let context = r.constraints.as_ref().is_some_and(|c| {
        c.encryption_context_equals.is_some() || c.encryption_context_subset.is_some()
    });
    if context && !rec.key_spec.is_symmetric() {
        return Err(KmsError::Validation(format!(
            "Encryption context grant constraints are valid only for symmetric encryption KMS keys; {arn} is {}.",
            rec.key_spec
        )));
    }
    Ok(())
}

/// Whether a grant may name `op` (an operation name, exact case) in its Operations.
fn grantable(op: &str) -> Grantable {
    ops::ROWS
        .iter()
        .find(|r| r.name == op)
        .map_or(Grantable::No, |r| r.grantable)
}

/// A fresh 64-hex-digit grant id (AWS's shape).
pub fn new_grant_id() -> Result<String, KmsError> {
    Ok(hex::encode(&super::crypto::random_bytes(32)?[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        crate::test_support::pairs(pairs)
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let g = Grant {
            grant_id: "ab".repeat(32),
            key_id: Uuid::new_v4(),
            name: None,
            grantee_principal: "arn:aws:iam::000000000000:user/bob".into(),
            retiring_principal: None,
            issuing_account: "arn:aws:iam::000000000000:root".into(),
            operations: vec!["Decrypt".into()],
            constraints: None,
            created_ms: 0,
            region: None,
        };
        assert_eq!(parse_token(&g.token()).unwrap(), (g.key_id, g.grant_id));
        assert_eq!(
            parse_token("bm9wZQ").unwrap_err().aws_type(),
            "InvalidGrantTokenException"
        );
    }

    #[test]
    fn constraints_subset_and_equals() {
        let sub = GrantConstraints {
            encryption_context_subset: Some(ctx(&[("a", "1")])),
            ..Default::default()
        };
        assert!(sub.allow(Some(&ctx(&[("a", "1"), ("b", "2")]))));
        assert!(!sub.allow(Some(&ctx(&[("a", "2")]))));
        assert!(!sub.allow(None));
        let eq = GrantConstraints {
            encryption_context_equals: Some(ctx(&[("a", "1")])),
            ..Default::default()
        };
        assert!(eq.allow(Some(&ctx(&[("a", "1")]))));
        assert!(!eq.allow(Some(&ctx(&[("a", "1"), ("b", "2")]))));
    }

    #[test]
    fn requests_are_validated() {
        let ok = GrantRequest {
            grantee_principal: "arn:aws:iam::000000000000:user/bob".into(),
            operations: vec!["Decrypt".into()],
            ..Default::default()
        };
        validate(&ok).unwrap();
        let bad_op = GrantRequest {
            operations: vec!["Fly".into()],
            ..ok.clone()
        };
        assert_eq!(
            validate(&bad_op).unwrap_err().aws_type(),
            "ValidationException"
        );
        let constrained_describe = GrantRequest {
            operations: vec!["DescribeKey".into()],
            constraints: Some(GrantConstraints::default()),
            ..ok.clone()
        };
        assert!(validate(&constrained_describe).is_err());
        let bad_grantee = GrantRequest {
            grantee_principal: "bob".into(),
            ..ok
        };
        assert!(validate(&bad_grantee).is_err());
    }
}
