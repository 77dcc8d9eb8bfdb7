//! The cryptography of importing key material (BYOK, Origin `EXTERNAL`): RSA wrapping
//! keys, import tokens, unwrapping `EncryptedKeyMaterial`, and the material check value.
//!
//! Import tokens carry their own wrapping private key, sealed: GetParametersForImport
//! generates a fresh RSA key pair, returns the public half (DER SubjectPublicKeyInfo) and
//! a token = header || nonce || AES-256-GCM(token key, PKCS#8 private key) || tag, where
//! the token key is derived from the root key and the header (format version, KMS key id,
//! wrapping key spec, wrapping algorithm, expiry) is the AAD. So nothing is written to
//! the database, the private key never leaves sealgate in the clear, and a token cannot
//! be edited (another key id, algorithm or expiry) or forged without the root key.
//!
//! Invariants: the private key and unwrapped material live only in `Zeroizing` buffers
//! or aws-lc-rs key objects; parsing a token or unwrapping never panics on any input;
//! every failure maps to the AWS exception for it (InvalidImportToken,
//! ExpiredImportToken, InvalidCiphertext).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::hmac;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    PrivateDecryptingKey,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::KmsError;
use super::crypto::{KEY_LEN, RootKey, TAG_LEN, invalid_ciphertext, random_bytes};

/// How long GetParametersForImport's public key and token are valid (AWS: 24 hours).
pub const PARAMETERS_VALID_MS: i64 = 24 * 60 * 60 * 1000;

const TOKEN_VERSION: u8 = 1;
const TOKEN_KEY_LABEL: &[u8] = b"sealgate-kms-import-token-v1";
const CHECK_VALUE_LABEL: &[u8] = b"sealgate-kms-import-check-value-v1";
/// version(1) + key id(16) + spec(1) + algorithm(1) + valid-to ms(8).
const TOKEN_HEADER_LEN: usize = 1 + 16 + 1 + 1 + 8;

/// `WrappingKeySpec`: the size of the RSA wrapping key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingKeySpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl WrappingKeySpec {
    /// Parses the API value (absent = RSA_2048).
    pub fn parse(s: Option<&str>) -> Result<Self, KmsError> {
        match s {
            None | Some("RSA_2048") => Ok(Self::Rsa2048),
            Some("RSA_3072") => Ok(Self::Rsa3072),
            Some("RSA_4096") => Ok(Self::Rsa4096),
            Some("SM2") => Err(KmsError::UnsupportedOperation(
                "WrappingKeySpec SM2 is only available in China Regions; sealgate supports RSA_2048, RSA_3072 and RSA_4096.".into(),
            )),
            Some(o) => Err(KmsError::constraint(
                o,
                "wrappingKeySpec",
                "Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]",
            )),
        }
    }

    fn size(self) -> KeySize {
        match self {
            Self::Rsa2048 => KeySize::Rsa2048,
            Self::Rsa3072 => KeySize::Rsa3072,
            Self::Rsa4096 => KeySize::Rsa4096,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Rsa2048 => 1,
            Self::Rsa3072 => 2,
            Self::Rsa4096 => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        [Self::Rsa2048, Self::Rsa3072, Self::Rsa4096]
            .into_iter()
            .find(|s| s.code() == c)
    }
}

