//! Key agreement keys (`KeyUsage KEY_AGREEMENT`, ECC_NIST_P256/P384/P521): ECDH with
//! aws-lc-rs. DeriveSharedSecret takes the peer's public key as DER SubjectPublicKeyInfo
//! on the key's curve and answers the raw shared secret Z (the x-coordinate, 32/48/66
//! bytes), with no KDF, as AWS KMS does.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use zeroize::Zeroizing;

use super::KeySpec;
use crate::kms::KmsError;

pub struct EcdhKey {
    private: PrivateKey,
    public_der: Vec<u8>,
}

fn algorithm(spec: KeySpec) -> Option<&'static agreement::Algorithm> {
    Some(match spec {
        KeySpec::EccNistP256 => &agreement::ECDH_P256,
        KeySpec::EccNistP384 => &agreement::ECDH_P384,
        KeySpec::EccNistP521 => &agreement::ECDH_P521,
        _ => return None,
    })
}

impl EcdhKey {
    /// A fresh key and its PKCS#8 private key to seal.
    pub fn generate(spec: KeySpec) -> Result<(Self, Zeroizing<Vec<u8>>), KmsError> {
        let internal = || KmsError::Internal("ECDH key generation failed".into());
        let alg = algorithm(spec).ok_or_else(internal)?;
        let k = PrivateKey::generate(alg).map_err(|_| internal())?;
        let der: Pkcs8V1Der = k.as_der().map_err(|_| internal())?;
        let raw = Zeroizing::new(der.as_ref().to_vec());
        Ok((Self::from_pkcs8(spec, &raw)?, raw))
    }

    pub fn from_pkcs8(spec: KeySpec, pkcs8: &[u8]) -> Result<Self, KmsError> {
        let corrupt = || KmsError::Internal(format!("stored {spec} key material is invalid"));
        let alg = algorithm(spec).ok_or_else(corrupt)?;
        let private = PrivateKey::from_private_key_der(alg, pkcs8).map_err(|_| corrupt())?;
        let public_der = private
            .compute_public_key()
            .map_err(|_| corrupt())?
            .as_der()
            .map_err(|_| corrupt())?
            .as_ref()
            .to_vec();
        Ok(EcdhKey {
            private,
            public_der,
        })
    }

    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// ECDH with the peer's DER SubjectPublicKeyInfo: the raw shared secret. Anything
    /// else (a bare point, another curve, a point not on the curve) is
    /// ValidationException, as on AWS.
    pub fn derive(&self, peer_spki: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let invalid = || {
            KmsError::Validation(
                "PublicKey must be the peer's DER-encoded X.509 SubjectPublicKeyInfo on the key's curve."
                    .into(),
            )
        };
        // A DER SEQUENCE: aws-lc-rs would also take a bare SEC1 point, which AWS refuses.
        if peer_spki.first() != Some(&0x30) {
            return Err(invalid());
        }
        let peer = UnparsedPublicKey::new(self.private.algorithm(), peer_spki);
        agreement::agree(&self.private, peer, invalid(), |z| {
            Ok(Zeroizing::new(z.to_vec()))
        })
    }
}
