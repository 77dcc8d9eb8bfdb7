//! Conditional reads (`If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`) evaluated by sealgate against the ETag clients see, which for
//! encrypted objects is not the store's (RFC 9110 §13.2.2, as S3 applies it).
//!
//! Invariants: an object sealgate serves is only served when the client's conditions
//! hold for the ETag and Last-Modified sealgate reports; the store is then asked for that
//! exact version (pinned by its own ETag).

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, StatusCode};

use super::Ctx;
use crate::error::Error;
use crate::object::{ObjectMeta, ObjectRef};

/// The conditional headers of a read.
pub const READ_CONDITIONS: &[&str] = &[
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// What the conditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// 304 (GET/HEAD).
    NotModified,
    /// 412.
    PreconditionFailed,
}

/// Whether the request carries any read condition.
pub fn any(h: &HeaderMap) -> bool {
    READ_CONDITIONS.iter().any(|n| h.contains_key(*n))
}

fn strip(tag: &str) -> &str {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"')
}

/// Whether an `If-Match`/`If-None-Match` list matches `etag` (`*` matches any).
fn matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || strip(t) == strip(etag))
}

fn date(h: &HeaderMap, n: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(h.get(n)?.to_str().ok()?.trim()).ok()
}

fn text<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n).and_then(|v| v.to_str().ok())
}

/// Conditional writes (PutObject, CompleteMultipartUpload): `If-None-Match: *` (write
/// only if no object has the key) and `If-Match: ETAG` (only if the current object has
/// that ETag), with the ETag clients see, which for an encrypted object is not the
/// store's. Checked by sealgate against the current object, then sent to the store in the
/// store's terms (`If-None-Match: *`, `If-Match: <store ETag>`) so that a store that
/// supports conditional writes also refuses a write racing with another; on a store that
/// ignores them the check is sealgate's alone (docs/design/conditional-writes.md).
///
/// `headers` are the headers going to the store: the client's conditions are replaced.
pub async fn check_write(ctx: &Ctx, headers: &mut HeaderMap) -> Result<(), Error> {
    let none_match = text(&ctx.headers, "if-none-match").map(str::trim);
    let if_match = text(&ctx.headers, "if-match").map(str::trim);
    headers.remove("if-none-match");
    headers.remove("if-match");
    if none_match.is_none() && if_match.is_none() {
        return Ok(());
    }
    if none_match.is_some_and(|v| v != "*") {
        return Err(Error::not_implemented(
            "A header you provided implies functionality that is not implemented: If-None-Match on a write takes only the value *",
        ));
    }
    let obj = ctx.req.object()?;
    let current = ObjectRef::new(&obj.bucket, &obj.key);
    let head = ctx.objects().head(&current, HeaderMap::new()).await?;
    match head.status() {
        StatusCode::NOT_FOUND if if_match.is_some() => return Err(Error::no_such_key()),
        StatusCode::NOT_FOUND => {
            headers.insert("if-none-match", HeaderValue::from_static("*"));
            return Ok(());
        }
        s if s.is_success() => {}
        s => {
            return Err(Error::Internal(format!(
                "the store answered {s} to the HEAD that checks a conditional write"
            )));
        }
    }
    let Some(list) = if_match else {
        return Err(Error::precondition_failed());
    };
    let store_etag = head
        .headers()
        .get(http::header::ETAG)
        .cloned()
        .ok_or_else(|| Error::Internal("the store's HEAD answer has no ETag".into()))?;
    let etag = match ObjectMeta::read(head.headers())? {
        Some(meta) => ctx.open_described(&current, meta, &head).await?.2,
        None => store_etag.to_str().unwrap_or_default().to_string(),
    };
    if !matches(list, &etag) {
        return Err(Error::precondition_failed());
    }
    headers.insert("if-match", store_etag);
    Ok(())
}

/// Evaluates a read's conditions for an object with `etag` last modified at
/// `last_modified`.
pub fn evaluate(h: &HeaderMap, etag: &str, last_modified: Option<SystemTime>) -> Verdict {
    let modified_after = |since: SystemTime| last_modified.is_some_and(|lm| lm > since + second());
    if let Some(list) = text(h, "if-match") {
        if !matches(list, etag) {
            return Verdict::PreconditionFailed;
        }
    } else if let Some(since) = date(h, "if-unmodified-since")
        && modified_after(since)
    {
        return Verdict::PreconditionFailed;
    }
    if let Some(list) = text(h, "if-none-match") {
        if matches(list, etag) {
            return Verdict::NotModified;
        }
    } else if let Some(since) = date(h, "if-modified-since")
        && !modified_after(since)
    {
        return Verdict::NotModified;
    }
    Verdict::Proceed
}

/// HTTP dates have one-second resolution; a Last-Modified within the same second is not
/// "after".
fn second() -> std::time::Duration {
    std::time::Duration::from_millis(999)
}

/// The store's Last-Modified of a response.
pub fn last_modified(h: &HeaderMap) -> Option<SystemTime> {
    date(h, "last-modified")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::test_support::headers(pairs)
    }

    #[test]
    fn conditions_follow_rfc_9110_precedence() {
        let lm = httpdate::parse_http_date("Wed, 01 Jan 2025 00:00:00 GMT").ok();
        let (before, after) = (
            "Tue, 31 Dec 2024 00:00:00 GMT",
            "Thu, 02 Jan 2025 00:00:00 GMT",
        );
        let e = "\"abc\"";
        let v = |p: &[(&str, &str)]| evaluate(&h(p), e, lm);
        assert_eq!(v(&[]), Verdict::Proceed);
        assert_eq!(v(&[("if-match", "\"abc\"")]), Verdict::Proceed);
        assert_eq!(v(&[("if-match", "\"x\", \"abc\"")]), Verdict::Proceed);
        assert_eq!(v(&[("if-match", "*")]), Verdict::Proceed);
        assert_eq!(v(&[("if-match", "\"x\"")]), Verdict::PreconditionFailed);
        assert_eq!(v(&[("if-none-match", "\"abc\"")]), Verdict::NotModified);
        assert_eq!(v(&[("if-none-match", "W/\"abc\"")]), Verdict::NotModified);
        assert_eq!(v(&[("if-none-match", "\"x\"")]), Verdict::Proceed);
        assert_eq!(v(&[("if-modified-since", after)]), Verdict::NotModified);
        assert_eq!(v(&[("if-modified-since", before)]), Verdict::Proceed);
        assert_eq!(
            v(&[("if-unmodified-since", before)]),
            Verdict::PreconditionFailed
        );
        assert_eq!(v(&[("if-unmodified-since", after)]), Verdict::Proceed);
        // If-Match true wins over a failing If-Unmodified-Since (S3 and RFC 9110).
        assert_eq!(
            v(&[("if-match", "\"abc\""), ("if-unmodified-since", before)]),
            Verdict::Proceed
        );
        // If-None-Match false: If-Modified-Since is not looked at.
        assert_eq!(
            v(&[("if-none-match", "\"x\""), ("if-modified-since", after)]),
            Verdict::Proceed
        );
    }
}
