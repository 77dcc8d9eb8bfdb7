//! An object's sealgate metadata (S3 user metadata `x-amz-meta-sealgate-*`, names in
//! `crypto::format::meta`), see `docs/format.md`.
//!
//! Invariants: clients never see these headers and cannot set them; everything needed to
//! decrypt is here except the DEK itself (only its wrapped form, in the [`Envelope`]);
//! nothing is used before [`ObjectMeta::verify`] checked the MAC with the DEK. The MAC of
//! format 3 covers everything sealgate serves about the object (SSE algorithm and key,
//! size, ETag, content headers, user metadata); formats 1 and 2 cover size and part list
//! and stay readable. Metadata that does not parse is tampering.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderValue};

use super::checksum::Stored;
use super::customer::KeyCheck;
use super::describe::Described;
use super::envelope::{Alg, Envelope, decode_context};
use super::manifest::UploadUid;
use crate::crypto::format::meta as names;
use crate::crypto::format::{Layout, PartHeader, SALT_LEN, TRAILER_LEN};
use crate::crypto::stream::{Dek, metadata_mac, metadata_mac_v3};
use crate::error::Error;

/// The format new objects are written in.
pub const FORMAT: u8 = 3;

/// Where an object's client-visible ETag comes from (format 3; older objects: the
/// store's). MD5s are never stored in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ETag {
    /// The store's ETag (SSE-KMS objects, as AWS: stable, not an MD5).
    Store,
    /// The plaintext MD5 (AWS's ETag for SSE-S3), known when the object was written and
    /// stored sealed under a key derived from the DEK (`crypto::stream::seal_md5`): the
    /// store never sees an MD5 of the plaintext.
    Md5([u8; 32]),
    /// The plaintext MD5, sealed after the object's last segment (it was computed while
    /// the body streamed to the store).
    Trailer,
    /// A multipart object's ETag, from its part list (SSE-S3: the MD5 of the parts' MD5s,
    /// `-N`); `None` until the part list is read.
    Parts(Option<String>),
}

impl ETag {
    fn encode(&self) -> String {
        match self {
            ETag::Store => "store".into(),
            ETag::Md5(m) => format!("md5:{}", B64.encode(m)),
            ETag::Trailer => "trailer".into(),
            ETag::Parts(_) => "parts".into(),
        }
    }

    fn decode(s: &str) -> Option<ETag> {
        match s {
            "store" => Some(ETag::Store),
            "trailer" => Some(ETag::Trailer),
            "parts" => Some(ETag::Parts(None)),
            _ => {
                let b = s.strip_prefix("md5:")?;
                Some(ETag::Md5(B64.decode(b).ok()?.try_into().ok()?))
            }
        }
    }

    /// The ETag header value for an MD5 (`"hex"`).
    pub fn quoted_md5(md5: &[u8; 16]) -> String {
        format!("\"{}\"", hex::encode(md5))
    }
}

/// Everything sealgate stores about an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub envelope: Envelope,
    /// Stored format: 1, 2 (bucket keys) or 3.
    pub format: u8,
    /// Plaintext size.
    pub size: u64,
    pub layout: Layout,
    /// Salt of part 1 of a single-part object (its header lives here, not in the body).
    pub salt: Option<[u8; SALT_LEN]>,
    /// Where the ETag comes from.
    pub etag: ETag,
    /// Format 3: the content headers and user metadata, as written (or as the store
    /// returned them, to be checked).
    pub described: Described,
    /// Format-3 multipart objects: the upload whose part list (manifest) gives the
    /// layout, size and ETag ([`super::Objects::open`] reads it).
    pub upload: Option<UploadUid>,
    /// The client's checksum, when it sent one (format 3; multipart objects: from the
    /// part list).
    pub checksum: Option<Stored>,
    pub mac: [u8; 16],
}

fn get<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n).and_then(|v| v.to_str().ok())
}

fn field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

impl ObjectMeta {
    /// Metadata of a new single-part object of `size` bytes whose part 1 has `salt`, in
    /// the current format.
    pub fn single(
        envelope: Envelope,
        dek: &Dek,
        size: u64,
        salt: [u8; SALT_LEN],
        etag: ETag,
        described: Described,
        checksum: Option<Stored>,
    ) -> ObjectMeta {
        let mut m = ObjectMeta {
            envelope,
            format: FORMAT,
            size,
            layout: Layout::single(size),
            salt: Some(salt),
            etag,
            described,
            upload: None,
            checksum,
            mac: [0; 16],
        };
        m.mac = m.compute_mac(dek);
        m
    }

