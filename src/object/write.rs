//! Writing objects: a [`Writer`] turns a plaintext body into what the store receives
//! (`crypto::stream::Encryptor`) and writes sealgate's metadata into the store request,
//! for a single-part object and for one part of a multipart upload.
//!
//! Invariants: every part upload attempt gets a fresh random salt (so a key and nonce are
//! never reused); the output length is exact, and a body that is shorter or longer than
//! declared ends the output stream with an error before its final segment, so the store
//! never stores a complete-looking object from a bad body; the plaintext MD5 (the ETag AWS
//! gives SSE-S3 objects) is computed while the body passes, and only when asked for.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;

use super::ByteStream;
use super::checksum::{Algo, ChecksumTap, Stored, on_end, tap, tap_then};
use super::describe::{Described, prepare_write};
use super::envelope::Envelope;
use super::meta::{ETag, ObjectMeta};
use crate::crypto::format::{PartHeader, TRAILER_LEN, part_cipher_len};
use crate::crypto::stream::{
    Dek, Encryptor, random_salt, seal_checksum, seal_md5, seal_part_checksum, seal_trailer,
};

/// What a finished write produced (read after the store accepted the body).
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The object's metadata (single-part writes).
    pub meta: Option<ObjectMeta>,
    /// The plaintext MD5, when it was computed.
    pub md5: Option<[u8; 16]>,
    /// The part's salt (part writes).
    pub salt: Option<[u8; 16]>,
    /// The part's verified client checksum (part writes whose client sent one; its
    /// record keeps it sealed).
    pub checksum: Option<(Algo, Vec<u8>)>,
}

/// A handle on what a write produced, filled in as the write goes.
#[derive(Debug, Clone, Default)]
pub struct Outcome(Arc<Mutex<Written>>);

impl Outcome {
    pub fn get(&self) -> Written {
        self.0.lock().map(|w| w.clone()).unwrap_or_default()
    }
    fn update(&self, f: impl FnOnce(&mut Written)) {
        if let Ok(mut w) = self.0.lock() {
            f(&mut w);
        }
    }
}

enum Kind {
    /// A new single-part object: `known_md5` when the client's Content-MD5 said it,
    /// `md5` when the ETag must be the plaintext MD5.
    Single {
        envelope: Envelope,
        known_md5: Option<[u8; 16]>,
        md5: bool,
    },
    /// One part of a multipart upload.
    Part { part_number: u32, md5: bool },
}

/// The client's checksum of the body: its algorithm, its value when a header gave it,
/// and how to get the verified value once the whole body was read (a trailer's).
pub struct ChecksumSource {
    pub algo: Algo,
    pub known: Option<Vec<u8>>,
    pub verified: Box<dyn Fn() -> Option<Vec<u8>> + Send + Sync>,
}

impl ChecksumSource {
    /// The value, once the body was verified (or from the header).
    fn value(&self) -> Option<Vec<u8>> {
        self.known.clone().or_else(|| (self.verified)())
    }
}

/// `plain` hashed under `algo` as it streams, and `writer` keeping the digest with the new
/// object (or part) like a client's checksum: a copy's checksum, or AWS's default for an
/// upload that sent none. The tap gives the digest for the answer once `plain` ended.
pub fn computing_checksum(
    plain: ByteStream,
    writer: Writer,
    algo: Option<Algo>,
) -> (ByteStream, Writer, Option<ChecksumTap>) {
    let Some(algo) = algo else {
        return (plain, writer, None);
    };
    let (plain, digest) = tap(plain, algo);
    let d = digest.clone();
    let writer = writer.with_checksum(ChecksumSource {
        algo,
        known: None,
        verified: Box::new(move || d.lock().ok().and_then(|g| g.clone())),
    });
    (plain, writer, Some(ChecksumTap { algo, digest }))
}

