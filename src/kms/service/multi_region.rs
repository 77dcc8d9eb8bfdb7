//! Multi-Region keys: `mrk-` ids, ReplicateKey, UpdatePrimaryRegion, the
//! MultiRegionConfiguration of DescribeKey, and the rules that keep copies in step.
//!
//! A multi-Region key is one record per region with the same 128-bit id. The copies
//! share the `material` rows and the list of versions (a rotation of the primary adds the
//! version to every copy in one transaction, see `Kms::rotate_locked`), so a blob — which
//! names the key by those 128 bits — opens in every region that has a copy. Description,
//! policy, tags, aliases, grants and key state are per region, as on AWS.
//!
//! Invariants: exactly one copy is `Primary`; only the primary rotates (automatic
//! rotation settings live on it and move with UpdatePrimaryRegion); a primary with
//! replicas is not destroyed before they are (it stays PendingDeletion, AWS's
//! PendingReplicaDeletion).

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{check_tag_count, validate_description, validate_tags};
use super::{KeyEntry, Kms, key_arn};
use crate::kms::KmsError;
use crate::kms::caller::Caller;

use crate::kms::model::{
    KeyManager, KeyMetadata, KeyRecord, KeyState, MultiRegionConfiguration, MultiRegionKey,
    MultiRegionRole,
};
use crate::kms::ops::Op;
use crate::kms::policy::default_policy_text;
use crate::kms::store::Mutation;

/// What ReplicateKey accepts besides the key and the region.
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// Key policy of the replica; None = the default policy.
    pub policy: Option<String>,
    pub bypass_policy_lockout_safety_check: bool,
}

/// ReplicateKey's result: the replica's metadata, key policy and tags.
#[derive(Debug, Clone)]
pub struct Replica {
    pub metadata: KeyMetadata,
    pub policy: String,
    pub tags: Vec<(String, String)>,
}

/// A fresh multi-Region key id: 128 random bits, shown as `mrk-` + 32 hex digits.
pub(super) fn new_mrk_id() -> Result<Uuid, KmsError> {
    let bytes = crate::kms::crypto::random_bytes(16)?;
    Uuid::from_slice(&bytes).map_err(|_| KmsError::Internal("key id generation failed".into()))
}

/// AWS's region pattern `^([a-z]+-){2,3}\d+$`.
fn validate_region(region: &str, field: &str) -> Result<(), KmsError> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = (3..=4).contains(&parts.len())
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(KmsError::constraint(
            region,
            field,
            "Member must satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$",
        ));
    }
    Ok(())
}

/// Replicas do not rotate on their own: rotation is the primary's (AWS).
pub(super) fn refuse_on_replica(rec: &KeyRecord, op: Op) -> Result<(), KmsError> {
    if rec.multi_region == Some(MultiRegionRole::Replica) {
        return Err(KmsError::UnsupportedOperation(format!(
            "{} is a multi-Region replica key; {} is only possible on its primary key.",
            rec.key_id(),
            op.name()
        )));
    }
    Ok(())
}

fn not_multi_region(e: &KeyEntry, op: Op) -> KmsError {
    KmsError::UnsupportedOperation(format!(
        "{} is not a multi-Region key; {} needs a multi-Region primary key (CreateKey with MultiRegion=true).",
        e.arn,
        op.name()
    ))
}

fn not_primary(e: &KeyEntry, op: Op) -> KmsError {
    KmsError::UnsupportedOperation(format!(
        "{} is a multi-Region replica key; call {} on its primary key, in the primary's region.",
        e.arn,
        op.name()
    ))
}

impl Kms {
    /// This KMS seen from `region` (a region known to be served).
    pub(super) fn view(&self, region: &str) -> Kms {
        Kms {
            inner: self.inner.clone(),
            region: Arc::from(region),
        }
    }

