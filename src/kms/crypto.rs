//! Cryptographic primitives of the embedded KMS (all from aws-lc-rs): the root key that
//! seals material at rest, backing keys, the ciphertext blob format and the encryption
//! context encoding. The blob format is documented in `docs/kms-ciphertext.md`.
//!
//! Invariants:
//! - key bytes live only in `Zeroizing` buffers or inside aws-lc-rs key objects, and no
//!   type here prints key bytes in `Debug`;
//! - parsing a blob never panics on any input (property-tested);
//! - the encryption context encoding is injective and independent of insertion order.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{EncryptionContext, KmsError};

/// Length of AES-256 key material in bytes.
pub const KEY_LEN: usize = 32;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Version byte of the ciphertext blob format.
pub const BLOB_VERSION: u8 = 1;
/// Bytes before the ciphertext: version(1) + key id(16) + backing version(4) + nonce(12).
pub const BLOB_HEADER_LEN: usize = 1 + 16 + 4 + NONCE_LEN;
/// Largest plaintext `Encrypt` accepts.
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest ciphertext blob AWS KMS accepts (ours are at most 4145 bytes).
pub const MAX_BLOB: usize = 6144;

const CONTEXT_DOMAIN: &[u8] = b"sealgate-kms-context-v1";
const MATERIAL_DOMAIN: &[u8] = b"sealgate-kms-material-v1";
const KCV_DOMAIN: &[u8] = b"sealgate-kms-root-key-check-v1";
const HKDF_SALT: &[u8] = b"sealgate-kms-hkdf-v1";

/// Fills a buffer from the aws-lc-rs system RNG.
pub fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| KmsError::Internal("the random number generator failed".into()))?;
    Ok(buf)
}

fn random_nonce() -> Result<[u8; NONCE_LEN], KmsError> {
    let mut n = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut n)
        .map_err(|_| KmsError::Internal("the random number generator failed".into()))?;
    Ok(n)
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, KmsError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| KmsError::Internal("invalid AES-256 key length".into()))
}

/// The 32-byte root key that seals all key material at rest. Never stored in the database.
///
/// During a root-key rotation it carries the previous root key too
/// ([`RootKey::with_previous`]): what is read (sealed material, authenticated rows, the
/// audit chain, import tokens) may be under either key; what is written is under this
/// one. docs/design/root-key-rotation.md.
pub struct RootKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
    previous: Option<Box<RootKey>>,
    /// Seal under the previous key: the database's check value is still the previous
    /// key's (instances restarted with both keys before the rotation ran), and an
    /// instance that has the previous key only must still read what this one writes.
    /// Shared with the store's row sealer.
    seal_previous: Arc<AtomicBool>,
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

