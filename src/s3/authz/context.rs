//! The request context of S3 authorization: the condition keys sealgate supplies and
//! their values for one request, as IAM defines them for S3.
//!
//! Invariants: [`KNOWN`] is the one list of condition keys a policy may use (anything else
//! is refused when the configuration is loaded); a key whose value does not exist in a
//! request (no header, no query parameter) is absent, never empty, so `Null`,
//! `...IfExists` and the negated operators behave as on AWS; names are lowercased (IAM
//! key names are case-insensitive). Request headers and query parameters only reach the
//! checks they belong to: SSE, ACL and copy headers the write checks, `s3:prefix` and its
//! kin the listing checks, nothing of the destination the copy source's read check.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::HeaderMap;

use super::table::{Check, Target};
use crate::auth::Principal;
use crate::kms::policy::ConditionMap;

/// What values a condition key takes (which operator families apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// String, ARN, Bool, IP: compared as text by the KMS policy engine.
    Text,
    /// Numeric operators (and String ones).
    Number,
    /// Date operators (and String ones).
    Date,
    /// `aws:EpochTime`: Date and Numeric operators.
    DateOrNumber,
}

/// Every condition key sealgate supplies for S3 requests (lowercase).
pub const KNOWN: &[(&str, KeyKind)] = &[
    ("aws:currenttime", KeyKind::Date),
    ("aws:epochtime", KeyKind::DateOrNumber),
    // Absent for access keys (as on AWS for long-term credentials without MFA).
    ("aws:multifactorauthpresent", KeyKind::Text),
    ("aws:principalaccount", KeyKind::Text),
    ("aws:principalarn", KeyKind::Text),
    ("aws:principaltype", KeyKind::Text),
    ("aws:referer", KeyKind::Text),
    ("aws:securetransport", KeyKind::Text),
    ("aws:sourceip", KeyKind::Text),
    ("aws:useragent", KeyKind::Text),
    ("aws:userid", KeyKind::Text),
    ("aws:username", KeyKind::Text),
    ("s3:authtype", KeyKind::Text),
    ("s3:delimiter", KeyKind::Text),
    ("s3:if-match", KeyKind::Text),
    ("s3:if-none-match", KeyKind::Text),
    ("s3:max-keys", KeyKind::Number),
    ("s3:prefix", KeyKind::Text),
    ("s3:resourceaccount", KeyKind::Text),
    ("s3:signatureversion", KeyKind::Text),
    ("s3:versionid", KeyKind::Text),
    ("s3:x-amz-acl", KeyKind::Text),
    ("s3:x-amz-content-sha256", KeyKind::Text),
    ("s3:x-amz-copy-source", KeyKind::Text),
    ("s3:x-amz-grant-full-control", KeyKind::Text),
    ("s3:x-amz-grant-read", KeyKind::Text),
    ("s3:x-amz-grant-read-acp", KeyKind::Text),
    ("s3:x-amz-grant-write", KeyKind::Text),
    ("s3:x-amz-grant-write-acp", KeyKind::Text),
    ("s3:x-amz-metadata-directive", KeyKind::Text),
    ("s3:x-amz-server-side-encryption", KeyKind::Text),
    (
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        KeyKind::Text,
    ),
    (
        "s3:x-amz-server-side-encryption-customer-algorithm",
        KeyKind::Text,
    ),
    ("s3:x-amz-storage-class", KeyKind::Text),
    ("s3:x-amz-website-redirect-location", KeyKind::Text),
];

/// The kind of a condition key, `None` if sealgate does not supply it.
pub fn kind(key: &str) -> Option<KeyKind> {
    let lower = key.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|(k, _)| *k == lower.as_str())
        .map(|(_, kind)| *kind)
}

/// Request headers whose value is an `s3:` condition key of the write checks.
const WRITE_HEADERS: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write",
    "x-amz-grant-write-acp",
    "x-amz-metadata-directive",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "if-match",
    "if-none-match",
];

/// `aws:userid`: for a user `ACCOUNT:NAME`, for the root the account id (the
/// `principalId` the audit log records for them).
pub fn user_id(p: &Principal) -> String {
    if p.is_root {
        p.account.clone()
    } else {
        format!("{}:{}", p.account, p.name)
    }
}

/// `aws:PrincipalType`.
pub fn principal_type(p: &Principal) -> &'static str {
    if p.is_root { "Account" } else { "User" }
}

