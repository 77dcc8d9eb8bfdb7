//! Reading objects: ciphertext ranges from the store, decrypted and authenticated on the
//! way (`crypto::stream::Decryptor`).
//!
//! Invariants: only authenticated plaintext leaves this module, and a failure mid-stream
//! ends the stream with an error (the HTTP layer aborts the response); a read made of
//! several store requests is pinned to one object version (`If-Match` on the store's
//! ETag), and a version that changed in between is a retryable error, never a mix; the
//! stored length must be exactly what the metadata implies.

use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::checksum::{Served, Stored, sealed_len};
use super::known::Known;
use super::meta::{ETag, ObjectMeta};
use super::{ByteStream, ObjectRef, Objects};
use crate::crypto::format::{self, HEADER_LEN, PartHeader, ReadPlan, TRAILER_LEN};
use crate::crypto::stream::{
    Decryptor, Dek, open_checksum, open_md5, open_part_checksum, open_trailer,
};
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest, UpResponse};

/// The stored length must be exactly what the metadata implies: bytes appended or cut
/// off whole parts show here before anything is decrypted.
pub fn check_cipher_len(stored: Option<u64>, meta: &ObjectMeta) -> Result<(), Error> {
    let want = meta.cipher_len();
    match stored {
        Some(n) if n == want => Ok(()),
        Some(n) => Err(Error::tampered(format!(
            "it holds {n} bytes where {want} were written"
        ))),
        None => Err(Error::tampered("the store did not say how long it is")),
    }
}

/// An ETag in S3's quoted form (`"..."`), whether or not the store quoted it.
pub fn quoted(etag: &str) -> String {
    let e = etag.trim();
    if e.is_empty()
        || (e.len() >= 2 && e.starts_with('"') && e.ends_with('"'))
        || e.starts_with("W/")
    {
        e.to_string()
    } else {
        format!("\"{e}\"")
    }
}

/// Opens a single-part object's sealed checksum trailer.
fn open_checksum_trailer(
    dek: &Dek,
    header: &PartHeader,
    algo: super::checksum::Algo,
    raw: &[u8],
) -> Result<Served, Error> {
    let d = open_part_checksum(dek, header, algo.display(), raw)
        .filter(|d| d.len() == algo.digest_len())
        .ok_or_else(|| Error::tampered("the stored checksum does not authenticate"))?;
    Ok(Served::full(algo, &d))
}

impl Objects {
    /// The ETag clients see for a stored sealgate object (quoted): the store's, or the
    /// plaintext MD5 sealed in its metadata or after its last segment (read pinned to the
    /// version `store` describes). Remembered in [`Objects::known`].
    pub async fn client_etag(
        &self,
        obj: &ObjectRef,
        meta: &ObjectMeta,
        dek: &Dek,
        store: &HeaderMap,
    ) -> Result<String, Error> {
        let store_etag = store
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match &meta.etag {
            // Quoted, as S3 sends it: SeaweedFS answers a HEAD of an object it made by a
            // copy with a bare ETag, which its listings quote.
            ETag::Store => return Ok(quoted(&store_etag)),
            ETag::Parts(Some(e)) => return Ok(e.clone()),
            ETag::Parts(None) => {
                return Err(Error::Internal(
                    "the ETag of a multipart object asked before its part list was read".into(),
                ));
            }
            ETag::Md5(_) | ETag::Trailer => {}
        }
        let known = self.known.get(&obj.bucket, &obj.key, &store_etag);
        if let Some(Known { etag: Some(e), .. }) = known {
            return Ok(e);
        }
        let mut checksum = known.and_then(|k| k.checksum);
        let md5 = match &meta.etag {
            ETag::Md5(sealed) => open_md5(dek, sealed)
                .ok_or_else(|| Error::tampered("the sealed ETag does not authenticate"))?,
            _ => {
                // After the last segment; a checksum trailer after it is read in the same
                // request (a GET with checksum mode wants it next).
                let start = meta.layout.cipher_len();
                let end = meta.cipher_len();
                let (raw, header) = self.trailer(obj, meta, store, start, end).await?;
                let (md5_raw, rest) = raw.split_at((TRAILER_LEN as usize).min(raw.len()));
                if let Some(Stored::Trailer(algo)) = &meta.checksum {
                    checksum = Some(open_checksum_trailer(dek, &header, *algo, rest)?);
                }
                open_trailer(dek, &header, md5_raw)
                    .ok_or_else(|| Error::tampered("the ETag trailer does not authenticate"))?
            }
        };
        let etag = ETag::quoted_md5(&md5);
        self.known.put(
            &obj.bucket,
            &obj.key,
            &store_etag,
            Known {
                size: meta.size,
                etag: Some(etag.clone()),
                checksum,
            },
        );
        Ok(etag)
    }

