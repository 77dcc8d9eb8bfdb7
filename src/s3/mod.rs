//! The S3 front: s3s verifies signatures and decodes bodies; every request it lets through
//! arrives at [`Gateway`] (an `S3Route`), which classifies it ([`classify`]) and hands it
//! to the handler of its operation.
//!
//! Invariants:
//! - Every request is classified; only [`Class::Pass`] operations are forwarded as they are,
//!   [`Class::Transform`] operations go through their handler, everything else is answered
//!   NotImplemented with a message naming the operation.
//! - Handlers see decoded bucket/key/query and the client's headers; they never see the
//!   client's signature material in a form they could forward.
//!
//! Why a route rather than typed `S3` trait methods: see `docs/design/front.md`.

pub mod bucket_encryption;
pub mod checksum;
pub mod classify;
pub mod copy;
pub mod forward;
pub mod get;
pub mod head;
pub mod keys;
pub mod list;
pub mod multipart;
pub mod objmeta;
pub mod pass;
pub mod put;
pub mod sse;
pub mod target;
pub mod xml;

use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::auth::{AccessKeys, Principal};
use crate::error::Error;
use crate::upstream::Upstream;
use classify::{Class, Op, Unclassified};
use target::Target;

/// Everything the S3 handlers share.
#[derive(Debug)]
pub struct State {
    pub upstream: Upstream,
    pub access_keys: AccessKeys,
    /// Virtual-hosted-style base domain (requests to `BUCKET.<domain>`).
    pub vhost_domain: Option<String>,
    /// Largest body read into memory (XML bodies we must rewrite).
    pub max_buffered_body: usize,
    /// The embedded KMS (also reachable as the `embedded` backend).
    pub kms: crate::kms::Kms,
    /// The KMS backends data keys for objects come from (the only way the S3 path gets
    /// or unwraps data keys).
    pub backends: crate::keys::Backends,
    /// Encryption defaults and the plaintext-read policy.
    pub encryption: crate::config::EncryptionConfig,
    /// Bucket in the store holding sealgate's own settings; clients cannot reach it.
    pub state_bucket: String,
    /// Cache of bucket default-encryption rules.
    pub rules: bucket_encryption::RuleCache,
    /// Cache of plaintext sizes for listings.
    pub sizes: list::SizeCache,
    /// This instance's metrics.
    pub metrics: crate::metrics::SharedMetrics,
}

/// One request, classified and authenticated, as handlers see it.
pub struct Ctx {
    pub state: Arc<State>,
    pub op: Op,
    pub principal: Principal,
    pub method: Method,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query pairs in request order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Body,
    pub trailers: Option<s3s::TrailingHeaders>,
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
    /// sealgate's request id (also in the audit log).
    pub request_id: String,
}

/// Query parameters of presigned URLs (SigV4 and SigV2): the client's credentials,
/// verified by s3s and never forwarded.
fn is_presign_param(k: &str) -> bool {
    k.starts_with("X-Amz-") || matches!(k, "AWSAccessKeyId" | "Signature" | "Expires")
}

/// Per-request facts the listener knows, passed through s3s in request extensions.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub peer: std::net::IpAddr,
    pub id: String,
}

impl Ctx {
    /// Query pairs to send to the store: presigned-URL parameters are the client's
    /// credentials and are dropped.
    /// sealgate upload ids (`sg1.` tokens) become the store's upload id.
    pub fn forward_query(&self) -> Vec<(String, String)> {
        self.query
            .iter()
            .filter(|(k, _)| !is_presign_param(k))
            .map(
                |(k, v)| match (k.as_str(), multipart::UploadToken::decode(v)) {
                    ("uploadId", Ok(Some(t))) => (k.clone(), t.upstream_id),
                    _ => (k.clone(), v.clone()),
                },
            )
            .collect()
    }

    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// How KMS calls made for this request identify themselves (policy conditions, audit).
    pub fn kms_call(&self) -> crate::kms::CallContext {
        crate::kms::CallContext::s3(self.peer, Some(self.request_id.clone()))
    }

    /// Bucket and key of an object operation.
    pub fn object(&self) -> Result<(String, String), Error> {
        match (&self.bucket, &self.key) {
            (Some(b), Some(k)) => Ok((b.clone(), k.clone())),
            _ => Err(Error::Internal(format!(
                "{} without bucket and key",
                self.op.name()
            ))),
        }
    }
}

