//! HeadObject: sizes and SSE headers in plaintext terms for sealgate objects; others are
//! answered by the store as they are.

use http::Method;
use s3s::{Body, S3Response};

use super::conditions::{self, Verdict};
use super::plaintext::{self, Want};
use super::{Ctx, forward};
use crate::error::Error;
use crate::object::meta;
use crate::upstream::UpBody;

pub async fn head_object(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let mut drop = vec!["range"];
    drop.extend(conditions::READ_CONDITIONS);
    let headers = forward::request_headers(&ctx.headers, &drop);
    let resp = ctx
        .send(forward::object_read(&ctx, Method::HEAD, headers))
        .await?;
    let Some(meta) = plaintext::sealed_meta(&ctx, &resp).await? else {
        if resp.status().is_success()
            && (ctx.req.part_number.is_some()
                || ctx.headers.contains_key("range")
                || conditions::any(&ctx.headers))
        {
            // Not ours: the store answers part, range and condition semantics itself.
            let headers = forward::request_headers(&ctx.headers, &[]);
            let resp = ctx.forward(headers, UpBody::Empty).await?;
            return Ok(forward::to_client(resp, true, forward::STORE_SSE));
        }
        let mut out = forward::to_client(resp, true, forward::STORE_SSE);
        meta::strip(&mut out.headers);
        return Ok(out);
    };
    let obj = ctx.req.object()?;
    let (meta, dek, etag) = ctx.open_described(&obj, meta, &resp).await?;
    let verdict = conditions::evaluate(
        &ctx.headers,
        &etag,
        conditions::last_modified(resp.headers()),
    );
    if verdict != Verdict::Proceed {
        let h = plaintext::headers(
            &ctx.req,
            resp.headers(),
            &meta,
            &etag,
            &Want::whole(meta.size),
        );
        return plaintext::unmet(verdict, h);
    }
    let want = plaintext::want(&ctx.req, &meta)?;
    let mut h = plaintext::headers(&ctx.req, resp.headers(), &meta, &etag, &want);
    plaintext::add_checksum(&ctx, &obj, &meta, &dek, resp.headers(), &want, &mut h).await?;
    Ok(plaintext::response(want.status(), h, None))
}