    /// The client checksum kept with a stored sealgate object, as S3 serves it (`None`:
    /// the client sent none, or the object predates kept checksums). A trailer is read
    /// pinned to the version `store` describes.
    pub async fn client_checksum(
        &self,
        obj: &ObjectRef,
        meta: &ObjectMeta,
        dek: &Dek,
        store: &HeaderMap,
    ) -> Result<Option<Served>, Error> {
        let tampered = || Error::tampered("the stored checksum does not authenticate");
        Ok(Some(match &meta.checksum {
            None => return Ok(None),
            Some(Stored::Parts(s)) => s.clone(),
            Some(Stored::Sealed { algo, sealed }) => Served::full(
                *algo,
                &open_checksum(dek, algo.display(), sealed).ok_or_else(tampered)?,
            ),
            Some(Stored::Trailer(algo)) => {
                let store_etag = store
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let known = self.known.get(&obj.bucket, &obj.key, store_etag);
                if let Some(s) = known.as_ref().and_then(|k| k.checksum.clone()) {
                    return Ok(Some(s));
                }
                let start = meta.layout.cipher_len() + meta.md5_trailer();
                let end = start + sealed_len(*algo);
                let (raw, header) = self.trailer(obj, meta, store, start, end).await?;
                let served = open_checksum_trailer(dek, &header, *algo, &raw)?;
                // Remembered with what is known of this version (an object whose ETag is
                // the store's needs nothing else).
                let base = known.or_else(|| {
                    (meta.etag == ETag::Store).then_some(Known {
                        size: meta.size,
                        etag: None,
                        checksum: None,
                    })
                });
                if let Some(k) = base {
                    let k = Known {
                        checksum: Some(served.clone()),
                        ..k
                    };
                    self.known.put(&obj.bucket, &obj.key, store_etag, k);
                }
                served
            }
        }))
    }

    /// The client checksums of a multipart object's parts (`only`: just that part), as S3
    /// serves them for a `partNumber` read or in GetObjectAttributes: each with the
    /// object's checksum type. Empty for objects without a multipart checksum.
    pub async fn part_checksums(
        &self,
        meta: &ObjectMeta,
        dek: &Dek,
        only: Option<u32>,
    ) -> Result<Vec<(u32, Served)>, Error> {
        let (Some(Stored::Parts(object)), Some(u)) = (&meta.checksum, meta.upload) else {
            return Ok(Vec::new());
        };
        let key = meta.envelope.upload_mac_key(dek, &u);
        let manifest = self.manifest(&key, &u).await?;
        let mut out = Vec::new();
        for p in manifest
            .parts
            .iter()
            .filter(|p| only.is_none_or(|n| n == p.part_number))
        {
            if let Some((algo, d)) = p.open_checksum(&key)?
                && algo == object.algo
            {
                let served = Served {
                    full_object: object.full_object,
                    ..Served::full(algo, &d)
                };
                out.push((p.part_number, served));
            }
        }
        Ok(out)
    }

    /// The stored bytes `[start, end)` after a single-part object's segments (a sealed
    /// trailer), read pinned to the version `store` describes, and its part header.
    async fn trailer(
        &self,
        obj: &ObjectRef,
        meta: &ObjectMeta,
        store: &HeaderMap,
        start: u64,
        end: u64,
    ) -> Result<(bytes::Bytes, PartHeader), Error> {
        let header = meta
            .single_header()
            .ok_or_else(|| Error::tampered("a trailer on a multipart object"))?;
        let raw = self
            .cipher_range(obj, store.get(http::header::ETAG), start, end)
            .await?
            .bytes()
            .await
            .map_err(Error::store_body)?;
        Ok((raw, header))
    }

    /// HEAD of `obj` in the store, with `headers` (conditions) as given.
    pub async fn head(&self, obj: &ObjectRef, headers: HeaderMap) -> Result<UpResponse, Error> {
        self.read(Method::HEAD, obj, headers).await
    }

    /// A GET of `obj` from the store with `headers` as given (the whole object, or the
    /// range they name).
    pub async fn get(&self, obj: &ObjectRef, headers: HeaderMap) -> Result<UpResponse, Error> {
        self.read(Method::GET, obj, headers).await
    }