    /// Metadata of a multipart object as CreateMultipartUpload writes it (format 3): the
    /// part list, size and ETag come later, in the upload's manifest.
    pub fn multipart_head(
        envelope: Envelope,
        dek: &Dek,
        upload: UploadUid,
        md5: bool,
        described: Described,
    ) -> ObjectMeta {
        let mut m = ObjectMeta {
            envelope,
            format: FORMAT,
            size: 0,
            layout: Layout::parts_pending(),
            salt: None,
            etag: if md5 { ETag::Parts(None) } else { ETag::Store },
            described,
            upload: Some(upload),
            checksum: None,
            mac: [0; 16],
        };
        m.mac = m.compute_mac(dek);
        m
    }

    /// This multipart object completed with `manifest`'s part list.
    pub fn with_manifest(mut self, manifest: &super::manifest::Manifest) -> ObjectMeta {
        self.layout = manifest.layout();
        self.size = self.layout.plain_len();
        if let ETag::Parts(_) = self.etag {
            self.etag = ETag::Parts(manifest.etag.clone());
        }
        self
    }

    /// Whether the layout is still to be read from the upload's manifest.
    pub fn needs_manifest(&self) -> bool {
        self.upload.is_some() && self.layout.parts.is_empty()
    }

    /// Metadata of a completed multipart object with this part list (format 1: the part
    /// list is written by the self-copy at completion).
    pub fn multipart(envelope: Envelope, dek: &Dek, layout: Layout) -> ObjectMeta {
        let mut m = ObjectMeta {
            envelope,
            format: 1,
            size: layout.plain_len(),
            layout,
            salt: None,
            etag: ETag::Store,
            described: Described::default(),
            upload: None,
            checksum: None,
            mac: [0; 16],
        };
        m.mac = m.compute_mac(dek);
        m
    }

    /// The same object with a new envelope (a copy: same DEK, wrapped for another name),
    /// re-MACed with `dek`. Formats 1 and 2 become format 1 (their MAC does not depend on
    /// the envelope); format 3 stays format 3. An SSE-C copy gets the store's ETag (as
    /// on AWS, an SSE-C object's ETag is not an MD5; and a listing, which has no customer
    /// key, could not open a sealed one): only format-3 sources without an MD5 trailer
    /// can become SSE-C this way (the copy handler streams the others).
    pub fn rewrapped(&self, envelope: Envelope, dek: &Dek, described: Described) -> ObjectMeta {
        debug_assert!(
            !envelope.is_customer() || self.rewraps_to_customer(),
            "an SSE-C copy by re-wrapping needs a format-3 source without a trailer"
        );
        let etag = match &self.etag {
            ETag::Md5(_) | ETag::Parts(_) if envelope.is_customer() => ETag::Store,
            e => e.clone(),
        };
        let mut m = ObjectMeta {
            envelope,
            format: if self.format == 3 { 3 } else { 1 },
            described,
            etag,
            ..self.clone()
        };
        m.mac = m.compute_mac(dek);
        m
    }

    /// Whether a copy can make this object SSE-C by re-wrapping its DEK (see
    /// [`Self::rewrapped`]).
    pub fn rewraps_to_customer(&self) -> bool {
        self.format == 3 && self.etag != ETag::Trailer && self.checksum_trailer() == 0
    }

    /// Bytes of the sealed checksum after the segments and MD5 trailer.
    pub fn checksum_trailer(&self) -> u64 {
        self.checksum.as_ref().map_or(0, Stored::trailer_len)
    }

    /// The ciphertext length the store must hold.
    pub fn cipher_len(&self) -> u64 {
        self.layout.cipher_len() + self.md5_trailer() + self.checksum_trailer()
    }

    /// Bytes of the sealed MD5 after the segments.
    pub fn md5_trailer(&self) -> u64 {
        if self.etag == ETag::Trailer {
            TRAILER_LEN
        } else {
            0
        }
    }

    /// The message the format-1/2 MAC covers.
    fn mac_message_v1(&self) -> Vec<u8> {
        let parts = if self.layout.headers_in_body {
            self.layout.encode_parts()
        } else {
            String::new()
        };
        format!("sealgate v1|{}|{parts}", self.size).into_bytes()
    }

