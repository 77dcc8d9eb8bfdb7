//! S3 checksum algorithms (`x-amz-checksum-*`) and the client checksums sealgate keeps
//! with objects (docs/format.md, "Checksums").
//!
//! Invariants: a checksum is kept only once sealgate verified it against the bytes the
//! client sent; it is stored sealed under a key derived from the object's DEK (the store
//! never sees a digest of the plaintext) and served only after it authenticated.

use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};

/// Algorithms S3 clients can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
    Md5,
}

impl Algo {
    pub const CHECKSUMS: [Algo; 5] = [
        Algo::Crc32,
        Algo::Crc32c,
        Algo::Crc64Nvme,
        Algo::Sha1,
        Algo::Sha256,
    ];

    /// The `x-amz-checksum-*` header (or `content-md5`).
    pub fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algo::Sha1 => "x-amz-checksum-sha1",
            Algo::Sha256 => "x-amz-checksum-sha256",
            Algo::Md5 => "content-md5",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Crc64Nvme => "CRC64NVME",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
            Algo::Md5 => "Content-MD5",
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Algo::Crc32 | Algo::Crc32c => 4,
            Algo::Crc64Nvme => 8,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
            Algo::Md5 => 16,
        }
    }

    pub fn from_header(name: &str) -> Option<Algo> {
        Self::CHECKSUMS
            .into_iter()
            .chain([Algo::Md5])
            .find(|a| a.header().eq_ignore_ascii_case(name))
    }
}

/// An incremental digest of one algorithm.
pub enum Hasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64Nvme(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    pub fn new(a: Algo) -> Self {
        match a {
            Algo::Crc32 => Hasher::Crc32(Crc32::new()),
            Algo::Crc32c => Hasher::Crc32c(Crc32c::new()),
            Algo::Crc64Nvme => Hasher::Crc64Nvme(Crc64Nvme::new()),
            Algo::Sha1 => Hasher::Sha1(Sha1::new()),
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
            Algo::Md5 => Hasher::Md5(Md5::new()),
        }
    }
    pub fn update(&mut self, d: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(d),
            Hasher::Crc32c(h) => h.update(d),
            Hasher::Crc64Nvme(h) => h.update(d),
            Hasher::Sha1(h) => h.update(d),
            Hasher::Sha256(h) => h.update(d),
            Hasher::Md5(h) => h.update(d),
        }
    }
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().to_vec(),
            Hasher::Crc32c(h) => h.finalize().to_vec(),
            Hasher::Crc64Nvme(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().as_ref().to_vec(),
            Hasher::Sha256(h) => h.finalize().as_ref().to_vec(),
            Hasher::Md5(h) => h.finalize().as_ref().to_vec(),
        }
    }
}

impl Algo {
    /// The algorithm named as S3 names it (`CRC32`, `SHA256`, ...), not MD5.
    pub fn parse(name: &str) -> Option<Algo> {
        Self::CHECKSUMS
            .into_iter()
            .find(|a| a.display().eq_ignore_ascii_case(name))
    }

    /// CRCs can be combined into a full-object checksum of a multipart object; SHA
    /// digests only into a composite one.
    pub fn combinable(self) -> bool {
        matches!(self, Algo::Crc32 | Algo::Crc32c | Algo::Crc64Nvme)
    }
}

/// Where a [`tap`] leaves its digest once the stream ended.
pub type TapResult = std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>;

/// A [`tap`]'s algorithm and result.
pub struct ChecksumTap {
    pub algo: Algo,
    pub digest: TapResult,
}

impl ChecksumTap {
    /// The digest, once the stream ended.
    pub fn digest(&self) -> Option<Vec<u8>> {
        self.digest.lock().ok()?.clone()
    }

    /// The full-object checksum, once the stream ended.
    pub fn served(&self) -> Option<Served> {
        Some(Served::full(self.algo, &self.digest()?))
    }
}

/// `s`, then `f` run once it has ended (nothing is added to the stream). What reads `s`
/// to its end (the encryptor does, before its final segment) runs `f` before that.
pub fn on_end(s: super::ByteStream, f: impl FnOnce() + Send + 'static) -> super::ByteStream {
    use futures::StreamExt;
    let end = futures::stream::once(async move {
        f();
        Ok::<bytes::Bytes, std::io::Error>(bytes::Bytes::new())
    })
    .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())));
    s.chain(end).boxed()
}