/// Seals one body for the store.
pub struct Writer {
    dek: Dek,
    len: u64,
    kind: Kind,
    outcome: Outcome,
    checksum: Option<ChecksumSource>,
    /// A body whose client sent no checksum gets AWS's default, a CRC64NVME.
    default_checksum: bool,
}

fn md5_of(b: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(b).into()
}

impl Writer {
    /// A new single-part object of `len` plaintext bytes under `dek`. `md5`: its ETag is
    /// the plaintext MD5 (`known_md5` when the client's verified Content-MD5 gave it).
    pub fn single(
        envelope: Envelope,
        dek: Dek,
        len: u64,
        md5: bool,
        known_md5: Option<[u8; 16]>,
    ) -> (Writer, Outcome) {
        let outcome = Outcome::default();
        let w = Writer {
            dek,
            len,
            kind: Kind::Single {
                envelope,
                known_md5: known_md5.filter(|_| md5),
                md5,
            },
            outcome: outcome.clone(),
            checksum: None,
            default_checksum: true,
        };
        (w, outcome)
    }

    /// Whether a body whose client sent no checksum gets AWS's default (new objects, and
    /// parts of uploads created without a checksum algorithm).
    pub fn gets_default_checksum(&self) -> bool {
        self.default_checksum
    }

    /// Gives a part AWS's default checksum when its client sends none: its upload was
    /// created without an algorithm, and the object gets a full-object CRC64NVME combined
    /// from its parts' (`s3::complete`).
    pub fn with_default_checksum(mut self) -> Writer {
        self.default_checksum = true;
        self
    }

    /// Keeps the client's checksum with the object (or part).
    pub fn with_checksum(mut self, source: ChecksumSource) -> Writer {
        self.checksum = Some(source);
        self
    }

    /// Part `part_number` (`len` plaintext bytes) of a multipart upload under `dek`.
    pub fn part(dek: Dek, part_number: u32, len: u64, md5: bool) -> (Writer, Outcome) {
        let outcome = Outcome::default();
        let w = Writer {
            dek,
            len,
            kind: Kind::Part { part_number, md5 },
            outcome: outcome.clone(),
            checksum: None,
            default_checksum: false,
        };
        (w, outcome)
    }

    /// The object's metadata into `headers` (single-part writes), and the part header.
    fn begin(&self, headers: &mut HeaderMap, etag: ETag, checksum: Option<Stored>) -> PartHeader {
        let salt = random_salt();
        match &self.kind {
            Kind::Single { envelope, .. } => {
                prepare_write(headers);
                let meta = ObjectMeta::single(
                    envelope.clone(),
                    &self.dek,
                    self.len,
                    salt,
                    etag,
                    Described::of(headers),
                    checksum,
                );
                meta.write(headers);
                self.outcome.update(|w| w.meta = Some(meta));
                PartHeader {
                    part_number: 1,
                    salt,
                    plain_len: self.len,
                }
            }
            Kind::Part { part_number, .. } => {
                self.outcome.update(|w| w.salt = Some(salt));
                PartHeader {
                    part_number: *part_number,
                    salt,
                    plain_len: self.len,
                }
            }
        }
    }

    fn with_header(&self) -> bool {
        matches!(self.kind, Kind::Part { .. })
    }

    fn wants_md5(&self) -> bool {
        match &self.kind {
            Kind::Single { md5, .. } | Kind::Part { md5, .. } => *md5,
        }
    }

