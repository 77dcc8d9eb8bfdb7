//! Settings of the rest of sealgate kept in the KMS database: small JSON values under a
//! name, authenticated under the root key like every other row (`store.rs`), held in
//! memory and written through the single writer. The S3 front keeps its bucket
//! default-encryption rules here (`crate::s3::rules`), out of the store's reach.
//!
//! Invariants: a value is visible to readers only after its transaction committed; the
//! KMS gives the values no meaning (no S3 type is known here).

use super::{Kms, WriteGuard, poisoned};
use crate::kms::KmsError;
use crate::kms::store::Mutation;

impl Kms {
    /// The value of setting `name`, if set.
    pub fn setting(&self, name: &str) -> Option<Vec<u8>> {
        let all = self.inner.settings.read().unwrap_or_else(poisoned);
        all.get(name).cloned()
    }

    /// The names of the settings starting with `prefix`.
    pub fn setting_names(&self, prefix: &str) -> Vec<String> {
        let all = self.inner.settings.read().unwrap_or_else(poisoned);
        all.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Sets `name` to `json` (one durable transaction).
    pub fn put_setting(&self, name: &str, json: &[u8]) -> Result<(), KmsError> {
        let g = self.lock_writer()?;
        self.put_setting_locked(&g, name, json)
    }

    /// Removes `name`; whether it was set.
    pub fn delete_setting(&self, name: &str) -> Result<bool, KmsError> {
        let g = self.lock_writer()?;
        if self.setting(name).is_none() {
            return Ok(false);
        }
        self.delete_setting_locked(&g, name)?;
        Ok(true)
    }

    /// As `put_setting`, for a caller that holds the writer lock.
    pub(super) fn put_setting_locked(
        &self,
        _g: &WriteGuard<'_>,
        name: &str,
        json: &[u8],
    ) -> Result<(), KmsError> {
        self.inner
            .store
            .apply(&[Mutation::PutSetting(name, json)])?;
        let mut all = self.inner.settings.write().unwrap_or_else(poisoned);
        all.insert(name.to_string(), json.to_vec());
        Ok(())
    }

    /// Removes `name` (one durable transaction), for a caller that holds the writer lock.
    pub(super) fn delete_setting_locked(
        &self,
        _g: &WriteGuard<'_>,
        name: &str,
    ) -> Result<(), KmsError> {
        self.inner.store.apply(&[Mutation::DeleteSetting(name)])?;
        let mut all = self.inner.settings.write().unwrap_or_else(poisoned);
        all.remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::kms::tests::fixture;

    #[test]
    fn settings_survive_a_restart_and_deletion_is_durable() {
        let f = fixture();
        let kms = &f.kms;
        kms.put_setting("s3/bucket-encryption/a", b"{\"x\":1}")
            .unwrap();
        kms.put_setting("s3/bucket-encryption/b", b"{\"x\":2}")
            .unwrap();
        kms.put_setting("other", b"{}").unwrap();
        assert!(kms.delete_setting("s3/bucket-encryption/b").unwrap());
        assert!(!kms.delete_setting("s3/bucket-encryption/b").unwrap());
        let f = f.reopen();
        let kms = &f.kms;
        assert_eq!(
            kms.setting("s3/bucket-encryption/a").as_deref(),
            Some(&b"{\"x\":1}"[..])
        );
        assert_eq!(kms.setting("s3/bucket-encryption/b"), None);
        assert_eq!(
            kms.setting_names("s3/bucket-encryption/"),
            vec!["s3/bucket-encryption/a".to_string()]
        );
    }
}