/// How the request was authenticated (`s3:authType`, `s3:signatureversion`).
fn auth_scheme(headers: &HeaderMap, query: &[(String, String)]) -> (&'static str, &'static str) {
    let has = |k: &str| query.iter().any(|(n, _)| n.eq_ignore_ascii_case(k));
    match headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
    {
        Some(v) if v.starts_with(b"AWS4-") => ("REST-HEADER", "AWS4-HMAC-SHA256"),
        Some(_) => ("REST-HEADER", "AWS"),
        None if has("X-Amz-Signature") => ("REST-QUERY-STRING", "AWS4-HMAC-SHA256"),
        None => ("REST-QUERY-STRING", "AWS"),
    }
}

/// Everything about one request that condition keys can see.
pub struct RequestView<'a> {
    pub principal: &'a Principal,
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    pub source_ip: Option<IpAddr>,
    pub secure_transport: bool,
    /// The KMS key the request names, resolved to its ARN where the embedded KMS knows it.
    pub kms_key_arn: Option<String>,
    /// UploadPart, UploadPartCopy, CompleteMultipartUpload: the upload's SSE algorithm
    /// and KMS key (they send no SSE headers; CreateMultipartUpload did).
    pub upload_sse: Option<(&'static str, Option<String>)>,
    /// `bucket/key` of CopyObject/UploadPartCopy (decoded, no leading slash).
    pub copy_source: Option<String>,
    /// Milliseconds since the epoch.
    pub now_ms: i64,
}

