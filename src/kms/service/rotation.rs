//! Automatic and on-demand rotation of backing keys, and the timer hook (`tick`) that
//! performs due rotations, deletions and material expiries.

use std::sync::Arc;

use super::{KeyEntry, Kms, Page, import_ops, multi_region, paginate, poisoned};
use crate::kms::KmsError;
use crate::kms::caller::Caller;
use crate::kms::constraints::{self, MAX_ON_DEMAND_ROTATIONS, PAGE_DEFAULT};

use crate::kms::clock::DAY_MS;
use crate::kms::model::{KeyState, RotationType};
use crate::kms::ops::Op;

const MIN_ROTATION_DAYS: i64 = 90;
const MAX_ROTATION_DAYS: i64 = 2560;
pub(super) const DEFAULT_ROTATION_DAYS: u32 = 365;

/// `GetKeyRotationStatus` result.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationStatus {
    pub enabled: bool,
    pub key_arn: String,
    pub period_days: Option<u32>,
    pub next_rotation_ms: Option<i64>,
}

/// One entry of `ListKeyRotations` / `ListAliases` pages.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationEntry {
    pub key_id: String,
    pub rotation_ms: i64,
    pub on_demand: bool,
}

impl Kms {
    pub fn enable_key_rotation(
        &self,
        who: Caller<'_>,
        key_id: &str,
        period_days: Option<i64>,
    ) -> Result<(), KmsError> {
        let days = period_days.unwrap_or(i64::from(DEFAULT_ROTATION_DAYS));
        constraints::range(
            days,
            "rotationPeriodInDays",
            MIN_ROTATION_DAYS,
            MAX_ROTATION_DAYS,
        )?;
        self.mutate(who, key_id, Op::EnableKeyRotation, |r, now| {
            import_ops::refuse_rotation_of_imported(r, Op::EnableKeyRotation)?;
            multi_region::refuse_on_replica(r, Op::EnableKeyRotation)?;
            // Re-enabling or changing the period counts from the last rotation (or now).
            let base = match (r.rotation_period_days, r.next_rotation_ms) {
                (Some(old), Some(next)) => next - i64::from(old) * DAY_MS,
                _ => now,
            };
            r.rotation_period_days = Some(days as u32);
            r.next_rotation_ms = Some(base + days * DAY_MS);
            Ok(())
        })
        .map(drop)
    }

    pub fn disable_key_rotation(&self, who: Caller<'_>, key_id: &str) -> Result<(), KmsError> {
        self.mutate(who, key_id, Op::DisableKeyRotation, |r, _| {
            import_ops::refuse_rotation_of_imported(r, Op::DisableKeyRotation)?;
            multi_region::refuse_on_replica(r, Op::DisableKeyRotation)?;
            r.rotation_period_days = None;
            r.next_rotation_ms = None;
            Ok(())
        })
        .map(drop)
    }

    pub fn get_key_rotation_status(
        &self,
        who: Caller<'_>,
        key_id: &str,
    ) -> Result<RotationStatus, KmsError> {
        let e = self.key_for(who, key_id, Op::GetKeyRotationStatus, false, None, None)?;
        // A multi-Region replica shares its primary's rotation.
        let src = self.rotation_source(&e);
        // A key pending deletion reports rotation disabled (AWS's key-state table); the
        // setting is kept and reported again if the deletion is cancelled.
        let enabled =
            src.rec.next_rotation_ms.is_some() && e.rec.state != KeyState::PendingDeletion;
        Ok(RotationStatus {
            enabled,
            key_arn: e.arn.clone(),
            period_days: src.rec.rotation_period_days.filter(|_| enabled),
            next_rotation_ms: src.rec.next_rotation_ms.filter(|_| enabled),
        })
    }

    /// Adds a new backing-key version now; returns the key ARN.
    pub fn rotate_key_on_demand(&self, who: Caller<'_>, key_id: &str) -> Result<String, KmsError> {
        let g = self.lock_writer()?;
        let e = self.key_for(who, key_id, Op::RotateKeyOnDemand, false, None, Some(&g))?;
        import_ops::refuse_rotation_of_imported(&e.rec, Op::RotateKeyOnDemand)?;
        multi_region::refuse_on_replica(&e.rec, Op::RotateKeyOnDemand)?;
        let on_demand = e
            .rec
            .versions
            .iter()
            .filter(|v| v.kind == RotationType::OnDemand)
            .count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {}",
                e.arn
            )));
        }
        Ok(self
            .rotate_locked(&g, &e, RotationType::OnDemand)?
            .arn
            .clone())
    }

    pub fn list_key_rotations(
        &self,
        who: Caller<'_>,
        key_id: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        let e = self.key_for(who, key_id, Op::ListKeyRotations, false, None, None)?;
        let rotations = e
            .rec
            .versions
            .iter()
            .filter(|v| v.kind != RotationType::Initial)
            .map(|v| {
                (
                    format!("{:010}", v.version),
                    RotationEntry {
                        key_id: e.rec.key_id(),
                        rotation_ms: v.created_ms,
                        on_demand: v.kind == RotationType::OnDemand,
                    },
                )
            });
        paginate(rotations, PAGE_DEFAULT, limit, marker)
    }

    /// Timer hook (all regions): destroys keys whose deletion window has passed, deletes
    /// imported material whose ValidTo has passed and performs due automatic rotations.
    pub fn tick(&self) -> Result<(), KmsError> {
        let now = self.now_ms();
        let due: Vec<(String, Arc<KeyEntry>)> = {
            let all = self.inner.state.read().unwrap_or_else(poisoned);
            all.iter()
                .flat_map(|(r, st)| st.keys.values().map(move |e| (r, e)))
                .filter(|(_, e)| {
                    e.rec.deletion_due(now)
                        || e.rec.rotation_due(now)
                        || e.rec.material_expiry_due(now)
                })
                .map(|(r, e)| (r.clone(), e.clone()))
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        let g = self.lock_writer()?;
        for (region, e) in due {
            match self.view(&region).maintain(e, Some(&g)) {
                Ok(_) | Err(KmsError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
