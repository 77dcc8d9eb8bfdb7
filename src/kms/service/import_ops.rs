//! Importing key material (BYOK) into `EXTERNAL` keys: GetParametersForImport,
//! ImportKeyMaterial, DeleteImportedKeyMaterial and material expiry. The wrapping
//! cryptography is in `kms::import`; this file holds the key-level rules.
//!
//! Invariants: an EXTERNAL key holds at most one material version (1), imported; once a
//! key has had material, only the same material (same check value) can be imported
//! again, so its old ciphertexts open again after a delete + re-import; deleting or
//! expiring material removes it from the database and from memory in one step.

use std::collections::HashMap;
use std::sync::Arc;

use super::{KeyEntry, Kms, WriteGuard};
use crate::kms::KmsError;
use crate::kms::caller::Caller;

use crate::kms::asym::KeyMaterial;
use crate::kms::clock::DAY_MS;
use crate::kms::crypto::{BackingKey, KEY_LEN};
use crate::kms::import::{
    self, ImportParameters, WrappingAlgorithm, WrappingKeySpec, material_check_value,
};
use crate::kms::model::{ImportInfo, KeyRecord, KeyState, Origin, RotationType, VersionInfo};
use crate::kms::ops::Op;
use crate::kms::store::Mutation;

/// The latest ValidTo AWS accepts: 365 days after the request.
const MAX_VALID_TO_MS: i64 = 365 * DAY_MS;

/// `ExpirationModel` + `ValidTo` of an ImportKeyMaterial request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaterialExpiry {
    /// `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    Never,
    /// `KEY_MATERIAL_EXPIRES` at this time (ms since the epoch).
    At(i64),
}

impl MaterialExpiry {
    /// Parses the request members. The model defaults to `KEY_MATERIAL_EXPIRES` (as on
    /// AWS), which needs `ValidTo`; `KEY_MATERIAL_DOES_NOT_EXPIRE` forbids it.
    pub fn parse(model: Option<&str>, valid_to_ms: Option<i64>) -> Result<Self, KmsError> {
        match (model.unwrap_or("KEY_MATERIAL_EXPIRES"), valid_to_ms) {
            ("KEY_MATERIAL_EXPIRES", Some(t)) => Ok(Self::At(t)),
            ("KEY_MATERIAL_EXPIRES", None) => Err(KmsError::Validation(
                "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES".into(),
            )),
            ("KEY_MATERIAL_DOES_NOT_EXPIRE", None) => Ok(Self::Never),
            ("KEY_MATERIAL_DOES_NOT_EXPIRE", Some(_)) => Err(KmsError::Validation(
                "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE."
                    .into(),
            )),
            (m, _) => Err(KmsError::constraint(
                m,
                "expirationModel",
                "Member must satisfy enum value set: [KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE]",
            )),
        }
    }

    fn valid_to_ms(self, now_ms: i64) -> Result<Option<i64>, KmsError> {
        match self {
            Self::Never => Ok(None),
            Self::At(t) if t <= now_ms => Err(KmsError::Validation(
                "ValidTo must be a date and time in the future.".into(),
            )),
            Self::At(t) if t > now_ms + MAX_VALID_TO_MS => Err(KmsError::Validation(
                "ValidTo must be at most 365 days after the request.".into(),
            )),
            Self::At(t) => Ok(Some(t)),
        }
    }
}

/// UnsupportedOperationException for operations that need (or forbid) imported material.
fn origin_error(e: &KeyEntry, op: Op) -> KmsError {
    let origin = e.rec.origin.as_str();
    KmsError::UnsupportedOperation(format!(
        "{} origin is {origin} which is not valid for this operation ({}).",
        e.arn,
        op.name()
    ))
}

/// Refuses `op` on a key with imported material: such keys cannot rotate (AWS).
pub(super) fn refuse_rotation_of_imported(rec: &KeyRecord, op: Op) -> Result<(), KmsError> {
    if rec.origin == Origin::External {
        return Err(KmsError::UnsupportedOperation(format!(
            "Key {} has imported key material (origin EXTERNAL), which does not support {}.",
            rec.id,
            op.name()
        )));
    }
    Ok(())
}

