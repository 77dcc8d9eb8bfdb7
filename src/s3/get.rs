//! GetObject: decrypts sealgate objects on the way out, fetching only the ciphertext that
//! covers the requested range; other objects are served as they are (unless configured
//! otherwise).
//!
//! Invariants: Content-Length/Content-Range are in plaintext terms; only authenticated
//! bytes are sent, and an authentication failure mid-stream aborts the response; a ranged
//! read is pinned to the object version its metadata came from (`If-Match` on the store's
//! ETag).

use http::{HeaderMap, Method, StatusCode};
use s3s::dto::Range;
use s3s::{Body, S3Response};

use super::conditions::{self, Verdict};
use super::plaintext::{self, Want};
use super::{Ctx, forward};
use crate::crypto::format::{self, SEALED_SEGMENT, SEGMENT};
use crate::error::Error;
use crate::object::{ObjectMeta, meta};
use crate::upstream::{UpBody, UpResponse};

/// A store answer passed to the client as it is (an error, or an object sealgate did not
/// encrypt where that is allowed), without sealgate's metadata or the store's SSE claims.
async fn as_stored(ctx: &Ctx, resp: UpResponse) -> Result<S3Response<Body>, Error> {
    let plaintext = resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED;
    if plaintext && ObjectMeta::read(resp.headers())?.is_some() {
        // The object became a sealgate object between two reads.
        return Err(Error::changed_while_reading());
    }
    if plaintext {
        plaintext::allowed(ctx).await?;
    }
    let mut out = forward::to_client(resp, false, forward::STORE_SSE);
    meta::strip(&mut out.headers);
    Ok(out)
}

pub async fn get_object(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let conditional = conditions::any(&ctx.headers);
    if !conditional && ctx.req.range.is_none() && ctx.req.part_number.is_none() {
        return whole(ctx).await;
    }
    if !conditional && let Some(out) = optimistic_range(&ctx).await? {
        return Ok(out);
    }
    general(ctx).await
}

/// The whole object in one round trip: its metadata comes with it.
async fn whole(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &["range"]);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    let Some(meta) = ObjectMeta::read(resp.headers())?.filter(|_| resp.status().is_success())
    else {
        return as_stored(&ctx, resp).await;
    };
    let stored = resp.content_length();
    decrypted(&ctx, resp, meta, stored, None).await
}

/// Opens the object, checks its metadata and answers `planned` (default: the whole
/// object) from `resp`, which holds the ciphertext of that plan from its first segment
/// (for a single-part object the part header comes from the metadata).
async fn decrypted(
    ctx: &Ctx,
    resp: UpResponse,
    meta: ObjectMeta,
    stored_len: Option<u64>,
    planned: Option<(Want, format::ReadPlan)>,
) -> Result<S3Response<Body>, Error> {
    let obj = ctx.req.object()?;
    let (meta, dek) = ctx
        .objects()
        .open(ctx.caller(), meta, ctx.req.ssec.as_ref(), &obj, stored_len)
        .await?;
    let (want, plan) = match planned {
        Some((w, p)) => (w, Some(p)),
        None => (Want::whole(meta.size), None),
    };
    let etag = ctx
        .objects()
        .client_etag(&obj, &meta, &dek, resp.headers())
        .await?;
    let mut headers = plaintext::headers(&ctx.req, resp.headers(), &meta, &etag, &want);
    plaintext::add_checksum(ctx, &obj, &meta, &dek, resp.headers(), &want, &mut headers).await?;
    let plan = plan.or_else(|| format::plan(&meta.layout, want.start, want.end));
    let body = plan.map(|plan| {
        ctx.objects()
            .decrypt(resp, dek, &meta, &plan, meta.single_header())
    });
    Ok(plaintext::response(want.status(), headers, body))
}

