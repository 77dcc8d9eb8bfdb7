//! The six custom key store operations (CreateCustomKeyStore, DescribeCustomKeyStores,
//! UpdateCustomKeyStore, ConnectCustomKeyStore, DisconnectCustomKeyStore,
//! DeleteCustomKeyStore), and what keys in a custom key store need from the rest of the
//! service: the connection check of the gate, key creation and destruction in the token,
//! GenerateRandom from the token and DescribeKey's `Unavailable`. The stores and the
//! tokens are `kms::key_stores`; docs/design/key-stores.md.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{KeyEntry, Kms, Page, WriteGuard, paginate, poisoned};
use crate::hsm::Token;
use crate::kms::caller::Caller;
use crate::kms::constraints::{self, PAGE_DEFAULT};
use crate::kms::key_stores::{
    ConnectionState, MAX_STORES, StoreRecord, connection_error_code, hsm_error, new_store_id,
    normalize_pem,
};
use crate::kms::model::{KeyMetadata, KeyState};
use crate::kms::ops::{Kind, Op};
use crate::kms::{KmsError, crypto};

/// CreateCustomKeyStore's inputs.
#[derive(Default)]
pub struct NewCustomKeyStore<'a> {
    pub name: Option<&'a str>,
    pub store_type: Option<&'a str>,
    pub cluster_id: Option<&'a str>,
    pub trust_anchor: Option<&'a str>,
    pub password: Option<&'a str>,
    /// Whether any `XksProxy*` member was sent.
    pub xks: bool,
}

/// UpdateCustomKeyStore's inputs.
#[derive(Default)]
pub struct CustomKeyStoreUpdate<'a> {
    pub new_name: Option<&'a str>,
    pub password: Option<&'a str>,
    pub cluster_id: Option<&'a str>,
    pub xks: bool,
}

/// One entry of DescribeCustomKeyStores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomKeyStoreInfo {
    pub id: String,
    pub name: String,
    pub cluster_id: String,
    pub trust_anchor: String,
    pub state: &'static str,
    pub error_code: Option<String>,
    pub created_ms: i64,
}

/// The operations a key in a custom key store cannot do (AWS: no rotation, no imported
/// material, single-Region symmetric keys only, no data key pairs).
const NOT_IN_CUSTOM_KEY_STORES: &[Op] = &[
    Op::EnableKeyRotation,
    Op::DisableKeyRotation,
    Op::RotateKeyOnDemand,
    Op::ListKeyRotations,
    Op::GetParametersForImport,
    Op::ImportKeyMaterial,
    Op::DeleteImportedKeyMaterial,
    Op::ReplicateKey,
    Op::UpdatePrimaryRegion,
    Op::GenerateDataKeyPair,
    Op::GenerateDataKeyPairWithoutPlaintext,
];

fn name_ok(name: &str) -> Result<(), KmsError> {
    constraints::text(name, "customKeyStoreName", 1, 256)
}

/// The password's length (its value never goes into the message: it is a secret).
fn password_ok(p: &str) -> Result<(), KmsError> {
    constraints::length(p.chars().count(), None, "keyStorePassword", 7, 32)
}

fn cluster_id_ok(c: &str) -> Result<(), KmsError> {
    constraints::text(c, "cloudHsmClusterId", 19, 24)
}

fn refuse_xks(xks: bool) -> Result<(), KmsError> {
    if xks {
        return Err(KmsError::UnsupportedOperation(
            "External key stores (XksProxy* parameters) are not supported by sealgate's KMS: use an AWS_CLOUDHSM key store backed by a PKCS#11 token in kms.hsm_clusters.".into(),
        ));
    }
    Ok(())
}

fn not_found(id: &str) -> KmsError {
    KmsError::CustomKeyStoreNotFound(format!(
        "Custom key store '{id}' does not exist in this account and region."
    ))
}

impl Kms {
    /// Whether any custom key store exists: key operations may then wait on an HSM, so
    /// callers run them off the async runtime.
    pub fn uses_hsm(&self) -> bool {
        self.inner.key_stores.has_stores()
    }

    /// This region's stores.
    fn stores_here(&self) -> Vec<StoreRecord> {
        let mut v: Vec<StoreRecord> = self
            .inner
            .key_stores
            .records()
            .into_iter()
            .filter(|r| r.region == *self.region)
            .collect();
        v.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        v
    }

