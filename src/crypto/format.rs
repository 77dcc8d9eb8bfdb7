//! The object format, version 1: pure functions for headers, sizes and offsets.
//! Specification and golden vectors: `docs/format.md`.
//!
//! An object is a sequence of *parts* (a PutObject is one part; a multipart upload has one
//! part per UploadPart). A part's plaintext is cut into 64 KiB segments; each segment is
//! sealed with AES-256-GCM under a key derived for that part, with a nonce binding the
//! segment index and a final-segment flag, and the part header as AAD.
//!
//! Invariants (property-tested below):
//! - `segments(p) >= 1`: even an empty part has one (empty) final segment, so truncating a
//!   part to nothing is detected.
//! - `part_cipher_len` is strictly increasing in the plaintext length and
//!   `plain_len_of_part_cipher(part_cipher_len(p)) == Some(p)`.
//! - a plaintext range maps to the smallest run of whole segments covering it.

use std::fmt;

/// Plaintext bytes per segment.
pub const SEGMENT: u64 = 64 * 1024;
/// AES-GCM tag bytes per segment.
pub const TAG: u64 = 16;
/// Ciphertext bytes of a full segment.
pub const SEALED_SEGMENT: u64 = SEGMENT + TAG;
/// Bytes of a part header.
pub const HEADER_LEN: u64 = 32;
/// Part header magic: format version 1.
pub const MAGIC: [u8; 4] = *b"SGP1";
/// Random salt per part upload attempt.
pub const SALT_LEN: usize = 16;

// FORMAT: every constant below is part of what sealgate has stored. Changing one makes
// existing objects unreadable; add a new format version instead (docs/format.md).

/// HKDF info prefix of a part key (followed by the u32 big-endian part number).
pub const PART_KEY_INFO: &[u8] = b"sealgate v1 part";
/// HKDF info of the key that MACs an object's metadata (formats 1 and 2).
pub const METADATA_MAC_INFO: &[u8] = b"sealgate v1 metadata mac";
/// HKDF info of the key that MACs an object's metadata in format 3 (everything sealgate
/// serves about the object, `object::meta`).
pub const METADATA_MAC_INFO_V3: &[u8] = b"sealgate v3 metadata mac";
/// HKDF info of the key that seals an object's plaintext MD5 in its metadata (format 3):
/// the store never sees an MD5 of the plaintext.
pub const ETAG_KEY_INFO: &[u8] = b"sealgate v3 etag";
/// Nonce flag of the sealed MD5 trailer after a single-part object's last segment
/// (segments use 0, and 1 for the last; the trailer's index is 0).
pub const TRAILER_FLAG: u32 = 2;
/// Bytes of the sealed MD5 trailer: 16 bytes of MD5 and the GCM tag.
pub const TRAILER_LEN: u64 = 16 + TAG;
/// HKDF info of the key that seals a client checksum (`x-amz-checksum-*`) of an object in
/// its metadata (format 3, `sealgate-cks`): the store never sees a digest of the plaintext.
pub const CHECKSUM_KEY_INFO: &[u8] = b"sealgate v3 checksum";
/// Nonce flag of a client checksum sealed under a part key: after a single-part object's
/// last segment (and its MD5 trailer), or in a part record and manifest.
pub const CHECKSUM_FLAG: u32 = 3;
/// HKDF info prefix of a format-2 object key derived from a bucket key (followed by
/// `0x00` and `arn:aws:s3:::BUCKET/KEY`).
pub const BUCKET_KEY_DERIVE_INFO: &[u8] = b"sealgate v2 object key";
/// Prefix of the upload ids sealgate hands out (they carry the wrapped data key).
pub const UPLOAD_TOKEN_PREFIX: &str = "sg1.";
/// SSE-C: the stored algorithm of an object whose data key is wrapped under the client's
/// own key (`x-amz-meta-sealgate-alg`; the client sees `AES256` in the customer headers).
pub const SSEC_ALG: &str = "SSE-C";
/// SSE-C: HKDF info of the key check (`HKDF-SHA256(salt, customer key, info)`, 16 bytes).
pub const SSEC_CHECK_INFO: &[u8] = b"sealgate ssec key check";
/// SSE-C: HKDF info prefix of the key that wraps the data key (followed by `0x00` and
/// `arn:aws:s3:::BUCKET/KEY`).
pub const SSEC_WRAP_INFO: &[u8] = b"sealgate ssec wrap";
/// SSE-C: AAD of the wrapped data key.
pub const SSEC_WRAP_AAD: &[u8] = b"sealgate ssec dek";
/// SSE-C multipart uploads: HKDF info prefix (followed by the upload id) of the key that
/// MACs the upload's token, part records and part list, derived from the data key.
pub const SSEC_UPLOAD_INFO: &[u8] = b"sealgate ssec upload";

