//! CopyObject (and the source side of UploadPartCopy).
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

use futures::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use percent_encoding::percent_decode_str;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::objmeta::{self, ObjectMeta};
use super::sse;
use super::{Ctx, forward, get, keys, put};
use crate::crypto::format;
use crate::crypto::stream::Decryptor;
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest};

/// A parsed `x-amz-copy-source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

fn bad_source() -> Error {
    Error::Client(S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
    ))
}

/// Parses `x-amz-copy-source` (`[/]bucket/key[?versionId=...]`, URL-encoded).
pub fn parse_source(h: &HeaderMap) -> Result<Source, Error> {
    let raw = h
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad_source)?;
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let path = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| bad_source())?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let (bucket, key) = path.split_once('/').ok_or_else(bad_source)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(bad_source());
    }
    let version_id = super::target::parse_query(query)
        .map_err(|_| bad_source())?
        .into_iter()
        .find(|(k, _)| k == "versionId")
        .map(|(_, v)| v);
    Ok(Source {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id,
    })
}

impl Source {
    /// The header value to send the store.
    pub fn header_value(&self) -> String {
        let mut s = format!(
            "/{}/{}",
            super::super::upstream::sign::uri_encode(&self.bucket, false),
            super::super::upstream::sign::uri_encode(&self.key, true)
        );
        if let Some(v) = &self.version_id {
            s.push_str("?versionId=");
            s.push_str(&super::super::upstream::sign::uri_encode(v, false));
        }
        s
    }

    fn query(&self) -> Vec<(String, String)> {
        self.version_id
            .iter()
            .map(|v| ("versionId".to_string(), v.clone()))
            .collect()
    }
}

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
pub async fn head_source(ctx: &Ctx, src: &Source) -> Result<crate::upstream::UpResponse, Error> {
    let resp = ctx
        .state
        .upstream
        .send(UpRequest {
            method: Method::HEAD,
            bucket: Some(src.bucket.clone()),
            key: Some(src.key.clone()),
            query: src.query(),
            headers: source_conditions(&ctx.headers),
            body: UpBody::Empty,
        })
        .await?;
    match resp.status() {
        s if s.is_success() => Ok(resp),
        StatusCode::NOT_FOUND => Err(Error::Client(S3Error::with_message(
            S3ErrorCode::NoSuchKey,
            "The specified key does not exist.",
        ))),
        StatusCode::PRECONDITION_FAILED | StatusCode::NOT_MODIFIED => {
            Err(Error::Client(S3Error::with_message(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )))
        }
        StatusCode::FORBIDDEN => Err(Error::Client(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Access Denied",
        ))),
        s => Err(Error::Client(S3Error::with_message(
            S3ErrorCode::InternalError,
            format!("reading the copy source failed with {s}"),
        ))),
    }
}

/// Headers describing the object (content type, cache control, user metadata, ...).
const DESCRIPTIVE: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
];

/// The headers that describe an object (content type, caching, client metadata): what a
/// copy with `MetadataDirective: REPLACE` must resend to keep them.
pub fn descriptive_headers(from: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in from {
        let n = k.as_str();
        if DESCRIPTIVE.contains(&n)
            || (n.starts_with("x-amz-meta-") && !n.starts_with(objmeta::PREFIX))
        {
            h.append(k.clone(), v.clone());
        }
    }
    h
}

/// A plaintext stream of `[start, end)` of an object (decrypted if it is a sealgate object).
pub async fn plaintext_source(
    ctx: &Ctx,
    src: &Source,
    source_head: &HeaderMap,
    range: Option<(u64, u64)>,
) -> Result<
    (
        futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>,
        u64,
    ),
    Error,
> {
    let etag = source_head.get(http::header::ETAG).cloned();
    let mut h = HeaderMap::new();
    if let Some(e) = &etag {
        h.insert(http::header::IF_MATCH, e.clone());
    }
    match ObjectMeta::read(source_head)? {
        Some(meta) => {
            let dek = keys::open_data_key(ctx, &meta, &src.bucket, &src.key).await?;
            let (start, end) = range.unwrap_or((0, meta.size));
            let Some(plan) = format::plan(&meta.layout, start, end) else {
                return Ok((futures::stream::empty().boxed(), 0));
            };
            let stored = get::Stored {
                bucket: src.bucket.clone(),
                key: src.key.clone(),
                query: src.query(),
            };
            let (first, fetch_start) =
                get::first_header(ctx, &stored, &meta, &plan, etag.as_ref()).await?;
            let resp =
                get::range_request(ctx, &stored, etag.as_ref(), fetch_start, plan.cipher_end)
                    .await?;
            let stream = forward::store_body(ctx, resp);
            Ok((
                Decryptor::new(stream, dek, meta.layout.clone(), &plan, first).boxed(),
                plan.len,
            ))
        }
        None => {
            if !ctx.state.encryption.allow_plaintext_reads {
                return Err(Error::Client(S3Error::with_message(
                    S3ErrorCode::InvalidObjectState,
                    "The copy source was not encrypted by sealgate, and reading unencrypted objects is disabled.",
                )));
            }
            let total: u64 = source_head
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (start, end) = range.unwrap_or((0, total));
            if end <= start {
                return Ok((futures::stream::empty().boxed(), 0));
            }
            forward::set_header(&mut h, "range", &format!("bytes={}-{}", start, end - 1));
            let resp = ctx
                .state
                .upstream
                .send(UpRequest {
                    method: Method::GET,
                    bucket: Some(src.bucket.clone()),
                    key: Some(src.key.clone()),
                    query: src.query(),
                    headers: h,
                    body: UpBody::Empty,
                })
                .await?;
            if !resp.status().is_success() {
                return Err(Error::Client(S3Error::with_message(
                    S3ErrorCode::InternalError,
                    format!("reading the copy source failed with {}", resp.status()),
                )));
            }
            Ok((forward::store_body(ctx, resp), end - start))
        }
    }
}

