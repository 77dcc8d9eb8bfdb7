//! The listener: accepts connections (plain or TLS), routes `/health` and KMS API requests,
//! hands everything else to the s3s service, and shuts down gracefully.
//!
//! Invariants: one tracing span per request (request id, method, operation, bucket,
//! status, duration, bytes); a response body that fails mid-stream aborts the connection
//! (hyper never ends such a response cleanly); on shutdown no new connection is accepted
//! and in-flight requests get a bounded time to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use s3s::Body;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::Config;
use crate::limits::IdleTimeout;
use crate::s3::{Gateway, State, Unreachable};
use crate::upstream::Upstream;

/// A client's request body, failing when it stalls (`limits.body_idle_timeout_secs`).
type ClientBody = IdleTimeout<Incoming>;

/// The running application: everything a request needs.
pub struct App {
    s3: S3Service,
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
        let kms = crate::kms::Kms::open(&cfg.kms).map_err(|e| format!("kms: {e}"))?;
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let upstream = upstream.with_error_counter(metrics.upstream_errors.clone());
        let probe = upstream.clone();
        let backends = crate::keys::Backends::new(&cfg.kms_backend, kms.clone(), metrics.clone())?;
        let objects = crate::object::Objects {
            store: upstream.clone(),
            keys: backends,
            metrics: metrics.clone(),
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
            rules: Default::default(),
            sizes: Default::default(),
            metrics: metrics.clone(),
        });
        let mut b = S3ServiceBuilder::new(Unreachable);
        b.set_auth(access_keys.clone());
        b.set_route(Gateway {
            state: state.clone(),
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
            probe,
            state,
            metrics,
            kms,
            access_keys,
            tls,
            limits: cfg.limits.clone(),
            allow_signature_v2: cfg.allow_signature_v2,
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

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, Infallible> {
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
            return Ok(r);
        }
        let close_after = unanswerable_continue(&req);
        let req = req.map(|b| IdleTimeout::new(b, self.limits.body_idle_timeout()));
        async move {
            let (op, mut resp) = self.route(req, peer, &id).await;
            if close_after {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            if let Ok(v) = http::HeaderValue::from_str(&id) {
                resp.headers_mut().insert("x-sealgate-request-id", v);
            }
            self.metrics.requests.get_or_create(&crate::metrics::RequestLabels { op: op.to_string(), status: resp.status().as_u16() }).inc();
            self.metrics.latency.get_or_create(&crate::metrics::OpLabel { op: op.to_string() }).observe(start.elapsed().as_secs_f64());
            let bytes = resp.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            tracing::info!(status = resp.status().as_u16(), bytes = %bytes, ms = start.elapsed().as_millis() as u64, "done");
            Ok(resp)
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
        if let Some((code, message)) = crate::auth::refused_scheme(
            req.method(),
            req.uri(),
            req.headers(),
            self.allow_signature_v2,
        ) {
            return ("-", s3_error_response(code, message, request_id));
        }
        let classified = crate::s3::request::Classified::of(
            req.method(),
            req.uri(),
            req.headers(),
            self.state.vhost_domain.as_deref(),
        );
        let op = classified.as_ref().map_or("-", |c| c.op_name());
        let mut req = req;
        req.extensions_mut().insert(crate::s3::RequestInfo {
            peer: peer.ip(),
            id: request_id.to_string(),
        });
        if let Some(c) = classified {
            req.extensions_mut().insert(c);
        }
        let resp = match self.s3.call(req.map(Body::http_body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = ?e, "s3 service failed");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
        };
        (op, resp)
    }
}

impl App {
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

/// An S3 XML error answered by the listener itself (before s3s).
fn s3_error_response(code: &str, message: &str, request_id: &str) -> Response<Body> {
    let status = if code == "NotImplemented" {
        StatusCode::NOT_IMPLEMENTED
    } else {
        StatusCode::BAD_REQUEST
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut r = Response::new(Body::from(xml));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
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

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("tls.key_file {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {e}"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

/// How long in-flight requests may run after shutdown was requested.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves until `shutdown` resolves, then drains in-flight connections.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Key deletions that came due and automatic rotations happen even for idle keys.
    let kms = app.kms.clone();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            let kms = kms.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || kms.tick()).await {
                tracing::warn!(error = %e, "KMS maintenance failed");
            }
        }
    });
    let builder = crate::limits::conn_builder(&app.limits);
    // One permit per client connection: at the limit, new connections wait in the backlog.
    let connections = Arc::new(tokio::sync::Semaphore::new(app.limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app2 = app.clone();
        let svc = hyper::service::service_fn(move |req| app2.clone().handle(req, peer));
        match &app.tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    ticker.abort();
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN:?}; closing them");
    }
    // Audit events still queued reach the disk before the process ends.
    if let Err(e) = app.kms.flush_audit() {
        tracing::error!(error = %e, "flushing the KMS audit log failed");
    }
    Ok(())
}
