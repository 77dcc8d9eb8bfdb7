//! SSE-C: objects whose data key (DEK) is wrapped under a key the client sends with every
//! request (AWS's customer-provided keys). Format: `docs/format.md`, "SSE-C".
//!
//! - The DEK is random (no KMS is involved) and wrapped with AES-256-GCM under
//!   `HKDF-SHA256(salt, customer key, "sealgate ssec wrap" || 0 || arn:aws:s3:::BUCKET/KEY)`,
//!   so the wrap opens only for the object's own name.
//! - A salted key check (`HKDF-SHA256(salt, customer key, "sealgate ssec key check")`, 16
//!   bytes; AWS stores "a randomly salted HMAC value of the encryption key") decides
//!   whether a request's key is the object's before anything else is done with it: a
//!   wrong key is refused (403) without a byte served.
//!
//! Invariants: the customer key is never stored, forwarded or logged (its `Debug`
//! redacts, its bytes are zeroized); nothing stored is an unsalted function of it (not
//! even its MD5, which would let the store link objects sharing a key); checks compare in
//! constant time.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::crypto::format::{
    SALT_LEN, SSEC_CHECK_INFO, SSEC_UPLOAD_INFO, SSEC_WRAP_AAD, SSEC_WRAP_INFO,
};
use crate::crypto::stream::Dek;

/// Length of an SSE-C key (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of a wrapped data key: the DEK and the GCM tag.
pub const WRAPPED_LEN: usize = 32 + 16;

/// A customer key as a request carried it: decoded from base64, its MD5 checked against
/// the client's. It may have the wrong length on a read (it then matches no object, as on
/// AWS); writes refuse such keys before they get here ([`CustomerKey::usable`]).
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey {
    key: Zeroizing<Vec<u8>>,
    md5: [u8; 16],
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(<redacted>)")
    }
}

impl CustomerKey {
    /// A key from its raw bytes.
    pub fn new(key: Vec<u8>) -> CustomerKey {
        use md5::Digest as _;
        let md5: [u8; 16] = md5::Md5::digest(&key).into();
        CustomerKey {
            key: Zeroizing::new(key),
            md5,
        }
    }

    /// The key's MD5 in base64: what the client sent and what responses echo.
    pub fn md5_b64(&self) -> String {
        B64.encode(self.md5)
    }

    /// Whether the key is an AES-256 key (32 bytes).
    pub fn usable(&self) -> bool {
        self.key.len() == KEY_LEN
    }

    fn ikm(&self) -> &[u8] {
        &self.key
    }
}

/// What is stored to recognise an object's customer key: a random salt and the key's
/// check under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCheck {
    pub salt: [u8; SALT_LEN],
    pub check: [u8; 16],
}

fn derive(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand(info, Len32)
        .expect("HKDF output length is fixed and valid")
        .fill(&mut out[..])
        .expect("HKDF output length is fixed and valid");
    out
}

fn check_of(key: &CustomerKey, salt: &[u8; SALT_LEN]) -> [u8; 16] {
    let d = derive(salt, key.ikm(), &[SSEC_CHECK_INFO]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl KeyCheck {
    /// A fresh salt and `key`'s check under it (a new object, or a new wrap of a DEK).
    pub fn new(key: &CustomerKey) -> KeyCheck {
        let salt = crate::crypto::stream::random_salt();
        KeyCheck {
            salt,
            check: check_of(key, &salt),
        }
    }

    /// Whether `key` is the key this check was made from (constant time; a key of the
    /// wrong length never is).
    pub fn matches(&self, key: &CustomerKey) -> bool {
        key.usable()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                &check_of(key, &self.salt),
                &self.check,
            )
            .is_ok()
    }

    /// `salt || check`, as stored.
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&self.salt);
        out[16..].copy_from_slice(&self.check);
        out
    }

    pub fn decode(b: &[u8]) -> Option<KeyCheck> {
        if b.len() != 32 {
            return None;
        }
        Some(KeyCheck {
            salt: b[..16].try_into().ok()?,
            check: b[16..].try_into().ok()?,
        })
    }
}

fn wrap_key(key: &CustomerKey, check: &KeyCheck, bucket: &str, object: &str) -> LessSafeKey {
    let arn = crate::keys::object_arn(bucket, object);
    let k = derive(
        &check.salt,
        key.ikm(),
        &[SSEC_WRAP_INFO, &[0u8], arn.as_bytes()],
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k[..]).expect("a 32-byte AES-256 key"))
}

/// Wraps `dek` for `bucket/object` under `key` (whose check, with its salt, is `check`).
/// The wrapping key is used once (its salt is fresh per wrap), so the nonce is fixed.
pub fn wrap(key: &CustomerKey, check: &KeyCheck, dek: &Dek, bucket: &str, object: &str) -> Vec<u8> {
    let k = wrap_key(key, check, bucket, object);
    let mut buf = dek.bytes().to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(SSEC_WRAP_AAD),
        &mut buf,
    )
    .expect("AES-GCM seal");
    buf
}

