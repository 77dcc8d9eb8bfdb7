//! The embedded KMS (modelled on AWS KMS). See `docs/kms.md` for the design,
//! `docs/design/kms-architecture.md` for the module map and `docs/kms-ciphertext.md` for
//! the ciphertext blob format.
//!
//! Layout: `ops` (THE operations table: names, kinds, DryRun, grants, key usage, key
//! states), `caller` (who calls and how the call arrived), `service` (the `Kms`
//! operations, one file per family), `api` (the AWS KMS JSON protocol), `model`
//! (records), `crypto` (root key, backing keys, blob format, context encoding), `asym`
//! (key specs, usages, algorithms and the material of every key kind), `store` (redb),
//! `policy` (key policy parsing and IAM-style evaluation), `grants`, `access` (policy +
//! grants decision, explanations), `audit` (hash-chained CloudTrail-style log, verify,
//! query), `usage` (per-key counters), `sigv4` (request verification for service `kms`),
//! `import` (wrapping of imported key material), `clock`, `error`.
//!
//! Invariants: key material exists only sealed in the database or unsealed in memory
//! inside aws-lc-rs key objects / `Zeroizing` buffers; nothing here logs or returns it in
//! errors or `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod access;
pub mod api;
pub mod asym;
pub mod audit;
pub mod caller;
pub mod clock;
pub mod constraints;
pub mod crypto;
mod error;
pub mod grants;
pub mod import;
pub mod key_stores;
pub mod model;
pub mod ops;
pub mod policy;
mod rotate;
mod service;
pub mod sigv4;
mod store;
pub mod usage;

pub use access::{Explanation, Reason};
pub use asym::{
    DataKeyPair, EncryptionAlgorithm, KeyAgreementAlgorithm, KeySpec, KeyUsageType, MacAlgorithm,
    MessageType, PublicKeyInfo, SharedSecret, SigningAlgorithm,
};
pub use audit::{
    AuditFilter, AuditHead, AuditProblem, AuditRecord, TamperKind, VerifyReport, query_audit_lines,
    query_audit_log, tail_audit_log, verify_audit_lines, verify_audit_log,
    verify_audit_log_against, verify_audit_log_with_key,
};
pub use caller::{CallContext, Caller, Via};
pub use clock::{Clock, SystemClock, TestClock};
pub use crypto::{RootKey, random_bytes};
pub use error::KmsError;
pub use grants::{Grant, GrantConstraints, GrantRequest};
pub use model::{KeyMetadata, KeyRecord, KeyState};
pub use rotate::Rotated;
pub use service::ReEncryptParams;
pub use service::{
    AliasEntry, CreateKeyOptions, CustomKeyStoreInfo, CustomKeyStoreUpdate, KeyEntry, Kms,
    MaterialExpiry, NewCustomKeyStore, Page, Replica, ReplicaOptions, RotationEntry,
    RotationStatus,
};
pub use store::{Copied, PostgresConfig, StoreKind, cluster_audit_chains, cluster_audit_trail};
pub use usage::UsageReport;

/// Encryption context: exact-match additional authenticated data.
pub type EncryptionContext = std::collections::BTreeMap<String, String>;