/// A read with conditions, a part number or a range: metadata first, conditions checked
/// against the ETag clients see, then only the covering ciphertext, pinned to that
/// version.
async fn general(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let obj = ctx.req.object()?;
    let mut drop = vec!["range"];
    drop.extend(conditions::READ_CONDITIONS);
    let headers = forward::request_headers(&ctx.headers, &drop);
    let head = ctx
        .send(forward::object_read(&ctx, Method::HEAD, headers))
        .await?;
    let Some(meta) = plaintext::sealed_meta(&ctx, &head).await? else {
        // Not ours, or an error: let the store answer the original request (with its
        // body and its own evaluation of the conditions); a plaintext answer only where
        // plaintext reads are allowed.
        let headers = forward::request_headers(&ctx.headers, &[]);
        let resp = ctx.forward(headers, UpBody::Empty).await?;
        return as_stored(&ctx, resp).await;
    };
    let pin = head.headers().get(http::header::ETAG).cloned();
    let (meta, dek, etag) = ctx.open_described(&obj, meta, &head).await?;
    let verdict = conditions::evaluate(
        &ctx.headers,
        &etag,
        conditions::last_modified(head.headers()),
    );
    let whole = Want::whole(meta.size);
    if verdict != Verdict::Proceed {
        let headers = plaintext::headers(&ctx.req, head.headers(), &meta, &etag, &whole);
        return plaintext::unmet(verdict, headers);
    }
    let want = plaintext::want(&ctx.req, &meta)?;
    let mut headers = plaintext::headers(&ctx.req, head.headers(), &meta, &etag, &want);
    plaintext::add_checksum(&ctx, &obj, &meta, &dek, head.headers(), &want, &mut headers).await?;
    let body = ctx
        .objects()
        .read_range(&obj, &meta, dek, pin.as_ref(), want.start, want.end)
        .await?;
    let body = (want.end > want.start).then_some(body);
    Ok(plaintext::response(want.status(), headers, body))
}

/// One round trip for the common case: a ranged GET (`bytes=a-b` or `bytes=a-`) of a
/// single-part sealgate object. The covering ciphertext range does not depend on
/// metadata for single-part objects, so sealgate asks for it directly and checks the
/// metadata that comes with it. `Ok(None)`: not that case (multipart, plaintext, suffix
/// range, ...) — use the general path.
async fn optimistic_range(ctx: &Ctx) -> Result<Option<S3Response<Body>>, Error> {
    let (None, Some(Range::Int { first, last })) = (ctx.req.part_number, ctx.req.range) else {
        return Ok(None);
    };
    let cs = (first / SEGMENT) * SEALED_SEGMENT;
    let range = match last {
        Some(b) => format!("bytes={}-{}", cs, (b / SEGMENT + 1) * SEALED_SEGMENT - 1),
        None => format!("bytes={cs}-"),
    };
    let mut headers: HeaderMap = forward::request_headers(&ctx.headers, &["range"]);
    forward::set_header(&mut headers, "range", &range);
    let resp = ctx
        .send(forward::object_read(ctx, Method::GET, headers))
        .await?;
    let status = resp.status();
    if matches!(
        status,
        StatusCode::NOT_MODIFIED
            | StatusCode::PRECONDITION_FAILED
            | StatusCode::NOT_FOUND
            | StatusCode::FORBIDDEN
    ) {
        // The store's answer to the client's conditions (or absence) stands as it is.
        return as_stored(ctx, resp).await.map(Some);
    }
    if status != StatusCode::PARTIAL_CONTENT {
        return Ok(None);
    }
    let meta = match ObjectMeta::read(resp.headers())? {
        Some(m) if !m.layout.headers_in_body && m.upload.is_none() => m,
        _ => return Ok(None),
    };
    // `bytes X-Y/TOTAL`: the stored length, and how far the answer reaches.
    let Some((got_first, got_last, total)) = content_range(resp.headers()) else {
        return Ok(None);
    };
    let want = plaintext::want(&ctx.req, &meta)?;
    let Some(plan) = format::plan(&meta.layout, want.start, want.end) else {
        return Ok(None);
    };
    if plan.cipher_start != got_first || got_last + 1 < plan.cipher_end {
        return Ok(None);
    }
    decrypted(ctx, resp, meta, Some(total), Some((want, plan)))
        .await
        .map(Some)
}

/// Parses `Content-Range: bytes X-Y/TOTAL`.
fn content_range(h: &HeaderMap) -> Option<(u64, u64, u64)> {
    let cr = h.get("content-range")?.to_str().ok()?;
    let (span, total) = cr.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        let mut h = HeaderMap::new();
        h.insert("content-range", "bytes 0-99/1000".parse().unwrap());
        assert_eq!(content_range(&h), Some((0, 99, 1000)));
        h.insert("content-range", "bytes */1000".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }
}