/// Names of sealgate's object metadata (S3 user metadata, hidden from clients).
pub mod meta {
    /// Every sealgate name starts with this; clients may not use it.
    pub const PREFIX: &str = "x-amz-meta-sealgate-";
    /// Format version: `1` (per-object data key) or `2` (derived from a bucket key).
    pub const VERSION: &str = "x-amz-meta-sealgate-v";
    /// The KMS key (ARN, or a backend's key reference) that wrapped the data key.
    pub const KEY: &str = "x-amz-meta-sealgate-key";
    /// Base64 wrapped data key (or wrapped bucket key in format 2).
    pub const WRAPPED: &str = "x-amz-meta-sealgate-dek";
    /// Base64 JSON of the caller's encryption context.
    pub const CONTEXT: &str = "x-amz-meta-sealgate-ctx";
    /// What the client asked for: `aws:kms`, `AES256` or `SSE-C`.
    pub const ALG: &str = "x-amz-meta-sealgate-alg";
    /// Plaintext size.
    pub const SIZE: &str = "x-amz-meta-sealgate-size";
    /// Single-part objects: base64 salt of part 1.
    pub const SALT: &str = "x-amz-meta-sealgate-salt";
    /// Multipart objects: the part list as runs `first:count:size`.
    pub const PARTS: &str = "x-amz-meta-sealgate-parts";
    /// Base64 MAC over size and part list.
    pub const MAC: &str = "x-amz-meta-sealgate-mac";
    /// `1` when the client asked for an S3 Bucket Key.
    pub const BUCKET_KEY: &str = "x-amz-meta-sealgate-bk";
    /// The KMS backend that wrapped the key (absent: the embedded KMS).
    pub const BACKEND: &str = "x-amz-meta-sealgate-kms";
    /// Format 2: base64 per-object salt of the DEK's derivation from the bucket key.
    pub const BK_SALT: &str = "x-amz-meta-sealgate-bks";
    /// Set on a multipart object until its completion wrote the part list (format 1).
    pub const PENDING: &str = "x-amz-meta-sealgate-pending";
    /// Format 3: where the client-visible ETag comes from: `store` (the store's), `md5:HEX`
    /// (the plaintext MD5), `trailer` (the plaintext MD5, sealed after the last segment).
    pub const ETAG: &str = "x-amz-meta-sealgate-etag";
    /// Format 3: the object's `x-amz-website-redirect-location` (stores drop that header).
    pub const REDIRECT: &str = "x-amz-meta-sealgate-wrl";
    /// Format 3: the object's Content-Type (the store holds ciphertext, typed
    /// `binary/octet-stream`; stores also rewrite types: SeaweedFS guesses from the key).
    pub const CONTENT_TYPE: &str = "x-amz-meta-sealgate-ct";
    /// Format 3 multipart objects: the upload id (hex) whose part list (in the state bucket,
    /// `manifests/<id>`) gives the object's parts, size and ETag.
    pub const UPLOAD: &str = "x-amz-meta-sealgate-upload";
    /// Format 3: the object's Content-Encoding (of the plaintext; the ciphertext has none).
    pub const CONTENT_ENCODING: &str = "x-amz-meta-sealgate-ce";
    /// SSE-C objects: base64 of the customer key's salt (16 bytes) and check (16 bytes).
    pub const CUSTOMER_KEY: &str = "x-amz-meta-sealgate-ckey";
    /// Format 3: the client's checksum: `ALGO:B64` (sealed here) or `ALGO:trailer` (sealed
    /// after the object's last segment and MD5 trailer).
    pub const CHECKSUM: &str = "x-amz-meta-sealgate-cks";
    /// Format 3: the names (after `x-amz-meta-`, comma-separated) of user metadata whose
    /// value is empty. Such headers are not sent to the store (SeaweedFS drops them) and
    /// are served back from here; the MAC covers them as `x-amz-meta-NAME: ""`.
    pub const EMPTY_META: &str = "x-amz-meta-sealgate-empty";
}

/// The 32-byte header of a part. It is the AAD of every segment of the part, so none of
/// its fields can be changed without every segment failing authentication.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    /// S3 part number (1 for a PutObject).
    pub part_number: u32,
    /// Fresh random bytes for this upload attempt: the part key is derived from them.
    pub salt: [u8; SALT_LEN],
    /// Plaintext bytes in this part.
    pub plain_len: u64,
}