/// Configuration of the embedded KMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KmsConfig {
    /// Where keys, aliases, policies and grants are kept: `redb` (one embedded file,
    /// `db_path`, one instance) or `postgres` (`[kms.postgres]`, shared by any number of
    /// instances; docs/operations.md, "Running several instances").
    pub store: store::StoreKind,
    /// The shared database, for `store = "postgres"`.
    pub postgres: store::PostgresConfig,
    /// redb database file holding keys (material sealed under the root key).
    pub db_path: PathBuf,
    /// File with the 32-byte root key (raw, hex or base64). Takes precedence over the env var.
    pub root_key_file: Option<PathBuf>,
    /// Environment variable holding the root key (hex or base64) when no file is given.
    pub root_key_env: String,
    /// During a root-key rotation: the file with the root key the database was sealed
    /// under before (what it sealed still opens; everything new is sealed under the root
    /// key). docs/design/root-key-rotation.md.
    pub previous_root_key_file: Option<PathBuf>,
    /// Environment variable with the previous root key when no file is given (read only
    /// when set).
    pub previous_root_key_env: String,
    /// The home region: used in key ARNs, by the S3 front, and for every key of a
    /// database from before `regions` existed.
    pub region: String,
    /// Every region the KMS API serves (a request's region is its SigV4 credential
    /// scope; keys and aliases are per region, multi-Region keys replicate between
    /// them). Empty = just `region`; otherwise it must include `region`.
    pub regions: Vec<String>,
    /// 12-digit account id used in ARNs.
    pub account: String,
    /// Write the hash-chained audit log (one event per KMS call).
    pub audit_enabled: bool,
    /// Audit log file (JSON lines). Default: next to `db_path`, extension `.audit.jsonl`.
    pub audit_log_path: Option<PathBuf>,
    /// fsync each batch of audit records (group commit). Off only for throwaway setups.
    pub audit_fsync: bool,
    /// Customer managed keys per region (AWS's quota per account and Region, 100,000):
    /// CreateKey beyond it is LimitExceededException.
    pub max_keys: usize,
    /// Customer managed keys one principal may have created (default: `max_keys`), so
    /// one principal cannot use up the account's quota.
    pub max_keys_per_principal: usize,
    /// RSA key generations per second per principal in RSA_2048 units (RSA_3072 costs 4,
    /// RSA_4096 10, roughly their CPU time: CreateKey, GenerateDataKeyPair,
    /// GetParametersForImport), and the burst (at least 10, one RSA_4096):
    /// ThrottlingException beyond.
    pub rsa_generation_rate: u32,
    pub rsa_generation_burst: u32,
    /// HSMs that custom key stores may use (`[kms.hsm_clusters.<cluster id>]`): a
    /// PKCS#11 module and token label under a CloudHSM-style cluster id, which
    /// CreateCustomKeyStore names as `CloudHsmClusterId`. docs/kms.md, "Key stores".
    pub hsm_clusters: std::collections::BTreeMap<String, key_stores::HsmClusterConfig>,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            store: store::StoreKind::Redb,
            postgres: store::PostgresConfig::default(),
            db_path: PathBuf::from("sealgate-kms.redb"),
            root_key_file: None,
            root_key_env: "SEALGATE_KMS_ROOT_KEY".into(),
            previous_root_key_file: None,
            previous_root_key_env: "SEALGATE_KMS_PREVIOUS_ROOT_KEY".into(),
            region: "us-east-1".into(),
            regions: Vec::new(),
            account: "000000000000".into(),
            audit_enabled: true,
            audit_log_path: None,
            audit_fsync: true,
            max_keys: constraints::DEFAULT_MAX_KEYS,
            max_keys_per_principal: constraints::DEFAULT_MAX_KEYS,
            rsa_generation_rate: 10,
            rsa_generation_burst: 100,
            hsm_clusters: Default::default(),
        }
    }
}

