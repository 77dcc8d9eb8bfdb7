//! Upload ids: the id sealgate hands out for a multipart upload is a token that carries
//! the store's upload id, the upload's envelope (wrapped data key) and, in format 3, the
//! upload's random id and ETag kind, so no instance keeps upload state and any instance
//! can take any part. Design: `docs/design/multipart.md`.
//!
//! Invariants: a token reveals nothing (the DEK inside is wrapped, and unwrapping needs
//! KMS Decrypt permission and the object's context); a format-3 token is MACed under a
//! key derived from its DEK and bound to its bucket and key, so a forged or re-bound
//! token is refused ([`UploadToken::verify`]) rather than forwarded. Tokens of format 1
//! (`sg1.`, from sealgate versions before multipart format 3) still decode, so such
//! uploads can be aborted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::envelope::{Alg, Envelope};
use super::manifest::UploadUid;
use crate::crypto::stream::Dek;
use crate::error::Error;

/// FORMAT: prefix of format-1 upload ids.
const PREFIX_V1: &str = crate::crypto::format::UPLOAD_TOKEN_PREFIX;
/// FORMAT: prefix of format-3 upload ids.
const PREFIX_V3: &str = "sg3.";
/// FORMAT: HKDF info of the key that MACs a format-3 token.
const TOKEN_MAC_INFO: &[u8] = b"sealgate v3 upload token";

/// What a format-3 token adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadV3 {
    pub uid: UploadUid,
    /// Part and object ETags are plaintext MD5s (SSE-S3).
    pub md5: bool,
    pub mac: [u8; 16],
}

