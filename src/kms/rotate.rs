//! Root-key rotation (`sealgate kms rotate-root`): every key's material re-sealed and
//! every row re-authenticated under the new root key, and the database's key-check value
//! replaced, in one transaction. Instances that carry the previous root key keep
//! serving throughout (what either key sealed opens for them); afterwards the new key
//! alone opens the database. docs/design/root-key-rotation.md.

use std::collections::HashSet;

use sha2::Digest as _;
use uuid::Uuid;

use super::KmsConfig;
use super::crypto::RootKey;
use super::error::KmsError;
use super::import::material_check_value;
use super::store::{Loaded, Mutation, Store, fingerprint_with};

/// What a rotation re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotated {
    pub keys: usize,
    pub material_versions: usize,
    /// Rows re-authenticated (keys, aliases, grants, settings).
    pub rows: usize,
}

/// Rotates the store `cfg` names to `root`, which carries the previous root key.
pub(crate) fn rotate(cfg: &KmsConfig, root: &RootKey) -> Result<Rotated, KmsError> {
    let Some(previous) = root.previous() else {
        return Err(KmsError::Config(
            "rotating the root key needs the previous root key too: set kms.previous_root_key_file (or $SEALGATE_KMS_PREVIOUS_ROOT_KEY, or kms_unseal.previous_sealed_root_key_file) to the key the database is sealed under, and the root key to the new one".into(),
        ));
    };
    if cfg.store == super::StoreKind::Redb && !cfg.db_path.exists() {
        return Err(KmsError::Config(format!(
            "there is no KMS database at {} (kms.db_path) to rotate",
            cfg.db_path.display()
        )));
    }
    let (store, loaded) = Store::open(cfg, root)?;
    // With a shared store: the cluster's writer lock, and what other instances wrote.
    let mut loaded = store.begin_write()?.unwrap_or(loaded);
    root.seal_under_current();
    let done = reseal(&store, &mut loaded, root, previous);
    if done.is_err() {
        store.end_write();
    }
    let rotated = done?;
    drop(store);
    // The new root key alone must open everything now.
    let alone = root.without_previous()?;
    let (_store, reread) = Store::open(cfg, &alone)?;
    if digest(&reread, &alone)? != digest(&loaded, &alone)? {
        return Err(KmsError::Internal(
            "after the rotation the database does not read back as before; keep the previous root key configured and report this".into(),
        ));
    }
    Ok(rotated)
}

/// Re-seals `loaded` under `root` and applies it with the new key-check value.
fn reseal(
    store: &Store,
    loaded: &mut Loaded,
    root: &RootKey,
    previous: &RootKey,
) -> Result<Rotated, KmsError> {
    let mut seen = HashSet::new();
    let mut sealed: Vec<(Uuid, u32, Vec<u8>)> = Vec::new();
    for (rec, mats) in &mut loaded.keys {
        let mut first = true;
        for (version, bytes) in mats.iter_mut() {
            let raw = root.open_raw(&rec.id, *version, bytes)?;
            // An imported key's check value is keyed by the root key: computed again
            // under the new one, where it is the previous key's value for this material.
            if first
                && let Some(import) = &mut rec.import
                && import.check_value == material_check_value(previous, &rec.id, &raw)
            {
                import.check_value = material_check_value(root, &rec.id, &raw);
            }
            first = false;
            *bytes = root.seal_material(&rec.id, *version, &raw)?;
            if seen.insert((rec.id, *version)) {
                sealed.push((rec.id, *version, bytes.clone()));
            }
        }
    }
    reseal_store_passwords(loaded, root)?;
    let kcv = root.check_value();
    let mut muts = loaded.mutations(false);
    let rows = muts.len();
    muts.extend(
        sealed
            .iter()
            .map(|(id, version, bytes)| Mutation::PutMaterial {
                id: *id,
                version: *version,
                sealed: bytes,
            }),
    );
    muts.push(Mutation::PutMeta("kcv", &kcv));
    store.apply(&muts)?;
    Ok(Rotated {
        keys: loaded.keys.len(),
        material_versions: sealed.len(),
        rows,
    })
}

/// Custom key stores keep their token PIN sealed under the root key, inside their
/// settings row: sealed again under the new key.
fn reseal_store_passwords(loaded: &mut Loaded, root: &RootKey) -> Result<(), KmsError> {
    use super::key_stores::{SETTING_PREFIX, StoreRecord};
    for (name, json) in loaded.settings.iter_mut() {
        if !name.starts_with(SETTING_PREFIX) {
            continue;
        }
        let mut rec: StoreRecord = serde_json::from_slice(json)
            .map_err(|e| KmsError::Internal(format!("setting {name} is unreadable: {e}")))?;
        let pin = rec.open_password(root)?;
        rec.seal_password(root, &pin)?;
        *json = rec.to_json()?;
    }
    Ok(())
}

/// Everything `l` holds, material opened with `root` and hashed: equal before and after
/// a rotation, although every sealed byte changed.
fn digest(l: &Loaded, root: &RootKey) -> Result<Vec<Vec<u8>>, KmsError> {
    fingerprint_with(l, |id, v, sealed| {
        Ok(sha2::Sha256::digest(root.open_raw(id, v, sealed)?).to_vec())
    })
}
