//! SigV4 header-signature verification for KMS requests (service `kms`). The S3 front's
//! verifier (s3s) refuses service `kms`, so this module implements the AWS Signature
//! Version 4 spec for the only form KMS clients use: an `Authorization` header.
//!
//! Invariants: the secret is used only to derive the signing key; signatures are
//! compared in constant time; a request older/newer than 15 minutes is refused.

use std::time::{Duration, SystemTime};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use bytes::Bytes;
use http::{HeaderMap, Request};

use super::KmsError;
use crate::auth::{AccessKey, AccessKeys, Principal};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "kms";
/// Allowed clock skew between client and server.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct AuthHeader<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(what: &str) -> KmsError {
    KmsError::IncompleteSignature(format!(
        "Authorization header requires '{what}' parameter. Authorization header must be of the form: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
    ))
}

fn parse_auth_header(value: &str) -> Result<AuthHeader<'_>, KmsError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            KmsError::IncompleteSignature(format!(
                "Unsupported authorization scheme; only {ALGORITHM} is accepted."
            ))
        })?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let cred = cred.ok_or_else(|| incomplete("Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = sig.ok_or_else(|| incomplete("Signature"))?;
    let parts: Vec<&str> = cred.split('/').collect();
    let [access_key, date, region, service, terminator] = parts[..] else {
        return Err(KmsError::IncompleteSignature(format!(
            "Credential must be AKID/DATE/REGION/SERVICE/aws4_request, got {} parts.",
            parts.len()
        )));
    };
    Ok(AuthHeader {
        access_key,
        date,
        region,
        service,
        terminator,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// RFC 3986 percent-encoding of everything but unreserved characters (and `/` if asked).
fn uri_encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Canonical request per the SigV4 spec (path double-encoded, as for non-S3 services).
fn canonical_request(req: &Request<Bytes>, signed_headers: &[&str]) -> Result<String, KmsError> {
    let path = req.uri().path();
    let path = if path.is_empty() { "/" } else { path };
    let mut out = String::with_capacity(512);
    out.push_str(req.method().as_str());
    out.push('\n');
    out.push_str(&uri_encode(path.as_bytes(), true));
    out.push('\n');
    out.push_str(&canonical_query(req.uri().query()));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = req
            .headers()
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(KmsError::InvalidSignature(format!(
                "Header '{name}' is listed in SignedHeaders but is missing from the request."
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&hex::encode(digest(&SHA256, req.body())));
    Ok(out)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(s, &fmt).ok()?.assume_utc();
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Verifies the request's SigV4 signature; returns the authenticated principal.
pub fn verify(
    req: &Request<Bytes>,
    keys: &AccessKeys,
    region: &str,
    now: SystemTime,
) -> Result<Principal, KmsError> {
    verify_in(req, keys, &[region.to_string()], now).map(|(p, _)| p)
}

/// What a request's headers alone prove: a well-formed `Authorization` header for a
/// configured access key, scoped to service `kms` and a served region, signing `host`
/// and `x-amz-target`, dated within 15 minutes. Checked before the body is read, so a
/// client without a valid access key cannot make sealgate read a body.
pub struct Head<'a> {
    auth: AuthHeader<'a>,
    key: &'a AccessKey,
    amz_date: &'a str,
}

/// Checks everything of SigV4 that needs no body (see `Head`).
pub fn check_head<'a>(
    headers: &'a HeaderMap,
    keys: &'a AccessKeys,
    regions: &[String],
    now: SystemTime,
) -> Result<Head<'a>, KmsError> {
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Err(KmsError::MissingAuthenticationToken(
            "Missing Authentication Token".into(),
        ));
    };
    let auth = auth
        .to_str()
        .map_err(|_| KmsError::IncompleteSignature("Authorization header is not ASCII.".into()))?;
    let h = parse_auth_header(auth)?;
    let key = keys.get(h.access_key).ok_or_else(|| {
        KmsError::UnrecognizedClient(
            "The security token included in the request is invalid.".into(),
        )
    })?;
    if h.service != SERVICE || h.terminator != "aws4_request" {
        return Err(KmsError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if !regions.iter().any(|r| r == h.region) {
        return Err(KmsError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. This endpoint serves '{}'.",
            h.region,
            regions.join("', '")
        )));
    }
    for required in ["host", "x-amz-target"] {
        if !h.signed_headers.contains(&required) {
            // The operation is named by X-Amz-Target: unsigned, it could be swapped
            // (a signed DescribeKey body replayed as ScheduleKeyDeletion).
            return Err(KmsError::InvalidSignature(format!(
                "'{required}' must be a signed header."
            )));
        }
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            KmsError::IncompleteSignature(
                "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
            )
        })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        KmsError::IncompleteSignature(format!("X-Amz-Date '{amz_date}' is not YYYYMMDDTHHMMSSZ."))
    })?;
    let skew = now
        .duration_since(signed_at)
        .unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(KmsError::InvalidSignature(format!(
            "Signature expired: {amz_date} is more than 15 minutes away from the server time."
        )));
    }
    if !amz_date.starts_with(h.date) || h.date.len() != 8 {
        return Err(KmsError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from X-Amz-Date ({amz_date})."
        )));
    }
    Ok(Head {
        auth: h,
        key,
        amz_date,
    })
}

