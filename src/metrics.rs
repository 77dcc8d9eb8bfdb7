//! Prometheus metrics, one registry per running instance (no process globals, so
//! in-process tests and several instances never mix their numbers).
//!
//! Invariant: labels carry operation names and status codes only — never bucket or key
//! names, principals or anything secret.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

/// A request sealgate made to the store: its method and whether it was a server-side
/// copy (`x-amz-copy-source`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreRequestLabels {
    pub method: String,
    pub copy: bool,
}

/// The counters sealgate keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<OpLabel, Histogram>,
    /// Body bytes read from the store on object reads (ciphertext for sealgate objects).
    pub upstream_read_bytes: Counter<u64, AtomicU64>,
    /// Body bytes sent to the store on object writes.
    pub upstream_write_bytes: Counter<u64, AtomicU64>,
    /// Store requests that failed at the transport level.
    pub upstream_errors: Counter<u64, AtomicU64>,
    /// Requests made to the store, by method and whether they were server-side copies.
    pub upstream_requests: Family<StoreRequestLabels, Counter>,
    /// KMS operations on the S3 path, by operation (cache hits are not KMS calls).
    pub kms_calls: Family<OpLabel, Counter>,
    /// Data-key cache lookups (`bucket_key` for writes, `decrypt` for reads) by result.
    pub dek_cache: Family<CacheLabels, Counter>,
    /// Remote KMS backend HTTP calls by backend and outcome (ok, retry, failed,
    /// circuit_open, circuit_opened).
    pub kms_backend_calls: Family<BackendLabels, Counter>,
    /// Objects found still wrapped under a KMS key when its deletion was scheduled (the
    /// impact scan's result; removed when the deletion is cancelled).
    pub pending_deletion_objects: Family<KeyIdLabel, Gauge>,
    /// Worker threads of the runtime serving requests (`worker_threads`).
    pub worker_threads: Gauge,
    /// Client connections open now.
    pub client_connections: Gauge,
    /// Client connections sealgate closed while idle, by reason (`idle_timeout`: no
    /// complete request head within `limits.header_read_timeout_secs`; `evicted`: closed
    /// to make room for a new client at `limits.max_connections`).
    pub connections_closed: Family<ReasonLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyIdLabel {
    /// A KMS key ARN (not secret; never an object key or bucket).
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
    pub outcome: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sealgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by operation and HTTP status",
            requests.clone(),
        );
        let latency = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to response headers, by operation",
            latency.clone(),
        );
        let upstream_read_bytes: Counter<u64, AtomicU64> = Counter::default();
        registry.register(
            "upstream_read_bytes",
            "Object body bytes read from the store",
            upstream_read_bytes.clone(),
        );
        let upstream_write_bytes: Counter<u64, AtomicU64> = Counter::default();
        registry.register(
            "upstream_write_bytes",
            "Object body bytes written to the store",
            upstream_write_bytes.clone(),
        );
        let upstream_errors: Counter<u64, AtomicU64> = Counter::default();
        registry.register(
            "upstream_errors",
            "Store requests that failed to connect or broke",
            upstream_errors.clone(),
        );
        let upstream_requests = Family::<StoreRequestLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests made to the store, by method and whether they were server-side copies",
            upstream_requests.clone(),
        );
        let kms_calls = Family::<OpLabel, Counter>::default();
        registry.register(
            "kms_calls",
            "KMS operations made for S3 requests",
            kms_calls.clone(),
        );
        let dek_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "dek_cache",
            "Data-key cache lookups, by cache and result",
            dek_cache.clone(),
        );
        let kms_backend_calls = Family::<BackendLabels, Counter>::default();
        registry.register(
            "kms_backend_calls",
            "Remote KMS backend calls, by backend and outcome",
            kms_backend_calls.clone(),
        );
        let pending_deletion_objects = Family::<KeyIdLabel, Gauge>::default();
        registry.register(
            "kms_pending_deletion_objects",
            "Objects still under a KMS key scheduled for deletion (scanned when scheduled)",
            pending_deletion_objects.clone(),
        );
        let worker_threads = Gauge::default();
        registry.register(
            "worker_threads",
            "Threads serving requests (tokio workers)",
            worker_threads.clone(),
        );
        let client_connections = Gauge::default();
        registry.register(
            "client_connections",
            "Client connections open",
            client_connections.clone(),
        );
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Idle client connections closed by sealgate, by reason",
            connections_closed.clone(),
        );
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            worker_threads.set(i64::try_from(h.metrics().num_workers()).unwrap_or(i64::MAX));
        }
        Metrics {
            registry,
            pending_deletion_objects,
            worker_threads,
            client_connections,
            connections_closed,
            dek_cache,
            kms_backend_calls,
            requests,
            latency,
            upstream_read_bytes,
            upstream_write_bytes,
            upstream_errors,
            upstream_requests,
            kms_calls,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn dek_cache(&self, cache: &str, result: &str) {
        self.dek_cache
            .get_or_create(&CacheLabels {
                cache: cache.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn kms_backend(&self, backend: &str, outcome: &str) {
        self.kms_backend_calls
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn kms(&self, op: &str) {
        self.kms_calls
            .get_or_create(&OpLabel { op: op.to_string() })
            .inc();
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

/// Counts the bytes of a body stream into `counter` as they pass.
pub fn counted<S, E>(
    s: S,
    counter: Counter<u64, AtomicU64>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, E>>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>>,
{
    use futures::StreamExt;
    s.inspect(move |r| {
        if let Ok(b) = r {
            counter.inc_by(b.len() as u64);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_counters_without_object_names() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                op: "GetObject".into(),
                status: 200,
            })
            .inc();
        m.upstream_read_bytes.inc_by(65_552);
        let text = m.render();
        assert!(
            text.contains("sealgate_requests_total{op=\"GetObject\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sealgate_upstream_read_bytes_total 65552"),
            "{text}"
        );
    }
}