    async fn read(
        &self,
        method: Method,
        obj: &ObjectRef,
        headers: HeaderMap,
    ) -> Result<UpResponse, Error> {
        let req = UpRequest {
            method,
            bucket: Some(obj.bucket.clone()),
            key: Some(obj.key.clone()),
            query: obj.query(),
            headers,
            body: UpBody::Empty,
        };
        Ok(self.store.send(req).await?)
    }

    /// A ciphertext range `[start, end)` of `obj`, pinned to `etag`.
    pub async fn cipher_range(
        &self,
        obj: &ObjectRef,
        etag: Option<&HeaderValue>,
        start: u64,
        end: u64,
    ) -> Result<UpResponse, Error> {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-{}", start, end - 1)) {
            h.insert(http::header::RANGE, v);
        }
        if let Some(e) = etag {
            h.insert(http::header::IF_MATCH, e.clone());
        }
        let resp = self.get(obj, h).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => Ok(resp),
            StatusCode::OK if start == 0 && resp.content_length() == Some(end) => Ok(resp),
            StatusCode::PRECONDITION_FAILED => Err(Error::changed_while_reading()),
            s => Err(Error::tampered(format!(
                "the store answered a ciphertext range read with {s}"
            ))),
        }
    }

    /// The body of a store response as a byte stream, counted as bytes read from the
    /// store.
    pub fn store_body(&self, resp: UpResponse) -> ByteStream {
        crate::metrics::counted(
            resp.bytes_stream().map_err(std::io::Error::other),
            self.metrics.upstream_read_bytes.clone(),
        )
        .boxed()
    }

    /// Decrypts the ciphertext of `plan` arriving in `resp`'s body. `first` is the header
    /// of the plan's first part when the body does not start with it.
    pub fn decrypt(
        &self,
        resp: UpResponse,
        dek: Dek,
        meta: &ObjectMeta,
        plan: &ReadPlan,
        first: Option<PartHeader>,
    ) -> ByteStream {
        let stream = self.store_body(resp);
        Decryptor::new(stream, dek, meta.layout.clone(), plan, first).boxed()
    }

    /// The plaintext `[start, end)` of a sealgate object: only the covering ciphertext is
    /// fetched, pinned to `etag`. An empty range is an empty stream.
    pub async fn read_range(
        &self,
        obj: &ObjectRef,
        meta: &ObjectMeta,
        dek: Dek,
        etag: Option<&HeaderValue>,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, Error> {
        let Some(plan) = format::plan(&meta.layout, start, end) else {
            return Ok(futures::stream::empty().boxed());
        };
        let (first, fetch_start) = self.first_header(obj, meta, &plan, etag).await?;
        let resp = self
            .cipher_range(obj, etag, fetch_start, plan.cipher_end)
            .await?;
        Ok(self.decrypt(resp, dek, meta, &plan, first))
    }

    /// Where the ciphertext of `plan` starts and the header of its first part: from
    /// metadata for a single-part object; for a multipart part, read inline when the range
    /// starts at the part's first segment, else fetched on its own (and checked against
    /// the authenticated part list).
    async fn first_header(
        &self,
        obj: &ObjectRef,
        meta: &ObjectMeta,
        plan: &ReadPlan,
        etag: Option<&HeaderValue>,
    ) -> Result<(Option<PartHeader>, u64), Error> {
        if !meta.layout.headers_in_body {
            return Ok((meta.single_header(), plan.cipher_start));
        }
        if plan.first_segment == 0 {
            return Ok((None, plan.cipher_start - HEADER_LEN));
        }
        if let Some(h) = meta.layout.header_of(plan.first_part) {
            // The part list names the attempt: no need to read its header.
            return Ok((Some(h), plan.cipher_start));
        }
        let at = meta.layout.part_cipher_start(plan.first_part);
        let raw = self
            .cipher_range(obj, etag, at, at + HEADER_LEN)
            .await?
            .bytes()
            .await
            .map_err(Error::store_body)?;
        if raw.len() as u64 != HEADER_LEN {
            return Err(Error::tampered("a part header is truncated"));
        }
        let h = PartHeader::decode(&raw).map_err(Error::tampered)?;
        Decryptor::check_header(&meta.layout, plan.first_part, &h).map_err(Error::tampered)?;
        Ok((Some(h), plan.cipher_start))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn etags_are_quoted_as_s3_sends_them() {
        assert_eq!(super::quoted("abc"), "\"abc\"");
        assert_eq!(super::quoted("\"abc\""), "\"abc\"");
        assert_eq!(super::quoted(" \"abc-2\" "), "\"abc-2\"");
        assert_eq!(super::quoted("W/\"abc\""), "W/\"abc\"");
        assert_eq!(super::quoted(""), "");
    }
}
