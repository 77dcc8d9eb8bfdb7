//! What an object says about itself besides its bytes: the content headers and the
//! client's user metadata. Format 3 authenticates them in the object's MAC, so the store
//! cannot change what sealgate serves about an object (`docs/format.md`).
//!
//! The headers that describe the plaintext's form, and one stores drop, live in
//! sealgate's own metadata rather than as the store's headers: Content-Type (the stored
//! bytes are ciphertext, sent as `binary/octet-stream`; stores also rewrite types —
//! SeaweedFS replaces `application/octet-stream` by a guess from the key's extension),
//! Content-Encoding (the ciphertext has none; a store must not try to decode it) and
//! `x-amz-website-redirect-location` (SeaweedFS drops it). The other content headers
//! (Cache-Control, Content-Disposition, Content-Language, Expires) stay the store's own.
//!
//! User metadata with an empty value is not sent as a header at all (SeaweedFS stores the
//! object and drops such headers): its name goes into `x-amz-meta-sealgate-empty`, and
//! both the canonical form and the response put it back as `x-amz-meta-NAME: ""`, as AWS
//! keeps and serves empty values. The canonical form is the one of the header itself, so
//! objects written before (with the empty header, on stores that keep it) read as before.
//!
//! Invariants: the canonical form is computed the same way from what sealgate sends the
//! store and from what the store returns (names lower-cased, values trimmed, an HTTP date
//! as its instant), so what is authenticated is exactly what is served.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::crypto::format::meta as names;

/// Content headers kept as the store's own headers.
const STORE_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-language",
    "expires",
];

/// Headers kept in sealgate's metadata: (client header, sealgate metadata name).
const MOVED: &[(&str, &str)] = &[
    ("content-type", names::CONTENT_TYPE),
    ("content-encoding", names::CONTENT_ENCODING),
    ("x-amz-website-redirect-location", names::REDIRECT),
];

/// S3's Content-Type for an object stored without one, and the type of the ciphertext
/// in the store (a type SeaweedFS keeps as sent).
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The descriptive headers of an object, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Described {
    /// (client header name, value) sorted by name: content headers, the redirect,
    /// `x-amz-meta-*`.
    pub fields: Vec<(String, Vec<u8>)>,
}

fn canonical_value(name: &str, v: &HeaderValue) -> Vec<u8> {
    let trimmed = v.as_bytes().trim_ascii();
    if name == "expires"
        && let Ok(s) = std::str::from_utf8(trimmed)
        && let Ok(t) = httpdate::parse_http_date(s)
    {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return format!("@{secs}").into_bytes();
    }
    trimmed.to_vec()
}

fn is_user_meta(n: &str) -> bool {
    n.starts_with("x-amz-meta-") && !n.starts_with(names::PREFIX)
}

/// A Content-Encoding without the `aws-chunked` token (transfer framing, never part of
/// an object's encoding); `None` when nothing else is left.
pub fn without_aws_chunked(value: &HeaderValue) -> Option<HeaderValue> {
    let rest: Vec<&str> = value
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    if rest.is_empty() {
        return None;
    }
    HeaderValue::from_str(&rest.join(",")).ok()
}

impl Described {
    /// From the headers of a write after [`prepare_write`] (what sealgate sends the
    /// store), or from a store response of a format-3 object.
    pub fn of(h: &HeaderMap) -> Described {
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        for (k, v) in h {
            let n = k.as_str();
            if STORE_HEADERS.contains(&n) || is_user_meta(n) {
                fields.push((n.to_string(), canonical_value(n, v)));
            }
        }
        for (client, stored) in MOVED {
            if let Some(v) = h.get(*stored) {
                fields.push((client.to_string(), canonical_value(client, v)));
            }
        }
        for name in empty_meta(h) {
            if !fields.iter().any(|(n, _)| *n == name) {
                fields.push((name, Vec::new()));
            }
        }
        fields.sort();
        Described { fields }
    }

    /// The canonical bytes authenticated in the object's MAC: each field as
    /// `u32be(len) || bytes`, names and values alternating, sorted by name.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in &self.fields {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
        out
    }
}

/// The user metadata headers (`x-amz-meta-NAME`) that `x-amz-meta-sealgate-empty` names.
fn empty_meta(h: &HeaderMap) -> Vec<String> {
    h.get(names::EMPTY_META)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| format!("x-amz-meta-{}", n.to_ascii_lowercase()))
        .filter(|n| is_user_meta(n))
        .collect()
}

