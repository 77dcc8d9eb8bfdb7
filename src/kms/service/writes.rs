//! The transactions every mutation goes through: installing a new snapshot,
//! read-modify-write of one key record, rotation, destruction and key creation. Each
//! holds the writer lock (`WriteGuard`) and commits one redb transaction.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::rotation::DEFAULT_ROTATION_DAYS;
use super::{CreateKeyOptions, KeyEntry, Kms, WriteGuard, key_arn, poisoned};
use crate::kms::KmsError;
use crate::kms::caller::Caller;

use crate::kms::asym::KeyMaterial;
use crate::kms::clock::DAY_MS;
use crate::kms::model::{
    AliasRecord, KeyManager, KeyMetadata, KeyRecord, KeyState, MultiRegionRole, Origin,
    RotationType, VersionInfo,
};
use crate::kms::ops::Op;
use crate::kms::store::Mutation;

impl Kms {
    /// Swaps a new snapshot of a key in (in the key's own region).
    pub(super) fn install(&self, entry: Arc<KeyEntry>) {
        let region = self.region_of(&entry.rec).to_string();
        let mut all = self.inner.state.write().unwrap_or_else(poisoned);
        all.entry(region)
            .or_default()
            .keys
            .insert(entry.rec.id, entry);
    }

    /// Read-modify-write of one key record in one transaction.
    pub(super) fn mutate(
        &self,
        who: Caller<'_>,
        key_id: &str,
        op: Op,
        f: impl FnOnce(&mut KeyRecord, i64) -> Result<(), KmsError>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let g = self.lock_writer()?;
        let e = self.key_for(who, key_id, op, false, None, Some(&g))?;
        let mut rec = e.rec.clone();
        f(&mut rec, self.now_ms())?;
        let new = self.rebuild(&e, rec)?;
        self.inner.store.apply(&[Mutation::PutKey(&new.rec)])?;
        self.install(new.clone());
        Ok(new)
    }

    pub(super) fn rotate_locked(
        &self,
        _g: &WriteGuard<'_>,
        e: &KeyEntry,
        kind: RotationType,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        let mut rec = e.rec.clone();
        let version = rec.current_version().unwrap_or(0) + 1;
        let (key, raw) = KeyMaterial::generate(rec.key_spec, rec.key_usage)?;
        let sealed = self.inner.root.seal_material(&rec.id, version, &raw)?;
        drop(raw);
        rec.versions.push(VersionInfo {
            version,
            created_ms: now,
            kind,
        });
        if kind == RotationType::Automatic {
            let period = i64::from(rec.rotation_period_days.unwrap_or(DEFAULT_ROTATION_DAYS));
            rec.next_rotation_ms = Some(now + period * DAY_MS);
        }
        // Every copy of a multi-Region key gets the new version in the same transaction.
        let copies = self.copies_elsewhere(rec.id);
        let copy_recs: Vec<KeyRecord> = copies
            .iter()
            .map(|c| {
                let mut r = c.rec.clone();
                r.versions.push(VersionInfo {
                    version,
                    created_ms: now,
                    kind,
                });
                r
            })
            .collect();
        let mut muts = vec![
            Mutation::PutKey(&rec),
            Mutation::PutMaterial {
                id: rec.id,
                version,
                sealed: &sealed,
            },
        ];
        muts.extend(copy_recs.iter().map(Mutation::PutKey));
        self.inner.store.apply(&muts)?;
        drop(muts);
        let key = Arc::new(key);
        for (c, r) in copies.iter().zip(copy_recs) {
            let mut material = c.material.clone();
            material.insert(version, key.clone());
            self.install(c.with_material(r, material));
        }
        let mut material = e.material.clone();
        material.insert(version, key);
        let new = e.with_material(rec, material);
        self.install(new.clone());
        tracing::info!(key_id = %new.rec.id, version, ?kind, "KMS key rotated");
        Ok(new)
    }

