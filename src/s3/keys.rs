//! Data keys for objects: generated and unwrapped through the KMS as the caller, with the
//! encryption context bound to the object (`aws:s3:arn`).
//!
//! Invariants: a DEK is only ever obtained for the principal making the request; KMS
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
use crate::kms::{EncryptionContext, KmsError};

/// Alias of the sealgate-managed default key (like AWS's `aws/s3`).
pub const MANAGED_ALIAS: &str = "alias/aws/s3";

/// The encryption context of an object: `aws:s3:arn` plus the caller's pairs.
pub fn context_for(
    bucket: &str,
    key: &str,
    caller: &BTreeMap<String, String>,
) -> EncryptionContext {
    let mut c: EncryptionContext = caller.clone();
    c.insert("aws:s3:arn".into(), format!("arn:aws:s3:::{bucket}/{key}"));
    c
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
        let mut s = S3Error::with_message(
            S3ErrorCode::Custom("ServiceUnavailable".into()),
            format!("The KMS could not answer: {msg}"),
        );
        s.set_status_code(StatusCode::SERVICE_UNAVAILABLE);
        return Error::Client(s);
    }
    let mut s = S3Error::with_message(S3ErrorCode::Custom(format!("KMS.{ty}").into()), msg);
    s.set_status_code(StatusCode::BAD_REQUEST);
    Error::Client(s)
}

/// Whether `k` names the managed default key (`alias/aws/s3` or its alias ARN).
pub fn is_managed_alias(k: &str) -> bool {
    k == MANAGED_ALIAS || k.starts_with("arn:") && k.ends_with(":alias/aws/s3")
}

/// A fresh data key for an object.
pub struct NewKey {
    pub dek: Dek,
    pub wrapped: Vec<u8>,
    pub key_arn: String,
    pub context_b64: Option<String>,
}

/// Generates a DEK for `bucket/key` as the request's principal, under the key `sse` names.
pub async fn new_data_key(c: &Ctx, sse: &Sse, bucket: &str, key: &str) -> Result<NewKey, Error> {
    let kms = &c.state.kms;
    let key_id = match (sse.alg, &sse.key_id) {
        // Naming the managed key creates it on first use, as on AWS.
        (Alg::Kms, Some(k)) if !is_managed_alias(k) => k.clone(),
        _ => kms.service_managed_key(MANAGED_ALIAS).map_err(kms_error)?,
    };
    let ctx = context_for(bucket, key, &sse.context);
    c.state.metrics.kms("GenerateDataKey");
    let dk = kms
        .generate_data_key_via(&c.principal, &c.kms_call(), &key_id, &ctx, 32)
        .map_err(kms_error)?;
    let dek = Dek::from_slice(&dk.plaintext)
        .ok_or_else(|| Error::Internal("KMS returned a data key of the wrong length".into()))?;
    let context_b64 = (!sse.context.is_empty())
        .then(|| B64.encode(serde_json::to_vec(&sse.context).unwrap_or_default()));
    Ok(NewKey {
        dek,
        wrapped: dk.ciphertext_blob,
        key_arn: dk.key_arn,
        context_b64,
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
    let ctx = context_for(bucket, key, &caller_ctx);
    c.state.metrics.kms("Decrypt");
    let d = c
        .state
        .kms
        .decrypt_via(&c.principal, &c.kms_call(), Some(&meta.key_arn), &meta.wrapped_dek, &ctx)
        .map_err(|e| match e {
            // A blob that does not open under this object's context was moved or altered.
            KmsError::InvalidCiphertext(_) => Error::Client(super::objmeta::corrupt(
                "its data key does not decrypt for this bucket and key (objects swapped or altered in the store)",
            )),
            other => kms_error(other),
        })?;
    Dek::from_slice(&d.plaintext)
        .ok_or_else(|| Error::Client(super::objmeta::corrupt("data key has the wrong length")))
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
    }
}
