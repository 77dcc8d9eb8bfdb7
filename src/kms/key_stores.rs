//! Custom key stores backed by PKCS#11 tokens (AWS's "CloudHSM key stores", with the
//! operator's own HSM in place of a CloudHSM cluster): the configured clusters, the
//! stores' records (kept as settings rows, `kms/custom-key-stores/<id>`) and this
//! instance's connections to their tokens. KMS keys in such a store are AES-256 keys
//! created inside the token; sealgate holds only their labels and asks the token to
//! encrypt and decrypt. docs/design/key-stores.md.
//!
//! Invariants:
//! - The key material of a key in a custom key store never exists outside the token:
//!   the token creates it non-extractable and sensitive, and every operation on it is a
//!   PKCS#11 call with the key's handle.
//! - A store's token PIN (`KeyStorePassword`) is stored sealed under the root key, like
//!   key material, and re-sealed by a root-key rotation.
//! - A store that is not CONNECTED has no token here: its keys are `Unavailable` and
//!   refuse cryptographic operations (KMSInvalidStateException).
//! - Which module a store loads is the operator's choice (`[kms.hsm_clusters]`), never a
//!   caller's: the API names a configured cluster id only.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use base64::Engine;

use super::KmsError;
use super::crypto::RootKey;
use crate::hsm::{HsmError, IV_LEN, Token};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Settings rows holding the stores' records.
pub(crate) const SETTING_PREFIX: &str = "kms/custom-key-stores/";

/// AWS's quota of custom key stores per account and region.
pub(crate) const MAX_STORES: usize = 10;

/// One HSM a custom key store may use, named by a CloudHSM-style cluster id so that AWS
/// clients (which check the id's length) accept it: `[kms.hsm_clusters.<id>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HsmClusterConfig {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// When set, CreateCustomKeyStore's `TrustAnchorCertificate` must be this file's
    /// certificate (IncorrectTrustAnchorException otherwise): the operator pins which
    /// HSM the store may be bound to.
    pub trust_anchor_certificate_file: Option<PathBuf>,
}

/// Checks a cluster id the way AWS's model does (`cluster-[2-7a-zA-Z]{11,16}`).
pub fn valid_cluster_id(id: &str) -> bool {
    id.strip_prefix("cluster-").is_some_and(|rest| {
        (11..=16).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || (b'2'..=b'7').contains(&b))
    })
}

impl HsmClusterConfig {
    pub fn validate(&self, id: &str) -> Result<(), String> {
        if !valid_cluster_id(id) {
            return Err(format!(
                "kms.hsm_clusters: '{id}' is not a cluster id AWS clients accept: use cluster- followed by 11 to 16 of [a-zA-Z2-7], e.g. cluster-sealgatehsma"
            ));
        }
        if self.module.as_os_str().is_empty() {
            return Err(format!(
                "kms.hsm_clusters.{id}.module: required (the PKCS#11 module's path)"
            ));
        }
        if self.token_label.is_empty() || self.token_label.len() > 32 {
            return Err(format!(
                "kms.hsm_clusters.{id}.token_label: required (1-32 characters)"
            ));
        }
        Ok(())
    }

    /// The pinned trust anchor, normalised, if configured.
    pub(crate) fn trust_anchor(&self) -> Result<Option<String>, KmsError> {
        let Some(p) = &self.trust_anchor_certificate_file else {
            return Ok(None);
        };
        std::fs::read_to_string(p)
            .map(|t| Some(normalize_pem(&t)))
            .map_err(|e| {
                KmsError::Internal(format!(
                    "cannot read the trust anchor certificate {}: {e}",
                    p.display()
                ))
            })
    }
}

/// A PEM text without whitespace differences (line endings, trailing newline).
pub(crate) fn normalize_pem(t: &str) -> String {
    t.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A store's connection state as AWS names it. sealgate connects synchronously, so the
/// transitional CONNECTING and DISCONNECTING states are never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    Connected,
    Disconnected,
    Failed,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "CONNECTED",
            ConnectionState::Disconnected => "DISCONNECTED",
            ConnectionState::Failed => "FAILED",
        }
    }
}

/// One custom key store as stored (JSON in a settings row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoreRecord {
    pub id: String,
    pub name: String,
    pub cluster_id: String,
    pub trust_anchor: String,
    /// The token's user PIN, sealed under the root key (`seal_id`, version 0).
    pub password: String,
    pub seal_id: Uuid,
    pub created_ms: i64,
    /// The region the store was created in.
    pub region: String,
    pub state: ConnectionState,
    /// Why the last connection attempt failed (FAILED only): AWS's ConnectionErrorCode.
    pub error_code: Option<String>,
}

