//! Re-signing requests for the store with the store's own credentials (SigV4, service `s3`).
//!
//! Invariants: the URL is built from decoded bucket/key/query with AWS's strict URI
//! encoding, so what we sign and what the store canonicalises agree byte for byte;
//! bodies are never hashed (`UNSIGNED-PAYLOAD`), so signing never buffers a body.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderMap;

/// Characters S3 leaves unencoded: RFC 3986 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// AWS URI-encodes `s`; `/` is kept when `keep_slash` (object keys in paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Path for a bucket/key, path-style: `/bucket/key`.
pub fn object_path(bucket: Option<&str>, key: Option<&str>) -> String {
    match (bucket, key) {
        (None, _) => "/".to_string(),
        (Some(b), None) => format!("/{}", uri_encode(b, false)),
        (Some(b), Some(k)) => format!("/{}/{}", uri_encode(b, false), uri_encode(k, true)),
    }
}

/// Query string from decoded pairs, encoded strictly; empty values render as `k=`.
pub fn query_string(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&uri_encode(k, false));
        out.push('=');
        out.push_str(&uri_encode(v, false));
    }
    out
}

/// How a request's payload is covered by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER` (aws-chunked body with a checksum trailer).
    StreamingTrailer,
}

/// The store's credentials; `Debug` is redacted by `Credentials` itself.
#[derive(Clone, Debug)]
pub struct Signer {
    identity: Identity,
    region: String,
}

impl Signer {
    pub fn new(access_key_id: &str, secret: &str, region: &str) -> Self {
        let creds = Credentials::new(access_key_id, secret, None, None, "sealgate-config");
        Self {
            identity: creds.into(),
            region: region.to_string(),
        }
    }

    /// Signs in place: adds `authorization`, `x-amz-date`, `x-amz-content-sha256`.
    /// `headers` must already hold `host` and every `x-amz-*` header to be sent.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &mut HeaderMap,
        payload: Payload,
    ) -> Result<(), String> {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let signed_headers: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                n == "host" || n == "content-type" || n == "content-md5" || n.starts_with("x-amz-")
            })
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
            .collect();
        let signable = SignableRequest::new(
            method,
            url,
            signed_headers.into_iter(),
            match payload {
                Payload::Unsigned => SignableBody::UnsignedPayload,
                Payload::StreamingTrailer => SignableBody::StreamingUnsignedPayloadTrailer,
            },
        )
        .map_err(|e| format!("signable request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        let (new_headers, _params) = instructions.into_parts();
        for h in new_headers {
            let name = http::HeaderName::from_static(h.name());
            let value = http::HeaderValue::from_str(h.value())
                .map_err(|e| format!("signed header value: {e}"))?;
            headers.insert(name, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_strictly_with_slashes_kept() {
        assert_eq!(
            object_path(Some("b"), Some("a b/c+d=é")),
            "/b/a%20b/c%2Bd%3D%C3%A9"
        );
        assert_eq!(object_path(None, None), "/");
        assert_eq!(object_path(Some("bucket"), None), "/bucket");
    }

    #[test]
    fn query_values_are_encoded_and_empty_values_kept() {
        let q = vec![
            ("uploads".to_string(), String::new()),
            ("prefix".to_string(), "a/b c".to_string()),
        ];
        assert_eq!(query_string(&q), "uploads=&prefix=a%2Fb%20c");
    }

    #[test]
    fn signing_adds_authorization_for_service_s3() {
        let s = Signer::new("GKTEST", "secretsecret", "garage");
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:3900".parse().unwrap());
        s.sign(
            "GET",
            "http://127.0.0.1:3900/b?list-type=2",
            &mut h,
            Payload::Unsigned,
        )
        .unwrap();
        let auth = h.get("authorization").unwrap().to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=GKTEST/"),
            "{auth}"
        );
        assert!(auth.contains("/garage/s3/aws4_request"), "{auth}");
        assert_eq!(h.get("x-amz-content-sha256").unwrap(), "UNSIGNED-PAYLOAD");
    }
}
