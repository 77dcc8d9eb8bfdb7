//! Upload ids: the id sealgate hands out for a multipart upload is a token that carries
//! the store's upload id, the upload's envelope (wrapped data key) and, in format 3, the
//! upload's random id and ETag kind, so no instance keeps upload state and any instance
//! can take any part. Design: `docs/design/multipart.md`.
//!
//! Invariants: a token reveals nothing (the DEK inside is wrapped, and unwrapping needs
//! KMS Decrypt permission and the object's context, or for SSE-C the customer key); a
//! format-3 token is MACed under a key derived from its DEK and bound to its bucket and
//! key, so a forged or re-bound token is refused ([`UploadToken::verify`]) rather than
//! forwarded. An SSE-C token also carries the key check of the upload's customer key and
//! its upload key (the MAC key of its token, part records and part list, derived from the
//! DEK, so CompleteMultipartUpload works without the customer key, as on AWS); the copy
//! of a token kept in the state bucket ([`UploadToken::encode_for_store`]) has no upload
//! key. Tokens of format 1 (`sg1.`, from sealgate versions before multipart format 3)
//! still decode, so such uploads can be aborted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::checksum::Algo;
use super::customer::KeyCheck;
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
    /// The client asked for a FULL_OBJECT checksum of the whole object (CRCs), not the
    /// composite of the parts' (`x-amz-checksum-type` at CreateMultipartUpload).
    pub full_object: bool,
    /// The checksum algorithm CreateMultipartUpload named (parts copied with
    /// UploadPartCopy get theirs computed with it).
    pub algo: Option<Algo>,
    pub mac: [u8; 16],
    /// SSE-C uploads, in the token the client holds: the upload key
    /// ([`Envelope::upload_mac_key`]).
    pub upload_key: Option<UploadKey>,
}

/// What an upload's ETags and checksum are (fixed when it is created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadKind {
    /// Part and object ETags are plaintext MD5s (SSE-S3).
    pub md5: bool,
    /// The object's checksum is the full-object CRC, not the composite.
    pub full_object: bool,
    /// The checksum algorithm the upload was created with.
    pub algo: Option<Algo>,
}

/// FORMAT: the algorithm codes of a token's flag byte (bits 2-4; 0: none).
const ALGO_CODES: [Algo; 5] = [
    Algo::Crc32,
    Algo::Crc32c,
    Algo::Crc64Nvme,
    Algo::Sha1,
    Algo::Sha256,
];

impl UploadV3 {
    /// FORMAT: the token's flag byte: bit 0 MD5 ETags, bit 1 a FULL_OBJECT checksum, bits
    /// 2-4 the checksum algorithm (tokens before checksums were kept have 0 or 1).
    fn flags(&self) -> u8 {
        let code = self
            .algo
            .and_then(|a| ALGO_CODES.iter().position(|c| *c == a))
            .map_or(0, |i| i as u8 + 1);
        u8::from(self.md5) | (u8::from(self.full_object) << 1) | (code << 2)
    }

    fn algo_of(flags: u8) -> Result<Option<Algo>, ()> {
        match (flags >> 2) as usize {
            0 => Ok(None),
            n if n <= ALGO_CODES.len() => Ok(Some(ALGO_CODES[n - 1])),
            _ => Err(()),
        }
    }
}

/// An SSE-C upload's MAC key as a token carries it (redacted in `Debug`).
#[derive(Clone)]
pub struct UploadKey(pub Dek);

impl PartialEq for UploadKey {
    fn eq(&self, o: &UploadKey) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.bytes(), o.0.bytes()).is_ok()
    }
}
impl Eq for UploadKey {}

