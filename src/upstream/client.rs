//! HTTP client for the store.
//!
//! Invariants: request and response bodies stream (nothing is buffered here); redirects
//! are never followed and bodies are never decompressed, so what the store says reaches
//! the handler unchanged; transport failures become [`UpstreamError`], which maps to
//! 502/503 — never to a client error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::{BoxStream, Stream};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::checked;
use super::conn::StoreConnector;
use super::sign::{Payload, Signer, object_path, query_string};
use crate::config::UpstreamConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// A request to the store, in decoded form.
pub struct UpRequest {
    pub method: Method,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Headers to send (already filtered); `host` and signing headers are added here.
    pub headers: HeaderMap,
    pub body: UpBody,
}

/// Body for the store.
pub enum UpBody {
    Empty,
    Bytes(Bytes),
    /// A stream of exactly `len` bytes.
    Stream {
        stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
        len: u64,
    },
    /// Object data, sent with a CRC32C checksum the store verifies (`checked.rs`): a
    /// header for bytes, an aws-chunked trailer for a stream.
    Checked(Box<UpBody>),
}

/// Why the store could not be talked to (as opposed to the store answering with an error).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the object store: {0}")]
    Connect(String),
    /// The store's TLS certificate did not verify (a connect error, told apart so the
    /// client can be told what to fix without seeing the transport's text).
    #[error("the object store's TLS certificate is not trusted: {0}")]
    Certificate(String),
    #[error("the object store did not answer in time: {0}")]
    Timeout(String),
    #[error("the object store connection failed: {0}")]
    Transport(String),
    #[error("cannot build the request for the object store: {0}")]
    Build(String),
}

impl UpstreamError {
    fn from_client(e: hyper_util::client::legacy::Error) -> Self {
        // Keep the whole source chain: the top-level message alone says little.
        let mut msg = e.to_string();
        let mut timed_out = false;
        let mut certificate = false;
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            let io = s.downcast_ref::<std::io::Error>();
            if io.is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
                timed_out = true;
            }
            let tls = s.downcast_ref::<rustls::Error>().or_else(|| {
                io.and_then(|io| io.get_ref())
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
            });
            if matches!(tls, Some(rustls::Error::InvalidCertificate(_))) {
                certificate = true;
            }
            src = s.source();
        }
        if timed_out {
            Self::Timeout(msg)
        } else if certificate {
            Self::Certificate(msg)
        } else if e.is_connect() {
            Self::Connect(msg)
        } else {
            Self::Transport(msg)
        }
    }
}

/// A store response: status and headers, with the body still to be read.
#[derive(Debug)]
pub struct UpResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: hyper::body::Incoming,
}

impl UpResponse {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The `Content-Length` the store declared, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// Reads the whole body; for the small XML documents of control operations only.
    pub async fn bytes(self) -> Result<Bytes, hyper::Error> {
        Ok(self.body.collect().await?.to_bytes())
    }

    /// Reads the body whole, refusing one longer than `limit` bytes (for documents a
    /// store could make arbitrarily large, such as error bodies).
    pub async fn bytes_limited(self, limit: usize) -> Result<Bytes, String> {
        http_body_util::Limited::new(self.body, limit)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| e.to_string())
    }

    /// Reads the whole body as text (lossy); for error documents.
    pub async fn text(self) -> Result<String, hyper::Error> {
        let b = self.bytes().await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// The body as a stream of chunks. A body that ends before its declared length is
    /// an error, never a clean end.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, hyper::Error>> + Send {
        http_body_util::BodyDataStream::new(self.body)
    }
}

