//! An object's sealgate metadata (S3 user metadata `x-amz-meta-sealgate-*`, names in
//! `crypto::format::meta`), see `docs/format.md`.
//!
//! Invariants: clients never see these headers and cannot set them; everything needed to
//! decrypt is here except the DEK itself (only its wrapped form, in the [`Envelope`]); the
//! size and part list are MACed under a key derived from the DEK, so they are checked
//! ([`ObjectMeta::verify`]) before anything is served. Metadata that does not parse is
//! tampering.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderValue};

use super::envelope::{Alg, Envelope, decode_context};
use crate::crypto::format::meta as names;
use crate::crypto::format::{Layout, PartHeader, SALT_LEN};
use crate::crypto::stream::{Dek, metadata_mac};
use crate::error::Error;

/// Everything sealgate stores about an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub envelope: Envelope,
    /// Plaintext size.
    pub size: u64,
    pub layout: Layout,
    /// Salt of part 1 of a single-part object (its header lives here, not in the body).
    pub salt: Option<[u8; SALT_LEN]>,
    pub mac: [u8; 16],
}

fn get<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n).and_then(|v| v.to_str().ok())
}

impl ObjectMeta {
    /// Metadata of a new single-part object of `size` bytes whose part 1 has `salt`.
    pub fn single(envelope: Envelope, dek: &Dek, size: u64, salt: [u8; SALT_LEN]) -> ObjectMeta {
        let layout = Layout::single(size);
        ObjectMeta {
            envelope,
            size,
            mac: Self::compute_mac(dek, size, &layout),
            layout,
            salt: Some(salt),
        }
    }

    /// Metadata of a completed multipart object with this part list.
    pub fn multipart(envelope: Envelope, dek: &Dek, layout: Layout) -> ObjectMeta {
        let size = layout.plain_len();
        ObjectMeta {
            envelope,
            size,
            mac: Self::compute_mac(dek, size, &layout),
            layout,
            salt: None,
        }
    }

    /// The message the MAC covers.
    fn mac_message(size: u64, layout: &Layout) -> Vec<u8> {
        let parts = if layout.headers_in_body {
            layout.encode_parts()
        } else {
            String::new()
        };
        format!("sealgate v1|{size}|{parts}").into_bytes()
    }

    fn compute_mac(dek: &Dek, size: u64, layout: &Layout) -> [u8; 16] {
        metadata_mac(dek, &Self::mac_message(size, layout))
    }

    /// Checks the MAC with the unwrapped DEK.
    pub fn verify(&self, dek: &Dek) -> Result<(), Error> {
        let want = Self::compute_mac(dek, self.size, &self.layout);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&want, &self.mac).is_err() {
            return Err(Error::tampered("metadata authentication failed"));
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

    /// Writes the metadata headers (for a PUT or Copy to the store).
    pub fn write(&self, h: &mut HeaderMap) {
        write_envelope(&self.envelope, h);
        set(h, names::SIZE, self.size.to_string());
        if let Some(s) = &self.salt {
            set(h, names::SALT, B64.encode(s));
        }
        if self.layout.headers_in_body {
            set(h, names::PARTS, self.layout.encode_parts());
        }
        set(h, names::MAC, B64.encode(self.mac));
    }

    /// Reads the metadata from store response headers. `Ok(None)`: not a sealgate object.
    pub fn read(h: &HeaderMap) -> Result<Option<ObjectMeta>, Error> {
        let Some(v) = get(h, names::VERSION) else {
            return Ok(None);
        };
        if get(h, names::PENDING).is_some() {
            return Err(Error::tampered(
                "its multipart upload was not completed through sealgate",
            ));
        }
        let envelope = read_envelope(h, v)?;
        let size: u64 = need(h, names::SIZE)?
            .parse()
            .ok()
            .filter(|s| *s <= crate::crypto::format::MAX_PLAIN)
            .ok_or_else(|| Error::tampered("size is not a number up to 5 TiB"))?;
        let mac: [u8; 16] = b64(names::MAC, need(h, names::MAC)?)?
            .try_into()
            .map_err(|_| Error::tampered("mac has the wrong length"))?;
        let (layout, salt) = match (get(h, names::PARTS), get(h, names::SALT)) {
            (Some(p), None) => {
                let l = Layout::decode_parts(p).map_err(Error::tampered)?;
                if l.plain_len() != size {
                    return Err(Error::tampered("part list does not add up to the size"));
                }
                (l, None)
            }
            (None, Some(s)) => {
                let s: [u8; SALT_LEN] = b64(names::SALT, s)?
                    .try_into()
                    .map_err(|_| Error::tampered("salt has the wrong length"))?;
                (Layout::single(size), Some(s))
            }
            // Created by CreateMultipartUpload and not (yet) completed by sealgate.
            (None, None) => {
                return Err(Error::tampered(
                    "the multipart upload of this object was not completed through sealgate",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::tampered("both a part list and a single-part salt"));
            }
        };
        Ok(Some(ObjectMeta {
            envelope,
            size,
            layout,
            salt,
            mac,
        }))
    }
}

fn set(h: &mut HeaderMap, n: &'static str, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(n, v);
    }
}

fn need<'a>(h: &'a HeaderMap, n: &str) -> Result<&'a str, Error> {
    get(h, n).ok_or_else(|| Error::tampered(format!("missing {n}")))
}

