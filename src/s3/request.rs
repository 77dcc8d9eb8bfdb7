//! The typed request: what an S3 request means, parsed once from its target and headers
//! (with s3s's DTOs where they exist) before any handler runs.
//!
//! Invariants: handlers read request facts (version, part number, upload id, range, copy
//! source, SSE request) only from [`Request`], never from the raw query or headers again;
//! a fact an operation uses and that does not parse is refused here with the S3 error
//! AWS gives, and a fact an operation ignores is not parsed at all (S3 ignores a Range
//! header on a PUT, so must we).

use http::{HeaderMap, Method, Uri};
use s3s::dto::{CopySource, Range};

use super::classify::{self, Op, Shape, Unclassified};
use super::sse;
use super::target::Target;
use crate::error::Error;
use crate::object::{CustomerKey, ObjectRef, Sse, UploadToken};

/// Where a request points and which operation it is: computed by the listener before
/// s3s sees the request (the operation name is also the metrics label).
#[derive(Debug, Clone)]
pub struct Classified {
    pub target: Target,
    pub op: Result<Op, Unclassified>,
}

impl Classified {
    /// Classifies a request. `Err`: the path is malformed (s3s answers it).
    pub fn of(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        vhost_domain: Option<&str>,
    ) -> Option<Classified> {
        let target = Target::parse(uri, headers, vhost_domain).ok()?;
        let op = classify::classify(
            method,
            target.shape,
            target.query.iter().map(|(k, _)| k.as_str()),
            headers,
        );
        Some(Classified { target, op })
    }

    /// The operation's name, `-` when unclassified.
    pub fn op_name(&self) -> &'static str {
        self.op.as_ref().map_or("-", |op| op.name())
    }
}

/// The upload a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// An upload id sealgate handed out (it carries the envelope).
    Token(Box<UploadToken>),
    /// A store upload id (uploads started without sealgate's encryption).
    Store(String),
}

impl Upload {
    /// The id the store knows the upload by.
    pub fn store_id(&self) -> &str {
        match self {
            Upload::Token(t) => &t.upstream_id,
            Upload::Store(s) => s,
        }
    }
}

/// What a classified, authenticated request means.
#[derive(Debug, Clone)]
pub struct Request {
    pub op: Op,
    pub shape: Shape,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query pairs in request order.
    pub query: Vec<(String, String)>,
    /// `versionId` of an object operation.
    pub version_id: Option<String>,
    /// `partNumber` (GET/HEAD of a part, UploadPart, UploadPartCopy).
    pub part_number: Option<u32>,
    /// `uploadId` of a multipart operation.
    pub upload: Option<Upload>,
    /// The `Range` of a GET/HEAD; `None` also for ranges S3 ignores (malformed,
    /// several ranges), which serve the whole object.
    pub range: Option<Range>,
    /// The source of CopyObject/UploadPartCopy.
    pub copy_source: Option<ObjectRef>,
    /// The SSE headers of a write (PutObject, CreateMultipartUpload, CopyObject).
    pub sse: Option<Sse>,
    /// The customer key (SSE-C) of the object or upload the request names, on the
    /// operations that take one (for writes also in `sse`).
    pub ssec: Option<CustomerKey>,
    /// The customer key of the copy source (CopyObject, UploadPartCopy).
    pub copy_source_ssec: Option<CustomerKey>,
}

/// Whether an operation takes the SSE-C headers of its object (or upload). On every other
/// operation they are ignored, as AWS does, and never forwarded.
fn takes_customer_key(op: Op) -> bool {
    matches!(
        op,
        Op::PutObject
            | Op::GetObject
            | Op::HeadObject
            | Op::GetObjectAttributes
            | Op::CopyObject
            | Op::CreateMultipartUpload
            | Op::UploadPart
            | Op::UploadPartCopy
            | Op::CompleteMultipartUpload
            | Op::ListParts
    )
}

/// Whether an operation takes the SSE-C headers of a copy source.
fn takes_copy_source_key(op: Op) -> bool {
    matches!(op, Op::CopyObject | Op::UploadPartCopy)
}