    /// The message the format-3 MAC covers: every field sealgate serves or uses.
    fn mac_message_v3(&self) -> Vec<u8> {
        let e = &self.envelope;
        let mut m = b"sealgate v3 object".to_vec();
        field(&mut m, e.alg.as_str().as_bytes());
        field(&mut m, e.key_ref.as_bytes());
        field(&mut m, e.backend.as_deref().unwrap_or("").as_bytes());
        field(&mut m, e.bk_salt.as_ref().map_or(&[][..], |s| &s[..]));
        field(&mut m, &serde_json::to_vec(&e.context).unwrap_or_default());
        field(&mut m, if e.bucket_key { b"1" } else { b"0" });
        match (&self.upload, &self.salt) {
            // A multipart object: its size and parts are in the manifest the upload id
            // names (MACed on its own).
            (Some(u), _) => {
                field(&mut m, b"multipart");
                field(&mut m, u);
            }
            (None, Some(s)) => {
                field(&mut m, self.size.to_string().as_bytes());
                field(&mut m, s);
            }
            (None, None) => {
                field(&mut m, self.size.to_string().as_bytes());
                field(&mut m, self.layout.encode_parts().as_bytes());
            }
        }
        field(&mut m, self.etag.encode().as_bytes());
        field(&mut m, &self.described.canonical());
        // SSE-C (algorithm `SSE-C`, which no other object has): the key check too.
        if let Some(c) = &e.customer {
            field(&mut m, &c.encode());
        }
        // The client's checksum, when kept in the metadata or a trailer (absent from
        // objects written before sealgate kept checksums, so their MAC is unchanged).
        if let Some(c) = self.checksum.as_ref().and_then(Stored::encode) {
            field(&mut m, b"checksum");
            field(&mut m, c.as_bytes());
        }
        m
    }

    fn compute_mac(&self, dek: &Dek) -> [u8; 16] {
        if self.format >= 3 {
            metadata_mac_v3(dek, &self.mac_message_v3())
        } else {
            metadata_mac(dek, &self.mac_message_v1())
        }
    }