/// Hashes every byte that passes through `s` under `algo`, and hands the digest to
/// `done` once the stream ended.
pub fn tap_then(
    s: super::ByteStream,
    algo: Algo,
    done: impl FnOnce(Vec<u8>) + Send + 'static,
) -> super::ByteStream {
    use futures::StreamExt;
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(Some(Hasher::new(algo))));
    let h = hasher.clone();
    let tapped = s
        .inspect(move |r| {
            if let (Ok(b), Ok(mut g)) = (r, h.lock())
                && let Some(h) = g.as_mut()
            {
                h.update(b);
            }
        })
        .boxed();
    on_end(tapped, move || {
        if let Some(h) = hasher.lock().ok().and_then(|mut g| g.take()) {
            done(h.finalize());
        }
    })
}

/// Hashes every byte that passes through `s` under `algo` (a copy's checksum, computed
/// while its plaintext streams); the digest is in the result once the stream ended.
pub fn tap(s: super::ByteStream, algo: Algo) -> (super::ByteStream, TapResult) {
    let out = TapResult::default();
    let slot = out.clone();
    let tapped = tap_then(s, algo, move |d| {
        if let Ok(mut o) = slot.lock() {
            *o = Some(d);
        }
    });
    (tapped, out)
}

/// The digest of `data` under `algo`.
pub fn digest(algo: Algo, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(algo);
    h.update(data);
    h.finalize()
}

/// Where an object's client checksum is kept (format 3, `sealgate-cks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Known before the body was sent (a header, or a body read whole): sealed in the
    /// metadata (`ALGO:B64`, [`crate::crypto::stream::seal_checksum`]).
    Sealed { algo: Algo, sealed: Vec<u8> },
    /// Sent in the client's trailer after a streamed body: sealed after the object's last
    /// segment and MD5 trailer (`ALGO:trailer`,
    /// [`crate::crypto::stream::seal_part_checksum`]).
    Trailer(Algo),
    /// A multipart object's, from its authenticated part list (never written to metadata).
    Parts(Served),
}

impl Stored {
    pub fn algo(&self) -> Algo {
        match self {
            Stored::Sealed { algo, .. } | Stored::Trailer(algo) => *algo,
            Stored::Parts(s) => s.algo,
        }
    }

    /// The metadata value (`None` for a multipart object's, which its part list holds).
    pub fn encode(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Stored::Sealed { algo, sealed } => Some(format!(
                "{}:{}",
                algo.display(),
                base64::engine::general_purpose::STANDARD.encode(sealed)
            )),
            Stored::Trailer(algo) => Some(format!("{}:trailer", algo.display())),
            Stored::Parts(_) => None,
        }
    }

    pub fn decode(s: &str) -> Option<Stored> {
        use base64::Engine as _;
        let (name, rest) = s.split_once(':')?;
        let algo = Algo::parse(name)?;
        if rest == "trailer" {
            return Some(Stored::Trailer(algo));
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .filter(|v| v.len() == algo.digest_len() + 16)?;
        Some(Stored::Sealed { algo, sealed })
    }

    /// Bytes the checksum takes after the object's segments (and MD5 trailer).
    pub fn trailer_len(&self) -> u64 {
        match self {
            Stored::Trailer(a) => sealed_len(*a),
            _ => 0,
        }
    }
}

/// Length of a sealed digest of `algo` (digest and GCM tag).
pub fn sealed_len(algo: Algo) -> u64 {
    algo.digest_len() as u64 + crate::crypto::format::TAG
}

/// A checksum as S3 serves it: `x-amz-checksum-<algo>` and `x-amz-checksum-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub algo: Algo,
    /// Base64 digest; a composite one ends in `-N`.
    pub value: String,
    /// `FULL_OBJECT` (a checksum of all the bytes) or `COMPOSITE` (of the parts').
    pub full_object: bool,
}

impl Served {
    pub fn full(algo: Algo, digest: &[u8]) -> Served {
        use base64::Engine as _;
        Served {
            algo,
            value: base64::engine::general_purpose::STANDARD.encode(digest),
            full_object: true,
        }
    }

