//! Server-side-encryption request headers: what the client asked for, validated as AWS does
//! (SSE-S3, SSE-KMS, and SSE-C with customer-provided keys: the errors, their wording and
//! their order are AWS's, from `/work/research/s3-ssec-post-cors.md` §1.4).
//!
//! Invariants: invalid combinations are `400 InvalidArgument` with AWS's wording; SSE-C
//! headers are never ignored on an operation that takes them (a client must never believe
//! its key protected an object when it did not), and never forwarded to the store (the
//! customer key would be there).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use s3s::{S3Error, S3ErrorCode};

use crate::error::Error;

pub use crate::object::{Alg, CustomerKey, Sse};

pub const H_SSE: &str = "x-amz-server-side-encryption";
pub const H_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
pub const H_CONTEXT: &str = "x-amz-server-side-encryption-context";
pub const H_BUCKET_KEY: &str = "x-amz-server-side-encryption-bucket-key-enabled";

/// Request headers about SSE that never reach the store (sealgate does the encryption).
pub const SSE_REQUEST_HEADERS: &[&str] = &[H_SSE, H_KEY_ID, H_CONTEXT, H_BUCKET_KEY];

pub const H_C_ALG: &str = "x-amz-server-side-encryption-customer-algorithm";
pub const H_C_KEY: &str = "x-amz-server-side-encryption-customer-key";
pub const H_C_MD5: &str = "x-amz-server-side-encryption-customer-key-md5";
pub const H_CS_ALG: &str = "x-amz-copy-source-server-side-encryption-customer-algorithm";
pub const H_CS_KEY: &str = "x-amz-copy-source-server-side-encryption-customer-key";
pub const H_CS_MD5: &str = "x-amz-copy-source-server-side-encryption-customer-key-md5";

/// The SSE-C headers (the object's and a copy source's): never forwarded to the store.
pub const SSE_C_HEADERS: &[&str] = &[H_C_ALG, H_C_KEY, H_C_MD5, H_CS_ALG, H_CS_KEY, H_CS_MD5];

/// The customer-key trio of the object a request names, or of its copy source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trio {
    Object,
    CopySource,
}

impl Trio {
    fn names(self) -> [&'static str; 3] {
        match self {
            Trio::Object => [H_C_ALG, H_C_KEY, H_C_MD5],
            Trio::CopySource => [H_CS_ALG, H_CS_KEY, H_CS_MD5],
        }
    }

    /// Whether the request carries any header of this trio.
    pub fn present(self, h: &HeaderMap) -> bool {
        self.names().iter().any(|n| h.contains_key(*n))
    }
}

/// Whether a request carries any SSE-C header.
pub fn has_customer_headers(h: &HeaderMap) -> bool {
    Trio::Object.present(h) || Trio::CopySource.present(h)
}

/// AWS's answer to SSE-C over plain HTTP.
pub fn insecure_transport() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
    )
}

/// The SSE headers S3 returns for an object encrypted under `env`. For an SSE-C object,
/// the customer algorithm and the MD5 of the request's key `ck` (AWS echoes them, and
/// nothing about SSE-S3/KMS); without `ck` (CompleteMultipartUpload, whose answer has no
/// SSE-C fields) nothing.
pub fn response_headers(
    h: &mut HeaderMap,
    env: &crate::object::Envelope,
    ck: Option<&CustomerKey>,
) {
    let set_header = |h: &mut HeaderMap, n: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(n, v);
        }
    };
    if env.is_customer() {
        if let Some(ck) = ck {
            set_header(h, H_C_ALG, "AES256");
            set_header(h, H_C_MD5, &ck.md5_b64());
        }
        return;
    }
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

/// An `InvalidArgument` naming `x-amz-server-side-encryption` (with `value`), as every
/// AWS answer to bad SSE-C headers does, whichever header was at fault (§1.4).
fn sse_argument(msg: &str, value: Option<&str>) -> Error {
    Error::argument(S3ErrorCode::InvalidArgument, msg, H_SSE, value)
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
pub fn refuse_on_read(h: &HeaderMap) -> Result<(), Error> {
    if let Some(n) = SSE_REQUEST_HEADERS.iter().find(|n| h.contains_key(**n)) {
        return Err(Error::argument(
            S3ErrorCode::InvalidArgument,
            format!("{n} header is not supported for this operation."),
            n,
            h.get(*n).and_then(|v| v.to_str().ok()),
        ));
    }
    Ok(())
}

/// What a customer key is for: a write wraps a new data key under it (so it must be an
/// AES-256 key), a read is answered 403 when it is not the object's (AWS compares a read's
/// key with the object's before its length, §1.4 E9b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Write,
    Read,
}