/// Prepares an encrypted write's headers for the store: the moved headers into
/// sealgate's metadata (Content-Type defaulting to S3's), the ciphertext typed
/// `binary/octet-stream` and without Content-Encoding, and user metadata with empty
/// values named in `x-amz-meta-sealgate-empty` instead of sent.
pub fn prepare_write(h: &mut HeaderMap) {
    let empty: Vec<HeaderName> = h
        .iter()
        .filter(|(k, v)| is_user_meta(k.as_str()) && v.as_bytes().trim_ascii().is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    h.remove(names::EMPTY_META);
    if !empty.is_empty() {
        let list: Vec<&str> = empty
            .iter()
            .map(|k| k.as_str().trim_start_matches("x-amz-meta-"))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&list.join(",")) {
            for k in &empty {
                h.remove(k);
            }
            h.insert(HeaderName::from_static(names::EMPTY_META), v);
        }
    }
    for (client, stored) in MOVED {
        let value = match h.remove(*client) {
            Some(v) if *client == "content-encoding" => without_aws_chunked(&v),
            other => other,
        };
        let value = match (value, *client) {
            (None, "content-type") => Some(HeaderValue::from_static(DEFAULT_CONTENT_TYPE)),
            (v, _) => v,
        };
        if let Some(v) = value {
            h.insert(HeaderName::from_static(stored), v);
        }
    }
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(DEFAULT_CONTENT_TYPE),
    );
}

/// The response view of a format-3 object's stored headers: the moved headers back
/// under their own names (the store's Content-Type and Content-Encoding are about the
/// ciphertext and are replaced).
pub fn restore(stored: &HeaderMap, out: &mut HeaderMap) {
    if !stored.contains_key(names::CONTENT_TYPE) {
        return;
    }
    out.remove(http::header::CONTENT_TYPE);
    out.remove(http::header::CONTENT_ENCODING);
    for (client, name) in MOVED {
        if let Some(v) = stored.get(*name) {
            out.insert(HeaderName::from_static(client), v.clone());
        }
    }
    for name in empty_meta(stored) {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            out.insert(n, HeaderValue::from_static(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::test_support::headers(pairs)
    }

    #[test]
    fn what_is_sent_and_what_comes_back_canonicalise_alike() {
        let mut sent = h(&[
            ("content-type", "Text/Plain; Charset=UTF-8"),
            ("content-encoding", "gzip"),
            ("expires", "Tue, 01 Jan 2030 00:00:00 GMT"),
            ("x-amz-meta-color", " blue "),
            ("x-amz-website-redirect-location", "/other"),
            ("authorization", "not described"),
        ]);
        prepare_write(&mut sent);
        assert_eq!(sent["content-type"], DEFAULT_CONTENT_TYPE);
        assert!(!sent.contains_key("content-encoding"));
        let written = Described::of(&sent);
        // The store trims the value, guesses its own type and adds its own headers.
        let mut stored = sent.clone();
        stored.insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
        stored.insert("content-encoding", "aws-chunked".parse().unwrap());
        stored.insert("x-amz-meta-color", "blue".parse().unwrap());
        stored.insert("etag", "\"x\"".parse().unwrap());
        assert_eq!(Described::of(&stored), written);
        let mut out = stored.clone();
        restore(&stored, &mut out);
        assert_eq!(out["content-type"], "Text/Plain; Charset=UTF-8");
        assert_eq!(out["content-encoding"], "gzip");
        assert_eq!(out["x-amz-website-redirect-location"], "/other");
        let mut changed = stored.clone();
        changed.insert(names::CONTENT_TYPE, "text/html".parse().unwrap());
        assert_ne!(Described::of(&changed), written);
        changed = stored.clone();
        changed.insert("cache-control", "no-cache".parse().unwrap());
        assert_ne!(Described::of(&changed), written);
    }

    #[test]
    fn empty_user_metadata_is_recorded_by_name_and_authenticates_as_before() {
        let client = h(&[("x-amz-meta-empty", ""), ("x-amz-meta-full", "x")]);
        let mut sent = client.clone();
        prepare_write(&mut sent);
        assert!(!sent.contains_key("x-amz-meta-empty"));
        assert_eq!(sent[names::EMPTY_META], "empty");
        // Before, the empty header went to the store as it was (Garage keeps it).
        let mut old_sent = client.clone();
        old_sent.insert(
            HeaderName::from_static(names::CONTENT_TYPE),
            HeaderValue::from_static(DEFAULT_CONTENT_TYPE),
        );
        let written = Described::of(&sent);
        assert_eq!(written, Described::of(&old_sent));
        // Either way the store answers, the same is authenticated and served.
        let mut back = sent.clone();
        back.insert("x-amz-meta-empty", HeaderValue::from_static(""));
        assert_eq!(Described::of(&back), written);
        let mut out = HeaderMap::new();
        restore(&sent, &mut out);
        assert_eq!(out["x-amz-meta-empty"], "");
        // A name the store removes from the record, or adds, changes what is authenticated.
        let mut dropped = sent.clone();
        dropped.remove(names::EMPTY_META);
        assert_ne!(Described::of(&dropped), written);
        let mut added = sent.clone();
        added.insert(names::EMPTY_META, "empty,other".parse().unwrap());
        assert_ne!(Described::of(&added), written);
    }

    #[test]
    fn a_write_without_content_type_gets_s3s_default() {
        let mut w = HeaderMap::new();
        prepare_write(&mut w);
        assert_eq!(w[names::CONTENT_TYPE], DEFAULT_CONTENT_TYPE);
    }
}
