//! Multipart objects, format 3: the authenticated part list (the manifest) and the
//! record of each part upload (a part record), kept in sealgate's state bucket in the
//! store. Design: `docs/design/multipart.md`.
//!
//! - A part record is written after the store accepted a part, under
//!   `parts/<upload>/<part number>.<store ETag id>.<salt>.<length>.<md5>[.<checksum>].<time>.<mac>`
//!   (the plaintext MD5 of an SSE-S3 part, and the client's checksum of the part when it
//!   sent one, sealed under the part key): the name
//!   says everything, so completion lists them (one request per 1,000) instead of reading
//!   each. The store's ETag of the part names the attempt that won.
//! - The manifest (`manifests/<upload>`) is written before the store's upload is
//!   completed, and never changed after: the part numbers, lengths and attempt salts in
//!   object order, and the client-visible ETag.
//!
//! Invariants: both are MACed under keys derived from the object's DEK (the store cannot
//! forge or alter them), bound to the upload's random id (which the object's
//! authenticated metadata names), so a part record or manifest of another upload, or a
//! part from another attempt, is refused.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use super::Objects;
use super::checksum::{Algo, Served};
use super::paging::{self, Pager};
use crate::crypto::format::{Layout, MAX_PLAIN, PartHeader, SALT_LEN};
use crate::crypto::stream::{
    Dek, open_part_checksum, open_trailer, seal_part_checksum, seal_trailer,
};
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest};
use crate::xml::texts;

/// FORMAT: HKDF info of the key that MACs part records.
const PART_RECORD_INFO: &[u8] = b"sealgate v3 part record";
/// FORMAT: HKDF info of the key that MACs manifests.
const MANIFEST_INFO: &[u8] = b"sealgate v3 manifest";
/// FORMAT: HKDF info of the key that seals a multipart object's checksum in its manifest.
const MANIFEST_CHECKSUM_INFO: &[u8] = b"sealgate v3 multipart checksum";

/// An upload's random id (format 3), named by the object's metadata and its token.
/// What creating the state bucket found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBucket {
    /// Created, or it exists and is ours.
    Ours,
    /// It exists and belongs to another account (`BucketAlreadyExists`).
    Foreign,
    /// The store refused for another reason (permissions, invalid name, ...).
    Refused(String),
}

pub type UploadUid = [u8; 16];

fn seal_with(key: &Dek, info: &[u8], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    crate::crypto::stream::seal_under(key, info, aad, msg)
}

fn open_with(key: &Dek, info: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    crate::crypto::stream::open_under(key, info, aad, sealed)
}

fn mac(dek: &Dek, info: &[u8], msg: &[u8]) -> [u8; 16] {
    crate::crypto::stream::mac_under(dek, info, msg)
}

fn verify(want: &[u8; 16], got: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(want, got).is_ok()
}

/// An ETag without its quotes and surrounding white space.
pub fn unquote(e: &str) -> &str {
    e.trim().trim_matches('"')
}

/// A short, name-safe id of a store ETag (quotes and white space ignored).
pub fn etag_id(store_etag: &str) -> [u8; 16] {
    let e = unquote(store_etag);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, e.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// One part upload sealgate made, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub part_number: u32,
    /// Id of the store's ETag of this attempt.
    pub etag_id: [u8; 16],
    pub salt: [u8; SALT_LEN],
    /// Plaintext length.
    pub len: u64,
    /// The plaintext MD5 (SSE-S3 uploads).
    pub md5: Option<[u8; 16]>,
    /// The client's verified checksum of the part, when it sent one (sealed in the
    /// record's name under the part key derived from the upload's MAC key).
    pub checksum: Option<(Algo, Vec<u8>)>,
    /// When sealgate recorded it (milliseconds since the epoch): of several attempts
    /// the store still lists for one part number (SeaweedFS lists them all), the latest
    /// is the part, as on S3.
    pub at_ms: u64,
}

impl PartRecord {
    fn header(&self) -> PartHeader {
        PartHeader {
            part_number: self.part_number,
            salt: self.salt,
            plain_len: self.len,
        }
    }

    /// The checksum field of the record's name (`ALGO~B64URL`, sealed), if any. Base64,
    /// not hex: the whole name stays under the 255 bytes stores allow a path component
    /// (SeaweedFS refuses longer ones). The part list copies it.
    pub fn sealed_checksum(&self, dek: &Dek) -> Option<String> {
        let (algo, d) = self.checksum.as_ref()?;
        Some(seal_checksum_field(dek, &self.header(), *algo, d))
    }