/// Parses and validates a customer-key trio in AWS's order: algorithm and key present
/// (E2, E3), algorithm `AES256` (E4), the key's MD5 present and matching (E6b, E6), and
/// for a write the key's length (E5). `Ok(None)`: none of the trio's headers.
pub fn parse_customer(
    h: &HeaderMap,
    trio: Trio,
    key_use: KeyUse,
) -> Result<Option<CustomerKey>, Error> {
    if !trio.present(h) {
        return Ok(None);
    }
    let [n_alg, n_key, n_md5] = trio.names();
    let (alg, key, md5) = (header(h, n_alg)?, header(h, n_key)?, header(h, n_md5)?);
    let Some(alg) = alg else {
        return Err(sse_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
            None,
        ));
    };
    let Some(key) = key else {
        return Err(sse_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            None,
        ));
    };
    if alg != "AES256" {
        return Err(Error::argument(
            S3ErrorCode::InvalidEncryptionAlgorithmError,
            "The Encryption request you specified is not valid. Supported value: AES256.",
            H_SSE,
            Some(alg),
        ));
    }
    let bad_key = || {
        sse_argument(
            "The secret key was invalid for the specified algorithm.",
            None,
        )
    };
    let raw = B64.decode(key).map_err(|_| bad_key())?;
    let ck = CustomerKey::new(raw);
    let Some(md5) = md5 else {
        return Err(sse_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.",
            None,
        ));
    };
    let md5_matches = B64.decode(md5).is_ok_and(|m| B64.encode(m) == ck.md5_b64());
    if !md5_matches {
        return Err(sse_argument(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
            None,
        ));
    }
    if key_use == KeyUse::Write && !ck.usable() {
        return Err(bad_key());
    }
    Ok(Some(ck))
}

/// Parses and validates the SSE headers of a write (PutObject, CreateMultipartUpload,
/// CopyObject destination). `Ok(None)`: the client asked for nothing. SSE-C together with
/// any SSE-S3/SSE-KMS header is AWS's 400 (checked before the trio itself, as AWS does).
pub fn parse(h: &HeaderMap) -> Result<Option<Sse>, Error> {
    if Trio::Object.present(h) {
        if let Some(n) = SSE_REQUEST_HEADERS.iter().find(|n| h.contains_key(**n)) {
            return Err(Error::argument(
                S3ErrorCode::InvalidArgument,
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
                n,
                h.get(*n).and_then(|v| v.to_str().ok()),
            ));
        }
        return Ok(parse_customer(h, Trio::Object, KeyUse::Write)?.map(Sse::customer));
    }
    Ok(parse_kms(h)?)
}

