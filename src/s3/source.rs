//! The source side of CopyObject and UploadPartCopy: checking the source against the
//! client's `x-amz-copy-source-if-*` conditions, reading it as plaintext (decrypted when
//! it is a sealgate object), and the XML answer of a copy whose bytes streamed through
//! sealgate. Shared by the copy and multipart handlers.
//!
//! Invariants: a source sealgate did not encrypt is read only where plaintext reads are
//! allowed; a sealgate source is read pinned to the version its HEAD saw.

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::{Body, S3Response};

use super::{Ctx, forward, sse};
use crate::error::Error;
use crate::object::{ByteStream, Envelope, ObjectMeta, ObjectRef};
use crate::upstream::UpResponse;

/// Copy-source conditions, as conditions on a read of the source.
fn source_conditions(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (from, to) in [
        ("x-amz-copy-source-if-match", http::header::IF_MATCH),
        (
            "x-amz-copy-source-if-none-match",
            http::header::IF_NONE_MATCH,
        ),
        (
            "x-amz-copy-source-if-modified-since",
            http::header::IF_MODIFIED_SINCE,
        ),
        (
            "x-amz-copy-source-if-unmodified-since",
            http::header::IF_UNMODIFIED_SINCE,
        ),
    ] {
        if let Some(v) = h.get(from) {
            out.insert(to, v.clone());
        }
    }
    out
}

/// HEADs the copy source. A failed precondition is the 412 S3 gives for copies.
pub async fn head(ctx: &Ctx, src: &ObjectRef) -> Result<UpResponse, Error> {
    let resp = ctx
        .objects()
        .head(src, source_conditions(&ctx.headers))
        .await?;
    match resp.status() {
        s if s.is_success() => Ok(resp),
        StatusCode::NOT_FOUND => Err(Error::no_such_key()),
        StatusCode::PRECONDITION_FAILED | StatusCode::NOT_MODIFIED => {
            Err(Error::precondition_failed())
        }
        StatusCode::FORBIDDEN => Err(Error::access_denied("Access Denied")),
        s => Err(Error::Internal(format!(
            "reading the copy source failed with {s}"
        ))),
    }
}

/// A plaintext stream of `[start, end)` (default: all) of the source, decrypted if it is
/// a sealgate object, and its length.
pub async fn plaintext(
    ctx: &Ctx,
    src: &ObjectRef,
    source_head: &HeaderMap,
    range: Option<(u64, u64)>,
) -> Result<(ByteStream, u64), Error> {
    let etag = source_head.get(http::header::ETAG);
    match ObjectMeta::read(source_head)? {
        Some(meta) => {
            let dek = ctx.objects().open_object(ctx.caller(), &meta, src).await?;
            let (start, end) = range.unwrap_or((0, meta.size));
            let stream = ctx
                .objects()
                .read_range(src, &meta, dek, etag, start, end)
                .await?;
            Ok((stream, end.saturating_sub(start)))
        }
        None => {
            if !ctx.state.encryption.allow_plaintext_reads {
                return Err(Error::client(
                    s3s::S3ErrorCode::InvalidObjectState,
                    "The copy source was not encrypted by sealgate, and reading unencrypted objects is disabled.",
                ));
            }
            let total = forward::content_length(source_head).unwrap_or(0);
            let (start, end) = range.unwrap_or((0, total));
            if end <= start {
                return Ok((futures::stream::empty().boxed(), 0));
            }
            let mut h = HeaderMap::new();
            if let Some(e) = etag {
                h.insert(http::header::IF_MATCH, e.clone());
            }
            forward::set_header(&mut h, "range", &format!("bytes={}-{}", start, end - 1));
            let resp = ctx.objects().get(src, h).await?;
            if !resp.status().is_success() {
                return Err(Error::Internal(format!(
                    "reading the copy source failed with {}",
                    resp.status()
                )));
            }
            Ok((ctx.objects().store_body(resp), end - start))
        }
    }
}

/// The answer to a copy whose bytes streamed through sealgate (a PUT to the store):
/// `<CopyObjectResult>` or `<CopyPartResult>` with the store's ETag, plus SSE headers.
pub fn copy_result(element: &str, put: &UpResponse, env: Option<&Envelope>) -> S3Response<Body> {
    let etag = put
        .headers()
        .get(http::header::ETAG)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .unwrap_or_default();
    let mut out = S3Response::new(Body::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{element} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ETag>{}</ETag><LastModified>{}</LastModified></{element}>",
        quick_xml::escape::escape(etag),
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    )));
    out.status = Some(StatusCode::OK);
    forward::set_header(&mut out.headers, "content-type", "application/xml");
    if let Some(e) = env {
        sse::response_headers(&mut out.headers, e);
    }
    out
}
