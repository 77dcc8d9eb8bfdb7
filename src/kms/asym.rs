//! Key specs beyond AES: the key-spec / key-usage / algorithm tables of AWS KMS and the
//! in-memory key material of every kind (`KeyMaterial`: AES-256-GCM, RSA, ECDSA, HMAC).
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

use std::fmt;

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, ParsedPublicKey, RsaKeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::KmsError;
use super::crypto::{self, BackingKey, KEY_LEN};
use super::model::{KeyRecord, Op};

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
    /// `MessageType` of Sign/Verify: the message itself, or its digest.
    MessageType {
        Raw = "RAW",
        Digest = "DIGEST",
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
        if let Some(k) = Self::from_name(s) {
            return Ok(k);
        }
        match s {
            "SM2" | "ML_DSA_44" | "ML_DSA_65" | "ML_DSA_87" | "ECC_NIST_EDWARDS25519" => {
                Err(unsupported(s, "KeySpec"))
            }
            _ => Err(enum_error(
                s,
                field,
                &Self::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            )),
        }
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

    /// Asymmetric: has a public key (RSA or ECC).
    pub fn is_asymmetric(self) -> bool {
        self.is_rsa() || self.is_ecc()
    }

    /// The key usages AWS allows for this spec.
    pub fn usages(self) -> &'static [KeyUsageType] {
        use KeyUsageType::*;
        if self.is_symmetric() {
            &[EncryptDecrypt]
        } else if self.is_rsa() {
            &[EncryptDecrypt, SignVerify]
        } else if self.is_ecc() {
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
            _ => &[],
        }
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
        if let Some(u) = Self::from_name(s) {
            return Ok(u);
        }
        match s {
            "KEY_AGREEMENT" => Err(unsupported(s, "KeyUsage")),
            _ => Err(enum_error(
                s,
                "keyUsage",
                &[
                    "SIGN_VERIFY",
                    "ENCRYPT_DECRYPT",
                    "GENERATE_VERIFY_MAC",
                    "KEY_AGREEMENT",
                ],
            )),
        }
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
            "SM2DSA" | "ML_DSA_SHAKE_256" | "ED25519_SHA_512" | "ED25519_PH_SHA_512" => {
                Err(KmsError::InvalidKeyUsage(format!(
                    "Signing algorithm {s} is not supported by any key of sealgate's KMS."
                )))
            }
            _ => Err(enum_error(
                s,
                "signingAlgorithm",
                &Self::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            )),
        }
    }

    /// The hash the algorithm signs (a DIGEST message must be exactly this long).
    pub fn digest(self) -> &'static digest::Algorithm {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha256 | RsassaPkcs1V15Sha256 | EcdsaSha256 => &digest::SHA256,
            RsassaPssSha384 | RsassaPkcs1V15Sha384 | EcdsaSha384 => &digest::SHA384,
            RsassaPssSha512 | RsassaPkcs1V15Sha512 | EcdsaSha512 => &digest::SHA512,
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
            EcdsaSha256 | EcdsaSha384 | EcdsaSha512 => return None,
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
            EcdsaSha256 | EcdsaSha384 | EcdsaSha512 => return None,
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
            Some(s) => Self::from_name(s).ok_or_else(|| match s {
                "EXTERNAL_MU" => KmsError::InvalidKeyUsage(
                    "MessageType EXTERNAL_MU is valid only with ML_DSA keys.".into(),
                ),
                _ => enum_error(s, "messageType", &["RAW", "DIGEST", "EXTERNAL_MU"]),
            }),
        }
    }
}