impl KmsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.store == store::StoreKind::Postgres {
            self.postgres.validate()?;
        }
        if self.db_path.as_os_str().is_empty() {
            return Err("kms.db_path must not be empty".into());
        }
        if self.account.len() != 12 || !self.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "kms.account must be 12 digits, got '{}'",
                self.account
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "kms.region must be like 'us-east-1', got '{}'",
                self.region
            ));
        }
        for r in &self.regions {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "kms.regions: each region must be like 'eu-west-1', got '{r}'"
                ));
            }
        }
        if !self.regions.is_empty() && !self.regions.contains(&self.region) {
            return Err(format!(
                "kms.regions must include the home region kms.region = '{}'",
                self.region
            ));
        }
        if self.max_keys == 0 || self.max_keys_per_principal == 0 {
            return Err("kms.max_keys and kms.max_keys_per_principal must be at least 1".into());
        }
        if self.rsa_generation_rate == 0 {
            return Err("kms.rsa_generation_rate must be at least 1".into());
        }
        if self.rsa_generation_burst < 10 {
            return Err(
                "kms.rsa_generation_burst must be at least 10 (one RSA_4096 generation)".into(),
            );
        }
        for (id, c) in &self.hsm_clusters {
            c.validate(id)?;
        }
        if self.root_key_file.is_none() && self.root_key_env.is_empty() {
            return Err("kms: set root_key_file or root_key_env".into());
        }
        if self.audit_enabled && self.audit_path() == self.db_path {
            return Err("kms.audit_log_path must differ from kms.db_path".into());
        }
        if self
            .audit_log_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("kms.audit_log_path must not be empty (omit it for the default)".into());
        }
        Ok(())
    }

    /// The regions served: the home region first, then the others of `regions`.
    pub fn served_regions(&self) -> Vec<String> {
        let mut out = vec![self.region.clone()];
        for r in &self.regions {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// The audit log file: `audit_log_path`, or `db_path` with extension `.audit.jsonl`.
    pub fn audit_path(&self) -> PathBuf {
        self.audit_log_path
            .clone()
            .unwrap_or_else(|| self.db_path.with_extension("audit.jsonl"))
    }

    /// Reads the root key from the file if configured, else from the environment.
    /// The root key, carrying the previous one when it is configured (a rotation).
    pub fn load_root_key(&self) -> Result<RootKey, KmsError> {
        let root = self.load_current_root_key()?;
        match self.load_previous_root_key()? {
            Some(prev) => root.with_previous(prev),
            None => Ok(root),
        }
    }

    /// The previous root key from `previous_root_key_file` or its environment variable,
    /// when one is configured (a rotation).
    pub fn load_previous_root_key(&self) -> Result<Option<RootKey>, KmsError> {
        if let Some(path) = &self.previous_root_key_file {
            return read_root_key_file(path, "previous root key file").map(Some);
        }
        match std::env::var(&self.previous_root_key_env) {
            Ok(v) if !self.previous_root_key_env.is_empty() && !v.trim().is_empty() => {
                let v = Zeroizing::new(v);
                RootKey::parse(v.as_bytes(), &format!("${}", self.previous_root_key_env)).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn load_current_root_key(&self) -> Result<RootKey, KmsError> {
        if let Some(path) = &self.root_key_file {
            return read_root_key_file(path, "root key file");
        }
        let val = Zeroizing::new(std::env::var(&self.root_key_env).map_err(|_| {
            KmsError::Config(format!(
                "no KMS root key: set root_key_file or the environment variable {}",
                self.root_key_env
            ))
        })?);
        RootKey::parse(val.as_bytes(), &format!("${}", self.root_key_env))
    }
}

/// Creates `path` readable and writable by its owner only (0600) if it does not exist:
/// the KMS database (sealed key material, policies, grants) and the audit log (who used
/// which key) are nobody else's business. An existing file keeps its mode; one that
/// others may read or write is reported.
pub(crate) fn create_private(path: &std::path::Path, what: &str) -> Result<(), KmsError> {
    let err = |e: std::io::Error| {
        KmsError::Config(format!("cannot create {what} {}: {e}", path.display()))
    };
    match crate::files::create_new_private(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(mode) = crate::files::shared_mode(path).map_err(err)? {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:03o}"),
            "the {what} is accessible by group or others; restrict it with chmod 600"
        );
    }
    Ok(())
}

/// The root key in the file at `path` (`what` names it in errors), which must be private.
fn read_root_key_file(path: &std::path::Path, what: &str) -> Result<RootKey, KmsError> {
    check_private(path, what)?;
    let raw =
        Zeroizing::new(std::fs::read(path).map_err(|e| {
            KmsError::Config(format!("cannot read {what} {}: {e}", path.display()))
        })?);
    RootKey::parse(&raw, &path.display().to_string())
}

/// Refuses a secret file (`what`: a root key file, the PostgreSQL URL file) that anyone
/// but its owner may read or write.
pub(crate) fn check_private(path: &std::path::Path, what: &str) -> Result<(), KmsError> {
    crate::files::check_private(path, what).map_err(KmsError::Config)
}

impl Kms {
    /// Re-seals every key's material and re-authenticates every row of the configured
    /// store under the root key, which must carry the previous one
    /// (`sealgate kms rotate-root`); verified by opening the store again with the root
    /// key alone. docs/design/root-key-rotation.md.
    /// `root` is the configured root key (`crate::unseal::root_key`).
    pub fn rotate_root_key(cfg: &KmsConfig, root: &RootKey) -> Result<Rotated, KmsError> {
        cfg.validate().map_err(KmsError::Config)?;
        let rotated = rotate::rotate(cfg, root)?;
        if cfg.store == StoreKind::Redb && cfg.audit_enabled {
            // The audit log is this command's too: opening the KMS with both keys writes
            // the chain's RotateRootKey record under the new key now, so the next start
            // may already drop the previous key (with PostgreSQL each instance writes
            // its own on its next refresh).
            let both = root.without_previous()?.with_previous(
                root.previous()
                    .expect("rotate checked")
                    .without_previous()?,
            )?;
            drop(Self::open_with_root_key(cfg, Arc::new(SystemClock), both)?);
        }
        Ok(rotated)
    }

    /// Copies the KMS store `from` names (keys, sealed material, aliases, grants,
    /// settings) into the empty store `to` names and verifies the copy
    /// (`sealgate kms migrate-store`). Both use `from`'s root key, `root`.
    pub fn copy_store(
        from: &KmsConfig,
        to: &KmsConfig,
        root: &RootKey,
    ) -> Result<Copied, KmsError> {
        store::copy(from, to, root)
    }

    /// Opens the KMS with the real clock.
    pub fn open(cfg: &KmsConfig) -> Result<Kms, KmsError> {
        Self::open_with_clock(cfg, Arc::new(SystemClock))
    }

    pub fn open_with_clock(cfg: &KmsConfig, clock: Arc<dyn Clock>) -> Result<Kms, KmsError> {
        cfg.validate().map_err(KmsError::Config)?;
        let root = cfg.load_root_key()?;
        Self::open_with_root_key(cfg, clock, root)
    }

    /// Opens with an explicit root key (tests, or callers that fetch it elsewhere).
    pub fn open_with_root_key(
        cfg: &KmsConfig,
        clock: Arc<dyn Clock>,
        root: RootKey,
    ) -> Result<Kms, KmsError> {
        cfg.validate().map_err(KmsError::Config)?;
        Self::from_parts(cfg, clock, root)
    }
}

/// A data key from GenerateDataKey. The plaintext zeroizes on drop.
pub struct DataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext_blob: Vec<u8>,
    pub key_arn: String,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field(
                "ciphertext_blob",
                &format_args!("<{} bytes>", self.ciphertext_blob.len()),
            )
            .field("key_arn", &self.key_arn)
            .finish()
    }
}

/// Result of Decrypt. The plaintext zeroizes on drop.
pub struct Decrypted {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_arn: String,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext", &"<redacted>")
            .field("key_arn", &self.key_arn)
            .finish()
    }
}

#[cfg(test)]
mod tests;
