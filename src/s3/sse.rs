//! Server-side-encryption request headers: what the client asked for, validated as AWS does.
//!
//! Invariants: invalid combinations are `400 InvalidArgument` with AWS's wording; SSE-C
//! (customer-provided keys) is refused with `NotImplemented` rather than ignored, so a
//! client never believes its own key protected an object.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use s3s::{S3Error, S3ErrorCode};

pub use crate::object::{Alg, Sse};

pub const H_SSE: &str = "x-amz-server-side-encryption";
pub const H_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
pub const H_CONTEXT: &str = "x-amz-server-side-encryption-context";
pub const H_BUCKET_KEY: &str = "x-amz-server-side-encryption-bucket-key-enabled";

/// Request headers about SSE that never reach the store (sealgate does the encryption).
pub const SSE_REQUEST_HEADERS: &[&str] = &[H_SSE, H_KEY_ID, H_CONTEXT, H_BUCKET_KEY];

/// Headers of SSE-C; refused.
const SSE_C: &[&str] = &[
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key-md5",
];

/// The SSE headers S3 returns for an object encrypted under `env`.
pub fn response_headers(h: &mut HeaderMap, env: &crate::object::Envelope) {
    let set_header = |h: &mut HeaderMap, n: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(n, v);
        }
    };
    set_header(h, H_SSE, env.alg.as_str());
    if env.alg == Alg::Kms {
        set_header(h, H_KEY_ID, &env.key_ref);
    }
    if env.bucket_key {
        set_header(h, H_BUCKET_KEY, "true");
    }
    if let Some(c) = env.context_b64() {
        set_header(h, H_CONTEXT, &c);
    }
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg.into())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, S3Error> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| invalid(format!("The {name} header is not valid text."))),
    }
}

/// Decodes `x-amz-server-side-encryption-context` (base64 of a JSON object of strings).
pub fn parse_context(b64: &str) -> Result<BTreeMap<String, String>, S3Error> {
    let bad = || {
        invalid(
            "The x-amz-server-side-encryption-context header must be base64-encoded JSON of string keys and values.",
        )
    };
    let raw = B64.decode(b64).map_err(|_| bad())?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if map.contains_key("aws:s3:arn") {
        return Err(invalid(
            "The encryption context may not set aws:s3:arn; sealgate binds it to the object.",
        ));
    }
    Ok(map)
}

/// Refuses SSE-S3/SSE-KMS request headers on a read (GET, HEAD, GetObjectAttributes)
/// or an UploadPart, as AWS does: the encryption was chosen when the object was written.
pub fn refuse_on_read(h: &HeaderMap) -> Result<(), S3Error> {
    if let Some(n) = SSE_REQUEST_HEADERS.iter().find(|n| h.contains_key(**n)) {
        return Err(invalid(format!(
            "{n} header is not supported for this operation."
        )));
    }
    Ok(())
}

