//! Persistence of the KMS: every mutation is one transaction (`Store::apply`), so a
//! crash never leaves a half-created key, a key without its material, or an alias
//! pointing at nothing. Two engines hold the same rows:
//! - `redb` (default): one embedded file, one process (`redb.rs`);
//! - `postgres`: one database shared by any number of sealgate instances
//!   (`postgres/`: the store, its connections, its rows; docs/design/kms-postgres.md).
//!
//! Rows (redb tables; in PostgreSQL rows of `kms_rows` named by table and key bytes):
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
//! - `settings`: name → JSON: settings of the rest of sealgate that must be as hard to
//!   change as a key policy (the S3 front's bucket default-encryption rules); absent in
//!   databases created before it, created on the first write.
//!
//! Authenticated rows: every key record (with its key policy, tags and state), alias and
//! grant is stored as `SGR1` || HMAC-SHA256 || JSON, the MAC (under a key HKDF-derived
//! from the root key) covering the table, the row's key and the JSON, so whoever can
//! write the database but has no root key cannot change a policy, grant, alias or key
//! state, nor move a row to another key; such a row refuses the open. Rows written
//! before this (plain JSON, redb only) are read and re-written authenticated in one
//! transaction at open; from then on (`meta.rows = hmac-v1`) a plain row also refuses
//! the open. Not covered: deleting a row, or putting back an older authentic one
//! (rollback), which needs state outside the database.

use aws_lc_rs::hmac;
use uuid::Uuid;

use super::crypto::RootKey;
use super::grants::Grant;
use super::model::{AliasRecord, KeyRecord};
use super::{KmsConfig, KmsError};

mod postgres;
mod redb;

pub use self::postgres::PostgresConfig;

/// The audit trail of a cluster sharing a PostgreSQL KMS: each instance's chain, (chain
/// id, its lines in order).
pub fn cluster_audit_chains(cfg: &KmsConfig) -> Result<Vec<(String, Vec<String>)>, KmsError> {
    postgres::audit_chains(&cfg.postgres)
}

/// The audit trail of a cluster sharing a PostgreSQL KMS, every record in time order.
pub fn cluster_audit_trail(cfg: &KmsConfig) -> Result<Vec<String>, KmsError> {
    postgres::audit_trail(&cfg.postgres)
}
#[cfg(test)]
pub(crate) use self::redb::testing;

pub(crate) const FORMAT_VERSION: u32 = 1;
/// `meta.rows`: every row of the authenticated tables carries its MAC.
pub(crate) const ROWS_AUTHENTICATED: &[u8] = b"hmac-v1";
/// Prefix of an authenticated row (then the 32-byte MAC, then the JSON).
pub(crate) const ROW_MAGIC: &[u8; 4] = b"SGR1";
pub(crate) const ROW_TAG_LEN: usize = 32;
/// HKDF `info` of the rows' MAC key.
const ROW_KEY_INFO: &[u8] = b"sealgate-kms-db-rows-v1";

/// The row authentication key and the rule for plain (legacy) rows.
pub(crate) struct Rows {
    pub(crate) mac: hmac::Key,
    /// The previous root key's, during a rotation: rows it authenticated still open.
    previous: Option<hmac::Key>,
    /// Rows are sealed with `previous` while the database's check value is the previous
    /// key's (`Rows::follow_check_value`; the root key shares the flag).
    seal_previous: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The check values of the root key and the previous one.
    kcv: Vec<u8>,
    previous_kcv: Option<Vec<u8>>,
    /// Plain JSON rows are accepted (and migrated) only before the migration is done.
    pub(crate) allow_plain: bool,
}

/// The bytes a row's MAC covers: table, row key and JSON, each length-prefixed.
fn row_input(table: &str, key: &[u8], json: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(table.len() + key.len() + json.len() + 12);
    for part in [table.as_bytes(), key, json] {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part);
    }
    m
}

impl Rows {
    /// Whether a database with check value `stored` opens with this root key (or the
    /// previous one, during a rotation).
    pub(crate) fn accepts_check_value(&self, stored: &[u8]) -> bool {
        same(stored, &self.kcv)
            || self
                .previous_kcv
                .as_deref()
                .is_some_and(|p| same(stored, p))
    }

