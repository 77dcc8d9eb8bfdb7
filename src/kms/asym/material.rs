//! The in-memory key material of every kind (AES-256-GCM, RSA, ECDSA, HMAC, Ed25519,
//! ML-DSA, ECDH), the sealing format of each, and the data key pairs of
//! GenerateDataKeyPair. Sealed forms: AES/HMAC key bytes, PKCS#8 DER (RSA, ECC, Ed25519,
//! ECDH), the 32-byte seed (ML-DSA).

use std::fmt;

use aws_lc_rs::digest::Digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ParsedPublicKey, RsaKeyPair};
use zeroize::Zeroizing;

use super::ecdh::EcdhKey;
use super::ed25519::Ed25519Key;
use super::mldsa::MlDsaKey;
use super::{
    EncryptionAlgorithm, KeySpec, KeyUsageType, MessageType, SigningAlgorithm, enum_error,
    incompatible, unsupported,
};
use crate::kms::KmsError;
use crate::kms::crypto::{self, BackingKey, KEY_LEN};

fn internal(what: &str) -> KmsError {
    KmsError::Internal(format!("{what} failed"))
}

/// One RSA key: signing key pair, OAEP keys and the parsed public key per signing
/// algorithm (parsed once, so Verify does not re-parse).
pub struct RsaKey {
    signer: RsaKeyPair,
    decrypter: OaepPrivateDecryptingKey,
    encrypter: OaepPublicEncryptingKey,
    verifiers: Vec<(SigningAlgorithm, ParsedPublicKey)>,
    public_der: Vec<u8>,
}

pub struct EccKey {
    signer: EcdsaKeyPair,
    verifier: ParsedPublicKey,
    public_der: Vec<u8>,
}

/// One version of a KMS key's material, ready to use, of whichever kind its spec says.
pub enum KeyMaterial {
    Aes(BackingKey),
    Rsa(Box<RsaKey>),
    Ecc(Box<EccKey>),
    Hmac(Box<hmac::Key>),
    Ed25519(Box<Ed25519Key>),
    MlDsa(Box<MlDsaKey>),
    /// An ECC NIST key with KeyUsage KEY_AGREEMENT.
    Ecdh(Box<EcdhKey>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            KeyMaterial::Aes(_) => "Aes",
            KeyMaterial::Rsa(_) => "Rsa",
            KeyMaterial::Ecc(_) => "Ecc",
            KeyMaterial::Hmac(_) => "Hmac",
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::MlDsa(_) => "MlDsa",
            KeyMaterial::Ecdh(_) => "Ecdh",
        };
        write!(f, "KeyMaterial::{kind}(<redacted>)")
    }
}

impl KeyMaterial {
    /// Fresh material for a key of `spec` and `usage`: the usable key and the bytes to
    /// seal (see the module doc), which the caller seals and drops.
    pub fn generate(
        spec: KeySpec,
        usage: KeyUsageType,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), KmsError> {
        if spec.is_ed25519() {
            let (k, raw) = Ed25519Key::generate()?;
            return Ok((KeyMaterial::Ed25519(Box::new(k)), raw));
        }
        if spec.is_ml_dsa() {
            let (k, raw) = MlDsaKey::generate(spec)?;
            return Ok((KeyMaterial::MlDsa(Box::new(k)), raw));
        }
        if usage == KeyUsageType::KeyAgreement {
            let (k, raw) = EcdhKey::generate(spec)?;
            return Ok((KeyMaterial::Ecdh(Box::new(k)), raw));
        }
        let raw = if let Some(size) = spec.rsa_size() {
            let kp = RsaKeyPair::generate(size).map_err(|_| internal("RSA key generation"))?;
            let der = kp.as_der().map_err(|_| internal("RSA key encoding"))?;
            Zeroizing::new(der.as_ref().to_vec())
        } else if let Some((alg, _)) = spec.ecdsa() {
            let kp = EcdsaKeyPair::generate(alg).map_err(|_| internal("EC key generation"))?;
            let doc = kp.to_pkcs8v1().map_err(|_| internal("EC key encoding"))?;
            Zeroizing::new(doc.as_ref().to_vec())
        } else if let Some((_, len)) = spec.hmac() {
            crypto::random_bytes(len)?
        } else {
            crypto::random_bytes(KEY_LEN)?
        };
        Ok((Self::from_raw(spec, usage, &raw)?, raw))
    }

