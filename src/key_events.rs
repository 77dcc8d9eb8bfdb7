//! What sealgate does when a KMS key's lifecycle changes (`kms::api::KeyEvent`, returned
//! by the KMS API for the requests that change it).
//!
//! ScheduleKeyDeletion warns with the key-deletion impact report: a background scan of
//! the store counts the objects whose data keys are still wrapped under the key (they
//! become unreadable when the waiting period ends), logs a warning naming the buckets
//! and sets `sealgate_kms_pending_deletion_objects`. CancelKeyDeletion clears the gauge.
//! The scan is `admin::key_impact`, the one `sealgate kms impact` runs.
//!
//! A scan reads the whole store, so scans are deduplicated and rate-limited
//! (`ScanLimiter`): one scan per key at a time, a key scanned in the last
//! `RESULT_TTL` reuses that count, one scan runs at a time at most every
//! `MIN_INTERVAL`, and at most `MAX_WAITING` wait their turn (more are skipped with a
//! warning: `sealgate kms impact` runs one by hand). Scheduling and cancelling a key's
//! deletion in a loop therefore costs one scan per `RESULT_TTL`, not one per request.
//!
//! Invariant: reacting never delays or changes the KMS answer; the scan runs on its own
//! task and only logs and sets a gauge.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::kms::api::KeyEvent;
use crate::metrics::{KeyIdLabel, SharedMetrics};
use crate::upstream::Upstream;

/// A key's scan result is reused for this long.
pub const RESULT_TTL: Duration = Duration::from_secs(10 * 60);
/// Scans start at least this far apart.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Scans waiting their turn at most; more are skipped.
pub const MAX_WAITING: usize = 16;

/// Where a key's scan stands.
#[derive(Debug, Clone, Copy)]
enum Scan {
    /// Queued or running: another request for the key adds nothing.
    Pending,
    /// Finished at `at` with `objects` (None: the scan failed).
    Done { at: Instant, objects: Option<u64> },
}

/// What `ScanLimiter::request` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A new scan was queued.
    Started,
    /// A scan of the key is queued or running already.
    AlreadyPending,
    /// A recent scan's count was reused.
    Reused(u64),
    /// Too many scans wait already; none was started.
    Skipped,
}

/// Deduplicates and rate-limits impact scans (see the module doc).
pub struct ScanLimiter {
    scans: Mutex<HashMap<String, Scan>>,
    /// One scan at a time; its holder also waits out `min_interval`.
    gate: tokio::sync::Mutex<Option<Instant>>,
    waiting: Mutex<usize>,
    min_interval: Duration,
    ttl: Duration,
    max_waiting: usize,
}

impl ScanLimiter {
    pub fn new(min_interval: Duration, ttl: Duration, max_waiting: usize) -> Arc<Self> {
        Arc::new(ScanLimiter {
            scans: Mutex::default(),
            gate: tokio::sync::Mutex::new(None),
            waiting: Mutex::new(0),
            min_interval,
            ttl,
            max_waiting,
        })
    }

    fn scans(&self) -> std::sync::MutexGuard<'_, HashMap<String, Scan>> {
        self.scans.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, usize> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a scan of `key`: `scan` runs on its own task (in turn, rate-limited)
    /// unless one is pending, a recent result exists, or too many wait; `done` gets
    /// the count of a scan that ran or was reused.
    pub fn request<S, F>(
        self: &Arc<Self>,
        key: &str,
        scan: S,
        done: impl FnOnce(Option<u64>) + Send + 'static,
    ) -> Admission
    where
        S: FnOnce() -> F + Send + 'static,
        F: Future<Output = Option<u64>> + Send,
    {
        {
            let mut scans = self.scans();
            match scans.get(key) {
                Some(Scan::Pending) => return Admission::AlreadyPending,
                Some(Scan::Done {
                    at,
                    objects: Some(n),
                }) if at.elapsed() < self.ttl => {
                    let n = *n;
                    drop(scans);
                    done(Some(n));
                    return Admission::Reused(n);
                }
                _ => {}
            }
            let mut waiting = self.waiting();
            if *waiting >= self.max_waiting {
                return Admission::Skipped;
            }
            *waiting += 1;
            scans.insert(key.to_string(), Scan::Pending);
        }
        let (me, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            let mut last = me.gate.lock().await;
            if let Some(at) = *last {
                let wait = me.min_interval.saturating_sub(at.elapsed());
                tokio::time::sleep(wait).await;
            }
            *me.waiting() -= 1;
            *last = Some(Instant::now());
            let objects = scan().await;
            drop(last);
            me.scans().insert(
                key,
                Scan::Done {
                    at: Instant::now(),
                    objects,
                },
            );
            done(objects);
        });
        Admission::Started
    }

    /// Forgets a key's result (its deletion was cancelled: the next one scans afresh).
    pub fn forget(&self, key: &str) {
        let mut scans = self.scans();
        if matches!(scans.get(key), Some(Scan::Done { .. })) {
            scans.remove(key);
        }
    }
}