fn require_external(e: &KeyEntry, op: Op) -> Result<(), KmsError> {
    if e.rec.origin != Origin::External {
        return Err(origin_error(e, op));
    }
    Ok(())
}

impl Kms {
    /// GetParametersForImport: a fresh RSA wrapping key (public half, DER SPKI) and an
    /// import token bound to this key, valid for 24 hours. Returns (key ARN, parameters).
    pub fn get_parameters_for_import(
        &self,
        who: Caller<'_>,
        key_id: &str,
        wrapping_algorithm: &str,
        wrapping_key_spec: Option<&str>,
    ) -> Result<(String, ImportParameters), KmsError> {
        let alg = WrappingAlgorithm::parse(wrapping_algorithm)?;
        let spec = WrappingKeySpec::parse(wrapping_key_spec)?;
        let op = Op::GetParametersForImport;
        let e = self.key_for(who, key_id, op, false, None, None)?;
        require_external(&e, op)?;
        self.throttle(who, super::quota::wrapping_cost(spec))?;
        let params = import::new_parameters(&self.inner.root, &e.rec.id, spec, alg, self.now_ms())?;
        Ok((e.arn.clone(), params))
    }

    /// ImportKeyMaterial: unwraps the material with the token's wrapping key and installs
    /// it as the key's only version (PendingImport → Enabled). Re-importing the same
    /// material replaces the expiry; different material is refused. Returns the key ARN.
    pub fn import_key_material(
        &self,
        who: Caller<'_>,
        key_id: &str,
        import_token: &[u8],
        encrypted_key_material: &[u8],
        expiry: MaterialExpiry,
    ) -> Result<String, KmsError> {
        let g = self.lock_writer()?;
        let op = Op::ImportKeyMaterial;
        let e = self.key_for(who, key_id, op, false, None, Some(&g))?;
        require_external(&e, op)?;
        let now = self.now_ms();
        let valid_to_ms = expiry.valid_to_ms(now)?;
        let root = &self.inner.root;
        let token = import::open_token(root, import_token, &e.rec.id, now)?;
        let material = token.unwrap_material(encrypted_key_material)?;
        if material.len() != KEY_LEN {
            return Err(KmsError::Validation(format!(
                "Key material of a SYMMETRIC_DEFAULT key must be 256 bits (32 bytes), not {} bytes.",
                material.len()
            )));
        }
        // Kept under the key the database is sealed under; around a root-key rotation
        // the stored value may be either key's.
        let check_value = material_check_value(root.sealing(), &e.rec.id, &material);
        let same = |old: &str| {
            old == material_check_value(root, &e.rec.id, &material)
                || root
                    .previous()
                    .is_some_and(|p| old == material_check_value(p, &e.rec.id, &material))
        };
        if let Some(old) = &e.rec.import
            && !same(&old.check_value)
        {
            return Err(KmsError::IncorrectKeyMaterial(format!(
                "The key material is not the material previously imported into {}; only the same key material can be imported again.",
                e.arn
            )));
        }
        let mut rec = e.rec.clone();
        rec.import = Some(ImportInfo {
            check_value,
            valid_to_ms,
        });
        if rec.state == KeyState::PendingImport {
            rec.state = KeyState::Enabled;
        }
        let mut material_map = e.material.clone();
        if rec.versions.is_empty() {
            let sealed = root.seal_material(&rec.id, 1, &material)?;
            rec.versions.push(VersionInfo {
                version: 1,
                created_ms: now,
                kind: RotationType::Initial,
            });
            self.inner.store.apply(&[
                Mutation::PutKey(&rec),
                Mutation::PutMaterial {
                    id: rec.id,
                    version: 1,
                    sealed: &sealed,
                },
            ])?;
            material_map.insert(
                1,
                Arc::new(KeyMaterial::Aes(BackingKey::from_material(&material)?)),
            );
        } else {
            self.inner.store.apply(&[Mutation::PutKey(&rec)])?;
        }
        drop(material);
        let new = e.with_material(rec, material_map);
        self.install(new.clone());
        drop(g);
        tracing::info!(key_id = %new.rec.id, "KMS key material imported");
        Ok(new.arn.clone())
    }

