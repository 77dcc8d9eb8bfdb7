//! The operations of RSA, ECC and HMAC keys: Encrypt/Decrypt/ReEncrypt with an
//! RSAES_OAEP_* `EncryptionAlgorithm` (handed over by `crypto_ops`), Sign/Verify,
//! GetPublicKey, GenerateMac/VerifyMac and GenerateDataKeyPair(WithoutPlaintext). (A
//! child of `service`: every key goes through the same `key_for` gate — policy, grants,
//! state table, key usage.)
//!
//! Invariants: algorithms are checked against the key's spec and usage before any key
//! is used; asymmetric ciphertexts are raw RSA-OAEP (as AWS returns them) and need the
//! key id and algorithm to decrypt; no message, signature, MAC, private key or plaintext
//! reaches an error or the audit log.

use serde_json::json;

use super::crypto_ops::check_plaintext;
use super::{Kms, ReEncryptParams};
use crate::kms::asym::{
    self, DataKeyPair, EncryptionAlgorithm, KeyAgreementAlgorithm, KeySpec, MacAlgorithm,
    MessageType, PublicKeyInfo, SharedSecret, SigningAlgorithm,
};
use crate::kms::audit::{CryptoParams, Params};
use crate::kms::caller::{Caller, Via};
use crate::kms::crypto::MAX_BLOB;
use crate::kms::ops::Op;
use crate::kms::{Decrypted, EncryptionContext, KmsError, constraints};

/// AWS does not take an encryption context with asymmetric keys.
fn no_context(ctx: &EncryptionContext, alg: EncryptionAlgorithm) -> Result<(), KmsError> {
    if ctx.is_empty() {
        return Ok(());
    }
    Err(KmsError::Validation(format!(
        "EncryptionContext is not supported with asymmetric KMS keys (EncryptionAlgorithm {alg})."
    )))
}

/// Signatures and MACs are `CiphertextType`: 1..=6144 bytes.
fn check_blob(b: &[u8], field: &str) -> Result<(), KmsError> {
    constraints::length(b.len(), None, field, 1, MAX_BLOB)
}

impl Kms {
    // ------------------------------------------------------------ encrypt / decrypt