/// Unwraps a DEK [`wrap`] made; `None` when it does not open (another object's, or
/// altered).
pub fn unwrap(
    key: &CustomerKey,
    check: &KeyCheck,
    wrapped: &[u8],
    bucket: &str,
    object: &str,
) -> Option<Dek> {
    if wrapped.len() != WRAPPED_LEN || !key.usable() {
        return None;
    }
    let k = wrap_key(key, check, bucket, object);
    let mut buf = Zeroizing::new(wrapped.to_vec());
    let plain = k
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(SSEC_WRAP_AAD),
            &mut buf,
        )
        .ok()?;
    Dek::from_slice(plain)
}

/// A fresh random data key (SSE-C objects get theirs from no KMS).
pub fn random_dek() -> Dek {
    let mut b = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut b[..]).expect("system RNG");
    Dek::from_slice(&b[..]).expect("32 bytes")
}

/// The key that MACs an SSE-C multipart upload's token, part records and part list:
/// `HKDF-SHA256(salt = "", ikm = DEK, info = "sealgate ssec upload" || upload id)`. The
/// upload's token carries it, so CompleteMultipartUpload works without the customer key
/// (as on AWS, where the key is optional there); readers derive it from the DEK.
pub fn upload_key(dek: &Dek, upload: &[u8; 16]) -> Dek {
    let k = derive(b"", dek.bytes(), &[SSEC_UPLOAD_INFO, upload]);
    Dek::from_slice(&k[..]).expect("32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> CustomerKey {
        CustomerKey::new(vec![b; 32])
    }

    #[test]
    fn the_md5_is_awss_worked_example() {
        // research §1.1: the 32 bytes `1234567890abcdef1234567890abcdef`.
        let k = CustomerKey::new(b"1234567890abcdef1234567890abcdef".to_vec());
        assert_eq!(k.md5_b64(), "JMwgiexXqwuPqIPjYFmIZQ==");
        assert!(k.usable());
        assert!(!CustomerKey::new(vec![1; 31]).usable());
        assert_eq!(format!("{k:?}"), "CustomerKey(<redacted>)");
    }

    #[test]
    fn a_check_recognises_its_key_only_and_is_salted() {
        let c = KeyCheck::new(&key(1));
        assert!(c.matches(&key(1)));
        assert!(!c.matches(&key(2)));
        assert!(!c.matches(&CustomerKey::new(vec![1; 31])), "wrong length");
        let c2 = KeyCheck::new(&key(1));
        assert_ne!(c.salt, c2.salt);
        assert_ne!(c.check, c2.check, "the same key gives unlinkable checks");
        assert_eq!(KeyCheck::decode(&c.encode()), Some(c));
        assert_eq!(KeyCheck::decode(&[0; 31]), None);
    }

    #[test]
    fn a_wrapped_dek_opens_with_its_key_for_its_name_only() {
        let k = key(7);
        let c = KeyCheck::new(&k);
        let dek = random_dek();
        let w = wrap(&k, &c, &dek, "b", "dir/o");
        assert_eq!(w.len(), WRAPPED_LEN);
        assert!(
            !w.windows(32).any(|x| x == dek.bytes()),
            "no DEK in the clear"
        );
        let back = unwrap(&k, &c, &w, "b", "dir/o").unwrap();
        assert_eq!(back.bytes(), dek.bytes());
        assert!(unwrap(&key(8), &c, &w, "b", "dir/o").is_none(), "wrong key");
        assert!(unwrap(&k, &c, &w, "b", "dir/other").is_none(), "moved");
        assert!(unwrap(&k, &c, &w, "other", "dir/o").is_none(), "moved");
        let other_salt = KeyCheck::new(&k);
        assert!(unwrap(&k, &other_salt, &w, "b", "dir/o").is_none());
        let mut bad = w.clone();
        bad[0] ^= 1;
        assert!(unwrap(&k, &c, &bad, "b", "dir/o").is_none(), "altered");
    }

    /// Golden vectors, cross-checked with Python `cryptography` (docs/format.md, SSE-C).
    #[test]
    fn golden_vectors() {
        let k = CustomerKey::new((0x40..0x60).collect());
        let c = KeyCheck {
            salt: std::array::from_fn(|i| 0xa0 + i as u8),
            check: [0; 16],
        };
        let c = KeyCheck {
            check: check_of(&k, &c.salt),
            ..c
        };
        assert_eq!(hex::encode(c.check), "2ef50f70146c7fa5aa6ed26617d38bd9");
        let dek = Dek::from_slice(&(0..32).collect::<Vec<u8>>()).unwrap();
        assert_eq!(
            hex::encode(wrap(&k, &c, &dek, "bucket", "dir/object")),
            "1cb82733447e1083c4beec778b5166d2def049b66d5d187535c2f3a980f59b022cd066213fa0a36bc7838c43b3d08d2e"
        );
        assert_eq!(
            hex::encode(upload_key(&dek, &[0x11; 16]).bytes()),
            "45bac662c4e4c708fbcd64ec7bb38e4a280f0540b453b761deece62027acb2c0"
        );
    }
}