impl RootKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KmsError> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            KmsError::Config(format!(
                "the KMS root key must be exactly {KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Self {
            aead: aes_key(&arr)?,
            bytes: Zeroizing::new(arr),
            previous: None,
            seal_previous: Arc::new(AtomicBool::new(false)),
        })
    }

    /// This key, accepting what `previous` sealed or authenticated (a rotation in
    /// progress). `previous` must be another key.
    pub fn with_previous(mut self, previous: RootKey) -> Result<Self, KmsError> {
        if previous.bytes.as_ref() == self.bytes.as_ref() {
            return Err(KmsError::Config(
                "the previous KMS root key is the root key itself: give the key the database was sealed under before the rotation".into(),
            ));
        }
        self.previous = Some(Box::new(RootKey {
            previous: None,
            seal_previous: Arc::new(AtomicBool::new(false)),
            ..previous
        }));
        Ok(self)
    }

    /// Seals under this key from now on (the rotation itself).
    pub(crate) fn seal_under_current(&self) {
        self.seal_previous.store(false, Ordering::SeqCst);
    }

    /// The flag that says so (`store::Rows::follow_check_value` sets it).
    pub(crate) fn seal_previous_flag(&self) -> Arc<AtomicBool> {
        self.seal_previous.clone()
    }

    /// Whether new material, rows and audit records go under the previous key.
    pub(crate) fn seals_under_previous(&self) -> bool {
        self.previous.is_some() && self.seal_previous.load(Ordering::SeqCst)
    }

    /// The key new material and import tokens are sealed under (see `seal_previous`).
    pub(crate) fn sealing(&self) -> &RootKey {
        match self.previous() {
            Some(p) if self.seal_previous.load(Ordering::SeqCst) => p,
            _ => self,
        }
    }

    /// This key alone, without the previous one.
    pub(crate) fn without_previous(&self) -> Result<RootKey, KmsError> {
        RootKey::from_bytes(self.bytes.as_ref())
    }

    /// The previous root key, during a rotation.
    pub fn previous(&self) -> Option<&RootKey> {
        self.previous.as_deref()
    }

    /// Parses the textual forms accepted in files and env vars: 64 hex digits or
    /// standard base64 of 32 bytes (surrounding whitespace ignored). A file may also hold
    /// the 32 raw bytes.
    pub fn parse(raw: &[u8], source: &str) -> Result<Self, KmsError> {
        Self::from_bytes(&Self::parse_bytes(raw, source)?)
    }

    /// The 32 bytes of a root key in one of [`RootKey::parse`]'s forms (what
    /// `sealgate kms seal-root` seals).
    pub fn parse_bytes(raw: &[u8], source: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        use base64::Engine;
        if raw.len() == KEY_LEN {
            return Ok(Zeroizing::new(raw.to_vec()));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|_| {
                KmsError::Config(format!(
                    "{source}: root key must be 32 raw bytes, 64 hex digits or base64"
                ))
            })?
            .trim();
        let decoded = Zeroizing::new(if text.len() == 2 * KEY_LEN {
            hex::decode(text)
                .map_err(|_| KmsError::Config(format!("{source}: root key is not valid hex")))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| {
                    KmsError::Config(format!(
                        "{source}: root key must be 64 hex digits or base64 of 32 bytes"
                    ))
                })?
        });
        if decoded.len() != KEY_LEN {
            return Err(KmsError::Config(format!(
                "{source}: the KMS root key must be exactly {KEY_LEN} bytes, got {}",
                decoded.len()
            )));
        }
        Ok(decoded)
    }

    /// Key-check value: HMAC-SHA256(root key, domain). Stored in the database so a wrong
    /// root key is detected without revealing anything about the key.
    pub fn check_value(&self) -> Vec<u8> {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_ref());
        hmac::sign(&k, KCV_DOMAIN).as_ref().to_vec()
    }

    /// A 32-byte key for one purpose, HMAC-SHA256(root key, `label`): independent keys
    /// (import tokens, material check values) without storing anything.
    pub(crate) fn derive(&self, label: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_ref());
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        out.copy_from_slice(hmac::sign(&k, label).as_ref());
        out
    }

    /// An HMAC-SHA256 key for one purpose, derived with HKDF-SHA256 (RFC 5869) from the
    /// root key with `info` naming the purpose: the audit chain's MAC key and the database
    /// rows' authentication key, independent of each other and of everything the root
    /// key seals. Nothing derived is ever stored.
    pub(crate) fn hkdf_hmac_key(&self, info: &[u8]) -> hmac::Key {
        let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, HKDF_SALT)
            .extract(self.bytes.as_ref());
        match prk.expand(&[info], hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            // expand fails only for outputs longer than 255 hash lengths; 32 bytes is not.
            Err(_) => hmac::Key::new(hmac::HMAC_SHA256, &self.derive(info)[..]),
        }
    }

    /// Seals backing-key material: nonce || ciphertext || tag, AAD binds key id + version.
    /// Under the previous key while the database is (see `seal_previous`).
    pub fn seal_material(
        &self,
        key_id: &Uuid,
        version: u32,
        material: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.sealing().seal_material_here(key_id, version, material)
    }

    fn seal_material_here(
        &self,
        key_id: &Uuid,
        version: u32,
        material: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let nonce = random_nonce()?;
        let mut out = Vec::with_capacity(NONCE_LEN + material.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(material);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(material_aad(key_id, version)),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| KmsError::Internal("sealing key material failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens sealed AES material into a usable backing key.
    pub fn open_material(
        &self,
        key_id: &Uuid,
        version: u32,
        sealed: &[u8],
    ) -> Result<BackingKey, KmsError> {
        let raw = self.open_raw(key_id, version, sealed)?;
        BackingKey::from_material(&raw)
    }

    /// Opens sealed material of any kind (AES or HMAC key bytes, PKCS#8 private keys),
    /// sealed under this key or (during a rotation) the previous one.
    pub fn open_raw(
        &self,
        key_id: &Uuid,
        version: u32,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        match (self.open_raw_here(key_id, version, sealed), self.previous()) {
            (Err(_), Some(p)) => p.open_raw_here(key_id, version, sealed),
            (r, _) => r,
        }
    }

    fn open_raw_here(
        &self,
        key_id: &Uuid,
        version: u32,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let corrupt = || {
            KmsError::Internal(format!(
                "stored material of key {key_id} v{version} is corrupt"
            ))
        };
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt());
        }
        let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().map_err(|_| corrupt())?;
        let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
        let len = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(material_aad(key_id, version)),
                &mut buf,
            )
            .map_err(|_| corrupt())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

fn material_aad(key_id: &Uuid, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(MATERIAL_DOMAIN.len() + 20);
    aad.extend_from_slice(MATERIAL_DOMAIN);
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// One version of a KMS key's AES-256 material, ready to use: in memory (the raw bytes
/// are not kept; aws-lc-rs holds the expanded key schedule), or a key in a custom key
/// store's token, which does the AES-GCM itself. Both produce the same blobs.
pub struct BackingKey {
    backing: Backing,
}

enum Backing {
    Local(LessSafeKey),
    Hsm(HsmKey),
}

/// A key that lives in a custom key store's token (`super::key_stores`).
pub(crate) struct HsmKey {
    pub stores: std::sync::Arc<super::key_stores::KeyStores>,
    pub store_id: String,
    /// The token object's label (the KMS key id).
    pub label: String,
}

impl fmt::Debug for BackingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackingKey(<redacted>)")
    }
}

