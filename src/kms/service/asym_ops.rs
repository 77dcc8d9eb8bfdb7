//! The operations of RSA, ECC and HMAC keys: Encrypt/Decrypt/ReEncrypt with an
//! `EncryptionAlgorithm`, Sign/Verify, GetPublicKey, GenerateMac/VerifyMac and
//! GenerateDataKeyPair(WithoutPlaintext). (A child of `core`: every key goes through the
//! same `key_for` gate — policy, grants, state table, key usage.)
//!
//! Invariants: algorithms are checked against the key's spec and usage before any key
//! is used; asymmetric ciphertexts are raw RSA-OAEP (as AWS returns them) and need the
//! key id and algorithm to decrypt; no message, signature, MAC, private key or plaintext
//! reaches an error or the audit log.

use serde_json::json;

use super::Kms;
use crate::auth::Principal;
use crate::kms::access::{CallContext, Via};
use crate::kms::asym::{
    self, DataKeyPair, EncryptionAlgorithm, KeySpec, MacAlgorithm, MessageType, PublicKeyInfo,
    SigningAlgorithm,
};
use crate::kms::audit::{CryptoParams, Params};
use crate::kms::crypto::{MAX_BLOB, MAX_PLAINTEXT};
use crate::kms::ops::Op;
use crate::kms::{Decrypted, EncryptionContext, KmsError};

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

/// AWS does not take an encryption context with asymmetric keys.
fn no_context(ctx: &EncryptionContext, alg: EncryptionAlgorithm) -> Result<(), KmsError> {
    if ctx.is_empty() {
        return Ok(());
    }
    Err(KmsError::Validation(format!(
        "EncryptionContext is not supported with asymmetric KMS keys (EncryptionAlgorithm {alg})."
    )))
}

fn check_plaintext(pt: &[u8]) -> Result<(), KmsError> {
    if pt.is_empty() || pt.len() > MAX_PLAINTEXT {
        return Err(KmsError::constraint(
            format!("<{} bytes>", pt.len()),
            "plaintext",
            "Member must have length between 1 and 4096",
        ));
    }
    Ok(())
}

/// Signatures and MACs are `CiphertextType`: 1..=6144 bytes.
fn check_blob(b: &[u8], field: &str) -> Result<(), KmsError> {
    if b.is_empty() || b.len() > MAX_BLOB {
        return Err(KmsError::constraint(
            format!("<{} bytes>", b.len()),
            field,
            "Member must have length between 1 and 6144",
        ));
    }
    Ok(())
}

impl Kms {
    // ------------------------------------------------------------ encrypt / decrypt

    /// Encrypt with an explicit algorithm: SYMMETRIC_DEFAULT is `encrypt_via`; RSAES_OAEP_*
    /// encrypts under an RSA ENCRYPT_DECRYPT key (raw OAEP ciphertext, no context).
    #[allow(clippy::too_many_arguments)]
    pub fn encrypt_with(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        if alg == EncryptionAlgorithm::SymmetricDefault {
            return self.encrypt_via(caller, call, key_id, plaintext, ctx);
        }
        let r = (|| {
            check_plaintext(plaintext)?;
            self.seal_any(caller, call, key_id, plaintext, ctx, alg, Op::Encrypt)
        })();
        self.audit_rsa(caller, call, Op::Encrypt, Some(key_id), alg, &r, |r| &r.1);
        r
    }

    /// Decrypt with an explicit algorithm. RSAES_OAEP_* needs `key_id` (the raw RSA
    /// ciphertext does not name its key).
    #[allow(clippy::too_many_arguments)]
    pub fn decrypt_with(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
    ) -> Result<Decrypted, KmsError> {
        if alg == EncryptionAlgorithm::SymmetricDefault {
            self.refuse_asymmetric_for_symmetric(key_id)?;
            return self.decrypt_via(caller, call, key_id, blob, ctx);
        }
        let r = self.open_any(caller, call, key_id, blob, ctx, alg, Op::Decrypt);
        self.audit_rsa(caller, call, Op::Decrypt, key_id, alg, &r, |d| &d.key_arn);
        r
    }

