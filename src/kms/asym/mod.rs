//! Key specs beyond AES: the key-spec / key-usage / algorithm tables of AWS KMS and the
//! in-memory key material of every kind (`KeyMaterial`: AES-256-GCM, RSA, ECDSA, HMAC,
//! Ed25519, ML-DSA and ECDH key agreement).
//!
//! Invariants:
//! - which (spec, usage) pairs exist and which algorithms go with them is decided here
//!   only (`KeySpec::usages`, `KeySpec::*_algorithms`), after AWS's tables;
//! - private keys and HMAC keys exist only sealed in the database, as PKCS#8 / raw bytes
//!   in `Zeroizing` buffers for the moment of (un)sealing, or inside aws-lc-rs key
//!   objects; `Debug` of every type here is redacted and no error message carries key,
//!   message, signature or MAC bytes;
//! - every input (algorithm names, digests, signatures, ciphertexts) is checked before it
//!   reaches aws-lc-rs, and failures are AWS exceptions, never panics.
//!
//! Files: this one holds the tables and the checks; `material.rs` the key material of
//! every kind and the data key pairs; `ed25519.rs`, `mldsa.rs` and `ecdh.rs` the 2025
//! key specs and key agreement.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::{KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm};
use aws_lc_rs::signature;
use serde::{Deserialize, Serialize};

use super::KmsError;
use super::ops::{Needs, Op};

/// Largest message Sign/Verify/GenerateMac/VerifyMac accept (AWS's `PlaintextType`).
pub const MAX_MESSAGE: usize = 4096;

/// Defines a string-valued enum with its AWS names, `as_str`, `ALL` and serde.
macro_rules! aws_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The AWS name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }

            fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$v),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_enum!(
    /// `KeySpec` of a KMS key (what sealgate implements of AWS's list). Records written
    /// before key specs existed are AES keys: the default.
    #[derive(Default)]
    KeySpec {
        #[default]
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        MlDsa44 = "ML_DSA_44",
        MlDsa65 = "ML_DSA_65",
        MlDsa87 = "ML_DSA_87",
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
    }
);

aws_enum!(
    /// `KeyUsage` of a KMS key (AWS's `KeyUsageType`).
    #[derive(Default)]
    KeyUsageType {
        #[default]
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        SignVerify = "SIGN_VERIFY",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        KeyAgreement = "KEY_AGREEMENT",
    }
);

aws_enum!(
    /// `EncryptionAlgorithm` of Encrypt/Decrypt/ReEncrypt.
    EncryptionAlgorithm {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
    }
);

aws_enum!(
    /// `SigningAlgorithm` of Sign/Verify.
    SigningAlgorithm {
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaSha256 = "ECDSA_SHA_256",
        EcdsaSha384 = "ECDSA_SHA_384",
        EcdsaSha512 = "ECDSA_SHA_512",
        MlDsaShake256 = "ML_DSA_SHAKE_256",
        Ed25519Sha512 = "ED25519_SHA_512",
        Ed25519PhSha512 = "ED25519_PH_SHA_512",
    }
);

aws_enum!(
    /// `KeyAgreementAlgorithm` of DeriveSharedSecret.
    KeyAgreementAlgorithm {
        Ecdh = "ECDH",
    }
);

aws_enum!(
    /// `MacAlgorithm` of GenerateMac/VerifyMac.
    MacAlgorithm {
        HmacSha224 = "HMAC_SHA_224",
        HmacSha256 = "HMAC_SHA_256",
        HmacSha384 = "HMAC_SHA_384",
        HmacSha512 = "HMAC_SHA_512",
    }
);

aws_enum!(
    /// `MessageType` of Sign/Verify: the message itself, its digest, or (ML-DSA) the
    /// 64-byte message representative mu of FIPS 204.
    MessageType {
        Raw = "RAW",
        Digest = "DIGEST",
        ExternalMu = "EXTERNAL_MU",
    }
);

/// `Member must satisfy enum value set: [...]` for an AWS enum.
fn enum_error(value: &str, field: &str, all: &[&str]) -> KmsError {
    KmsError::constraint(
        value,
        field,
        &format!("Member must satisfy enum value set: [{}]", all.join(", ")),
    )
}

/// AWS enum values sealgate knows but does not implement.
fn unsupported(value: &str, what: &str) -> KmsError {
    KmsError::UnsupportedOperation(format!(
        "{what} {value} is not supported by sealgate's KMS."
    ))
}

