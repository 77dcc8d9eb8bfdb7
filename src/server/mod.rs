//! The listener: accepts connections (plain or TLS), routes `/health` and KMS API requests,
//! hands everything else to the s3s service, and shuts down gracefully.
//!
//! Invariants: one tracing span per request (request id, method, operation, bucket,
//! status, duration, bytes); a response body that fails mid-stream aborts the connection
//! (hyper never ends such a response cleanly); a connection with no request in progress
//! is closed after the idle deadline, and at `limits.max_connections` the one idle the
//! longest is closed to make room for a new client (`limits::conns`); on shutdown no new
//! connection is accepted and in-flight requests get a bounded time to finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use s3s::Body;
use s3s::service::{S3Service, S3ServiceBuilder};
use tracing::Instrument;

mod listener;

pub use listener::serve;
use listener::tls_acceptor;

use crate::config::Config;
use crate::limits::conns::{RequestGuard, Tracked};
use crate::limits::{BodyEnded, IdleTimeout};
use crate::s3::{Gateway, State, Unreachable};
use crate::upstream::Upstream;

/// A client's request body, failing when it stalls (`limits.body_idle_timeout_secs`).
type ClientBody = IdleTimeout<Incoming>;

/// The running application: everything a request needs.
pub struct App {
    s3: S3Service,
    /// Identity policies per access key (the POST Object path authorizes with them too).
    authz: Arc<crate::s3::authz::Authz>,
    /// The store client, for readiness probes.
    probe: Upstream,
    /// Shared S3 state (its KMS backends are probed by `/ready`).
    state: Arc<State>,
    metrics: crate::metrics::SharedMetrics,
    kms: crate::kms::Kms,
    access_keys: crate::auth::AccessKeys,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connection and request limits (timeouts, header sizes, connection count).
    limits: crate::limits::LimitsConfig,
    /// Whether Signature Version 2 requests are passed to s3s (`allow_signature_v2`).
    allow_signature_v2: bool,
    /// Bearer token `/metrics` requires, if any (`metrics_token`).
    metrics_token: Option<crate::config::Secret>,
    next_id: AtomicU64,
    id_prefix: String,
}

