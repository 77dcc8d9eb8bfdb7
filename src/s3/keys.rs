//! Data keys for objects: generated and unwrapped through the KMS backends
//! (`crate::keys`) as the caller, with the encryption context bound to the object
//! (`aws:s3:arn`; bucket-key objects: the bucket, with the object name bound in the key
//! derivation).
//!
//! Invariants: a DEK is only ever obtained for the principal making the request; writes use
//! the backend configured for the bucket and reads the backend recorded in the object; KMS
//! failures become the S3 errors AWS returns for SSE-KMS (`KMS.*` codes, AccessDenied,
//! 503 when the KMS cannot answer) and never lead to a plaintext write.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};

use super::Ctx;
use super::objmeta::ObjectMeta;
use super::sse::{Alg, Sse, parse_context};
use crate::crypto::stream::Dek;
use crate::error::Error;
use crate::keys::{BackendError, Caller, StoredKey};
use crate::kms::{EncryptionContext, KmsError};

/// Alias of the sealgate-managed default key (like AWS's `aws/s3`).
pub const MANAGED_ALIAS: &str = crate::keys::embedded::MANAGED_ALIAS;

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

fn unavailable(msg: impl std::fmt::Display) -> Error {
    let mut s = S3Error::with_message(
        S3ErrorCode::Custom("ServiceUnavailable".into()),
        format!("The KMS could not answer: {msg}"),
    );
    s.set_status_code(StatusCode::SERVICE_UNAVAILABLE);
    Error::Client(s)
}

/// Maps a KMS failure to the S3 error AWS gives for SSE-KMS requests.
pub fn kms_error(e: KmsError) -> Error {
    let status = e.status();
    let ty = e.aws_type();
    let msg = e.to_string();
    if ty == "AccessDeniedException" {
        return Error::Client(S3Error::with_message(S3ErrorCode::AccessDenied, msg));
    }
    if status.is_server_error() {
        return unavailable(msg);
    }
    let mut s = S3Error::with_message(S3ErrorCode::Custom(format!("KMS.{ty}").into()), msg);
    s.set_status_code(StatusCode::BAD_REQUEST);
    Error::Client(s)
}

/// Whether `k` names the managed default key (`alias/aws/s3` or its alias ARN).
pub fn is_managed_alias(k: &str) -> bool {
    k == MANAGED_ALIAS || k.starts_with("arn:") && k.ends_with(":alias/aws/s3")
}

/// Maps a backend failure: KMS decisions as [`kms_error`], outages to 503.
pub fn backend_error(e: BackendError) -> Error {
    match e {
        BackendError::Kms(k) => kms_error(k),
        BackendError::Unavailable(m) => {
            tracing::warn!(error = %m, "KMS backend unavailable");
            unavailable(m)
        }
    }
}

/// The KMS key the request names (SSE-KMS with a key id); `None` = the backend's default.
fn requested_key(sse: &Sse) -> Option<&str> {
    match (sse.alg, &sse.key_id) {
        // Naming the managed key means the default key (created on first use, as on AWS).
        (Alg::Kms, Some(k)) if !is_managed_alias(k) => Some(k.as_str()),
        _ => None,
    }
}

fn context_b64(sse: &Sse) -> Option<String> {
    (!sse.context.is_empty())
        .then(|| B64.encode(serde_json::to_vec(&sse.context).unwrap_or_default()))
}

/// A fresh data key for an object.
pub struct NewKey {
    pub dek: Dek,
    pub wrapped: Vec<u8>,
    pub key_arn: String,
    pub context_b64: Option<String>,
    /// Backend that wrapped it (`None` = embedded).
    pub backend: Option<String>,
    /// Format v2: salt of the DEK's derivation from a bucket key.
    pub bk_salt: Option<[u8; 16]>,
}