/// `WrappingAlgorithm`: how the caller encrypts the material under the wrapping key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    /// RSA-OAEP (SHA-1, MGF1-SHA-1) of the material itself.
    RsaesOaepSha1,
    /// RSA-OAEP (SHA-256, MGF1-SHA-256) of the material itself.
    RsaesOaepSha256,
    /// RSA-OAEP-SHA-1 of a fresh 256-bit AES key || AES-KWP (RFC 5649) of the material.
    RsaAesKeyWrapSha1,
    /// RSA-OAEP-SHA-256 of a fresh 256-bit AES key || AES-KWP (RFC 5649) of the material.
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        match s {
            "RSAES_OAEP_SHA_1" => Ok(Self::RsaesOaepSha1),
            "RSAES_OAEP_SHA_256" => Ok(Self::RsaesOaepSha256),
            "RSA_AES_KEY_WRAP_SHA_1" => Ok(Self::RsaAesKeyWrapSha1),
            "RSA_AES_KEY_WRAP_SHA_256" => Ok(Self::RsaAesKeyWrapSha256),
            "RSAES_PKCS1_V1_5" => Err(KmsError::UnsupportedOperation(
                "WrappingAlgorithm RSAES_PKCS1_V1_5 is no longer supported; use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.".into(),
            )),
            "SM2PKE" => Err(KmsError::UnsupportedOperation(
                "WrappingAlgorithm SM2PKE is only available in China Regions.".into(),
            )),
            o => Err(KmsError::constraint(
                o,
                "wrappingAlgorithm",
                "Member must satisfy enum value set: [RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, SM2PKE]",
            )),
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            Self::RsaesOaepSha1 | Self::RsaAesKeyWrapSha1 => &OAEP_SHA1_MGF1SHA1,
            Self::RsaesOaepSha256 | Self::RsaAesKeyWrapSha256 => &OAEP_SHA256_MGF1SHA256,
        }
    }

    fn aes_key_wrap(self) -> bool {
        matches!(self, Self::RsaAesKeyWrapSha1 | Self::RsaAesKeyWrapSha256)
    }

    fn code(self) -> u8 {
        match self {
            Self::RsaesOaepSha1 => 1,
            Self::RsaesOaepSha256 => 2,
            Self::RsaAesKeyWrapSha1 => 3,
            Self::RsaAesKeyWrapSha256 => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        [
            Self::RsaesOaepSha1,
            Self::RsaesOaepSha256,
            Self::RsaAesKeyWrapSha1,
            Self::RsaAesKeyWrapSha256,
        ]
        .into_iter()
        .find(|a| a.code() == c)
    }
}

/// GetParametersForImport's answer.
pub struct ImportParameters {
    /// DER SubjectPublicKeyInfo of the RSA wrapping key.
    pub public_key: Vec<u8>,
    pub import_token: Vec<u8>,
    pub valid_to_ms: i64,
}

impl std::fmt::Debug for ImportParameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportParameters")
            .field(
                "public_key",
                &format_args!("<{} bytes>", self.public_key.len()),
            )
            .field("import_token", &"<redacted>")
            .field("valid_to_ms", &self.valid_to_ms)
            .finish()
    }
}

fn token_key(root: &RootKey) -> Result<LessSafeKey, KmsError> {
    let k = root.derive(TOKEN_KEY_LABEL);
    UnboundKey::new(&AES_256_GCM, k.as_ref())
        .map(LessSafeKey::new)
        .map_err(|_| KmsError::Internal("import token key setup failed".into()))
}

fn internal(what: &str) -> KmsError {
    KmsError::Internal(format!("{what} failed"))
}

/// Generates a wrapping key pair and its import token for `key_id`, valid for 24 hours
/// from `now_ms`.
pub fn new_parameters(
    root: &RootKey,
    key_id: &Uuid,
    spec: WrappingKeySpec,
    alg: WrappingAlgorithm,
    now_ms: i64,
) -> Result<ImportParameters, KmsError> {
    let private = PrivateDecryptingKey::generate(spec.size())
        .map_err(|_| internal("generating the RSA wrapping key"))?;
    let public: PublicKeyX509Der<'static> = private
        .public_key()
        .as_der()
        .map_err(|_| internal("encoding the wrapping public key"))?;
    let pkcs8: Pkcs8V1Der<'static> = private
        .as_der()
        .map_err(|_| internal("encoding the wrapping private key"))?;
    let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
    let valid_to_ms = now_ms.saturating_add(PARAMETERS_VALID_MS);

    let mut token = Vec::with_capacity(TOKEN_HEADER_LEN + NONCE_LEN + pkcs8.len() + TAG_LEN);
    token.push(TOKEN_VERSION);
    token.extend_from_slice(key_id.as_bytes());
    token.push(spec.code());
    token.push(alg.code());
    token.extend_from_slice(&valid_to_ms.to_be_bytes());
    let nonce: [u8; NONCE_LEN] = random_bytes(NONCE_LEN)?
        .as_slice()
        .try_into()
        .map_err(|_| internal("drawing a nonce"))?;
    let aad = token.clone();
    token.extend_from_slice(&nonce);
    let start = token.len();
    token.extend_from_slice(&pkcs8);
    let tag = token_key(root.sealing())?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut token[start..],
        )
        .map_err(|_| internal("sealing the import token"))?;
    token.extend_from_slice(tag.as_ref());
    Ok(ImportParameters {
        public_key: public.as_ref().to_vec(),
        import_token: token,
        valid_to_ms,
    })
}

