//! The KMS data model: what is persisted (minus sealed material) and what DescribeKey
//! returns. The key-state × operation table is a column of `ops`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::asym::{KeySpec, KeyUsageType};
use super::clock::epoch_seconds;

/// AWS key states as stored. `Unavailable` (a key whose custom key store is not
/// connected) is never stored: DescribeKey reports it from the store's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    /// Customer managed: full lifecycle control.
    Customer,
    /// Service managed (`alias/aws/...`): created on first use, usable, not manageable.
    Aws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    AwsKms,
    External,
    /// Created in a custom key store's token (`kms::key_stores`).
    AwsCloudHsm,
}

impl Origin {
    /// AWS's `Origin` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::AwsKms => "AWS_KMS",
            Origin::External => "EXTERNAL",
            Origin::AwsCloudHsm => "AWS_CLOUDHSM",
        }
    }
}

/// How a backing-key version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    /// The first version, created with the key.
    Initial,
    Automatic,
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u32,
    pub created_ms: i64,
    pub kind: RotationType,
}

/// One KMS key's metadata as stored (JSON in the `keys` table). Material lives in the
/// `material` table, sealed under the root key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: Uuid,
    pub created_ms: i64,
    pub description: String,
    pub state: KeyState,
    pub manager: KeyManager,
    pub origin: Origin,
    pub tags: BTreeMap<String, String>,
    /// Set while PendingDeletion.
    pub deletion_ms: Option<i64>,
    pub pending_window_days: Option<u32>,
    /// Automatic rotation period when enabled.
    pub rotation_period_days: Option<u32>,
    pub next_rotation_ms: Option<i64>,
    /// Backing-key versions, oldest first; the last one encrypts.
    pub versions: Vec<VersionInfo>,
    /// The key policy document as given (validated). `None` in records written before
    /// key policies existed: those keys have the default (or service) policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// Key spec and usage; records from before they existed are AES keys.
    #[serde(default)]
    pub key_spec: KeySpec,
    #[serde(default)]
    pub key_usage: KeyUsageType,
    /// Imported material (Origin EXTERNAL): its check value and expiry. Absent for other
    /// keys and in records written before import existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportInfo>,
    /// The region the key lives in; None = the home region (`kms.region`), which is
    /// where every record written before regions existed lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Multi-Region keys (`mrk-` ids): this copy's role. The copies of one multi-Region
    /// key share id, material versions and rotation; each region has its own record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_region: Option<MultiRegionRole>,
    /// The ARN of the principal that created the key (the per-principal key quota);
    /// absent for service-managed keys, replicas and records from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Keys in a custom key store (Origin AWS_CLOUDHSM): the store's id. The material is
    /// the token's key labelled with the key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_key_store_id: Option<String>,
}

/// Primary or replica copy of a multi-Region key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MultiRegionRole {
    Primary,
    Replica,
}

/// A key id as AWS shows it: a UUID, or `mrk-` + 32 lowercase hex digits for
/// multi-Region keys (the same 128 bits, so blobs name both kinds in 16 bytes).
pub fn display_key_id(id: &Uuid, multi_region: bool) -> String {
    if multi_region {
        format!("mrk-{}", id.simple())
    } else {
        id.to_string()
    }
}

/// What an EXTERNAL key remembers about its imported material. The check value outlives
/// the material (DeleteImportedKeyMaterial, expiry), so a re-import can be verified
/// without keeping deleted material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportInfo {
    /// Hex HMAC-SHA256 of the first imported material under a root-derived key.
    pub check_value: String,
    /// When the current material expires (`KEY_MATERIAL_EXPIRES`); None = never.
    pub valid_to_ms: Option<i64>,
}

impl KeyRecord {
    /// The key id as the API shows it (`mrk-...` for multi-Region keys).
    pub fn key_id(&self) -> String {
        display_key_id(&self.id, self.multi_region.is_some())
    }

    pub fn current_version(&self) -> Option<u32> {
        self.versions.last().map(|v| v.version)
    }

    pub fn rotation_due(&self, now_ms: i64) -> bool {
        self.state == KeyState::Enabled && self.next_rotation_ms.is_some_and(|t| t <= now_ms)
    }

    pub fn deletion_due(&self, now_ms: i64) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_ms.is_some_and(|t| t <= now_ms)
    }

    /// Imported material whose ValidTo has passed (and that is still there).
    pub fn material_expiry_due(&self, now_ms: i64) -> bool {
        !self.versions.is_empty()
            && self
                .import
                .as_ref()
                .and_then(|i| i.valid_to_ms)
                .is_some_and(|t| t <= now_ms)
    }
}