    fn mac(&self, dek: &Dek, upload: &UploadUid, checksum: Option<&str>) -> [u8; 16] {
        let mut m = upload.to_vec();
        m.extend_from_slice(&self.part_number.to_be_bytes());
        m.extend_from_slice(&self.etag_id);
        m.extend_from_slice(&self.salt);
        m.extend_from_slice(&self.len.to_be_bytes());
        m.extend_from_slice(self.md5.as_ref().map_or(&[][..], |d| &d[..]));
        m.extend_from_slice(&self.at_ms.to_be_bytes());
        // Records without a checksum keep the MAC of records written before checksums.
        if let Some(c) = checksum {
            m.extend_from_slice(b"checksum");
            m.extend_from_slice(c.as_bytes());
        }
        mac(dek, PART_RECORD_INFO, &m)
    }

    /// The record's key in the state bucket.
    pub fn key(&self, dek: &Dek, upload: &UploadUid) -> String {
        let checksum = self.sealed_checksum(dek);
        format!(
            "{}{:05}.{}.{}.{}.{}.{}{}.{}",
            parts_prefix(upload),
            self.part_number,
            hex::encode(self.etag_id),
            hex::encode(self.salt),
            self.len,
            self.md5
                .map_or("-".to_string(), |m| seal_md5_field(dek, &self.header(), &m)),
            checksum.as_ref().map_or(String::new(), |c| format!("{c}.")),
            self.at_ms,
            hex::encode(self.mac(dek, upload, checksum.as_deref())),
        )
    }

    /// Parses and checks a record key; `None` for anything that is not an authentic
    /// record of this upload.
    pub fn parse(key: &str, dek: &Dek, upload: &UploadUid) -> Option<PartRecord> {
        let rest = key.strip_prefix(&parts_prefix(upload))?;
        let f: Vec<&str> = rest.split('.').collect();
        let (pn, eid, salt, len, md5, checksum, at, tag) = match f.as_slice() {
            [pn, eid, salt, len, md5, at, tag] => (pn, eid, salt, len, md5, None, at, tag),
            [pn, eid, salt, len, md5, c, at, tag] => (pn, eid, salt, len, md5, Some(*c), at, tag),
            _ => return None,
        };
        let mut r = PartRecord {
            part_number: pn.parse().ok()?,
            etag_id: hex::decode(eid).ok()?.try_into().ok()?,
            salt: hex::decode(salt).ok()?.try_into().ok()?,
            len: len.parse().ok().filter(|l| *l <= MAX_PLAIN)?,
            md5: None,
            checksum: None,
            at_ms: at.parse().ok()?,
        };
        r.md5 = match *md5 {
            "-" => None,
            // Records written before MD5s were sealed hold them in hex.
            h if h.len() == 32 => Some(hex::decode(h).ok()?.try_into().ok()?),
            sealed => Some(open_md5_field(dek, &r.header(), sealed)?),
        };
        let tag = hex::decode(tag).ok()?;
        if !verify(&r.mac(dek, upload, checksum), &tag) {
            return None;
        }
        if let Some(c) = checksum {
            r.checksum = Some(open_checksum_field(dek, &r.header(), c)?);
        }
        Some(r)
    }
}

/// Where an upload's part records are.
pub fn parts_prefix(upload: &UploadUid) -> String {
    format!("parts/{}/", hex::encode(upload))
}

fn manifest_key(upload: &UploadUid) -> String {
    format!("manifests/{}", hex::encode(upload))
}

/// Where the token of a store upload id is kept (ListMultipartUploads).
pub fn upload_record_key(store_upload_id: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, store_upload_id.as_bytes());
    format!("uploads/{}", hex::encode(&d.as_ref()[..20]))
}