impl std::fmt::Debug for App {
    /// Everything but the s3s service (which has no `Debug`); secrets are redacted by
    /// their own types.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("probe", &self.probe)
            .field("kms", &self.kms)
            .field("access_keys", &self.access_keys)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the application from a validated config.
    pub fn new(cfg: &Config) -> Result<Arc<App>, String> {
        let upstream = Upstream::new(&cfg.upstream)?;
        let access_keys = cfg.access_key_table();
        let root = crate::unseal::root_key(cfg).map_err(|e| format!("kms: {e}"))?;
        let kms =
            crate::kms::Kms::open_with_root_key(&cfg.kms, Arc::new(crate::kms::SystemClock), root)
                .map_err(|e| format!("kms: {e}"))?;
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let upstream = upstream
            .with_error_counter(metrics.upstream_errors.clone())
            .with_request_counter(metrics.upstream_requests.clone());
        let probe = upstream.clone();
        let backends = crate::keys::Backends::new(&cfg.kms_backend, kms.clone(), metrics.clone())?;
        let objects = crate::object::Objects {
            store: upstream.clone(),
            keys: backends,
            metrics: metrics.clone(),
            known: Default::default(),
            state_bucket: cfg.state_bucket.clone(),
            manifests: Default::default(),
        };
        let state = Arc::new(State {
            upstream,
            objects,
            access_keys: access_keys.clone(),
            vhost_domain: cfg.virtual_host_domain.clone(),
            max_buffered_body: cfg.max_buffered_body,
            kms: kms.clone(),
            encryption: cfg.encryption.clone(),
            state_bucket: cfg.state_bucket.clone(),
            metrics: metrics.clone(),
            cors: Default::default(),
        });
        let authz = Arc::new(
            crate::s3::authz::Authz::from_config(cfg).map_err(|(f, r)| format!("{f}: {r}"))?,
        );
        let mut b = S3ServiceBuilder::new(Unreachable);
        b.set_auth(access_keys.clone());
        b.set_route(Gateway {
            state: state.clone(),
            authz: authz.clone(),
        });
        if let Some(d) = &cfg.virtual_host_domain {
            b.set_host(crate::s3::target::VirtualHosts::new(d));
        }
        let tls = match &cfg.tls {
            Some(t) => Some(tls_acceptor(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let id_prefix = format!("{:08X}", rand_u32());
        Ok(Arc::new(App {
            s3: b.build(),
            authz,
            probe,
            state,
            metrics,
            kms,
            access_keys,
            tls,
            limits: cfg.limits.clone(),
            allow_signature_v2: cfg.allow_signature_v2,
            metrics_token: cfg.metrics_token.clone(),
            next_id: AtomicU64::new(1),
            id_prefix,
        }))
    }

    fn request_id(&self) -> String {
        format!(
            "{}{:010X}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Answers one request; `in_progress` keeps its connection busy (not idle, so never
    /// closed by the idle deadline or evicted) until the response body has been sent.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        in_progress: RequestGuard,
    ) -> Result<Response<Tracked<Body>>, Infallible> {
        let resp = self.answer(req, peer).await;
        Ok(resp.map(|b| Tracked::new(b, in_progress)))
    }

    async fn answer(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let id = self.request_id();
        let span = tracing::info_span!(
            "request",
            id = %id,
            peer = %peer.ip(),
            method = %req.method(),
            op = tracing::field::Empty,
            bucket = tracing::field::Empty,
        );
        let start = Instant::now();
        if crate::limits::head_bytes(&req) > self.limits.max_header_bytes {
            let _e = span.enter();
            tracing::info!(
                status = 431,
                "request head larger than limits.max_header_bytes"
            );
            let mut r = plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large\n",
            );
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return r;
        }
        let close_after = unanswerable_continue(&req);
        // An HTTP/1 request whose body is not read to its end before the answer (refused
        // early): its connection must close, or the unread bytes would be read as the
        // next request (and after `Expect: 100-continue`, the client's next request would
        // be read as this one's body).
        let unread = (has_body(&req) && is_http1(&req)).then(BodyEnded::default);
        let idle = self.limits.body_idle_timeout();
        let watch = unread.clone();
        let req = req.map(move |b| match watch {
            Some(w) => IdleTimeout::new(b, idle).watching_end(w),
            None => IdleTimeout::new(b, idle),
        });
        async move {
            let (op, mut resp) =
                crate::request_id::scope(id.clone(), self.route(req, peer, &id)).await;
            if close_after || unread.is_some_and(|e| !e.get()) {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            crate::request_id::stamp(&mut resp, &id);
            self.metrics.requests.get_or_create(&crate::metrics::RequestLabels { op: op.to_string(), status: resp.status().as_u16() }).inc();
            self.metrics.latency.get_or_create(&crate::metrics::OpLabel { op: op.to_string() }).observe(start.elapsed().as_secs_f64());
            let bytes = resp.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            tracing::info!(status = resp.status().as_u16(), bytes = %bytes, ms = start.elapsed().as_millis() as u64, "done");
            resp
        }
        .instrument(span)
        .await
    }

    /// Answers one request; returns the operation it was (the metrics label) with the
    /// response.
    async fn route(
        &self,
        req: Request<ClientBody>,
        peer: SocketAddr,
        request_id: &str,
    ) -> (&'static str, Response<Body>) {
        let plain_get = |path: &str| {
            req.uri().path() == path
                && req.method() == http::Method::GET
                && req.uri().query().is_none()
        };
        if plain_get("/health") {
            return ("health", plain(StatusCode::OK, "ok\n"));
        }
        if plain_get("/metrics") {
            if !self.metrics_allowed(req.headers()) {
                let mut r = plain(StatusCode::UNAUTHORIZED, "metrics need a bearer token\n");
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"sealgate metrics\""),
                );
                return ("metrics", r);
            }
            let mut r = Response::new(Body::from(self.metrics.render()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return ("metrics", r);
        }
        if plain_get("/ready") {
            return ("ready", self.ready().await);
        }
        if crate::kms::api::is_kms_request(req.headers()) {
            tracing::Span::current().record("op", "kms");
            return ("kms", self.kms_api(req, peer).await);
        }
        if req.method() == http::Method::OPTIONS {
            // CORS preflights are not authenticated (as on AWS) and answered from the
            // bucket's CORS rules alone.
            tracing::Span::current().record("op", "Preflight");
            let Ok(t) = crate::s3::target::Target::parse(
                req.uri(),
                req.headers(),
                self.state.vhost_domain.as_deref(),
            ) else {
                let message = "Couldn't parse the specified URI.";
                return (
                    "Preflight",
                    s3_error_response("InvalidURI", message, request_id),
                );
            };
            let s = &self.state;
            let resp = crate::s3::cors::preflight(
                &s.cors,
                &s.upstream,
                &s.state_bucket,
                req.headers(),
                t.bucket.as_deref(),
                t.key.as_deref(),
                request_id,
            )
            .await;
            return ("Preflight", resp);
        }
        if let Some((code, message)) =
            crate::auth::refused_scheme(req.uri(), req.headers(), self.allow_signature_v2)
        {
            return ("-", s3_error_response(code, message, request_id));
        }
        if crate::limits::decoded_length_without_aws_chunked(req.headers()) {
            let message = "x-amz-decoded-content-length is only valid with an aws-chunked (STREAMING-*) payload.";
            return (
                "-",
                s3_error_response("InvalidRequest", message, request_id),
            );
        }
        if crate::limits::chunked_without_length(req.method(), req.headers()) {
            let message = "A header you provided implies functionality that is not implemented";
            return (
                "-",
                crate::error::xml_response(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    message,
                    &[("Header", "Transfer-Encoding")],
                    request_id,
                ),
            );
        }
        let classified = crate::s3::request::Classified::of(
            req.method(),
            req.uri(),
            req.headers(),
            self.state.vhost_domain.as_deref(),
        );
        let op = classified.as_ref().map_or("-", |c| c.op_name());
        let info = crate::s3::RequestInfo {
            peer: peer.ip(),
            id: request_id.to_string(),
            secure: self.tls.is_some(),
        };
        // What CORS evaluates, kept before the request is consumed.
        let method = req.method().clone();
        let bucket = classified.as_ref().and_then(|c| c.target.bucket.clone());
        let cors_headers = cors_request_headers(req.headers());
        let post = classified
            .as_ref()
            .filter(|c| c.op == Ok(crate::s3::classify::Op::PostObject))
            .map(|c| c.target.clone());
        let mut resp = if let Some(target) = post {
            // Form uploads are verified and streamed by sealgate itself (`s3::post`).
            let tls = self.tls.is_some();
            crate::s3::post::serve(
                &self.state,
                &self.authz,
                req.map(Body::http_body),
                target,
                info,
                tls,
                self.allow_signature_v2,
            )
            .await
        } else {
            let mut req = req;
            req.extensions_mut().insert(info);
            if let Some(c) = classified {
                req.extensions_mut().insert(c);
            }
            match self.s3.call(req.map(Body::http_body)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = ?e, "s3 service failed");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            }
        };
        if let Some(b) = &bucket {
            let s = &self.state;
            if matches!(op, "PutBucketCors" | "DeleteBucketCors") && resp.status().is_success() {
                s.cors.forget(b);
            }
            if !b.eq_ignore_ascii_case(&s.state_bucket) {
                crate::s3::cors::decorate(
                    &s.cors,
                    &s.upstream,
                    &method,
                    &cors_headers,
                    b,
                    &mut resp,
                )
                .await;
            }
        }
        (op, resp)
    }
}

/// The request headers CORS evaluates (`Origin`, `Access-Control-Request-*`).
fn cors_request_headers(h: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    for n in [
        http::header::ORIGIN,
        http::header::ACCESS_CONTROL_REQUEST_METHOD,
        http::header::ACCESS_CONTROL_REQUEST_HEADERS,
    ] {
        for v in h.get_all(&n) {
            out.append(n.clone(), v.clone());
        }
    }
    out
}

impl App {
    /// Whether a `/metrics` request may see the metrics: always without
    /// `metrics_token`, else only with `Authorization: Bearer <token>` (compared in
    /// constant time).
    fn metrics_allowed(&self, h: &http::HeaderMap) -> bool {
        let Some(token) = &self.metrics_token else {
            return true;
        };
        h.get_all(http::header::AUTHORIZATION).iter().any(|v| {
            let v = v.as_bytes();
            v.len() > 7
                && v[..7].eq_ignore_ascii_case(b"bearer ")
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    v[7..].trim_ascii(),
                    token.expose().as_bytes(),
                )
                .is_ok()
        })
    }

    /// Checks done once before serving: sealgate's state bucket is created, or found to
    /// be ours (one that exists and belongs to someone else is fatal: whoever owns it
    /// could read and write sealgate's upload records and part lists); then the bucket
    /// rules an older version kept there are imported into the KMS database. A store that
    /// does not answer is only a warning (sealgate serves, and the checks run on first
    /// use).
    pub async fn startup(&self) -> Result<(), String> {
        let objects = &self.state.objects;
        use crate::object::manifest::StateBucket;
        match objects.create_state_bucket().await {
            Ok(StateBucket::Ours) => {}
            Ok(StateBucket::Foreign) => {
                return Err(format!(
                    "the state bucket `{}` exists in the store and belongs to someone else: set `state_bucket` to a name that is free or yours",
                    objects.state_bucket
                ));
            }
            Ok(StateBucket::Refused(why)) => {
                tracing::warn!(bucket = %objects.state_bucket, why, "creating the state bucket was refused; serving anyway");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the store did not answer at startup; serving anyway");
                return Ok(());
            }
        }
        match crate::s3::rules::import_legacy(objects, &self.kms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rules = n,
                "bucket encryption rules moved into the KMS database"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "importing bucket rules from the state bucket failed; they are read on first use")
            }
        }
        Ok(())
    }