    /// Material from its unsealed bytes (see `generate`).
    pub fn from_raw(spec: KeySpec, usage: KeyUsageType, raw: &[u8]) -> Result<Self, KmsError> {
        let corrupt = || KmsError::Internal(format!("stored {spec} key material is invalid"));
        if spec.is_ed25519() {
            return Ok(KeyMaterial::Ed25519(Box::new(Ed25519Key::from_pkcs8(raw)?)));
        }
        if spec.is_ml_dsa() {
            return Ok(KeyMaterial::MlDsa(Box::new(MlDsaKey::from_seed(
                spec, raw,
            )?)));
        }
        if usage == KeyUsageType::KeyAgreement {
            return Ok(KeyMaterial::Ecdh(Box::new(EcdhKey::from_pkcs8(spec, raw)?)));
        }
        if spec.is_rsa() {
            let signer = RsaKeyPair::from_pkcs8(raw).map_err(|_| corrupt())?;
            let private = PrivateDecryptingKey::from_pkcs8(raw).map_err(|_| corrupt())?;
            let encrypter =
                OaepPublicEncryptingKey::new(private.public_key()).map_err(|_| corrupt())?;
            let decrypter = OaepPrivateDecryptingKey::new(private).map_err(|_| corrupt())?;
            let public = signer.public_key();
            let public_der = public.as_der().map_err(|_| corrupt())?.as_ref().to_vec();
            let verifiers = KeySpec::Rsa2048
                .signing_algorithms(KeyUsageType::SignVerify)
                .iter()
                .map(|a| {
                    let params = a.rsa_verification().ok_or_else(corrupt)?;
                    let k = ParsedPublicKey::new(params, public.as_ref()).map_err(|_| corrupt())?;
                    Ok((*a, k))
                })
                .collect::<Result<_, KmsError>>()?;
            return Ok(KeyMaterial::Rsa(Box::new(RsaKey {
                signer,
                decrypter,
                encrypter,
                verifiers,
                public_der,
            })));
        }
        if let Some((sign_alg, verify_alg)) = spec.ecdsa() {
            let signer = EcdsaKeyPair::from_pkcs8(sign_alg, raw).map_err(|_| corrupt())?;
            let public = signer.public_key();
            let public_der = public.as_der().map_err(|_| corrupt())?.as_ref().to_vec();
            let verifier =
                ParsedPublicKey::new(verify_alg, public.as_ref()).map_err(|_| corrupt())?;
            return Ok(KeyMaterial::Ecc(Box::new(EccKey {
                signer,
                verifier,
                public_der,
            })));
        }
        if let Some((alg, len)) = spec.hmac() {
            if raw.len() != len {
                return Err(corrupt());
            }
            return Ok(KeyMaterial::Hmac(Box::new(hmac::Key::new(alg, raw))));
        }
        Ok(KeyMaterial::Aes(BackingKey::from_material(raw)?))
    }

    /// The AES key of a SYMMETRIC_DEFAULT key; anything else cannot do symmetric
    /// encryption (AWS's message for SYMMETRIC_DEFAULT on another spec).
    pub fn aes(&self, spec: KeySpec) -> Result<&BackingKey, KmsError> {
        match self {
            KeyMaterial::Aes(k) => Ok(k),
            _ => Err(incompatible("SYMMETRIC_DEFAULT", spec)),
        }
    }

    /// DER SubjectPublicKeyInfo of an asymmetric key.
    pub fn public_key_der(&self) -> Option<&[u8]> {
        match self {
            KeyMaterial::Rsa(k) => Some(&k.public_der),
            KeyMaterial::Ecc(k) => Some(&k.public_der),
            KeyMaterial::Ed25519(k) => Some(k.public_der()),
            KeyMaterial::MlDsa(k) => Some(k.public_der()),
            KeyMaterial::Ecdh(k) => Some(k.public_der()),
            KeyMaterial::Aes(_) | KeyMaterial::Hmac(_) => None,
        }
    }

    /// DeriveSharedSecret: ECDH with the peer's DER SubjectPublicKeyInfo.
    pub fn derive_shared_secret(&self, peer_spki: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        match self {
            KeyMaterial::Ecdh(k) => k.derive(peer_spki),
            _ => Err(internal("key agreement with a non-KEY_AGREEMENT key")),
        }
    }

    fn rsa(&self) -> Result<&RsaKey, KmsError> {
        match self {
            KeyMaterial::Rsa(k) => Ok(k),
            _ => Err(KmsError::Internal("not an RSA key".into())),
        }
    }

    /// Largest plaintext RSA-OAEP with `alg` takes under this key (AWS's limits:
    /// modulus − 2·hash − 2, e.g. 190 bytes for RSA_2048 with SHA-256).
    pub fn max_rsa_plaintext(&self, alg: EncryptionAlgorithm) -> Result<usize, KmsError> {
        let oaep = alg.oaep().ok_or_else(|| internal("OAEP algorithm"))?;
        Ok(self.rsa()?.encrypter.max_plaintext_size(oaep))
    }