/// One part of a completed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    #[serde(rename = "n")]
    pub part_number: u32,
    #[serde(rename = "l")]
    pub len: u64,
    #[serde(rename = "s", with = "hex_salt")]
    pub salt: [u8; SALT_LEN],
    /// The part's client-visible ETag (quoted), for a repeated completion. Not written
    /// for a part whose ETag is its plaintext MD5 (SSE-S3): `m` holds that sealed, and
    /// reading the part list with its key fills this in.
    #[serde(rename = "e", default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
    /// The part's plaintext MD5 (SSE-S3 uploads), sealed as in its part record. Part lists
    /// written before MD5s were sealed have `e` instead (and older sealgate versions
    /// refuse a part list without `e`).
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The part's client checksum as its record holds it (`ALGO~B64URL`, sealed under
    /// the part key derived from the upload's MAC key), for reads of this part.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl ManifestPart {
    fn header(&self) -> PartHeader {
        PartHeader {
            part_number: self.part_number,
            salt: self.salt,
            plain_len: self.len,
        }
    }

    /// A part whose ETag is its plaintext `md5`, sealed under the upload's MAC `key`.
    pub fn with_md5(mut self, key: &Dek, md5: &[u8; 16]) -> ManifestPart {
        self.etag = crate::object::ETag::quoted_md5(md5);
        self.md5 = Some(seal_md5_field(key, &self.header(), md5));
        self
    }
    /// The part's client checksum, opened with the upload's MAC key.
    pub fn open_checksum(&self, key: &Dek) -> Result<Option<(Algo, Vec<u8>)>, Error> {
        let Some(field) = &self.checksum else {
            return Ok(None);
        };
        open_checksum_field(key, &self.header(), field)
            .map(Some)
            .ok_or_else(|| {
                Error::tampered("a part's checksum in its part list does not authenticate")
            })
    }
}

/// A part's plaintext MD5 sealed under the part key of `header` (`B64URL`, 43 characters;
/// the same bytes as the MD5 trailer the part key would seal: one message per nonce).
fn seal_md5_field(key: &Dek, header: &PartHeader, md5: &[u8; 16]) -> String {
    B64URL.encode(seal_trailer(key, header, md5))
}

/// Opens [`seal_md5_field`]'s output; `None` when it does not parse or authenticate.
fn open_md5_field(key: &Dek, header: &PartHeader, field: &str) -> Option<[u8; 16]> {
    open_trailer(key, header, &B64URL.decode(field).ok()?)
}

/// A part checksum field (`ALGO~B64URL`) sealed under the part key of `header`.
fn seal_checksum_field(key: &Dek, header: &PartHeader, algo: Algo, digest: &[u8]) -> String {
    let sealed = seal_part_checksum(key, header, algo.display(), digest);
    format!("{}~{}", algo.display(), B64URL.encode(sealed))
}

/// Opens [`seal_checksum_field`]'s output; `None` when it does not parse or authenticate.
fn open_checksum_field(key: &Dek, header: &PartHeader, field: &str) -> Option<(Algo, Vec<u8>)> {
    let (name, sealed) = field.split_once('~')?;
    let algo = Algo::parse(name)?;
    let sealed = B64URL.decode(sealed).ok()?;
    let d = open_part_checksum(key, header, algo.display(), &sealed)
        .filter(|d| d.len() == algo.digest_len())?;
    Some((algo, d))
}

mod hex_salt {
    pub fn serialize<S: serde::Serializer>(s: &[u8; 16], ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&hex::encode(s))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(&s)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("bad salt"))
    }
}

/// The authenticated part list of a completed multipart object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The upload id (hex).
    pub upload: String,
    pub parts: Vec<ManifestPart>,
    /// The object's client-visible ETag when it is not the store's (SSE-S3: the MD5 of
    /// the parts' MD5s, `-N`).
    pub etag: Option<String>,
    /// The object's checksum, when every part carried one of the same algorithm
    /// (absent from manifests written before sealgate kept checksums).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ManifestChecksum>,
}

/// A multipart object's checksum as its manifest keeps it: the served value (`B64-N`
/// composite, or the full-object CRC) sealed under `HKDF(upload MAC key, "sealgate v3
/// multipart checksum")`, nonce 0 (one manifest per key), AAD the algorithm and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestChecksum {
    #[serde(rename = "a")]
    pub algo: String,
    #[serde(rename = "f")]
    pub full_object: bool,
    /// Hex of the sealed value.
    #[serde(rename = "v")]
    pub sealed: String,
}

impl ManifestChecksum {
    fn aad(algo: &str, full_object: bool) -> Vec<u8> {
        format!("{algo}|{}", u8::from(full_object)).into_bytes()
    }

    pub fn seal(key: &Dek, s: &Served) -> ManifestChecksum {
        let algo = s.algo.display().to_string();
        let aad = Self::aad(&algo, s.full_object);
        let sealed = seal_with(key, MANIFEST_CHECKSUM_INFO, &aad, s.value.as_bytes());
        ManifestChecksum {
            algo,
            full_object: s.full_object,
            sealed: hex::encode(sealed),
        }
    }

