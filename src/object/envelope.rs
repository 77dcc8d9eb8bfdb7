//! The envelope: an object's data key (DEK) as stored — wrapped by a KMS key through a
//! data-key backend, with the encryption context it was wrapped for, or (SSE-C) wrapped
//! under a key derived from the client's own key ([`super::customer`]) — and the three
//! things done with it: draw a new one, open (unwrap) one, wrap an existing DEK for a new
//! object name.
//!
//! Invariants: a DEK is only ever obtained for the principal making the request (SSE-C:
//! with the key the request carries, checked before it is used); the wrap is bound to the
//! object (`aws:s3:arn`; bucket-key envelopes: the bucket in the KMS context and the
//! object name in the key derivation; SSE-C: the object name in the wrapping key's
//! derivation); writes use the backend configured for the bucket, reads the backend
//! recorded in the envelope. A wrapped key that does not open for this object's name is
//! tampering (moved or altered in the store), not a KMS refusal.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::customer::{self, CustomerKey, KeyCheck};
use crate::crypto::stream::Dek;
use crate::error::Error;
use crate::keys::{BackendError, Backends, Caller, StoredKey};
use crate::kms::{EncryptionContext, KmsError};

/// Alias of the sealgate-managed default key (like AWS's `aws/s3`).
pub const MANAGED_ALIAS: &str = crate::keys::embedded::MANAGED_ALIAS;

/// The server-side encryption an object has (or a write asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// `aws:kms`: a KMS key of the caller's choice (or the managed default).
    Kms,
    /// `AES256` (SSE-S3): sealgate's managed default key.
    S3,
    /// SSE-C: the client's own key, sent with every request and never stored.
    Customer,
}

impl Alg {
    /// The stored name (`sealgate-alg`); for SSE-KMS and SSE-S3 also the value of
    /// `x-amz-server-side-encryption`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Kms => "aws:kms",
            Alg::S3 => "AES256",
            Alg::Customer => crate::crypto::format::SSEC_ALG,
        }
    }
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "aws:kms" => Some(Alg::Kms),
            "AES256" => Some(Alg::S3),
            crate::crypto::format::SSEC_ALG => Some(Alg::Customer),
            _ => None,
        }
    }
}

/// The encryption a write gets: what the client asked for, or a bucket or global default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub alg: Alg,
    /// KMS key id, ARN or alias (aws:kms only); `None` = the backend's default key.
    pub key_id: Option<String>,
    /// Caller-supplied encryption context (aws:kms only).
    pub context: BTreeMap<String, String>,
    pub bucket_key: bool,
    /// SSE-C (`alg` is [`Alg::Customer`]): the client's key.
    pub customer: Option<CustomerKey>,
}

impl Sse {
    /// SSE-C under `key`.
    pub fn customer(key: CustomerKey) -> Sse {
        Sse {
            alg: Alg::Customer,
            key_id: None,
            context: BTreeMap::new(),
            bucket_key: false,
            customer: Some(key),
        }
    }
}

/// An object's data key as stored, and what it was wrapped for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub alg: Alg,
    /// The backend's reference to the KMS key (ARN, `transit:mount/key`).
    pub key_ref: String,
    /// The wrapped DEK, or (format 2) the wrapped bucket key the DEK derives from.
    pub wrapped: Vec<u8>,
    /// KMS backend that wrapped the key; `None` = the embedded KMS.
    pub backend: Option<String>,
    /// Format 2 (bucket keys): the per-object salt of the DEK derivation.
    pub bk_salt: Option<[u8; 16]>,
    /// The caller's encryption context pairs (without `aws:s3:arn`).
    pub context: BTreeMap<String, String>,
    pub bucket_key: bool,
    /// SSE-C (`alg` is [`Alg::Customer`], and only then): the salted check of the
    /// customer key that wraps the DEK. `key_ref` is empty, `backend` and `bk_salt` none.
    pub customer: Option<KeyCheck>,
}

impl Envelope {
    /// Whether the DEK is wrapped under a customer key (SSE-C).
    pub fn is_customer(&self) -> bool {
        self.customer.is_some()
    }

    /// The key that MACs a multipart upload's token, part records and part list: the DEK
    /// itself, or for SSE-C a key derived from it that the upload's token also carries
    /// ([`customer::upload_key`]).
    pub fn upload_mac_key(&self, dek: &Dek, upload: &[u8; 16]) -> Dek {
        if self.is_customer() {
            customer::upload_key(dek, upload)
        } else {
            dek.clone()
        }
    }

    /// The caller's context as the client sent it (base64 JSON), for response headers
    /// and metadata; `None` when empty.
    pub fn context_b64(&self) -> Option<String> {
        (!self.context.is_empty())
            .then(|| B64.encode(serde_json::to_vec(&self.context).unwrap_or_default()))
    }

    /// The stored format version this envelope needs.
    pub fn format_version(&self) -> u8 {
        if self.bk_salt.is_some() { 2 } else { 1 }
    }
}

