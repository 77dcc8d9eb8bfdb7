//! sealgate's per-object metadata (S3 user metadata `x-amz-meta-sealgate-*`), see
//! `docs/format.md`.
//!
//! Invariants: clients never see these headers and cannot set them; everything needed to
//! decrypt is here except the DEK itself (only its KMS-wrapped form); the part list and
//! size are MACed under a key derived from the DEK, so they are checked before use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderValue};
use s3s::{S3Error, S3ErrorCode};

use super::sse::Alg;
use crate::crypto::format::{Layout, PartHeader, SALT_LEN};
use crate::crypto::stream::{Dek, metadata_mac};

pub const PREFIX: &str = "x-amz-meta-sealgate-";
const V: &str = "x-amz-meta-sealgate-v";
pub const KEY: &str = "x-amz-meta-sealgate-key";
const DEK: &str = "x-amz-meta-sealgate-dek";
const CTX: &str = "x-amz-meta-sealgate-ctx";
const ALG: &str = "x-amz-meta-sealgate-alg";
const SIZE: &str = "x-amz-meta-sealgate-size";
const SALT: &str = "x-amz-meta-sealgate-salt";
const PARTS: &str = "x-amz-meta-sealgate-parts";
const MAC: &str = "x-amz-meta-sealgate-mac";
const BUCKET_KEY: &str = "x-amz-meta-sealgate-bk";
const BACKEND: &str = "x-amz-meta-sealgate-kms";
const BK_SALT: &str = "x-amz-meta-sealgate-bks";

/// Everything sealgate stores about an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The backend's reference to the KMS key (ARN, `transit:mount/key`).
    pub key_arn: String,
    /// The wrapped DEK, or (format v2) the wrapped bucket key the DEK derives from.
    pub wrapped_dek: Vec<u8>,
    /// KMS backend that wrapped the key; `None` = the embedded KMS.
    pub backend: Option<String>,
    /// Format v2 (bucket keys): the per-object salt of the DEK derivation.
    pub bk_salt: Option<[u8; SALT_LEN]>,
    /// Base64 JSON of the caller's encryption context, as the client sent it.
    pub context_b64: Option<String>,
    pub alg: Alg,
    pub bucket_key: bool,
    pub size: u64,
    pub layout: Layout,
    /// Salt of part 1 of a single-part object (its header lives here, not in the body).
    pub salt: Option<[u8; SALT_LEN]>,
    pub mac: [u8; 16],
}

/// The stored object is not a valid sealgate object (tampered or truncated metadata).
pub fn corrupt(detail: impl std::fmt::Display) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InternalError,
        format!(
            "sealgate: the stored object failed verification (it was modified in the store): {detail}"
        ),
    )
}

fn get<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n).and_then(|v| v.to_str().ok())
}

impl ObjectMeta {
    /// The message the MAC covers.
    fn mac_message(size: u64, layout: &Layout) -> Vec<u8> {
        let parts = if layout.headers_in_body {
            layout.encode_parts()
        } else {
            String::new()
        };
        format!("sealgate v1|{size}|{parts}").into_bytes()
    }

    pub fn compute_mac(dek: &Dek, size: u64, layout: &Layout) -> [u8; 16] {
        metadata_mac(dek, &Self::mac_message(size, layout))
    }