    pub fn open(&self, key: &Dek) -> Result<Served, Error> {
        let bad = || Error::tampered("its part list's checksum does not authenticate");
        let algo = Algo::parse(&self.algo).ok_or_else(bad)?;
        let raw = hex::decode(&self.sealed).map_err(|_| bad())?;
        let aad = Self::aad(&self.algo, self.full_object);
        let value = open_with(key, MANIFEST_CHECKSUM_INFO, &aad, &raw).ok_or_else(bad)?;
        Ok(Served {
            algo,
            value: String::from_utf8(value).map_err(|_| bad())?,
            full_object: self.full_object,
        })
    }
}

impl Manifest {
    /// The object's layout (with the attempt salts).
    pub fn layout(&self) -> Layout {
        Layout {
            headers_in_body: true,
            parts: self.parts.iter().map(|p| (p.part_number, p.len)).collect(),
            salts: self.parts.iter().map(|p| p.salt).collect(),
        }
    }

    /// The form the state bucket keeps: sealed MD5s only, and no object ETag when it is
    /// derived from them.
    fn stored(&self) -> Manifest {
        let mut m = self.clone();
        if m.parts.iter().any(|p| p.md5.is_some()) {
            m.etag = None;
            for p in m.parts.iter_mut().filter(|p| p.md5.is_some()) {
                p.etag.clear();
            }
        }
        m
    }

    /// Opens the sealed part MD5s (with the upload's MAC key): the parts' ETags, and the
    /// object's (AWS's MD5 of the parts' MD5s, `-N`).
    fn opened(mut self, key: &Dek) -> Result<Manifest, Error> {
        let mut any = false;
        for p in self.parts.iter_mut() {
            if let Some(f) = &p.md5 {
                let md5 = open_md5_field(key, &p.header(), f).ok_or_else(|| {
                    Error::tampered("a part's MD5 in its part list does not authenticate")
                })?;
                p.etag = crate::object::ETag::quoted_md5(&md5);
                any = true;
            }
        }
        if any {
            self.etag = Some(multipart_etag(&self.parts));
        }
        Ok(self)
    }

    fn checked(self, upload: &UploadUid) -> Result<Manifest, Error> {
        if self.upload != hex::encode(upload) {
            return Err(Error::tampered("the manifest names another upload"));
        }
        let mut total: u64 = 0;
        for w in self.parts.windows(2) {
            if w[0].part_number >= w[1].part_number {
                return Err(Error::tampered("the manifest's parts are out of order"));
            }
        }
        for p in &self.parts {
            total = total
                .checked_add(p.len)
                .filter(|t| *t <= MAX_PLAIN)
                .ok_or_else(|| Error::tampered("the manifest's parts add up to over 5 TiB"))?;
            if !(1..=10_000).contains(&p.part_number) {
                return Err(Error::tampered("a part number out of range"));
            }
            if p.etag.is_empty() && p.md5.is_none() {
                return Err(Error::tampered("a part without its ETag"));
            }
        }
        if self.parts.is_empty() {
            return Err(Error::tampered("an empty manifest"));
        }
        Ok(self)
    }
}

/// AWS's ETag of a multipart object: the MD5 of the parts' binary MD5s, `-N`.
pub fn multipart_etag(parts: &[ManifestPart]) -> String {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    for p in parts {
        if let Ok(b) = hex::decode(unquote(&p.etag)) {
            h.update(&b);
        }
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), parts.len())
}

/// Recently read manifests, by upload id (they never change once written).
#[derive(Debug)]
pub struct Manifests(Mutex<lru::LruCache<UploadUid, Arc<Manifest>>>);

impl Default for Manifests {
    fn default() -> Self {
        Manifests(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN),
        )))
    }
}

impl Objects {
    /// GET of one state-bucket object (any status).
    async fn state_get(&self, key: &str) -> Result<crate::upstream::UpResponse, Error> {
        Ok(self
            .store
            .send(UpRequest {
                method: Method::GET,
                bucket: Some(self.state_bucket.clone()),
                key: Some(key.to_string()),
                query: Vec::new(),
                headers: HeaderMap::new(),
                body: UpBody::Empty,
            })
            .await?)
    }

    /// An authenticated part list read before (the cache holds no other kind).
    fn cached_manifest(&self, upload: &UploadUid) -> Option<Arc<Manifest>> {
        self.manifests
            .0
            .lock()
            .ok()
            .and_then(|mut c| c.get(upload).cloned())
    }

