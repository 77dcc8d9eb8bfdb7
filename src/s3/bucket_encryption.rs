//! Put/Get/DeleteBucketEncryption: owned by sealgate (never forwarded to the store).
//!
//! Until sealgate keeps per-bucket encryption settings, these answer NotImplemented:
//! forwarding them would make the store, not sealgate, claim to encrypt.

use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::Ctx;
use crate::error::Error;

pub async fn handle(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    Err(Error::Client(S3Error::with_message(
        S3ErrorCode::NotImplemented,
        format!(
            "{} is managed by sealgate and is not available in this version.",
            ctx.op.name()
        ),
    )))
}