/// Verifies the request's SigV4 signature for any of `regions`; returns the principal
/// and the region of the credential scope (the KMS region the request addresses).
pub fn verify_in(
    req: &Request<Bytes>,
    keys: &AccessKeys,
    regions: &[String],
    now: SystemTime,
) -> Result<(Principal, String), KmsError> {
    let Head {
        auth: h,
        key,
        amz_date,
    } = check_head(req.headers(), keys, regions, now)?;
    let creq = canonical_request(req, &h.signed_headers)?;
    let scope = format!("{}/{}/{}/{}", h.date, h.region, h.service, h.terminator);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(digest(&SHA256, creq.as_bytes()))
    );
    let secret = zeroize::Zeroizing::new(format!("AWS4{}", key.secret.as_str()));
    let mut k = hmac_sha256(secret.as_bytes(), h.date.as_bytes());
    for part in [h.region, h.service, h.terminator] {
        k = hmac_sha256(k.as_ref(), part.as_bytes());
    }
    let expected = hex::encode(hmac_sha256(k.as_ref(), string_to_sign.as_bytes()));
    verify_slices_are_equal(expected.as_bytes(), h.signature.as_bytes()).map_err(|_| {
        KmsError::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into(),
        )
    })?;
    Ok((key.principal.clone(), h.region.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use zeroize::Zeroizing;

    use super::*;
    use crate::auth::AccessKey;

    fn keys() -> AccessKeys {
        AccessKeys::new(HashMap::from([(
            "AKIDALICE".to_string(),
            AccessKey {
                secret: Arc::new(Zeroizing::new("alice-secret".into())),
                principal: Principal {
                    name: "alice".into(),
                    account: "000000000000".into(),
                    is_root: false,
                },
            },
        )]))
    }

    /// A KMS request signed by AWS's own signer (`aws-sigv4`).
    fn signed(
        secret: &str,
        region: &str,
        service: &str,
        at: SystemTime,
        uri: &str,
    ) -> Request<Bytes> {
        let body = Bytes::from_static(br#"{"KeyId":"alias/x"}"#);
        let mut req = Request::post(uri)
            .header("host", "127.0.0.1:9000")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "TrentService.DescribeKey")
            .body(body.clone())
            .unwrap();
        let identity = Credentials::new("AKIDALICE", secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut req);
        req
    }

    /// Correctly signed by alice for this endpoint.
    fn good(at: SystemTime, uri: &str) -> Request<Bytes> {
        signed("alice-secret", "us-east-1", "kms", at, uri)
    }

    fn verify_err(req: &Request<Bytes>, now: SystemTime) -> &'static str {
        verify(req, &keys(), "us-east-1", now)
            .unwrap_err()
            .aws_type()
    }

    #[test]
    fn accepts_request_signed_by_aws_sigv4() {
        let now = SystemTime::now();
        let req = good(now, "http://127.0.0.1:9000/");
        let p = verify(&req, &keys(), "us-east-1", now).unwrap();
        assert_eq!(p.name, "alice");
        let q = good(now, "http://h/a%20b/c?b=2&a=1&c=x%2Fy");
        assert!(verify(&q, &keys(), "us-east-1", now).is_ok());
    }

    #[test]
    fn wrong_secret_is_invalid_signature() {
        let now = SystemTime::now();
        let req = signed("wrong", "us-east-1", "kms", now, "http://127.0.0.1:9000/");
        assert_eq!(verify_err(&req, now), "InvalidSignatureException");
    }

    #[test]
    fn tampered_body_is_invalid_signature() {
        let now = SystemTime::now();
        let req = good(now, "http://127.0.0.1:9000/");
        let (parts, _) = req.into_parts();
        let req = Request::from_parts(parts, Bytes::from_static(br#"{"KeyId":"alias/y"}"#));
        assert_eq!(verify_err(&req, now), "InvalidSignatureException");
    }

    #[test]
    fn stale_request_wrong_service_and_region_are_refused() {
        let now = SystemTime::now();
        let old = signed(
            "alice-secret",
            "us-east-1",
            "kms",
            now - Duration::from_secs(16 * 60),
            "http://h/",
        );
        assert_eq!(verify_err(&old, now), "InvalidSignatureException");
        let s3 = signed("alice-secret", "us-east-1", "s3", now, "http://h/");
        assert_eq!(verify_err(&s3, now), "InvalidSignatureException");
        let eu = signed("alice-secret", "eu-west-1", "kms", now, "http://h/");
        assert_eq!(verify_err(&eu, now), "InvalidSignatureException");
    }

    #[test]
    fn missing_incomplete_and_unknown_credentials() {
        let now = SystemTime::now();
        let bare = Request::post("/").body(Bytes::new()).unwrap();
        assert_eq!(
            verify_err(&bare, now),
            "MissingAuthenticationTokenException"
        );
        let mut req = good(now, "http://h/");
        req.headers_mut().insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDALICE/20240101/us-east-1/kms/aws4_request"
                .parse()
                .unwrap(),
        );
        assert_eq!(verify_err(&req, now), "IncompleteSignatureException");
        req.headers_mut().insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=NOBODY/20240101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert_eq!(verify_err(&req, now), "UnrecognizedClientException");
    }

    #[test]
    fn canonical_query_sorts_and_normalises_encoding() {
        assert_eq!(
            canonical_query(Some("b=2&a=1&c=x%2fy&d")),
            "a=1&b=2&c=x%2Fy&d="
        );
        assert_eq!(canonical_query(None), "");
    }
}
