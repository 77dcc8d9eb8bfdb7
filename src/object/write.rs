//! Writing objects: the transforms that turn a plaintext body into what the store
//! receives (`crypto::stream::Encryptor`), for a single-part object and for one part of a
//! multipart upload.
//!
//! Invariants: every part upload attempt gets a fresh random salt (so a key and nonce are
//! never reused); the transform's output length is exact, and a body that is shorter or
//! longer than declared ends the output stream with an error before its final segment, so
//! the store never stores a complete-looking object from a bad body.

use futures::StreamExt;

use super::ByteStream;
use super::envelope::Envelope;
use super::meta::ObjectMeta;
use crate::crypto::format::{PartHeader, part_cipher_len};
use crate::crypto::stream::{Dek, Encryptor, random_salt};

/// Turns the verified plaintext stream into what the store receives, and its length.
pub type Transform = Box<dyn FnOnce(ByteStream) -> (ByteStream, u64) + Send>;

/// A new single-part object of `len` plaintext bytes under `dek`: its metadata and the
/// transform that encrypts its body.
pub fn new_single(envelope: Envelope, dek: Dek, len: u64) -> (ObjectMeta, Transform) {
    let salt = random_salt();
    let meta = ObjectMeta::single(envelope, &dek, len, salt);
    let header = PartHeader {
        part_number: 1,
        salt,
        plain_len: len,
    };
    let encrypt = move |plain: ByteStream| {
        (
            Encryptor::new(plain, &dek, header, false).boxed(),
            part_cipher_len(len, false),
        )
    };
    (meta, Box::new(encrypt))
}

/// The transform for part `part_number` (`len` plaintext bytes) of a multipart upload
/// under `dek`: the part header, then its segments.
pub fn seal_part(dek: Dek, part_number: u32, len: u64) -> Transform {
    let header = PartHeader {
        part_number,
        salt: random_salt(),
        plain_len: len,
    };
    Box::new(move |plain: ByteStream| {
        (
            Encryptor::new(plain, &dek, header, true).boxed(),
            part_cipher_len(len, true),
        )
    })
}