impl BackingKey {
    pub fn from_material(material: &[u8]) -> Result<Self, KmsError> {
        Ok(Self {
            backing: Backing::Local(aes_key(material)?),
        })
    }

    /// A key in a custom key store's token.
    pub(crate) fn in_hsm(key: HsmKey) -> Self {
        Self {
            backing: Backing::Hsm(key),
        }
    }

    /// Fresh random material: returns the key and its raw bytes (to be sealed, then dropped).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), KmsError> {
        let raw = random_bytes(KEY_LEN)?;
        Ok((Self::from_material(&raw)?, raw))
    }

    /// Produces a version-1 ciphertext blob.
    pub fn encrypt(
        &self,
        key_id: &Uuid,
        version: u32,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KmsError> {
        self.encrypt_with_nonce(key_id, version, random_nonce()?, plaintext, ctx)
    }

    pub(crate) fn encrypt_with_nonce(
        &self,
        key_id: &Uuid,
        version: u32,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KmsError> {
        let mut blob = Vec::with_capacity(BLOB_HEADER_LEN + plaintext.len() + TAG_LEN);
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(key_id.as_bytes());
        blob.extend_from_slice(&version.to_be_bytes());
        blob.extend_from_slice(&nonce);
        let aad = blob_aad(&blob, ctx);
        match &self.backing {
            Backing::Local(aead) => {
                blob.extend_from_slice(plaintext);
                let tag = aead
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut blob[BLOB_HEADER_LEN..],
                    )
                    .map_err(|_| KmsError::Internal("encryption failed".into()))?;
                blob.extend_from_slice(tag.as_ref());
            }
            Backing::Hsm(k) => {
                let sealed = k
                    .stores
                    .encrypt(&k.store_id, &k.label, &nonce, &aad, plaintext)?;
                blob.extend_from_slice(&sealed);
            }
        }
        Ok(blob)
    }

    /// Decrypts a parsed blob; any mismatch (key, context, tampering) is InvalidCiphertext.
    pub fn decrypt(
        &self,
        blob: &ParsedBlob<'_>,
        ctx: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let aad = blob_aad(blob.header, ctx);
        let aead = match &self.backing {
            Backing::Local(aead) => aead,
            Backing::Hsm(k) => {
                return k
                    .stores
                    .decrypt(&k.store_id, &k.label, &blob.nonce, &aad, blob.sealed);
            }
        };
        let mut buf = Zeroizing::new(blob.sealed.to_vec());
        let len = aead
            .open_in_place(
                Nonce::assume_unique_for_key(blob.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| invalid_ciphertext())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

pub(crate) fn invalid_ciphertext() -> KmsError {
    KmsError::InvalidCiphertext(
        "The ciphertext is invalid, was not produced by this KMS (or its KMS key no longer exists), or the encryption context does not match."
            .into(),
    )
}

/// AAD of a blob: the blob header followed by the encoded encryption context.
fn blob_aad(header: &[u8], ctx: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 64);
    aad.extend_from_slice(&header[..BLOB_HEADER_LEN]);
    aad.extend_from_slice(&encode_context(ctx));
    aad
}

/// Injective encoding of an encryption context: domain string, pair count, then each
/// pair in key order as u32-BE-length-prefixed UTF-8 key and value.
pub fn encode_context(ctx: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTEXT_DOMAIN.len() + 4 + ctx.len() * 16);
    out.extend_from_slice(CONTEXT_DOMAIN);
    out.extend_from_slice(&(ctx.len() as u32).to_be_bytes());
    for (k, v) in ctx {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// A syntactically valid blob, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub struct ParsedBlob<'a> {
    pub key_id: Uuid,
    pub version: u32,
    pub nonce: [u8; NONCE_LEN],
    header: &'a [u8],
    /// ciphertext || tag
    sealed: &'a [u8],
}

/// Parses a ciphertext blob. Never panics; anything malformed is InvalidCiphertext.
pub fn parse_blob(blob: &[u8]) -> Result<ParsedBlob<'_>, KmsError> {
    if blob.len() < BLOB_HEADER_LEN + TAG_LEN || blob.len() > MAX_BLOB {
        return Err(invalid_ciphertext());
    }
    let (header, sealed) = blob.split_at(BLOB_HEADER_LEN);
    if header[0] != BLOB_VERSION {
        return Err(invalid_ciphertext());
    }
    let key_id = Uuid::from_slice(&header[1..17]).map_err(|_| invalid_ciphertext())?;
    let version = u32::from_be_bytes(
        header[17..21]
            .try_into()
            .map_err(|_| invalid_ciphertext())?,
    );
    let nonce = header[21..BLOB_HEADER_LEN]
        .try_into()
        .map_err(|_| invalid_ciphertext())?;
    Ok(ParsedBlob {
        key_id,
        version,
        nonce,
        header,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        crate::test_support::pairs(pairs)
    }

    #[test]
    fn context_encoding_distinguishes_shifted_boundaries() {
        assert_ne!(
            encode_context(&ctx(&[("a", "bc")])),
            encode_context(&ctx(&[("ab", "c")]))
        );
        assert_ne!(
            encode_context(&ctx(&[("a", "b"), ("c", "d")])),
            encode_context(&ctx(&[("a", "b\0\0\0\u{1}c"), ("", "d")]))
        );
    }

    #[test]
    fn context_encoding_is_order_independent() {
        let a: EncryptionContext = [("x", "1"), ("y", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let b: EncryptionContext = [("y", "2"), ("x", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(encode_context(&a), encode_context(&b));
    }

    #[test]
    fn blob_with_context_a_bc_does_not_decrypt_under_ab_c() {
        let (k, _) = BackingKey::generate().unwrap();
        let id = Uuid::new_v4();
        let blob = k.encrypt(&id, 1, b"secret", &ctx(&[("a", "bc")])).unwrap();
        let parsed = parse_blob(&blob).unwrap();
        assert_eq!(
            k.decrypt(&parsed, &ctx(&[("ab", "c")]))
                .unwrap_err()
                .aws_type(),
            "InvalidCiphertextException"
        );
        assert_eq!(
            &k.decrypt(&parsed, &ctx(&[("a", "bc")])).unwrap()[..],
            b"secret"
        );
    }

    #[test]
    fn tampered_header_fails_authentication() {
        let (k, _) = BackingKey::generate().unwrap();
        let id = Uuid::new_v4();
        let mut blob = k.encrypt(&id, 1, b"x", &EncryptionContext::new()).unwrap();
        blob[20] ^= 1; // version field
        let parsed = parse_blob(&blob).unwrap();
        assert!(k.decrypt(&parsed, &EncryptionContext::new()).is_err());
    }

    #[test]
    fn root_key_parses_hex_base64_and_raw_and_rejects_short() {
        let hex64 = "00".repeat(32);
        assert!(RootKey::parse(hex64.as_bytes(), "t").is_ok());
        assert!(RootKey::parse(&[7u8; 32], "t").is_ok());
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(RootKey::parse(b64.as_bytes(), "t").is_ok());
        let err = RootKey::parse(b"abcd", "t").unwrap_err();
        assert_eq!(err.aws_type(), "KMSInternalException");
        assert!(!format!("{:?}", RootKey::from_bytes(&[9u8; 32]).unwrap()).contains('9'));
    }

    #[test]
    fn sealed_material_is_bound_to_key_id_and_version() {
        let root = RootKey::from_bytes(&[1u8; 32]).unwrap();
        let id = Uuid::new_v4();
        let sealed = root.seal_material(&id, 2, &[5u8; 32]).unwrap();
        assert!(root.open_material(&id, 2, &sealed).is_ok());
        assert!(root.open_material(&id, 3, &sealed).is_err());
        assert!(root.open_material(&Uuid::new_v4(), 2, &sealed).is_err());
    }

    /// Golden vector published in docs/kms-ciphertext.md.
    #[test]
    fn golden_vector_matches_documentation() {
        let material: Vec<u8> = (0u8..32).collect();
        let k = BackingKey::from_material(&material).unwrap();
        let id = Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap();
        let nonce: [u8; 12] = std::array::from_fn(|i| 0xa0 + i as u8);
        let c = ctx(&[("aws:s3:arn", "arn:aws:s3:::bucket/key")]);
        let blob = k
            .encrypt_with_nonce(&id, 1, nonce, b"hello kms", &c)
            .unwrap();
        assert_eq!(hex::encode(&blob), GOLDEN_BLOB_HEX);
        let empty = k
            .encrypt_with_nonce(&id, 2, nonce, b"", &EncryptionContext::new())
            .unwrap();
        assert_eq!(hex::encode(&empty), GOLDEN_EMPTY_HEX);
        let parsed = parse_blob(&blob).unwrap();
        assert_eq!((parsed.key_id, parsed.version), (id, 1));
        assert_eq!(&k.decrypt(&parsed, &c).unwrap()[..], b"hello kms");
        assert_eq!(
            hex::encode(encode_context(&c)),
            GOLDEN_CONTEXT_HEX,
            "context encoding"
        );
    }

    const GOLDEN_BLOB_HEX: &str = "011111111122224333844455555555555500000001a0a1a2a3a4a5a6a7a8a9aaab8e7d10412aeb69d211596563cea5cf721af7e9695a86604767";
    const GOLDEN_EMPTY_HEX: &str = "011111111122224333844455555555555500000002a0a1a2a3a4a5a6a7a8a9aaabede3ade2e5039bf0f4db10ab3db5b3ac";
    const GOLDEN_CONTEXT_HEX: &str = "7365616c676174652d6b6d732d636f6e746578742d7631000000010000000a6177733a73333a61726e0000001761726e3a6177733a73333a3a3a6275636b65742f6b6579";

    proptest! {
        #[test]
        fn parse_blob_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_blob(&data);
        }

        #[test]
        fn truncated_blobs_never_decrypt(cut in 0usize..60) {
            let (k, _) = BackingKey::generate().unwrap();
            let id = Uuid::new_v4();
            let blob = k.encrypt(&id, 1, b"0123456789", &EncryptionContext::new()).unwrap();
            let short = &blob[..cut.min(blob.len() - 1)];
            let ok = parse_blob(short).and_then(|p| k.decrypt(&p, &EncryptionContext::new()));
            prop_assert!(ok.is_err());
        }
    }
}