/// `KeyMetadata` exactly as AWS KMS returns it in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub key_id: String,
    pub arn: String,
    pub creation_date: f64,
    pub enabled: bool,
    pub description: String,
    pub key_usage: &'static str,
    pub key_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_deletion_window_in_days: Option<u32>,
    pub origin: &'static str,
    pub key_manager: &'static str,
    /// Deprecated; absent for the specs its enum never had (ML-DSA, Ed25519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_master_key_spec: Option<&'static str>,
    pub key_spec: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_algorithms: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_algorithms: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_algorithms: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_agreement_algorithms: Option<Vec<&'static str>>,
    pub multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_region_configuration: Option<MultiRegionConfiguration>,
    /// EXTERNAL keys with imported material: `KEY_MATERIAL_EXPIRES` or `..._DOES_NOT_EXPIRE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_key_store_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_hsm_cluster_id: Option<String>,
}

impl KeyMetadata {
    pub fn from_record(rec: &KeyRecord, account: &str, arn: String) -> Self {
        KeyMetadata {
            aws_account_id: account.to_string(),
            key_id: rec.key_id(),
            arn,
            creation_date: epoch_seconds(rec.created_ms),
            enabled: rec.state == KeyState::Enabled,
            description: rec.description.clone(),
            key_usage: rec.key_usage.as_str(),
            key_state: rec.state.as_str(),
            deletion_date: rec.deletion_ms.map(epoch_seconds),
            // AWS reports it only in PendingReplicaDeletion (a multi-Region primary
            // waiting for its replicas), never for an ordinary pending deletion.
            pending_deletion_window_in_days: None,
            origin: rec.origin.as_str(),
            key_manager: match rec.manager {
                KeyManager::Customer => "CUSTOMER",
                KeyManager::Aws => "AWS",
            },
            customer_master_key_spec: rec.key_spec.customer_master_key_spec(),
            key_spec: rec.key_spec.as_str(),
            encryption_algorithms: names(
                (rec.key_spec.encryption_algorithms(rec.key_usage).iter()).map(|a| a.as_str()),
            ),
            signing_algorithms: names(
                (rec.key_spec.signing_algorithms(rec.key_usage).iter()).map(|a| a.as_str()),
            ),
            mac_algorithms: names(rec.key_spec.mac_algorithms().iter().map(|a| a.as_str())),
            key_agreement_algorithms: names(
                (rec.key_spec.key_agreement_algorithms(rec.key_usage).iter()).map(|a| a.as_str()),
            ),
            multi_region: rec.multi_region.is_some(),
            multi_region_configuration: None,
            expiration_model: rec
                .import
                .as_ref()
                .filter(|_| !rec.versions.is_empty())
                .map(|i| match i.valid_to_ms {
                    Some(_) => "KEY_MATERIAL_EXPIRES",
                    None => "KEY_MATERIAL_DOES_NOT_EXPIRE",
                }),
            valid_to: rec
                .import
                .as_ref()
                .filter(|_| !rec.versions.is_empty())
                .and_then(|i| i.valid_to_ms)
                .map(epoch_seconds),
            custom_key_store_id: rec.custom_key_store_id.clone(),
            cloud_hsm_cluster_id: None,
        }
    }
}

/// AWS lists only the algorithm kinds a key has (`None`: member absent).
fn names(algs: impl ExactSizeIterator<Item = &'static str>) -> Option<Vec<&'static str>> {
    (algs.len() > 0).then(|| algs.collect())
}

/// `MultiRegionConfiguration` of KeyMetadata (filled in by the KMS, which sees every
/// region's copy).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultiRegionConfiguration {
    pub multi_region_key_type: &'static str,
    pub primary_key: MultiRegionKey,
    pub replica_keys: Vec<MultiRegionKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultiRegionKey {
    pub arn: String,
    pub region: String,
}

/// An alias as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub target: Uuid,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_import_and_regions_load_with_defaults() {
        let old = r#"{"id":"11111111-2222-4333-8444-555555555555","created_ms":1,
            "description":"","state":"Enabled","manager":"Customer","origin":"AwsKms",
            "tags":{},"deletion_ms":null,"pending_window_days":null,
            "rotation_period_days":null,"next_rotation_ms":null,
            "versions":[{"version":1,"created_ms":1,"kind":"Initial"}]}"#;
        let rec: KeyRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            (&rec.import, &rec.region, &rec.multi_region),
            (&None, &None, &None)
        );
        assert_eq!(rec.key_id(), "11111111-2222-4333-8444-555555555555");
        let back = serde_json::to_string(&rec).unwrap();
        assert!(
            !back.contains("region") && !back.contains("import"),
            "{back}"
        );
    }

    #[test]
    fn multi_region_key_ids_are_mrk_and_32_lowercase_hex() {
        let id = Uuid::from_u128(0xABCD_0000_0000_0000_0000_0000_0000_00FF);
        let s = display_key_id(&id, true);
        assert_eq!(s, "mrk-abcd00000000000000000000000000ff");
        assert_eq!(display_key_id(&id, false), id.to_string());
    }
}
