//! CopyObject.
//!
//! When the source is a sealgate object and the destination is to be encrypted, only the
//! data key's wrapping changes (new bucket/key context, maybe a new CMK): sealgate
//! unwraps the DEK as the caller, wraps it for the destination, and lets the store copy
//! the body server-side. Otherwise (plaintext source into an encrypted destination, or
//! the reverse) the bytes stream through sealgate: decrypted and/or encrypted on the way.
//!
//! Invariants: the destination never holds plaintext when encryption applies; the
//! source's sealgate metadata never carries over unchanged (its wrapped DEK is bound to
//! the source's name and would not open at the destination).

use http::Method;
use s3s::{Body, S3Response};

use super::{Ctx, forward, rules, source, sse};
use crate::error::Error;
use crate::object::{ObjectMeta, meta, write};
use crate::upstream::UpBody;

pub async fn copy_object(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    meta::reject_reserved(&ctx.headers)?;
    let requested = ctx.req.sse.clone();
    let src = ctx
        .req
        .copy_source
        .clone()
        .ok_or_else(|| Error::Internal("CopyObject without a source".into()))?;
    let dest = ctx.req.object()?;
    let head = source::head(&ctx, &src).await?;
    let src_meta = ObjectMeta::read(head.headers())?;
    let replace = ctx
        .headers
        .get("x-amz-metadata-directive")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"REPLACE"));
    if !replace
        && src.bucket == dest.bucket
        && src.key == dest.key
        && src.version_id.is_none()
        && requested.is_none()
    {
        return Err(Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let dest_sse = rules::effective(&ctx, requested).await?;
    // What the destination describes itself as: the source's (COPY) or the request's (REPLACE).
    let mut headers = if replace {
        forward::descriptive_headers(&ctx.headers)
    } else {
        forward::descriptive_headers(head.headers())
    };
    for passthrough in [
        "x-amz-tagging-directive",
        "x-amz-tagging",
        "x-amz-storage-class",
        "x-amz-acl",
        "x-amz-object-lock-mode",
        "x-amz-object-lock-retain-until-date",
        "x-amz-object-lock-legal-hold",
    ] {
        if let Some(v) = ctx.headers.get(passthrough) {
            headers.insert(passthrough, v.clone());
        }
    }
    match (src_meta, dest_sse) {
        (Some(meta), Some(sse)) => {
            // Re-wrap only: the store copies the body.
            let dek = ctx.objects().open_object(ctx.caller(), &meta, &src).await?;
            let env = ctx
                .objects()
                .rewrap(ctx.caller(), &dek, &sse, &dest)
                .await?;
            // The body keeps its DEK, so the copy is a per-object wrap (format 1).
            let new_meta = ObjectMeta {
                envelope: env,
                ..meta
            };
            new_meta.write(&mut headers);
            forward::set_header(&mut headers, "x-amz-metadata-directive", "REPLACE");
            forward::set_header(&mut headers, "x-amz-copy-source", &src.copy_source_header());
            if let Some(e) = head.headers().get(http::header::ETAG) {
                headers.insert("x-amz-copy-source-if-match", e.clone());
            }
            let resp = ctx.forward(headers, UpBody::Empty).await?;
            let ok = resp.status().is_success();
            let mut out = forward::to_client(resp, false, &forward::response_drop_list());
            if ok {
                sse::response_headers(&mut out.headers, &new_meta.envelope);
            }
            Ok(out)
        }
        (None, None) => {
            // Plaintext to plaintext (encryption configured off): the store copies.
            let mut h = forward::request_headers(&ctx.headers, &forward::write_drop_list());
            forward::set_header(&mut h, "x-amz-copy-source", &src.copy_source_header());
            let resp = ctx.forward(h, UpBody::Empty).await?;
            Ok(forward::to_client(resp, false, &[]))
        }
        (_, dest_sse) => {
            // The bytes must change form: stream them through sealgate.
            let (plain, len) = source::plaintext(&ctx, &src, head.headers(), None).await?;
            let (body, env) = match dest_sse {
                Some(sse) => {
                    let (env, dek) = ctx.objects().new_key(ctx.caller(), &sse, &dest).await?;
                    let (meta, encrypt) = write::new_single(env, dek, len);
                    meta.write(&mut headers);
                    let (stream, len) = encrypt(plain);
                    (UpBody::Stream { stream, len }, Some(meta.envelope))
                }
                None => (UpBody::Stream { stream: plain, len }, None),
            };
            let body = UpBody::Checked(Box::new(body));
            ctx.method = Method::PUT;
            let resp = ctx.forward(headers, body).await?;
            if !resp.status().is_success() {
                return Ok(forward::to_client(resp, false, &[]));
            }
            Ok(source::copy_result("CopyObjectResult", &resp, env.as_ref()))
        }
    }
}