    /// Ready when the store answers (any HTTP answer below 500 to a signed ListBuckets)
    /// and the KMS can be used; 503 with the reason otherwise.
    async fn ready(&self) -> Response<Body> {
        let req = crate::upstream::UpRequest {
            method: http::Method::GET,
            bucket: None,
            key: None,
            query: Vec::new(),
            headers: http::HeaderMap::new(),
            body: crate::upstream::UpBody::Empty,
        };
        let store = match tokio::time::timeout(Duration::from_secs(5), self.probe.send(req)).await {
            Ok(Ok(r)) if r.status().as_u16() < 500 => Ok(()),
            Ok(Ok(r)) => Err(format!("store answered {}", r.status())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("store did not answer within 5 s".to_string()),
        };
        let kms = self.kms.health().map_err(|e| format!("kms: {e}"));
        let backends = match tokio::time::timeout(
            Duration::from_secs(5),
            self.state.objects.keys.probe(self.kms.account()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err("a KMS backend did not answer within 5 s".to_string()),
        };
        match (store, kms, backends) {
            (Ok(()), Ok(()), Ok(())) => plain(StatusCode::OK, "ready\n"),
            (s, k, b) => {
                let why = [s.err(), k.err(), b.err()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut r = Response::new(Body::from(format!("not ready: {why}\n")));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            }
        }
    }

    /// The AWS KMS JSON API on the same listener (SigV4 service `kms`): authenticated from
    /// the headers before any of the body is read (`kms::api::serve_http`).
    async fn kms_api(&self, req: Request<ClientBody>, peer: SocketAddr) -> Response<Body> {
        let (keys, ip, tls) = (&self.access_keys, Some(peer.ip()), self.tls.is_some());
        let handled = crate::kms::api::serve_http(&self.kms, keys, req, ip, tls).await;
        if let Some(event) = handled.event {
            let skip = [self.state.state_bucket.clone()];
            crate::key_events::on_key_event(event, &self.probe, &skip, &self.metrics);
        }
        handled.response.map(Body::from)
    }
}

/// Whether the request expects `100 Continue` but will never get one: an HTTP/1.1
/// request with an empty body (hyper sends the interim response when the body is first
/// read, and an empty body is never read). The final response then arrives where the
/// client waits for the interim one, and botocore (aws-cli, boto3) keeps that connection
/// in a state in which the next upload on it misparses its response
/// (`MissingHeaderBodySeparatorDefect`). Closing the connection after the response
/// (which HTTP allows: `Connection: close`) gives the next request a fresh one.
fn unanswerable_continue<B>(req: &Request<B>) -> bool {
    let expects = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let empty = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    expects && empty && req.version() == http::Version::HTTP_11
}

/// Whether a request carries a body (a length above 0, or chunked).
fn has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_http1<B>(req: &Request<B>) -> bool {
    matches!(
        req.version(),
        http::Version::HTTP_10 | http::Version::HTTP_11
    )
}

/// An S3 XML error answered by the listener itself (before s3s).
fn s3_error_response(code: &str, message: &str, request_id: &str) -> Response<Body> {
    let status = if code == "NotImplemented" {
        StatusCode::NOT_IMPLEMENTED
    } else {
        StatusCode::BAD_REQUEST
    };
    crate::error::xml_response(status, code, message, &[], request_id)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // Request ids only need to differ between instances; a failure here is harmless.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_le_bytes(b)
}