/// The process's limiter (every listener's scans share the store).
static LIMITER: LazyLock<Arc<ScanLimiter>> =
    LazyLock::new(|| ScanLimiter::new(MIN_INTERVAL, RESULT_TTL, MAX_WAITING));

/// Reacts to `event`: asks for the impact scan of `store` (all buckets but `skip`) for a
/// scheduled deletion, clears the report of a cancelled one.
pub fn on_key_event(event: KeyEvent, store: &Upstream, skip: &[String], metrics: &SharedMetrics) {
    match event {
        KeyEvent::DeletionCancelled { key_arn } => {
            LIMITER.forget(&key_arn);
            let label = KeyIdLabel { key: key_arn };
            metrics.pending_deletion_objects.remove(&label);
        }
        KeyEvent::DeletionScheduled {
            key_arn,
            deletion_date,
        } => {
            let deletion = OffsetDateTime::from(deletion_date)
                .replace_nanosecond(0)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default();
            let (store, skip) = (store.clone(), skip.to_vec());
            let (arn, gauge) = (key_arn.clone(), metrics.clone());
            let scan = move || async move { scan_impact(&store, &arn, &deletion, &skip).await };
            let arn = key_arn.clone();
            let done = move |objects: Option<u64>| {
                if let Some(n) = objects {
                    let label = KeyIdLabel { key: arn };
                    gauge
                        .pending_deletion_objects
                        .get_or_create(&label)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            };
            match LIMITER.request(&key_arn, scan, done) {
                Admission::Started | Admission::AlreadyPending => {}
                Admission::Reused(n) => tracing::info!(
                    key = %key_arn,
                    objects = n,
                    "KMS key scheduled for deletion again: reusing its recent impact scan"
                ),
                Admission::Skipped => tracing::warn!(
                    key = %key_arn,
                    "KMS key scheduled for deletion: too many impact scans are queued, none \
                     started; run `sealgate kms impact --key ...` before the waiting period ends"
                ),
            }
        }
    }
}

/// Scans the store for objects under `arn` and logs the result; the count, or None if
/// the scan failed.
async fn scan_impact(store: &Upstream, arn: &str, deletion: &str, skip: &[String]) -> Option<u64> {
    let mut quiet = |_: &str| {};
    match crate::admin::key_impact(store, arn, &[], skip, &mut quiet).await {
        Ok(impact) => {
            let n = impact.objects();
            if n > 0 {
                tracing::warn!(
                    key = %arn,
                    deletion_date = %deletion,
                    objects = n,
                    scanned = impact.scanned,
                    buckets = %impact.summary(),
                    "KMS key scheduled for deletion still protects objects: they become \
                     unreadable when it is deleted; re-wrap them (`sealgate rewrap`) or \
                     cancel the deletion (CancelKeyDeletion)"
                );
            } else {
                tracing::info!(
                    key = %arn,
                    scanned = impact.scanned,
                    "KMS key scheduled for deletion: no stored object needs it"
                );
            }
            Some(n)
        }
        Err(e) => {
            tracing::warn!(
                key = %arn,
                error = %e,
                "KMS key scheduled for deletion: the impact scan of the store failed; \
                 run `sealgate kms impact --key ...` before the waiting period ends"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Issue 19: every ScheduleKeyDeletion launched a full-store scan. A burst of them
    /// for one key now runs one scan, a later one reuses its count, and scans of other
    /// keys start `min_interval` apart (here 500 ms; checks sit midway between starts).
    #[tokio::test]
    async fn scans_are_deduplicated_per_key_and_rate_limited() {
        let ms = Duration::from_millis;
        let limiter = ScanLimiter::new(ms(500), Duration::from_secs(600), 3);
        let runs = Arc::new(AtomicUsize::new(0));
        let reported = Arc::new(Mutex::new(Vec::new()));
        let ask = |key: &str| {
            let (runs, reported) = (runs.clone(), reported.clone());
            limiter.request(
                key,
                move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some(7)
                },
                move |n| reported.lock().unwrap().push(n),
            )
        };
        let start = tokio::time::Instant::now();
        let at = |t: u64| tokio::time::sleep_until(start + ms(t));
        assert_eq!(ask("k1"), Admission::Started);
        for _ in 0..50 {
            assert_eq!(ask("k1"), Admission::AlreadyPending);
        }
        at(150).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(ask("k1"), Admission::Reused(7));
        assert_eq!(ask("k2"), Admission::Started);
        assert_eq!(ask("k3"), Admission::Started);
        assert_eq!(ask("k4"), Admission::Started);
        assert_eq!(ask("k5"), Admission::Skipped, "three wait already");
        at(250).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "k2 starts 500 ms after k1");
        at(750).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        at(1250).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        at(1750).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // A cancelled deletion forgets the result; the next one scans afresh.
        limiter.forget("k1");
        assert_eq!(ask("k1"), Admission::Started);
        at(2300).await;
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        at(2400).await;
        assert_eq!(reported.lock().unwrap().len(), 6);
    }
}
