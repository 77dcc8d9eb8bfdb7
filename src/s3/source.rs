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

use super::{Ctx, conditions, forward, sse};
use crate::crypto::stream::Dek;
use crate::error::Error;
use crate::object::checksum::{Algo, Served};
use crate::object::{ByteStream, CustomerKey, Envelope, ObjectMeta, ObjectRef};
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

/// A copy source as sealgate sees it: the store's HEAD, and for a sealgate object its
/// verified metadata, DEK and client-visible ETag.
pub struct Source {
    pub obj: ObjectRef,
    pub head: UpResponse,
    pub sealed: Option<(ObjectMeta, Dek)>,
    /// The ETag clients see (the store's for a plaintext object).
    pub etag: String,
}

impl Source {
    /// Plaintext size.
    pub fn size(&self) -> u64 {
        match &self.sealed {
            Some((m, _)) => m.size,
            None => self.head.content_length().unwrap_or(0),
        }
    }
}

/// HEADs and opens the copy source, and checks the client's copy-source conditions
/// against the ETag clients see. A failed condition is the 412 S3 gives for copies.
pub async fn open(ctx: &Ctx, src: &ObjectRef) -> Result<Source, Error> {
    let head = ctx.objects().head(src, HeaderMap::new()).await?;
    match head.status() {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND => return Err(Error::no_such_key()),
        StatusCode::FORBIDDEN => return Err(Error::access_denied("Access Denied")),
        s => {
            return Err(Error::Internal(format!(
                "reading the copy source failed with {s}"
            )));
        }
    }
    let ck = ctx.req.copy_source_ssec.as_ref();
    let sealed = match ObjectMeta::read(head.headers())? {
        Some(meta) => Some(
            ctx.objects()
                .open(ctx.caller(), meta, ck, src, head.content_length())
                .await?,
        ),
        None => None,
    };
    if sealed.is_none() {
        super::plaintext::allowed_at(ctx, &src.bucket, &src.key).await?;
        if ck.is_some() {
            return Err(crate::object::envelope::customer_key_not_applicable());
        }
    }
    let etag = match &sealed {
        Some((meta, dek)) => {
            ctx.objects()
                .client_etag(src, meta, dek, head.headers())
                .await?
        }
        None => super::plaintext::store_etag(head.headers()),
    };
    let verdict = conditions::evaluate(
        &source_conditions(&ctx.headers),
        &etag,
        conditions::last_modified(head.headers()),
    );
    if verdict != conditions::Verdict::Proceed {
        return Err(Error::precondition_failed());
    }
    Ok(Source {
        obj: src.clone(),
        head,
        sealed,
        etag,
    })
}

/// A plaintext stream of `[start, end)` (default: all) of the source, decrypted if it is
/// a sealgate object, and its length. Reads are pinned to the version `open` saw.
pub async fn plaintext(
    ctx: &Ctx,
    src: &Source,
    range: Option<(u64, u64)>,
) -> Result<(ByteStream, u64), Error> {
    let pin = src.head.headers().get(http::header::ETAG);
    match &src.sealed {
        Some((meta, dek)) => {
            let (start, end) = range.unwrap_or((0, meta.size));
            let stream = ctx
                .objects()
                .read_range(&src.obj, meta, dek.clone(), pin, start, end)
                .await?;
            Ok((stream, end.saturating_sub(start)))
        }
        None => {
            let total = src.size();
            let (start, end) = range.unwrap_or((0, total));
            if end <= start {
                return Ok((futures::stream::empty().boxed(), 0));
            }
            let mut h = HeaderMap::new();
            if let Some(e) = pin {
                h.insert(http::header::IF_MATCH, e.clone());
            }
            forward::set_header(&mut h, "range", &format!("bytes={}-{}", start, end - 1));
            let resp = ctx.objects().get(&src.obj, h).await?;
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

/// The checksum algorithm a copy names (`x-amz-checksum-algorithm`), checked.
pub fn requested_algo(h: &HeaderMap) -> Result<Option<Algo>, Error> {
    let Some(v) = h.get("x-amz-checksum-algorithm") else {
        return Ok(None);
    };
    let name = v.to_str().unwrap_or("").trim();
    Algo::parse(name).map(Some).ok_or_else(|| {
        Error::invalid_request(format!(
            "Checksum algorithm provided is unsupported: {name}. Use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256."
        ))
    })
}

/// The answer to a copy whose bytes streamed through sealgate (a PUT to the store):
/// `<CopyObjectResult>` or `<CopyPartResult>` with `etag` (default: the store's), plus
/// SSE headers (`ck`: the destination's customer key).
pub fn copy_result(
    element: &str,
    source: &Source,
    put: &UpResponse,
    env: Option<&Envelope>,
    ck: Option<&CustomerKey>,
    etag: Option<&str>,
    checksum: Option<&Served>,
) -> S3Response<Body> {
    let store_etag = put
        .headers()
        .get(http::header::ETAG)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .unwrap_or_default();
    let etag = etag.unwrap_or(store_etag);
    let mut out = S3Response::new(Body::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{element} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ETag>{}</ETag><LastModified>{}</LastModified>{}</{element}>",
        quick_xml::escape::escape(etag),
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        checksum.map(Served::xml).unwrap_or_default()
    )));
    out.status = Some(StatusCode::OK);
    forward::set_header(&mut out.headers, "content-type", "application/xml");
    if let Some(e) = env {
        sse::response_headers(&mut out.headers, e, ck);
    }
    // As AWS: the version read from, and (CopyObject) the version written.
    if let Some(v) = source.head.headers().get("x-amz-version-id") {
        out.headers
            .insert("x-amz-copy-source-version-id", v.clone());
    }
    if element == "CopyObjectResult"
        && let Some(v) = put.headers().get("x-amz-version-id")
    {
        out.headers.insert("x-amz-version-id", v.clone());
    }
    out
}