    async fn state_put(&self, key: &str, body: Bytes, headers: HeaderMap) -> Result<(), Error> {
        let req = |body: Bytes, headers: HeaderMap| UpRequest {
            method: Method::PUT,
            bucket: Some(self.state_bucket.clone()),
            key: Some(key.to_string()),
            query: Vec::new(),
            headers,
            body: UpBody::Checked(Box::new(UpBody::Bytes(body))),
        };
        let resp = self.store.send(req(body.clone(), headers.clone())).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        if text.contains("NoSuchBucket") {
            self.ensure_state_bucket().await?;
            let resp = self.store.send(req(body, headers)).await?;
            if resp.status().is_success() {
                return Ok(());
            }
            return Err(Error::Internal(format!(
                "writing {key} to the state bucket failed with {}",
                resp.status()
            )));
        }
        Err(Error::Internal(format!(
            "writing {key} to the state bucket failed with {status}"
        )))
    }

    /// Creates sealgate's state bucket if it does not exist. A bucket of that name that
    /// exists and is not ours (`BucketAlreadyExists`) is an error.
    pub async fn ensure_state_bucket(&self) -> Result<(), Error> {
        match self.create_state_bucket().await? {
            StateBucket::Ours => Ok(()),
            StateBucket::Foreign => Err(Error::Internal(format!(
                "the state bucket `{}` exists and belongs to someone else: choose another `state_bucket`",
                self.state_bucket
            ))),
            StateBucket::Refused(why) => Err(Error::Internal(format!(
                "cannot create sealgate's state bucket `{}`: {why}",
                self.state_bucket
            ))),
        }
    }

    /// Creates sealgate's state bucket, or finds it is ours already, or whose it is not.
    pub async fn create_state_bucket(&self) -> Result<StateBucket, Error> {
        let resp = self
            .store
            .send(UpRequest {
                method: Method::PUT,
                bucket: Some(self.state_bucket.clone()),
                key: None,
                query: Vec::new(),
                headers: HeaderMap::new(),
                body: UpBody::Empty,
            })
            .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok(match crate::xml::error_code(&text).as_deref() {
            _ if status.is_success() => StateBucket::Ours,
            Some("BucketAlreadyOwnedByYou") => StateBucket::Ours,
            Some("BucketAlreadyExists") => StateBucket::Foreign,
            Some(code) => StateBucket::Refused(format!("the store answered {status} {code}")),
            None => StateBucket::Refused(format!("the store answered {status}")),
        })
    }

    /// Records a part upload (after the store accepted the part).
    pub async fn put_part_record(
        &self,
        dek: &Dek,
        upload: &UploadUid,
        r: &PartRecord,
    ) -> Result<(), Error> {
        self.state_put(&r.key(dek, upload), Bytes::new(), HeaderMap::new())
            .await
    }

    /// Every authentic part record of an upload (all attempts).
    pub async fn part_records(
        &self,
        dek: &Dek,
        upload: &UploadUid,
    ) -> Result<Vec<PartRecord>, Error> {
        Ok(self
            .state_keys(&parts_prefix(upload))
            .await?
            .iter()
            .filter_map(|k| PartRecord::parse(k, dek, upload))
            .collect())
    }