    /// The copies of multi-Region key `id` in regions other than this view's.
    pub(super) fn copies_elsewhere(&self, id: Uuid) -> Vec<Arc<KeyEntry>> {
        let all = self
            .inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .filter(|(r, _)| **r != *self.region)
            .filter_map(|(_, st)| st.keys.get(&id))
            .filter(|e| e.rec.multi_region.is_some())
            .cloned()
            .collect()
    }

    /// A primary whose deletion is due but that still has replicas waits for them.
    pub(super) fn waits_for_replicas(&self, rec: &KeyRecord) -> bool {
        rec.multi_region == Some(MultiRegionRole::Primary)
            && !self
                .view(self.region_of(rec))
                .copies_elsewhere(rec.id)
                .is_empty()
    }

    /// Where a key's rotation settings live: the primary copy for a replica.
    pub(super) fn rotation_source(&self, e: &Arc<KeyEntry>) -> Arc<KeyEntry> {
        if e.rec.multi_region != Some(MultiRegionRole::Replica) {
            return e.clone();
        }
        self.view(self.region_of(&e.rec))
            .copies_elsewhere(e.rec.id)
            .into_iter()
            .find(|c| c.rec.multi_region == Some(MultiRegionRole::Primary))
            .unwrap_or_else(|| e.clone())
    }

    /// DescribeKey's MultiRegionConfiguration (None for single-region keys).
    pub(super) fn multi_region_configuration(
        &self,
        e: &KeyEntry,
    ) -> Option<MultiRegionConfiguration> {
        let role = e.rec.multi_region?;
        let others = self.view(self.region_of(&e.rec)).copies_elsewhere(e.rec.id);
        let copies: Vec<&KeyEntry> = others.iter().map(|c| &**c).chain([e]).collect();
        let key = |c: &KeyEntry| MultiRegionKey {
            arn: c.arn.clone(),
            region: self.region_of(&c.rec).to_string(),
        };
        let primary = copies
            .iter()
            .find(|c| c.rec.multi_region == Some(MultiRegionRole::Primary))
            .map(|c| key(c))?;
        let mut replica_keys: Vec<MultiRegionKey> = copies
            .iter()
            .filter(|c| c.rec.multi_region == Some(MultiRegionRole::Replica))
            .map(|c| key(c))
            .collect();
        replica_keys.sort_by(|a, b| a.region.cmp(&b.region));
        Some(MultiRegionConfiguration {
            multi_region_key_type: match role {
                MultiRegionRole::Primary => "PRIMARY",
                MultiRegionRole::Replica => "REPLICA",
            },
            primary_key: primary,
            replica_keys,
        })
    }

    /// The key `key_id` for `op` (policy, state), which must be a multi-Region primary.
    fn primary_for(
        &self,
        who: Caller<'_>,
        key_id: &str,
        op: Op,
        g: &super::WriteGuard<'_>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let e = self.key_for(who, key_id, op, false, None, Some(g))?;
        match e.rec.multi_region {
            None => Err(not_multi_region(&e, op)),
            Some(MultiRegionRole::Replica) => Err(not_primary(&e, op)),
            Some(MultiRegionRole::Primary) => Ok(e),
        }
    }