impl StoreRecord {
    pub fn setting_name(&self) -> String {
        format!("{SETTING_PREFIX}{}", self.id)
    }

    /// The record as its settings row holds it.
    pub fn to_json(&self) -> Result<Vec<u8>, KmsError> {
        serde_json::to_vec(self).map_err(|e| KmsError::Internal(e.to_string()))
    }

    /// Seals the token's PIN under `root` (the sealing key, during a rotation).
    pub fn seal_password(&mut self, root: &RootKey, pin: &[u8]) -> Result<(), KmsError> {
        self.password = B64.encode(root.seal_material(&self.seal_id, 0, pin)?);
        Ok(())
    }

    /// The token's PIN, opened with `root` (or its previous key, during a rotation).
    pub fn open_password(&self, root: &RootKey) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let sealed = B64
            .decode(self.password.as_bytes())
            .map_err(|_| KmsError::Internal(format!("the password of {} is corrupt", self.id)))?;
        root.open_raw(&self.seal_id, 0, &sealed)
    }
}

fn fingerprint(r: &StoreRecord) -> Fingerprint {
    (r.cluster_id.clone(), r.password.clone())
}

/// A new store id as AWS shapes them: `cks-` and 17 hex digits.
pub(crate) fn new_store_id() -> Result<String, KmsError> {
    let r = super::crypto::random_bytes(9)?;
    Ok(format!("cks-{}", &hex::encode(&r[..])[..17]))
}

/// The custom key stores this instance knows and the tokens it is connected to.
pub(crate) struct KeyStores {
    clusters: BTreeMap<String, HsmClusterConfig>,
    records: RwLock<BTreeMap<String, StoreRecord>>,
    /// Open tokens by store id, with the (cluster, sealed password) they were opened
    /// for: a store changed elsewhere (PostgreSQL) is opened again.
    tokens: Mutex<HashMap<String, (Arc<Token>, Fingerprint)>>,
}

/// What a token was opened for: the store's cluster and sealed password.
type Fingerprint = (String, String);

