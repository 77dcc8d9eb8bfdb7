//! The typed KMS JSON request: every input member of the implemented operations, base64
//! blobs that zeroize, and the parsing helpers the dispatcher shares.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::kms::asym::{KeySpec, KeyUsageType};
use crate::kms::crypto::MAX_BLOB;
use crate::kms::grants::GrantConstraints;
use crate::kms::{CreateKeyOptions, EncryptionContext, KmsError, constraints};

/// Base64 blob from JSON; zeroized on drop (it may be a plaintext).
#[derive(Default)]
pub(super) struct Blob(pub(super) Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        B64.decode(s.as_bytes())
            .map(|v| Blob(Zeroizing::new(v)))
            .map_err(|_| serde::de::Error::custom("blob is not valid base64"))
    }
}

/// A password from JSON (`KeyStorePassword`); zeroized on drop, never serialised.
#[derive(Default)]
pub(super) struct Password(pub(super) Zeroizing<String>);

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Password(Zeroizing::new(s)))
    }
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all(deserialize = "PascalCase", serialize = "camelCase"))]
pub(super) struct TagJson {
    pub(super) tag_key: String,
    pub(super) tag_value: String,
}

/// Every input member of the implemented operations (unknown members are ignored, as the
/// AWS JSON protocol allows). Serialising it (camelCase) gives the audit event's
/// `requestParameters`; blob members and grant tokens are never serialised.
#[derive(Deserialize, Serialize, Default)]
#[serde(
    rename_all(deserialize = "PascalCase", serialize = "camelCase"),
    default
)]
pub(super) struct Req {
    pub(super) key_id: Option<String>,
    pub(super) description: Option<String>,
    pub(super) tags: Option<Vec<TagJson>>,
    pub(super) tag_keys: Option<Vec<String>>,
    pub(super) origin: Option<String>,
    pub(super) key_spec: Option<String>,
    pub(super) customer_master_key_spec: Option<String>,
    pub(super) key_usage: Option<String>,
    pub(super) multi_region: Option<bool>,
    pub(super) limit: Option<i64>,
    pub(super) marker: Option<String>,
    #[serde(skip_serializing)]
    pub(super) plaintext: Option<Blob>,
    #[serde(skip_serializing)]
    pub(super) ciphertext_blob: Option<Blob>,
    pub(super) encryption_context: Option<EncryptionContext>,
    pub(super) encryption_algorithm: Option<String>,
    pub(super) source_key_id: Option<String>,
    pub(super) source_encryption_context: Option<EncryptionContext>,
    pub(super) source_encryption_algorithm: Option<String>,
    pub(super) destination_key_id: Option<String>,
    pub(super) destination_encryption_context: Option<EncryptionContext>,
    pub(super) destination_encryption_algorithm: Option<String>,
    pub(super) number_of_bytes: Option<i64>,
    pub(super) pending_window_in_days: Option<i64>,
    pub(super) rotation_period_in_days: Option<i64>,
    pub(super) alias_name: Option<String>,
    pub(super) target_key_id: Option<String>,
    pub(super) dry_run: Option<bool>,
    pub(super) dry_run_modifiers: Option<Vec<String>>,
    /// `Recipient` (Nitro Enclaves attestation): only its presence matters (refused).
    #[serde(skip_serializing)]
    pub(super) recipient: Option<serde_json::Value>,
    pub(super) policy: Option<String>,
    pub(super) policy_name: Option<String>,
    pub(super) bypass_policy_lockout_safety_check: Option<bool>,
    pub(super) grantee_principal: Option<String>,
    pub(super) retiring_principal: Option<String>,
    pub(super) grantee_service_principal: Option<String>,
    pub(super) retiring_service_principal: Option<String>,
    pub(super) operations: Option<Vec<String>>,
    pub(super) constraints: Option<GrantConstraints>,
    #[serde(skip_serializing)]
    pub(super) grant_tokens: Option<Vec<String>>,
    pub(super) name: Option<String>,
    pub(super) grant_id: Option<String>,
    #[serde(skip_serializing)]
    pub(super) grant_token: Option<String>,
    #[serde(skip_serializing)]
    pub(super) message: Option<Blob>,
    pub(super) message_type: Option<String>,
    #[serde(skip_serializing)]
    pub(super) signature: Option<Blob>,
    pub(super) signing_algorithm: Option<String>,
    #[serde(skip_serializing)]
    pub(super) mac: Option<Blob>,
    pub(super) mac_algorithm: Option<String>,
    pub(super) key_pair_spec: Option<String>,
    pub(super) key_agreement_algorithm: Option<String>,
    /// DeriveSharedSecret's peer public key (not secret, but not audit material either).
    #[serde(skip_serializing)]
    pub(super) public_key: Option<Blob>,
    pub(super) wrapping_algorithm: Option<String>,
    pub(super) wrapping_key_spec: Option<String>,
    #[serde(skip_serializing)]
    pub(super) import_token: Option<Blob>,
    #[serde(skip_serializing)]
    pub(super) encrypted_key_material: Option<Blob>,
    /// Epoch seconds, as the AWS JSON protocol sends timestamps.
    pub(super) valid_to: Option<f64>,
    pub(super) expiration_model: Option<String>,
    pub(super) replica_region: Option<String>,
    pub(super) primary_region: Option<String>,
    pub(super) custom_key_store_id: Option<String>,
    pub(super) custom_key_store_name: Option<String>,
    pub(super) new_custom_key_store_name: Option<String>,
    pub(super) custom_key_store_type: Option<String>,
    pub(super) cloud_hsm_cluster_id: Option<String>,
    pub(super) trust_anchor_certificate: Option<String>,
    #[serde(skip_serializing)]
    pub(super) key_store_password: Option<Password>,
    /// External key store members: only their presence matters (refused).
    #[serde(skip_serializing)]
    pub(super) xks_proxy_uri_endpoint: Option<serde_json::Value>,
    #[serde(skip_serializing)]
    pub(super) xks_proxy_uri_path: Option<serde_json::Value>,
    #[serde(skip_serializing)]
    pub(super) xks_proxy_vpc_endpoint_service_name: Option<serde_json::Value>,
    #[serde(skip_serializing)]
    pub(super) xks_proxy_vpc_endpoint_service_owner: Option<serde_json::Value>,
    #[serde(skip_serializing)]
    pub(super) xks_proxy_authentication_credential: Option<serde_json::Value>,
    #[serde(skip_serializing)]
    pub(super) xks_proxy_connectivity: Option<serde_json::Value>,
}