/// Decodes `x-amz-server-side-encryption-context` / stored contexts: base64 of a JSON
/// object of strings.
pub fn decode_context(b64: &str) -> Option<BTreeMap<String, String>> {
    let raw = B64.decode(b64).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// The encryption context of an object: `aws:s3:arn` plus the caller's pairs.
pub fn context_for(
    bucket: &str,
    key: &str,
    caller: &BTreeMap<String, String>,
) -> EncryptionContext {
    let mut c: EncryptionContext = caller.clone();
    c.insert("aws:s3:arn".into(), crate::keys::object_arn(bucket, key));
    c
}

/// Whether `k` names the managed default key (`alias/aws/s3` or its alias ARN).
pub fn is_managed_alias(k: &str) -> bool {
    k == MANAGED_ALIAS || k.starts_with("arn:") && k.ends_with(":alias/aws/s3")
}

/// The KMS key a protection names (SSE-KMS with a key id); `None` = the backend's default.
fn requested_key(sse: &Sse) -> Option<&str> {
    match (sse.alg, &sse.key_id) {
        // Naming the managed key means the default key (created on first use, as on AWS).
        (Alg::Kms, Some(k)) if !is_managed_alias(k) => Some(k.as_str()),
        _ => None,
    }
}

/// Draws a DEK for `bucket/key` as `who`, under the key `sse` names (or the backend's
/// default key), from the backend configured for `bucket`.
async fn new_key(
    keys: &Backends,
    who: Caller<'_>,
    sse: &Sse,
    bucket: &str,
    key: &str,
) -> Result<(Envelope, Dek), Error> {
    if let Some(ck) = &sse.customer {
        let dek = customer::random_dek();
        let env = customer_envelope(ck, &dek, bucket, key)?;
        return Ok((env, dek));
    }
    let ok = keys
        .new_object_key(who, bucket, key, requested_key(sse), &sse.context)
        .await?;
    let env = Envelope {
        alg: sse.alg,
        key_ref: ok.key_ref,
        wrapped: ok.wrapped,
        backend: ok.backend,
        bk_salt: ok.bk_salt,
        context: sse.context.clone(),
        bucket_key: sse.bucket_key,
        customer: None,
    };
    Ok((env, ok.dek))
}

/// `dek` wrapped for `bucket/key` under the customer key `ck`, with a fresh salt.
fn customer_envelope(
    ck: &CustomerKey,
    dek: &Dek,
    bucket: &str,
    key: &str,
) -> Result<Envelope, Error> {
    if !ck.usable() {
        // Writes refuse such keys when parsing the request (sse.rs); never wrap under one.
        return Err(Error::invalid_argument(
            "The secret key was invalid for the specified algorithm.",
        ));
    }
    let check = KeyCheck::new(ck);
    Ok(Envelope {
        alg: Alg::Customer,
        key_ref: String::new(),
        wrapped: customer::wrap(ck, &check, dek, bucket, key),
        backend: None,
        bk_salt: None,
        context: BTreeMap::new(),
        bucket_key: false,
        customer: Some(check),
    })
}

/// AWS's answer to a read of an SSE-C object without the customer key.
pub fn customer_key_required() -> Error {
    Error::invalid_request(
        "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
    )
}

/// AWS's answer to a read of an SSE-C object with another key than its own.
pub fn wrong_customer_key() -> Error {
    Error::access_denied(
        "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key.",
    )
}

/// AWS's answer to customer-key headers on a read of an object that is not SSE-C.
pub fn customer_key_not_applicable() -> Error {
    Error::invalid_request("The encryption parameters are not applicable to this object.")
}

/// Checks the request's customer key against an SSE-C envelope and unwraps its DEK: no
/// key is AWS's 400, a key that is not the object's AWS's 403 (decided by the key check,
/// before the DEK is touched); a key that passes the check but does not unwrap the DEK
/// means the wrap was moved or altered in the store.
fn open_customer(
    env: &Envelope,
    check: &KeyCheck,
    ck: Option<&CustomerKey>,
    bucket: &str,
    key: &str,
) -> Result<Dek, Error> {
    let ck = ck.ok_or_else(customer_key_required)?;
    if !check.matches(ck) {
        return Err(wrong_customer_key());
    }
    customer::unwrap(ck, check, &env.wrapped, bucket, key).ok_or_else(|| {
        Error::tampered(
            "its data key does not unwrap for this bucket and key under the customer key (objects swapped or altered in the store)",
        )
    })
}

/// Unwraps an envelope's DEK as `who` (the KMS checks it may decrypt).
async fn open(
    keys: &Backends,
    who: Caller<'_>,
    env: &Envelope,
    ck: Option<&CustomerKey>,
    bucket: &str,
    key: &str,
) -> Result<Dek, Error> {
    if let Some(check) = &env.customer {
        return open_customer(env, check, ck, bucket, key);
    }
    if ck.is_some() {
        return Err(customer_key_not_applicable());
    }
    let stored = StoredKey {
        backend: env.backend.as_deref(),
        key_ref: &env.key_ref,
        wrapped: &env.wrapped,
        bk_salt: env.bk_salt.as_ref(),
    };
    keys.open_object_key(who, &stored, bucket, key, &env.context)
        .await
        .map_err(|e| match e {
            // A blob that does not open under this object's context was moved or altered.
            BackendError::Kms(KmsError::InvalidCiphertext(_)) => Error::tampered(
                "its data key does not decrypt for this bucket and key (objects swapped or altered in the store)",
            ),
            other => Error::Kms(other),
        })
}

/// Wraps an existing DEK for a new object name (and maybe a new key and backend). The
/// result is always a per-object (format 1) envelope: the DEK itself is wrapped.
async fn rewrap(
    keys: &Backends,
    who: Caller<'_>,
    dek: &Dek,
    sse: &Sse,
    bucket: &str,
    key: &str,
) -> Result<Envelope, Error> {
    if let Some(ck) = &sse.customer {
        return customer_envelope(ck, dek, bucket, key);
    }
    let (wrapped, key_ref, backend) = keys
        .wrap_object_key(who, bucket, key, requested_key(sse), &sse.context, dek)
        .await?;
    Ok(Envelope {
        alg: sse.alg,
        key_ref,
        wrapped,
        backend,
        bk_salt: None,
        context: sse.context.clone(),
        bucket_key: sse.bucket_key,
        customer: None,
    })
}

impl super::Objects {
    /// A new DEK for `obj` as `who` (see [`new_key`]).
    pub async fn new_key(
        &self,
        who: Caller<'_>,
        sse: &Sse,
        obj: &super::ObjectRef,
    ) -> Result<(Envelope, Dek), Error> {
        new_key(&self.keys, who, sse, &obj.bucket, &obj.key).await
    }

    /// Unwraps `env`'s DEK for `obj` as `who` (SSE-C: with the request's customer key
    /// `ck`), with no metadata to check (an upload in progress). A customer key for an
    /// envelope that is not SSE-C is refused as AWS does.
    pub async fn open_key(
        &self,
        who: Caller<'_>,
        env: &Envelope,
        ck: Option<&CustomerKey>,
        obj: &super::ObjectRef,
    ) -> Result<Dek, Error> {
        open(&self.keys, who, env, ck, &obj.bucket, &obj.key).await
    }

    /// Opens a stored object as `who` (SSE-C: with the request's customer key `ck`):
    /// unwraps its DEK, checks its metadata with it, reads a multipart object's part list,
    /// and checks that the store holds exactly `stored_len` ciphertext bytes. Nothing of
    /// the object may be used before this succeeds.
    pub async fn open(
        &self,
        who: Caller<'_>,
        meta: super::ObjectMeta,
        ck: Option<&CustomerKey>,
        obj: &super::ObjectRef,
        stored_len: Option<u64>,
    ) -> Result<(super::ObjectMeta, Dek), Error> {
        let dek = self.open_key(who, &meta.envelope, ck, obj).await?;
        meta.verify(&dek)?;
        let meta = match meta.upload {
            Some(u) if meta.needs_manifest() => {
                let key = meta.envelope.upload_mac_key(&dek, &u);
                let m = self.manifest(&key, &u).await?;
                let checksum = match &m.checksum {
                    Some(c) => Some(super::checksum::Stored::Parts(c.open(&key)?)),
                    None => None,
                };
                super::ObjectMeta {
                    checksum,
                    ..meta.with_manifest(&m)
                }
            }
            _ => meta,
        };
        super::read::check_cipher_len(stored_len, &meta)?;
        Ok((meta, dek))
    }

    /// Wraps `dek` for `obj` under the key `sse` names, or under its customer key (see
    /// [`rewrap`]).
    pub async fn rewrap(
        &self,
        who: Caller<'_>,
        dek: &Dek,
        sse: &Sse,
        obj: &super::ObjectRef,
    ) -> Result<Envelope, Error> {
        rewrap(&self.keys, who, dek, sse, &obj.bucket, &obj.key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_binds_bucket_and_key() {
        let c = context_for(
            "b",
            "dir/k",
            &BTreeMap::from([("team".to_string(), "x".to_string())]),
        );
        assert_eq!(
            c.get("aws:s3:arn").map(String::as_str),
            Some("arn:aws:s3:::b/dir/k")
        );
        assert_eq!(c.get("team").map(String::as_str), Some("x"));
    }

    #[test]
    fn contexts_round_trip_through_base64_json() {
        let env = Envelope {
            alg: Alg::Kms,
            key_ref: "k".into(),
            wrapped: vec![1],
            backend: None,
            bk_salt: None,
            context: BTreeMap::from([("a".to_string(), "b".to_string())]),
            bucket_key: false,
            customer: None,
        };
        let b = env.context_b64().unwrap();
        assert_eq!(decode_context(&b).unwrap(), env.context);
        assert_eq!(
            Envelope {
                context: BTreeMap::new(),
                ..env
            }
            .context_b64(),
            None
        );
    }

    #[test]
    fn the_managed_alias_is_recognised_by_name_and_arn() {
        assert!(is_managed_alias("alias/aws/s3"));
        assert!(is_managed_alias(
            "arn:aws:kms:us-east-1:000000000000:alias/aws/s3"
        ));
        assert!(!is_managed_alias("alias/app"));
    }
}
