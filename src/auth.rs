//! Client identities: sealgate's own access keys, each mapped to a named principal.
//!
//! Invariants: secret keys never appear in `Debug` output or logs; lookups compare
//! access key ids only (the secret is used to verify signatures, never compared as text).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// Who is making a request. Every S3 and KMS call acts as exactly one principal.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Short name from the config (`alice`), used in logs and audit events.
    pub name: String,
    /// 12-digit account id the principal belongs to.
    pub account: String,
    /// Whether this principal is the account root/admin (full KMS access under the default key policy).
    pub is_root: bool,
}

impl Principal {
    /// ARN in AWS IAM style: `arn:aws:iam::ACCOUNT:root` or `arn:aws:iam::ACCOUNT:user/NAME`.
    pub fn arn(&self) -> String {
        if self.is_root {
            format!("arn:aws:iam::{}:root", self.account)
        } else {
            format!("arn:aws:iam::{}:user/{}", self.account, self.name)
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.arn())
    }
}

/// One configured access key: the secret plus the principal it authenticates as.
#[derive(Clone)]
pub struct AccessKey {
    pub secret: Arc<Zeroizing<String>>,
    pub principal: Principal,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("secret", &"<redacted>")
            .field("principal", &self.principal)
            .finish()
    }
}

/// The table of access keys sealgate accepts from clients (S3 and KMS API alike).
#[derive(Clone, Default, Debug)]
pub struct AccessKeys {
    keys: Arc<HashMap<String, AccessKey>>,
}

impl AccessKeys {
    pub fn new(keys: HashMap<String, AccessKey>) -> Self {
        Self {
            keys: Arc::new(keys),
        }
    }

    /// The key with this access key id, if configured.
    pub fn get(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.keys.get(access_key_id)
    }

    /// The principal behind an access key id.
    pub fn principal(&self, access_key_id: &str) -> Option<&Principal> {
        self.keys.get(access_key_id).map(|k| &k.principal)
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for AccessKeys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.keys.get(access_key) {
            Some(k) => Ok(s3s::auth::SecretKey::from(k.secret.as_str())),
            None => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let k = AccessKey {
            secret: Arc::new(Zeroizing::new("supersecretvalue".into())),
            principal: Principal {
                name: "alice".into(),
                account: "111122223333".into(),
                is_root: false,
            },
        };
        let keys = AccessKeys::new(HashMap::from([("AKIDALICE".to_string(), k)]));
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains("supersecretvalue"), "{dbg}");
        assert!(dbg.contains("arn:aws:iam::111122223333:user/alice"));
    }
}

/// Authentication schemes refused before s3s sees the request: Signature Version 2
/// (header `Authorization: AWS id:sig` or a presigned URL with `AWSAccessKeyId` and
/// `Signature`) and browser form uploads (POST `multipart/form-data`, whose policy may be
/// V2-signed). AWS deprecated V2; s3s compares V2 signatures in variable time and logs
/// the expected signature at debug, so sealgate accepts SigV4 only. Returns the S3 error
/// code and message.
pub fn refused_scheme(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    allow_v2: bool,
) -> Option<(&'static str, &'static str)> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let v2_query = uri.query().is_some_and(|q| {
        let has = |k: &str| {
            q.split('&').any(|p| {
                p.split('=')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(k))
            })
        };
        has("AWSAccessKeyId") || (has("Signature") && !has("X-Amz-Signature"))
    });
    if !allow_v2 && (auth.starts_with(b"AWS ") || v2_query) {
        return Some((
            "InvalidRequest",
            "Signature Version 2 is not supported; sign requests with AWS Signature Version 4.",
        ));
    }
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if method == http::Method::POST && form {
        return Some((
            "NotImplemented",
            "Browser form uploads (POST Object) are not supported by sealgate.",
        ));
    }
    None
}

#[cfg(test)]
mod scheme_tests {
    use super::refused_scheme;

    fn check(method: &str, uri: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        refused_scheme(&method.parse().unwrap(), &uri.parse().unwrap(), &h, false).map(|r| r.0)
    }

    #[test]
    fn signature_v2_and_form_posts_are_refused_and_sigv4_passes() {
        assert_eq!(
            check("GET", "/b/k", &[("authorization", "AWS AKID:c2ln")]),
            Some("InvalidRequest")
        );
        assert_eq!(
            check(
                "GET",
                "/b/k?AWSAccessKeyId=AKID&Expires=1&Signature=abc",
                &[]
            ),
            Some("InvalidRequest")
        );
        assert_eq!(
            check(
                "POST",
                "/b",
                &[("content-type", "multipart/form-data; boundary=x")]
            ),
            Some("NotImplemented")
        );
        let v4 = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(check("GET", "/b/k", &[("authorization", v4)]), None);
        assert_eq!(
            check(
                "GET",
                "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00",
                &[]
            ),
            None
        );
        assert_eq!(check("POST", "/b/k?uploads", &[]), None);
        let h = http::HeaderMap::new();
        let v2 = "/b/k?AWSAccessKeyId=AKID&Expires=1&Signature=abc"
            .parse()
            .unwrap();
        assert_eq!(
            refused_scheme(&http::Method::GET, &v2, &h, true),
            None,
            "allowed by config"
        );
    }
}