/// Generates a DEK for `bucket/key` as the request's principal, under the key `sse` names
/// (or the backend's default key), from the backend configured for `bucket`.
pub async fn new_data_key(c: &Ctx, sse: &Sse, bucket: &str, key: &str) -> Result<NewKey, Error> {
    let key_id = requested_key(sse);
    let call = c.kms_call();
    let who = Caller {
        principal: &c.principal,
        call: &call,
    };
    let ok = c
        .state
        .backends
        .new_object_key(who, bucket, key, key_id, &sse.context)
        .await
        .map_err(backend_error)?;
    Ok(NewKey {
        dek: ok.dek,
        wrapped: ok.wrapped,
        key_arn: ok.key_ref,
        context_b64: context_b64(sse),
        backend: ok.backend,
        bk_salt: ok.bk_salt,
    })
}

/// Unwraps an object's DEK as the request's principal and checks the metadata MAC.
pub async fn open_data_key(
    c: &Ctx,
    meta: &ObjectMeta,
    bucket: &str,
    key: &str,
) -> Result<Dek, Error> {
    let dek = open_token_key(c, meta, bucket, key).await?;
    meta.verify(&dek)?;
    Ok(dek)
}

/// Unwraps a DEK as the request's principal (the KMS checks it may decrypt), without a
/// metadata MAC to check (multipart uploads in progress).
pub async fn open_token_key(
    c: &Ctx,
    meta: &ObjectMeta,
    bucket: &str,
    key: &str,
) -> Result<Dek, Error> {
    let caller_ctx = match &meta.context_b64 {
        Some(x) => parse_context(x).map_err(|_| {
            Error::Client(super::objmeta::corrupt(
                "stored encryption context is invalid",
            ))
        })?,
        None => BTreeMap::new(),
    };
    let call = c.kms_call();
    let who = Caller {
        principal: &c.principal,
        call: &call,
    };
    let stored = StoredKey {
        backend: meta.backend.as_deref(),
        key_ref: &meta.key_arn,
        wrapped: &meta.wrapped_dek,
        bk_salt: meta.bk_salt.as_ref(),
    };
    c.state
        .backends
        .open_object_key(who, &stored, bucket, key, &caller_ctx)
        .await
        .map_err(|e| match e {
            // A blob that does not open under this object's context was moved or altered.
            BackendError::Kms(KmsError::InvalidCiphertext(_)) => {
                Error::Client(super::objmeta::corrupt(
                    "its data key does not decrypt for this bucket and key (objects swapped or altered in the store)",
                ))
            }
            other => backend_error(other),
        })
}

/// Wraps an existing DEK for a new object name (and maybe a new key and backend):
/// (wrapped, key ARN, caller context base64, backend).
pub async fn rewrap(
    c: &Ctx,
    dek: &Dek,
    sse: &Sse,
    bucket: &str,
    key: &str,
) -> Result<(Vec<u8>, String, Option<String>, Option<String>), Error> {
    let key_id = requested_key(sse);
    let call = c.kms_call();
    let who = Caller {
        principal: &c.principal,
        call: &call,
    };
    let (wrapped, key_ref, backend) = c
        .state
        .backends
        .wrap_object_key(who, bucket, key, key_id, &sse.context, dek)
        .await
        .map_err(backend_error)?;
    Ok((wrapped, key_ref, context_b64(sse), backend))
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
    fn kms_errors_map_to_sse_kms_s3_errors() {
        let s: S3Error = match kms_error(KmsError::Disabled("key is disabled".into())) {
            Error::Client(s) => s,
            _ => panic!(),
        };
        assert_eq!(s.code().as_str(), "KMS.DisabledException");
        assert_eq!(s.status_code(), Some(StatusCode::BAD_REQUEST));
        let s: S3Error = kms_error(KmsError::AccessDenied("no".into())).into();
        assert_eq!(s.code().as_str(), "AccessDenied");
        let s: S3Error = kms_error(KmsError::Internal("db".into())).into();
        assert_eq!(s.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
        let s: S3Error = backend_error(BackendError::Unavailable("down".into())).into();
        assert_eq!(s.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(s.code().as_str(), "ServiceUnavailable");
    }
}
