//! HTTP transport of the remote backends: timeouts, retries with backoff for transient
//! failures, and a circuit breaker.
//!
//! Invariants: every KMS operation the backends send is safe to repeat (GenerateDataKey,
//! Decrypt, Encrypt, DescribeKey and their Transit forms change no state), so any
//! transient failure is retried; a failure that is the KMS's answer (4xx other than
//! throttling) is returned at once. While the circuit is open calls fail fast with
//! [`BackendError::Unavailable`]; after the cool-down one trial call decides.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use super::{BackendError, ResilienceConfig};
use crate::metrics::SharedMetrics;

/// A KMS answer (any status); transport failures are errors.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    trial: AtomicBool,
}

impl Breaker {
    fn admit(&self) -> bool {
        let g = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *g {
            None => true,
            Some(t) if Instant::now() < t => false,
            // Half-open: exactly one trial call at a time.
            Some(_) => !self.trial.swap(true, Ordering::SeqCst),
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::SeqCst);
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.trial.store(false, Ordering::SeqCst);
    }

    /// Returns true when this failure opened the circuit.
    fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        let was_trial = self.trial.swap(false, Ordering::SeqCst);
        if n >= self.threshold || was_trial {
            *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + self.cooldown);
            return true;
        }
        false
    }
}

pub struct Remote {
    name: String,
    client: reqwest::Client,
    retries: u32,
    backoff: Duration,
    breaker: Breaker,
    metrics: SharedMetrics,
}

impl Remote {
    pub fn new(
        name: &str,
        cfg: &ResilienceConfig,
        metrics: SharedMetrics,
    ) -> Result<Remote, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("kms backend {name}: http client: {e}"))?;
        Ok(Remote {
            name: name.to_string(),
            client,
            retries: cfg.retries,
            backoff: Duration::from_millis(cfg.backoff_ms),
            breaker: Breaker {
                threshold: cfg.breaker_failures,
                cooldown: Duration::from_millis(cfg.breaker_cooldown_ms),
                failures: AtomicU32::new(0),
                open_until: Mutex::new(None),
                trial: AtomicBool::new(false),
            },
            metrics,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes (called again for each attempt, so signatures are
    /// fresh), retrying transient failures. `transient` says whether an answer is one
    /// (5xx and 429 always are).
    pub async fn send(
        &self,
        build: impl Fn() -> Result<reqwest::RequestBuilder, BackendError>,
        transient: impl Fn(StatusCode, &[u8]) -> bool,
    ) -> Result<Reply, BackendError> {
        if !self.breaker.admit() {
            self.metrics.kms_backend(&self.name, "circuit_open");
            return Err(BackendError::Unavailable(format!(
                "KMS backend '{}' is failing; calls are suspended briefly (circuit open)",
                self.name
            )));
        }
        let mut attempt = 0u32;
        loop {
            let outcome = match build()?.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(body) => Ok(Reply { status, body }),
                        Err(e) => Err(describe(&e)),
                    }
                }
                Err(e) => Err(describe(&e)),
            };
            let retry_reason = match &outcome {
                Ok(r)
                    if r.status.is_server_error()
                        || r.status == StatusCode::TOO_MANY_REQUESTS
                        || transient(r.status, &r.body) =>
                {
                    Some(format!("answered {}", r.status))
                }
                Ok(_) => None,
                Err(e) => Some(e.clone()),
            };
            let Some(reason) = retry_reason else {
                self.breaker.success();
                self.metrics.kms_backend(&self.name, "ok");
                return outcome.map_err(BackendError::Unavailable);
            };
            if attempt >= self.retries {
                self.metrics.kms_backend(&self.name, "failed");
                if self.breaker.failure() {
                    self.metrics.kms_backend(&self.name, "circuit_opened");
                    tracing::warn!(backend = %self.name, %reason, "KMS backend failing: circuit opened");
                }
                return Err(BackendError::Unavailable(format!(
                    "KMS backend '{}' {reason} after {} attempts",
                    self.name,
                    attempt + 1
                )));
            }
            self.metrics.kms_backend(&self.name, "retry");
            // Exponential backoff with jitter in [d/2, d).
            let d = self.backoff * 2u32.saturating_pow(attempt);
            let mut r = [0u8; 2];
            let _ = aws_lc_rs::rand::fill(&mut r);
            let frac = u16::from_le_bytes(r) as u32;
            tokio::time::sleep(d / 2 + d / 2 * frac / 65536).await;
            attempt += 1;
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not be reached".into()
    } else {
        "broke the connection".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_lets_one_trial_through_after_cooldown() {
        let b = Breaker {
            threshold: 2,
            cooldown: Duration::from_millis(30),
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
            trial: AtomicBool::new(false),
        };
        assert!(b.admit());
        assert!(!b.failure());
        assert!(b.failure(), "second failure opens");
        assert!(!b.admit());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit(), "trial");
        assert!(!b.admit(), "only one trial at a time");
        assert!(b.failure(), "a failed trial reopens");
        assert!(!b.admit());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit());
        b.success();
        assert!(b.admit() && b.admit());
    }
}