    /// Seals rows, material and import tokens under the key whose check value the
    /// database holds (`stored`): the previous one until the rotation has run, so that
    /// instances not yet given the new key still read everything.
    pub(crate) fn follow_check_value(&self, stored: &[u8]) {
        let previous = !same(stored, &self.kcv)
            && self
                .previous_kcv
                .as_deref()
                .is_some_and(|p| same(stored, p));
        self.seal_previous
            .store(previous, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn seal(&self, table: &str, key: &[u8], json: &[u8]) -> Vec<u8> {
        let mac = match &self.previous {
            Some(p) if self.seal_previous.load(std::sync::atomic::Ordering::SeqCst) => p,
            _ => &self.mac,
        };
        let tag = hmac::sign(mac, &row_input(table, key, json));
        let mut out = Vec::with_capacity(ROW_MAGIC.len() + ROW_TAG_LEN + json.len());
        out.extend_from_slice(ROW_MAGIC);
        out.extend_from_slice(tag.as_ref());
        out.extend_from_slice(json);
        out
    }

    /// The JSON of a stored row, and whether it was a plain (legacy) row.
    pub(crate) fn open<'v>(
        &self,
        table: &str,
        key: &[u8],
        value: &'v [u8],
    ) -> Result<(&'v [u8], bool), KmsError> {
        let refused = |why: &str| {
            KmsError::Config(format!(
                "the KMS database row {table}/{} {why}: it was changed outside sealgate (or the database belongs to another root key); refusing to open",
                hex::encode(key)
            ))
        };
        match value.strip_prefix(ROW_MAGIC.as_slice()) {
            Some(rest) if rest.len() >= ROW_TAG_LEN => {
                let (tag, json) = rest.split_at(ROW_TAG_LEN);
                let input = row_input(table, key, json);
                hmac::verify(&self.mac, &input, tag)
                    .or_else(|e| match &self.previous {
                        Some(p) => hmac::verify(p, &input, tag),
                        None => Err(e),
                    })
                    .map_err(|_| refused("does not authenticate under the root key"))?;
                Ok((json, false))
            }
            Some(_) => Err(refused("is truncated")),
            None if self.allow_plain => Ok((value, true)),
            None => Err(refused("is not authenticated")),
        }
    }
}

/// Constant-time equality of two check values.
fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

pub(crate) fn region_key(region: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = region.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(rest);
    k
}

pub(crate) fn grant_key(key_id: u128, grant_id: &str) -> Vec<u8> {
    let mut k = key_id.to_be_bytes().to_vec();
    k.extend_from_slice(grant_id.as_bytes());
    k
}

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
    /// A setting (name, JSON).
    PutSetting(&'a str, &'a [u8]),
    DeleteSetting(&'a str),
    /// A record about the database itself (`kcv`: the root key's check value).
    PutMeta(&'a str, &'a [u8]),
}

/// Sealed material of one key: (version, sealed bytes).
pub type SealedVersions = Vec<(u32, Vec<u8>)>;

/// Everything read at startup.
pub struct Loaded {
    pub keys: Vec<(KeyRecord, SealedVersions)>,
    /// (region, None = home; alias name; alias).
    pub aliases: Vec<(Option<String>, String, AliasRecord)>,
    pub grants: Vec<Grant>,
    /// Settings: (name, JSON).
    pub settings: Vec<(String, Vec<u8>)>,
}

impl Loaded {
    /// Writes that put every row back: key records (with their sealed material when
    /// `material`), aliases, grants and settings.
    pub(crate) fn mutations(&self, material: bool) -> Vec<Mutation<'_>> {
        let mut muts = Vec::new();
        for (rec, mats) in &self.keys {
            muts.push(Mutation::PutKey(rec));
            for (version, sealed) in mats.iter().filter(|_| material) {
                muts.push(Mutation::PutMaterial {
                    id: rec.id,
                    version: *version,
                    sealed,
                });
            }
        }
        for (region, name, a) in &self.aliases {
            muts.push(match region {
                None => Mutation::PutAlias(name, a),
                Some(r) => Mutation::PutRegionAlias(r, name, a),
            });
        }
        for g in &self.grants {
            muts.push(Mutation::PutGrant(g));
        }
        for (name, json) in &self.settings {
            muts.push(Mutation::PutSetting(name, json));
        }
        muts
    }
}

impl Rows {
    pub(crate) fn new(root: &RootKey) -> Rows {
        Rows {
            mac: root.hkdf_hmac_key(ROW_KEY_INFO),
            previous: root.previous().map(|p| p.hkdf_hmac_key(ROW_KEY_INFO)),
            seal_previous: root.seal_previous_flag(),
            kcv: root.check_value(),
            previous_kcv: root.previous().map(RootKey::check_value),
            allow_plain: false,
        }
    }
}

/// The KMS's persistence: one engine or the other.
pub enum Store {
    Redb(Box<redb::RedbStore>),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (or creates) the configured store and checks the root key against the
    /// stored key-check value. A mismatch returns `WrongRootKey` before anything is
    /// written.
    pub fn open(cfg: &KmsConfig, root: &RootKey) -> Result<(Store, Loaded), KmsError> {
        match cfg.store {
            StoreKind::Redb => {
                let (s, l) = redb::RedbStore::open(&cfg.db_path, root)?;
                Ok((Store::Redb(Box::new(s)), l))
            }
            StoreKind::Postgres => {
                let (s, l) = postgres::PgStore::open(&cfg.postgres, root)?;
                Ok((Store::Postgres(s), l))
            }
        }
    }

