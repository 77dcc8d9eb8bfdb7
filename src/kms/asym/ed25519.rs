//! Ed25519 keys (`ECC_NIST_EDWARDS25519`): ED25519_SHA_512 is pure Ed25519 (RFC 8032,
//! MessageType RAW) with aws-lc-rs; ED25519_PH_SHA_512 is HashEdDSA (Ed25519ph, FIPS
//! 186-5 §7.8.1, MessageType DIGEST) with ed25519-dalek, because aws-lc-rs's safe API
//! has no Ed25519ph. Both are built from the same 32-byte seed (the sealed PKCS#8).
//!
//! As AWS documents it, KMS still applies the SHA-512 prehash of step 1 to the 64-byte
//! digest it is given: the signature is Ed25519ph over the message `digest`, so a
//! standard Ed25519ph verifier checks it with the digest as its message.

use aws_lc_rs::encoding::{AsBigEndian, AsDer, Curve25519SeedBin};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use ed25519_dalek::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::kms::KmsError;

fn corrupt() -> KmsError {
    KmsError::Internal("stored ECC_NIST_EDWARDS25519 key material is invalid".into())
}

pub struct Ed25519Key {
    pure: Ed25519KeyPair,
    /// The public key, parsed once for Verify.
    verifier: ParsedPublicKey,
    prehash: ed25519_dalek::SigningKey,
    public_der: Vec<u8>,
}

impl Ed25519Key {
    /// A fresh key and its PKCS#8 (v1, RFC 8410) private key to seal.
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), KmsError> {
        let internal = || KmsError::Internal("Ed25519 key generation failed".into());
        let kp = Ed25519KeyPair::generate().map_err(|_| internal())?;
        let der: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().map_err(|_| internal())?;
        let raw = Zeroizing::new(der.as_ref().to_vec());
        Ok((Self::from_pkcs8(&raw)?, raw))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KmsError> {
        let pure = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| corrupt())?;
        let seed = pure.seed().map_err(|_| corrupt())?;
        let bin: Curve25519SeedBin = seed.as_be_bytes().map_err(|_| corrupt())?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        if bin.as_ref().len() != 32 {
            return Err(corrupt());
        }
        bytes.copy_from_slice(bin.as_ref());
        let prehash = ed25519_dalek::SigningKey::from_bytes(&bytes);
        if prehash.verifying_key().as_bytes() != pure.public_key().as_ref() {
            return Err(corrupt());
        }
        let public_der = pure
            .public_key()
            .as_der()
            .map_err(|_| corrupt())?
            .as_ref()
            .to_vec();
        let verifier =
            ParsedPublicKey::new(&ED25519, pure.public_key().as_ref()).map_err(|_| corrupt())?;
        Ok(Ed25519Key {
            pure,
            verifier,
            prehash,
            public_der,
        })
    }

    /// DER SubjectPublicKeyInfo (RFC 8410: OID 1.3.101.112, 44 bytes).
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// ED25519_SHA_512: pure Ed25519 of the message (64-byte R || S).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pure.sign(msg).as_ref().to_vec()
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verifier.verify_sig(msg, sig).is_ok()
    }

    /// ED25519_PH_SHA_512: Ed25519ph (empty context) of the 64-byte `digest`, which is
    /// hashed again with SHA-512 as FIPS 186-5 says.
    pub fn sign_prehashed(&self, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
        let sig = self
            .prehash
            .sign_prehashed(Sha512::new().chain_update(digest), None)
            .map_err(|_| KmsError::Internal("Ed25519ph signing failed".into()))?;
        Ok(sig.to_bytes().to_vec())
    }

    pub fn verify_prehashed(&self, digest: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.prehash
            .verifying_key()
            .verify_prehashed_strict(Sha512::new().chain_update(digest), None, &sig)
            .is_ok()
    }
}
