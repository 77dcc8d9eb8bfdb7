//! Multipart uploads in the object layer: the upload id sealgate hands out (a token that
//! carries the store's upload id and the wrapped data key, so no instance keeps upload
//! state) and the part list written at completion.
//!
//! Design: `docs/design/multipart.md`. Invariants: a token reveals nothing (the DEK
//! inside is wrapped, and unwrapping needs KMS Decrypt permission and the object's
//! context); the part list is built from the store's own part sizes, each of which must
//! be a possible encrypted part size.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use http::{HeaderMap, Method};

use super::envelope::{Alg, Envelope};
use super::{ObjectRef, Objects};
use crate::crypto::format::{Layout, UPLOAD_TOKEN_PREFIX, plain_len_of_part_cipher};
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest};
use crate::xml::texts;

/// What a sealgate upload id carries: the store's upload id and the upload's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadToken {
    pub upstream_id: String,
    pub envelope: Envelope,
}

fn put_field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_field<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    if b.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let rest = &b[2..];
    if rest.len() < n {
        return None;
    }
    let (f, r) = rest.split_at(n);
    *b = r;
    Some(f)
}

impl UploadToken {
    pub fn encode(&self) -> String {
        let env = &self.envelope;
        let mut out = vec![
            match env.alg {
                Alg::Kms => 1u8,
                Alg::S3 => 2,
            } | if env.bucket_key { 0x80 } else { 0 },
        ];
        put_field(&mut out, self.upstream_id.as_bytes());
        put_field(&mut out, &env.wrapped);
        put_field(&mut out, env.key_ref.as_bytes());
        put_field(&mut out, env.context_b64().unwrap_or_default().as_bytes());
        // Optional trailing fields (absent in tokens of embedded, per-object-key uploads,
        // so older tokens still decode): backend name, bucket-key salt.
        if env.backend.is_some() || env.bk_salt.is_some() {
            put_field(&mut out, env.backend.as_deref().unwrap_or("").as_bytes());
            put_field(&mut out, env.bk_salt.as_ref().map_or(&[][..], |s| &s[..]));
        }
        format!("{UPLOAD_TOKEN_PREFIX}{}", B64URL.encode(out))
    }

    /// `Ok(None)` when `id` is not a sealgate token (a store upload id).
    pub fn decode(id: &str) -> Result<Option<UploadToken>, Error> {
        let Some(rest) = id.strip_prefix(UPLOAD_TOKEN_PREFIX) else {
            return Ok(None);
        };
        let bad = Error::no_such_upload;
        let raw = B64URL.decode(rest).map_err(|_| bad())?;
        let (&flags, mut b) = raw.split_first().ok_or_else(bad)?;
        let alg = match flags & 0x7f {
            1 => Alg::Kms,
            2 => Alg::S3,
            _ => return Err(bad()),
        };
        let s = |f: &[u8]| String::from_utf8(f.to_vec()).map_err(|_| bad());
        let upstream_id = s(take_field(&mut b).ok_or_else(bad)?)?;
        let wrapped = take_field(&mut b).ok_or_else(bad)?.to_vec();
        let key_ref = s(take_field(&mut b).ok_or_else(bad)?)?;
        let ctx = s(take_field(&mut b).ok_or_else(bad)?)?;
        let context = match ctx.as_str() {
            "" => Default::default(),
            c => super::envelope::decode_context(c).ok_or_else(bad)?,
        };
        let (backend, bk_salt) = if b.is_empty() {
            (None, None)
        } else {
            let backend = s(take_field(&mut b).ok_or_else(bad)?)?;
            let salt = take_field(&mut b).ok_or_else(bad)?;
            let salt: Option<[u8; 16]> = match salt.len() {
                0 => None,
                _ => Some(salt.try_into().map_err(|_| bad())?),
            };
            ((!backend.is_empty()).then_some(backend), salt)
        };
        if !b.is_empty() || upstream_id.is_empty() {
            return Err(bad());
        }
        Ok(Some(UploadToken {
            upstream_id,
            envelope: Envelope {
                alg,
                key_ref,
                wrapped,
                backend,
                bk_salt,
                context,
                bucket_key: flags & 0x80 != 0,
            },
        }))
    }
}

impl Objects {
    /// The part list of a completed upload: for each part number the client listed (in
    /// order), its plaintext size, from the ciphertext sizes the store holds.
    pub async fn part_list(
        &self,
        obj: &ObjectRef,
        upstream_id: &str,
        nums: &[u32],
    ) -> Result<Layout, Error> {
        let sizes = self.store_part_sizes(obj, upstream_id).await?;
        let mut parts = Vec::with_capacity(nums.len());
        for n in nums {
            let c = sizes.get(n).ok_or_else(|| {
                Error::client(
                    s3s::S3ErrorCode::InvalidPart,
                    format!("One or more of the specified parts could not be found (part {n})."),
                )
            })?;
            let p = plain_len_of_part_cipher(*c, true)
                .ok_or_else(|| Error::tampered(format!("part {n} has an impossible size")))?;
            parts.push((*n, p));
        }
        Ok(Layout {
            headers_in_body: true,
            parts,
        })
    }

    /// Ciphertext sizes of the store's parts of an upload (ListParts, all pages).
    async fn store_part_sizes(
        &self,
        obj: &ObjectRef,
        upstream_id: &str,
    ) -> Result<HashMap<u32, u64>, Error> {
        let mut sizes = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![("uploadId".to_string(), upstream_id.to_string())];
            if let Some(m) = &marker {
                query.push(("part-number-marker".to_string(), m.clone()));
            }
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
            if !resp.status().is_success() {
                return Err(Error::no_such_upload());
            }
            let body = resp.bytes().await.map_err(Error::store_body)?;
            let nums = texts(&body, &["Part", "PartNumber"]).map_err(Error::Internal)?;
            let lens = texts(&body, &["Part", "Size"]).map_err(Error::Internal)?;
            for (n, l) in nums.iter().zip(&lens) {
                if let (Ok(n), Ok(l)) = (n.parse(), l.parse()) {
                    sizes.insert(n, l);
                }
            }
            let truncated = texts(&body, &["IsTruncated"]).map_err(Error::Internal)?;
            let next = texts(&body, &["NextPartNumberMarker"]).map_err(Error::Internal)?;
            match (truncated.first().map(String::as_str), next.first()) {
                (Some("true"), Some(n)) if Some(n) != marker.as_ref() => marker = Some(n.clone()),
                _ => break,
            }
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_tokens_round_trip_and_reject_garbage() {
        let t = UploadToken {
            upstream_id: "abc123".into(),
            envelope: Envelope {
                alg: Alg::Kms,
                key_ref: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
                wrapped: vec![1, 2, 3, 255],
                backend: None,
                bk_salt: None,
                context: [("a".to_string(), "b".to_string())].into(),
                bucket_key: true,
            },
        };
        assert_eq!(UploadToken::decode(&t.encode()).unwrap(), Some(t.clone()));
        let mut remote = t.clone();
        remote.envelope.backend = Some("bao".into());
        remote.envelope.bk_salt = Some([7; 16]);
        assert_eq!(
            UploadToken::decode(&remote.encode()).unwrap(),
            Some(remote.clone())
        );
        assert_eq!(UploadToken::decode("plain-store-id").unwrap(), None);
        assert!(UploadToken::decode("sg1.!!!").is_err());
        let mut s = t.encode();
        s.pop();
        assert!(UploadToken::decode(&s).is_err());
    }
}
