//! The embedded engine: one redb file, locked by one process. Rows as described in
//! `store/mod.rs`.

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use super::{
    FORMAT_VERSION, Loaded, Mutation, ROWS_AUTHENTICATED, Rows, SealedVersions, grant_key,
    region_key,
};
use crate::kms::KmsError;
use crate::kms::crypto::RootKey;
use crate::kms::grants::Grant;
use crate::kms::model::KeyRecord;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("keys");
const MATERIAL: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("material");
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
const GRANTS: TableDefinition<(u128, &str), &[u8]> = TableDefinition::new("grants");
const REGION_KEYS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("region_keys");
const REGION_ALIASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("region_aliases");
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");

pub struct RedbStore {
    db: Database,
    rows: Rows,
}

impl RedbStore {
    /// Opens (or creates) the database and checks the root key against the stored
    /// key-check value. A mismatch returns `WrongRootKey` before anything is written.
    pub fn open(path: &Path, root: &RootKey) -> Result<(RedbStore, Loaded), KmsError> {
        crate::kms::create_private(path, "KMS database")?;
        let db = Database::create(path).map_err(|e| {
            KmsError::Config(format!("cannot open KMS database {}: {e}", path.display()))
        })?;
        let mut store = RedbStore {
            db,
            rows: Rows::new(root),
        };
        let stored_kcv = store.read_meta("kcv")?;
        match stored_kcv {
            Some(kcv) if store.rows.accepts_check_value(&kcv) => {
                store.rows.follow_check_value(&kcv);
            }
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
        store.rows.allow_plain = store.read_meta("rows")?.as_deref() != Some(ROWS_AUTHENTICATED);
        let (loaded, plain) = store.load()?;
        if store.rows.allow_plain {
            store.migrate(&loaded, plain)?;
            store.rows.allow_plain = false;
        }
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
            meta.insert("rows", ROWS_AUTHENTICATED)?;
            txn.open_table(KEYS)?;
            txn.open_table(MATERIAL)?;
            txn.open_table(ALIASES)?;
            txn.open_table(GRANTS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Reads everything; also returns how many rows were plain (legacy) JSON.
    fn load(&self) -> Result<(Loaded, usize), KmsError> {
        let txn = self.db.begin_read()?;
        let keys_t = txn.open_table(KEYS)?;
        let mat_t = txn.open_table(MATERIAL)?;
        let mut plain = 0;
        let mut json = |table: &str, key: &[u8], value: &[u8]| -> Result<Vec<u8>, KmsError> {
            let (j, was_plain) = self.rows.open(table, key, value)?;
            plain += usize::from(was_plain);
            Ok(j.to_vec())
        };
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
            let (id, v) = row?;
            let id = id.value();
            let j = json("keys", &id.to_be_bytes(), v.value())?;
            let mut rec: KeyRecord = serde_json::from_slice(&j)?;
            rec.region = None;
            keys.push((rec, sealed(id)?));
        }
        let mut aliases = Vec::new();
        for row in txn.open_table(ALIASES)?.iter()? {
            let (name, v) = row?;
            let name = name.value().to_string();
            let rec = serde_json::from_slice(&json("aliases", name.as_bytes(), v.value())?)?;
            aliases.push((None, name, rec));
        }
        if let Some(t) = open_optional(&txn, REGION_KEYS)? {
            for row in t.iter()? {
                let (k, v) = row?;
                let (region, id) = k.value();
                let rk = region_key(region, &id.to_be_bytes());
                let mut rec: KeyRecord =
                    serde_json::from_slice(&json("region_keys", &rk, v.value())?)?;
                rec.region = Some(region.to_string());
                keys.push((rec, sealed(id)?));
            }
        }
        if let Some(t) = open_optional(&txn, REGION_ALIASES)? {
            for row in t.iter()? {
                let (k, v) = row?;
                let (region, name) = k.value();
                let rk = region_key(region, name.as_bytes());
                let rec = serde_json::from_slice(&json("region_aliases", &rk, v.value())?)?;
                aliases.push((Some(region.to_string()), name.to_string(), rec));
            }
        }
        let mut grants = Vec::new();
        if let Some(t) = open_optional(&txn, GRANTS)? {
            for row in t.iter()? {
                let (k, v) = row?;
                let (key_id, grant_id) = k.value();
                let gk = grant_key(key_id, grant_id);
                grants.push(serde_json::from_slice(&json("grants", &gk, v.value())?)?);
            }
        }
        let mut settings = Vec::new();
        if let Some(t) = open_optional(&txn, SETTINGS)? {
            for row in t.iter()? {
                let (name, v) = row?;
                let name = name.value().to_string();
                let j = json("settings", name.as_bytes(), v.value())?;
                settings.push((name, j));
            }
        }
        Ok((
            Loaded {
                keys,
                aliases,
                grants,
                settings,
            },
            plain,
        ))
    }

    /// Re-writes every row authenticated and marks the database so (one transaction):
    /// the migration of a database from before rows were authenticated.
    fn migrate(&self, loaded: &Loaded, plain: usize) -> Result<(), KmsError> {
        let muts = loaded.mutations(false);
        self.apply_with_meta(&muts, Some(("rows", ROWS_AUTHENTICATED)))?;
        if plain > 0 {
            tracing::info!(
                rows = plain,
                "KMS database rows authenticated under the root key"
            );
        }
        Ok(())
    }

    /// Applies all mutations in one durable write transaction (all or nothing).
    pub fn apply(&self, muts: &[Mutation<'_>]) -> Result<(), KmsError> {
        self.apply_with_meta(muts, None)
    }

    fn apply_with_meta(
        &self,
        muts: &[Mutation<'_>],
        meta: Option<(&str, &[u8])>,
    ) -> Result<(), KmsError> {
        let rows = &self.rows;
        let txn = self.db.begin_write()?;
        {
            if let Some((k, v)) = meta {
                txn.open_table(META)?.insert(k, v)?;
            }
            let mut keys = txn.open_table(KEYS)?;
            let mut mat = txn.open_table(MATERIAL)?;
            let mut aliases = txn.open_table(ALIASES)?;
            let mut grants = txn.open_table(GRANTS)?;
            let mut region_keys = txn.open_table(REGION_KEYS)?;
            let mut region_aliases = txn.open_table(REGION_ALIASES)?;
            let mut settings = txn.open_table(SETTINGS)?;
            for m in muts {
                match m {
                    Mutation::PutKey(rec) => {
                        let json = serde_json::to_vec(rec)?;
                        let id = rec.id.as_u128();
                        match &rec.region {
                            None => {
                                let row = rows.seal("keys", &id.to_be_bytes(), &json);
                                keys.insert(id, row.as_slice())?
                            }
                            Some(r) => {
                                let rk = region_key(r, &id.to_be_bytes());
                                let row = rows.seal("region_keys", &rk, &json);
                                region_keys.insert((r.as_str(), id), row.as_slice())?
                            }
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
                        grants.retain_in((id, "")..=(id, "\u{10ffff}"), |(k, g), v| {
                            rows.open("grants", &grant_key(k, g), v)
                                .ok()
                                .and_then(|(json, _)| serde_json::from_slice::<Grant>(json).ok())
                                .is_none_or(|g| g.region.as_deref() != *region)
                        })?;
                    }
                    Mutation::DeleteMaterial(id) => {
                        let id = id.as_u128();
                        mat.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
                    }
                    Mutation::PutAlias(name, rec) => {
                        let row = rows.seal("aliases", name.as_bytes(), &serde_json::to_vec(rec)?);
                        aliases.insert(*name, row.as_slice())?;
                    }
                    Mutation::DeleteAlias(name) => {
                        aliases.remove(*name)?;
                    }
                    Mutation::PutRegionAlias(region, name, rec) => {
                        let json = serde_json::to_vec(rec)?;
                        let row = rows.seal(
                            "region_aliases",
                            &region_key(region, name.as_bytes()),
                            &json,
                        );
                        region_aliases.insert((*region, *name), row.as_slice())?;
                    }
                    Mutation::DeleteRegionAlias(region, name) => {
                        region_aliases.remove((*region, *name))?;
                    }
                    Mutation::PutGrant(g) => {
                        let k = (g.key_id.as_u128(), g.grant_id.as_str());
                        let row =
                            rows.seal("grants", &grant_key(k.0, k.1), &serde_json::to_vec(g)?);
                        grants.insert(k, row.as_slice())?;
                    }
                    Mutation::DeleteGrant(key, id) => {
                        grants.remove((key.as_u128(), *id))?;
                    }
                    Mutation::PutSetting(name, json) => {
                        let row = rows.seal("settings", name.as_bytes(), json);
                        settings.insert(*name, row.as_slice())?;
                    }
                    Mutation::DeleteSetting(name) => {
                        settings.remove(*name)?;
                    }
                    Mutation::PutMeta(name, value) => {
                        txn.open_table(META)?.insert(*name, *value)?;
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

/// Direct access to a closed database file, for tests that play someone who can write
/// it but has no root key.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::{ROW_MAGIC, ROW_TAG_LEN};
    use super::*;

    /// Rewrites the stored row of key `id` (home region) with `f`; the row keeps its
    /// prefix and MAC, as a forger without the root key would leave them.
    pub(crate) fn edit_key_row(path: &Path, id: Uuid, f: impl FnOnce(&mut Vec<u8>)) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KEYS).unwrap();
            let mut row = t.get(id.as_u128()).unwrap().unwrap().value().to_vec();
            f(&mut row);
            t.insert(id.as_u128(), row.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    /// The stored bytes of key `id`'s row.
    pub(crate) fn key_row(path: &Path, id: Uuid) -> Vec<u8> {
        let db = Database::create(path).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(KEYS).unwrap();
        t.get(id.as_u128()).unwrap().unwrap().value().to_vec()
    }

    /// Turns the database into one from before rows were authenticated: every key,
    /// alias and grant row plain JSON, no `rows` mark.
    pub(crate) fn make_legacy(path: &Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let strip = |v: &[u8]| v[ROW_MAGIC.len() + ROW_TAG_LEN..].to_vec();
            let mut keys = txn.open_table(KEYS).unwrap();
            let rows: Vec<(u128, Vec<u8>)> = keys
                .iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value(), strip(v.value()))
                })
                .collect();
            for (k, v) in rows {
                keys.insert(k, v.as_slice()).unwrap();
            }
            let mut aliases = txn.open_table(ALIASES).unwrap();
            let rows: Vec<(String, Vec<u8>)> = aliases
                .iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_string(), strip(v.value()))
                })
                .collect();
            for (k, v) in rows {
                aliases.insert(k.as_str(), v.as_slice()).unwrap();
            }
            let mut grants = txn.open_table(GRANTS).unwrap();
            let rows: Vec<((u128, String), Vec<u8>)> = grants
                .iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    let (a, b) = k.value();
                    ((a, b.to_string()), strip(v.value()))
                })
                .collect();
            for ((a, b), v) in rows {
                grants.insert((a, b.as_str()), v.as_slice()).unwrap();
            }
            txn.open_table(META).unwrap().remove("rows").unwrap();
        }
        txn.commit().unwrap();
    }
}