    /// ReEncrypt between any two ENCRYPT_DECRYPT keys: (new ciphertext, source key ARN,
    /// destination key ARN).
    pub fn re_encrypt_with(
        &self,
        caller: &Principal,
        call: &CallContext,
        p: &ReEncryptParams<'_>,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let sym = EncryptionAlgorithm::SymmetricDefault;
        if p.source_algorithm == sym && p.destination_algorithm == sym {
            self.refuse_asymmetric_for_symmetric(p.source_key_id)?;
            self.refuse_asymmetric_for_symmetric(Some(p.destination_key_id))?;
            return self.re_encrypt_via(
                caller,
                call,
                p.ciphertext,
                p.source_context,
                p.source_key_id,
                p.destination_key_id,
                p.destination_context,
            );
        }
        let r = (|| {
            let src = self.open_any(
                caller,
                call,
                p.source_key_id,
                p.ciphertext,
                p.source_context,
                p.source_algorithm,
                Op::ReEncryptFrom,
            )?;
            let (blob, dst_arn) = self.seal_any(
                caller,
                call,
                p.destination_key_id,
                &src.plaintext,
                p.destination_context,
                p.destination_algorithm,
                Op::ReEncryptTo,
            )?;
            Ok((blob, src.key_arn, dst_arn))
        })();
        if call.via != Via::Api && self.audit_enabled() {
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
            self.audit_event(caller, call, Op::ReEncrypt, params, err, resources);
        }
        r
    }