    /// RSA-OAEP encryption: the raw ciphertext (modulus length), as AWS returns it.
    pub fn rsa_encrypt(
        &self,
        spec: KeySpec,
        alg: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let max = self.max_rsa_plaintext(alg)?;
        if plaintext.len() > max {
            return Err(KmsError::Validation(format!(
                "Plaintext of {} bytes is too large for {alg} with key spec {spec}: at most {max} bytes.",
                plaintext.len()
            )));
        }
        let k = self.rsa()?;
        let oaep = alg.oaep().ok_or_else(|| internal("OAEP algorithm"))?;
        let mut out = vec![0u8; k.encrypter.ciphertext_size()];
        let n = k
            .encrypter
            .encrypt(oaep, plaintext, &mut out, None)
            .map_err(|_| internal("RSA encryption"))?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// RSA-OAEP decryption; any failure is InvalidCiphertextException.
    pub fn rsa_decrypt(
        &self,
        alg: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let k = self.rsa()?;
        let oaep = alg.oaep().ok_or_else(|| internal("OAEP algorithm"))?;
        if ciphertext.len() != k.decrypter.key_size_bytes() {
            return Err(crypto::invalid_ciphertext());
        }
        let mut out = Zeroizing::new(vec![0u8; k.decrypter.min_output_size()]);
        let n = k
            .decrypter
            .decrypt(oaep, ciphertext, &mut out, None)
            .map_err(|_| crypto::invalid_ciphertext())?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// Sign (RSA PKCS#1 v1.5 / PSS, DER-encoded ECDSA, Ed25519 / Ed25519ph, ML-DSA).
    /// `msg` has been checked by `check_message` and `alg` against the key.
    pub fn sign(
        &self,
        alg: SigningAlgorithm,
        ty: MessageType,
        msg: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let digest = || {
            let invalid =
                || KmsError::Validation(format!("Digest is invalid length for algorithm {alg}."));
            Digest::import_less_safe(msg, alg.digest().ok_or_else(invalid)?).map_err(|_| invalid())
        };
        match self {
            KeyMaterial::Rsa(k) => {
                let enc = alg.rsa_encoding().ok_or_else(|| internal("RSA signing"))?;
                let mut sig = vec![0u8; k.signer.public_modulus_len()];
                match ty {
                    MessageType::Raw => k.signer.sign(enc, &SystemRandom::new(), msg, &mut sig),
                    MessageType::Digest => k.signer.sign_digest(enc, &digest()?, &mut sig),
                    MessageType::ExternalMu => return Err(internal("RSA signing of mu")),
                }
                .map_err(|_| internal("RSA signing"))?;
                Ok(sig)
            }
            KeyMaterial::Ecc(k) => {
                let sig = match ty {
                    MessageType::Raw => k.signer.sign(&SystemRandom::new(), msg),
                    MessageType::Digest => k.signer.sign_digest(&digest()?),
                    MessageType::ExternalMu => return Err(internal("ECDSA signing of mu")),
                }
                .map_err(|_| internal("ECDSA signing"))?;
                Ok(sig.as_ref().to_vec())
            }
            KeyMaterial::Ed25519(k) => match alg {
                SigningAlgorithm::Ed25519PhSha512 => k.sign_prehashed(msg),
                _ => Ok(k.sign(msg)),
            },
            KeyMaterial::MlDsa(k) => match ty {
                MessageType::ExternalMu => k.sign_mu(msg),
                _ => k.sign(msg),
            },
            _ => Err(internal("signing with a non-signing key")),
        }
    }

    /// Does `sig` verify? (false for any malformed signature.)
    pub fn verify(
        &self,
        alg: SigningAlgorithm,
        ty: MessageType,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<bool, KmsError> {
        let key = match self {
            KeyMaterial::Rsa(k) => k
                .verifiers
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, v)| v)
                .ok_or_else(|| internal("RSA verification"))?,
            KeyMaterial::Ecc(k) => &k.verifier,
            KeyMaterial::Ed25519(k) => {
                return Ok(match alg {
                    SigningAlgorithm::Ed25519PhSha512 => k.verify_prehashed(msg, sig),
                    _ => k.verify(msg, sig),
                });
            }
            KeyMaterial::MlDsa(k) => {
                return Ok(match ty {
                    MessageType::ExternalMu => k.verify_mu(msg, sig),
                    _ => k.verify(msg, sig),
                });
            }
            _ => return Err(internal("verifying with a non-signing key")),
        };
        Ok(match (ty, alg.digest()) {
            (MessageType::Digest, Some(alg)) => match Digest::import_less_safe(msg, alg) {
                Ok(d) => key.verify_digest_sig(&d, sig).is_ok(),
                Err(_) => false,
            },
            (MessageType::Digest | MessageType::ExternalMu, _) => false,
            (MessageType::Raw, _) => key.verify_sig(msg, sig).is_ok(),
        })
    }

    /// HMAC of `msg`.
    pub fn mac(&self, msg: &[u8]) -> Result<Vec<u8>, KmsError> {
        match self {
            KeyMaterial::Hmac(k) => Ok(hmac::sign(k, msg).as_ref().to_vec()),
            _ => Err(internal("HMAC with a non-HMAC key")),
        }
    }

    /// Constant-time HMAC check.
    pub fn verify_mac(&self, msg: &[u8], mac: &[u8]) -> Result<bool, KmsError> {
        match self {
            KeyMaterial::Hmac(k) => Ok(hmac::verify(k, msg, mac).is_ok()),
            _ => Err(internal("HMAC with a non-HMAC key")),
        }
    }
}

/// A data key pair from GenerateDataKeyPair: PKCS#8 private key (zeroized on drop) and
/// DER SubjectPublicKeyInfo.
pub struct KeyPairMaterial {
    pub private_pkcs8: Zeroizing<Vec<u8>>,
    pub public_der: Vec<u8>,
}

impl fmt::Debug for KeyPairMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPairMaterial")
            .field("private_pkcs8", &"<redacted>")
            .field(
                "public_der",
                &format_args!("<{} bytes>", self.public_der.len()),
            )
            .finish()
    }
}

