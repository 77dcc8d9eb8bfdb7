//! The cryptographic operations of symmetric keys: Encrypt, Decrypt and ReEncrypt (which
//! hand the RSAES_OAEP_* algorithms to `asym_ops`), GenerateDataKey (with and without
//! plaintext) and GenerateRandom. Calls not made by the API layer (which audits its own
//! requests) write their audit event here.

use zeroize::Zeroizing;

use super::Kms;
use crate::kms::asym::EncryptionAlgorithm;
use crate::kms::audit::{CryptoParams, Params};
use crate::kms::caller::{Caller, Via};
use crate::kms::crypto::MAX_PLAINTEXT;
use crate::kms::ops::Op;
use crate::kms::{DataKey, Decrypted, EncryptionContext, KmsError, constraints, crypto};

/// ReEncrypt's inputs (source and destination sides).
#[derive(Debug, Clone, Copy)]
pub struct ReEncryptParams<'a> {
    pub ciphertext: &'a [u8],
    pub source_key_id: Option<&'a str>,
    pub source_context: &'a EncryptionContext,
    pub source_algorithm: EncryptionAlgorithm,
    pub destination_key_id: &'a str,
    pub destination_context: &'a EncryptionContext,
    pub destination_algorithm: EncryptionAlgorithm,
}

/// Encrypt takes 1..=4096 bytes of plaintext, whatever the algorithm.
pub(super) fn check_plaintext(pt: &[u8]) -> Result<(), KmsError> {
    constraints::length(pt.len(), None, "plaintext", 1, MAX_PLAINTEXT)
}

impl Kms {
    /// Encrypt (at most 4096 bytes) under `key_id` with `alg`: (ciphertext, key ARN).
    /// SYMMETRIC_DEFAULT gives a KMS ciphertext blob bound to `ctx`; RSAES_OAEP_* encrypts
    /// under an RSA ENCRYPT_DECRYPT key (raw OAEP ciphertext, no context).
    pub fn encrypt(
        &self,
        who: Caller<'_>,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        if alg != EncryptionAlgorithm::SymmetricDefault {
            return self.encrypt_asymmetric(who, key_id, plaintext, ctx, alg);
        }
        let r = (|| {
            check_plaintext(plaintext)?;
            let e = self.key_for(who, key_id, Op::Encrypt, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
            Ok((k.encrypt(&e.rec.id, v, plaintext, ctx)?, e.arn.clone()))
        })();
        self.audit_crypto(who, Op::Encrypt, Some(key_id), ctx, None, &r, |r| &r.1);
        r
    }

    pub(super) fn check_data_key_len(bytes: usize) -> Result<(), KmsError> {
        constraints::range(bytes as i64, "numberOfBytes", 1, 1024)
    }

    /// GenerateDataKey: a fresh random data key, plaintext and wrapped. Does not write
    /// the database.
    pub fn generate_data_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<DataKey, KmsError> {
        self.data_key(who, key_id, ctx, bytes, Op::GenerateDataKey)
    }

    /// GenerateDataKeyWithoutPlaintext: (wrapped key, key ARN).
    pub fn generate_data_key_without_plaintext(
        &self,
        who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let op = Op::GenerateDataKeyWithoutPlaintext;
        let dk = self.data_key(who, key_id, ctx, bytes, op)?;
        Ok((dk.ciphertext_blob, dk.key_arn))
    }

