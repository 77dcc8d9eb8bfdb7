//! What sealgate does when a KMS key's lifecycle changes (`kms::api::KeyEvent`, returned
//! by the KMS API for the requests that change it).
//!
//! ScheduleKeyDeletion warns with the key-deletion impact report: a background scan of
//! the store counts the objects whose data keys are still wrapped under the key (they
//! become unreadable when the waiting period ends), logs a warning naming the buckets
//! and sets `sealgate_kms_pending_deletion_objects`. CancelKeyDeletion clears the gauge.
//! The scan is `admin::key_impact`, the one `sealgate kms impact` runs.
//!
//! Invariant: reacting never delays or changes the KMS answer; the scan runs on its own
//! task and only logs and sets a gauge.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::kms::api::KeyEvent;
use crate::metrics::{KeyIdLabel, SharedMetrics};
use crate::upstream::Upstream;

/// Reacts to `event`: starts the impact scan of `store` (all buckets but `skip`) for a
/// scheduled deletion, clears the report of a cancelled one.
pub fn on_key_event(event: KeyEvent, store: &Upstream, skip: &[String], metrics: &SharedMetrics) {
    match event {
        KeyEvent::DeletionCancelled { key_arn } => {
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
            let (store, skip, metrics) = (store.clone(), skip.to_vec(), metrics.clone());
            tokio::spawn(async move {
                report_impact(&store, &key_arn, &deletion, &skip, &metrics).await;
            });
        }
    }
}

/// Scans the store for objects under `arn`, then logs and sets the gauge.
async fn report_impact(
    store: &Upstream,
    arn: &str,
    deletion: &str,
    skip: &[String],
    metrics: &SharedMetrics,
) {
    let mut quiet = |_: &str| {};
    match crate::admin::key_impact(store, arn, &[], skip, &mut quiet).await {
        Ok(impact) => {
            let n = impact.objects();
            let label = KeyIdLabel {
                key: arn.to_string(),
            };
            metrics
                .pending_deletion_objects
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
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
        }
        Err(e) => tracing::warn!(
            key = %arn,
            error = %e,
            "KMS key scheduled for deletion: the impact scan of the store failed; \
             run `sealgate kms impact --key ...` before the waiting period ends"
        ),
    }
}
