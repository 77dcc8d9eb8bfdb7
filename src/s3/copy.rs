//! CopyObject and UploadPartCopy: the store copies server-side.

use s3s::{Body, S3Response};

use super::Ctx;
use super::forward;
use crate::error::Error;

pub async fn copy(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(
            &ctx,
            headers,
            crate::upstream::UpBody::Empty,
        ))
        .await?;
    Ok(forward::to_client(resp, false, &[]))
}
