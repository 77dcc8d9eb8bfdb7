//! HeadObject: sizes and SSE headers in plaintext terms for sealgate objects; others are
//! answered by the store as they are.

use http::Method;
use s3s::{Body, S3Response};

use super::plaintext;
use super::{Ctx, forward};
use crate::error::Error;
use crate::object::{ObjectMeta, meta};
use crate::upstream::UpBody;

pub async fn head_object(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &["range"]);
    let resp = ctx
        .send(forward::object_read(&ctx, Method::HEAD, headers))
        .await?;
    let meta = if resp.status().is_success() {
        ObjectMeta::read(resp.headers())?
    } else {
        None
    };
    let Some(meta) = meta else {
        if resp.status().is_success()
            && (ctx.req.part_number.is_some() || ctx.headers.contains_key("range"))
        {
            // Not ours: the store answers part and range semantics itself.
            let headers = forward::request_headers(&ctx.headers, &[]);
            let resp = ctx.forward(headers, UpBody::Empty).await?;
            return Ok(forward::to_client(resp, true, &[]));
        }
        let mut out = forward::to_client(resp, true, &[]);
        meta::strip(&mut out.headers);
        return Ok(out);
    };
    let want = plaintext::want(&ctx.req, &meta)?;
    let h = plaintext::headers(&ctx.req, resp.headers(), &meta, &want);
    Ok(plaintext::response(want.status(), h, None))
}