    fn store_here(&self, id: &str) -> Result<StoreRecord, KmsError> {
        constraints::text(id, "customKeyStoreId", 1, 64)?;
        self.inner
            .key_stores
            .record(id)
            .filter(|r| r.region == *self.region)
            .ok_or_else(|| not_found(id))
    }

    /// Commits `rec` (one transaction) and takes it in.
    fn write_store(&self, g: &WriteGuard<'_>, rec: &StoreRecord) -> Result<(), KmsError> {
        self.put_setting_locked(g, &rec.setting_name(), &rec.to_json()?)?;
        self.inner.key_stores.put_record(rec.clone());
        Ok(())
    }

    /// A store's password, opened (tests check that root-key rotation re-seals it).
    #[cfg(test)]
    pub(crate) fn custom_key_store_password(
        &self,
        id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let rec = self
            .inner
            .key_stores
            .record(id)
            .ok_or_else(|| not_found(id))?;
        self.store_pin(&rec)
    }

    fn store_pin(&self, rec: &StoreRecord) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        rec.open_password(&self.inner.root)
    }

    fn cluster_config(
        &self,
        cluster_id: &str,
    ) -> Result<&crate::kms::key_stores::HsmClusterConfig, KmsError> {
        cluster_id_ok(cluster_id)?;
        self.inner.key_stores.cluster(cluster_id).ok_or_else(|| {
            KmsError::CloudHsmClusterNotFound(format!(
                "No HSM cluster '{cluster_id}' is configured (kms.hsm_clusters in sealgate's configuration)."
            ))
        })
    }

    /// The cluster's config, if no other store uses it.
    fn check_cluster(
        &self,
        cluster_id: &str,
        except_store: Option<&str>,
    ) -> Result<&crate::kms::key_stores::HsmClusterConfig, KmsError> {
        let c = self.cluster_config(cluster_id)?;
        if let Some(other) = self
            .inner
            .key_stores
            .records()
            .into_iter()
            .find(|r| r.cluster_id == cluster_id && Some(r.id.as_str()) != except_store)
        {
            return Err(KmsError::CloudHsmClusterInUse(format!(
                "Cluster {cluster_id} is already associated with custom key store {}.",
                other.id
            )));
        }
        Ok(c)
    }

    fn check_name_free(&self, name: &str, except_store: Option<&str>) -> Result<(), KmsError> {
        if self
            .stores_here()
            .iter()
            .any(|r| r.name == name && Some(r.id.as_str()) != except_store)
        {
            return Err(KmsError::CustomKeyStoreNameInUse(format!(
                "A custom key store named '{name}' already exists in this account and region."
            )));
        }
        Ok(())
    }

    pub fn create_custom_key_store(
        &self,
        who: Caller<'_>,
        p: &NewCustomKeyStore<'_>,
    ) -> Result<String, KmsError> {
        self.authorize_account(who, Op::CreateCustomKeyStore)?;
        let name = p
            .name
            .ok_or_else(|| constraints::missing("customKeyStoreName"))?;
        name_ok(name)?;
        match p.store_type {
            None | Some("AWS_CLOUDHSM") => {}
            Some("EXTERNAL_KEY_STORE") => refuse_xks(true)?,
            Some(t) => {
                return Err(constraints::not_in_enum(
                    t,
                    "customKeyStoreType",
                    &["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
                ));
            }
        }
        refuse_xks(p.xks)?;
        let (Some(cluster_id), Some(anchor), Some(password)) =
            (p.cluster_id, p.trust_anchor, p.password)
        else {
            return Err(KmsError::Validation(
                "An AWS_CLOUDHSM custom key store needs CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword.".into(),
            ));
        };
        constraints::text(anchor, "trustAnchorCertificate", 1, 5000)?;
        password_ok(password)?;
        let anchor = normalize_pem(anchor);
        let cluster = self.cluster_config(cluster_id)?;
        match cluster.trust_anchor()? {
            Some(pinned) if pinned != anchor => {
                return Err(KmsError::IncorrectTrustAnchor(format!(
                    "The trust anchor certificate is not the one configured for cluster {cluster_id}."
                )));
            }
            None if !anchor.starts_with("-----BEGIN CERTIFICATE-----")
                || !anchor.ends_with("-----END CERTIFICATE-----") =>
            {
                return Err(KmsError::IncorrectTrustAnchor(
                    "The trust anchor certificate must be a PEM certificate.".into(),
                ));
            }
            _ => {}
        }
        let g = self.lock_writer()?;
        self.check_name_free(name, None)?;
        self.check_cluster(cluster_id, None)?;
        if self.stores_here().len() >= MAX_STORES {
            return Err(KmsError::LimitExceeded(format!(
                "This account and region already have {MAX_STORES} custom key stores."
            )));
        }
        let mut rec = StoreRecord {
            id: new_store_id()?,
            name: name.to_string(),
            cluster_id: cluster_id.to_string(),
            trust_anchor: anchor,
            password: String::new(),
            seal_id: uuid::Uuid::new_v4(),
            created_ms: self.now_ms(),
            region: self.region.to_string(),
            state: ConnectionState::Disconnected,
            error_code: None,
        };
        rec.seal_password(&self.inner.root, password.as_bytes())?;
        self.write_store(&g, &rec)?;
        tracing::info!(custom_key_store = %rec.id, cluster = %rec.cluster_id, "custom key store created");
        Ok(rec.id)
    }

    pub fn describe_custom_key_stores(
        &self,
        who: Caller<'_>,
        id: Option<&str>,
        name: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<CustomKeyStoreInfo>, KmsError> {
        self.authorize_account(who, Op::DescribeCustomKeyStores)?;
        if let Some(n) = name {
            name_ok(n)?;
        }
        if let Some(i) = id {
            constraints::text(i, "customKeyStoreId", 1, 64)?;
        }
        let all: Vec<StoreRecord> = self
            .stores_here()
            .into_iter()
            .filter(|r| id.is_none_or(|i| r.id == i) && name.is_none_or(|n| r.name == n))
            .collect();
        if all.is_empty() && (id.is_some() || name.is_some()) {
            return Err(not_found(id.or(name).unwrap_or_default()));
        }
        paginate(
            all.into_iter().map(|r| {
                let info = CustomKeyStoreInfo {
                    id: r.id.clone(),
                    name: r.name,
                    cluster_id: r.cluster_id,
                    trust_anchor: r.trust_anchor,
                    state: r.state.as_str(),
                    error_code: r.error_code.filter(|_| r.state == ConnectionState::Failed),
                    created_ms: r.created_ms,
                };
                (format!("{:020}{}", r.created_ms, r.id), info)
            }),
            PAGE_DEFAULT,
            limit,
            marker,
        )
    }

    /// Connects synchronously: the answer already tells CONNECTED or FAILED (with
    /// ConnectionErrorCode) through DescribeCustomKeyStores, as AWS's asynchronous
    /// connection eventually does.
    pub fn connect_custom_key_store(&self, who: Caller<'_>, id: &str) -> Result<(), KmsError> {
        self.authorize_account(who, Op::ConnectCustomKeyStore)?;
        let g = self.lock_writer()?;
        let mut rec = self.store_here(id)?;
        match rec.state {
            ConnectionState::Connected => return Ok(()),
            ConnectionState::Failed => {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {id} is in the FAILED state: disconnect it (DisconnectCustomKeyStore), then connect it again."
                )));
            }
            ConnectionState::Disconnected => {}
        }
        let pin = self.store_pin(&rec)?;
        match self.inner.key_stores.open_token(&rec.cluster_id, &pin) {
            Ok(token) => {
                rec.state = ConnectionState::Connected;
                rec.error_code = None;
                self.write_store(&g, &rec)?;
                self.inner.key_stores.set_token(&rec, token);
                tracing::info!(custom_key_store = %id, "custom key store connected");
            }
            Err(e) => {
                let code = connection_error_code(&e);
                tracing::warn!(custom_key_store = %id, error = %e, code, "custom key store failed to connect");
                rec.state = ConnectionState::Failed;
                rec.error_code = Some(code.to_string());
                self.write_store(&g, &rec)?;
            }
        }
        Ok(())
    }

    pub fn disconnect_custom_key_store(&self, who: Caller<'_>, id: &str) -> Result<(), KmsError> {
        self.authorize_account(who, Op::DisconnectCustomKeyStore)?;
        let g = self.lock_writer()?;
        let mut rec = self.store_here(id)?;
        if rec.state == ConnectionState::Disconnected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is already disconnected."
            )));
        }
        rec.state = ConnectionState::Disconnected;
        rec.error_code = None;
        self.write_store(&g, &rec)?;
        tracing::info!(custom_key_store = %id, "custom key store disconnected");
        Ok(())
    }

    pub fn delete_custom_key_store(&self, who: Caller<'_>, id: &str) -> Result<(), KmsError> {
        self.authorize_account(who, Op::DeleteCustomKeyStore)?;
        let g = self.lock_writer()?;
        let rec = self.store_here(id)?;
        if rec.state != ConnectionState::Disconnected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} must be disconnected before it is deleted (it is {}).",
                rec.state.as_str()
            )));
        }
        let keys = self.keys_in_store(id);
        if keys > 0 {
            return Err(KmsError::CustomKeyStoreHasCmks(format!(
                "Custom key store {id} still has {keys} KMS keys (also those pending deletion): delete them first."
            )));
        }
        self.delete_setting_locked(&g, &rec.setting_name())?;
        self.inner.key_stores.remove_record(id);
        drop(g);
        tracing::info!(custom_key_store = %id, "custom key store deleted");
        Ok(())
    }

    /// KMS keys (any state, any region) in the store.
    fn keys_in_store(&self, id: &str) -> usize {
        let all = self.inner.state.read().unwrap_or_else(poisoned);
        all.values()
            .flat_map(|st| st.keys.values())
            .filter(|e| e.rec.custom_key_store_id.as_deref() == Some(id))
            .count()
    }

    pub fn update_custom_key_store(
        &self,
        who: Caller<'_>,
        id: &str,
        u: &CustomKeyStoreUpdate<'_>,
    ) -> Result<(), KmsError> {
        self.authorize_account(who, Op::UpdateCustomKeyStore)?;
        refuse_xks(u.xks)?;
        if let Some(n) = u.new_name {
            name_ok(n)?;
        }
        if let Some(p) = u.password {
            password_ok(p)?;
        }
        if let Some(c) = u.cluster_id {
            cluster_id_ok(c)?;
        }
        let g = self.lock_writer()?;
        let mut rec = self.store_here(id)?;
        let name_only = u.password.is_none() && u.cluster_id.is_none();
        let allowed = match rec.state {
            ConnectionState::Disconnected => true,
            ConnectionState::Connected => name_only,
            ConnectionState::Failed => false,
        };
        if !allowed {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is {}: it must be disconnected to be updated (only its name can change while it is CONNECTED).",
                rec.state.as_str()
            )));
        }
        if let Some(n) = u.new_name {
            self.check_name_free(n, Some(id))?;
            rec.name = n.to_string();
        }
        if let Some(c) = u.cluster_id
            && c != rec.cluster_id
        {
            let new = self.check_cluster(c, Some(id))?;
            let old = self.inner.key_stores.cluster(&rec.cluster_id);
            if old.is_none_or(|o| o.token_label != new.token_label) {
                return Err(KmsError::CloudHsmClusterNotRelated(format!(
                    "Cluster {c} does not hold the same token as {} (token labels differ), so it cannot hold this store's keys.",
                    rec.cluster_id
                )));
            }
            rec.cluster_id = c.to_string();
        }
        if let Some(p) = u.password {
            rec.seal_password(&self.inner.root, p.as_bytes())?;
        }
        self.write_store(&g, &rec)
    }

    /// The gate for keys in a custom key store: operations such keys cannot do are
    /// UnsupportedOperationException; cryptographic operations need the store CONNECTED
    /// (KMSInvalidStateException: the key is Unavailable) and this instance's token,
    /// opened here on first use.
    pub(super) fn check_custom_key_store(&self, e: &KeyEntry, op: Op) -> Result<(), KmsError> {
        let Some(id) = &e.rec.custom_key_store_id else {
            return Ok(());
        };
        if NOT_IN_CUSTOM_KEY_STORES.contains(&op) {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is in custom key store {id}, which does not support {}.",
                e.arn,
                op.name()
            )));
        }
        if op.row().kind != Kind::Crypto {
            return Ok(());
        }
        self.store_token(id).map(drop).map_err(|err| match err {
            KmsError::CustomKeyStoreInvalidState(_) | KmsError::CustomKeyStoreNotFound(_) => {
                KmsError::InvalidState(format!(
                    "{} is unavailable: its custom key store {id} is not connected.",
                    e.arn
                ))
            }
            other => other,
        })
    }

    /// This instance's logged-in token of a CONNECTED store (opened on first use).
    fn store_token(&self, id: &str) -> Result<Arc<Token>, KmsError> {
        let stores = &self.inner.key_stores;
        let rec = stores.record(id).ok_or_else(|| not_found(id))?;
        if rec.state != ConnectionState::Connected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is not connected (it is {}).",
                rec.state.as_str()
            )));
        }
        if let Some(t) = stores.token(id) {
            return Ok(t);
        }
        let pin = self.store_pin(&rec)?;
        let token = stores
            .open_token(&rec.cluster_id, &pin)
            .map_err(|e| hsm_error(id, e))?;
        stores.set_token(&rec, token.clone());
        Ok(token)
    }

    /// CreateKey in a custom key store: the store must be this region's and CONNECTED;
    /// the key must be a single-Region symmetric encryption key.
    pub(super) fn check_new_key_in_store(
        &self,
        id: &str,
        opts: &super::CreateKeyOptions,
    ) -> Result<(), KmsError> {
        if !opts.key_spec.is_symmetric() || opts.multi_region {
            return Err(KmsError::UnsupportedOperation(
                "Custom key stores hold only single-Region SYMMETRIC_DEFAULT keys.".into(),
            ));
        }
        let rec = self.store_here(id)?;
        if rec.state != ConnectionState::Connected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is not connected (it is {}): connect it first.",
                rec.state.as_str()
            )));
        }
        Ok(())
    }

    /// Creates the key's AES-256 material in the store's token (label = key id).
    pub(super) fn create_in_store(&self, id: &str, label: &str) -> Result<(), KmsError> {
        self.store_token(id)?
            .create_aes_key(label)
            .map_err(|e| hsm_error(id, e))
    }

    /// Destroys a deleted key's material in its token; if the store is not connected the
    /// material stays in the token (as AWS leaves it in the cluster) and is logged.
    pub(super) fn destroy_in_store(&self, id: &str, label: &str) {
        match self
            .store_token(id)
            .and_then(|t| t.destroy_key(label).map_err(|e| hsm_error(id, e)))
        {
            Ok(_) => {}
            Err(e) => tracing::warn!(
                custom_key_store = %id,
                key = %label,
                error = %e,
                "the deleted key's material could not be destroyed in its token; destroy it there by hand"
            ),
        }
    }

    /// GenerateRandom from a custom key store's token.
    pub(super) fn random_from_store(
        &self,
        id: &str,
        bytes: usize,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.store_here(id)?;
        self.store_token(id)?
            .random(bytes)
            .map_err(|e| hsm_error(id, e))
    }

    /// DescribeKey's view of a key in a custom key store: its cluster, and `Unavailable`
    /// while the store is not connected.
    pub(super) fn custom_key_store_metadata(&self, e: &KeyEntry, md: &mut KeyMetadata) {
        let Some(id) = &e.rec.custom_key_store_id else {
            return;
        };
        let rec = self.inner.key_stores.record(id);
        md.cloud_hsm_cluster_id = rec.as_ref().map(|r| r.cluster_id.clone());
        let connected = rec.is_some_and(|r| r.state == ConnectionState::Connected);
        if !connected && matches!(e.rec.state, KeyState::Enabled | KeyState::Disabled) {
            md.key_state = "Unavailable";
            md.enabled = false;
        }
    }
}

/// The material entry of a key in a custom key store.
pub(super) fn hsm_material(
    stores: &Arc<crate::kms::key_stores::KeyStores>,
    store_id: &str,
    label: &str,
) -> Arc<crate::kms::asym::KeyMaterial> {
    Arc::new(crate::kms::asym::KeyMaterial::Aes(
        crypto::BackingKey::in_hsm(crypto::HsmKey {
            stores: stores.clone(),
            store_id: store_id.to_string(),
            label: label.to_string(),
        }),
    ))
}