impl Req {
    /// Whether any external-key-store (`XksProxy*`) member was sent.
    pub(super) fn has_xks(&self) -> bool {
        self.xks_proxy_uri_endpoint.is_some()
            || self.xks_proxy_uri_path.is_some()
            || self.xks_proxy_vpc_endpoint_service_name.is_some()
            || self.xks_proxy_vpc_endpoint_service_owner.is_some()
            || self.xks_proxy_authentication_credential.is_some()
            || self.xks_proxy_connectivity.is_some()
    }
}

pub(super) fn required<T>(v: Option<T>, field: &str) -> Result<T, KmsError> {
    v.ok_or_else(|| constraints::missing(field))
}

pub(super) fn ciphertext(b: Option<Blob>) -> Result<Blob, KmsError> {
    let b = required(b, "ciphertextBlob")?;
    constraints::length(b.0.len(), None, "ciphertextBlob", 1, MAX_BLOB)?;
    Ok(b)
}

pub(super) fn data_key_len(key_spec: Option<&str>, n: Option<i64>) -> Result<usize, KmsError> {
    // Model constraints first (as AWS validates the request before its semantics).
    if let Some(n) = n {
        constraints::range(n, "numberOfBytes", 1, 1024)?;
    }
    if let Some(s) = key_spec
        && !matches!(s, "AES_256" | "AES_128")
    {
        return Err(constraints::not_in_enum(
            s,
            "keySpec",
            &["AES_256", "AES_128"],
        ));
    }
    match (key_spec, n) {
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (None, Some(n)) => Ok(n as usize),
        _ => Err(KmsError::Validation(
            "You must specify either the KeySpec or the NumberOfBytes parameter (but not both)."
                .into(),
        )),
    }
}

pub(super) fn create_options(r: &mut Req) -> Result<CreateKeyOptions, KmsError> {
    let key_spec = match (&r.key_spec, &r.customer_master_key_spec) {
        (Some(_), Some(_)) => {
            return Err(KmsError::Validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.".into(),
            ));
        }
        (Some(s), None) => KeySpec::parse(s, "keySpec")?,
        (None, Some(s)) => KeySpec::parse(s, "customerMasterKeySpec")?,
        (None, None) => KeySpec::SymmetricDefault,
    };
    let key_usage = match &r.key_usage {
        Some(u) => KeyUsageType::parse(u)?,
        None if key_spec.is_symmetric() => KeyUsageType::EncryptDecrypt,
        None => {
            return Err(KmsError::Validation(
                "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.".into(),
            ));
        }
    };
    let store = r.custom_key_store_id.take();
    if let Some(s) = &store {
        constraints::text(s, "customKeyStoreId", 1, 64)?;
    }
    let external = match (r.origin.as_deref(), &store) {
        // A key in a custom key store is AWS_CLOUDHSM; sealgate also takes the store id
        // alone as asking for one (docs/kms.md).
        (Some("AWS_CLOUDHSM") | None, Some(_)) => false,
        (Some("AWS_CLOUDHSM"), None) => {
            return Err(KmsError::Validation(
                "Origin AWS_CLOUDHSM needs CustomKeyStoreId: the custom key store to create the key in.".into(),
            ));
        }
        (Some(o @ ("AWS_KMS" | "EXTERNAL")), Some(_)) => {
            return Err(KmsError::Validation(format!(
                "A key in a custom key store must have Origin AWS_CLOUDHSM, not {o}."
            )));
        }
        (None | Some("AWS_KMS"), None) => false,
        (Some("EXTERNAL"), None) => true,
        (Some("EXTERNAL_KEY_STORE"), _) => {
            return Err(KmsError::UnsupportedOperation(
                "Origin EXTERNAL_KEY_STORE (external key stores) is not supported by sealgate's KMS.".into(),
            ));
        }
        (Some(o), _) => {
            return Err(KmsError::constraint(
                o,
                "origin",
                "Member must satisfy enum value set: [EXTERNAL, AWS_CLOUDHSM, AWS_KMS, EXTERNAL_KEY_STORE]",
            ));
        }
    };
    if external && key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::UnsupportedOperation(format!(
            "sealgate imports key material for SYMMETRIC_DEFAULT keys only, not {}.",
            key_spec.as_str()
        )));
    }
    Ok(CreateKeyOptions {
        description: r.description.take().unwrap_or_default(),
        tags: tags(r.tags.take().unwrap_or_default()),
        external,
        policy: r.policy.take(),
        bypass_policy_lockout_safety_check: r.bypass_policy_lockout_safety_check == Some(true),
        key_spec,
        key_usage,
        multi_region: r.multi_region == Some(true),
        custom_key_store_id: store,
    })
}

pub(super) fn tags(t: Vec<TagJson>) -> Vec<(String, String)> {
    t.into_iter().map(|t| (t.tag_key, t.tag_value)).collect()
}