    /// Seals a body held whole (at most a segment or so): the MD5, when wanted, is known
    /// before the metadata is written, so no trailer is needed.
    pub fn seal_whole(self, plain: &[u8], headers: &mut HeaderMap) -> ByteStream {
        let md5 = match &self.kind {
            Kind::Single {
                known_md5: Some(m), ..
            } => Some(*m),
            _ if self.wants_md5() => Some(md5_of(plain)),
            _ => None,
        };
        let etag = match (&self.kind, md5) {
            (Kind::Single { .. }, Some(m)) => ETag::Md5(seal_md5(&self.dek, &m)),
            _ => ETag::Store,
        };
        // The whole body was read and verified: its checksum is known.
        let value = self
            .checksum
            .as_ref()
            .and_then(|c| Some((c.algo, c.value()?)));
        let stored = match (&self.kind, &value) {
            (Kind::Single { .. }, Some((algo, d))) => Some(Stored::Sealed {
                algo: *algo,
                sealed: seal_checksum(&self.dek, algo.display(), d),
            }),
            _ => None,
        };
        let part_checksum = value.filter(|_| !matches!(self.kind, Kind::Single { .. }));
        let header = self.begin(headers, etag, stored);
        self.outcome.update(|w| {
            w.md5 = md5;
            w.checksum = part_checksum;
        });
        let input = (!plain.is_empty()).then(|| Ok(Bytes::copy_from_slice(plain)));
        Encryptor::new(
            futures::stream::iter(input).boxed(),
            &self.dek,
            header,
            self.with_header(),
        )
        .boxed()
    }

    /// Seals a streamed body: returns the store body and its exact length. A single-part
    /// object whose MD5 is wanted but not known gets it sealed after its last segment.
    pub fn seal_stream(mut self, plain: ByteStream, headers: &mut HeaderMap) -> (ByteStream, u64) {
        let known = match &self.kind {
            Kind::Single { known_md5, .. } => *known_md5,
            Kind::Part { .. } => None,
        };
        let trailer =
            matches!(self.kind, Kind::Single { .. }) && self.wants_md5() && known.is_none();
        let etag = match (&self.kind, known) {
            (Kind::Single { .. }, Some(m)) => ETag::Md5(seal_md5(&self.dek, &m)),
            (Kind::Single { .. }, None) if trailer => ETag::Trailer,
            _ => ETag::Store,
        };
        let single = matches!(self.kind, Kind::Single { .. });
        // A checksum from a header goes into the metadata; one from a trailer is known
        // only after the body, and is sealed after it.
        let checksum = self.checksum.take();
        let stored = match &checksum {
            Some(c) if single => Some(match &c.known {
                Some(d) => Stored::Sealed {
                    algo: c.algo,
                    sealed: seal_checksum(&self.dek, c.algo.display(), d),
                },
                None => Stored::Trailer(c.algo),
            }),
            _ => None,
        };
        let header = self.begin(headers, etag, stored.clone());
        let mut len = part_cipher_len(self.len, self.with_header());
        if known.is_some() {
            self.outcome.update(|w| w.md5 = known);
        }
        // A part's checksum goes into its record once the body was verified: taken
        // when the plaintext ends (the encryptor reads it to its end before the final
        // segment, whereas the store's request may stop reading after its last byte).
        let (plain, checksum) = match checksum {
            Some(c) if !single => {
                let outcome = self.outcome.clone();
                let plain = on_end(plain, move || {
                    if let Some(d) = c.value() {
                        outcome.update(|w| w.checksum = Some((c.algo, d)));
                    }
                });
                (plain, None)
            }
            c => (plain, c),
        };
        let body = if !self.wants_md5() || known.is_some() {
            Encryptor::new(plain, &self.dek, header, self.with_header()).boxed()
        } else {
            self.md5_sealed(plain, header, trailer, &mut len)
        };
        let Some(c) = checksum else {
            return (body, len);
        };
        if let Some(Stored::Trailer(algo)) = stored {
            len += super::checksum::sealed_len(algo);
            let dek = self.dek.clone();
            let tail = futures::stream::once(async move {
                let d = c.value().ok_or_else(|| {
                    std::io::Error::other("the body ended before its checksum was verified")
                })?;
                Ok(Bytes::from(seal_part_checksum(
                    &dek,
                    &header,
                    algo.display(),
                    &d,
                )))
            });
            return (body.chain(tail).boxed(), len);
        }
        (body, len)
    }