pub async fn copy(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    if ctx.op == super::classify::Op::UploadPartCopy {
        return super::multipart::upload_part_copy(ctx).await;
    }
    copy_object(ctx).await
}

async fn copy_object(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    objmeta::reject_reserved(&ctx.headers)?;
    let requested = sse::parse(&ctx.headers)?;
    let src = parse_source(&ctx.headers)?;
    let (bucket, key) = ctx.object()?;
    let head = head_source(&ctx, &src).await?;
    let src_meta = ObjectMeta::read(head.headers())?;
    let replace = ctx
        .headers
        .get("x-amz-metadata-directive")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"REPLACE"));
    if !replace
        && src.bucket == bucket
        && src.key == key
        && src.version_id.is_none()
        && requested.is_none()
    {
        return Err(Error::Client(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        )));
    }
    let dest_sse = super::bucket_encryption::effective(&ctx, requested).await?;
    // What the destination describes itself as: the source's (COPY) or the request's (REPLACE).
    let mut headers = if replace {
        descriptive_headers(&ctx.headers)
    } else {
        descriptive_headers(head.headers())
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
            let dek = keys::open_data_key(&ctx, &meta, &src.bucket, &src.key).await?;
            let (blob, arn, ctx_b64, backend) =
                keys::rewrap(&ctx, &dek, &sse, &bucket, &key).await?;
            // The body keeps its DEK, so the copy is a per-object wrap (format v1).
            let new_meta = ObjectMeta {
                key_arn: arn,
                wrapped_dek: blob,
                backend,
                bk_salt: None,
                context_b64: ctx_b64,
                alg: sse.alg,
                bucket_key: sse.bucket_key,
                ..meta
            };
            new_meta.write(&mut headers);
            forward::set_header(&mut headers, "x-amz-metadata-directive", "REPLACE");
            forward::set_header(&mut headers, "x-amz-copy-source", &src.header_value());
            if let Some(e) = head.headers().get(http::header::ETAG) {
                headers.insert("x-amz-copy-source-if-match", e.clone());
            }
            let resp = ctx
                .state
                .upstream
                .send(forward::up_request(&ctx, headers, UpBody::Empty))
                .await?;
            let ok = resp.status().is_success();
            let mut out = forward::to_client(resp, false, &put::response_drop_list());
            if ok {
                put::sse_response_headers(&mut out.headers, &new_meta);
            }
            Ok(out)
        }
        (None, None) => {
            // Plaintext to plaintext (encryption configured off): the store copies.
            let mut h = forward::request_headers(&ctx.headers, &put::write_drop_list());
            forward::set_header(&mut h, "x-amz-copy-source", &src.header_value());
            let resp = ctx
                .state
                .upstream
                .send(forward::up_request(&ctx, h, UpBody::Empty))
                .await?;
            Ok(forward::to_client(resp, false, &[]))
        }
        (src_meta, dest) => {
            // The bytes must change form: stream them through sealgate.
            let (plain, len) = plaintext_source(&ctx, &src, head.headers(), None).await?;
            let _ = src_meta;
            let (body, meta) = match dest {
                Some(sse) => {
                    let nk = keys::new_data_key(&ctx, &sse, &bucket, &key).await?;
                    let (meta, encrypt) = put::seal_single_part(nk, &sse, len, &mut headers);
                    let (stream, len) = encrypt(plain);
                    (UpBody::Stream { stream, len }, Some(meta))
                }
                None => (UpBody::Stream { stream: plain, len }, None),
            };
            ctx.method = Method::PUT;
            let resp = ctx
                .state
                .upstream
                .send(forward::up_request(&ctx, headers, body))
                .await?;
            if !resp.status().is_success() {
                return Ok(forward::to_client(resp, false, &[]));
            }
            Ok(copy_result("CopyObjectResult", &resp, meta.as_ref()))
        }
    }
}

/// The answer to a copy whose bytes streamed through sealgate (a PUT to the store):
/// `<CopyObjectResult>` or `<CopyPartResult>` with the store's ETag, plus SSE headers.
pub fn copy_result(
    element: &str,
    put: &crate::upstream::UpResponse,
    meta: Option<&ObjectMeta>,
) -> S3Response<Body> {
    let etag = put
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
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
    if let Some(m) = meta {
        put::sse_response_headers(&mut out.headers, m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-amz-copy-source", v.parse().unwrap());
        m
    }

    #[test]
    fn copy_sources_parse_with_and_without_slash_and_version() {
        let s = parse_source(&h("/b/dir/a%20b.txt?versionId=v1")).unwrap();
        assert_eq!(
            s,
            Source {
                bucket: "b".into(),
                key: "dir/a b.txt".into(),
                version_id: Some("v1".into())
            }
        );
        assert_eq!(s.header_value(), "/b/dir/a%20b.txt?versionId=v1");
        let s = parse_source(&h("b/k")).unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.key.as_str(), s.version_id),
            ("b", "k", None)
        );
        assert!(parse_source(&h("just-a-bucket")).is_err());
        assert!(parse_source(&HeaderMap::new()).is_err());
    }
}