/// Connection pool + credentials for the store.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<StoreConnector, ReqBody>,
    base: reqwest::Url,
    host_header: HeaderValue,
    signer: Signer,
    /// Counts transport failures (for `/metrics`).
    errors: prometheus_client::metrics::counter::Counter<u64, std::sync::atomic::AtomicU64>,
    /// Counts requests (for `/metrics`).
    requests: Option<
        prometheus_client::metrics::family::Family<
            crate::metrics::StoreRequestLabels,
            prometheus_client::metrics::counter::Counter,
        >,
    >,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, String> {
        let base =
            reqwest::Url::parse(&cfg.endpoint).map_err(|e| format!("upstream.endpoint: {e}"))?;
        let host = base.host_str().ok_or("upstream.endpoint has no host")?;
        let host_header = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let tls = match base.scheme() {
            "https" => Some(Arc::new(tls_config(
                cfg.ca_file.as_deref(),
                "upstream.ca_file",
            )?)),
            "http" => None,
            other => return Err(format!("upstream.endpoint: unsupported scheme {other:?}")),
        };
        let connector = StoreConnector::new(Duration::from_secs(cfg.connect_timeout_secs), tls);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            base,
            host_header: HeaderValue::from_str(&host_header).map_err(|e| e.to_string())?,
            signer: Signer::new(
                &cfg.access_key_id,
                cfg.secret_access_key.expose(),
                &cfg.region,
            ),
            errors: Default::default(),
            requests: None,
        })
    }

    /// Counts transport failures into `c`.
    pub fn with_error_counter(
        mut self,
        c: prometheus_client::metrics::counter::Counter<u64, std::sync::atomic::AtomicU64>,
    ) -> Self {
        self.errors = c;
        self
    }

    /// Counts every request into `f` by method and whether it is a server-side copy.
    pub fn with_request_counter(
        mut self,
        f: prometheus_client::metrics::family::Family<
            crate::metrics::StoreRequestLabels,
            prometheus_client::metrics::counter::Counter,
        >,
    ) -> Self {
        self.requests = Some(f);
        self
    }

    /// Sends one request; a response with any status is `Ok` (the store answered).
    pub async fn send(&self, req: UpRequest) -> Result<UpResponse, UpstreamError> {
        // The request's own store credential, if its access key has one (`acting`).
        let acting = super::acting::signer_for(req.bucket.as_deref());
        let signer = acting.as_deref().unwrap_or(&self.signer);
        let path = object_path(req.bucket.as_deref(), req.key.as_deref());
        let qs = query_string(&req.query);
        // Sign exactly the string we send.
        let url_str = format!(
            "{}://{}{}{}",
            self.base.scheme(),
            self.host_header.to_str().unwrap_or_default(),
            path,
            if qs.is_empty() {
                String::new()
            } else {
                format!("?{qs}")
            }
        );
        let mut headers = req.headers;
        if let Some(f) = &self.requests {
            f.get_or_create(&crate::metrics::StoreRequestLabels {
                method: req.method.as_str().to_string(),
                copy: headers.contains_key("x-amz-copy-source"),
            })
            .inc();
        }
        headers.insert(http::header::HOST, self.host_header.clone());
        let (body, len, payload) = match req.body {
            UpBody::Checked(inner) => match *inner {
                UpBody::Bytes(b) => {
                    set(&mut headers, checked::TRAILER, &checked::crc32c_b64(&b));
                    body_of(UpBody::Bytes(b))
                }
                UpBody::Stream { stream, len } => {
                    let encoding = match headers.get(http::header::CONTENT_ENCODING) {
                        Some(e) => format!("aws-chunked,{}", e.to_str().unwrap_or_default()),
                        None => "aws-chunked".to_string(),
                    };
                    set(&mut headers, "content-encoding", &encoding);
                    set(
                        &mut headers,
                        "x-amz-decoded-content-length",
                        &len.to_string(),
                    );
                    set(&mut headers, "x-amz-trailer", checked::TRAILER);
                    let framed = futures::StreamExt::boxed(checked::Chunked::new(stream, len));
                    let (body, _, _) = body_of(UpBody::Stream {
                        stream: framed,
                        len: checked::encoded_len(len),
                    });
                    (body, checked::encoded_len(len), Payload::StreamingTrailer)
                }
                other => body_of(other),
            },
            other => body_of(other),
        };
        if len > 0 || matches!(req.method, Method::PUT | Method::POST) {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        signer
            .sign(req.method.as_str(), &url_str, &mut headers, payload)
            .map_err(UpstreamError::Build)?;
        let uri: http::Uri = url_str
            .parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamError::Build(e.to_string()))?;
        let mut request = http::Request::new(body);
        *request.method_mut() = req.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let r = self.client.request(request).await.map_err(|e| {
            self.errors.inc();
            UpstreamError::from_client(e)
        })?;
        let (parts, body) = r.into_parts();
        Ok(UpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A request body, its length, and how its payload is signed.
fn body_of(b: UpBody) -> (ReqBody, u64, Payload) {
    match b {
        UpBody::Empty | UpBody::Checked(_) => (empty_body(), 0, Payload::Unsigned),
        UpBody::Bytes(b) => {
            let n = b.len() as u64;
            (
                http_body_util::Full::new(b)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
                n,
                Payload::Unsigned,
            )
        }
        UpBody::Stream { stream, len } => (
            http_body_util::StreamBody::new(
                stream
                    .map_ok(http_body::Frame::data)
                    .map_err(|e| -> BoxError { Box::new(e) }),
            )
            .boxed_unsync(),
            len,
            Payload::Unsigned,
        ),
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn empty_body() -> ReqBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// TLS for `https://` stores (and the KMS's PostgreSQL database): the system's roots
/// plus the PEM certificates of `ca_file` (the setting `setting`), if set.
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
    setting: &str,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped, as a browser would.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{setting} {}: {e}", ca.display()))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{setting} {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{setting} {}: {e}", ca.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "{setting} {}: no PEM certificate in it",
                ca.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP/1.1 server that, like Garage, writes a response's head and its body in two
    /// writes with Nagle's algorithm on (a transport-level stand-in: only the TCP
    /// behaviour matters here, not S3).
    async fn split_writing_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    let mut have = Vec::new();
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..end + 4);
                            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n")
                                .await
                                .unwrap();
                            s.write_all(&[7u8; 4096]).await.unwrap();
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn small_responses_on_a_reused_connection_do_not_wait_for_delayed_acks() {
        let addr = split_writing_server().await;
        let up = Upstream::new(&UpstreamConfig {
            endpoint: format!("http://{addr}"),
            access_key_id: "AK".into(),
            secret_access_key: crate::config::Secret::new("SK".to_string()),
            ..UpstreamConfig::default()
        })
        .unwrap();
        let n = 25;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let r = up
                .send(UpRequest {
                    method: Method::GET,
                    bucket: Some("b".into()),
                    key: Some("k".into()),
                    query: vec![],
                    headers: HeaderMap::new(),
                    body: UpBody::Empty,
                })
                .await
                .unwrap();
            assert_eq!(r.bytes().await.unwrap().len(), 4096);
        }
        // A delayed ACK costs 40 ms on Linux; 25 of them would take a second.
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(250),
            "{n} small GETs took {took:?}"
        );
    }
}