/// Query parameters of presigned URLs (SigV4 and SigV2): the client's credentials,
/// verified by s3s and never forwarded.
/// GetObject/HeadObject query parameters that set a response header, and that header.
const RESPONSE_OVERRIDES: [(&str, &str); 6] = [
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

pub fn is_presign_param(k: &str) -> bool {
    k.starts_with("X-Amz-") || matches!(k, "AWSAccessKeyId" | "Signature" | "Expires")
}

fn parse_part_number(v: &str) -> Result<u32, Error> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(Error::invalid_part_number)
}

fn bad_source() -> Error {
    Error::invalid_argument(
        "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
    )
}

/// Parses `x-amz-copy-source` (`[/]bucket/key[?versionId=...]`, URL-encoded).
pub fn parse_copy_source(h: &HeaderMap) -> Result<ObjectRef, Error> {
    let raw = h
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad_source)?;
    match CopySource::parse(raw) {
        Ok(CopySource::Bucket { key, .. }) if key.is_empty() => Err(bad_source()),
        Ok(CopySource::Bucket {
            bucket,
            key,
            version_id,
        }) => Ok(ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            version_id: version_id.map(Into::into),
        }),
        Ok(_) => Err(Error::not_implemented(
            "sealgate supports copy sources of the form bucket/key only (no access points or outposts).",
        )),
        Err(_) => Err(bad_source()),
    }
}

