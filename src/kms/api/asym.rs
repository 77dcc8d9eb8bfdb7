//! The KMS JSON operations of asymmetric and HMAC keys: Sign, Verify, GetPublicKey,
//! GenerateMac, VerifyMac, DeriveSharedSecret, GenerateDataKeyPair(WithoutPlaintext). Request members are
//! parsed here into the typed algorithms of `kms::asym`; the service does the rest.
//!
//! Invariant: messages, signatures, MACs and private keys are blob members of `Req`
//! (never serialised into the audit event) and response members listed in
//! `SECRET_MEMBERS` (removed from `responseElements`).

use serde_json::{Value, json};

use super::dispatch::{b64, unknown};
use super::request::{Req, required};
use crate::kms::asym::{self, KeyAgreementAlgorithm, MacAlgorithm, MessageType, SigningAlgorithm};
use crate::kms::caller::Caller;
use crate::kms::ops::Op;
use crate::kms::{EncryptionContext, Kms, KmsError};

fn names<T: Copy + std::fmt::Display>(v: &[T]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.iter().map(ToString::to_string).collect())
}

pub(super) fn dispatch(kms: &Kms, who: Caller<'_>, op: Op, mut r: Req) -> Result<Value, KmsError> {
    let key_id = required(r.key_id.take(), "keyId")?;
    match op {
        Op::Sign | Op::Verify => {
            let msg = required(r.message.take(), "message")?;
            let ty = MessageType::parse(r.message_type.as_deref())?;
            let alg = SigningAlgorithm::parse(&required(
                r.signing_algorithm.take(),
                "signingAlgorithm",
            )?)?;
            if op == Op::Sign {
                let (sig, arn) = kms.sign(who, &key_id, &msg.0, ty, alg)?;
                Ok(json!({"KeyId": arn, "Signature": b64(&sig), "SigningAlgorithm": alg}))
            } else {
                let sig = required(r.signature.take(), "signature")?;
                let arn = kms.verify(who, &key_id, &msg.0, ty, &sig.0, alg)?;
                Ok(json!({"KeyId": arn, "SignatureValid": true, "SigningAlgorithm": alg}))
            }
        }
        Op::GetPublicKey => {
            let p = kms.get_public_key(who, &key_id)?;
            let mut v = json!({
                "KeyId": p.key_arn,
                "PublicKey": b64(&p.public_key),
                "KeySpec": p.key_spec,
                "KeyUsage": p.key_usage,
            });
            if let Some(cmk) = p.key_spec.customer_master_key_spec() {
                v["CustomerMasterKeySpec"] = json!(cmk);
            }
            if let Some(a) = names(p.key_spec.key_agreement_algorithms(p.key_usage)) {
                v["KeyAgreementAlgorithms"] = json!(a);
            }
            if let Some(e) = names(p.key_spec.encryption_algorithms(p.key_usage)) {
                v["EncryptionAlgorithms"] = json!(e);
            }
            if let Some(s) = names(p.key_spec.signing_algorithms(p.key_usage)) {
                v["SigningAlgorithms"] = json!(s);
            }
            Ok(v)
        }
        Op::GenerateMac | Op::VerifyMac => {
            let msg = required(r.message.take(), "message")?;
            let alg = MacAlgorithm::parse(&required(r.mac_algorithm.take(), "macAlgorithm")?)?;
            if op == Op::GenerateMac {
                let (mac, arn) = kms.generate_mac(who, &key_id, &msg.0, alg)?;
                Ok(json!({"Mac": b64(&mac), "MacAlgorithm": alg, "KeyId": arn}))
            } else {
                let mac = required(r.mac.take(), "mac")?;
                let arn = kms.verify_mac(who, &key_id, &msg.0, &mac.0, alg)?;
                Ok(json!({"KeyId": arn, "MacValid": true, "MacAlgorithm": alg}))
            }
        }
        Op::DeriveSharedSecret => {
            let alg = KeyAgreementAlgorithm::parse(&required(
                r.key_agreement_algorithm.take(),
                "keyAgreementAlgorithm",
            )?)?;
            let peer = required(r.public_key.take(), "publicKey")?;
            let d = kms.derive_shared_secret(who, &key_id, alg, &peer.0)?;
            Ok(json!({
                "KeyId": d.key_arn,
                "SharedSecret": b64(&d.shared_secret),
                "KeyAgreementAlgorithm": alg,
                "KeyOrigin": d.key_origin,
            }))
        }
        Op::GenerateDataKeyPair | Op::GenerateDataKeyPairWithoutPlaintext => {
            let spec =
                asym::parse_key_pair_spec(&required(r.key_pair_spec.take(), "keyPairSpec")?)?;
            let empty = EncryptionContext::new();
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let with_plaintext = op == Op::GenerateDataKeyPair;
            let d = kms.generate_data_key_pair(who, &key_id, ctx, spec, with_plaintext)?;
            let mut v = json!({
                "PrivateKeyCiphertextBlob": b64(&d.private_key_ciphertext_blob),
                "PublicKey": b64(&d.public_key),
                "KeyId": d.key_arn,
                "KeyPairSpec": d.key_pair_spec,
            });
            if let Some(p) = &d.private_key_plaintext {
                v["PrivateKeyPlaintext"] = json!(b64(p));
            }
            Ok(v)
        }
        _ => Err(unknown(op.name())),
    }
}