    /// ReplicateKey: a replica of the primary `key_id` (this view's region) in
    /// `replica_region`, with the same id and material.
    pub fn replicate_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        replica_region: &str,
        opts: &ReplicaOptions,
    ) -> Result<Replica, KmsError> {
        validate_region(replica_region, "replicaRegion")?;
        validate_description(&opts.description)?;
        validate_tags(&opts.tags)?;
        check_tag_count(opts.tags.len())?;
        let op = Op::ReplicateKey;
        let g = self.lock_writer()?;
        let e = self.primary_for(who, key_id, op, &g)?;
        if replica_region == self.region() {
            return Err(KmsError::Validation(format!(
                "ReplicaRegion {replica_region} is the region of the primary key {}; a replica must be in another region.",
                e.arn
            )));
        }
        let dest = self.in_region(replica_region)?;
        if dest.state().keys.contains_key(&e.rec.id) {
            return Err(KmsError::AlreadyExists(format!(
                "{} already has a replica in {replica_region}.",
                e.arn
            )));
        }
        dest.authorize_account(who, Op::CreateKey)?;
        let arn = key_arn(replica_region, &self.inner.account, &e.rec.key_id());
        let text = opts
            .policy
            .clone()
            .unwrap_or_else(|| default_policy_text(&self.inner.account));
        let bypass = opts.bypass_policy_lockout_safety_check;
        let policy = dest.check_new_policy(who, &text, &arn, bypass)?;
        dest.check_key_quota(who)?;
        let rec = KeyRecord {
            id: e.rec.id,
            created_ms: self.now_ms(),
            description: opts.description.clone(),
            state: KeyState::Enabled,
            manager: KeyManager::Customer,
            origin: e.rec.origin,
            tags: opts.tags.iter().cloned().collect(),
            deletion_ms: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation_ms: None,
            versions: e.rec.versions.clone(),
            policy: Some(text.clone()),
            key_spec: e.rec.key_spec,
            key_usage: e.rec.key_usage,
            import: None,
            region: dest.other_region().map(str::to_string),
            multi_region: Some(MultiRegionRole::Replica),
            created_by: Some(who.principal.arn()),
            custom_key_store_id: None,
        };
        self.inner.store.apply(&[Mutation::PutKey(&rec)])?;
        let entry = Arc::new(KeyEntry {
            rec,
            arn,
            material: e.material.clone(),
            policy: Arc::new(policy),
            grants: Arc::default(),
            usage: Arc::default(),
        });
        self.install(entry.clone());
        drop(g);
        tracing::info!(key_id = %entry.rec.key_id(), replica_region, "KMS multi-Region key replicated");
        let tags = entry
            .rec
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Replica {
            metadata: dest.metadata(&entry),
            policy: text,
            tags,
        })
    }

    /// UpdatePrimaryRegion: the replica in `primary_region` becomes the primary and this
    /// view's primary a replica (rotation settings move with the role), in one
    /// transaction.
    pub fn update_primary_region(
        &self,
        who: Caller<'_>,
        key_id: &str,
        primary_region: &str,
    ) -> Result<(), KmsError> {
        validate_region(primary_region, "primaryRegion")?;
        let op = Op::UpdatePrimaryRegion;
        let g = self.lock_writer()?;
        let e = self.primary_for(who, key_id, op, &g)?;
        if primary_region == self.region() {
            return Ok(());
        }
        let dest = self.in_region(primary_region)?;
        let Some(replica) = dest.state().keys.get(&e.rec.id).cloned() else {
            return Err(KmsError::NotFound(format!(
                "{} has no replica in {primary_region}; ReplicateKey first.",
                e.arn
            )));
        };
        let mut old = e.rec.clone();
        let mut new = replica.rec.clone();
        old.multi_region = Some(MultiRegionRole::Replica);
        new.multi_region = Some(MultiRegionRole::Primary);
        new.rotation_period_days = old.rotation_period_days.take();
        new.next_rotation_ms = old.next_rotation_ms.take();
        self.inner
            .store
            .apply(&[Mutation::PutKey(&old), Mutation::PutKey(&new)])?;
        self.install(e.with_record(old, e.policy.clone()));
        self.install(replica.with_record(new, replica.policy.clone()));
        tracing::info!(key_id = %e.rec.key_id(), primary_region, "KMS multi-Region primary moved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_follow_the_aws_pattern() {
        for ok in ["us-east-1", "eu-west-3", "us-gov-west-1", "ap-southeast-2"] {
            assert!(validate_region(ok, "r").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-east-1",
            "us-east-1a",
            "us--1",
            "a-b-c-d-1",
        ] {
            let err = validate_region(bad, "r").unwrap_err();
            assert_eq!(err.aws_type(), "ValidationException", "{bad}");
        }
    }

    #[test]
    fn new_mrk_ids_are_random() {
        let (a, b) = (new_mrk_id().unwrap(), new_mrk_id().unwrap());
        assert_ne!(a, b);
    }
}