    /// Destroys a key, its material and its aliases for good.
    pub(super) fn destroy_locked(&self, _g: &WriteGuard<'_>, id: Uuid) -> Result<(), KmsError> {
        let aliases: Vec<String> = {
            let st = self.state();
            st.aliases
                .iter()
                .filter(|(_, a)| a.target == id)
                .map(|(n, _)| n.clone())
                .collect()
        };
        // Copies of a multi-Region key in other regions still need the shared material.
        let material = self.copies_elsewhere(id).is_empty();
        let region = self.other_region();
        let store = self
            .state()
            .keys
            .get(&id)
            .and_then(|e| e.rec.custom_key_store_id.clone());
        let mut muts = vec![Mutation::DropKey {
            region,
            id,
            material,
        }];
        muts.extend(aliases.iter().map(|a| self.delete_alias_mutation(a)));
        self.inner.store.apply(&muts)?;
        let mut st = self.state_mut();
        st.keys.remove(&id);
        for a in &aliases {
            st.aliases.remove(a);
        }
        drop(st);
        if let Some(store) = store {
            self.destroy_in_store(&store, &id.to_string());
        }
        tracing::info!(key_id = %id, "KMS key deleted after its waiting period");
        Ok(())
    }

    pub(super) fn new_key_locked(
        &self,
        _g: &WriteGuard<'_>,
        id: Uuid,
        opts: &CreateKeyOptions,
        manager: KeyManager,
        alias: Option<&str>,
        creator: Option<&crate::auth::Principal>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        let mut rec = KeyRecord {
            id,
            created_ms: now,
            description: opts.description.clone(),
            state: KeyState::Enabled,
            manager,
            origin: Origin::AwsKms,
            tags: opts.tags.iter().cloned().collect(),
            deletion_ms: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation_ms: None,
            versions: Vec::new(),
            policy: opts.policy.clone(),
            key_spec: opts.key_spec,
            key_usage: opts.key_usage,
            import: None,
            region: self.other_region().map(str::to_string),
            multi_region: opts.multi_region.then_some(MultiRegionRole::Primary),
            created_by: creator.map(|p| p.arn()),
            custom_key_store_id: None,
        };
        if manager == KeyManager::Aws {
            rec.rotation_period_days = Some(DEFAULT_ROTATION_DAYS);
            rec.next_rotation_ms = Some(now + i64::from(DEFAULT_ROTATION_DAYS) * DAY_MS);
        }
        let mut material = HashMap::new();
        let sealed;
        let alias_rec = AliasRecord {
            target: id,
            created_ms: now,
            updated_ms: now,
        };
        let mut muts = Vec::new();
        let label = id.to_string();
        if let Some(store) = &opts.custom_key_store_id {
            // The material is created in the token, never here.
            self.create_in_store(store, &label)?;
            rec.origin = Origin::AwsCloudHsm;
            rec.custom_key_store_id = Some(store.clone());
            rec.versions.push(VersionInfo {
                version: 1,
                created_ms: now,
                kind: RotationType::Initial,
            });
            material.insert(
                1,
                super::key_store_ops::hsm_material(&self.inner.key_stores, store, &label),
            );
        } else if opts.external {
            rec.origin = Origin::External;
            rec.state = KeyState::PendingImport;
        } else {
            let (key, raw) = KeyMaterial::generate(opts.key_spec, opts.key_usage)?;
            sealed = self.inner.root.seal_material(&id, 1, &raw)?;
            rec.versions.push(VersionInfo {
                version: 1,
                created_ms: now,
                kind: RotationType::Initial,
            });
            material.insert(1, Arc::new(key));
            muts.push(Mutation::PutMaterial {
                id,
                version: 1,
                sealed: &sealed,
            });
        }
        muts.push(Mutation::PutKey(&rec));
        if let Some(a) = alias {
            muts.push(self.put_alias_mutation(a, &alias_rec));
        }
        if let Err(e) = self.inner.store.apply(&muts) {
            if let Some(store) = &rec.custom_key_store_id {
                self.destroy_in_store(store, &label);
            }
            return Err(e);
        }
        drop(muts);
        let entry = Arc::new(KeyEntry {
            arn: key_arn(&self.region, &self.inner.account, &rec.key_id()),
            policy: self.policy_for(&rec)?,
            rec,
            material,
            grants: Arc::default(),
            usage: Arc::default(),
        });
        let mut st = self.state_mut();
        st.keys.insert(id, entry.clone());
        if let Some(a) = alias {
            st.aliases.insert(a.to_string(), alias_rec);
        }
        Ok(entry)
    }

    pub(super) fn metadata(&self, e: &KeyEntry) -> KeyMetadata {
        let mut md = KeyMetadata::from_record(&e.rec, &self.inner.account, e.arn.clone());
        md.multi_region_configuration = self.multi_region_configuration(e);
        self.custom_key_store_metadata(e, &mut md);
        md
    }
}