impl KeySpec {
    /// Parses `KeySpec` / `CustomerMasterKeySpec` (`field` names it in errors).
    pub fn parse(s: &str, field: &str) -> Result<Self, KmsError> {
        // The deprecated CustomerMasterKeySpec enum predates the 2025 specs.
        let deprecated = field == "customerMasterKeySpec";
        match Self::from_name(s) {
            Some(k) if !(deprecated && (k.is_ml_dsa() || k.is_ed25519())) => return Ok(k),
            _ => {}
        }
        if s == "SM2" {
            return Err(unsupported(s, "KeySpec"));
        }
        let mut all: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
        all.push("SM2");
        if deprecated {
            all.retain(|k| !k.starts_with("ML_DSA") && *k != "ECC_NIST_EDWARDS25519");
        }
        Err(enum_error(s, field, &all))
    }

    pub fn is_symmetric(self) -> bool {
        self == KeySpec::SymmetricDefault
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
    }

    pub fn is_ecc(self) -> bool {
        matches!(
            self,
            KeySpec::EccNistP256
                | KeySpec::EccNistP384
                | KeySpec::EccNistP521
                | KeySpec::EccSecgP256k1
        )
    }

    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512
        )
    }

    /// ECC_NIST_P256/P384/P521: ECDSA signing keys or ECDH key agreement keys.
    pub fn is_ecc_nist(self) -> bool {
        matches!(
            self,
            KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521
        )
    }

    pub fn is_ed25519(self) -> bool {
        self == KeySpec::EccNistEdwards25519
    }

    pub fn is_ml_dsa(self) -> bool {
        matches!(self, KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87)
    }

    /// Asymmetric: has a public key (RSA, ECC, Ed25519, ML-DSA).
    pub fn is_asymmetric(self) -> bool {
        self.is_rsa() || self.is_ecc() || self.is_ed25519() || self.is_ml_dsa()
    }

    /// The key usages AWS allows for this spec.
    pub fn usages(self) -> &'static [KeyUsageType] {
        use KeyUsageType::*;
        if self.is_symmetric() {
            &[EncryptDecrypt]
        } else if self.is_rsa() {
            &[EncryptDecrypt, SignVerify]
        } else if self.is_ecc_nist() {
            &[SignVerify, KeyAgreement]
        } else if self.is_ecc() || self.is_ed25519() || self.is_ml_dsa() {
            &[SignVerify]
        } else {
            &[GenerateVerifyMac]
        }
    }

    /// `EncryptionAlgorithms` of a key with this spec and usage (empty: none).
    pub fn encryption_algorithms(self, usage: KeyUsageType) -> &'static [EncryptionAlgorithm] {
        use EncryptionAlgorithm::*;
        match usage {
            KeyUsageType::EncryptDecrypt if self.is_symmetric() => &[SymmetricDefault],
            KeyUsageType::EncryptDecrypt if self.is_rsa() => &[RsaesOaepSha1, RsaesOaepSha256],
            _ => &[],
        }
    }

    /// `SigningAlgorithms` of a key with this spec and usage, in AWS's order.
    pub fn signing_algorithms(self, usage: KeyUsageType) -> &'static [SigningAlgorithm] {
        use SigningAlgorithm::*;
        if usage != KeyUsageType::SignVerify {
            return &[];
        }
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
                RsassaPkcs1V15Sha256,
                RsassaPkcs1V15Sha384,
                RsassaPkcs1V15Sha512,
                RsassaPssSha256,
                RsassaPssSha384,
                RsassaPssSha512,
            ],
            KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => &[EcdsaSha256],
            KeySpec::EccNistP384 => &[EcdsaSha384],
            KeySpec::EccNistP521 => &[EcdsaSha512],
            KeySpec::EccNistEdwards25519 => &[Ed25519Sha512, Ed25519PhSha512],
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => &[MlDsaShake256],
            _ => &[],
        }
    }

    /// `KeyAgreementAlgorithms` of a key with this spec and usage.
    pub fn key_agreement_algorithms(self, usage: KeyUsageType) -> &'static [KeyAgreementAlgorithm] {
        if usage == KeyUsageType::KeyAgreement && self.is_ecc_nist() {
            &[KeyAgreementAlgorithm::Ecdh]
        } else {
            &[]
        }
    }

    /// The CustomerMasterKeySpec (deprecated) AWS reports: the same name, absent for the
    /// specs its enum never had (ML-DSA, Ed25519).
    pub fn customer_master_key_spec(self) -> Option<&'static str> {
        (!self.is_ml_dsa() && !self.is_ed25519()).then(|| self.as_str())
    }

    /// `MacAlgorithms` of an HMAC key.
    pub fn mac_algorithms(self) -> &'static [MacAlgorithm] {
        match self {
            KeySpec::Hmac224 => &[MacAlgorithm::HmacSha224],
            KeySpec::Hmac256 => &[MacAlgorithm::HmacSha256],
            KeySpec::Hmac384 => &[MacAlgorithm::HmacSha384],
            KeySpec::Hmac512 => &[MacAlgorithm::HmacSha512],
            _ => &[],
        }
    }

    /// Checks a CreateKey (spec, usage) pair: ValidationException as AWS when the usage
    /// is not one the spec supports.
    pub fn check_usage(self, usage: KeyUsageType) -> Result<(), KmsError> {
        if self.usages().contains(&usage) {
            return Ok(());
        }
        Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not compatible with KeySpec {self}; valid key usages for {self}: {}.",
            self.usages()
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn rsa_size(self) -> Option<KeySize> {
        match self {
            KeySpec::Rsa2048 => Some(KeySize::Rsa2048),
            KeySpec::Rsa3072 => Some(KeySize::Rsa3072),
            KeySpec::Rsa4096 => Some(KeySize::Rsa4096),
            _ => None,
        }
    }

    /// (signing, verification) algorithms of the curve; AWS pairs one hash per curve.
    fn ecdsa(
        self,
    ) -> Option<(
        &'static signature::EcdsaSigningAlgorithm,
        &'static signature::EcdsaVerificationAlgorithm,
    )> {
        match self {
            KeySpec::EccNistP256 => Some((
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1,
            )),
            KeySpec::EccNistP384 => Some((
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1,
            )),
            KeySpec::EccNistP521 => Some((
                &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
                &signature::ECDSA_P521_SHA512_ASN1,
            )),
            KeySpec::EccSecgP256k1 => Some((
                &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
                &signature::ECDSA_P256K1_SHA256_ASN1,
            )),
            _ => None,
        }
    }

    fn hmac(self) -> Option<(hmac::Algorithm, usize)> {
        match self {
            KeySpec::Hmac224 => Some((hmac::HMAC_SHA224, 28)),
            KeySpec::Hmac256 => Some((hmac::HMAC_SHA256, 32)),
            KeySpec::Hmac384 => Some((hmac::HMAC_SHA384, 48)),
            KeySpec::Hmac512 => Some((hmac::HMAC_SHA512, 64)),
            _ => None,
        }
    }
}

