//! Persistence in redb. Every mutation of the KMS is one write transaction
//! (`Store::apply`), so a crash never leaves a half-created key, a key without its
//! material, or an alias pointing at nothing.
//!
//! Tables:
//! - `meta`: `format` (u32 as bytes) and `kcv` (root-key check value);
//! - `keys`: key id (u128) → `KeyRecord` JSON (no material);
//! - `material`: (key id, version) → backing key sealed under the root key;
//! - `aliases`: alias name → `AliasRecord` JSON;
//! - `grants`: (key id, grant id) → `Grant` JSON (absent in databases created before
//!   grants existed; created on the first write);
//! - `region_keys`, `region_aliases`: (region, key id) → record and (region, alias) →
//!   alias for regions other than the home region (multi-Region keys, `kms.regions`).
//!   Home-region keys and aliases stay in `keys`/`aliases`, so older databases load
//!   unchanged. Copies of a multi-Region key share one set of `material` rows.

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use super::KmsError;
use super::crypto::RootKey;
use super::grants::Grant;
use super::model::{AliasRecord, KeyRecord};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("keys");
const MATERIAL: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("material");
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
const GRANTS: TableDefinition<(u128, &str), &[u8]> = TableDefinition::new("grants");
const REGION_KEYS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("region_keys");
const REGION_ALIASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("region_aliases");

const FORMAT_VERSION: u32 = 1;