/// Result of GenerateDataKeyPair(WithoutPlaintext): the private key wrapped under a
/// symmetric KMS key (an ordinary ciphertext blob), and, with plaintext, the PKCS#8
/// private key itself (zeroized on drop).
pub struct DataKeyPair {
    pub private_key_plaintext: Option<Zeroizing<Vec<u8>>>,
    pub private_key_ciphertext_blob: Vec<u8>,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    pub key_pair_spec: KeySpec,
    pub key_arn: String,
}

impl fmt::Debug for DataKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyPair")
            .field("private_key_plaintext", &"<redacted>")
            .field(
                "private_key_ciphertext_blob",
                &format_args!("<{} bytes>", self.private_key_ciphertext_blob.len()),
            )
            .field("key_pair_spec", &self.key_pair_spec)
            .field("key_arn", &self.key_arn)
            .finish()
    }
}

/// Result of DeriveSharedSecret: the raw ECDH shared secret (zeroized on drop).
pub struct SharedSecret {
    pub shared_secret: Zeroizing<Vec<u8>>,
    pub key_arn: String,
    /// `KeyOrigin`: AWS_KMS or EXTERNAL.
    pub key_origin: &'static str,
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("shared_secret", &"<redacted>")
            .field("key_arn", &self.key_arn)
            .field("key_origin", &self.key_origin)
            .finish()
    }
}

/// Result of GetPublicKey.
#[derive(Debug, Clone)]
pub struct PublicKeyInfo {
    pub key_arn: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsageType,
}

/// Parses GenerateDataKeyPair's `KeyPairSpec` (AWS's DataKeyPairSpec: RSA, ECC and
/// Ed25519; ML-DSA is not a data key pair spec).
pub fn parse_key_pair_spec(s: &str) -> Result<KeySpec, KmsError> {
    match KeySpec::from_name(s) {
        Some(k) if k.is_asymmetric() && !k.is_ml_dsa() => Ok(k),
        _ if s == "SM2" => Err(unsupported(s, "KeyPairSpec")),
        _ => Err(enum_error(
            s,
            "keyPairSpec",
            &[
                "RSA_2048",
                "RSA_3072",
                "RSA_4096",
                "ECC_NIST_P256",
                "ECC_NIST_P384",
                "ECC_NIST_P521",
                "ECC_SECG_P256K1",
                "SM2",
                "ECC_NIST_EDWARDS25519",
            ],
        )),
    }
}

/// A fresh key pair of an asymmetric spec (PKCS#8 private key, SPKI public key).
pub fn generate_key_pair(spec: KeySpec) -> Result<KeyPairMaterial, KmsError> {
    let (m, raw) = KeyMaterial::generate(spec, KeyUsageType::SignVerify)?;
    let public_der = m
        .public_key_der()
        .ok_or_else(|| internal("key pair generation"))?
        .to_vec();
    Ok(KeyPairMaterial {
        private_pkcs8: raw,
        public_der,
    })
}