impl std::fmt::Debug for UploadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadKey(<redacted>)")
    }
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
    /// A new format-3 token for `bucket/key`, MACed with the upload's MAC key (the DEK,
    /// or for SSE-C the upload key derived from it, which the token then carries).
    pub fn new(
        upstream_id: String,
        envelope: Envelope,
        uid: UploadUid,
        kind: UploadKind,
        dek: &Dek,
        bucket: &str,
        key: &str,
    ) -> UploadToken {
        let mac_key = envelope.upload_mac_key(dek, &uid);
        let upload_key = envelope.is_customer().then(|| UploadKey(mac_key.clone()));
        let mut t = UploadToken {
            upstream_id,
            envelope,
            v3: Some(UploadV3 {
                uid,
                md5: kind.md5,
                full_object: kind.full_object,
                algo: kind.algo,
                mac: [0; 16],
                upload_key,
            }),
        };
        let mac = t.compute_mac(&mac_key, bucket, key);
        if let Some(v) = t.v3.as_mut() {
            v.mac = mac;
        }
        t
    }

    /// The key check of an SSE-C upload's customer key.
    pub fn customer(&self) -> Option<&KeyCheck> {
        self.envelope.customer.as_ref()
    }

    /// The upload key an SSE-C token carries (absent from tokens read back from the
    /// state bucket).
    pub fn upload_key(&self) -> Option<&Dek> {
        self.v3.as_ref()?.upload_key.as_ref().map(|k| &k.0)
    }

    /// The envelope fields, in token order.
    fn body(&self) -> Vec<u8> {
        let env = &self.envelope;
        let mut out = vec![
            match env.alg {
                Alg::Kms => 1u8,
                Alg::S3 => 2,
                Alg::Customer => 3,
            } | if env.bucket_key { 0x80 } else { 0 },
        ];
        put_field(&mut out, self.upstream_id.as_bytes());
        put_field(&mut out, &env.wrapped);
        put_field(&mut out, env.key_ref.as_bytes());
        put_field(&mut out, env.context_b64().unwrap_or_default().as_bytes());
        out
    }

    /// The token's MAC under its MAC key (the DEK; SSE-C: the upload key).
    fn compute_mac(&self, mac_key: &Dek, bucket: &str, key: &str) -> [u8; 16] {
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
        m.push(v.flags());
        put_field(&mut m, bucket.as_bytes());
        put_field(&mut m, key.as_bytes());
        if let Some(c) = &self.envelope.customer {
            put_field(&mut m, &c.encode());
        }
        crate::crypto::stream::mac_under(mac_key, TOKEN_MAC_INFO, &m)
    }

    /// Checks a format-3 token with its MAC key (the DEK; SSE-C: the upload key) against
    /// the object the request names. An SSE-C token that carries an upload key must carry
    /// this one.
    pub fn verify(&self, mac_key: &Dek, bucket: &str, key: &str) -> Result<(), Error> {
        let Some(v) = &self.v3 else {
            return Err(Error::invalid_request(
                "This upload was started by an earlier version of sealgate; abort it and upload again.",
            ));
        };
        let want = self.compute_mac(mac_key, bucket, key);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&want, &v.mac).is_err() {
            return Err(Error::no_such_upload());
        }
        if let Some(k) = &v.upload_key
            && *k != UploadKey(mac_key.clone())
        {
            return Err(Error::no_such_upload());
        }
        Ok(())
    }

    /// The token as the client holds it.
    pub fn encode(&self) -> String {
        self.encode_with(true)
    }

    /// The token as sealgate keeps it in the state bucket (for ListMultipartUploads):
    /// without an SSE-C upload's upload key, which the store must not learn.
    pub fn encode_for_store(&self) -> String {
        self.encode_with(false)
    }

    fn encode_with(&self, upload_key: bool) -> String {
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
                if let Some(c) = &env.customer {
                    // SSE-C: the key check, and the upload key (or nothing).
                    put_field(&mut out, &c.encode());
                    let k = v.upload_key.as_ref().filter(|_| upload_key);
                    put_field(&mut out, k.map_or(&[][..], |k| &k.0.bytes()[..]));
                }
                put_field(&mut out, &v.uid);
                out.push(v.flags());
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
            3 if v3 => Alg::Customer,
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
        let (customer, upload_key) = if alg == Alg::Customer {
            let check = KeyCheck::decode(take_field(&mut b).ok_or_else(bad)?).ok_or_else(bad)?;
            let k = match take_field(&mut b).ok_or_else(bad)? {
                [] => None,
                k => Some(UploadKey(Dek::from_slice(k).ok_or_else(bad)?)),
            };
            if backend.is_some() || bk_salt.is_some() || !context.is_empty() || !key_ref.is_empty()
            {
                return Err(bad());
            }
            (Some(check), k)
        } else {
            (None, None)
        };
        let v3 = if v3 {
            let uid: UploadUid = take_field(&mut b)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            let (&flags, rest) = b.split_first().ok_or_else(bad)?;
            let algo = UploadV3::algo_of(flags).map_err(|_| bad())?;
            let mac: [u8; 16] = rest.try_into().map_err(|_| bad())?;
            b = &[];
            Some(UploadV3 {
                uid,
                md5: flags & 1 != 0,
                full_object: flags & 2 != 0,
                algo,
                mac,
                upload_key,
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
                customer,
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
            customer: None,
        }
    }

    #[test]
    fn upload_tokens_round_trip_and_reject_garbage() {
        let dek = Dek::from_slice(&[4; 32]).unwrap();
        let t = UploadToken::new(
            "abc123".into(),
            envelope(),
            [6; 16],
            UploadKind {
                md5: true,
                full_object: true,
                algo: Some(Algo::Sha256),
            },
            &dek,
            "b",
            "k",
        );
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
    fn sse_c_tokens_carry_their_key_check_and_upload_key_but_not_to_the_store() {
        use crate::object::customer::{CustomerKey, KeyCheck, wrap};
        let dek = Dek::from_slice(&[4; 32]).unwrap();
        let ck = CustomerKey::new(vec![3; 32]);
        let check = KeyCheck::new(&ck);
        let env = Envelope {
            alg: Alg::Customer,
            key_ref: String::new(),
            wrapped: wrap(&ck, &check, &dek, "b", "k"),
            backend: None,
            bk_salt: None,
            context: Default::default(),
            bucket_key: false,
            customer: Some(check),
        };
        let t = UploadToken::new(
            "up1".into(),
            env.clone(),
            [6; 16],
            UploadKind::default(),
            &dek,
            "b",
            "k",
        );
        let uk = env.upload_mac_key(&dek, &[6; 16]);
        assert_eq!(t.upload_key().map(|k| *k.bytes()), Some(*uk.bytes()));
        let back = UploadToken::decode(&t.encode()).unwrap().unwrap();
        assert_eq!(back, t);
        assert_eq!(back.customer(), Some(&check));
        back.verify(&uk, "b", "k").unwrap();
        assert!(
            back.verify(&dek, "b", "k").is_err(),
            "MACed under the upload key"
        );
        assert!(back.verify(&uk, "b", "other").is_err());
        // The state bucket's copy has no upload key, and still verifies with it.
        let stored = UploadToken::decode(&t.encode_for_store()).unwrap().unwrap();
        assert!(stored.upload_key().is_none());
        assert_eq!(stored.customer(), Some(&check));
        stored.verify(&uk, "b", "k").unwrap();
        assert!(!t.encode_for_store().contains(&t.encode()[8..]));
        // A token whose upload key was replaced is refused.
        let mut forged = t.clone();
        let other = Dek::from_slice(&[9; 32]).unwrap();
        forged.v3.as_mut().unwrap().upload_key = Some(UploadKey(other.clone()));
        let forged = UploadToken::decode(&forged.encode()).unwrap().unwrap();
        assert!(forged.verify(&other, "b", "k").is_err());
        assert!(forged.verify(&uk, "b", "k").is_err());
        assert!(format!("{t:?}").contains("UploadKey(<redacted>)"));
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
