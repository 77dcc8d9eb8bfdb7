//! The S3 front: s3s verifies signatures and decodes bodies; every request it lets through
//! arrives at [`Gateway`] (an `S3Route`), already classified by the listener
//! ([`request::Classified`]), is parsed once into a typed [`request::Request`] and goes to
//! the handler of its operation.
//!
//! Invariants:
//! - Every request is classified; only [`Class::Pass`] operations are forwarded as they are,
//!   [`Class::Transform`] operations go through their handler, everything else is answered
//!   NotImplemented with a message naming the operation.
//! - Handlers see decoded bucket/key/query and the client's headers; they never see the
//!   client's signature material in a form they could forward.
//! - Handlers share code through the object layer (`crate::object`) and the modules
//!   `forward`, `body`, `sse`, `checksum`, `request` — never through each other.
//!
//! Why a route rather than typed `S3` trait methods: see `docs/design/front.md`.

pub mod authz;
pub mod body;
pub mod bucket_encryption;
pub mod checksum;
pub mod classify;
pub mod complete;
pub mod conditions;
pub mod copy;
pub mod cors;
pub mod forward;
pub mod get;
pub mod head;
pub mod list;
pub mod multipart;
pub mod pass;
pub mod plaintext;
pub mod post;
pub mod put;
pub mod request;
pub mod rules;
pub mod source;
pub mod sse;
pub mod target;
pub mod upload;

use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{Body, S3Error, S3Request, S3Response, S3Result};

use crate::auth::{AccessKeys, Principal};
use crate::error::Error;
use crate::keys::Caller;
use crate::object::Objects;
use crate::upstream::Upstream;
use classify::{Class, Op, Unclassified};
use request::{Classified, Request};

/// Everything the S3 handlers share.
#[derive(Debug)]
pub struct State {
    /// The store, for pass-through operations.
    pub upstream: Upstream,
    /// The object layer (store, data-key providers) for operations on object bytes.
    pub objects: Objects,
    pub access_keys: AccessKeys,
    /// Virtual-hosted-style base domain (requests to `BUCKET.<domain>`).
    pub vhost_domain: Option<String>,
    /// Largest body read into memory (XML bodies we must rewrite).
    pub max_buffered_body: usize,
    /// The embedded KMS (also reachable as the `embedded` backend).
    pub kms: crate::kms::Kms,
    /// Encryption defaults and the plaintext-read policy.
    pub encryption: crate::config::EncryptionConfig,
    /// Bucket in the store holding sealgate's own settings; clients cannot reach it.
    pub state_bucket: String,
    /// This instance's metrics.
    pub metrics: crate::metrics::SharedMetrics,
    /// Buckets' CORS configurations, cached briefly (`cors`).
    pub cors: cors::Cors,
}

/// One request, classified and authenticated, as handlers see it.
pub struct Ctx {
    pub state: Arc<State>,
    /// What the request means (operation, target, parsed facts).
    pub req: Request,
    pub principal: Principal,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Body,
    pub trailers: Option<s3s::TrailingHeaders>,
    /// How KMS calls made for this request identify themselves (policy conditions, audit).
    pub call: crate::kms::CallContext,
}

/// Per-request facts the listener knows, passed through s3s in request extensions.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub peer: std::net::IpAddr,
    pub id: String,
    /// The client connection is TLS (`aws:SecureTransport`; SSE-C needs it, as on AWS).
    pub secure: bool,
}

impl Ctx {
    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// The caller of data-key operations: this request's principal.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            call: &self.call,
        }
    }

    pub fn objects(&self) -> &Objects {
        &self.state.objects
    }

    /// Opens the sealgate object `obj` that the store's answer `head` (to a HEAD or GET
    /// of the whole object) describes with `meta`, as this request's caller with its SSE-C
    /// key; with the ETag clients see for it.
    pub async fn open_described(
        &self,
        obj: &crate::object::ObjectRef,
        meta: crate::object::ObjectMeta,
        head: &crate::upstream::UpResponse,
    ) -> Result<
        (
            crate::object::ObjectMeta,
            crate::crypto::stream::Dek,
            String,
        ),
        Error,
    > {
        let (meta, dek) = self
            .objects()
            .open(
                self.caller(),
                meta,
                self.req.ssec.as_ref(),
                obj,
                head.content_length(),
            )
            .await?;
        let etag = self
            .objects()
            .client_etag(obj, &meta, &dek, head.headers())
            .await?;
        Ok((meta, dek, etag))
    }

    /// Sends this request's operation to the store with `headers` and `body`.
    pub async fn forward(
        &self,
        headers: HeaderMap,
        body: crate::upstream::UpBody,
    ) -> Result<crate::upstream::UpResponse, Error> {
        self.send(forward::up_request(self, headers, body)).await
    }

    /// Sends `req` to the store.
    pub async fn send(
        &self,
        req: crate::upstream::UpRequest,
    ) -> Result<crate::upstream::UpResponse, Error> {
        Ok(self.state.upstream.send(req).await?)
    }
}

