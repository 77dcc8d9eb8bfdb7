//! ML-DSA keys (`ML_DSA_44/65/87`, FIPS 204, signing algorithm ML_DSA_SHAKE_256). The
//! key is its 32-byte seed xi (what is sealed); aws-lc-rs derives the key pair from it
//! and signs and verifies RAW messages (pure ML-DSA, empty context). MessageType
//! EXTERNAL_MU (the 64-byte representative mu = SHAKE256(tr || M', 64) computed by the
//! caller, FIPS 204 §6.2) is signed and verified with RustCrypto's `ml-dsa` from the
//! same seed, because aws-lc-rs's safe API has no external-mu entry point. A signature
//! over mu equals one over the message mu represents, so either verifies the other.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair, ParsedPublicKey, PqdsaKeyPair};
use ml_dsa::common::array::Array;
use ml_dsa::common::rand_core::{TryCryptoRng, TryRng};
use ml_dsa::{
    EncodedSignature, ExpandedSigningKey, MlDsa44, MlDsa65, MlDsa87, MlDsaParams, VerifyingKey,
};
use zeroize::Zeroizing;

use super::KeySpec;
use crate::kms::{KmsError, crypto};

/// aws-lc-rs's RNG for ml-dsa's hedged signing.
struct AwsLcRng;

impl TryRng for AwsLcRng {
    type Error = aws_lc_rs::error::Unspecified;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        aws_lc_rs::rand::fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        aws_lc_rs::rand::fill(dst)
    }
}

impl TryCryptoRng for AwsLcRng {}

/// The external-mu half of a key, per parameter set: the expanded signing key and its
/// verifying key (derived once: deriving it expands the matrix A).
enum Mu {
    L44(Box<(ExpandedSigningKey<MlDsa44>, VerifyingKey<MlDsa44>)>),
    L65(Box<(ExpandedSigningKey<MlDsa65>, VerifyingKey<MlDsa65>)>),
    L87(Box<(ExpandedSigningKey<MlDsa87>, VerifyingKey<MlDsa87>)>),
}

fn mu_key<P: MlDsaParams>(xi: &ml_dsa::Seed) -> Box<(ExpandedSigningKey<P>, VerifyingKey<P>)> {
    let sk = ExpandedSigningKey::from_seed(xi);
    let vk = sk.verifying_key();
    Box::new((sk, vk))
}

fn sign_mu<P: MlDsaParams>(k: &ExpandedSigningKey<P>, mu: &[u8]) -> Result<Vec<u8>, KmsError> {
    let failed = || KmsError::Internal("ML-DSA external-mu signing failed".into());
    let mu = Array::try_from(mu).map_err(|_| failed())?;
    let sig = k
        .sign_mu_randomized(&mu, &mut AwsLcRng)
        .map_err(|_| failed())?;
    Ok(sig.encode().to_vec())
}

fn verify_mu<P: MlDsaParams>(k: &VerifyingKey<P>, mu: &[u8], sig: &[u8]) -> bool {
    let (Ok(mu), Ok(enc)) = (Array::try_from(mu), EncodedSignature::<P>::try_from(sig)) else {
        return false;
    };
    match ml_dsa::Signature::<P>::decode(&enc) {
        Some(s) => k.verify_mu(&mu, &s),
        None => false,
    }
}

pub struct MlDsaKey {
    pair: PqdsaKeyPair,
    verifier: ParsedPublicKey,
    mu: Mu,
    public_der: Vec<u8>,
}

/// The aws-lc-rs algorithms of a parameter set.
fn algorithms(
    spec: KeySpec,
) -> Option<(
    &'static signature::PqdsaSigningAlgorithm,
    &'static signature::PqdsaVerificationAlgorithm,
)> {
    Some(match spec {
        KeySpec::MlDsa44 => (&signature::ML_DSA_44_SIGNING, &signature::ML_DSA_44),
        KeySpec::MlDsa65 => (&signature::ML_DSA_65_SIGNING, &signature::ML_DSA_65),
        KeySpec::MlDsa87 => (&signature::ML_DSA_87_SIGNING, &signature::ML_DSA_87),
        _ => return None,
    })
}

impl MlDsaKey {
    /// A fresh key and the seed to seal.
    pub fn generate(spec: KeySpec) -> Result<(Self, Zeroizing<Vec<u8>>), KmsError> {
        let seed = crypto::random_bytes(32)?;
        Ok((Self::from_seed(spec, &seed)?, seed))
    }

    pub fn from_seed(spec: KeySpec, seed: &[u8]) -> Result<Self, KmsError> {
        let corrupt = || KmsError::Internal(format!("stored {spec} key material is invalid"));
        let (sign_alg, verify_alg) = algorithms(spec).ok_or_else(corrupt)?;
        let pair = PqdsaKeyPair::from_seed(sign_alg, seed).map_err(|_| corrupt())?;
        let xi = ml_dsa::Seed::try_from(seed).map_err(|_| corrupt())?;
        let mu = match spec {
            KeySpec::MlDsa44 => Mu::L44(mu_key(&xi)),
            KeySpec::MlDsa65 => Mu::L65(mu_key(&xi)),
            _ => Mu::L87(mu_key(&xi)),
        };
        let public = pair.public_key();
        let raw_public = match &mu {
            Mu::L44(k) => k.1.encode().to_vec(),
            Mu::L65(k) => k.1.encode().to_vec(),
            Mu::L87(k) => k.1.encode().to_vec(),
        };
        // Both libraries must have derived the same key from the seed.
        if raw_public.as_slice() != public.as_ref() {
            return Err(corrupt());
        }
        let verifier = ParsedPublicKey::new(verify_alg, public.as_ref()).map_err(|_| corrupt())?;
        let public_der = public.as_der().map_err(|_| corrupt())?.as_ref().to_vec();
        Ok(MlDsaKey {
            pair,
            verifier,
            mu,
            public_der,
        })
    }

    /// DER SubjectPublicKeyInfo (id-ml-dsa-44/65/87, the raw FIPS 204 public key).
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Pure ML-DSA of a RAW message.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KmsError> {
        let mut sig = vec![0u8; self.pair.algorithm().signature_len()];
        let n = self
            .pair
            .sign(msg, &mut sig)
            .map_err(|_| KmsError::Internal("ML-DSA signing failed".into()))?;
        sig.truncate(n);
        Ok(sig)
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verifier.verify_sig(msg, sig).is_ok()
    }

    /// ML-DSA of an external mu (64 bytes, checked by the caller), hedged.
    pub fn sign_mu(&self, mu: &[u8]) -> Result<Vec<u8>, KmsError> {
        match &self.mu {
            Mu::L44(k) => sign_mu(&k.0, mu),
            Mu::L65(k) => sign_mu(&k.0, mu),
            Mu::L87(k) => sign_mu(&k.0, mu),
        }
    }

    pub fn verify_mu(&self, mu: &[u8], sig: &[u8]) -> bool {
        match &self.mu {
            Mu::L44(k) => verify_mu(&k.1, mu, sig),
            Mu::L65(k) => verify_mu(&k.1, mu, sig),
            Mu::L87(k) => verify_mu(&k.1, mu, sig),
        }
    }
}