impl KeyUsageType {
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        Self::from_name(s).ok_or_else(|| {
            enum_error(
                s,
                "keyUsage",
                &[
                    "SIGN_VERIFY",
                    "ENCRYPT_DECRYPT",
                    "GENERATE_VERIFY_MAC",
                    "KEY_AGREEMENT",
                ],
            )
        })
    }
}

impl KeyAgreementAlgorithm {
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        Self::from_name(s).ok_or_else(|| enum_error(s, "keyAgreementAlgorithm", &["ECDH"]))
    }
}

impl EncryptionAlgorithm {
    /// `None` (the member is absent) is SYMMETRIC_DEFAULT, as on AWS.
    pub fn parse(s: Option<&str>, field: &str) -> Result<Self, KmsError> {
        let Some(s) = s else {
            return Ok(EncryptionAlgorithm::SymmetricDefault);
        };
        if let Some(a) = Self::from_name(s) {
            return Ok(a);
        }
        match s {
            "SM2PKE" => Err(KmsError::InvalidKeyUsage(
                "Algorithm SM2PKE needs an SM2 key; sealgate's KMS has none.".into(),
            )),
            _ => Err(enum_error(
                s,
                field,
                &[
                    "SYMMETRIC_DEFAULT",
                    "RSAES_OAEP_SHA_1",
                    "RSAES_OAEP_SHA_256",
                    "SM2PKE",
                ],
            )),
        }
    }

    fn oaep(self) -> Option<&'static OaepAlgorithm> {
        match self {
            EncryptionAlgorithm::RsaesOaepSha1 => Some(&OAEP_SHA1_MGF1SHA1),
            EncryptionAlgorithm::RsaesOaepSha256 => Some(&OAEP_SHA256_MGF1SHA256),
            EncryptionAlgorithm::SymmetricDefault => None,
        }
    }
}

