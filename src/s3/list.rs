//! ListObjects (V1/V2), ListObjectVersions and GetObjectAttributes.

use s3s::{Body, S3Response};

use super::Ctx;
use super::forward;
use crate::error::Error;

pub async fn list(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &[]);
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