/// The SSE-S3/SSE-KMS headers of a write.
fn parse_kms(h: &HeaderMap) -> Result<Option<Sse>, S3Error> {
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
        customer: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::test_support::headers(pairs)
    }

    fn code(r: Result<Option<Sse>, Error>) -> String {
        S3Error::from(r.unwrap_err()).code().as_str().to_string()
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

    /// research §1.1: the key `1234567890abcdef1234567890abcdef`.
    const KEY: &str = "MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWY=";
    const MD5: &str = "JMwgiexXqwuPqIPjYFmIZQ==";

    fn err(r: Result<Option<impl std::fmt::Debug>, Error>) -> (String, String) {
        let e = match r.unwrap_err() {
            Error::Argument(a) => {
                assert_eq!(a.name, H_SSE, "AWS names x-amz-server-side-encryption");
                a.error
            }
            other => panic!("not an argument error: {other:?}"),
        };
        (
            e.code().as_str().to_string(),
            e.message().unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn sse_c_writes_parse_into_a_customer_key() {
        let s = parse(&h(&[(H_C_ALG, "AES256"), (H_C_KEY, KEY), (H_C_MD5, MD5)]))
            .unwrap()
            .unwrap();
        assert_eq!(s.alg, Alg::Customer);
        assert_eq!(s.customer.as_ref().unwrap().md5_b64(), MD5);
        assert!(!format!("{s:?}").contains(KEY), "the key is redacted");
        // Header names are case-insensitive; clients send `-MD5` and `-md5`.
        let mut m = HeaderMap::new();
        m.insert(
            "X-Amz-Server-Side-Encryption-Customer-Key-MD5",
            MD5.parse().unwrap(),
        );
        m.insert(H_C_ALG, "AES256".parse().unwrap());
        m.insert(H_C_KEY, KEY.parse().unwrap());
        assert!(parse(&m).unwrap().unwrap().customer.is_some());
    }

    #[test]
    fn sse_c_errors_are_awss_in_awss_order() {
        let short = B64.encode([1u8; 10]);
        let short_md5 = CustomerKey::new(vec![1u8; 10]).md5_b64();
        for (headers, code, message) in [
            // E1 before a bad algorithm in the same request.
            (
                vec![
                    (H_SSE, "AES256"),
                    (H_C_ALG, "DES"),
                    (H_C_KEY, KEY),
                    (H_C_MD5, MD5),
                ],
                "InvalidArgument",
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ),
            (
                vec![
                    (H_SSE, "aws:kms"),
                    (H_C_ALG, "AES256"),
                    (H_C_KEY, KEY),
                    (H_C_MD5, MD5),
                ],
                "InvalidArgument",
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ),
            // E2
            (
                vec![(H_C_KEY, KEY), (H_C_MD5, MD5)],
                "InvalidArgument",
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
            ),
            // E3
            (
                vec![(H_C_ALG, "AES256"), (H_C_MD5, MD5)],
                "InvalidArgument",
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            ),
            // E4 before the MD5.
            (
                vec![(H_C_ALG, "aws:kms"), (H_C_KEY, KEY), (H_C_MD5, "bad")],
                "InvalidEncryptionAlgorithmError",
                "The Encryption request you specified is not valid. Supported value: AES256.",
            ),
            // E6b
            (
                vec![(H_C_ALG, "AES256"), (H_C_KEY, KEY)],
                "InvalidArgument",
                "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.",
            ),
            // E6, also before the length of a wrong-length key.
            (
                vec![
                    (H_C_ALG, "AES256"),
                    (H_C_KEY, KEY),
                    (H_C_MD5, short_md5.as_str()),
                ],
                "InvalidArgument",
                "The calculated MD5 hash of the key did not match the hash that was provided.",
            ),
            (
                vec![
                    (H_C_ALG, "AES256"),
                    (H_C_KEY, short.as_str()),
                    (H_C_MD5, MD5),
                ],
                "InvalidArgument",
                "The calculated MD5 hash of the key did not match the hash that was provided.",
            ),
            // E5 on a write.
            (
                vec![
                    (H_C_ALG, "AES256"),
                    (H_C_KEY, short.as_str()),
                    (H_C_MD5, short_md5.as_str()),
                ],
                "InvalidArgument",
                "The secret key was invalid for the specified algorithm.",
            ),
            (
                vec![
                    (H_C_ALG, "AES256"),
                    (H_C_KEY, "not base64!"),
                    (H_C_MD5, MD5),
                ],
                "InvalidArgument",
                "The secret key was invalid for the specified algorithm.",
            ),
        ] {
            assert_eq!(
                err(parse(&h(&headers))),
                (code.to_string(), message.to_string()),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn a_read_takes_a_key_of_any_length_and_copy_sources_have_their_own_trio() {
        let short = B64.encode([1u8; 10]);
        let short_md5 = CustomerKey::new(vec![1u8; 10]).md5_b64();
        let hm = h(&[
            (H_C_ALG, "AES256"),
            (H_C_KEY, &short),
            (H_C_MD5, &short_md5),
        ]);
        let k = parse_customer(&hm, Trio::Object, KeyUse::Read)
            .unwrap()
            .unwrap();
        assert!(!k.usable(), "refused later, as not the object's key (403)");
        assert_eq!(
            parse_customer(&hm, Trio::CopySource, KeyUse::Read).unwrap(),
            None
        );
        let cs = h(&[(H_CS_ALG, "AES256"), (H_CS_KEY, KEY), (H_CS_MD5, MD5)]);
        assert!(
            parse_customer(&cs, Trio::CopySource, KeyUse::Read)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_customer(&cs, Trio::Object, KeyUse::Read).unwrap(),
            None
        );
        // A copy source's trio does not make the destination SSE-C, and may be combined
        // with SSE-S3/KMS for the destination.
        let mut both = cs.clone();
        both.insert(H_SSE, "aws:kms".parse().unwrap());
        assert_eq!(parse(&both).unwrap().unwrap().alg, Alg::Kms);
        assert_eq!(
            err(parse_customer(
                &h(&[(H_CS_ALG, "AES")]),
                Trio::CopySource,
                KeyUse::Read
            ))
            .0,
            "InvalidArgument"
        );
        assert!(has_customer_headers(&cs) && !has_customer_headers(&h(&[(H_SSE, "AES256")])));
    }
}