    /// Writes an upload's manifest (before the store's upload is completed).
    pub async fn put_manifest(
        &self,
        dek: &Dek,
        upload: &UploadUid,
        m: &Manifest,
    ) -> Result<(), Error> {
        let body = serde_json::to_vec(&m.stored()).map_err(|e| Error::Internal(e.to_string()))?;
        let tag = mac(dek, MANIFEST_INFO, &body);
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&B64.encode(tag)) {
            h.insert(crate::crypto::format::meta::MAC, v);
        }
        self.state_put(&manifest_key(upload), Bytes::from(body), h)
            .await?;
        if let Ok(mut c) = self.manifests.0.lock() {
            c.put(*upload, Arc::new(m.clone()));
        }
        Ok(())
    }

    /// Reads and checks an upload's manifest. A missing one means the upload was not
    /// completed through sealgate (or the store lost it): the object cannot be read.
    pub async fn manifest(&self, dek: &Dek, upload: &UploadUid) -> Result<Arc<Manifest>, Error> {
        if let Some(m) = self.cached_manifest(upload) {
            return Ok(m);
        }
        let resp = self.state_get(&manifest_key(upload)).await?;
        if resp.status() == http::StatusCode::NOT_FOUND {
            return Err(Error::tampered(
                "its part list is missing (the multipart upload was not completed through sealgate)",
            ));
        }
        if !resp.status().is_success() {
            return Err(Error::Internal(format!(
                "reading a part list from the state bucket failed with {}",
                resp.status()
            )));
        }
        let tag = resp
            .headers()
            .get(crate::crypto::format::meta::MAC)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| B64.decode(v).ok())
            .unwrap_or_default();
        let body = resp.bytes().await.map_err(Error::store_body)?;
        if !verify(&mac(dek, MANIFEST_INFO, &body), &tag) {
            return Err(Error::tampered("its part list failed authentication"));
        }
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|_| Error::tampered("its part list does not parse"))?;
        let m = Arc::new(m.checked(upload)?.opened(dek)?);
        if let Ok(mut c) = self.manifests.0.lock() {
            c.put(*upload, m.clone());
        }
        Ok(m)
    }

    /// An upload's part list read without its key (listings of SSE-C objects, which have
    /// no customer key): parsed and checked for consistency, not authenticated, and never
    /// cached (the cache holds authenticated part lists only).
    pub async fn manifest_unverified(&self, upload: &UploadUid) -> Result<Arc<Manifest>, Error> {
        if let Some(m) = self.cached_manifest(upload) {
            return Ok(m);
        }
        let resp = self.state_get(&manifest_key(upload)).await?;
        if !resp.status().is_success() {
            return Err(Error::tampered(format!(
                "its part list cannot be read ({})",
                resp.status()
            )));
        }
        let body = resp.bytes().await.map_err(Error::store_body)?;
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|_| Error::tampered("its part list does not parse"))?;
        Ok(Arc::new(m.checked(upload)?))
    }

    /// Deletes state-bucket objects (best effort; leftovers are garbage, never read as
    /// anything but what they are).
    pub async fn delete_state(&self, keys: Vec<String>) {
        for chunk in keys.chunks(1000) {
            let mut xml = String::from("<Delete><Quiet>true</Quiet>");
            for k in chunk {
                xml.push_str(&format!(
                    "<Object><Key>{}</Key></Object>",
                    quick_xml::escape::escape(k.as_str())
                ));
            }
            xml.push_str("</Delete>");
            let body = Bytes::from(xml);
            let mut h = HeaderMap::new();
            use md5::Digest as _;
            if let Ok(v) = HeaderValue::from_str(&B64.encode(md5::Md5::digest(&body))) {
                h.insert("content-md5", v);
            }
            let r = self
                .store
                .send(UpRequest {
                    method: Method::POST,
                    bucket: Some(self.state_bucket.clone()),
                    key: None,
                    query: vec![("delete".to_string(), String::new())],
                    headers: h,
                    body: UpBody::Bytes(body),
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "deleting upload records from the state bucket failed");
            }
        }
    }

    /// Deletes an upload's part records and upload record (after completion or abort;
    /// best effort).
    pub async fn forget_upload(&self, upload: &UploadUid, store_upload_id: &str) {
        let mut keys = vec![upload_record_key(store_upload_id)];
        match self.state_keys(&parts_prefix(upload)).await {
            Ok(k) => keys.extend(k),
            Err(e) => tracing::warn!(error = %e, "listing an upload's part records failed"),
        }
        self.delete_state(keys).await;
    }

    /// Every key under `prefix` in the state bucket.
    pub(crate) async fn state_keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let base = [
            ("list-type".to_string(), "2".to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        let mut pages = Pager::new(paging::OBJECTS_V2);
        while let Some(query) = pages.next_query(&base) {
            let resp = self
                .store
                .send(UpRequest {
                    method: Method::GET,
                    bucket: Some(self.state_bucket.clone()),
                    key: None,
                    query,
                    headers: HeaderMap::new(),
                    body: UpBody::Empty,
                })
                .await?;
            if !resp.status().is_success() {
                return Ok(out);
            }
            let body = resp.bytes().await.map_err(Error::store_body)?;
            out.extend(texts(&body, &["Contents", "Key"]).map_err(Error::Internal)?);
            pages.read(&body).map_err(Error::Internal)?;
        }
        Ok(out)
    }

    /// The parts the store holds for an upload (ListParts, all pages): part number →
    /// every (store ETag, stored length) listed for it. `None` when the store has no
    /// such upload.
    pub async fn upload_parts(
        &self,
        obj: &super::ObjectRef,
        store_upload_id: &str,
    ) -> Result<Option<std::collections::HashMap<u32, Vec<(String, u64)>>>, Error> {
        let mut parts: std::collections::HashMap<u32, Vec<(String, u64)>> =
            std::collections::HashMap::new();
        let base = [("uploadId".to_string(), store_upload_id.to_string())];
        let mut pages = Pager::new(paging::PARTS);
        while let Some(query) = pages.next_query(&base) {
            let resp = self
                .store
                .send(UpRequest {
                    method: Method::GET,
                    bucket: Some(obj.bucket.clone()),
                    key: Some(obj.key.clone()),
                    query,
                    headers: HeaderMap::new(),
                    body: UpBody::Empty,
                })
                .await?;
            if resp.status() == http::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !resp.status().is_success() {
                return Err(Error::Internal(format!(
                    "listing the store's parts failed with {}",
                    resp.status()
                )));
            }
            let body = resp.bytes().await.map_err(Error::store_body)?;
            let nums = texts(&body, &["Part", "PartNumber"]).map_err(Error::Internal)?;
            let etags = texts(&body, &["Part", "ETag"]).map_err(Error::Internal)?;
            let lens = texts(&body, &["Part", "Size"]).map_err(Error::Internal)?;
            for ((n, e), l) in nums.iter().zip(etags).zip(&lens) {
                if let (Ok(n), Ok(l)) = (n.parse(), l.parse()) {
                    parts.entry(n).or_default().push((e, l));
                }
            }
            pages.read(&body).map_err(Error::Internal)?;
        }
        Ok(Some(parts))
    }

    /// Keeps the token of a store upload (for ListMultipartUploads).
    pub async fn put_upload_record(&self, store_upload_id: &str, token: &str) -> Result<(), Error> {
        self.state_put(
            &upload_record_key(store_upload_id),
            Bytes::from(token.to_string()),
            HeaderMap::new(),
        )
        .await
    }

    /// The token of a store upload id, if sealgate started that upload.
    pub async fn upload_record(&self, store_upload_id: &str) -> Result<Option<String>, Error> {
        let resp = self.state_get(&upload_record_key(store_upload_id)).await?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let body = resp.bytes().await.map_err(Error::store_body)?;
        Ok(String::from_utf8(body.to_vec()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_records_round_trip_through_their_key_and_refuse_edits() {
        let dek = Dek::from_slice(&[1; 32]).unwrap();
        let up = [7u8; 16];
        let r = PartRecord {
            part_number: 42,
            etag_id: etag_id("\"abc\""),
            salt: [3; 16],
            len: 5 << 20,
            md5: Some([9; 16]),
            checksum: None,
            at_ms: 1_700_000_000_000,
        };
        let k = r.key(&dek, &up);
        assert!(k.len() < 250, "{k}");
        assert_eq!(PartRecord::parse(&k, &dek, &up), Some(r.clone()));
        // The plaintext MD5 is sealed; records that hold it in hex (written before) read.
        let md5_field = k.split('/').next_back().unwrap().split('.').nth(4).unwrap();
        assert!(!k.contains(&hex::encode([9u8; 16])) && md5_field.len() == 43);
        let old = k.replace(md5_field, &hex::encode([9u8; 16]));
        assert_eq!(PartRecord::parse(&old, &dek, &up), Some(r.clone()));
        let forged = k.replace(md5_field, &hex::encode([8u8; 16]));
        assert_eq!(PartRecord::parse(&forged, &dek, &up), None);
        let other_dek = Dek::from_slice(&[2; 32]).unwrap();
        assert_eq!(PartRecord::parse(&k, &other_dek, &up), None);
        assert_eq!(PartRecord::parse(&k, &dek, &[8; 16]), None);
        let edited = k.replace(".5242880.", ".5242881.");
        assert_eq!(PartRecord::parse(&edited, &dek, &up), None);
        let no_md5 = PartRecord {
            md5: None,
            ..r.clone()
        };
        assert_eq!(
            PartRecord::parse(&no_md5.key(&dek, &up), &dek, &up),
            Some(no_md5)
        );
        // With the longest checksum, the name (after `parts/<upload>/`) still fits the
        // 255 bytes a store allows a path component; the digest is not in it in the clear.
        let digest = vec![0xab; 32];
        let with = PartRecord {
            checksum: Some((Algo::Sha256, digest.clone())),
            len: 5 << 30,
            ..r
        };
        let k = with.key(&dek, &up);
        let name = k.rsplit('/').next().unwrap();
        assert!(name.len() < 255, "{} bytes: {name}", name.len());
        assert!(!k.contains(&hex::encode(&digest)) && !k.contains(&B64URL.encode(&digest)));
        assert_eq!(PartRecord::parse(&k, &dek, &up), Some(with.clone()));
        // Another algorithm named for the same sealed value, or the field dropped: refused.
        let renamed = k.replace("SHA256~", "SHA1~");
        assert_eq!(PartRecord::parse(&renamed, &dek, &up), None);
        let cks = k.split('.').nth(5).unwrap();
        let dropped = k.replace(&format!(".{cks}"), "");
        assert_eq!(PartRecord::parse(&dropped, &dek, &up), None);
    }

    #[test]
    fn manifests_are_checked_against_their_upload() {
        let up = [5u8; 16];
        let m = Manifest {
            upload: hex::encode(up),
            parts: vec![
                ManifestPart {
                    part_number: 1,
                    len: 10,
                    salt: [1; 16],
                    etag: "\"a\"".into(),
                    md5: None,
                    checksum: None,
                },
                ManifestPart {
                    part_number: 3,
                    len: 5,
                    salt: [2; 16],
                    etag: "\"b\"".into(),
                    md5: None,
                    checksum: None,
                },
            ],
            etag: None,
            checksum: None,
        };
        assert!(m.clone().checked(&up).is_ok());
        // A manifest's checksum opens only under its upload's key, for its algorithm.
        let key = Dek::from_slice(&[4; 32]).unwrap();
        let served = Served {
            algo: Algo::Sha256,
            value: "abc=-3".into(),
            full_object: false,
        };
        let sealed = ManifestChecksum::seal(&key, &served);
        assert_eq!(sealed.open(&key).unwrap(), served);
        assert!(sealed.open(&Dek::from_slice(&[5; 32]).unwrap()).is_err());
        let relabelled = ManifestChecksum {
            full_object: true,
            ..sealed
        };
        assert!(relabelled.open(&key).is_err());
        assert!(m.clone().checked(&[6; 16]).is_err());
        let mut bad = m.clone();
        bad.parts.swap(0, 1);
        assert!(bad.checked(&up).is_err());
        let l = m.layout();
        assert_eq!(l.parts, vec![(1, 10), (3, 5)]);
        assert_eq!(l.header_of(1).unwrap().salt, [2; 16]);
    }

    #[test]
    fn part_lists_keep_plaintext_md5s_sealed_and_old_ones_read() {
        let up = [5u8; 16];
        let key = Dek::from_slice(&[4; 32]).unwrap();
        let md5s = [[0x11u8; 16], [0x22; 16]];
        let parts: Vec<ManifestPart> = md5s
            .iter()
            .enumerate()
            .map(|(i, m)| {
                ManifestPart {
                    part_number: i as u32 + 1,
                    len: 10,
                    salt: [i as u8; 16],
                    etag: String::new(),
                    md5: None,
                    checksum: None,
                }
                .with_md5(&key, m)
            })
            .collect();
        let m = Manifest {
            upload: hex::encode(up),
            etag: Some(multipart_etag(&parts)),
            parts,
            checksum: None,
        };
        let json = serde_json::to_string(&m.stored()).unwrap();
        for md5 in &md5s {
            assert!(!json.contains(&hex::encode(md5)), "{json}");
        }
        assert!(
            !json.contains("\"e\"") && json.contains("\"etag\":null"),
            "{json}"
        );
        let read: Manifest = serde_json::from_str(&json).unwrap();
        let opened = read.clone().checked(&up).unwrap().opened(&key).unwrap();
        assert_eq!(opened, m);
        assert_eq!(
            opened.parts[0].etag,
            crate::object::ETag::quoted_md5(&md5s[0])
        );
        assert!(
            read.clone()
                .opened(&Dek::from_slice(&[6; 32]).unwrap())
                .is_err()
        );
        // A part list written before MD5s were sealed reads as it was.
        let old = r#"{"upload":"05050505050505050505050505050505","parts":[{"n":1,"l":10,"s":"00000000000000000000000000000000","e":"\"abc\""}],"etag":"\"def-1\""}"#;
        let old: Manifest = serde_json::from_str(old).unwrap();
        let opened = old.clone().checked(&up).unwrap().opened(&key).unwrap();
        assert_eq!(opened, old);
        // A part with neither its ETag nor its sealed MD5 is refused.
        let mut bare = read;
        bare.parts[1].md5 = None;
        assert!(bare.checked(&up).is_err());
    }
}
