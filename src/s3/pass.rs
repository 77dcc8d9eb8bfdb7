//! Allow-listed pass-through operations: forwarded to the store unchanged (re-signed).
//!
//! The store verifies the client's Content-MD5 / checksum headers itself (it sees the same
//! bytes); a checksum sent in an aws-chunked trailer cannot be forwarded, so sealgate
//! verifies that one before the body completes.

use s3s::{Body, S3Response};

use super::Ctx;
use super::checksum::Declared;
use super::forward;
use crate::error::Error;

pub async fn forward(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    if ctx.headers.contains_key("x-amz-trailer") {
        let declared = Declared::from_headers(&ctx.headers)?;
        let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
        let (resp, _) = super::put::send_verified(&mut ctx, headers, &declared, None).await?;
        return Ok(forward::to_client(resp, ctx.is_head(), &[]));
    }
    let headers = forward::request_headers(&ctx.headers, &[]);
    let body = forward::client_body(&mut ctx)?;
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, body))
        .await?;
    Ok(forward::to_client(resp, ctx.is_head(), &[]))
}
