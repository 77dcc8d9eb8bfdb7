//! HeadObject: sizes and SSE headers in plaintext terms for sealgate objects; others are
//! answered by the store as they are.

use http::{Method, StatusCode};
use s3s::{Body, S3Response};

use super::objmeta::{self, ObjectMeta};
use super::{Ctx, forward, get};
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest};

pub async fn head_object(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &["range"]);
    let query: Vec<(String, String)> = ctx
        .forward_query()
        .into_iter()
        .filter(|(k, _)| k != "partNumber")
        .collect();
    let resp = ctx
        .state
        .upstream
        .send(UpRequest {
            method: Method::HEAD,
            bucket: ctx.bucket.clone(),
            key: ctx.key.clone(),
            query,
            headers,
            body: UpBody::Empty,
        })
        .await?;
    let meta = if resp.status().is_success() {
        ObjectMeta::read(resp.headers())?
    } else {
        None
    };
    let Some(meta) = meta else {
        let plain_ok = resp.status().is_success();
        if plain_ok
            && (ctx.query_value("partNumber").is_some() || ctx.headers.contains_key("range"))
        {
            // Not ours: the store answers part and range semantics itself.
            let headers = forward::request_headers(&ctx.headers, &[]);
            let resp = ctx
                .state
                .upstream
                .send(forward::up_request(&ctx, headers, UpBody::Empty))
                .await?;
            return Ok(forward::to_client(resp, true, &[]));
        }
        let mut out = forward::to_client(resp, true, &[]);
        objmeta::strip(&mut out.headers);
        return Ok(out);
    };
    let want = get::want_for(&ctx, &meta)?;
    let mut h = get::client_headers(resp.headers(), &meta, &want);
    if ctx.query_value("partNumber").is_some() {
        forward::set_header(
            &mut h,
            "x-amz-mp-parts-count",
            &meta.layout.parts.len().to_string(),
        );
    }
    let mut out = S3Response::new(Body::empty());
    out.status = Some(if want.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    });
    out.headers = h;
    Ok(out)
}
