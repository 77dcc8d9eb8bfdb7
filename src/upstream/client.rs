//! HTTP client for the store.
//!
//! Invariants: request and response bodies stream (nothing is buffered here); redirects
//! are never followed and bodies are never decompressed, so what the store says reaches
//! the handler unchanged; transport failures become [`UpstreamError`], which maps to
//! 502/503 — never to a client error.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderValue, Method};

use super::sign::{Signer, object_path, query_string};
use crate::config::UpstreamConfig;

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
}

/// Why the store could not be talked to (as opposed to the store answering with an error).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the object store: {0}")]
    Connect(String),
    #[error("the object store did not answer in time: {0}")]
    Timeout(String),
    #[error("the object store connection failed: {0}")]
    Transport(String),
    #[error("cannot build the request for the object store: {0}")]
    Build(String),
}

impl UpstreamError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        // Keep the whole source chain: reqwest's top-level message alone says little.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        if e.is_connect() {
            Self::Connect(msg)
        } else if e.is_timeout() {
            Self::Timeout(msg)
        } else if e.is_builder() {
            Self::Build(msg)
        } else {
            Self::Transport(msg)
        }
    }
}

/// Connection pool + credentials for the store.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: reqwest::Client,
    base: reqwest::Url,
    host_header: HeaderValue,
    signer: Signer,
    /// Counts transport failures (for `/metrics`).
    errors: prometheus_client::metrics::counter::Counter<u64, std::sync::atomic::AtomicU64>,
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
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        if let Some(ca) = &cfg.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("upstream.ca_file {}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("upstream.ca_file: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("upstream client: {e}"))?;
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

    /// Sends one request; a response with any status is `Ok` (the store answered).
    pub async fn send(&self, req: UpRequest) -> Result<reqwest::Response, UpstreamError> {
        let path = object_path(req.bucket.as_deref(), req.key.as_deref());
        let qs = query_string(&req.query);
        let mut url = self.base.clone();
        url.set_path(&path);
        url.set_query(if qs.is_empty() { None } else { Some(&qs) });
        // `Url` may re-encode; sign exactly the string we send.
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
        headers.insert(http::header::HOST, self.host_header.clone());
        let (body, len) = match req.body {
            UpBody::Empty => (reqwest::Body::from(Bytes::new()), Some(0)),
            UpBody::Bytes(b) => {
                let n = b.len() as u64;
                (reqwest::Body::from(b), Some(n))
            }
            UpBody::Stream { stream, len } => (reqwest::Body::wrap_stream(stream), Some(len)),
        };
        if let Some(n) = len
            && (n > 0 || matches!(req.method, Method::PUT | Method::POST))
        {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        self.signer
            .sign(req.method.as_str(), &url_str, &mut headers)
            .map_err(UpstreamError::Build)?;
        let r = self
            .client
            .request(
                req.method,
                reqwest::Url::parse(&url_str).map_err(|e| UpstreamError::Build(e.to_string()))?,
            )
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                self.errors.inc();
                UpstreamError::from_reqwest(e)
            })?;
        Ok(r)
    }
}