    /// Checks the MAC with the unwrapped DEK.
    pub fn verify(&self, dek: &Dek) -> Result<(), S3Error> {
        let want = Self::compute_mac(dek, self.size, &self.layout);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&want, &self.mac).is_err() {
            return Err(corrupt("metadata authentication failed"));
        }
        Ok(())
    }

    /// Header of the first part for a single-part object.
    pub fn single_header(&self) -> Option<PartHeader> {
        self.salt.map(|salt| PartHeader {
            part_number: 1,
            salt,
            plain_len: self.size,
        })
    }

    /// Writes the metadata headers (for a PUT, Create or Copy to the store).
    pub fn write(&self, h: &mut HeaderMap) {
        let mut set = |n: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(n, v);
            }
        };
        set(V, if self.bk_salt.is_some() { "2" } else { "1" }.into());
        set(KEY, self.key_arn.clone());
        set(DEK, B64.encode(&self.wrapped_dek));
        if let Some(b) = &self.backend {
            set(BACKEND, b.clone());
        }
        if let Some(s) = &self.bk_salt {
            set(BK_SALT, B64.encode(s));
        }
        if let Some(c) = &self.context_b64 {
            set(CTX, c.clone());
        }
        set(ALG, self.alg.as_str().into());
        if self.bucket_key {
            set(BUCKET_KEY, "1".into());
        }
        set(SIZE, self.size.to_string());
        if let Some(s) = &self.salt {
            set(SALT, B64.encode(s));
        }
        if self.layout.headers_in_body {
            set(PARTS, self.layout.encode_parts());
        }
        set(MAC, B64.encode(self.mac));
    }

    /// Reads the metadata from store response headers. `Ok(None)`: not a sealgate object.
    pub fn read(h: &HeaderMap) -> Result<Option<ObjectMeta>, S3Error> {
        let Some(v) = get(h, V) else { return Ok(None) };
        if v != "1" && v != "2" {
            return Err(corrupt(format!("unknown format version {v:?}")));
        }
        if get(h, "x-amz-meta-sealgate-pending").is_some() {
            return Err(corrupt(
                "its multipart upload was not completed through sealgate",
            ));
        }
        let need = |n: &str| get(h, n).ok_or_else(|| corrupt(format!("missing {n}")));
        let b64 = |n: &str, s: &str| {
            B64.decode(s)
                .map_err(|_| corrupt(format!("{n} is not base64")))
        };
        let key_arn = need(KEY)?.to_string();
        let wrapped_dek = b64(DEK, need(DEK)?)?;
        let alg = Alg::parse(need(ALG)?).ok_or_else(|| corrupt("unknown algorithm"))?;
        let size: u64 = need(SIZE)?
            .parse()
            .ok()
            .filter(|s| *s <= crate::crypto::format::MAX_PLAIN)
            .ok_or_else(|| corrupt("size is not a number up to 5 TiB"))?;
        let mac_v = b64(MAC, need(MAC)?)?;
        let mac: [u8; 16] = mac_v
            .try_into()
            .map_err(|_| corrupt("mac has the wrong length"))?;
        let (layout, salt) = match (get(h, PARTS), get(h, SALT)) {
            (Some(p), None) => {
                let l = Layout::decode_parts(p).map_err(corrupt)?;
                if l.plain_len() != size {
                    return Err(corrupt("part list does not add up to the size"));
                }
                (l, None)
            }
            (None, Some(s)) => {
                let s: [u8; SALT_LEN] = b64(SALT, s)?
                    .try_into()
                    .map_err(|_| corrupt("salt has the wrong length"))?;
                (Layout::single(size), Some(s))
            }
            // Created by CreateMultipartUpload and not (yet) completed by sealgate.
            (None, None) => {
                return Err(corrupt(
                    "the multipart upload of this object was not completed through sealgate",
                ));
            }
            (Some(_), Some(_)) => return Err(corrupt("both a part list and a single-part salt")),
        };
        // Version 2 = version 1 with a DEK derived from a bucket key (docs/format.md).
        let bk_salt = match (v, get(h, BK_SALT)) {
            ("2", Some(s)) => Some(
                b64(BK_SALT, s)?
                    .try_into()
                    .map_err(|_| corrupt("bucket-key salt has the wrong length"))?,
            ),
            ("1", None) => None,
            _ => return Err(corrupt("format version and bucket-key salt disagree")),
        };
        Ok(Some(ObjectMeta {
            key_arn,
            wrapped_dek,
            backend: get(h, BACKEND).map(str::to_owned),
            bk_salt,
            context_b64: get(h, CTX).map(str::to_owned),
            alg,
            bucket_key: get(h, BUCKET_KEY) == Some("1"),
            size,
            layout,
            salt,
            mac,
        }))
    }
}

/// Removes sealgate's metadata headers (responses to clients).
pub fn strip(h: &mut HeaderMap) {
    let names: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Refuses client metadata in sealgate's reserved namespace.
pub fn reject_reserved(h: &HeaderMap) -> Result<(), S3Error> {
    if let Some(k) = h.keys().find(|k| k.as_str().starts_with(PREFIX)) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("Metadata keys beginning with `sealgate-` are reserved by sealgate (got {k})."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(layout: Layout, salt: Option<[u8; 16]>) -> ObjectMeta {
        let dek = Dek::from_slice(&[5; 32]).unwrap();
        let size = layout.plain_len();
        ObjectMeta {
            key_arn: "arn:aws:kms:us-east-1:000000000000:key/abc".into(),
            wrapped_dek: vec![1, 2, 3],
            backend: None,
            bk_salt: None,
            context_b64: None,
            alg: Alg::Kms,
            bucket_key: false,
            size,
            mac: ObjectMeta::compute_mac(&dek, size, &layout),
            layout,
            salt,
        }
    }

    #[test]
    fn metadata_round_trips_through_headers_and_stays_small() {
        for m in [
            sample(Layout::single(12345), Some([9; 16])),
            sample(
                Layout {
                    headers_in_body: true,
                    parts: (1..=1000).map(|n| (n, 8 << 20)).collect(),
                },
                None,
            ),
            ObjectMeta {
                backend: Some("bao".into()),
                bk_salt: Some([3; 16]),
                ..sample(Layout::single(7), Some([9; 16]))
            },
        ] {
            let mut h = HeaderMap::new();
            m.write(&mut h);
            let total: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
            assert!(total < 600, "metadata is {total} bytes");
            assert_eq!(ObjectMeta::read(&h).unwrap().unwrap(), m);
            m.verify(&Dek::from_slice(&[5; 32]).unwrap()).unwrap();
            strip(&mut h);
            assert!(h.is_empty());
        }
    }

    #[test]
    fn a_tampered_size_fails_the_mac() {
        let mut m = sample(
            Layout {
                headers_in_body: true,
                parts: vec![(1, 10), (2, 5)],
            },
            None,
        );
        m.layout.parts.pop();
        m.size = 10;
        assert!(m.verify(&Dek::from_slice(&[5; 32]).unwrap()).is_err());
    }

    #[test]
    fn objects_without_sealgate_metadata_are_not_sealgate_objects() {
        assert_eq!(ObjectMeta::read(&HeaderMap::new()).unwrap(), None);
        let mut h = HeaderMap::new();
        h.insert(V, "3".parse().unwrap());
        assert!(ObjectMeta::read(&h).is_err());
    }
}