    /// Both GenerateDataKey forms (`op` decides the permission and the event name).
    fn data_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
        op: Op,
    ) -> Result<DataKey, KmsError> {
        let r = (|| {
            Self::check_data_key_len(bytes)?;
            let e = self.key_for(who, key_id, op, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
            let plaintext = crypto::random_bytes(bytes)?;
            let ciphertext_blob = k.encrypt(&e.rec.id, v, &plaintext, ctx)?;
            Ok(DataKey {
                plaintext,
                ciphertext_blob,
                key_arn: e.arn.clone(),
            })
        })();
        let bytes = Some(bytes);
        self.audit_crypto(who, op, Some(key_id), ctx, bytes, &r, |d| &d.key_arn);
        r
    }

    pub(super) fn open_blob(
        &self,
        who: Caller<'_>,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        op: Op,
    ) -> Result<Decrypted, KmsError> {
        let parsed = crypto::parse_blob(blob)?;
        let blob_key = parsed.key_id.to_string();
        if let Some(k) = key_id {
            let wanted = self.find(k, true)?;
            if wanted.rec.id != parsed.key_id {
                return Err(KmsError::IncorrectKey(format!(
                    "The key ID in the request does not identify a KMS key that can perform this operation: the ciphertext was encrypted under {}, not {}.",
                    self.key_arn(&parsed.key_id),
                    wanted.arn
                )));
            }
        }
        // A blob naming no existing key is indistinguishable from garbage to the caller.
        let e = match self.key_for(who, &blob_key, op, false, Some(ctx), None) {
            Err(KmsError::NotFound(_)) => return Err(crypto::invalid_ciphertext()),
            r => r?,
        };
        let key = e
            .material
            .get(&parsed.version)
            .and_then(|m| m.aes(e.rec.key_spec).ok())
            .ok_or_else(crypto::invalid_ciphertext)?;
        Ok(Decrypted {
            plaintext: key.decrypt(&parsed, ctx)?,
            key_arn: e.arn.clone(),
        })
    }

    /// Decrypt with `alg`. SYMMETRIC_DEFAULT: the blob names its key, and `key_id`, when
    /// given, must name the same key. RSAES_OAEP_* needs `key_id` (the raw RSA
    /// ciphertext does not name its key).
    pub fn decrypt(
        &self,
        who: Caller<'_>,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
    ) -> Result<Decrypted, KmsError> {
        if alg != EncryptionAlgorithm::SymmetricDefault {
            return self.decrypt_asymmetric(who, key_id, blob, ctx, alg);
        }
        self.refuse_asymmetric_for_symmetric(key_id)?;
        let r = self.open_blob(who, key_id, blob, ctx, Op::Decrypt);
        if who.call.via != Via::Api && self.inner.audit.is_some() {
            let blob_key = crypto::parse_blob(blob).ok().map(|p| p.key_id.to_string());
            let key_ref = key_id.map(str::to_string).or(blob_key);
            self.audit_crypto(who, Op::Decrypt, key_ref.as_deref(), ctx, None, &r, |d| {
                &d.key_arn
            });
        }
        r
    }

    /// ReEncrypt between any two ENCRYPT_DECRYPT keys (CopyObject re-wrapping a data key
    /// is one): (new ciphertext, source key ARN, destination key ARN).
    pub fn re_encrypt(
        &self,
        who: Caller<'_>,
        p: &ReEncryptParams<'_>,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let sym = EncryptionAlgorithm::SymmetricDefault;
        if p.source_algorithm != sym || p.destination_algorithm != sym {
            return self.re_encrypt_asymmetric(who, p);
        }
        self.refuse_asymmetric_for_symmetric(p.source_key_id)?;
        self.refuse_asymmetric_for_symmetric(Some(p.destination_key_id))?;
        let ReEncryptParams {
            ciphertext: blob,
            source_key_id,
            source_context: source_ctx,
            destination_key_id,
            destination_context: destination_ctx,
            ..
        } = *p;
        let r = (|| {
            let op = Op::ReEncryptFrom;
            let src = self.open_blob(who, source_key_id, blob, source_ctx, op)?;
            let op = Op::ReEncryptTo;
            let dst_ctx = Some(destination_ctx);
            let dst = self.key_for(who, destination_key_id, op, true, dst_ctx, None)?;
            let (v, k) = dst.current()?;
            let new_blob = k.encrypt(&dst.rec.id, v, &src.plaintext, destination_ctx)?;
            Ok((new_blob, src.key_arn, dst.arn.clone()))
        })();
        if who.call.via != Via::Api && self.inner.audit.is_some() {
            let src_key = crypto::parse_blob(blob)
                .ok()
                .map(|p| self.key_arn(&p.key_id));
            let mut resources: Vec<String> = src_key.into_iter().collect();
            resources.extend(
                self.find(destination_key_id, true)
                    .ok()
                    .map(|e| e.arn.clone()),
            );
            let params = CryptoParams {
                key_id: source_key_id.map(str::to_string),
                encryption_context: Some(source_ctx.clone()),
                destination_key_id: Some(destination_key_id.to_string()),
                destination_encryption_context: Some(destination_ctx.clone()),
                encryption_algorithm: "SYMMETRIC_DEFAULT",
                ..Default::default()
            };
            let err = r.as_ref().err();
            self.audit_event(who, Op::ReEncrypt, Params::Crypto(params), err, resources);
        }
        r
    }

    /// GenerateRandom: from sealgate's generator, or from a custom key store's token
    /// (which must be connected: CustomKeyStoreInvalidStateException).
    pub fn generate_random(
        &self,
        who: Caller<'_>,
        bytes: i64,
        custom_key_store_id: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.authorize_account(who, Op::GenerateRandom)?;
        constraints::range(bytes, "numberOfBytes", 1, 1024)?;
        match custom_key_store_id {
            Some(id) => self.random_from_store(id, bytes as usize),
            None => crypto::random_bytes(bytes as usize),
        }
    }
}