impl std::fmt::Debug for KeyStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStores")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyStores {
    pub fn new(clusters: BTreeMap<String, HsmClusterConfig>) -> Arc<KeyStores> {
        Arc::new(KeyStores {
            clusters,
            records: RwLock::new(BTreeMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Takes the records from the settings (at open, and after a reload of what another
    /// instance wrote); connections of stores no longer CONNECTED are closed.
    pub fn sync(&self, settings: &BTreeMap<String, Vec<u8>>) {
        let mut records = BTreeMap::new();
        for (name, json) in settings.range(SETTING_PREFIX.to_string()..) {
            if !name.starts_with(SETTING_PREFIX) {
                break;
            }
            match serde_json::from_slice::<StoreRecord>(json) {
                Ok(r) => {
                    records.insert(r.id.clone(), r);
                }
                Err(e) => {
                    tracing::error!(setting = %name, error = %e, "unreadable custom key store record")
                }
            }
        }
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = records;
        self.close_unconnected();
    }

    /// Closes the tokens of stores no longer CONNECTED, or connected differently.
    fn close_unconnected(&self) {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, (_, opened_for)| {
                records.get(id).is_some_and(|r| {
                    r.state == ConnectionState::Connected && *opened_for == fingerprint(r)
                })
            });
    }

    pub fn record(&self, id: &str) -> Option<StoreRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn records(&self) -> Vec<StoreRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// After a committed write of `rec`.
    pub fn put_record(&self, rec: StoreRecord) {
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.id.clone(), rec);
        self.close_unconnected();
    }

    /// After a committed deletion.
    pub fn remove_record(&self, id: &str) {
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.close_unconnected();
    }

    pub fn cluster(&self, id: &str) -> Option<&HsmClusterConfig> {
        self.clusters.get(id)
    }

    pub fn has_stores(&self) -> bool {
        !self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// This instance's connection to the store's token, if open (and not broken: a
    /// broken one is forgotten, so the next use opens the token again).
    pub fn token(&self, id: &str) -> Option<Arc<Token>> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(id) {
            Some((t, _)) if t.is_broken() => {
                tokens.remove(id);
                None
            }
            Some((t, _)) => Some(t.clone()),
            None => None,
        }
    }

    /// Keeps `token` as the store's connection if the store is (still) CONNECTED as
    /// `rec` says: a Disconnect or Update that ran meanwhile wins.
    pub fn set_token(&self, rec: &StoreRecord, token: Arc<Token>) {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let current = records.get(&rec.id).is_some_and(|r| {
            r.state == ConnectionState::Connected && fingerprint(r) == fingerprint(rec)
        });
        if current {
            self.tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(rec.id.clone(), (token, fingerprint(rec)));
        }
    }

    /// Opens and logs in to the token of `cluster_id` with `pin`.
    pub fn open_token(
        &self,
        cluster_id: &str,
        pin: &Zeroizing<Vec<u8>>,
    ) -> Result<Arc<Token>, HsmError> {
        let c = self.cluster(cluster_id).ok_or_else(|| {
            HsmError::Unavailable(format!(
                "cluster {cluster_id} is not configured in kms.hsm_clusters"
            ))
        })?;
        let pin =
            Zeroizing::new(String::from_utf8(pin.to_vec()).map_err(|_| {
                HsmError::Config("the stored key store password is not UTF-8".into())
            })?);
        Token::open_with_pin(&c.module, &c.token_label, &pin)
    }

    fn connected_token(&self, store_id: &str) -> Result<Arc<Token>, KmsError> {
        let connected = self
            .record(store_id)
            .is_some_and(|r| r.state == ConnectionState::Connected);
        self.token(store_id).filter(|_| connected).ok_or_else(|| {
            KmsError::InvalidState(format!("The custom key store {store_id} is not connected."))
        })
    }

    /// AES-256-GCM encryption under a token key (ciphertext ‖ tag).
    pub fn encrypt(
        &self,
        store_id: &str,
        label: &str,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.connected_token(store_id)?
            .encrypt_gcm(label, iv, aad, plaintext)
            .map_err(|e| hsm_error(store_id, e))
    }

    /// AES-256-GCM decryption under a token key; a tag that does not verify is
    /// InvalidCiphertext (as for any ciphertext).
    pub fn decrypt(
        &self,
        store_id: &str,
        label: &str,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        match self
            .connected_token(store_id)?
            .decrypt_gcm(label, iv, aad, sealed)
        {
            Ok(p) => Ok(p),
            Err(HsmError::InvalidCiphertext(_)) => Err(super::crypto::invalid_ciphertext()),
            Err(e) => Err(hsm_error(store_id, e)),
        }
    }
}

/// A token failure in a key operation: retryable (DependencyTimeoutException, 503), with
/// the detail logged rather than returned.
pub(crate) fn hsm_error(store_id: &str, e: HsmError) -> KmsError {
    tracing::warn!(custom_key_store = %store_id, error = %e, "HSM operation failed");
    KmsError::DependencyTimeout(format!(
        "The HSM of custom key store {store_id} did not complete the operation; try again, and check sealgate's log if it persists."
    ))
}

/// AWS's ConnectionErrorCode for a failed connection.
pub(crate) fn connection_error_code(e: &HsmError) -> &'static str {
    match e {
        HsmError::Login(m) if m.contains("locked") => "USER_LOCKED_OUT",
        HsmError::Login(_) => "INVALID_CREDENTIALS",
        HsmError::Unavailable(_) => "CLUSTER_NOT_FOUND",
        HsmError::Config(_) => "INVALID_CREDENTIALS",
        _ => "INTERNAL_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_follow_awss_pattern() {
        assert!(valid_cluster_id("cluster-sealgatehsma"));
        assert!(
            !valid_cluster_id("cluster-sealgatehsm01"),
            "0 and 1 are not base32"
        );
        assert!(valid_cluster_id("cluster-abcdefghijk"));
        assert!(!valid_cluster_id("cluster-abcdefghij"), "10 characters");
        assert!(
            !valid_cluster_id("cluster-abcdefghijklmnopq"),
            "17 characters"
        );
        assert!(
            !valid_cluster_id("cluster-sealgatehsm-1"),
            "'-' and '1' are outside [2-7a-zA-Z]"
        );
        assert!(!valid_cluster_id("sealgatehsm0123"));
    }

    #[test]
    fn store_ids_look_like_awss() {
        let id = new_store_id().unwrap();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("cks-"));
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn pem_normalisation_ignores_line_endings() {
        let a = "-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n";
        let b = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(normalize_pem(a), normalize_pem(b));
    }
}