/// The key-usage gate of an operation on a key (after the state table): what AWS answers
/// when the key's spec/usage does not fit the operation.
pub fn check_usage(rec: &KeyRecord, arn: &str, op: Op) -> Result<(), KmsError> {
    let (spec, usage) = (rec.key_spec, rec.key_usage);
    let name = op.action().trim_start_matches("kms:");
    let wrong_usage = |needs: &str| {
        KmsError::InvalidKeyUsage(format!(
            "{arn} has KeySpec {spec} and KeyUsage {usage}; {name} needs {needs}."
        ))
    };
    match op {
        Op::Encrypt | Op::Decrypt | Op::ReEncryptFrom | Op::ReEncryptTo
            if usage != KeyUsageType::EncryptDecrypt =>
        {
            Err(wrong_usage("KeyUsage ENCRYPT_DECRYPT"))
        }
        Op::GenerateDataKey
        | Op::GenerateDataKeyWithoutPlaintext
        | Op::GenerateDataKeyPair
        | Op::GenerateDataKeyPairWithoutPlaintext
            if !spec.is_symmetric() =>
        {
            Err(wrong_usage("a SYMMETRIC_DEFAULT key"))
        }
        Op::Sign | Op::Verify if usage != KeyUsageType::SignVerify => {
            Err(wrong_usage("KeyUsage SIGN_VERIFY"))
        }
        Op::GenerateMac | Op::VerifyMac if usage != KeyUsageType::GenerateVerifyMac => {
            Err(wrong_usage("KeyUsage GENERATE_VERIFY_MAC"))
        }
        Op::GetPublicKey if !spec.is_asymmetric() => Err(KmsError::UnsupportedOperation(format!(
            "{arn} is a {spec} key; GetPublicKey needs an asymmetric (RSA or ECC) key."
        ))),
        Op::EnableKeyRotation | Op::DisableKeyRotation | Op::RotateKeyOnDemand
            if !spec.is_symmetric() =>
        {
            Err(KmsError::UnsupportedOperation(format!(
                "{arn} is a {spec} key; key rotation is supported only for symmetric encryption KMS keys."
            )))
        }
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
    rec: &KeyRecord,
    alg: EncryptionAlgorithm,
) -> Result<(), KmsError> {
    if rec
        .key_spec
        .encryption_algorithms(rec.key_usage)
        .contains(&alg)
    {
        Ok(())
    } else {
        Err(incompatible(alg.as_str(), rec.key_spec))
    }
}

pub fn check_signing_algorithm(rec: &KeyRecord, alg: SigningAlgorithm) -> Result<(), KmsError> {
    if rec
        .key_spec
        .signing_algorithms(rec.key_usage)
        .contains(&alg)
    {
        Ok(())
    } else {
        Err(incompatible(alg.as_str(), rec.key_spec))
    }
}

pub fn check_mac_algorithm(rec: &KeyRecord, alg: MacAlgorithm) -> Result<(), KmsError> {
    if rec.key_spec.mac_algorithms().contains(&alg) {
        Ok(())
    } else {
        Err(incompatible(alg.as_str(), rec.key_spec))
    }
}

/// Checks a Sign/Verify/GenerateMac/VerifyMac message: 1..=4096 bytes, and for DIGEST
/// exactly the length of the algorithm's hash.
pub fn check_message(
    msg: &[u8],
    ty: MessageType,
    alg: Option<SigningAlgorithm>,
) -> Result<(), KmsError> {
    if msg.is_empty() || msg.len() > MAX_MESSAGE {
        return Err(KmsError::constraint(
            format!("<{} bytes>", msg.len()),
            "message",
            "Member must have length between 1 and 4096",
        ));
    }
    if let (MessageType::Digest, Some(a)) = (ty, alg) {
        let want = a.digest().output_len();
        if msg.len() != want {
            return Err(KmsError::Validation(format!(
                "Digest is invalid length for algorithm {a}: a DIGEST message for {a} must be {want} bytes, got {}.",
                msg.len()
            )));
        }
    }
    Ok(())
}

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
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            KeyMaterial::Aes(_) => "Aes",
            KeyMaterial::Rsa(_) => "Rsa",
            KeyMaterial::Ecc(_) => "Ecc",
            KeyMaterial::Hmac(_) => "Hmac",
        };
        write!(f, "KeyMaterial::{kind}(<redacted>)")
    }
}

impl KeyMaterial {
    /// Fresh material for `spec`: the usable key and the bytes to seal (AES / HMAC key
    /// bytes, PKCS#8 DER for RSA and ECC), which the caller seals and drops.
    pub fn generate(spec: KeySpec) -> Result<(Self, Zeroizing<Vec<u8>>), KmsError> {
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
        Ok((Self::from_raw(spec, &raw)?, raw))
    }