fn b64(n: &str, s: &str) -> Result<Vec<u8>, Error> {
    B64.decode(s)
        .map_err(|_| Error::tampered(format!("{n} is not base64")))
}

/// Writes the envelope's headers (also what CreateMultipartUpload stores up front).
pub fn write_envelope(env: &Envelope, h: &mut HeaderMap) {
    set(h, names::VERSION, env.format_version().to_string());
    set(h, names::KEY, env.key_ref.clone());
    set(h, names::WRAPPED, B64.encode(&env.wrapped));
    if let Some(b) = &env.backend {
        set(h, names::BACKEND, b.clone());
    }
    if let Some(s) = &env.bk_salt {
        set(h, names::BK_SALT, B64.encode(s));
    }
    if let Some(c) = env.context_b64() {
        set(h, names::CONTEXT, c);
    }
    set(h, names::ALG, env.alg.as_str().into());
    if env.bucket_key {
        set(h, names::BUCKET_KEY, "1".into());
    }
}

fn read_envelope(h: &HeaderMap, version: &str) -> Result<Envelope, Error> {
    if version != "1" && version != "2" {
        return Err(Error::tampered(format!(
            "unknown format version {version:?}"
        )));
    }
    let key_ref = need(h, names::KEY)?.to_string();
    let wrapped = b64(names::WRAPPED, need(h, names::WRAPPED)?)?;
    let alg =
        Alg::parse(need(h, names::ALG)?).ok_or_else(|| Error::tampered("unknown algorithm"))?;
    let context = match get(h, names::CONTEXT) {
        Some(c) => decode_context(c)
            .filter(|m| !m.contains_key("aws:s3:arn"))
            .ok_or_else(|| Error::tampered("stored encryption context is invalid"))?,
        None => Default::default(),
    };
    // Version 2 = version 1 with a DEK derived from a bucket key (docs/format.md).
    let bk_salt = match (version, get(h, names::BK_SALT)) {
        ("2", Some(s)) => Some(
            b64(names::BK_SALT, s)?
                .try_into()
                .map_err(|_| Error::tampered("bucket-key salt has the wrong length"))?,
        ),
        ("1", None) => None,
        _ => {
            return Err(Error::tampered(
                "format version and bucket-key salt disagree",
            ));
        }
    };
    Ok(Envelope {
        alg,
        key_ref,
        wrapped,
        backend: get(h, names::BACKEND).map(str::to_owned),
        bk_salt,
        context,
        bucket_key: get(h, names::BUCKET_KEY) == Some("1"),
    })
}

/// Removes sealgate's metadata headers (responses to clients).
pub fn strip(h: &mut HeaderMap) {
    let names: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with(names::PREFIX))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Refuses client metadata in sealgate's reserved namespace.
pub fn reject_reserved(h: &HeaderMap) -> Result<(), Error> {
    if let Some(k) = h.keys().find(|k| k.as_str().starts_with(names::PREFIX)) {
        return Err(Error::invalid_argument(format!(
            "Metadata keys beginning with `sealgate-` are reserved by sealgate (got {k})."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            alg: Alg::Kms,
            key_ref: "arn:aws:kms:us-east-1:000000000000:key/abc".into(),
            wrapped: vec![1, 2, 3],
            backend: None,
            bk_salt: None,
            context: Default::default(),
            bucket_key: false,
        }
    }

    fn dek() -> Dek {
        Dek::from_slice(&[5; 32]).unwrap()
    }

    #[test]
    fn metadata_round_trips_through_headers_and_stays_small() {
        let multi = Layout {
            headers_in_body: true,
            parts: (1..=1000).map(|n| (n, 8 << 20)).collect(),
        };
        let remote = Envelope {
            backend: Some("bao".into()),
            bk_salt: Some([3; 16]),
            context: [("team".to_string(), "blue".to_string())].into(),
            ..envelope()
        };
        for m in [
            ObjectMeta::single(envelope(), &dek(), 12345, [9; 16]),
            ObjectMeta::multipart(envelope(), &dek(), multi),
            ObjectMeta::single(remote, &dek(), 7, [9; 16]),
        ] {
            let mut h = HeaderMap::new();
            m.write(&mut h);
            let total: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
            assert!(total < 600, "metadata is {total} bytes");
            assert_eq!(ObjectMeta::read(&h).unwrap().unwrap(), m);
            m.verify(&dek()).unwrap();
            strip(&mut h);
            assert!(h.is_empty());
        }
    }

    #[test]
    fn a_tampered_size_fails_the_mac() {
        let mut m = ObjectMeta::multipart(
            envelope(),
            &dek(),
            Layout {
                headers_in_body: true,
                parts: vec![(1, 10), (2, 5)],
            },
        );
        m.layout.parts.pop();
        m.size = 10;
        assert!(matches!(m.verify(&dek()), Err(Error::Tampered(_))));
    }

    #[test]
    fn objects_without_sealgate_metadata_are_not_sealgate_objects() {
        assert_eq!(ObjectMeta::read(&HeaderMap::new()).unwrap(), None);
        let mut h = HeaderMap::new();
        h.insert(names::VERSION, "3".parse().unwrap());
        assert!(matches!(ObjectMeta::read(&h), Err(Error::Tampered(_))));
    }
}