    /// DeleteImportedKeyMaterial: the key becomes PendingImport (PendingDeletion stays)
    /// and unusable until the same material is imported again. No effect on a key
    /// without material. Returns the key ARN.
    pub fn delete_imported_key_material(
        &self,
        who: Caller<'_>,
        key_id: &str,
    ) -> Result<String, KmsError> {
        let g = self.lock_writer()?;
        let op = Op::DeleteImportedKeyMaterial;
        let e = self.key_for(who, key_id, op, false, None, Some(&g))?;
        require_external(&e, op)?;
        if e.rec.versions.is_empty() {
            return Ok(e.arn.clone());
        }
        Ok(self.drop_material_locked(&g, &e)?.arn.clone())
    }

    /// Removes imported material (delete or expiry) in one transaction.
    pub(super) fn drop_material_locked(
        &self,
        _g: &WriteGuard<'_>,
        e: &KeyEntry,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let mut rec: KeyRecord = e.rec.clone();
        rec.versions.clear();
        if let Some(i) = &mut rec.import {
            i.valid_to_ms = None;
        }
        if rec.state != KeyState::PendingDeletion {
            rec.state = KeyState::PendingImport;
        }
        self.inner
            .store
            .apply(&[Mutation::PutKey(&rec), Mutation::DeleteMaterial(rec.id)])?;
        let new = e.with_material(rec, HashMap::new());
        self.install(new.clone());
        tracing::info!(key_id = %new.rec.id, "KMS imported key material deleted");
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kms::CreateKeyOptions;
    use crate::kms::import::client::wrap;
    use crate::kms::tests::{Fixture, SYM, alice, ctx, fixture, new_key};

    const ALG: &str = "RSAES_OAEP_SHA_256";

    fn external_key(f: &Fixture) -> String {
        let opts = CreateKeyOptions {
            external: true,
            ..Default::default()
        };
        f.kms.create_key(alice(), &opts).unwrap().key_id
    }

    /// GetParametersForImport + client-side wrapping + ImportKeyMaterial.
    fn import(
        f: &Fixture,
        id: &str,
        material: &[u8],
        expiry: MaterialExpiry,
    ) -> Result<String, KmsError> {
        let (_, p) = f
            .kms
            .get_parameters_for_import(alice(), id, ALG, None)
            .unwrap();
        let alg = WrappingAlgorithm::parse(ALG).unwrap();
        let wrapped = wrap(&p.public_key, alg, material);
        f.kms
            .import_key_material(alice(), id, &p.import_token, &wrapped, expiry)
    }

    fn state(f: &Fixture, id: &str) -> &'static str {
        f.kms.describe_key(alice(), id).unwrap().key_state
    }

    #[test]
    fn imported_material_encrypts_and_survives_delete_and_reimport() {
        let f = fixture();
        let id = external_key(&f);
        assert_eq!(state(&f, &id), "PendingImport");
        let c = ctx(&[("app", "byok")]);
        let enc = f.kms.encrypt(alice(), &id, b"x", &c, SYM);
        assert_eq!(enc.unwrap_err().aws_type(), "KMSInvalidStateException");

        import(&f, &id, &[5u8; 32], MaterialExpiry::Never).unwrap();
        let md = f.kms.describe_key(alice(), &id).unwrap();
        assert_eq!(md.key_state, "Enabled");
        assert_eq!(md.expiration_model, Some("KEY_MATERIAL_DOES_NOT_EXPIRE"));
        assert_eq!(md.valid_to, None);
        let (blob, _) = f.kms.encrypt(alice(), &id, b"imported", &c, SYM).unwrap();

        f.kms.delete_imported_key_material(alice(), &id).unwrap();
        assert_eq!(state(&f, &id), "PendingImport");
        let uuid = id.parse().unwrap();
        assert_eq!(f.kms.stored_material_versions(&uuid).unwrap(), 0);
        let dec = f.kms.decrypt(alice(), None, &blob, &c, SYM);
        assert_eq!(dec.unwrap_err().aws_type(), "KMSInvalidStateException");
        // Deleting again has no effect.
        f.kms.delete_imported_key_material(alice(), &id).unwrap();

        let other = import(&f, &id, &[6u8; 32], MaterialExpiry::Never);
        assert_eq!(
            other.unwrap_err().aws_type(),
            "IncorrectKeyMaterialException"
        );
        assert_eq!(state(&f, &id), "PendingImport");
        import(&f, &id, &[5u8; 32], MaterialExpiry::Never).unwrap();
        let dec = f.kms.decrypt(alice(), None, &blob, &c, SYM).unwrap();
        assert_eq!(&dec.plaintext[..], b"imported");
    }