    /// Checks the MAC with the unwrapped DEK.
    pub fn verify(&self, dek: &Dek) -> Result<(), Error> {
        let want = self.compute_mac(dek);
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

    /// Writes the metadata headers (for a PUT or Copy to the store). The described
    /// headers themselves are written by the caller (they are the object's own).
    pub fn write(&self, h: &mut HeaderMap) {
        write_envelope(&self.envelope, self.format, h);
        if let Some(u) = &self.upload {
            set(h, names::UPLOAD, hex::encode(u));
            set(h, names::ETAG, self.etag.encode());
            set(h, names::MAC, B64.encode(self.mac));
            return;
        }
        set(h, names::SIZE, self.size.to_string());
        if let Some(s) = &self.salt {
            set(h, names::SALT, B64.encode(s));
        }
        if self.layout.headers_in_body {
            set(h, names::PARTS, self.layout.encode_parts());
        }
        if self.format >= 3 {
            set(h, names::ETAG, self.etag.encode());
            if let Some(c) = self.checksum.as_ref().and_then(Stored::encode) {
                set(h, names::CHECKSUM, c);
            }
        }
        set(h, names::MAC, B64.encode(self.mac));
    }

    /// Reads the metadata from store response headers. `Ok(None)`: not a sealgate object.
    pub fn read(h: &HeaderMap) -> Result<Option<ObjectMeta>, Error> {
        let Some(v) = get(h, names::VERSION) else {
            return Ok(None);
        };
        let format: u8 = match v {
            "1" => 1,
            "2" => 2,
            "3" => 3,
            other => {
                return Err(Error::tampered(format!("unknown format version {other:?}")));
            }
        };
        if get(h, names::PENDING).is_some() {
            return Err(Error::tampered(
                "its multipart upload was not completed through sealgate",
            ));
        }
        let envelope = read_envelope(h, format)?;
        if format >= 3
            && let Some(u) = get(h, names::UPLOAD)
        {
            let upload: UploadUid = hex::decode(u)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| Error::tampered("the upload id is malformed"))?;
            let mac: [u8; 16] = b64(names::MAC, need(h, names::MAC)?)?
                .try_into()
                .map_err(|_| Error::tampered("mac has the wrong length"))?;
            let etag = ETag::decode(need(h, names::ETAG)?)
                .filter(|e| matches!(e, ETag::Store | ETag::Parts(_)))
                .ok_or_else(|| Error::tampered("unknown ETag source"))?;
            if h.contains_key(names::CHECKSUM) {
                return Err(Error::tampered(
                    "a checksum in the metadata of a multipart object",
                ));
            }
            return Ok(Some(ObjectMeta {
                envelope,
                format,
                size: 0,
                layout: Layout::parts_pending(),
                salt: None,
                etag,
                described: Described::of(h),
                upload: Some(upload),
                checksum: None,
                mac,
            }));
        }
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
        let etag = if format >= 3 {
            ETag::decode(need(h, names::ETAG)?)
                .ok_or_else(|| Error::tampered("unknown ETag source"))?
        } else {
            ETag::Store
        };
        let described = if format >= 3 {
            Described::of(h)
        } else {
            Described::default()
        };
        let checksum = match (format, get(h, names::CHECKSUM)) {
            (_, None) => None,
            (3, Some(c)) if salt.is_some() => Some(
                Stored::decode(c).ok_or_else(|| Error::tampered("the checksum is malformed"))?,
            ),
            _ => {
                return Err(Error::tampered(
                    "a checksum in the metadata of an object that cannot have one",
                ));
            }
        };
        Ok(Some(ObjectMeta {
            envelope,
            format,
            size,
            layout,
            salt,
            etag,
            described,
            upload: None,
            checksum,
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

/// Writes the envelope's headers (also what CreateMultipartUpload stores up front) as
/// format `format` (2 is written for bucket-key envelopes of format 1).
pub fn write_envelope(env: &Envelope, format: u8, h: &mut HeaderMap) {
    let v = if format >= 3 { 3 } else { env.format_version() };
    set(h, names::VERSION, v.to_string());
    if let Some(c) = &env.customer {
        // SSE-C: no KMS key, backend, context or bucket key; the key check instead.
        set(h, names::CUSTOMER_KEY, B64.encode(c.encode()));
        set(h, names::WRAPPED, B64.encode(&env.wrapped));
        set(h, names::ALG, env.alg.as_str().into());
        return;
    }
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

fn read_envelope(h: &HeaderMap, format: u8) -> Result<Envelope, Error> {
    let wrapped = b64(names::WRAPPED, need(h, names::WRAPPED)?)?;
    let alg =
        Alg::parse(need(h, names::ALG)?).ok_or_else(|| Error::tampered("unknown algorithm"))?;
    if alg == Alg::Customer {
        return read_customer_envelope(h, format, wrapped);
    }
    if get(h, names::CUSTOMER_KEY).is_some() {
        return Err(Error::tampered(
            "a customer key check on an object that is not SSE-C",
        ));
    }
    let key_ref = need(h, names::KEY)?.to_string();
    let context = match get(h, names::CONTEXT) {
        Some(c) => decode_context(c)
            .filter(|m| !m.contains_key("aws:s3:arn"))
            .ok_or_else(|| Error::tampered("stored encryption context is invalid"))?,
        None => Default::default(),
    };
    // Format 2 = format 1 with a DEK derived from a bucket key; format 3 records the salt
    // when the key is derived (docs/format.md).
    let bk_salt = match (format, get(h, names::BK_SALT)) {
        (2 | 3, Some(s)) => Some(
            b64(names::BK_SALT, s)?
                .try_into()
                .map_err(|_| Error::tampered("bucket-key salt has the wrong length"))?,
        ),
        (1 | 3, None) => None,
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
        customer: None,
    })
}

/// An SSE-C envelope (format 3 only): the wrapped DEK and the key check, and none of a
/// KMS envelope's fields.
fn read_customer_envelope(h: &HeaderMap, format: u8, wrapped: Vec<u8>) -> Result<Envelope, Error> {
    if format < 3 {
        return Err(Error::tampered("an SSE-C object in a format before 3"));
    }
    if [
        names::KEY,
        names::BACKEND,
        names::BK_SALT,
        names::CONTEXT,
        names::BUCKET_KEY,
    ]
    .iter()
    .any(|n| h.contains_key(*n))
    {
        return Err(Error::tampered("an SSE-C object with KMS key fields"));
    }
    let check = KeyCheck::decode(&b64(names::CUSTOMER_KEY, need(h, names::CUSTOMER_KEY)?)?)
        .ok_or_else(|| Error::tampered("the customer key check has the wrong length"))?;
    if wrapped.len() != super::customer::WRAPPED_LEN {
        return Err(Error::tampered("the wrapped data key has the wrong length"));
    }
    Ok(Envelope {
        alg: Alg::Customer,
        key_ref: String::new(),
        wrapped,
        backend: None,
        bk_salt: None,
        context: Default::default(),
        bucket_key: false,
        customer: Some(check),
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
mod tests;