    /// Encrypt with RSAES_OAEP_* under an RSA ENCRYPT_DECRYPT key (`Kms::encrypt`).
    pub(super) fn encrypt_asymmetric(
        &self,
        who: Caller<'_>,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            check_plaintext(plaintext)?;
            self.seal_any(who, key_id, plaintext, ctx, alg, Op::Encrypt)
        })();
        self.audit_rsa(who, Op::Encrypt, Some(key_id), alg, &r, |r| &r.1);
        r
    }

    /// Decrypt with RSAES_OAEP_* (`Kms::decrypt`).
    pub(super) fn decrypt_asymmetric(
        &self,
        who: Caller<'_>,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
    ) -> Result<Decrypted, KmsError> {
        let r = self.open_any(who, key_id, blob, ctx, alg, Op::Decrypt);
        self.audit_rsa(who, Op::Decrypt, key_id, alg, &r, |d| &d.key_arn);
        r
    }

    /// ReEncrypt where either side uses RSAES_OAEP_* (`Kms::re_encrypt`).
    pub(super) fn re_encrypt_asymmetric(
        &self,
        who: Caller<'_>,
        p: &ReEncryptParams<'_>,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let r = (|| {
            let src = self.open_any(
                who,
                p.source_key_id,
                p.ciphertext,
                p.source_context,
                p.source_algorithm,
                Op::ReEncryptFrom,
            )?;
            let (blob, dst_arn) = self.seal_any(
                who,
                p.destination_key_id,
                &src.plaintext,
                p.destination_context,
                p.destination_algorithm,
                Op::ReEncryptTo,
            )?;
            Ok((blob, src.key_arn, dst_arn))
        })();
        if who.call.via != Via::Api && self.audit_enabled() {
            let params = CryptoParams {
                key_id: p.source_key_id.map(str::to_string),
                destination_key_id: Some(p.destination_key_id.to_string()),
                encryption_algorithm: p.destination_algorithm.as_str(),
                ..Default::default()
            };
            let resources = match &r {
                Ok((_, s, d)) => vec![s.clone(), d.clone()],
                Err(_) => Vec::new(),
            };
            let err = r.as_ref().err();
            let params = Params::Crypto(params);
            self.audit_event(who, Op::ReEncrypt, params, err, resources);
        }
        r
    }

    /// A SYMMETRIC_DEFAULT request naming a non-symmetric key: AWS's InvalidKeyUsage.
    pub(super) fn refuse_asymmetric_for_symmetric(
        &self,
        key_id: Option<&str>,
    ) -> Result<(), KmsError> {
        if let Some(e) = key_id.and_then(|k| self.find(k, true).ok())
            && !e.rec.key_spec.is_symmetric()
        {
            return Err(KmsError::InvalidKeyUsage(format!(
                "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec {}.",
                e.rec.key_spec
            )));
        }
        Ok(())
    }

    /// Encrypts `pt` under `key_id` for `op` (Encrypt or ReEncryptTo) with `alg`.
    #[allow(clippy::too_many_arguments)]
    fn seal_any(
        &self,
        who: Caller<'_>,
        key_id: &str,
        pt: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
        op: Op,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let e = self.key_for(who, key_id, op, true, Some(ctx), None)?;
        asym::check_encryption_algorithm(e.rec.key_spec, e.rec.key_usage, alg)?;
        if alg == EncryptionAlgorithm::SymmetricDefault {
            let (v, k) = e.current()?;
            return Ok((k.encrypt(&e.rec.id, v, pt, ctx)?, e.arn.clone()));
        }
        no_context(ctx, alg)?;
        let (_, m) = e.current_material()?;
        Ok((m.rsa_encrypt(e.rec.key_spec, alg, pt)?, e.arn.clone()))
    }

    /// Decrypts `blob` for `op` (Decrypt or ReEncryptFrom) with `alg`.
    #[allow(clippy::too_many_arguments)]
    fn open_any(
        &self,
        who: Caller<'_>,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
        op: Op,
    ) -> Result<Decrypted, KmsError> {
        if alg == EncryptionAlgorithm::SymmetricDefault {
            self.refuse_asymmetric_for_symmetric(key_id)?;
            return self.open_blob(who, key_id, blob, ctx, op);
        }
        let key_id = key_id.ok_or_else(|| {
            KmsError::Validation(format!(
                "KeyId is required to decrypt with an asymmetric KMS key (EncryptionAlgorithm {alg})."
            ))
        })?;
        no_context(ctx, alg)?;
        let e = self.key_for(who, key_id, op, true, Some(ctx), None)?;
        asym::check_encryption_algorithm(e.rec.key_spec, e.rec.key_usage, alg)?;
        let (_, m) = e.current_material()?;
        Ok(Decrypted {
            plaintext: m.rsa_decrypt(alg, blob)?,
            key_arn: e.arn.clone(),
        })
    }

    // ------------------------------------------------------------ sign / verify

    /// Sign with a SIGN_VERIFY key: (signature, key ARN). `msg` is the message (RAW,
    /// 1..=4096 bytes) or its digest (DIGEST, the algorithm's hash length).
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        who: Caller<'_>,
        key_id: &str,
        msg: &[u8],
        ty: MessageType,
        alg: SigningAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            asym::check_message(msg, ty, Some(alg))?;
            let e = self.key_for(who, key_id, Op::Sign, true, None, None)?;
            asym::check_signing_algorithm(e.rec.key_spec, e.rec.key_usage, alg)?;
            let (_, m) = e.current_material()?;
            Ok((m.sign(alg, ty, msg)?, e.arn.clone()))
        })();
        let params = json!({"keyId": key_id, "messageType": ty, "signingAlgorithm": alg});
        self.audit_asym(who, Op::Sign, key_id, params, &r, |r| &r.1);
        r
    }

    /// Verify: Ok(key ARN) when `sig` is valid, KMSInvalidSignatureException when not.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        who: Caller<'_>,
        key_id: &str,
        msg: &[u8],
        ty: MessageType,
        sig: &[u8],
        alg: SigningAlgorithm,
    ) -> Result<String, KmsError> {
        let r = (|| {
            asym::check_message(msg, ty, Some(alg))?;
            check_blob(sig, "signature")?;
            let e = self.key_for(who, key_id, Op::Verify, true, None, None)?;
            asym::check_signing_algorithm(e.rec.key_spec, e.rec.key_usage, alg)?;
            let (_, m) = e.current_material()?;
            if !m.verify(alg, ty, msg, sig)? {
                return Err(KmsError::SignatureMismatch(format!(
                    "The signature does not verify with {} and {alg}.",
                    e.arn
                )));
            }
            Ok(e.arn.clone())
        })();
        let params = json!({"keyId": key_id, "messageType": ty, "signingAlgorithm": alg});
        self.audit_asym(who, Op::Verify, key_id, params, &r, |a| a);
        r
    }

    /// GetPublicKey of an RSA or ECC key (DER SubjectPublicKeyInfo).
    pub fn get_public_key(&self, who: Caller<'_>, key_id: &str) -> Result<PublicKeyInfo, KmsError> {
        let r = (|| {
            let e = self.key_for(who, key_id, Op::GetPublicKey, true, None, None)?;
            let (_, m) = e.current_material()?;
            let public_key = m
                .public_key_der()
                .ok_or_else(|| KmsError::Internal(format!("{} has no public key", e.arn)))?
                .to_vec();
            Ok(PublicKeyInfo {
                key_arn: e.arn.clone(),
                public_key,
                key_spec: e.rec.key_spec,
                key_usage: e.rec.key_usage,
            })
        })();
        let params = json!({"keyId": key_id});
        self.audit_asym(who, Op::GetPublicKey, key_id, params, &r, |p| &p.key_arn);
        r
    }

    // ------------------------------------------------------------ key agreement

    /// DeriveSharedSecret with a KEY_AGREEMENT key: ECDH with the peer's DER
    /// SubjectPublicKeyInfo (`peer`), the raw shared secret.
    pub fn derive_shared_secret(
        &self,
        who: Caller<'_>,
        key_id: &str,
        alg: KeyAgreementAlgorithm,
        peer: &[u8],
    ) -> Result<SharedSecret, KmsError> {
        let r = (|| {
            constraints::length(peer.len(), None, "publicKey", 1, 8192)?;
            let e = self.key_for(who, key_id, Op::DeriveSharedSecret, true, None, None)?;
            let (_, m) = e.current_material()?;
            Ok(SharedSecret {
                shared_secret: m.derive_shared_secret(peer)?,
                key_arn: e.arn.clone(),
                key_origin: e.rec.origin.as_str(),
            })
        })();
        let params = json!({"keyId": key_id, "keyAgreementAlgorithm": alg});
        self.audit_asym(who, Op::DeriveSharedSecret, key_id, params, &r, |d| {
            &d.key_arn
        });
        r
    }

    // ------------------------------------------------------------ HMAC

    /// GenerateMac with a GENERATE_VERIFY_MAC key: (MAC, key ARN).
    pub fn generate_mac(
        &self,
        who: Caller<'_>,
        key_id: &str,
        msg: &[u8],
        alg: MacAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            asym::check_message(msg, MessageType::Raw, None)?;
            let e = self.key_for(who, key_id, Op::GenerateMac, true, None, None)?;
            asym::check_mac_algorithm(e.rec.key_spec, alg)?;
            let (_, m) = e.current_material()?;
            Ok((m.mac(msg)?, e.arn.clone()))
        })();
        let params = json!({"keyId": key_id, "macAlgorithm": alg});
        self.audit_asym(who, Op::GenerateMac, key_id, params, &r, |r| &r.1);
        r
    }

    /// VerifyMac: Ok(key ARN) when `mac` is valid, KMSInvalidMacException when not.
    pub fn verify_mac(
        &self,
        who: Caller<'_>,
        key_id: &str,
        msg: &[u8],
        mac: &[u8],
        alg: MacAlgorithm,
    ) -> Result<String, KmsError> {
        let r = (|| {
            asym::check_message(msg, MessageType::Raw, None)?;
            check_blob(mac, "mac")?;
            let e = self.key_for(who, key_id, Op::VerifyMac, true, None, None)?;
            asym::check_mac_algorithm(e.rec.key_spec, alg)?;
            let (_, m) = e.current_material()?;
            if !m.verify_mac(msg, mac)? {
                return Err(KmsError::MacMismatch(format!(
                    "The MAC does not verify with {} and {alg}.",
                    e.arn
                )));
            }
            Ok(e.arn.clone())
        })();
        let params = json!({"keyId": key_id, "macAlgorithm": alg});
        self.audit_asym(who, Op::VerifyMac, key_id, params, &r, |a| a);
        r
    }

    // ------------------------------------------------------------ data key pairs

    /// GenerateDataKeyPair (`with_plaintext`) or ...WithoutPlaintext: a fresh RSA/ECC
    /// key pair whose PKCS#8 private key is encrypted under the symmetric key `key_id`
    /// with `ctx` (an ordinary ciphertext blob that Decrypt opens).
    pub fn generate_data_key_pair(
        &self,
        who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
        spec: KeySpec,
        with_plaintext: bool,
    ) -> Result<DataKeyPair, KmsError> {
        let op = if with_plaintext {
            Op::GenerateDataKeyPair
        } else {
            Op::GenerateDataKeyPairWithoutPlaintext
        };
        let r = (|| {
            if !spec.is_asymmetric() {
                return Err(KmsError::constraint(
                    spec,
                    "keyPairSpec",
                    "Member must be an RSA or ECC key pair spec",
                ));
            }
            let e = self.key_for(who, key_id, op, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
            super::gate::stop_if_dry_run(who)?;
            self.throttle(who, super::quota::key_cost(spec))?;
            let pair = asym::generate_key_pair(spec)?;
            let blob = k.encrypt(&e.rec.id, v, &pair.private_pkcs8, ctx)?;
            Ok(DataKeyPair {
                private_key_plaintext: with_plaintext.then_some(pair.private_pkcs8),
                private_key_ciphertext_blob: blob,
                public_key: pair.public_der,
                key_pair_spec: spec,
                key_arn: e.arn.clone(),
            })
        })();
        let params = json!({"keyId": key_id, "keyPairSpec": spec, "encryptionContext": ctx});
        self.audit_asym(who, op, key_id, params, &r, |d| &d.key_arn);
        r
    }

    // ------------------------------------------------------------ audit

    /// `audit_call` of a Sign/Verify/Mac/GetPublicKey/key-pair call.
    #[allow(clippy::too_many_arguments)]
    fn audit_asym<T>(
        &self,
        who: Caller<'_>,
        op: Op,
        key_ref: &str,
        params: serde_json::Value,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        let params = Params::Json(params);
        self.audit_call(who, op, Some(key_ref), params, r, arn);
    }

    /// `audit_call` of an RSA Encrypt/Decrypt (no context: not allowed).
    #[allow(clippy::too_many_arguments)]
    fn audit_rsa<T>(
        &self,
        who: Caller<'_>,
        op: Op,
        key_ref: Option<&str>,
        alg: EncryptionAlgorithm,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        let params = Params::Crypto(CryptoParams {
            key_id: key_ref.map(str::to_string),
            encryption_algorithm: alg.as_str(),
            ..Default::default()
        });
        self.audit_call(who, op, key_ref, params, r, arn);
    }
}