/// An authenticated, unexpired import token for the right key.
pub struct OpenedToken {
    pub spec: WrappingKeySpec,
    pub alg: WrappingAlgorithm,
    key: OaepPrivateDecryptingKey,
}

impl std::fmt::Debug for OpenedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedToken")
            .field("spec", &self.spec)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn invalid_token(why: &str) -> KmsError {
    KmsError::InvalidImportToken(format!("The import token is invalid: {why}."))
}

/// Authenticates a token, then checks it names `key_id` and has not expired.
pub fn open_token(
    root: &RootKey,
    token: &[u8],
    key_id: &Uuid,
    now_ms: i64,
) -> Result<OpenedToken, KmsError> {
    if token.len() < TOKEN_HEADER_LEN + NONCE_LEN + TAG_LEN || token[0] != TOKEN_VERSION {
        return Err(invalid_token("it was not issued by GetParametersForImport"));
    }
    let (header, rest) = token.split_at(TOKEN_HEADER_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| invalid_token("it is truncated"))?;
    // A token issued before a root-key rotation opens under the previous root key.
    let open = |root: &RootKey| -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let mut buf = Zeroizing::new(sealed.to_vec());
        let n = token_key(root)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut buf,
            )
            .map_err(|_| invalid_token("it was altered or not issued by this KMS"))?
            .len();
        buf.truncate(n);
        Ok(buf)
    };
    let pkcs8 = match (open(root), root.previous()) {
        (Err(_), Some(p)) => open(p)?,
        (r, _) => r?,
    };
    let token_key_id = Uuid::from_slice(&header[1..17]).map_err(|_| invalid_token("bad key id"))?;
    if token_key_id != *key_id {
        return Err(invalid_token(
            "it was issued for a different KMS key (use the token from GetParametersForImport of this key)",
        ));
    }
    let spec = WrappingKeySpec::from_code(header[17]).ok_or_else(|| invalid_token("bad spec"))?;
    let alg = WrappingAlgorithm::from_code(header[18]).ok_or_else(|| invalid_token("bad alg"))?;
    let valid_to = i64::from_be_bytes(
        header[19..TOKEN_HEADER_LEN]
            .try_into()
            .map_err(|_| invalid_token("bad expiry"))?,
    );
    if now_ms >= valid_to {
        return Err(KmsError::ExpiredImportToken(
            "The import token has expired (tokens are valid for 24 hours); call GetParametersForImport again.".into(),
        ));
    }
    let private = PrivateDecryptingKey::from_pkcs8(&pkcs8)
        .map_err(|_| internal("loading the wrapping key"))?;
    let key =
        OaepPrivateDecryptingKey::new(private).map_err(|_| internal("loading the wrapping key"))?;
    Ok(OpenedToken { spec, alg, key })
}

impl OpenedToken {
    /// Unwraps `EncryptedKeyMaterial` with the token's wrapping key and algorithm. Any
    /// failure (wrong public key, algorithm, padding, length) is InvalidCiphertext.
    pub fn unwrap_material(&self, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let rsa_len = self.key.key_size_bytes();
        let (rsa_part, kwp_part) = if self.alg.aes_key_wrap() {
            if encrypted.len() <= rsa_len {
                return Err(invalid_ciphertext());
            }
            encrypted.split_at(rsa_len)
        } else {
            (encrypted, &[][..])
        };
        if rsa_part.len() != rsa_len {
            return Err(invalid_ciphertext());
        }
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let n = self
            .key
            .decrypt(self.alg.oaep(), rsa_part, &mut out, None)
            .map_err(|_| invalid_ciphertext())?
            .len();
        out.truncate(n);
        if !self.alg.aes_key_wrap() {
            return Ok(out);
        }
        // `out` is the ephemeral AES-256 key; unwrap the material with it (RFC 5649).
        if out.len() != KEY_LEN {
            return Err(invalid_ciphertext());
        }
        let kek = AesKek::new(&AES_256, &out).map_err(|_| invalid_ciphertext())?;
        let mut material = Zeroizing::new(vec![0u8; kwp_part.len()]);
        let n = kek
            .unwrap_with_padding(kwp_part, &mut material)
            .map_err(|_| invalid_ciphertext())?
            .len();
        material.truncate(n);
        Ok(material)
    }
}