    /// The body with its MD5 computed as it passes (the outcome gets it), and for a
    /// `trailer` sealed after the last segment (`len` grows by the trailer).
    fn md5_sealed(
        &self,
        plain: ByteStream,
        header: PartHeader,
        trailer: bool,
        len: &mut u64,
    ) -> ByteStream {
        // The MD5 of the plaintext as it passes; for a trailer, sealed once it is known.
        let md5 = Arc::new(Mutex::new(None::<[u8; 16]>));
        let slot = md5.clone();
        let outcome = self.outcome.clone();
        let tapped = tap_then(plain, Algo::Md5, move |d| {
            let Ok(m) = <[u8; 16]>::try_from(d) else {
                return;
            };
            outcome.update(|w| w.md5 = Some(m));
            if let Ok(mut s) = slot.lock() {
                *s = Some(m);
            }
        });
        let sealed = Encryptor::new(tapped, &self.dek, header, self.with_header()).boxed();
        if !trailer {
            return sealed;
        }
        *len += TRAILER_LEN;
        let dek = self.dek.clone();
        let tail = futures::stream::once(async move {
            let m =
                md5.lock().ok().and_then(|g| *g).ok_or_else(|| {
                    std::io::Error::other("the body ended before its MD5 was known")
                })?;
            Ok(Bytes::copy_from_slice(&seal_trailer(&dek, &header, &m)))
        });
        sealed.chain(tail).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::format::{Layout, plan};
    use crate::crypto::stream::{Decryptor, open_trailer};

    use crate::test_support::envelope;

    async fn collect(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    fn chunks(data: &[u8]) -> ByteStream {
        let v: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn a_streamed_single_part_object_carries_its_md5_in_a_sealed_trailer() {
        let dek = Dek::from_slice(&[3; 32]).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (w, outcome) = Writer::single(envelope(), dek.clone(), data.len() as u64, true, None);
        let mut h = HeaderMap::new();
        let (s, len) = w.seal_stream(chunks(&data), &mut h);
        let cipher = collect(s).await;
        assert_eq!(cipher.len() as u64, len);
        let written = outcome.get();
        let meta = written.meta.unwrap();
        assert_eq!(meta.etag, ETag::Trailer);
        assert_eq!(meta.cipher_len(), len);
        assert_eq!(written.md5, Some(md5_of(&data)));
        let header = meta.single_header().unwrap();
        let (body, trailer) = cipher.split_at(cipher.len() - 32);
        assert_eq!(open_trailer(&dek, &header, trailer), Some(md5_of(&data)));
        let p = plan(&Layout::single(data.len() as u64), 0, data.len() as u64).unwrap();
        let d = Decryptor::new(
            futures::stream::iter([Ok(Bytes::copy_from_slice(body))]).boxed(),
            dek,
            Layout::single(data.len() as u64),
            &p,
            Some(header),
        );
        assert_eq!(collect(d.boxed()).await, data);
    }

    #[tokio::test]
    async fn a_known_or_whole_md5_goes_into_the_metadata_and_needs_no_trailer() {
        let dek = Dek::from_slice(&[3; 32]).unwrap();
        let data = b"hello world".to_vec();
        let (w, outcome) = Writer::single(envelope(), dek.clone(), 11, true, None);
        let cipher = collect(w.seal_whole(&data, &mut HeaderMap::new())).await;
        assert_eq!(cipher.len() as u64, part_cipher_len(11, false));
        let sealed = ETag::Md5(seal_md5(&dek, &md5_of(&data)));
        assert_eq!(outcome.get().meta.unwrap().etag, sealed);
        let (w, outcome) = Writer::single(envelope(), dek.clone(), 11, true, Some(md5_of(&data)));
        let (s, len) = w.seal_stream(chunks(&data), &mut HeaderMap::new());
        assert_eq!(collect(s).await.len() as u64, len);
        assert_eq!(outcome.get().meta.unwrap().etag, sealed);
        let ETag::Md5(m) = sealed else { unreachable!() };
        assert_eq!(
            crate::crypto::stream::open_md5(&dek, &m),
            Some(md5_of(&data))
        );
    }
}