    /// A SYMMETRIC_DEFAULT request naming a non-symmetric key: AWS's InvalidKeyUsage.
    fn refuse_asymmetric_for_symmetric(&self, key_id: Option<&str>) -> Result<(), KmsError> {
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
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        pt: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
        op: Op,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let e = self.key_for(caller, call, key_id, op, true, Some(ctx), None)?;
        asym::check_encryption_algorithm(&e.rec, alg)?;
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
        caller: &Principal,
        call: &CallContext,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        alg: EncryptionAlgorithm,
        op: Op,
    ) -> Result<Decrypted, KmsError> {
        if alg == EncryptionAlgorithm::SymmetricDefault {
            self.refuse_asymmetric_for_symmetric(key_id)?;
            return self.open_blob(caller, call, key_id, blob, ctx, op);
        }
        let key_id = key_id.ok_or_else(|| {
            KmsError::Validation(format!(
                "KeyId is required to decrypt with an asymmetric KMS key (EncryptionAlgorithm {alg})."
            ))
        })?;
        no_context(ctx, alg)?;
        let e = self.key_for(caller, call, key_id, op, true, Some(ctx), None)?;
        asym::check_encryption_algorithm(&e.rec, alg)?;
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
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        msg: &[u8],
        ty: MessageType,
        alg: SigningAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            asym::check_message(msg, ty, Some(alg))?;
            let e = self.key_for(caller, call, key_id, Op::Sign, true, None, None)?;
            asym::check_signing_algorithm(&e.rec, alg)?;
            let (_, m) = e.current_material()?;
            Ok((m.sign(alg, ty, msg)?, e.arn.clone()))
        })();
        let params = json!({"keyId": key_id, "messageType": ty, "signingAlgorithm": alg});
        self.audit_asym(caller, call, Op::Sign, key_id, params, &r, |r| &r.1);
        r
    }

    /// Verify: Ok(key ARN) when `sig` is valid, KMSInvalidSignatureException when not.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        msg: &[u8],
        ty: MessageType,
        sig: &[u8],
        alg: SigningAlgorithm,
    ) -> Result<String, KmsError> {
        let r = (|| {
            asym::check_message(msg, ty, Some(alg))?;
            check_blob(sig, "signature")?;
            let e = self.key_for(caller, call, key_id, Op::Verify, true, None, None)?;
            asym::check_signing_algorithm(&e.rec, alg)?;
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
        self.audit_asym(caller, call, Op::Verify, key_id, params, &r, |a| a);
        r
    }

    /// GetPublicKey of an RSA or ECC key (DER SubjectPublicKeyInfo).
    pub fn get_public_key(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
    ) -> Result<PublicKeyInfo, KmsError> {
        let r = (|| {
            let e = self.key_for(caller, call, key_id, Op::GetPublicKey, true, None, None)?;
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
        self.audit_asym(caller, call, Op::GetPublicKey, key_id, params, &r, |p| {
            &p.key_arn
        });
        r
    }

    // ------------------------------------------------------------ HMAC

    /// GenerateMac with a GENERATE_VERIFY_MAC key: (MAC, key ARN).
    pub fn generate_mac(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        msg: &[u8],
        alg: MacAlgorithm,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            asym::check_message(msg, MessageType::Raw, None)?;
            let e = self.key_for(caller, call, key_id, Op::GenerateMac, true, None, None)?;
            asym::check_mac_algorithm(&e.rec, alg)?;
            let (_, m) = e.current_material()?;
            Ok((m.mac(msg)?, e.arn.clone()))
        })();
        let params = json!({"keyId": key_id, "macAlgorithm": alg});
        self.audit_asym(caller, call, Op::GenerateMac, key_id, params, &r, |r| &r.1);
        r
    }

    /// VerifyMac: Ok(key ARN) when `mac` is valid, KMSInvalidMacException when not.
    pub fn verify_mac(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        msg: &[u8],
        mac: &[u8],
        alg: MacAlgorithm,
    ) -> Result<String, KmsError> {
        let r = (|| {
            asym::check_message(msg, MessageType::Raw, None)?;
            check_blob(mac, "mac")?;
            let e = self.key_for(caller, call, key_id, Op::VerifyMac, true, None, None)?;
            asym::check_mac_algorithm(&e.rec, alg)?;
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
        self.audit_asym(caller, call, Op::VerifyMac, key_id, params, &r, |a| a);
        r
    }

    // ------------------------------------------------------------ data key pairs

    /// GenerateDataKeyPair (`with_plaintext`) or ...WithoutPlaintext: a fresh RSA/ECC
    /// key pair whose PKCS#8 private key is encrypted under the symmetric key `key_id`
    /// with `ctx` (an ordinary ciphertext blob that Decrypt opens).
    pub fn generate_data_key_pair(
        &self,
        caller: &Principal,
        call: &CallContext,
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
            let e = self.key_for(caller, call, key_id, op, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
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
        self.audit_asym(caller, call, op, key_id, params, &r, |d| &d.key_arn);
        r
    }

    // ------------------------------------------------------------ audit

    /// The audit event of an in-process call (the API layer records its own).
    #[allow(clippy::too_many_arguments)]
    fn audit_in_process<T>(
        &self,
        caller: &Principal,
        call: &CallContext,
        op: Op,
        key_ref: Option<&str>,
        params: Params,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        if call.via == Via::Api || !self.audit_enabled() {
            return;
        }
        let resources = match r {
            Ok(v) => vec![arn(v).clone()],
            Err(_) => key_ref
                .and_then(|k| self.resolve_arn(k))
                .into_iter()
                .collect(),
        };
        let err = r.as_ref().err();
        self.audit_event(caller, call, op, params, err, resources);
    }

    /// `audit_in_process` of a Sign/Verify/Mac/GetPublicKey/key-pair call.
    #[allow(clippy::too_many_arguments)]
    fn audit_asym<T>(
        &self,
        caller: &Principal,
        call: &CallContext,
        op: Op,
        key_ref: &str,
        params: serde_json::Value,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        let params = Params::Json(params);
        self.audit_in_process(caller, call, op, Some(key_ref), params, r, arn);
    }

    /// `audit_in_process` of an RSA Encrypt/Decrypt (no context: not allowed).
    #[allow(clippy::too_many_arguments)]
    fn audit_rsa<T>(
        &self,
        caller: &Principal,
        call: &CallContext,
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
        self.audit_in_process(caller, call, op, key_ref, params, r, arn);
    }
}