/// What a sealgate upload id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadToken {
    pub upstream_id: String,
    pub envelope: Envelope,
    /// `None`: a format-1 token.
    pub v3: Option<UploadV3>,
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
    /// A new format-3 token, MACed with `dek` for `bucket/key`.
    pub fn new(
        upstream_id: String,
        envelope: Envelope,
        uid: UploadUid,
        md5: bool,
        dek: &Dek,
        bucket: &str,
        key: &str,
    ) -> UploadToken {
        let mut t = UploadToken {
            upstream_id,
            envelope,
            v3: Some(UploadV3 {
                uid,
                md5,
                mac: [0; 16],
            }),
        };
        let mac = t.compute_mac(dek, bucket, key);
        if let Some(v) = t.v3.as_mut() {
            v.mac = mac;
        }
        t
    }

    /// The envelope fields, in token order.
    fn body(&self) -> Vec<u8> {
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
        out
    }

    fn compute_mac(&self, dek: &Dek, bucket: &str, key: &str) -> [u8; 16] {
        let Some(v) = &self.v3 else { return [0; 16] };
        let mut m = self.body();
        put_field(
            &mut m,
            self.envelope.backend.as_deref().unwrap_or("").as_bytes(),
        );
        put_field(
            &mut m,
            self.envelope.bk_salt.as_ref().map_or(&[][..], |s| &s[..]),
        );
        m.extend_from_slice(&v.uid);
        m.push(u8::from(v.md5));
        put_field(&mut m, bucket.as_bytes());
        put_field(&mut m, key.as_bytes());
        crate::crypto::stream::mac_under(dek, TOKEN_MAC_INFO, &m)
    }

    /// Checks a format-3 token with its DEK against the object the request names.
    pub fn verify(&self, dek: &Dek, bucket: &str, key: &str) -> Result<(), Error> {
        let Some(v) = &self.v3 else {
            return Err(Error::invalid_request(
                "This upload was started by an earlier version of sealgate; abort it and upload again.",
            ));
        };
        let want = self.compute_mac(dek, bucket, key);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&want, &v.mac).is_err() {
            return Err(Error::no_such_upload());
        }
        Ok(())
    }

    pub fn encode(&self) -> String {
        let env = &self.envelope;
        let mut out = self.body();
        match &self.v3 {
            None => {
                // Optional trailing fields of format 1: backend name, bucket-key salt.
                if env.backend.is_some() || env.bk_salt.is_some() {
                    put_field(&mut out, env.backend.as_deref().unwrap_or("").as_bytes());
                    put_field(&mut out, env.bk_salt.as_ref().map_or(&[][..], |s| &s[..]));
                }
                format!("{PREFIX_V1}{}", B64URL.encode(out))
            }
            Some(v) => {
                put_field(&mut out, env.backend.as_deref().unwrap_or("").as_bytes());
                put_field(&mut out, env.bk_salt.as_ref().map_or(&[][..], |s| &s[..]));
                put_field(&mut out, &v.uid);
                out.push(u8::from(v.md5));
                out.extend_from_slice(&v.mac);
                format!("{PREFIX_V3}{}", B64URL.encode(out))
            }
        }
    }

    /// `Ok(None)` when `id` is not a sealgate token (a store upload id).
    pub fn decode(id: &str) -> Result<Option<UploadToken>, Error> {
        let (v3, rest) = match (id.strip_prefix(PREFIX_V3), id.strip_prefix(PREFIX_V1)) {
            (Some(r), _) => (true, r),
            (None, Some(r)) => (false, r),
            (None, None) => return Ok(None),
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
        let (backend, bk_salt) = if b.is_empty() && !v3 {
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
        let v3 = if v3 {
            let uid: UploadUid = take_field(&mut b)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            let (&md5, rest) = b.split_first().ok_or_else(bad)?;
            let mac: [u8; 16] = rest.try_into().map_err(|_| bad())?;
            b = &[];
            Some(UploadV3 {
                uid,
                md5: md5 == 1,
                mac,
            })
        } else {
            None
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
            v3,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            alg: Alg::Kms,
            key_ref: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            wrapped: vec![1, 2, 3, 255],
            backend: None,
            bk_salt: None,
            context: [("a".to_string(), "b".to_string())].into(),
            bucket_key: true,
        }
    }

    #[test]
    fn upload_tokens_round_trip_and_reject_garbage() {
        let dek = Dek::from_slice(&[4; 32]).unwrap();
        let t = UploadToken::new("abc123".into(), envelope(), [6; 16], true, &dek, "b", "k");
        assert_eq!(UploadToken::decode(&t.encode()).unwrap(), Some(t.clone()));
        t.verify(&dek, "b", "k").unwrap();
        assert!(t.verify(&dek, "b", "other").is_err(), "bound to its object");
        assert!(
            t.verify(&Dek::from_slice(&[5; 32]).unwrap(), "b", "k")
                .is_err(),
            "and to its key"
        );
        let mut moved = t.clone();
        moved.upstream_id = "another-upload".into();
        let moved = UploadToken::decode(&moved.encode()).unwrap().unwrap();
        assert!(
            moved.verify(&dek, "b", "k").is_err(),
            "re-bound to another upload"
        );
        let mut remote = t.clone();
        remote.envelope.backend = Some("bao".into());
        remote.envelope.bk_salt = Some([7; 16]);
        assert_eq!(
            UploadToken::decode(&remote.encode()).unwrap(),
            Some(remote.clone())
        );
        assert_eq!(UploadToken::decode("plain-store-id").unwrap(), None);
        assert!(UploadToken::decode("sg3.!!!").is_err());
        let mut s = t.encode();
        s.pop();
        assert!(UploadToken::decode(&s).is_err());
    }

    #[test]
    fn format_1_tokens_still_decode_and_are_refused_for_parts() {
        let v1 = UploadToken {
            upstream_id: "old".into(),
            envelope: envelope(),
            v3: None,
        };
        let s = v1.encode();
        assert!(s.starts_with("sg1."));
        let back = UploadToken::decode(&s).unwrap().unwrap();
        assert_eq!(back, v1);
        let e: s3s::S3Error = back
            .verify(&Dek::from_slice(&[4; 32]).unwrap(), "b", "k")
            .unwrap_err()
            .into();
        assert_eq!(e.code().as_str(), "InvalidRequest");
    }
}
