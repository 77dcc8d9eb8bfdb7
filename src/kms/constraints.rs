//! AWS KMS's request constraints in one place: the service model's length, range and
//! count limits with the Coral-style ValidationException messages AWS answers with
//! (`1 validation error detected: Value '5' at 'limit' failed to satisfy constraint:
//! Member must have value greater than or equal to 1`), the per-operation paging of the
//! List operations (their Limit ranges and defaults, opaque markers) and the resource
//! quotas of the Developer Guide (tags, aliases and grants per key, on-demand rotations,
//! key policy size, keys per account).
//!
//! Invariants: sensitive members (`Plaintext`, `Message`) are named in messages without
//! their value, as AWS does; every figure here is AWS's current one (see the audit table
//! in docs/kms.md for the source of each).

use std::fmt::Display;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::KmsError;

/// Tags a key may have (DG "Resource quotas"; AWS answers TagException "Too many tags").
pub const MAX_TAGS_PER_KEY: usize = 50;
/// Customer-created aliases per key (DG "Resource quotas").
pub const MAX_ALIASES_PER_KEY: usize = 50;
/// Grants per key (DG "Resource quotas").
pub const MAX_GRANTS_PER_KEY: usize = 50_000;
/// On-demand rotations per key over its lifetime (DG "Resource quotas", not adjustable).
pub const MAX_ON_DEMAND_ROTATIONS: usize = 25;
/// Key policy document size in bytes (DG "Key policy format"; LimitExceededException).
pub const MAX_POLICY_BYTES: usize = 32 * 1024;
/// Customer managed keys per account and region (DG "Resource quotas", the default).
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// `GrantTokens`: at most 10 per request, each 1..=8192 characters (model).
pub const MAX_GRANT_TOKENS: usize = 10;
pub const MAX_GRANT_TOKEN_LEN: usize = 8192;
/// `Description` (model `DescriptionType`).
pub const MAX_DESCRIPTION: usize = 8192;
/// `TagKey` / `TagValue` (model).
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;