    /// Readiness: the store answers a read. Writes nothing.
    pub fn check_readable(&self) -> Result<(), KmsError> {
        match self {
            Store::Redb(s) => s.check_readable(),
            Store::Postgres(s) => s.check_readable(),
        }
    }

    /// Applies all mutations in one durable transaction (all or nothing).
    pub fn apply(&self, muts: &[Mutation<'_>]) -> Result<(), KmsError> {
        match self {
            Store::Redb(s) => s.apply(muts),
            Store::Postgres(s) => s.apply(muts),
        }
    }

    /// Number of material rows stored for a key (used by tests to prove destruction).
    pub fn material_count(&self, id: Uuid) -> Result<usize, KmsError> {
        match self {
            Store::Redb(s) => s.material_count(id),
            Store::Postgres(s) => s.material_count(id),
        }
    }

    /// The shared store, if this is one (several instances write it).
    pub fn shared(&self) -> Option<&postgres::PgStore> {
        match self {
            Store::Redb(_) => None,
            Store::Postgres(s) => Some(s),
        }
    }

    /// Starts a change: on a shared store, takes the cluster-wide writer lock (held
    /// until the change's `apply` commits, or [`Store::end_write`]) and returns the
    /// store's current contents if another instance changed them since this one last
    /// read them.
    pub fn begin_write(&self) -> Result<Option<Loaded>, KmsError> {
        match self {
            Store::Redb(_) => Ok(None),
            Store::Postgres(s) => s.begin_write(),
        }
    }

    /// Ends a change that did not commit (releases the cluster-wide lock).
    pub fn end_write(&self) {
        if let Store::Postgres(s) = self {
            s.end_write();
        }
    }
}

/// Which engine holds the KMS (`kms.store`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One embedded file (`kms.db_path`), one process.
    #[default]
    Redb,
    /// A PostgreSQL database (`[kms.postgres]`) shared by any number of instances.
    Postgres,
}

/// What [`copy`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copied {
    pub keys: usize,
    pub material_versions: usize,
    pub aliases: usize,
    pub grants: usize,
    pub settings: usize,
}

/// Copies everything the store of `from` holds into the (empty) store of `to`, in one
/// transaction, then opens `to` again and checks that it holds exactly that. Both are
/// opened with `root` (the same root key: rows stay sealed and authenticated as they
/// are). A destination that holds anything is refused before anything is written.
pub fn copy(from: &KmsConfig, to: &KmsConfig, root: &RootKey) -> Result<Copied, KmsError> {
    let (_source, loaded) = Store::open(from, root)?;
    let (dest, existing) = Store::open(to, root)?;
    if !existing.keys.is_empty()
        || !existing.aliases.is_empty()
        || !existing.grants.is_empty()
        || !existing.settings.is_empty()
    {
        return Err(KmsError::Config(
            "the destination KMS store is not empty; refusing to copy into it".into(),
        ));
    }
    let muts = loaded.mutations(true);
    dest.apply(&muts)?;
    drop(dest);
    let (_copy, reread) = Store::open(to, root)?;
    if fingerprint(&reread)? != fingerprint(&loaded)? {
        return Err(KmsError::Internal(
            "the copy does not read back as the source: do not use it".into(),
        ));
    }
    Ok(Copied {
        keys: loaded.keys.len(),
        material_versions: loaded.keys.iter().map(|(_, m)| m.len()).sum(),
        aliases: loaded.aliases.len(),
        grants: loaded.grants.len(),
        settings: loaded.settings.len(),
    })
}

/// Everything `loaded` holds, in a canonical order, as comparable text and bytes.
fn fingerprint(l: &Loaded) -> Result<Vec<Vec<u8>>, KmsError> {
    fingerprint_with(l, |_, _, sealed| Ok(sealed.to_vec()))
}

/// [`fingerprint`] with each material version as `material` (id, version, sealed bytes)
/// gives it.
pub(crate) fn fingerprint_with(
    l: &Loaded,
    material: impl Fn(&Uuid, u32, &[u8]) -> Result<Vec<u8>, KmsError>,
) -> Result<Vec<Vec<u8>>, KmsError> {
    let mut rows = Vec::new();
    for (rec, mats) in &l.keys {
        let mut row = serde_json::to_vec(rec)?;
        let mut mats = mats.clone();
        mats.sort();
        for (v, sealed) in mats {
            row.extend_from_slice(&v.to_be_bytes());
            row.extend_from_slice(&material(&rec.id, v, &sealed)?);
        }
        rows.push(row);
    }
    for (region, name, a) in &l.aliases {
        rows.push(serde_json::to_vec(&(region, name, a))?);
    }
    for g in &l.grants {
        rows.push(serde_json::to_vec(g)?);
    }
    for (name, json) in &l.settings {
        rows.push([name.as_bytes(), b"\0", json].concat());
    }
    rows.sort();
    Ok(rows)
}
