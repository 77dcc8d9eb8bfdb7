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

/// The query string's parameter names, decoded exactly as s3s decodes them
/// (`application/x-www-form-urlencoded`: `+` is a space, then percent-decoding, then
/// UTF-8 with replacement characters), so that a decision taken here on a name is the one
/// s3s would take: `Signatur%65` is `Signature`.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8_lossy()
            .into_owned()
    };
    query.split('&').filter(|p| !p.is_empty()).map(move |p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

/// The longest validity AWS accepts for a presigned URL (`X-Amz-Expires`): 7 days.
pub const MAX_PRESIGNED_EXPIRES: u64 = 604_800;

/// Authentication schemes refused before s3s sees the request: Signature Version 2
/// (header `Authorization: AWS id:sig` or a presigned URL with `AWSAccessKeyId` and
/// `Signature`). AWS deprecated V2; s3s compares V2 signatures in variable time and logs
/// the expected signature at debug, so sealgate accepts SigV4 only (browser form uploads
/// are verified by `s3::post`, SigV4 only as well). Also refused, as AWS does: a
/// presigned URL valid for more than 7 days. Returns the S3 error code and message.
///
/// The decision is taken on what s3s will act on: the decoded query names (s3s takes a
/// query with `Signature` down the V2 path whatever else it has) and every
/// `Authorization` header, and it is a superset of s3s's (names compared without case),
/// so nothing s3s would verify as V2 gets through.
pub fn refused_scheme(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    allow_v2: bool,
) -> Option<(&'static str, &'static str)> {
    let v2_header = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| {
            let v = v.as_bytes().trim_ascii_start();
            v.len() >= 4 && v[..4].eq_ignore_ascii_case(b"AWS ")
        });
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| query_pairs(q).collect())
        .unwrap_or_default();
    let has = |k: &str| query.iter().any(|(n, _)| n.eq_ignore_ascii_case(k));
    let v2_query = has("AWSAccessKeyId") || has("Signature");
    if !allow_v2 && (v2_header || v2_query) {
        return Some((
            "InvalidRequest",
            "Signature Version 2 is not supported; sign requests with AWS Signature Version 4.",
        ));
    }
    let too_long = query.iter().any(|(n, v)| {
        let v = v.trim();
        n.eq_ignore_ascii_case("X-Amz-Expires")
            && !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            // Digits beyond u64 are too long as well.
            && v.parse::<u64>().map_or(true, |s| s > MAX_PRESIGNED_EXPIRES)
    });
    if too_long {
        return Some((
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
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
        // The scheme does not depend on the method (form POSTs are verified by s3::post).
        let _ = method;
        refused_scheme(&uri.parse().unwrap(), &h, false).map(|r| r.0)
    }

    #[test]
    fn signature_v2_is_refused_and_sigv4_and_form_posts_pass() {
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
            None
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
        // s3s takes any query with `Signature` down the V2 path.
        assert_eq!(
            check("GET", "/b/k?X-Amz-Signature=00&Signature=abc", &[]),
            Some("InvalidRequest")
        );
        let h = http::HeaderMap::new();
        let v2 = "/b/k?AWSAccessKeyId=AKID&Expires=1&Signature=abc"
            .parse()
            .unwrap();
        assert_eq!(refused_scheme(&v2, &h, true), None, "allowed by config");
    }

    #[test]
    fn v2_is_recognised_on_the_decoded_query_and_on_every_authorization_header() {
        for uri in [
            "/b/k?AWSAccessKey%49d=AKID&Expires=1&Signatur%65=abc",
            "/b/k?%41%57%53AccessKeyId=AKID&Expires=1&%53ignature=abc",
            "/b/k?Expires=1&signature=abc",
            "/b/k?x=1&Signature",
        ] {
            assert_eq!(check("GET", uri, &[]), Some("InvalidRequest"), "{uri}");
        }
        let mut h = http::HeaderMap::new();
        let v4 = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        h.append("authorization", v4.parse().unwrap());
        h.append("authorization", "AWS AKID:c2ln".parse().unwrap());
        let uri = "/b/k".parse().unwrap();
        assert!(refused_scheme(&uri, &h, false).is_some());
        // Names that merely contain the V2 ones are not V2.
        assert_eq!(
            check("GET", "/b/k?MySignature=1&prefix=Signature", &[]),
            None
        );
    }

    #[test]
    fn presigned_urls_valid_for_more_than_a_week_are_refused() {
        let url = |e: &str| {
            format!("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={e}&X-Amz-Signature=00")
        };
        for ok in ["1", "3600", "604800"] {
            assert_eq!(check("GET", &url(ok), &[]), None, "{ok}");
        }
        for long in [
            "604801",
            "31536000",
            "99999999999999999999999",
            "%36%30%34%38%30%31",
        ] {
            assert_eq!(
                check("GET", &url(long), &[]),
                Some("AuthorizationQueryParametersError"),
                "{long}"
            );
        }
    }
}