/// One validation error in AWS's wording.
fn error(value: Option<&dyn Display>, field: &str, constraint: &str) -> KmsError {
    let value = match value {
        Some(v) => format!(" '{v}'"),
        None => String::new(),
    };
    KmsError::Validation(format!(
        "1 validation error detected: Value{value} at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

/// A required member is missing: `Value null at 'keyId' ... Member must not be null`.
pub fn missing(field: &str) -> KmsError {
    KmsError::Validation(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

/// Any other constraint on a (non-sensitive) value.
pub fn violated(value: impl Display, field: &str, constraint: &str) -> KmsError {
    error(Some(&value), field, constraint)
}

/// An integer member outside `min..=max`.
pub fn range(n: i64, field: &str, min: i64, max: i64) -> Result<(), KmsError> {
    if n < min {
        return Err(error(
            Some(&n),
            field,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(error(
            Some(&n),
            field,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// A string, blob or list member whose length (count) is outside `min..=max`. `value`
/// is None for sensitive members (AWS leaves their value out).
pub fn length(
    len: usize,
    value: Option<&dyn Display>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<(), KmsError> {
    if len < min {
        return Err(error(
            value,
            field,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if len > max {
        return Err(error(
            value,
            field,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// A string member's length in characters, value shown.
pub fn text(s: &str, field: &str, min: usize, max: usize) -> Result<(), KmsError> {
    length(s.chars().count(), Some(&s), field, min, max)
}

/// `Member must satisfy enum value set: [A, B]`.
pub fn not_in_enum(value: &str, field: &str, all: &[&str]) -> KmsError {
    violated(
        value,
        field,
        &format!("Member must satisfy enum value set: [{}]", all.join(", ")),
    )
}

/// `Member must satisfy regular expression pattern: P`.
pub fn pattern(value: &str, field: &str, pattern: &str) -> KmsError {
    violated(
        value,
        field,
        &format!("Member must satisfy regular expression pattern: {pattern}"),
    )
}

/// `GrantTokens`: at most 10, each 1..=8192 characters.
pub fn grant_tokens(tokens: &[String]) -> Result<(), KmsError> {
    let list = || format!("[{}]", tokens.join(", "));
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(violated(
            list(),
            "grantTokens",
            &format!("Member must have length less than or equal to {MAX_GRANT_TOKENS}"),
        ));
    }
    for t in tokens {
        length(
            t.chars().count(),
            Some(&list()),
            "grantTokens",
            1,
            MAX_GRANT_TOKEN_LEN,
        )?;
    }
    Ok(())
}

/// Characters the model allows in a key policy: `[\u0009\u000A\u000D\u0020-\u00FF]+`.
pub fn policy_chars(policy: &str) -> Result<(), KmsError> {
    let ok = |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='\u{FF}');
    if policy.is_empty() || !policy.chars().all(ok) {
        return Err(error(
            None,
            "policy",
            "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
        ));
    }
    Ok(())
}

/// How a List operation pages: its Limit default and the largest page it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Page size when `Limit` is absent.
    pub default: usize,
    /// The documented maximum: a larger `Limit` (up to the model's 1000) returns at most
    /// this many, with `Truncated` and `NextMarker` (AWS's documented ranges are
    /// narrower than its model's; see docs/kms.md).
    pub max: usize,
}

/// ListKeys, ListKeyPolicies, ListKeyRotations: 1..1000, default 100.
pub const PAGE_DEFAULT: Paging = Paging {
    default: 100,
    max: 1000,
};
/// ListAliases, ListGrants, ListRetirableGrants: 1..100, default 50.
pub const PAGE_ALIASES_GRANTS: Paging = Paging {
    default: 50,
    max: 100,
};
/// ListResourceTags: 1..50, default 50.
pub const PAGE_TAGS: Paging = Paging {
    default: 50,
    max: 50,
};

const MARKER_PREFIX: &str = "sgm1:";

impl Paging {
    /// The page size for a request's `Limit` (ValidationException outside the model's
    /// 1..1000).
    pub fn size(self, limit: Option<i64>) -> Result<usize, KmsError> {
        match limit {
            None => Ok(self.default),
            Some(l) => {
                range(l, "limit", 1, 1000)?;
                Ok((l as usize).min(self.max))
            }
        }
    }
}

/// The marker naming the last item of a page (opaque to clients).
pub fn marker_after(sort_key: &str) -> String {
    B64URL.encode(format!("{MARKER_PREFIX}{sort_key}"))
}

/// The sort key a request's `Marker` continues after: ValidationException for a marker
/// outside the model's constraints, InvalidMarkerException for one sealgate did not issue.
pub fn parse_marker(marker: &str) -> Result<String, KmsError> {
    length(marker.chars().count(), Some(&marker), "marker", 1, 1024)?;
    let bad = || KmsError::InvalidMarker(format!("Invalid marker: '{marker}'"));
    let raw = B64URL.decode(marker.trim()).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.strip_prefix(MARKER_PREFIX)
        .map(str::to_string)
        .ok_or_else(bad)
}

/// One page of `items` (sorted by their sort key, ascending) after `marker`.
pub fn page<T>(
    items: impl Iterator<Item = (String, T)>,
    paging: Paging,
    limit: Option<i64>,
    marker: Option<&str>,
) -> Result<(Vec<T>, Option<String>), KmsError> {
    let size = paging.size(limit)?;
    let after = marker.map(parse_marker).transpose()?;
    let mut out: Vec<(String, T)> = items
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .take(size + 1)
        .collect();
    let next = if out.len() > size {
        out.truncate(size);
        out.last().map(|(k, _)| marker_after(k))
    } else {
        None
    };
    Ok((out.into_iter().map(|(_, t)| t).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_awss_coral_wording() {
        let e = range(2000, "limit", 1, 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 validation error detected: Value '2000' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 1000"
        );
        let e = range(0, "numberOfBytes", 1, 1024).unwrap_err();
        assert!(e.to_string().ends_with("greater than or equal to 1"), "{e}");
        let e = length(4097, None, "plaintext", 1, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"
        );
        assert_eq!(
            missing("keyId").to_string(),
            "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn grant_tokens_count_and_length() {
        let ten: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        grant_tokens(&ten).unwrap();
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        let e = grant_tokens(&eleven).unwrap_err();
        assert!(
            e.to_string()
                .contains("at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10"),
            "{e}"
        );
        assert!(grant_tokens(&[String::new()]).is_err());
        assert!(grant_tokens(&["x".repeat(8193)]).is_err());
    }

    #[test]
    fn pages_follow_limits_and_markers() {
        let items = || (0..120).map(|i| (format!("{i:03}"), i));
        let (p, next) = page(items(), PAGE_ALIASES_GRANTS, None, None).unwrap();
        assert_eq!(p.len(), 50);
        let (p2, next2) = page(items(), PAGE_ALIASES_GRANTS, Some(1000), next.as_deref()).unwrap();
        assert_eq!((p2[0], p2.len()), (50, 70));
        assert!(next2.is_none());
        let (p, _) = page(items(), PAGE_ALIASES_GRANTS, Some(1000), None).unwrap();
        assert_eq!(p.len(), 100, "the documented maximum page");
        assert_eq!(
            page(items(), PAGE_TAGS, Some(1001), None)
                .unwrap_err()
                .aws_type(),
            "ValidationException"
        );
        assert_eq!(
            page(items(), PAGE_TAGS, None, Some("garbage"))
                .unwrap_err()
                .aws_type(),
            "InvalidMarkerException"
        );
        let long = "a".repeat(1025);
        assert_eq!(
            page(items(), PAGE_TAGS, None, Some(&long))
                .unwrap_err()
                .aws_type(),
            "ValidationException"
        );
    }

    #[test]
    fn policy_characters_are_the_models() {
        policy_chars("{\"Sid\": \"caf\u{e9}\"}\n\t").unwrap();
        assert!(policy_chars("{\"Sid\": \"\u{263a}\"}").is_err());
        assert!(policy_chars("").is_err());
    }
}