/// The classification result stashed by `is_match` for `call`.
#[derive(Clone)]
struct Classified {
    target: Target,
    op: Result<Op, Unclassified>,
}

/// The S3 route: every request s3s authenticated comes here.
#[derive(Clone)]
pub struct Gateway {
    pub state: Arc<State>,
}

/// The `S3` trait implementation behind the route. The route answers every request, so
/// nothing reaches these methods; s3s's default for each is NotImplemented, which is the
/// fail-closed answer should anything ever get here.
pub struct Unreachable;

#[async_trait::async_trait]
impl s3s::S3 for Unreachable {}

#[async_trait::async_trait]
impl S3Route for Gateway {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &mut Extensions,
    ) -> bool {
        let target = match Target::parse(uri, headers, self.state.vhost_domain.as_deref()) {
            Ok(t) => t,
            // Let s3s answer malformed paths with its own error.
            Err(_) => return false,
        };
        let op = classify::classify(
            method,
            target.shape,
            target.query.iter().map(|(k, _)| k.as_str()),
            headers,
        );
        extensions.insert(Classified { target, op });
        true
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let Some(cred) = &req.credentials else {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "sealgate requires signed requests (anonymous access is not allowed).",
            ));
        };
        let principal = self
            .state
            .access_keys
            .principal(&cred.access_key)
            .cloned()
            .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
        req.extensions.insert(principal);
        Ok(())
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let classified = req
            .extensions
            .remove::<Classified>()
            .ok_or_else(|| Error::Internal("request was not classified".into()))?;
        let principal = req
            .extensions
            .remove::<Principal>()
            .ok_or_else(|| Error::Internal("request has no principal".into()))?;
        let op = match classified.op {
            Ok(op) => op,
            Err(Unclassified::UnknownQueryKey(k)) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::NotImplemented,
                    format!(
                        "sealgate does not support the query parameter `{k}`; it refuses requests it cannot classify."
                    ),
                ));
            }
            Err(Unclassified::NoOperation) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::NotImplemented,
                    format!(
                        "sealgate does not support this request ({} {}).",
                        req.method,
                        req.uri.path()
                    ),
                ));
            }
        };
        if classified.target.bucket.as_deref() == Some(self.state.state_bucket.as_str()) {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "This bucket holds sealgate's own settings and is not accessible through sealgate.",
            ));
        }
        tracing::Span::current().record("op", op.name());
        let _ = crate::server::CURRENT_OP.try_with(|c| c.set(op.name()));
        if let Some(b) = &classified.target.bucket {
            tracing::Span::current().record("bucket", b.as_str());
        }
        let info = req.extensions.remove::<RequestInfo>();
        let ctx = Ctx {
            state: self.state.clone(),
            op,
            principal,
            method: req.method,
            bucket: classified.target.bucket,
            key: classified.target.key,
            query: classified.target.query,
            headers: req.headers,
            body: req.input,
            trailers: req.trailing_headers,
            peer: info.as_ref().map(|i| i.peer),
            request_id: info.map(|i| i.id).unwrap_or_default(),
        };
        dispatch(ctx).await.map_err(S3Error::from)
    }
}

async fn dispatch(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    match (ctx.op.class(), ctx.op) {
        (Class::Pass, _) => pass::forward(ctx).await,
        (Class::Transform, Op::PutObject) => put::put_object(ctx).await,
        (Class::Transform, Op::GetObject) => get::get_object(ctx).await,
        (Class::Transform, Op::HeadObject) => head::head_object(ctx).await,
        (Class::Transform, Op::CopyObject | Op::UploadPartCopy) => copy::copy(ctx).await,
        (Class::Transform, Op::CreateMultipartUpload) => multipart::create(ctx).await,
        (Class::Transform, Op::UploadPart) => multipart::upload_part(ctx).await,
        (Class::Transform, Op::CompleteMultipartUpload) => multipart::complete(ctx).await,
        (Class::Transform, Op::ListParts) => multipart::list_parts(ctx).await,
        (
            Class::Transform,
            Op::ListObjects | Op::ListObjectsV2 | Op::ListObjectVersions | Op::GetObjectAttributes,
        ) => list::list(ctx).await,
        (Class::Owned, _) => bucket_encryption::handle(ctx).await,
        (Class::Reject, op) | (Class::Transform, op) => Err(Error::Client(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!(
                "sealgate does not support {}: it cannot keep that operation's object bytes encrypted.",
                op.name()
            ),
        ))),
    }
}