    #[test]
    fn material_is_checked_and_kept_across_restarts() {
        let f = fixture();
        let id = external_key(&f);
        import(&f, &id, &[8u8; 32], MaterialExpiry::Never).unwrap();
        let (blob, _) = f
            .kms
            .encrypt(alice(), &id, b"persisted", &ctx(&[]), SYM)
            .unwrap();
        f.kms.delete_imported_key_material(alice(), &id).unwrap();
        let f = f.reopen();
        assert_eq!(state(&f, &id), "PendingImport");
        let wrong = import(&f, &id, &[9u8; 32], MaterialExpiry::Never);
        assert_eq!(
            wrong.unwrap_err().aws_type(),
            "IncorrectKeyMaterialException"
        );
        import(&f, &id, &[8u8; 32], MaterialExpiry::Never).unwrap();
        let f = f.reopen();
        let dec = f.kms.decrypt(alice(), None, &blob, &ctx(&[]), SYM).unwrap();
        assert_eq!(&dec.plaintext[..], b"persisted");
    }

    #[test]
    fn material_expires_at_valid_to_via_tick_and_on_access() {
        let f = fixture();
        let (a, b) = (external_key(&f), external_key(&f));
        let valid_to = f.kms.now_ms() + 2 * DAY_MS;
        import(&f, &a, &[1u8; 32], MaterialExpiry::At(valid_to)).unwrap();
        import(&f, &b, &[2u8; 32], MaterialExpiry::At(valid_to)).unwrap();
        let md = f.kms.describe_key(alice(), &a).unwrap();
        assert_eq!(md.expiration_model, Some("KEY_MATERIAL_EXPIRES"));
        assert_eq!(md.valid_to, Some(valid_to as f64 / 1000.0));
        let (blob, _) = f
            .kms
            .encrypt(alice(), &a, b"soon gone", &ctx(&[]), SYM)
            .unwrap();

        f.clock.advance(Duration::from_secs(2 * 86_400));
        f.kms.tick().unwrap();
        assert_eq!(state(&f, &a), "PendingImport");
        let md = f.kms.describe_key(alice(), &a).unwrap();
        assert_eq!((md.expiration_model, md.valid_to), (None, None));
        let dec = f.kms.decrypt(alice(), None, &blob, &ctx(&[]), SYM);
        assert_eq!(dec.unwrap_err().aws_type(), "KMSInvalidStateException");
        // Without tick, the next access notices the expiry.
        assert_eq!(state(&f, &b), "PendingImport");

        import(&f, &a, &[1u8; 32], MaterialExpiry::Never).unwrap();
        let dec = f.kms.decrypt(alice(), None, &blob, &ctx(&[]), SYM).unwrap();
        assert_eq!(&dec.plaintext[..], b"soon gone");
    }

    #[test]
    fn import_operations_need_an_external_key_and_a_valid_state() {
        let f = fixture();
        let aws = new_key(&f);
        let r = f.kms.get_parameters_for_import(alice(), &aws, ALG, None);
        assert_eq!(r.unwrap_err().aws_type(), "UnsupportedOperationException");
        let r = f.kms.delete_imported_key_material(alice(), &aws);
        assert_eq!(r.unwrap_err().aws_type(), "UnsupportedOperationException");

        let id = external_key(&f);
        let (_, p) = f
            .kms
            .get_parameters_for_import(alice(), &id, ALG, Some("RSA_2048"))
            .unwrap();
        f.kms.schedule_key_deletion(alice(), &id, Some(7)).unwrap();
        let r = f.kms.get_parameters_for_import(alice(), &id, ALG, None);
        assert_eq!(r.unwrap_err().aws_type(), "KMSInvalidStateException");
        let wrapped = wrap(&p.public_key, WrappingAlgorithm::RsaesOaepSha256, &[1; 32]);
        let r = f.kms.import_key_material(
            alice(),
            &id,
            &p.import_token,
            &wrapped,
            MaterialExpiry::Never,
        );
        assert_eq!(r.unwrap_err().aws_type(), "KMSInvalidStateException");
        f.kms.cancel_key_deletion(alice(), &id).unwrap();
        assert_eq!(state(&f, &id), "PendingImport");
    }