    pub fn type_name(&self) -> &'static str {
        if self.full_object {
            "FULL_OBJECT"
        } else {
            "COMPOSITE"
        }
    }

    /// AWS's XML element for the value: `<ChecksumALGO>`.
    pub fn element(&self) -> String {
        format!(
            "<Checksum{a}>{}</Checksum{a}>",
            quick_xml::escape::escape(self.value.as_str()),
            a = self.algo.display()
        )
    }

    /// AWS's XML elements for it: `<ChecksumALGO>` and `<ChecksumType>`.
    pub fn xml(&self) -> String {
        format!(
            "{}<ChecksumType>{}</ChecksumType>",
            self.element(),
            self.type_name()
        )
    }

    /// An XML answer (`<CopyObjectResult>`, `<CompleteMultipartUploadResult>`, ...) with
    /// these elements added before its closing tag `</element>`.
    pub fn add_to(&self, answer: bytes::Bytes, element: &str) -> bytes::Bytes {
        crate::xml::insert_before_close(answer, element, &self.xml())
    }

    /// Sets the response headers.
    pub fn write(&self, h: &mut http::HeaderMap) {
        if let Ok(v) = http::HeaderValue::from_str(&self.value) {
            h.insert(self.algo.header(), v);
        }
        h.insert(
            "x-amz-checksum-type",
            http::HeaderValue::from_static(self.type_name()),
        );
    }

    /// A multipart object's checksum from its parts' (digest, plaintext length), in object
    /// order: for CRCs with `full_object`, the CRC of all the bytes (combined from the
    /// parts'); otherwise AWS's composite, the digest of the parts' digests, `-N`.
    pub fn of_parts(algo: Algo, full_object: bool, parts: &[(Vec<u8>, u64)]) -> Option<Served> {
        use base64::Engine as _;
        if parts.is_empty() || parts.iter().any(|(d, _)| d.len() != algo.digest_len()) {
            return None;
        }
        if full_object && algo.combinable() {
            return Some(Served::full(algo, &combine(algo, parts)?));
        }
        let mut h = Hasher::new(algo);
        for (d, _) in parts {
            h.update(d);
        }
        Some(Served {
            algo,
            value: format!(
                "{}-{}",
                base64::engine::general_purpose::STANDARD.encode(h.finalize()),
                parts.len()
            ),
            full_object: false,
        })
    }
}

/// The CRC of the concatenation of parts, from each part's CRC and length.
fn combine(algo: Algo, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    use crc_fast::CrcAlgorithm;
    let (alg, width) = match algo {
        Algo::Crc32 => (CrcAlgorithm::Crc32IsoHdlc, 4),
        Algo::Crc32c => (CrcAlgorithm::Crc32Iscsi, 4),
        Algo::Crc64Nvme => (CrcAlgorithm::Crc64Nvme, 8),
        _ => return None,
    };
    let value = |d: &[u8]| -> u64 { d.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) };
    let mut it = parts.iter();
    let (first, _) = it.next()?;
    let mut crc = value(first);
    for (d, len) in it {
        crc = crc_fast::checksum_combine(alg, crc, value(d), *len);
    }
    Some(crc.to_be_bytes()[8 - width..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_checksums_round_trip_their_metadata_form() {
        let sealed = Stored::Sealed {
            algo: Algo::Sha256,
            sealed: vec![7; 48],
        };
        assert_eq!(Stored::decode(&sealed.encode().unwrap()), Some(sealed));
        let t = Stored::Trailer(Algo::Crc64Nvme);
        assert_eq!(t.encode().as_deref(), Some("CRC64NVME:trailer"));
        assert_eq!(Stored::decode("CRC64NVME:trailer"), Some(t));
        // Wrong length for the algorithm, unknown algorithm, MD5: refused.
        assert_eq!(Stored::decode("CRC32:AAAA"), None);
        assert_eq!(Stored::decode("CRC99:trailer"), None);
        assert_eq!(Stored::decode("Content-MD5:trailer"), None);
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_all_the_bytes() {
        let a: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..33_333u32).map(|i| (i % 13) as u8).collect();
        let whole = [a.clone(), b.clone()].concat();
        for algo in [Algo::Crc32, Algo::Crc32c, Algo::Crc64Nvme] {
            let parts = vec![
                (digest(algo, &a), a.len() as u64),
                (digest(algo, &b), b.len() as u64),
            ];
            let s = Served::of_parts(algo, true, &parts).unwrap();
            assert_eq!(s, Served::full(algo, &digest(algo, &whole)), "{algo:?}");
        }
    }

    #[test]
    fn composite_checksums_are_the_digest_of_the_part_digests() {
        // AWS's example shape: SHA-256 of the concatenated part digests, then -N.
        let parts: Vec<(Vec<u8>, u64)> = [b"A", b"B", b"C"]
            .iter()
            .map(|p| (digest(Algo::Sha256, &p.repeat(5 << 20)), 5 << 20))
            .collect();
        let s = Served::of_parts(Algo::Sha256, false, &parts).unwrap();
        // The value s3-tests expects for 3 parts of 5 MiB of `A`, `B` and `C`.
        assert_eq!(s.value, "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3");
        assert!(!s.full_object);
        // A part with a digest of another length: no checksum rather than a wrong one.
        let bad = vec![(vec![1, 2, 3], 3)];
        assert_eq!(Served::of_parts(Algo::Sha256, false, &bad), None);
    }
}