impl fmt::Debug for PartHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PartHeader(part {}, {} bytes)",
            self.part_number, self.plain_len
        )
    }
}

/// Why bytes are not a valid part header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("part header has the wrong magic (not a sealgate v1 part)")]
    BadMagic,
    #[error("part header is truncated")]
    Truncated,
    #[error("part header names part {found}, expected part {expected}")]
    WrongPart { expected: u32, found: u32 },
    #[error("part header says {found} plaintext bytes, expected {expected}")]
    WrongLength { expected: u64, found: u64 },
    #[error("malformed part list: {0}")]
    BadManifest(String),
    #[error("part {0} is not the upload attempt the part list names")]
    WrongAttempt(u32),
}

impl PartHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.part_number.to_be_bytes());
        b[8..24].copy_from_slice(&self.salt);
        b[24..32].copy_from_slice(&self.plain_len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<PartHeader, FormatError> {
        if b.len() < HEADER_LEN as usize {
            return Err(FormatError::Truncated);
        }
        if b[0..4] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&b[8..24]);
        Ok(PartHeader {
            part_number: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            salt,
            plain_len: u64::from_be_bytes([b[24], b[25], b[26], b[27], b[28], b[29], b[30], b[31]]),
        })
    }
}

/// Largest plaintext size (of an object, and so of a part) sealgate handles: S3's 5 TiB
/// object limit. Every size that comes from a client or from the store is checked
/// against it where it enters (`Layout::decode_parts`, [`plain_len_of_part_cipher`],
/// object metadata, declared Content-Length), so offset arithmetic on sizes cannot
/// overflow.
pub const MAX_PLAIN: u64 = 5 << 40;

/// Number of segments of a part with `plain` plaintext bytes (at least one).
pub fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT).max(1)
}

/// Ciphertext length of a part body (`with_header`: multipart parts carry their header
/// in the body; a single-part object keeps it in metadata).
pub fn part_cipher_len(plain: u64, with_header: bool) -> u64 {
    (if with_header { HEADER_LEN } else { 0 }) + plain + TAG * segments(plain)
}

/// Inverse of [`part_cipher_len`]: the plaintext length, if `cipher` is a possible length.
pub fn plain_len_of_part_cipher(cipher: u64, with_header: bool) -> Option<u64> {
    if cipher > part_cipher_len(MAX_PLAIN, with_header) {
        return None;
    }
    let body = cipher.checked_sub(if with_header { HEADER_LEN } else { 0 })?;
    if body < TAG {
        return None;
    }
    let full = body / SEALED_SEGMENT;
    let rest = body % SEALED_SEGMENT;
    let plain = match (full, rest) {
        (0, r) => r - TAG,
        (f, 0) => f * SEGMENT,
        (_, r) if r <= TAG => return None,
        (f, r) => f * SEGMENT + (r - TAG),
    };
    (part_cipher_len(plain, with_header) == cipher).then_some(plain)
}

/// The 12-byte GCM nonce of segment `index`: 4 bytes final flag, 8 bytes index.
pub fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0..4].copy_from_slice(&u32::from(last).to_be_bytes());
    n[4..12].copy_from_slice(&index.to_be_bytes());
    n
}

/// Plaintext length of segment `index` of a part of `plain` bytes.
pub fn segment_plain_len(plain: u64, index: u64) -> u64 {
    let start = index * SEGMENT;
    plain.saturating_sub(start).min(SEGMENT)
}

/// The parts of an object: part number and plaintext length, in object order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Whether part headers are in the body (multipart) or in metadata (single part).
    pub headers_in_body: bool,
    pub parts: Vec<(u32, u64)>,
    /// The salt of each part's upload attempt, when the part list records them (format
    /// 3 multipart objects): a part from another attempt (same number and length) is then
    /// refused. Empty otherwise.
    pub salts: Vec<[u8; SALT_LEN]>,
}

impl Layout {
    /// A multipart object's layout before its part list is read (format 3: the list is
    /// in the upload's manifest).
    pub fn parts_pending() -> Layout {
        Layout {
            headers_in_body: true,
            parts: Vec::new(),
            salts: Vec::new(),
        }
    }

    pub fn single(plain: u64) -> Layout {
        Layout {
            headers_in_body: false,
            parts: vec![(1, plain)],
            salts: Vec::new(),
        }
    }

    pub fn plain_len(&self) -> u64 {
        self.parts.iter().map(|(_, p)| p).sum()
    }

    pub fn cipher_len(&self) -> u64 {
        self.parts
            .iter()
            .map(|(_, p)| part_cipher_len(*p, self.headers_in_body))
            .sum()
    }