impl SigningAlgorithm {
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        if let Some(a) = Self::from_name(s) {
            return Ok(a);
        }
        match s {
            "SM2DSA" => Err(KmsError::InvalidKeyUsage(format!(
                "Signing algorithm {s} is not supported by any key of sealgate's KMS."
            ))),
            _ => Err(enum_error(
                s,
                "signingAlgorithm",
                &Self::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            )),
        }
    }

    /// The hash of a DIGEST message for the algorithm (it must be exactly this long);
    /// None for the algorithms that take no DIGEST (ED25519_SHA_512, ML_DSA_SHAKE_256).
    pub fn digest(self) -> Option<&'static digest::Algorithm> {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha256 | RsassaPkcs1V15Sha256 | EcdsaSha256 => Some(&digest::SHA256),
            RsassaPssSha384 | RsassaPkcs1V15Sha384 | EcdsaSha384 => Some(&digest::SHA384),
            RsassaPssSha512 | RsassaPkcs1V15Sha512 | EcdsaSha512 | Ed25519PhSha512 => {
                Some(&digest::SHA512)
            }
            Ed25519Sha512 | MlDsaShake256 => None,
        }
    }

    fn rsa_encoding(self) -> Option<&'static dyn signature::RsaEncoding> {
        use SigningAlgorithm::*;
        Some(match self {
            RsassaPssSha256 => &signature::RSA_PSS_SHA256,
            RsassaPssSha384 => &signature::RSA_PSS_SHA384,
            RsassaPssSha512 => &signature::RSA_PSS_SHA512,
            RsassaPkcs1V15Sha256 => &signature::RSA_PKCS1_SHA256,
            RsassaPkcs1V15Sha384 => &signature::RSA_PKCS1_SHA384,
            RsassaPkcs1V15Sha512 => &signature::RSA_PKCS1_SHA512,
            EcdsaSha256 | EcdsaSha384 | EcdsaSha512 | MlDsaShake256 | Ed25519Sha512
            | Ed25519PhSha512 => return None,
        })
    }

    fn rsa_verification(self) -> Option<&'static signature::RsaParameters> {
        use SigningAlgorithm::*;
        Some(match self {
            RsassaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
            RsassaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
            RsassaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
            RsassaPkcs1V15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsassaPkcs1V15Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            RsassaPkcs1V15Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            EcdsaSha256 | EcdsaSha384 | EcdsaSha512 | MlDsaShake256 | Ed25519Sha512
            | Ed25519PhSha512 => return None,
        })
    }
}

impl MacAlgorithm {
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        Self::from_name(s).ok_or_else(|| {
            enum_error(
                s,
                "macAlgorithm",
                &Self::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            )
        })
    }
}

impl MessageType {
    /// `None` is RAW, as on AWS.
    pub fn parse(s: Option<&str>) -> Result<Self, KmsError> {
        match s {
            None => Ok(MessageType::Raw),
            Some(s) => Self::from_name(s)
                .ok_or_else(|| enum_error(s, "messageType", &["RAW", "DIGEST", "EXTERNAL_MU"])),
        }
    }
}

/// The key-usage gate of an operation on a key (after the state table; `ops` says what
/// each operation needs): what AWS answers when the key's spec/usage does not fit.
pub fn check_usage(spec: KeySpec, usage: KeyUsageType, arn: &str, op: Op) -> Result<(), KmsError> {
    let name = op.name();
    // AWS's recorded wording: "<arn> key usage is SIGN_VERIFY which is not valid for X."
    let wrong_usage = || {
        KmsError::InvalidKeyUsage(format!(
            "{arn} key usage is {usage} which is not valid for {name}."
        ))
    };
    match op.row().needs {
        Needs::EncryptDecrypt if usage != KeyUsageType::EncryptDecrypt => Err(wrong_usage()),
        // Data keys are wrapped under a symmetric key: say so after AWS's sentence.
        Needs::Symmetric if usage != KeyUsageType::EncryptDecrypt => {
            Err(KmsError::InvalidKeyUsage(format!(
                "{arn} key usage is {usage} which is not valid for {name}. {name} needs a SYMMETRIC_DEFAULT key."
            )))
        }
        Needs::Symmetric if !spec.is_symmetric() => Err(KmsError::InvalidKeyUsage(format!(
            "{arn} key spec is {spec} which is not valid for {name}. {name} needs a SYMMETRIC_DEFAULT key."
        ))),
        Needs::SignVerify if usage != KeyUsageType::SignVerify => Err(wrong_usage()),
        Needs::Mac if usage != KeyUsageType::GenerateVerifyMac => Err(wrong_usage()),
        Needs::KeyAgreement if usage != KeyUsageType::KeyAgreement => Err(wrong_usage()),
        Needs::Asymmetric if !spec.is_asymmetric() => Err(KmsError::UnsupportedOperation(format!(
            "{arn} is a {spec} key; {name} needs an asymmetric key (it has no public key)."
        ))),
        Needs::Rotatable if !spec.is_symmetric() => Err(KmsError::UnsupportedOperation(format!(
            "{arn} is a {spec} key; key rotation is supported only for symmetric encryption KMS keys."
        ))),
        _ => Ok(()),
    }
}

