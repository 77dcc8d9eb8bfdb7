//! The symmetric cryptographic operations: Encrypt, GenerateDataKey (with and without
//! plaintext), Decrypt, ReEncrypt and GenerateRandom. Calls not made by the API layer
//! (which audits its own requests) write their audit event here.

use uuid::Uuid;
use zeroize::Zeroizing;

use super::Kms;
use crate::auth::Principal;
use crate::kms::access::{CallContext, Via};
use crate::kms::audit::{CryptoParams, Params};
use crate::kms::crypto::MAX_PLAINTEXT;
use crate::kms::ops::Op;
use crate::kms::{DataKey, Decrypted, EncryptionContext, KmsError, crypto};

impl Kms {
    pub fn encrypt(
        &self,
        caller: &Principal,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        self.encrypt_via(caller, &CallContext::default(), key_id, plaintext, ctx)
    }

    /// Encrypt (at most 4096 bytes): (blob, key ARN).
    pub fn encrypt_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
                return Err(KmsError::constraint(
                    format!("<{} bytes>", plaintext.len()),
                    "plaintext",
                    "Member must have length between 1 and 4096",
                ));
            }
            let e = self.key_for(caller, call, key_id, Op::Encrypt, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
            Ok((k.encrypt(&e.rec.id, v, plaintext, ctx)?, e.arn.clone()))
        })();
        self.audit_crypto(
            caller,
            call,
            Op::Encrypt,
            Some(key_id),
            ctx,
            None,
            &r,
            |r| &r.1,
        );
        r
    }

    pub(super) fn check_data_key_len(bytes: usize) -> Result<(), KmsError> {
        if !(1..=1024).contains(&bytes) {
            return Err(KmsError::constraint(
                bytes,
                "numberOfBytes",
                "Member must have value between 1 and 1024",
            ));
        }
        Ok(())
    }

    /// GenerateDataKey: a fresh random data key, plaintext and wrapped. Does not write
    /// the database.
    pub fn generate_data_key(
        &self,
        caller: &Principal,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<DataKey, KmsError> {
        self.generate_data_key_via(caller, &CallContext::default(), key_id, ctx, bytes)
    }

    /// GenerateDataKey with the call's context (the S3 path: `CallContext::s3(..)`).
    pub fn generate_data_key_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<DataKey, KmsError> {
        self.data_key(caller, call, key_id, ctx, bytes, Op::GenerateDataKey)
    }

    /// GenerateDataKeyWithoutPlaintext: (wrapped key, key ARN).
    pub fn generate_data_key_without_plaintext(
        &self,
        caller: &Principal,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let call = CallContext::default();
        self.generate_data_key_without_plaintext_via(caller, &call, key_id, ctx, bytes)
    }

    pub fn generate_data_key_without_plaintext_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let op = Op::GenerateDataKeyWithoutPlaintext;
        let dk = self.data_key(caller, call, key_id, ctx, bytes, op)?;
        Ok((dk.ciphertext_blob, dk.key_arn))
    }

    /// Both GenerateDataKey forms (`op` decides the permission and the event name).
    fn data_key(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
        op: Op,
    ) -> Result<DataKey, KmsError> {
        let r = (|| {
            Self::check_data_key_len(bytes)?;
            let e = self.key_for(caller, call, key_id, op, true, Some(ctx), None)?;
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
        self.audit_crypto(caller, call, op, Some(key_id), ctx, bytes, &r, |d| {
            &d.key_arn
        });
        r
    }

    pub(super) fn open_blob(
        &self,
        caller: &Principal,
        call: &CallContext,
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
        let e = match self.key_for(caller, call, &blob_key, op, false, Some(ctx), None) {
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

    /// Decrypt: the blob names its key; `key_id`, when given, must name the same key.
    pub fn decrypt(
        &self,
        caller: &Principal,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Decrypted, KmsError> {
        self.decrypt_via(caller, &CallContext::default(), key_id, blob, ctx)
    }

    /// Decrypt with the call's context (the S3 path: `CallContext::s3(..)`).
    pub fn decrypt_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Decrypted, KmsError> {
        let r = self.open_blob(caller, call, key_id, blob, ctx, Op::Decrypt);
        if call.via != Via::Api && self.inner.audit.is_some() {
            let blob_key = crypto::parse_blob(blob).ok().map(|p| p.key_id.to_string());
            let key_ref = key_id.map(str::to_string).or(blob_key);
            self.audit_crypto(
                caller,
                call,
                Op::Decrypt,
                key_ref.as_deref(),
                ctx,
                None,
                &r,
                |d| &d.key_arn,
            );
        }
        r
    }

    /// ReEncrypt: returns (new blob, source key ARN, destination key ARN).
    pub fn re_encrypt(
        &self,
        caller: &Principal,
        blob: &[u8],
        source_ctx: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let call = CallContext::default();
        self.re_encrypt_via(
            caller,
            &call,
            blob,
            source_ctx,
            source_key_id,
            destination_key_id,
            destination_ctx,
        )
    }

    /// ReEncrypt with the call's context (CopyObject re-wrapping a data key).
    #[allow(clippy::too_many_arguments)]
    pub fn re_encrypt_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        blob: &[u8],
        source_ctx: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let r = (|| {
            let op = Op::ReEncryptFrom;
            let src = self.open_blob(caller, call, source_key_id, blob, source_ctx, op)?;
            let op = Op::ReEncryptTo;
            let dst_ctx = Some(destination_ctx);
            let dst = self.key_for(caller, call, destination_key_id, op, true, dst_ctx, None)?;
            let (v, k) = dst.current()?;
            let new_blob = k.encrypt(&dst.rec.id, v, &src.plaintext, destination_ctx)?;
            Ok((new_blob, src.key_arn, dst.arn.clone()))
        })();
        if call.via != Via::Api && self.inner.audit.is_some() {
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
            self.audit_event(
                caller,
                call,
                Op::ReEncrypt,
                Params::Crypto(params),
                err,
                resources,
            );
        }
        r
    }

    pub fn generate_random(
        &self,
        caller: &Principal,
        bytes: i64,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.authorize_account(caller, Op::GenerateRandom)?;
        if !(1..=1024).contains(&bytes) {
            return Err(KmsError::constraint(
                bytes,
                "numberOfBytes",
                "Member must have value between 1 and 1024",
            ));
        }
        crypto::random_bytes(bytes as usize)
    }

    /// Number of stored material versions of a key (0 once destroyed); for tests/ops.
    pub fn stored_material_versions(&self, key_id: &Uuid) -> Result<usize, KmsError> {
        self.inner.store.material_count(*key_id)
    }
}