/// The S3 route: every request s3s authenticated comes here.
#[derive(Clone)]
pub struct Gateway {
    pub state: Arc<State>,
    /// Each access key's identity policies and store credential.
    pub authz: Arc<authz::Authz>,
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
        if extensions.get::<Classified>().is_some() {
            return true;
        }
        // Not classified by the listener (a caller of the s3s service of its own): do it
        // here. A malformed path is left to s3s's own error.
        match Classified::of(method, uri, headers, self.state.vhost_domain.as_deref()) {
            Some(c) => {
                extensions.insert(c);
                true
            }
            None => false,
        }
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let Some(cred) = &req.credentials else {
            return Err(Error::access_denied(
                "sealgate requires signed requests (anonymous access is not allowed).",
            )
            .into());
        };
        let principal = self
            .state
            .access_keys
            .principal(&cred.access_key)
            .cloned()
            .ok_or_else(|| S3Error::new(s3s::S3ErrorCode::InvalidAccessKeyId))?;
        let identity = self
            .authz
            .identity(&cred.access_key)
            .ok_or_else(|| Error::Internal("access key without an identity".into()))?;
        req.extensions.insert(principal);
        req.extensions.insert(identity);
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
        let identity = req
            .extensions
            .remove::<Arc<authz::Identity>>()
            .ok_or_else(|| Error::Internal("request has no identity".into()))?;
        let op = match classified.op {
            Ok(op) => op,
            Err(Unclassified::UnknownQueryKey(k)) => {
                return Err(Error::not_implemented(format!(
                    "sealgate does not support the query parameter `{k}`; it refuses requests it cannot classify."
                ))
                .into());
            }
            Err(Unclassified::NoOperation) => {
                return Err(Error::not_implemented(format!(
                    "sealgate does not support this request ({} {}).",
                    req.method,
                    req.uri.path()
                ))
                .into());
            }
        };
        let is_state = |b: &str| b.eq_ignore_ascii_case(&self.state.state_bucket);
        let state_denied = || {
            Error::access_denied(
                "This bucket holds sealgate's own settings and is not accessible through sealgate.",
            )
        };
        if classified.target.bucket.as_deref().is_some_and(is_state) {
            return Err(state_denied().into());
        }
        tracing::Span::current().record("op", op.name());
        if let Some(b) = &classified.target.bucket {
            tracing::Span::current().record("bucket", b.as_str());
        }
        let info = req.extensions.remove::<RequestInfo>();
        // A request without listener facts (a caller of the s3s service of its own) is not
        // known to have come over TLS.
        let ssec_transport =
            info.as_ref().is_some_and(|i| i.secure) || self.state.encryption.allow_ssec_over_http;
        let head = req.method == Method::HEAD;
        let parsed = match Request::parse(op, classified.target, &req.headers, ssec_transport) {
            Ok(p) => p,
            Err(e) => return answer_error(e, head),
        };
        // Nor as the source of a copy (the header is decoded by now: `%2e`, `..` and
        // percent-encoded names arrive here as the bucket name they stand for).
        if parsed
            .copy_source
            .as_ref()
            .is_some_and(|s| is_state(&s.bucket))
        {
            return Err(state_denied().into());
        }
        let secure = info.as_ref().is_some_and(|i| i.secure);
        let ctx = Ctx {
            state: self.state.clone(),
            req: parsed,
            principal,
            method: req.method,
            headers: req.headers,
            body: req.input,
            trailers: req.trailing_headers,
            call: crate::kms::CallContext::s3(info.as_ref().map(|i| i.peer), info.map(|i| i.id)),
        };
        // Authorization (identity policies) before any handler runs.
        match authz::run(&identity, ctx, secure, dispatch).await {
            Ok(r) => Ok(r),
            Err(e) => answer_error(e, head),
        }
    }
}

/// A handler's error as the client gets it: s3s's error document, or one naming the
/// offending header (which s3s's documents cannot).
fn answer_error(e: Error, head: bool) -> S3Result<S3Response<Body>> {
    match e {
        Error::Argument(a) => Ok(a.response(head)),
        e => Err(S3Error::from(e)),
    }
}

/// Runs the handler of the request's operation (also used by `post` for the PutObject a
/// form upload stands for).
async fn dispatch(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    match (ctx.req.op.class(), ctx.req.op) {
        (Class::Pass, _) => pass::forward(ctx).await,
        (Class::Transform, Op::PutObject) => put::put_object(ctx).await,
        (Class::Transform, Op::GetObject | Op::HeadObject) => {
            let overrides: Vec<(&'static str, String)> = (ctx.req.response_overrides().iter())
                .map(|(h, v)| (*h, v.to_string()))
                .collect();
            let out = if ctx.req.op == Op::GetObject {
                get::get_object(ctx).await?
            } else {
                head::head_object(ctx).await?
            };
            Ok(plaintext::with_overrides(out, &overrides))
        }
        (Class::Transform, Op::CopyObject) => copy::copy_object(ctx).await,
        (Class::Transform, Op::UploadPartCopy) => multipart::upload_part_copy(ctx).await,
        (Class::Transform, Op::CreateMultipartUpload) => multipart::create(ctx).await,
        (Class::Transform, Op::UploadPart) => multipart::upload_part(ctx).await,
        (Class::Transform, Op::CompleteMultipartUpload) => complete::complete(ctx).await,
        (Class::Transform, Op::AbortMultipartUpload) => multipart::abort(ctx).await,
        (Class::Transform, Op::ListMultipartUploads) => multipart::list_uploads(ctx).await,
        (Class::Transform, Op::ListParts) => multipart::list_parts(ctx).await,
        (Class::Transform, Op::GetObjectAttributes) => list::attributes(ctx).await,
        // The listener answers every POST Object itself (`post::serve`), before s3s,
        // which would read the whole file into memory; none reaches the route.
        (Class::Transform, Op::PostObject) => Err(Error::Internal(
            "a POST Object request reached the S3 route; the listener answers them".into(),
        )),
        (Class::Transform, Op::ListObjects | Op::ListObjectsV2 | Op::ListObjectVersions) => {
            list::list(ctx).await
        }
        (Class::Owned, _) => bucket_encryption::handle(ctx).await,
        (Class::Reject, op) | (Class::Transform, op) => Err(Error::not_implemented(format!(
            "sealgate does not support {}: it cannot keep that operation's object bytes encrypted.",
            op.name()
        ))),
    }
}