/// One change inside a transaction.
pub enum Mutation<'a> {
    PutKey(&'a KeyRecord),
    PutMaterial {
        id: Uuid,
        version: u32,
        sealed: &'a [u8],
    },
    /// Removes the key's record in `region` (None = home) and its grants there, and
    /// every material version if `material` (no other region's copy needs it).
    DropKey {
        region: Option<&'a str>,
        id: Uuid,
        material: bool,
    },
    /// Removes every material version of a key, keeping its record (imported material
    /// deleted or expired).
    DeleteMaterial(Uuid),
    PutAlias(&'a str, &'a AliasRecord),
    DeleteAlias(&'a str),
    /// An alias in a region other than the home region.
    PutRegionAlias(&'a str, &'a str, &'a AliasRecord),
    DeleteRegionAlias(&'a str, &'a str),
    PutGrant(&'a Grant),
    DeleteGrant(Uuid, &'a str),
}

/// Sealed material of one key: (version, sealed bytes).
pub type SealedVersions = Vec<(u32, Vec<u8>)>;

/// Everything read at startup.
pub struct Loaded {
    pub keys: Vec<(KeyRecord, SealedVersions)>,
    /// (region, None = home; alias name; alias).
    pub aliases: Vec<(Option<String>, String, AliasRecord)>,
    pub grants: Vec<Grant>,
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database and checks the root key against the stored
    /// key-check value. A mismatch returns `WrongRootKey` before anything is written.
    pub fn open(path: &Path, root: &RootKey) -> Result<(Store, Loaded), KmsError> {
        let db = Database::create(path).map_err(|e| {
            KmsError::Config(format!("cannot open KMS database {}: {e}", path.display()))
        })?;
        let store = Store { db };
        let stored_kcv = store.read_meta("kcv")?;
        match stored_kcv {
            Some(kcv) if root.matches_check_value(&kcv) => {}
            Some(_) => return Err(KmsError::WrongRootKey(path.display().to_string())),
            None => {
                if store.has_keys()? {
                    return Err(KmsError::Config(format!(
                        "{} holds keys but no root-key check value; refusing to open",
                        path.display()
                    )));
                }
                store.init(root)?;
            }
        }
        let loaded = store.load()?;
        Ok((store, loaded))
    }

    /// Readiness: a read transaction sees the format record. Writes nothing.
    pub fn check_readable(&self) -> Result<(), KmsError> {
        match self.read_meta("format")? {
            Some(_) => Ok(()),
            None => Err(KmsError::Internal(
                "the KMS database has no format record".into(),
            )),
        }
    }

    fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, KmsError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(name)?.map(|v| v.value().to_vec()))
    }

    fn has_keys(&self) -> Result<bool, KmsError> {
        let txn = self.db.begin_read()?;
        match txn.open_table(KEYS) {
            Ok(t) => Ok(!t.is_empty()?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn init(&self, root: &RootKey) -> Result<(), KmsError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("format", FORMAT_VERSION.to_be_bytes().as_slice())?;
            meta.insert("kcv", root.check_value().as_slice())?;
            txn.open_table(KEYS)?;
            txn.open_table(MATERIAL)?;
            txn.open_table(ALIASES)?;
            txn.open_table(GRANTS)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn load(&self) -> Result<Loaded, KmsError> {
        let txn = self.db.begin_read()?;
        let keys_t = txn.open_table(KEYS)?;
        let mat_t = txn.open_table(MATERIAL)?;
        let sealed = |id: u128| -> Result<SealedVersions, KmsError> {
            let mut mats = Vec::new();
            for m in mat_t.range((id, 0)..=(id, u32::MAX))? {
                let (k, v) = m?;
                mats.push((k.value().1, v.value().to_vec()));
            }
            Ok(mats)
        };
        let mut keys = Vec::new();
        for row in keys_t.iter()? {
            let (id, json) = row?;
            let mut rec: KeyRecord = serde_json::from_slice(json.value())?;
            rec.region = None;
            keys.push((rec, sealed(id.value())?));
        }
        let mut aliases = Vec::new();
        for row in txn.open_table(ALIASES)?.iter()? {
            let (name, json) = row?;
            let rec = serde_json::from_slice(json.value())?;
            aliases.push((None, name.value().to_string(), rec));
        }
        if let Some(t) = open_optional(&txn, REGION_KEYS)? {
            for row in t.iter()? {
                let (k, json) = row?;
                let (region, id) = k.value();
                let mut rec: KeyRecord = serde_json::from_slice(json.value())?;
                rec.region = Some(region.to_string());
                keys.push((rec, sealed(id)?));
            }
        }
        if let Some(t) = open_optional(&txn, REGION_ALIASES)? {
            for row in t.iter()? {
                let (k, json) = row?;
                let (region, name) = k.value();
                let rec = serde_json::from_slice(json.value())?;
                aliases.push((Some(region.to_string()), name.to_string(), rec));
            }
        }
        let mut grants = Vec::new();
        match txn.open_table(GRANTS) {
            Ok(t) => {
                for row in t.iter()? {
                    grants.push(serde_json::from_slice(row?.1.value())?);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Loaded {
            keys,
            aliases,
            grants,
        })
    }

    /// Applies all mutations in one durable write transaction (all or nothing).
    pub fn apply(&self, muts: &[Mutation<'_>]) -> Result<(), KmsError> {
        let txn = self.db.begin_write()?;
        {
            let mut keys = txn.open_table(KEYS)?;
            let mut mat = txn.open_table(MATERIAL)?;
            let mut aliases = txn.open_table(ALIASES)?;
            let mut grants = txn.open_table(GRANTS)?;
            let mut region_keys = txn.open_table(REGION_KEYS)?;
            let mut region_aliases = txn.open_table(REGION_ALIASES)?;
            for m in muts {
                match m {
                    Mutation::PutKey(rec) => {
                        let json = serde_json::to_vec(rec)?;
                        match &rec.region {
                            None => keys.insert(rec.id.as_u128(), json.as_slice())?,
                            Some(r) => region_keys
                                .insert((r.as_str(), rec.id.as_u128()), json.as_slice())?,
                        };
                    }
                    Mutation::PutMaterial {
                        id,
                        version,
                        sealed,
                    } => {
                        mat.insert((id.as_u128(), *version), *sealed)?;
                    }
                    Mutation::DropKey {
                        region,
                        id,
                        material,
                    } => {
                        let id = id.as_u128();
                        match region {
                            None => keys.remove(id)?,
                            Some(r) => region_keys.remove((*r, id))?,
                        };
                        if *material {
                            mat.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
                        }
                        grants.retain_in((id, "")..=(id, "\u{10ffff}"), |_, json| {
                            serde_json::from_slice::<Grant>(json)
                                .map_or(true, |g| g.region.as_deref() != *region)
                        })?;
                    }
                    Mutation::DeleteMaterial(id) => {
                        let id = id.as_u128();
                        mat.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
                    }
                    Mutation::PutAlias(name, rec) => {
                        aliases.insert(*name, serde_json::to_vec(rec)?.as_slice())?;
                    }
                    Mutation::DeleteAlias(name) => {
                        aliases.remove(*name)?;
                    }
                    Mutation::PutRegionAlias(region, name, rec) => {
                        let json = serde_json::to_vec(rec)?;
                        region_aliases.insert((*region, *name), json.as_slice())?;
                    }
                    Mutation::DeleteRegionAlias(region, name) => {
                        region_aliases.remove((*region, *name))?;
                    }
                    Mutation::PutGrant(g) => {
                        let k = (g.key_id.as_u128(), g.grant_id.as_str());
                        grants.insert(k, serde_json::to_vec(g)?.as_slice())?;
                    }
                    Mutation::DeleteGrant(key, id) => {
                        grants.remove((key.as_u128(), *id))?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Number of material rows stored for a key (used by tests to prove destruction).
    pub fn material_count(&self, id: Uuid) -> Result<usize, KmsError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MATERIAL)?;
        let id = id.as_u128();
        Ok(t.range((id, 0)..=(id, u32::MAX))?.count())
    }
}

/// A table that may not exist yet (databases from before it was added).
fn open_optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    t: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, KmsError> {
    match txn.open_table(t) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