/// Keyed check value of imported material for one key: HMAC-SHA256 under a root-derived
/// key over (key id || material), hex. Comparing it tells whether a re-import brings the
/// same material without keeping the material itself.
pub fn material_check_value(root: &RootKey, key_id: &Uuid, material: &[u8]) -> String {
    let k = root.derive(CHECK_VALUE_LABEL);
    let key = hmac::Key::new(hmac::HMAC_SHA256, k.as_ref());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(key_id.as_bytes());
    ctx.update(material);
    hex::encode(ctx.sign().as_ref())
}

/// The client's side of an import (what openssl does in the docs), for tests.
#[cfg(test)]
pub(crate) mod client {
    use super::*;
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};

    /// What a client does with the public key: RSA-OAEP (and AES-KWP for the hybrid).
    pub(crate) fn wrap(public_der: &[u8], alg: WrappingAlgorithm, material: &[u8]) -> Vec<u8> {
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap())
                .unwrap();
        let mut rsa_out = vec![0u8; public.ciphertext_size()];
        if !alg.aes_key_wrap() {
            return public
                .encrypt(alg.oaep(), material, &mut rsa_out, None)
                .unwrap()
                .to_vec();
        }
        let aes = [0x42u8; 32];
        let mut out = public
            .encrypt(alg.oaep(), &aes, &mut rsa_out, None)
            .unwrap()
            .to_vec();
        let mut wrapped = vec![0u8; material.len() + 16];
        let kek = AesKek::new(&AES_256, &aes).unwrap();
        out.extend_from_slice(kek.wrap_with_padding(material, &mut wrapped).unwrap());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::client::wrap;
    use super::*;
    use aws_lc_rs::rsa::PublicEncryptingKey;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;

    fn root() -> RootKey {
        RootKey::from_bytes(&[9u8; 32]).unwrap()
    }

    #[test]
    fn every_algorithm_round_trips_material_through_the_token() {
        let id = Uuid::new_v4();
        let material = [7u8; 32];
        for alg in [
            WrappingAlgorithm::RsaesOaepSha1,
            WrappingAlgorithm::RsaesOaepSha256,
            WrappingAlgorithm::RsaAesKeyWrapSha1,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
        ] {
            let p = new_parameters(&root(), &id, WrappingKeySpec::Rsa2048, alg, NOW).unwrap();
            assert_eq!(p.valid_to_ms, NOW + PARAMETERS_VALID_MS);
            let t = open_token(&root(), &p.import_token, &id, NOW + 1).unwrap();
            assert_eq!((t.spec, t.alg), (WrappingKeySpec::Rsa2048, alg));
            let got = t
                .unwrap_material(&wrap(&p.public_key, alg, &material))
                .unwrap();
            assert_eq!(&got[..], &material, "{alg:?}");
        }
    }

    #[test]
    fn rsa_3072_wrapping_key_has_a_384_byte_modulus() {
        let id = Uuid::new_v4();
        let alg = WrappingAlgorithm::RsaesOaepSha256;
        let p = new_parameters(&root(), &id, WrappingKeySpec::Rsa3072, alg, NOW).unwrap();
        let public = PublicEncryptingKey::from_der(&p.public_key).unwrap();
        assert_eq!(public.key_size_bits(), 3072);
        let t = open_token(&root(), &p.import_token, &id, NOW).unwrap();
        let got = t.unwrap_material(&wrap(&p.public_key, alg, &[1u8; 32]));
        assert_eq!(&got.unwrap()[..], &[1u8; 32]);
    }

    #[test]
    fn token_for_another_key_or_tampered_or_other_root_is_invalid() {
        let id = Uuid::new_v4();
        let alg = WrappingAlgorithm::RsaesOaepSha256;
        let p = new_parameters(&root(), &id, WrappingKeySpec::Rsa2048, alg, NOW).unwrap();
        let other = open_token(&root(), &p.import_token, &Uuid::new_v4(), NOW);
        assert_eq!(other.unwrap_err().aws_type(), "InvalidImportTokenException");
        for i in [0, 5, 18, 20, 40, p.import_token.len() - 1] {
            let mut t = p.import_token.clone();
            t[i] ^= 1;
            let r = open_token(&root(), &t, &id, NOW);
            assert_eq!(
                r.unwrap_err().aws_type(),
                "InvalidImportTokenException",
                "{i}"
            );
        }
        let wrong_root = RootKey::from_bytes(&[1u8; 32]).unwrap();
        let r = open_token(&wrong_root, &p.import_token, &id, NOW);
        assert_eq!(r.unwrap_err().aws_type(), "InvalidImportTokenException");
    }

    #[test]
    fn token_expires_after_24_hours() {
        let id = Uuid::new_v4();
        let alg = WrappingAlgorithm::RsaesOaepSha1;
        let p = new_parameters(&root(), &id, WrappingKeySpec::Rsa2048, alg, NOW).unwrap();
        assert!(open_token(&root(), &p.import_token, &id, p.valid_to_ms - 1).is_ok());
        let r = open_token(&root(), &p.import_token, &id, p.valid_to_ms);
        assert_eq!(r.unwrap_err().aws_type(), "ExpiredImportTokenException");
    }

    #[test]
    fn material_wrapped_with_the_wrong_algorithm_is_invalid_ciphertext() {
        let id = Uuid::new_v4();
        let p = new_parameters(
            &root(),
            &id,
            WrappingKeySpec::Rsa2048,
            WrappingAlgorithm::RsaesOaepSha256,
            NOW,
        )
        .unwrap();
        let t = open_token(&root(), &p.import_token, &id, NOW).unwrap();
        let sha1 = wrap(&p.public_key, WrappingAlgorithm::RsaesOaepSha1, &[3u8; 32]);
        let r = t.unwrap_material(&sha1);
        assert_eq!(r.unwrap_err().aws_type(), "InvalidCiphertextException");
        let hybrid = wrap(
            &p.public_key,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
            &[3u8; 32],
        );
        let r = t.unwrap_material(&hybrid);
        assert_eq!(r.unwrap_err().aws_type(), "InvalidCiphertextException");
    }

    #[test]
    fn check_value_depends_on_key_material_and_root() {
        let id = Uuid::new_v4();
        let a = material_check_value(&root(), &id, &[1u8; 32]);
        assert_eq!(a, material_check_value(&root(), &id, &[1u8; 32]));
        assert_ne!(a, material_check_value(&root(), &id, &[2u8; 32]));
        assert_ne!(
            a,
            material_check_value(&root(), &Uuid::new_v4(), &[1u8; 32])
        );
        let other_root = RootKey::from_bytes(&[1u8; 32]).unwrap();
        assert_ne!(a, material_check_value(&other_root, &id, &[1u8; 32]));
        assert!(!a.contains(&hex::encode([1u8; 32])));
    }

    #[test]
    fn unknown_and_unsupported_wrapping_parameters_are_refused() {
        assert_eq!(
            WrappingAlgorithm::parse("NOPE").unwrap_err().aws_type(),
            "ValidationException"
        );
        assert_eq!(
            WrappingAlgorithm::parse("RSAES_PKCS1_V1_5")
                .unwrap_err()
                .aws_type(),
            "UnsupportedOperationException"
        );
        assert_eq!(
            WrappingKeySpec::parse(Some("RSA_1024"))
                .unwrap_err()
                .aws_type(),
            "ValidationException"
        );
        assert_eq!(
            WrappingKeySpec::parse(None).unwrap(),
            WrappingKeySpec::Rsa2048
        );
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let r = open_token(&root(), &data, &Uuid::nil(), NOW);
            prop_assert!(r.is_err());
        }
    }
}