/// Refuses an algorithm the key's spec/usage does not list (AWS's message).
fn incompatible(alg: &str, spec: KeySpec) -> KmsError {
    KmsError::InvalidKeyUsage(format!(
        "Algorithm {alg} is incompatible with key spec {spec}."
    ))
}

pub fn check_encryption_algorithm(
    spec: KeySpec,
    usage: KeyUsageType,
    alg: EncryptionAlgorithm,
) -> Result<(), KmsError> {
    if spec.encryption_algorithms(usage).contains(&alg) {
        Ok(())
    } else {
        Err(incompatible(alg.as_str(), spec))
    }
}

pub fn check_signing_algorithm(
    spec: KeySpec,
    usage: KeyUsageType,
    alg: SigningAlgorithm,
) -> Result<(), KmsError> {
    if spec.signing_algorithms(usage).contains(&alg) {
        Ok(())
    } else {
        Err(incompatible(alg.as_str(), spec))
    }
}

pub fn check_mac_algorithm(spec: KeySpec, alg: MacAlgorithm) -> Result<(), KmsError> {
    if spec.mac_algorithms().contains(&alg) {
        Ok(())
    } else {
        Err(incompatible(alg.as_str(), spec))
    }
}

/// Checks a Sign/Verify/GenerateMac/VerifyMac message: 1..=4096 bytes, and the rules
/// tying `MessageType` to the signing algorithm: DIGEST is exactly the algorithm's hash
/// (ED25519_PH_SHA_512 takes only DIGEST, ED25519_SHA_512 only RAW), EXTERNAL_MU is 64
/// bytes and only for ML_DSA_SHAKE_256, which takes no DIGEST.
pub fn check_message(
    msg: &[u8],
    ty: MessageType,
    alg: Option<SigningAlgorithm>,
) -> Result<(), KmsError> {
    use MessageType::{Digest, ExternalMu, Raw};
    use SigningAlgorithm::{Ed25519PhSha512, Ed25519Sha512, MlDsaShake256};
    super::constraints::length(msg.len(), None, "message", 1, MAX_MESSAGE)?;
    let Some(a) = alg else {
        return Ok(());
    };
    let invalid = |m: String| Err(KmsError::Validation(m));
    match (a, ty) {
        (Ed25519Sha512 | MlDsaShake256, Raw) => Ok(()),
        (Ed25519Sha512, _) => invalid(format!(
            "The ED25519_SHA_512 signing algorithm requires MessageType RAW, not {ty}."
        )),
        (Ed25519PhSha512, Raw | ExternalMu) => invalid(format!(
            "The ED25519_PH_SHA_512 signing algorithm requires MessageType DIGEST, not {ty}."
        )),
        (MlDsaShake256, ExternalMu) if msg.len() != 64 => invalid(
            "When the value of MessageType is EXTERNAL_MU the length of the Message value must be 64 bytes."
                .into(),
        ),
        (MlDsaShake256, ExternalMu) => Ok(()),
        (MlDsaShake256, Digest) => invalid(
            "The ML_DSA_SHAKE_256 signing algorithm takes MessageType RAW or EXTERNAL_MU, not DIGEST."
                .into(),
        ),
        (_, ExternalMu) => invalid(format!(
            "MessageType EXTERNAL_MU is valid only with the ML_DSA_SHAKE_256 signing algorithm, not {a}."
        )),
        (_, Digest) => {
            let want = a.digest().map_or(0, |d| d.output_len());
            if msg.len() != want {
                return invalid(format!(
                    "Digest is invalid length for algorithm {a}: a DIGEST message for {a} must be {want} bytes, got {}.",
                    msg.len()
                ));
            }
            Ok(())
        }
        (_, Raw) => Ok(()),
    }
}

mod material;

mod ecdh;
mod ed25519;
mod mldsa;

pub use material::{
    DataKeyPair, EccKey, KeyMaterial, KeyPairMaterial, PublicKeyInfo, RsaKey, SharedSecret,
    generate_key_pair, parse_key_pair_spec,
};

#[cfg(test)]
mod tests;