    /// Encodes the part list compactly: runs of consecutive part numbers with equal sizes,
    /// `first:count:size` joined by `,` (e.g. `1:12:8388608,13:1:1048576`).
    pub fn encode_parts(&self) -> String {
        let mut runs: Vec<(u32, u32, u64)> = Vec::new();
        for &(n, p) in &self.parts {
            match runs.last_mut() {
                Some((first, count, size)) if *size == p && *first + *count == n => *count += 1,
                _ => runs.push((n, 1, p)),
            }
        }
        runs.iter()
            .map(|(f, c, s)| format!("{f}:{c}:{s}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`Layout::encode_parts`] output (multipart layout).
    pub fn decode_parts(s: &str) -> Result<Layout, FormatError> {
        let bad = |m: &str| FormatError::BadManifest(m.to_string());
        let mut parts = Vec::new();
        let mut total: u64 = 0;
        for run in s.split(',') {
            let mut it = run.split(':');
            let (Some(f), Some(c), Some(z), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad("expected first:count:size"));
            };
            let f: u32 = f.parse().map_err(|_| bad("part number"))?;
            let c: u32 = c.parse().map_err(|_| bad("count"))?;
            let z: u64 = z.parse().map_err(|_| bad("size"))?;
            if c == 0 || f == 0 || f.checked_add(c - 1).is_none_or(|last| last > 10_000) {
                return Err(bad("part numbers out of range"));
            }
            total = z
                .checked_mul(u64::from(c))
                .and_then(|run| run.checked_add(total))
                .filter(|t| *t <= MAX_PLAIN)
                .ok_or_else(|| bad("sizes add up to more than 5 TiB"))?;
            for i in 0..c {
                let n = f + i;
                if parts.last().is_some_and(|(prev, _)| *prev >= n) {
                    return Err(bad("part numbers not increasing"));
                }
                parts.push((n, z));
            }
        }
        if parts.is_empty() {
            return Err(bad("no parts"));
        }
        Ok(Layout {
            headers_in_body: true,
            parts,
            salts: Vec::new(),
        })
    }

    /// Ciphertext offset at which part `i` (index into `parts`) starts.
    pub fn part_cipher_start(&self, i: usize) -> u64 {
        self.parts[..i]
            .iter()
            .map(|(_, p)| part_cipher_len(*p, self.headers_in_body))
            .sum()
    }

    /// The header of part `i` when the part list records its salt.
    pub fn header_of(&self, i: usize) -> Option<PartHeader> {
        let salt = *self.salts.get(i)?;
        let (part_number, plain_len) = self.parts[i];
        Some(PartHeader {
            part_number,
            salt,
            plain_len,
        })
    }

    /// Plaintext offset at which part `i` starts.
    pub fn part_plain_start(&self, i: usize) -> u64 {
        self.parts[..i].iter().map(|(_, p)| p).sum()
    }
}

/// What to fetch from the store and decrypt for a plaintext range `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Index into `Layout::parts` of the first part touched.
    pub first_part: usize,
    /// First segment (within `first_part`) to decrypt.
    pub first_segment: u64,
    /// Ciphertext range to fetch, `[cipher_start, cipher_end)`; it begins at a segment
    /// boundary of `first_part` and ends at a segment boundary.
    pub cipher_start: u64,
    pub cipher_end: u64,
    /// Plaintext bytes to drop from the first decrypted segment.
    pub skip: u64,
    /// Plaintext bytes to deliver.
    pub len: u64,
}

/// Plans the read of plaintext `[start, end)`; `None` for an empty range.
pub fn plan(layout: &Layout, start: u64, end: u64) -> Option<ReadPlan> {
    let total = layout.plain_len();
    let end = end.min(total);
    if start >= end {
        return None;
    }
    let hdr = if layout.headers_in_body {
        HEADER_LEN
    } else {
        0
    };
    // Locate the part and segment holding `start`.
    let locate = |x: u64| -> (usize, u64) {
        let mut plain_off = 0;
        for (i, (_, p)) in layout.parts.iter().enumerate() {
            if x < plain_off + p {
                return (i, (x - plain_off) / SEGMENT);
            }
            plain_off += p;
        }
        (layout.parts.len() - 1, 0)
    };
    let (fp, fs) = locate(start);
    let (lp, ls) = locate(end - 1);
    let cipher_start = layout.part_cipher_start(fp) + hdr + fs * SEALED_SEGMENT;
    let last_plain = layout.parts[lp].1;
    let seg_end_in_part = hdr + ls * SEALED_SEGMENT + segment_plain_len(last_plain, ls) + TAG;
    let cipher_end = layout.part_cipher_start(lp) + seg_end_in_part;
    let skip = start - layout.part_plain_start(fp) - fs * SEGMENT;
    Some(ReadPlan {
        first_part: fp,
        first_segment: fs,
        cipher_start,
        cipher_end,
        skip,
        len: end - start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_at_segment_boundaries() {
        assert_eq!(part_cipher_len(0, false), 16);
        assert_eq!(part_cipher_len(1, false), 17);
        assert_eq!(part_cipher_len(65_535, false), 65_551);
        assert_eq!(part_cipher_len(65_536, false), 65_552);
        assert_eq!(part_cipher_len(65_537, false), 65_569);
        assert_eq!(part_cipher_len(0, true), 48);
        assert_eq!(plain_len_of_part_cipher(16, false), Some(0));
        assert_eq!(plain_len_of_part_cipher(15, false), None);
        assert_eq!(
            plain_len_of_part_cipher(65_553, false),
            None,
            "a lone tag after a full segment is impossible"
        );
    }

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let h = PartHeader {
            part_number: 7,
            salt: [9; 16],
            plain_len: 123_456_789,
        };
        assert_eq!(PartHeader::decode(&h.encode()), Ok(h));
        assert_eq!(
            PartHeader::decode(&h.encode()[..31]),
            Err(FormatError::Truncated)
        );
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(PartHeader::decode(&bad), Err(FormatError::BadMagic));
    }

    #[test]
    fn part_lists_encode_as_runs() {
        let l = Layout {
            headers_in_body: true,
            parts: vec![(1, 8), (2, 8), (3, 8), (4, 5), (7, 5)],
            salts: Vec::new(),
        };
        assert_eq!(l.encode_parts(), "1:3:8,4:1:5,7:1:5");
        assert_eq!(Layout::decode_parts(&l.encode_parts()).unwrap(), l);
        for bad in [
            "",
            "1:0:5",
            "0:1:5",
            "2:1:5,1:1:5",
            "1:2",
            "9999:5:1",
            "a:b:c",
        ] {
            assert!(Layout::decode_parts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_one_byte_range_reads_one_segment() {
        let l = Layout::single(1 << 30);
        let p = plan(&l, 500_000, 500_001).unwrap();
        assert_eq!(p.cipher_end - p.cipher_start, SEALED_SEGMENT);
        assert_eq!(p.first_segment, 500_000 / SEGMENT);
        assert_eq!(p.skip, 500_000 % SEGMENT);
    }

    #[test]
    fn ranges_across_parts_cover_the_intermediate_headers() {
        let l = Layout {
            headers_in_body: true,
            parts: vec![(1, 100_000), (2, 100_000)],
            salts: Vec::new(),
        };
        let p = plan(&l, 99_999, 100_001).unwrap();
        assert_eq!(p.first_part, 0);
        assert_eq!(p.first_segment, 1);
        assert_eq!(p.cipher_start, HEADER_LEN + SEALED_SEGMENT);
        // Through the end of part 1, part 2's header and its first segment.
        assert_eq!(
            p.cipher_end,
            part_cipher_len(100_000, true) + HEADER_LEN + SEALED_SEGMENT
        );
    }

    proptest! {
        #[test]
        fn cipher_len_inverts(plain in 0u64..10_000_000, hdr: bool) {
            let c = part_cipher_len(plain, hdr);
            prop_assert_eq!(plain_len_of_part_cipher(c, hdr), Some(plain));
            prop_assert!(part_cipher_len(plain + 1, hdr) > c);
        }

        #[test]
        fn plans_cover_exactly_the_range(sizes in proptest::collection::vec(0u64..300_000, 1..5), a in 0u64..1_500_000, len in 1u64..400_000) {
            let layout = Layout { headers_in_body: sizes.len() > 1, parts: sizes.iter().enumerate().map(|(i, s)| (i as u32 + 1, *s)).collect(), salts: Vec::new() };
            let total = layout.plain_len();
            prop_assume!(a < total);
            let end = (a + len).min(total);
            let p = plan(&layout, a, end).unwrap();
            prop_assert_eq!(p.len, end - a);
            prop_assert!(p.cipher_end <= layout.cipher_len());
            prop_assert!(p.cipher_start < p.cipher_end);
            prop_assert!(p.skip < SEGMENT);
            // The fetched ciphertext holds at most the covering segments plus headers and tags.
            let segs = (p.skip + p.len).div_ceil(SEGMENT) + layout.parts.len() as u64;
            prop_assert!(p.cipher_end - p.cipher_start <= segs * SEALED_SEGMENT + HEADER_LEN * layout.parts.len() as u64);
        }
    }
}