impl Request {
    /// Parses the facts `op` uses from the classified target and the headers.
    /// `ssec_transport`: whether SSE-C may be used on this connection (TLS, or
    /// `encryption.allow_ssec_over_http`); AWS refuses SSE-C over plain HTTP before
    /// looking at the headers themselves.
    pub fn parse(
        op: Op,
        target: Target,
        headers: &HeaderMap,
        ssec_transport: bool,
    ) -> Result<Request, Error> {
        let customer = takes_customer_key(op) && sse::Trio::Object.present(headers);
        let copy_customer = takes_copy_source_key(op) && sse::Trio::CopySource.present(headers);
        if (customer || copy_customer) && !ssec_transport {
            return Err(sse::insecure_transport().into());
        }
        let q = |k: &str| {
            target
                .query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        for (param, _) in RESPONSE_OVERRIDES {
            if let Some(v) = q(param)
                && http::HeaderValue::from_str(v).is_err()
            {
                return Err(Error::invalid_argument(format!(
                    "The value of {param} cannot be sent as an HTTP header (it holds a control or non-ASCII character)"
                )));
            }
        }
        let object_op = target.shape == Shape::Object;
        let version_id = q("versionId").filter(|_| object_op).map(str::to_owned);
        let part_number = match (op, q("partNumber")) {
            (Op::GetObject | Op::HeadObject | Op::UploadPart | Op::UploadPartCopy, Some(v)) => {
                Some(parse_part_number(v)?)
            }
            (Op::UploadPart | Op::UploadPartCopy, None) => {
                return Err(Error::invalid_part_number());
            }
            _ => None,
        };
        let upload = match q("uploadId") {
            Some(id) if object_op => Some(match UploadToken::decode(id)? {
                Some(t) => Upload::Token(Box::new(t)),
                None => Upload::Store(id.to_string()),
            }),
            _ => None,
        };
        let range = match op {
            Op::GetObject | Op::HeadObject => headers
                .get(http::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Range::parse(v.trim()).ok()),
            _ => None,
        };
        let copy_source = match op {
            Op::CopyObject | Op::UploadPartCopy => Some(parse_copy_source(headers)?),
            _ => None,
        };
        let sse = match op {
            Op::PutObject | Op::CreateMultipartUpload | Op::CopyObject => sse::parse(headers)?,
            // The encryption of an object is chosen when it is written (AWS: 400).
            Op::GetObject | Op::HeadObject | Op::GetObjectAttributes | Op::UploadPart => {
                sse::refuse_on_read(headers)?;
                None
            }
            _ => None,
        };
        let ssec = match &sse {
            Some(s) if s.customer.is_some() => s.customer.clone(),
            _ if customer => {
                // A write's key was checked as a write's by `sse::parse`; the others are
                // compared with the object's (or upload's) key.
                let key_use = match op {
                    Op::UploadPart | Op::UploadPartCopy => sse::KeyUse::Write,
                    _ => sse::KeyUse::Read,
                };
                sse::parse_customer(headers, sse::Trio::Object, key_use)?
            }
            _ => None,
        };
        let copy_source_ssec = if copy_customer {
            sse::parse_customer(headers, sse::Trio::CopySource, sse::KeyUse::Read)?
        } else {
            None
        };
        if matches!(op, Op::ListObjects | Op::ListObjectsV2)
            && target
                .query
                .iter()
                .any(|(k, v)| k == "allow-unordered" && v == "true")
            && target
                .query
                .iter()
                .any(|(k, v)| k == "delimiter" && !v.is_empty())
        {
            // A Ceph RGW extension (AWS ignores it); RGW refuses it with a delimiter.
            return Err(Error::invalid_argument(
                "allow-unordered cannot be combined with a delimiter.",
            ));
        }
        Ok(Request {
            op,
            shape: target.shape,
            bucket: target.bucket,
            key: target.key,
            query: target.query,
            version_id,
            part_number,
            upload,
            range,
            copy_source,
            sse,
            ssec,
            copy_source_ssec,
        })
    }

    /// The value of a query parameter.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Query pairs to send to the store: presigned-URL parameters are the client's
    /// credentials and are dropped (as is `allow-unordered`, which only RGW knows), and so
    /// are the `response-*` header overrides, which sealgate applies itself after checking
    /// the stored headers (a store applying them would change headers the object's
    /// metadata authenticates); a sealgate upload id becomes the store's.
    pub fn forward_query(&self) -> Vec<(String, String)> {
        self.query
            .iter()
            .filter(|(k, _)| {
                !is_presign_param(k) && k != "allow-unordered" && !k.starts_with("response-")
            })
            .map(|(k, v)| match (k.as_str(), &self.upload) {
                ("uploadId", Some(u)) => (k.clone(), u.store_id().to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    }

    /// The response headers a GetObject/HeadObject asks to override (`response-*`
    /// query parameters): (header name, value).
    pub fn response_overrides(&self) -> Vec<(&'static str, &str)> {
        RESPONSE_OVERRIDES
            .iter()
            .filter_map(|(param, header)| self.query_value(param).map(|v| (*header, v)))
            .collect()
    }

    /// The query for reading the stored object behind this request: what the client sent
    /// minus presigned credentials and `partNumber` (an encrypted object's parts are
    /// sealgate's numbering, not the store's).
    pub fn object_query(&self) -> Vec<(String, String)> {
        self.forward_query()
            .into_iter()
            .filter(|(k, _)| k != "partNumber")
            .collect()
    }

    /// The object this request names (bucket, key, version).
    pub fn object(&self) -> Result<ObjectRef, Error> {
        match (&self.bucket, &self.key) {
            (Some(b), Some(k)) => Ok(ObjectRef {
                bucket: b.clone(),
                key: k.clone(),
                version_id: self.version_id.clone(),
            }),
            _ => Err(Error::Internal(format!(
                "{} without bucket and key",
                self.op.name()
            ))),
        }
    }

    /// The sealgate upload token, if the request names one.
    pub fn token(&self) -> Option<&UploadToken> {
        match &self.upload {
            Some(Upload::Token(t)) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<Request, Error> {
        req_over(method, uri, headers, false)
    }

    fn req_over(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        tls: bool,
    ) -> Result<Request, Error> {
        crate::test_support::s3_request(method, uri, headers, tls).0
    }

    const TRIO: [(&str, &str); 3] = [
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        (
            "x-amz-server-side-encryption-customer-key",
            "MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWY=",
        ),
        (
            "x-amz-server-side-encryption-customer-key-md5",
            "JMwgiexXqwuPqIPjYFmIZQ==",
        ),
    ];

    #[test]
    fn sse_c_needs_a_secure_transport_on_the_operations_that_take_it() {
        let msg = |r: Result<Request, Error>| {
            let e: s3s::S3Error = r.unwrap_err().into();
            (
                e.code().as_str().to_string(),
                e.message().unwrap().to_string(),
            )
        };
        let secure = (
            "InvalidRequest".to_string(),
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.".to_string(),
        );
        for (m, u) in [
            ("GET", "/b/k"),
            ("PUT", "/b/k"),
            ("HEAD", "/b/k"),
            ("POST", "/b/k?uploads"),
        ] {
            assert_eq!(msg(req(m, u, &TRIO)), secure, "{m} {u}");
            assert!(
                req_over(m, u, &TRIO, true).unwrap().ssec.is_some(),
                "{m} {u}"
            );
        }
        // Even a malformed trio: the transport is refused first.
        assert_eq!(msg(req("GET", "/b/k", &TRIO[..1])), secure);
        // A copy source's trio.
        let cs: Vec<(&str, &str)> = TRIO
            .iter()
            .map(|(k, v)| {
                (
                    k.replacen("x-amz-", "x-amz-copy-source-", 1).leak() as &str,
                    *v,
                )
            })
            .chain([("x-amz-copy-source", "src/k")])
            .collect();
        assert_eq!(msg(req("PUT", "/b/k", &cs)), secure);
        let r = req_over("PUT", "/b/k", &cs, true).unwrap();
        assert!(r.copy_source_ssec.is_some() && r.ssec.is_none() && r.sse.is_none());
        // Operations that do not take SSE-C ignore the headers (never forwarded).
        let r = req("GET", "/b?list-type=2", &TRIO).unwrap();
        assert!(r.ssec.is_none());
        assert!(req("DELETE", "/b/k", &TRIO).unwrap().ssec.is_none());
        // A write's trio is its SSE as well.
        let r = req_over("PUT", "/b/k", &TRIO, true).unwrap();
        assert_eq!(r.sse.unwrap().alg, crate::object::Alg::Customer);
    }

    #[test]
    fn facts_are_parsed_for_the_operations_that_use_them() {
        let r = req(
            "GET",
            "/b/k?partNumber=3&versionId=v1",
            &[("range", "bytes=0-9")],
        )
        .unwrap();
        assert_eq!(r.op, Op::GetObject);
        assert_eq!(r.part_number, Some(3));
        assert_eq!(r.version_id.as_deref(), Some("v1"));
        assert_eq!(
            r.range,
            Some(Range::Int {
                first: 0,
                last: Some(9)
            })
        );
        // A PUT ignores Range, as S3 does.
        let r = req("PUT", "/b/k", &[("range", "nonsense")]).unwrap();
        assert_eq!(r.range, None);
        // Ranges S3 ignores serve the whole object.
        let r = req("GET", "/b/k", &[("range", "bytes=0-1,3-4")]).unwrap();
        assert_eq!(r.range, None);
    }

    #[test]
    fn bad_part_numbers_and_upload_ids_are_refused_as_s3_does() {
        let e: s3s::S3Error = req("GET", "/b/k?partNumber=0", &[]).unwrap_err().into();
        assert_eq!(e.code().as_str(), "InvalidArgument");
        let e: s3s::S3Error = req("PUT", "/b/k?uploadId=x&partNumber=10001", &[])
            .unwrap_err()
            .into();
        assert_eq!(e.code().as_str(), "InvalidArgument");
        let e: s3s::S3Error = req("PUT", "/b/k?uploadId=sg1.!!&partNumber=1", &[])
            .unwrap_err()
            .into();
        assert_eq!(e.code().as_str(), "NoSuchUpload");
        let r = req("DELETE", "/b/k?uploadId=store-id", &[]).unwrap();
        assert_eq!(r.upload, Some(Upload::Store("store-id".into())));
    }

    #[test]
    fn copy_sources_parse_with_and_without_slash_and_version() {
        let r = req(
            "PUT",
            "/b/k",
            &[("x-amz-copy-source", "/src/dir/a%20b.txt?versionId=v1")],
        )
        .unwrap();
        assert_eq!(
            r.copy_source,
            Some(ObjectRef {
                bucket: "src".into(),
                key: "dir/a b.txt".into(),
                version_id: Some("v1".into())
            })
        );
        let r = req("PUT", "/b/k", &[("x-amz-copy-source", "src/k")]).unwrap();
        assert_eq!(r.copy_source, Some(ObjectRef::new("src", "k")));
        for bad in ["just-a-bucket", "src/"] {
            let e: s3s::S3Error = req("PUT", "/b/k", &[("x-amz-copy-source", bad)])
                .unwrap_err()
                .into();
            assert_eq!(e.code().as_str(), "InvalidArgument", "{bad}");
        }
    }

    #[test]
    fn forwarded_queries_drop_presigned_credentials_and_translate_upload_ids() {
        let r = req(
            "DELETE",
            "/b/k?uploadId=store-id&X-Amz-Signature=abc&Signature=x",
            &[],
        )
        .unwrap();
        assert_eq!(
            r.forward_query(),
            vec![("uploadId".to_string(), "store-id".to_string())]
        );
    }
}