/// The condition values of a request: the keys every check sees, plus those of its
/// write and listing checks.
#[derive(Debug, Clone, Default)]
pub struct Context {
    common: BTreeMap<String, String>,
    write: BTreeMap<String, String>,
    list: BTreeMap<String, String>,
    version_id: Option<String>,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

impl Context {
    pub fn new(v: &RequestView<'_>) -> Context {
        let mut common = BTreeMap::new();
        let put = |m: &mut BTreeMap<String, String>, k: &str, val: Option<String>| {
            if let Some(val) = val {
                m.insert(k.to_string(), val);
            }
        };
        let p = v.principal;
        let secs = v.now_ms.div_euclid(1000);
        put(
            &mut common,
            "aws:currenttime",
            Some(crate::kms::audit::format_time(v.now_ms)),
        );
        put(&mut common, "aws:epochtime", Some(secs.to_string()));
        put(&mut common, "aws:principalaccount", Some(p.account.clone()));
        put(&mut common, "aws:principalarn", Some(p.arn()));
        put(
            &mut common,
            "aws:principaltype",
            Some(principal_type(p).into()),
        );
        put(&mut common, "aws:referer", header(v.headers, "referer"));
        put(
            &mut common,
            "aws:securetransport",
            Some(v.secure_transport.to_string()),
        );
        put(
            &mut common,
            "aws:sourceip",
            v.source_ip.map(|ip| ip.to_string()),
        );
        put(
            &mut common,
            "aws:useragent",
            header(v.headers, "user-agent"),
        );
        put(&mut common, "aws:userid", Some(user_id(p)));
        put(
            &mut common,
            "aws:username",
            (!p.is_root).then(|| p.name.clone()),
        );
        let (auth, sig) = auth_scheme(v.headers, v.query);
        put(&mut common, "s3:authtype", Some(auth.into()));
        put(&mut common, "s3:signatureversion", Some(sig.into()));
        put(&mut common, "s3:resourceaccount", Some(p.account.clone()));
        put(
            &mut common,
            "s3:x-amz-content-sha256",
            header(v.headers, "x-amz-content-sha256"),
        );

        let mut write = BTreeMap::new();
        for h in WRITE_HEADERS {
            put(&mut write, &format!("s3:{h}"), header(v.headers, h));
        }
        put(
            &mut write,
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            v.kms_key_arn.clone(),
        );
        put(&mut write, "s3:x-amz-copy-source", v.copy_source.clone());
        if let Some((alg, key)) = &v.upload_sse
            && !write.contains_key("s3:x-amz-server-side-encryption")
        {
            put(
                &mut write,
                "s3:x-amz-server-side-encryption",
                Some(alg.to_string()),
            );
            put(
                &mut write,
                "s3:x-amz-server-side-encryption-aws-kms-key-id",
                key.clone(),
            );
        }

        let q = |k: &str| {
            v.query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, val)| val.clone())
        };
        let mut list = BTreeMap::new();
        put(&mut list, "s3:prefix", q("prefix"));
        put(&mut list, "s3:delimiter", q("delimiter"));
        // IAM: "always present" for ListBucket; S3's default is 1000.
        put(
            &mut list,
            "s3:max-keys",
            Some(q("max-keys").unwrap_or_else(|| "1000".into())),
        );
        Context {
            common,
            write,
            list,
            version_id: q("versionId"),
        }
    }

    /// The condition keys `check` is evaluated with.
    pub fn for_check(&self, check: &Check) -> ConditionMap {
        let mut keys = ConditionMap::new();
        for (k, v) in self.values_for(check) {
            keys.set(&k, [v]);
        }
        keys
    }

    /// The condition values of `check`, by lowercase key.
    fn values_for(&self, check: &Check) -> BTreeMap<String, String> {
        let mut m = self.common.clone();
        match &check.target {
            Target::CopySource { version_id, .. } => {
                if let Some(v) = version_id {
                    m.insert("s3:versionid".into(), v.clone());
                }
                return m;
            }
            Target::Object | Target::DeleteKey { .. } => {}
            Target::Bucket | Target::Service => {}
        }
        let version = match &check.target {
            Target::DeleteKey { version_id, .. } => version_id.clone(),
            Target::Object => self.version_id.clone(),
            _ => None,
        };
        if let Some(v) = version {
            m.insert("s3:versionid".into(), v);
        }
        if check.lists {
            m.extend(self.list.clone());
        } else {
            m.extend(self.write.clone());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::policy::ConditionKeys;

    fn view<'a>(p: &'a Principal, h: &'a HeaderMap, q: &'a [(String, String)]) -> RequestView<'a> {
        RequestView {
            principal: p,
            headers: h,
            query: q,
            source_ip: Some("192.0.2.7".parse().unwrap()),
            secure_transport: false,
            kms_key_arn: None,
            upload_sse: None,
            copy_source: None,
            now_ms: 1_769_817_600_000,
        }
    }

    #[test]
    fn every_supplied_key_is_known_and_absent_values_are_absent() {
        let p = Principal {
            name: "bob".into(),
            account: "111122223333".into(),
            is_root: false,
        };
        let mut h = HeaderMap::new();
        h.insert("x-amz-server-side-encryption", "aws:kms".parse().unwrap());
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=x".parse().unwrap(),
        );
        let q = vec![("prefix".to_string(), String::new())];
        let c = Context::new(&view(&p, &h, &q));
        let write = Check::test_object("s3:PutObject");
        let w = c.values_for(&write);
        assert_eq!(w["s3:x-amz-server-side-encryption"], "aws:kms");
        // What the policy engine sees: the same values, key names case-insensitive.
        let keys = c.for_check(&write);
        let sse = keys.values("S3:x-amz-server-side-encryption").unwrap();
        assert_eq!(sse, ["aws:kms"]);
        assert!(keys.values("s3:prefix").is_none());
        assert_eq!(w["aws:securetransport"], "false");
        assert_eq!(w["aws:sourceip"], "192.0.2.7");
        assert_eq!(w["aws:username"], "bob");
        assert_eq!(w["aws:userid"], "111122223333:bob");
        assert_eq!(w["aws:currenttime"], "2026-01-31T00:00:00Z");
        assert_eq!(w["aws:epochtime"], "1769817600");
        assert_eq!(w["s3:authtype"], "REST-HEADER");
        assert_eq!(w["s3:signatureversion"], "AWS4-HMAC-SHA256");
        assert!(!w.contains_key("s3:prefix") && !w.contains_key("s3:x-amz-acl"));
        let list = Check::test_list("s3:ListBucket");
        let l = c.values_for(&list);
        assert_eq!(l["s3:prefix"], "", "sent empty: present");
        assert_eq!(l["s3:max-keys"], "1000");
        assert!(!l.contains_key("s3:delimiter"));
        assert!(!l.contains_key("s3:x-amz-server-side-encryption"));
        for m in [&w, &l] {
            for k in m.keys() {
                assert!(kind(k).is_some(), "{k} is supplied but not in KNOWN");
            }
        }
        // Presigned, and the root has no user name.
        let root = Principal {
            is_root: true,
            ..p.clone()
        };
        let q = vec![("X-Amz-Signature".to_string(), "00".to_string())];
        let c = Context::new(&view(&root, &HeaderMap::new(), &q));
        let r = c.values_for(&write);
        assert_eq!(r["s3:authtype"], "REST-QUERY-STRING");
        assert!(!r.contains_key("aws:username"));
        assert_eq!(r["aws:principaltype"], "Account");
    }

    /// A copy's source is read under the source's facts only: its version, never the
    /// destination's SSE or copy headers; the destination's write check sees those.
    #[test]
    fn copy_sources_and_versions_see_their_own_keys() {
        let p = Principal {
            name: "bob".into(),
            account: "111122223333".into(),
            is_root: false,
        };
        let mut h = HeaderMap::new();
        h.insert("x-amz-server-side-encryption", "aws:kms".parse().unwrap());
        h.insert("x-amz-metadata-directive", "REPLACE".parse().unwrap());
        let q = vec![("versionId".to_string(), "v-dest".to_string())];
        let mut v = view(&p, &h, &q);
        v.kms_key_arn = Some("arn:aws:kms:us-east-1:111122223333:key/k".into());
        v.copy_source = Some("src/a b".into());
        let c = Context::new(&v);
        let source = Check {
            action: "s3:GetObjectVersion",
            target: Target::CopySource {
                bucket: "src".into(),
                key: "a b".into(),
                version_id: Some("v-src".into()),
            },
            lists: false,
        };
        let s = c.values_for(&source);
        assert_eq!(s["s3:versionid"], "v-src");
        for k in [
            "s3:x-amz-server-side-encryption",
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            "s3:x-amz-copy-source",
            "s3:x-amz-metadata-directive",
        ] {
            assert!(!s.contains_key(k), "{k} reached the source's check");
        }
        let d = c.values_for(&Check::test_object("s3:PutObject"));
        assert_eq!(d["s3:x-amz-copy-source"], "src/a b");
        assert_eq!(d["s3:x-amz-metadata-directive"], "REPLACE");
        assert_eq!(
            d["s3:x-amz-server-side-encryption-aws-kms-key-id"],
            "arn:aws:kms:us-east-1:111122223333:key/k"
        );
        assert_eq!(d["s3:versionid"], "v-dest");
        // A DeleteObjects entry carries its own version, not the request's.
        let entry = Check {
            action: "s3:DeleteObjectVersion",
            target: Target::DeleteKey {
                key: "k".into(),
                version_id: Some("v-entry".into()),
            },
            lists: false,
        };
        assert_eq!(c.values_for(&entry)["s3:versionid"], "v-entry");
        // A bucket check has no version.
        assert!(
            !c.values_for(&Check::test_list("s3:ListBucket"))
                .contains_key("s3:versionid")
        );
    }

    /// UploadPart and CompleteMultipartUpload send no SSE header: their SSE keys are the
    /// upload's, so a policy requiring aws:kms lets an SSE-KMS upload's parts through.
    #[test]
    fn the_requests_of_an_upload_see_its_encryption() {
        let p = Principal {
            name: "bob".into(),
            account: "111122223333".into(),
            is_root: false,
        };
        let h = HeaderMap::new();
        let mut v = view(&p, &h, &[]);
        let key = "arn:aws:kms:us-east-1:111122223333:key/k";
        v.upload_sse = Some(("aws:kms", Some(key.into())));
        let w = Context::new(&v).values_for(&Check::test_object("s3:PutObject"));
        assert_eq!(w["s3:x-amz-server-side-encryption"], "aws:kms");
        assert_eq!(w["s3:x-amz-server-side-encryption-aws-kms-key-id"], key);
        v.upload_sse = Some(("AES256", None));
        let w = Context::new(&v).values_for(&Check::test_object("s3:PutObject"));
        assert_eq!(w["s3:x-amz-server-side-encryption"], "AES256");
        assert!(!w.contains_key("s3:x-amz-server-side-encryption-aws-kms-key-id"));
        // A header the request does send is what counts.
        let mut h = HeaderMap::new();
        h.insert("x-amz-server-side-encryption", "AES256".parse().unwrap());
        let mut v = view(&p, &h, &[]);
        v.upload_sse = Some(("aws:kms", Some(key.into())));
        let w = Context::new(&v).values_for(&Check::test_object("s3:PutObject"));
        assert_eq!(w["s3:x-amz-server-side-encryption"], "AES256");
    }
}