    #[test]
    fn token_of_another_key_and_wrong_material_size_are_refused() {
        let f = fixture();
        let (a, b) = (external_key(&f), external_key(&f));
        let (_, pa) = f
            .kms
            .get_parameters_for_import(alice(), &a, ALG, None)
            .unwrap();
        let alg = WrappingAlgorithm::RsaesOaepSha256;
        let wrapped = wrap(&pa.public_key, alg, &[1; 32]);
        let never = MaterialExpiry::Never;
        let r = f
            .kms
            .import_key_material(alice(), &b, &pa.import_token, &wrapped, never);
        assert_eq!(r.unwrap_err().aws_type(), "InvalidImportTokenException");
        let short = wrap(&pa.public_key, alg, &[1; 16]);
        let r = f
            .kms
            .import_key_material(alice(), &a, &pa.import_token, &short, never);
        assert_eq!(r.unwrap_err().aws_type(), "ValidationException");
        let r = f
            .kms
            .import_key_material(alice(), &a, &pa.import_token, &[0u8; 256], never);
        assert_eq!(r.unwrap_err().aws_type(), "InvalidCiphertextException");
        f.clock.advance(Duration::from_secs(86_400));
        let r = f
            .kms
            .import_key_material(alice(), &a, &pa.import_token, &wrapped, never);
        assert_eq!(r.unwrap_err().aws_type(), "ExpiredImportTokenException");
        assert_eq!(state(&f, &a), "PendingImport");
    }

    #[test]
    fn keys_with_imported_material_cannot_rotate() {
        let f = fixture();
        let id = external_key(&f);
        import(&f, &id, &[4u8; 32], MaterialExpiry::Never).unwrap();
        for r in [
            f.kms.enable_key_rotation(alice(), &id, None),
            f.kms.disable_key_rotation(alice(), &id),
            f.kms.rotate_key_on_demand(alice(), &id).map(drop),
        ] {
            assert_eq!(r.unwrap_err().aws_type(), "UnsupportedOperationException");
        }
    }

    #[test]
    fn deleting_material_of_a_key_pending_deletion_keeps_its_state() {
        let f = fixture();
        let id = external_key(&f);
        import(&f, &id, &[4u8; 32], MaterialExpiry::Never).unwrap();
        f.kms.schedule_key_deletion(alice(), &id, Some(7)).unwrap();
        f.kms.delete_imported_key_material(alice(), &id).unwrap();
        assert_eq!(state(&f, &id), "PendingDeletion");
        f.kms.cancel_key_deletion(alice(), &id).unwrap();
        assert_eq!(state(&f, &id), "PendingImport");
    }

    #[test]
    fn expiration_model_defaults_to_expires_and_needs_valid_to() {
        assert_eq!(
            MaterialExpiry::parse(None, Some(5)).unwrap(),
            MaterialExpiry::At(5)
        );
        let missing = MaterialExpiry::parse(None, None).unwrap_err();
        assert_eq!(missing.aws_type(), "ValidationException");
        let never = MaterialExpiry::parse(Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None);
        assert_eq!(never.unwrap(), MaterialExpiry::Never);
        let both = MaterialExpiry::parse(Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(5));
        assert_eq!(both.unwrap_err().aws_type(), "ValidationException");
        let bad = MaterialExpiry::parse(Some("SOMETIMES"), None);
        assert_eq!(bad.unwrap_err().aws_type(), "ValidationException");
    }

    #[test]
    fn valid_to_must_be_in_the_future_and_within_365_days() {
        let now = 1_000_000;
        assert!(MaterialExpiry::At(now).valid_to_ms(now).is_err());
        assert!(
            MaterialExpiry::At(now + MAX_VALID_TO_MS + 1)
                .valid_to_ms(now)
                .is_err()
        );
        assert_eq!(
            MaterialExpiry::At(now + DAY_MS).valid_to_ms(now).unwrap(),
            Some(now + DAY_MS)
        );
        assert_eq!(MaterialExpiry::Never.valid_to_ms(now).unwrap(), None);
    }
}
