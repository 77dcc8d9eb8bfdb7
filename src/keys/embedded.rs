//! The embedded KMS as a backend: calls the in-process [`Kms`] with the S3 request's
//! caller (its principal and `CallContext::s3`), so key policies, grants, key states and
//! the audit log apply to every S3 request exactly as they do to API calls.

use zeroize::Zeroizing;

use super::{BackendError, Caller, Capabilities, GeneratedKey, KeyInfo, KmsBackend};
use crate::kms::{EncryptionAlgorithm, EncryptionContext, Kms};

/// Data keys are wrapped in KMS ciphertext blobs.
const SYMMETRIC: EncryptionAlgorithm = EncryptionAlgorithm::SymmetricDefault;

/// Alias of the sealgate-managed default key (like AWS's `aws/s3`).
pub const MANAGED_ALIAS: &str = "alias/aws/s3";

pub struct Embedded {
    kms: Kms,
}

impl Embedded {
    pub fn new(kms: Kms) -> Self {
        Embedded { kms }
    }

    /// Runs a KMS call; with custom key stores (which may wait on an HSM) on a
    /// multi-threaded runtime, as blocking work so other requests keep their threads.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi && self.kms.uses_hsm() {
            tokio::task::block_in_place(f)
        } else {
            f()
        }
    }
}

#[async_trait::async_trait]
impl KmsBackend for Embedded {
    fn name(&self) -> &str {
        super::EMBEDDED
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            encryption_context: true,
            rotation: true,
            key_versions: true,
            per_caller_authorization: true,
        }
    }

    async fn default_key(&self) -> Result<String, BackendError> {
        Ok(self.kms.service_managed_key(MANAGED_ALIAS)?)
    }

    async fn generate_data_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<GeneratedKey, BackendError> {
        let dk = self.run(|| self.kms.generate_data_key(who, key_id, ctx, 32))?;
        Ok(GeneratedKey {
            plaintext: dk.plaintext,
            wrapped: dk.ciphertext_blob,
            key_ref: dk.key_arn,
        })
    }

    async fn decrypt_data_key(
        &self,
        who: Caller<'_>,
        key_ref: &str,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let d = self.run(|| {
            self.kms
                .decrypt(who, Some(key_ref), wrapped, ctx, SYMMETRIC)
        })?;
        Ok(d.plaintext)
    }

    async fn wrap_data_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), BackendError> {
        Ok(self.run(|| self.kms.encrypt(who, key_id, plaintext, ctx, SYMMETRIC))?)
    }

    async fn describe_key(&self, who: Caller<'_>, key_id: &str) -> Result<KeyInfo, BackendError> {
        let m = self.kms.describe_key(who, key_id)?;
        Ok(KeyInfo {
            key_ref: m.arn.clone(),
            enabled: m.enabled,
            latest_version: None,
            derived: None,
        })
    }
}