    /// Material from its unsealed bytes (see `generate`).
    pub fn from_raw(spec: KeySpec, raw: &[u8]) -> Result<Self, KmsError> {
        let corrupt = || KmsError::Internal(format!("stored {spec} key material is invalid"));
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

    /// DER SubjectPublicKeyInfo of an RSA/ECC key.
    pub fn public_key_der(&self) -> Option<&[u8]> {
        match self {
            KeyMaterial::Rsa(k) => Some(&k.public_der),
            KeyMaterial::Ecc(k) => Some(&k.public_der),
            _ => None,
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

    /// Sign (RSA PKCS#1 v1.5 / PSS, or DER-encoded ECDSA). `msg` has been checked by
    /// `check_message` and `alg` against the key.
    pub fn sign(
        &self,
        alg: SigningAlgorithm,
        ty: MessageType,
        msg: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let digest = || {
            Digest::import_less_safe(msg, alg.digest()).map_err(|_| {
                KmsError::Validation(format!("Digest is invalid length for algorithm {alg}."))
            })
        };
        match self {
            KeyMaterial::Rsa(k) => {
                let enc = alg.rsa_encoding().ok_or_else(|| internal("RSA signing"))?;
                let mut sig = vec![0u8; k.signer.public_modulus_len()];
                match ty {
                    MessageType::Raw => k.signer.sign(enc, &SystemRandom::new(), msg, &mut sig),
                    MessageType::Digest => k.signer.sign_digest(enc, &digest()?, &mut sig),
                }
                .map_err(|_| internal("RSA signing"))?;
                Ok(sig)
            }
            KeyMaterial::Ecc(k) => {
                let sig = match ty {
                    MessageType::Raw => k.signer.sign(&SystemRandom::new(), msg),
                    MessageType::Digest => k.signer.sign_digest(&digest()?),
                }
                .map_err(|_| internal("ECDSA signing"))?;
                Ok(sig.as_ref().to_vec())
            }
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
            _ => return Err(internal("verifying with a non-signing key")),
        };
        Ok(match ty {
            MessageType::Raw => key.verify_sig(msg, sig).is_ok(),
            MessageType::Digest => match Digest::import_less_safe(msg, alg.digest()) {
                Ok(d) => key.verify_digest_sig(&d, sig).is_ok(),
                Err(_) => false,
            },
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

/// Result of GetPublicKey.
#[derive(Debug, Clone)]
pub struct PublicKeyInfo {
    pub key_arn: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsageType,
}

/// Parses GenerateDataKeyPair's `KeyPairSpec` (RSA and ECC specs only).
pub fn parse_key_pair_spec(s: &str) -> Result<KeySpec, KmsError> {
    match KeySpec::from_name(s) {
        Some(k) if k.is_asymmetric() => Ok(k),
        _ if matches!(s, "SM2" | "ECC_NIST_EDWARDS25519") => Err(unsupported(s, "KeyPairSpec")),
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

/// A fresh key pair of an asymmetric spec.
pub fn generate_key_pair(spec: KeySpec) -> Result<KeyPairMaterial, KmsError> {
    let (m, raw) = KeyMaterial::generate(spec)?;
    let public_der = m
        .public_key_der()
        .ok_or_else(|| internal("key pair generation"))?
        .to_vec();
    Ok(KeyPairMaterial {
        private_pkcs8: raw,
        public_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNING_SPECS: [KeySpec; 7] = [
        KeySpec::Rsa2048,
        KeySpec::Rsa3072,
        KeySpec::Rsa4096,
        KeySpec::EccNistP256,
        KeySpec::EccNistP384,
        KeySpec::EccNistP521,
        KeySpec::EccSecgP256k1,
    ];

    #[test]
    fn spec_usage_table_matches_aws() {
        use KeyUsageType::*;
        for spec in KeySpec::ALL {
            for usage in KeyUsageType::ALL {
                let want = match (spec, usage) {
                    (KeySpec::SymmetricDefault, EncryptDecrypt) => true,
                    (s, EncryptDecrypt | SignVerify) if s.is_rsa() => true,
                    (s, SignVerify) if s.is_ecc() => true,
                    (s, GenerateVerifyMac) if s.is_hmac() => true,
                    _ => false,
                };
                let got = spec.check_usage(*usage);
                assert_eq!(got.is_ok(), want, "{spec} {usage}");
                if let Err(e) = got {
                    assert_eq!(e.aws_type(), "ValidationException");
                }
            }
        }
    }

    #[test]
    fn algorithm_lists_are_those_aws_describes() {
        let names = |v: &[SigningAlgorithm]| v.iter().map(|a| a.as_str()).collect::<Vec<_>>();
        assert_eq!(
            names(KeySpec::Rsa3072.signing_algorithms(KeyUsageType::SignVerify)),
            [
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512"
            ]
        );
        assert_eq!(
            names(KeySpec::EccNistP256.signing_algorithms(KeyUsageType::SignVerify)),
            ["ECDSA_SHA_256"]
        );
        assert_eq!(
            names(KeySpec::EccSecgP256k1.signing_algorithms(KeyUsageType::SignVerify)),
            ["ECDSA_SHA_256"]
        );
        assert_eq!(
            names(KeySpec::EccNistP384.signing_algorithms(KeyUsageType::SignVerify)),
            ["ECDSA_SHA_384"]
        );
        assert_eq!(
            names(KeySpec::EccNistP521.signing_algorithms(KeyUsageType::SignVerify)),
            ["ECDSA_SHA_512"]
        );
        assert!(
            KeySpec::Rsa2048
                .signing_algorithms(KeyUsageType::EncryptDecrypt)
                .is_empty()
        );
        assert_eq!(
            KeySpec::Rsa4096.encryption_algorithms(KeyUsageType::EncryptDecrypt),
            [
                EncryptionAlgorithm::RsaesOaepSha1,
                EncryptionAlgorithm::RsaesOaepSha256
            ]
        );
        assert_eq!(
            KeySpec::SymmetricDefault.encryption_algorithms(KeyUsageType::EncryptDecrypt),
            [EncryptionAlgorithm::SymmetricDefault]
        );
        assert_eq!(
            KeySpec::Hmac224.mac_algorithms(),
            [MacAlgorithm::HmacSha224]
        );
        assert!(KeySpec::Rsa2048.mac_algorithms().is_empty());
    }

    #[test]
    fn names_parse_round_trip_and_unknown_names_are_validation_errors() {
        for s in KeySpec::ALL {
            assert_eq!(KeySpec::parse(s.as_str(), "keySpec").unwrap(), *s);
        }
        for a in SigningAlgorithm::ALL {
            assert_eq!(SigningAlgorithm::parse(a.as_str()).unwrap(), *a);
        }
        assert_eq!(
            KeySpec::parse("RSA_1024", "keySpec")
                .unwrap_err()
                .aws_type(),
            "ValidationException"
        );
        assert_eq!(
            KeySpec::parse("SM2", "keySpec").unwrap_err().aws_type(),
            "UnsupportedOperationException"
        );
        assert_eq!(
            SigningAlgorithm::parse("RSASSA_PSS_MD5")
                .unwrap_err()
                .aws_type(),
            "ValidationException"
        );
        assert_eq!(
            MacAlgorithm::parse("HMAC_SHA_1").unwrap_err().aws_type(),
            "ValidationException"
        );
        assert_eq!(
            EncryptionAlgorithm::parse(None, "encryptionAlgorithm").unwrap(),
            EncryptionAlgorithm::SymmetricDefault
        );
        assert_eq!(MessageType::parse(None).unwrap(), MessageType::Raw);
        assert!(MessageType::parse(Some("HASH")).is_err());
        assert!(parse_key_pair_spec("HMAC_256").is_err());
        assert_eq!(
            parse_key_pair_spec("ECC_SECG_P256K1").unwrap(),
            KeySpec::EccSecgP256k1
        );
        // Stored as the AWS name, so records stay readable as JSON.
        assert_eq!(
            serde_json::to_string(&KeySpec::EccSecgP256k1).unwrap(),
            "\"ECC_SECG_P256K1\""
        );
    }

    #[test]
    fn sign_verify_round_trips_for_every_spec_and_algorithm_raw_and_digest() {
        for spec in SIGNING_SPECS {
            let (m, raw) = KeyMaterial::generate(spec).unwrap();
            // Unsealed bytes rebuild the same key.
            let again = KeyMaterial::from_raw(spec, &raw).unwrap();
            assert_eq!(again.public_key_der(), m.public_key_der());
            for alg in spec.signing_algorithms(KeyUsageType::SignVerify) {
                let msg = b"message to sign";
                let sig = m.sign(*alg, MessageType::Raw, msg).unwrap();
                assert!(
                    again.verify(*alg, MessageType::Raw, msg, &sig).unwrap(),
                    "{spec} {alg}"
                );
                assert!(!m.verify(*alg, MessageType::Raw, b"other", &sig).unwrap());
                // DIGEST of the same message verifies the RAW signature and vice versa.
                let d = digest::digest(alg.digest(), msg);
                assert!(
                    m.verify(*alg, MessageType::Digest, d.as_ref(), &sig)
                        .unwrap()
                );
                let dsig = m.sign(*alg, MessageType::Digest, d.as_ref()).unwrap();
                assert!(
                    m.verify(*alg, MessageType::Raw, msg, &dsig).unwrap(),
                    "{spec} {alg}"
                );
                let mut bad = sig.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(!m.verify(*alg, MessageType::Raw, msg, &bad).unwrap());
                assert!(!m.verify(*alg, MessageType::Raw, msg, &[]).unwrap());
            }
        }
    }

    #[test]
    fn digest_length_must_match_the_algorithm() {
        let sha256 = [7u8; 32];
        check_message(
            &sha256,
            MessageType::Digest,
            Some(SigningAlgorithm::EcdsaSha256),
        )
        .unwrap();
        for (alg, ok_len) in [
            (SigningAlgorithm::EcdsaSha384, 48),
            (SigningAlgorithm::RsassaPssSha512, 64),
            (SigningAlgorithm::RsassaPkcs1V15Sha256, 32),
        ] {
            let e = check_message(&[1u8; 20], MessageType::Digest, Some(alg)).unwrap_err();
            assert_eq!(e.aws_type(), "ValidationException");
            check_message(&vec![1u8; ok_len], MessageType::Digest, Some(alg)).unwrap();
        }
        // RAW has no length relation, but 1..=4096 bytes.
        check_message(
            &[1u8; 20],
            MessageType::Raw,
            Some(SigningAlgorithm::EcdsaSha384),
        )
        .unwrap();
        assert!(check_message(&[], MessageType::Raw, None).is_err());
        assert!(check_message(&[0u8; 4097], MessageType::Raw, None).is_err());
        check_message(&[0u8; 4096], MessageType::Raw, None).unwrap();
    }

    #[test]
    fn rsa_oaep_plaintext_limits_are_awss() {
        let cases = [
            (KeySpec::Rsa2048, 214, 190),
            (KeySpec::Rsa3072, 342, 318),
            (KeySpec::Rsa4096, 470, 446),
        ];
        for (spec, sha1, sha256) in cases {
            let (m, _) = KeyMaterial::generate(spec).unwrap();
            for (alg, max) in [
                (EncryptionAlgorithm::RsaesOaepSha1, sha1),
                (EncryptionAlgorithm::RsaesOaepSha256, sha256),
            ] {
                assert_eq!(m.max_rsa_plaintext(alg).unwrap(), max, "{spec} {alg}");
                let pt = vec![0x5a; max];
                let ct = m.rsa_encrypt(spec, alg, &pt).unwrap();
                assert_eq!(ct.len() * 8, spec.as_str()[4..].parse::<usize>().unwrap());
                assert_eq!(&m.rsa_decrypt(alg, &ct).unwrap()[..], &pt[..]);
                let too_big = m.rsa_encrypt(spec, alg, &vec![0; max + 1]).unwrap_err();
                assert_eq!(too_big.aws_type(), "ValidationException");
                // The other OAEP hash, a short or a flipped ciphertext: InvalidCiphertext.
                let other = if alg == EncryptionAlgorithm::RsaesOaepSha1 {
                    EncryptionAlgorithm::RsaesOaepSha256
                } else {
                    EncryptionAlgorithm::RsaesOaepSha1
                };
                let e = m.rsa_decrypt(other, &ct).unwrap_err();
                assert_eq!(e.aws_type(), "InvalidCiphertextException");
                let e = m.rsa_decrypt(alg, &ct[1..]).unwrap_err();
                assert_eq!(e.aws_type(), "InvalidCiphertextException");
            }
        }
    }

    #[test]
    fn hmac_keys_have_spec_lengths_and_verify_in_constant_time() {
        for (spec, tag_len) in [
            (KeySpec::Hmac224, 28),
            (KeySpec::Hmac256, 32),
            (KeySpec::Hmac384, 48),
            (KeySpec::Hmac512, 64),
        ] {
            let (m, raw) = KeyMaterial::generate(spec).unwrap();
            assert_eq!(raw.len(), tag_len);
            let mac = m.mac(b"hello").unwrap();
            assert_eq!(mac.len(), tag_len);
            assert!(
                KeyMaterial::from_raw(spec, &raw)
                    .unwrap()
                    .verify_mac(b"hello", &mac)
                    .unwrap()
            );
            assert!(!m.verify_mac(b"hellO", &mac).unwrap());
            assert!(!m.verify_mac(b"hello", &mac[1..]).unwrap());
            assert!(KeyMaterial::from_raw(spec, &raw[1..]).is_err());
        }
    }

    #[test]
    fn symmetric_material_refuses_asymmetric_operations_and_vice_versa() {
        let (aes, raw) = KeyMaterial::generate(KeySpec::SymmetricDefault).unwrap();
        assert_eq!(raw.len(), KEY_LEN);
        assert!(aes.aes(KeySpec::SymmetricDefault).is_ok());
        assert!(aes.public_key_der().is_none());
        assert!(aes.mac(b"x").is_err());
        let (ec, _) = KeyMaterial::generate(KeySpec::EccNistP256).unwrap();
        let e = ec.aes(KeySpec::EccNistP256).unwrap_err();
        assert_eq!(e.aws_type(), "InvalidKeyUsageException");
        assert_eq!(
            e.to_string(),
            "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec ECC_NIST_P256."
        );
        assert!(
            ec.rsa_decrypt(EncryptionAlgorithm::RsaesOaepSha1, &[0; 256])
                .is_err()
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let (m, raw) = KeyMaterial::generate(KeySpec::EccNistP256).unwrap();
        let s = format!("{m:?}");
        assert_eq!(s, "KeyMaterial::Ecc(<redacted>)");
        assert!(!s.contains(&hex::encode(&raw[..])));
        let kp = generate_key_pair(KeySpec::EccNistP384).unwrap();
        let s = format!("{kp:?}");
        assert!(s.contains("<redacted>"));
        assert!(!s.contains(&hex::encode(&kp.private_pkcs8[..8])));
    }

    #[test]
    fn generated_key_pairs_are_pkcs8_and_spki_that_match() {
        for spec in [
            KeySpec::Rsa2048,
            KeySpec::EccNistP521,
            KeySpec::EccSecgP256k1,
        ] {
            let kp = generate_key_pair(spec).unwrap();
            let m = KeyMaterial::from_raw(spec, &kp.private_pkcs8).unwrap();
            assert_eq!(m.public_key_der(), Some(&kp.public_der[..]));
            let alg = spec.signing_algorithms(KeyUsageType::SignVerify)[0];
            let sig = m.sign(alg, MessageType::Raw, b"m").unwrap();
            // Verified independently of the pair's own verifier, from the SPKI alone.
            let verify: &'static dyn signature::VerificationAlgorithm = match spec {
                KeySpec::Rsa2048 => &signature::RSA_PKCS1_2048_8192_SHA256,
                KeySpec::EccNistP521 => &signature::ECDSA_P521_SHA512_ASN1,
                _ => &signature::ECDSA_P256K1_SHA256_ASN1,
            };
            let spki_key = signature::ParsedPublicKey::new(verify, &kp.public_der).unwrap();
            spki_key.verify_sig(b"m", &sig).unwrap();
        }
    }
}