/// Parses and validates the SSE headers of a write (PutObject, CreateMultipartUpload,
/// CopyObject destination). `Ok(None)`: the client asked for nothing.
pub fn parse(h: &HeaderMap) -> Result<Option<Sse>, S3Error> {
    if let Some(n) = SSE_C.iter().find(|n| h.contains_key(**n)) {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!(
                "sealgate does not support SSE-C (customer-provided keys; got {n}). Use SSE-KMS (x-amz-server-side-encryption: aws:kms)."
            ),
        ));
    }
    let alg = header(h, H_SSE)?;
    let key_id = header(h, H_KEY_ID)?;
    let ctx = header(h, H_CONTEXT)?;
    let bucket_key = match header(h, H_BUCKET_KEY)? {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => {
            return Err(invalid(
                "The x-amz-server-side-encryption-bucket-key-enabled header must be true or false.",
            ));
        }
    };
    let Some(alg) = alg else {
        if key_id.is_some() {
            return Err(invalid(
                "x-amz-server-side-encryption-aws-kms-key-id header requires x-amz-server-side-encryption:aws:kms header",
            ));
        }
        if ctx.is_some() {
            return Err(invalid(
                "x-amz-server-side-encryption-context header requires x-amz-server-side-encryption:aws:kms header",
            ));
        }
        if bucket_key.is_some() {
            return Err(invalid(
                "x-amz-server-side-encryption-bucket-key-enabled header requires x-amz-server-side-encryption header",
            ));
        }
        return Ok(None);
    };
    let alg = match alg {
        "aws:kms" => Alg::Kms,
        "AES256" => Alg::S3,
        "aws:kms:dsse" => {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "sealgate does not support aws:kms:dsse; use aws:kms.",
            ));
        }
        other => {
            return Err(invalid(format!(
                "The encryption method specified is not supported: {other}"
            )));
        }
    };
    if alg == Alg::S3 && key_id.is_some() {
        return Err(invalid(
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
        ));
    }
    if alg == Alg::S3 && ctx.is_some() {
        return Err(invalid(
            "x-amz-server-side-encryption-context header requires x-amz-server-side-encryption:aws:kms header",
        ));
    }
    if key_id.is_some_and(str::is_empty) {
        return Err(invalid(
            "The x-amz-server-side-encryption-aws-kms-key-id header must not be empty.",
        ));
    }
    let context = match ctx {
        Some(c) => parse_context(c)?,
        None => BTreeMap::new(),
    };
    Ok(Some(Sse {
        alg,
        key_id: key_id.map(str::to_owned),
        context,
        bucket_key: bucket_key.unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn code(r: Result<Option<Sse>, S3Error>) -> String {
        r.unwrap_err().code().as_str().to_string()
    }

    #[test]
    fn valid_requests_parse() {
        assert_eq!(parse(&h(&[])).unwrap(), None);
        let s = parse(&h(&[(H_SSE, "aws:kms"), (H_KEY_ID, "alias/app")]))
            .unwrap()
            .unwrap();
        assert_eq!((s.alg, s.key_id.as_deref()), (Alg::Kms, Some("alias/app")));
        let ctx = B64.encode(br#"{"team":"blue"}"#);
        let s = parse(&h(&[
            (H_SSE, "aws:kms"),
            (H_CONTEXT, &ctx),
            (H_BUCKET_KEY, "true"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.context.get("team").map(String::as_str), Some("blue"));
        assert!(s.bucket_key);
        assert_eq!(
            parse(&h(&[(H_SSE, "AES256")])).unwrap().unwrap().alg,
            Alg::S3
        );
    }

    #[test]
    fn invalid_combinations_are_invalid_argument() {
        assert_eq!(code(parse(&h(&[(H_KEY_ID, "k")]))), "InvalidArgument");
        assert_eq!(
            code(parse(&h(&[(H_SSE, "AES256"), (H_KEY_ID, "k")]))),
            "InvalidArgument"
        );
        assert_eq!(code(parse(&h(&[(H_SSE, "rot13")]))), "InvalidArgument");
        assert_eq!(
            code(parse(&h(&[(H_SSE, "aws:kms"), (H_CONTEXT, "not-base64!")]))),
            "InvalidArgument"
        );
        let arn = B64.encode(br#"{"aws:s3:arn":"arn:aws:s3:::other/key"}"#);
        assert_eq!(
            code(parse(&h(&[(H_SSE, "aws:kms"), (H_CONTEXT, &arn)]))),
            "InvalidArgument"
        );
        assert_eq!(
            code(parse(&h(&[(H_SSE, "aws:kms"), (H_BUCKET_KEY, "maybe")]))),
            "InvalidArgument"
        );
    }

    #[test]
    fn sse_c_is_refused_clearly() {
        let r = parse(&h(&[(
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256",
        )]));
        let e = r.unwrap_err();
        assert_eq!(e.code().as_str(), "NotImplemented");
        assert!(e.message().unwrap().contains("SSE-C"));
    }
}
