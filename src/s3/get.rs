//! GetObject: decrypts sealgate objects on the way out, fetching only the ciphertext that
//! covers the requested range; other objects are served as they are (unless configured
//! otherwise).
//!
//! Invariants: Content-Length/Content-Range are in plaintext terms; only authenticated
//! bytes are sent, and an authentication failure mid-stream aborts the response (the body
//! stream errors, so hyper never ends it cleanly); a ranged read is pinned to the object
//! version its metadata came from (`If-Match` on the store's ETag).

use futures::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::objmeta::{self, ObjectMeta};
use super::{Ctx, forward, keys, put};
use crate::crypto::format::{self, HEADER_LEN, PartHeader};
use crate::crypto::stream::Decryptor;
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest};

/// A plaintext byte range `[start, end)` the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub start: u64,
    pub end: u64,
    /// Whether the answer is partial (206 with Content-Range).
    pub partial: bool,
}

/// Parses a `Range` header against an object of `size` bytes. `Ok(None)`: no (usable)
/// range, serve everything; `Err`: unsatisfiable (416).
/// Marker for an unsatisfiable range (416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

pub fn parse_range(h: Option<&str>, size: u64) -> Result<Option<Want>, Unsatisfiable> {
    let Some(spec) = h.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: S3 serves the whole object
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => {
            let Ok(n) = b.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(n), size)
        }
        (false, _) => {
            let Ok(s) = a.parse::<u64>() else {
                return Ok(None);
            };
            let e = if b.is_empty() {
                size
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= s => (e + 1).min(size),
                    _ => return Ok(None),
                }
            };
            (s, e)
        }
    };
    if start >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some(Want {
        start,
        end,
        partial: true,
    }))
}

fn invalid_range(size: u64) -> Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::InvalidRange,
        "The requested range is not satisfiable",
    );
    e.set_status_code(StatusCode::RANGE_NOT_SATISFIABLE);
    let mut h = HeaderMap::new();
    forward::set_header(&mut h, "content-range", &format!("bytes */{size}"));
    e.set_headers(h);
    Error::Client(e)
}

/// The part of an encrypted object a `partNumber` request names.
fn want_part(meta: &ObjectMeta, n: &str) -> Result<Want, Error> {
    let n: u32 = n.parse().map_err(|_| {
        Error::Client(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive",
        ))
    })?;
    let idx = if meta.layout.headers_in_body {
        meta.layout.parts.iter().position(|(pn, _)| *pn == n)
    } else {
        (n == 1).then_some(0)
    };
    let Some(i) = idx else {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(StatusCode::RANGE_NOT_SATISFIABLE);
        return Err(Error::Client(e));
    };
    let start = meta.layout.part_plain_start(i);
    Ok(Want {
        start,
        end: start + meta.layout.parts[i].1,
        partial: true,
    })
}

/// Decides what plaintext the request wants from an encrypted object.
pub fn want_for(ctx: &Ctx, meta: &ObjectMeta) -> Result<Want, Error> {
    if let Some(n) = ctx.query_value("partNumber") {
        return want_part(meta, n);
    }
    let range = ctx
        .headers
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    match parse_range(range, meta.size) {
        Ok(Some(w)) => Ok(w),
        Ok(None) => Ok(Want {
            start: 0,
            end: meta.size,
            partial: false,
        }),
        Err(Unsatisfiable) => Err(invalid_range(meta.size)),
    }
}

/// Query to send the store for metadata reads: without `partNumber`, whose numbering is
/// sealgate's for encrypted objects.
fn query_without_part(ctx: &Ctx) -> Vec<(String, String)> {
    ctx.forward_query()
        .into_iter()
        .filter(|(k, _)| k != "partNumber")
        .collect()
}

fn plaintext_allowed(ctx: &Ctx) -> Result<(), Error> {
    if ctx.state.encryption.allow_plaintext_reads {
        return Ok(());
    }
    let mut e = S3Error::with_message(
        S3ErrorCode::InvalidObjectState,
        "This object was not encrypted by sealgate, and reading unencrypted objects is disabled (encryption.allow_plaintext_reads = false).",
    );
    e.set_status_code(StatusCode::FORBIDDEN);
    Err(Error::Client(e))
}

/// Client response headers for an encrypted object, from the store's headers.
pub fn client_headers(store: &HeaderMap, meta: &ObjectMeta, want: &Want) -> HeaderMap {
    let mut drop = put::response_drop_list();
    drop.extend(["content-length", "content-range", "x-amz-mp-parts-count"]);
    let mut h = forward::response_headers(store, &drop);
    objmeta::strip(&mut h);
    put::sse_response_headers(&mut h, meta);
    forward::set_header(
        &mut h,
        "content-length",
        &(want.end - want.start).to_string(),
    );
    if want.partial {
        forward::set_header(
            &mut h,
            "content-range",
            &format!(
                "bytes {}-{}/{}",
                want.start,
                want.end.saturating_sub(1),
                meta.size
            ),
        );
    }
    h
}

pub async fn get_object(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let ranged =
        ctx.headers.contains_key(http::header::RANGE) || ctx.query_value("partNumber").is_some();
    if !ranged {
        // One round trip: the whole object, metadata in its headers.
        let headers = forward::request_headers(&ctx.headers, &[]);
        let resp = ctx
            .state
            .upstream
            .send(forward::up_request(&ctx, headers, UpBody::Empty))
            .await?;
        if !resp.status().is_success() {
            let mut out = forward::to_client(resp, false, &[]);
            objmeta::strip(&mut out.headers);
            return Ok(out);
        }
        let Some(meta) = ObjectMeta::read(resp.headers())? else {
            plaintext_allowed(&ctx)?;
            return Ok(forward::to_client(resp, false, &[]));
        };
        check_cipher_len(resp.content_length(), &meta)?;
        let want = Want {
            start: 0,
            end: meta.size,
            partial: false,
        };
        let (bucket, key) = ctx.object()?;
        let dek = keys::open_data_key(&ctx, &meta, &bucket, &key).await?;
        let headers = client_headers(resp.headers(), &meta, &want);
        let plan = format::plan(&meta.layout, 0, meta.size);
        let body = match plan {
            None => Body::empty(),
            Some(plan) => {
                let stream = forward::store_body(&ctx, resp);
                let first = meta.single_header();
                decrypting_body(Decryptor::new(
                    stream,
                    dek,
                    meta.layout.clone(),
                    &plan,
                    first,
                ))
            }
        };
        let mut out = S3Response::new(body);
        out.status = Some(StatusCode::OK);
        out.headers = headers;
        return Ok(out);
    }

    if let Some(out) = optimistic_range(&ctx).await? {
        return Ok(out);
    }

    // Ranged: metadata first (honouring the client's conditions), then only the covering
    // ciphertext, pinned to that version.
    let head_headers = forward::request_headers(&ctx.headers, &["range"]);
    let head = ctx
        .state
        .upstream
        .send(UpRequest {
            method: Method::HEAD,
            bucket: ctx.bucket.clone(),
            key: ctx.key.clone(),
            query: query_without_part(&ctx),
            headers: head_headers,
            body: UpBody::Empty,
        })
        .await?;
    let meta = if head.status().is_success() {
        ObjectMeta::read(head.headers())?
    } else {
        None
    };
    let Some(meta) = meta else {
        // Not ours, or an error: let the store answer the original request (with its body).
        if head.status().is_success() {
            plaintext_allowed(&ctx)?;
        }
        let headers = forward::request_headers(&ctx.headers, &[]);
        let resp = ctx
            .state
            .upstream
            .send(forward::up_request(&ctx, headers, UpBody::Empty))
            .await?;
        let mut out = forward::to_client(resp, false, &[]);
        objmeta::strip(&mut out.headers);
        return Ok(out);
    };
    let etag = head.headers().get(http::header::ETAG).cloned();
    check_cipher_len(head.content_length(), &meta)?;
    let want = want_for(&ctx, &meta)?;
    let (bucket, key) = ctx.object()?;
    let dek = keys::open_data_key(&ctx, &meta, &bucket, &key).await?;
    let mut headers = client_headers(head.headers(), &meta, &want);
    if ctx.query_value("partNumber").is_some() {
        forward::set_header(
            &mut headers,
            "x-amz-mp-parts-count",
            &meta.layout.parts.len().to_string(),
        );
    }
    let Some(plan) = format::plan(&meta.layout, want.start, want.end) else {
        let mut out = S3Response::new(Body::empty());
        out.status = Some(if want.partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        });
        out.headers = headers;
        return Ok(out);
    };
    let stored = Stored {
        bucket,
        key,
        query: query_without_part(&ctx),
    };
    let (first, fetch_start) = first_header(&ctx, &stored, &meta, &plan, etag.as_ref()).await?;
    let resp = range_request(&ctx, &stored, etag.as_ref(), fetch_start, plan.cipher_end).await?;
    let stream = forward::store_body(&ctx, resp);
    let body = decrypting_body(Decryptor::new(
        stream,
        dek,
        meta.layout.clone(),
        &plan,
        first,
    ));
    let mut out = S3Response::new(body);
    out.status = Some(if want.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    });
    out.headers = headers;
    Ok(out)
}

/// `bytes=a-b` or `bytes=a-` (not suffix ranges, which need the size first).
fn prefix_range(ctx: &Ctx) -> Option<(u64, Option<u64>)> {
    let spec = ctx
        .headers
        .get(http::header::RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b = match b.trim() {
        "" => None,
        b => Some(b.parse::<u64>().ok().filter(|b| *b >= a)?),
    };
    Some((a, b))
}

/// One round trip for the common case: a ranged GET of a single-part sealgate object.
/// The covering ciphertext range does not depend on metadata for single-part objects, so
/// sealgate asks for it directly and checks the metadata that comes with it. `Ok(None)`:
/// not that case (multipart, plaintext, suffix range, ...) — use the general path.
async fn optimistic_range(ctx: &Ctx) -> Result<Option<S3Response<Body>>, Error> {
    use crate::crypto::format::{SEALED_SEGMENT, SEGMENT};
    if ctx.query_value("partNumber").is_some() {
        return Ok(None);
    }
    let Some((a, b)) = prefix_range(ctx) else {
        return Ok(None);
    };
    let cs = (a / SEGMENT) * SEALED_SEGMENT;
    let range = match b {
        Some(b) => format!("bytes={}-{}", cs, (b / SEGMENT + 1) * SEALED_SEGMENT - 1),
        None => format!("bytes={cs}-"),
    };
    let mut headers = forward::request_headers(&ctx.headers, &["range"]);
    forward::set_header(&mut headers, "range", &range);
    let req = UpRequest {
        method: Method::GET,
        bucket: ctx.bucket.clone(),
        key: ctx.key.clone(),
        query: query_without_part(ctx),
        headers,
        body: UpBody::Empty,
    };
    let resp = ctx.state.upstream.send(req).await?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PRECONDITION_FAILED
        || status == StatusCode::NOT_FOUND
        || status == StatusCode::FORBIDDEN
    {
        // The store's answer to the client's conditions (or absence) stands as it is.
        let mut out = forward::to_client(resp, false, &[]);
        objmeta::strip(&mut out.headers);
        return Ok(Some(out));
    }
    if status != StatusCode::PARTIAL_CONTENT {
        return Ok(None);
    }
    let meta = match ObjectMeta::read(resp.headers())? {
        Some(m) if !m.layout.headers_in_body => m,
        _ => return Ok(None),
    };
    // `bytes X-Y/TOTAL`: the stored length, and how far the answer reaches.
    let cr = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (span, total) = cr
        .strip_prefix("bytes ")
        .and_then(|s| s.split_once('/'))
        .unwrap_or(("", ""));
    let (first, last) = span.split_once('-').unwrap_or(("", ""));
    let (Ok(first), Ok(last), Ok(total)) = (
        first.parse::<u64>(),
        last.parse::<u64>(),
        total.parse::<u64>(),
    ) else {
        return Ok(None);
    };
    check_cipher_len(Some(total), &meta)?;
    let want = match parse_range(
        ctx.headers
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok()),
        meta.size,
    ) {
        Ok(Some(w)) => w,
        Ok(None) => return Ok(None),
        Err(Unsatisfiable) => return Err(invalid_range(meta.size)),
    };
    let Some(plan) = format::plan(&meta.layout, want.start, want.end) else {
        return Ok(None);
    };
    if plan.cipher_start != first || last + 1 < plan.cipher_end {
        return Ok(None);
    }
    let (bucket, key) = ctx.object()?;
    let dek = keys::open_data_key(ctx, &meta, &bucket, &key).await?;
    let headers = client_headers(resp.headers(), &meta, &want);
    let first_header = meta.single_header();
    let stream = forward::store_body(ctx, resp);
    let body = decrypting_body(Decryptor::new(
        stream,
        dek,
        meta.layout.clone(),
        &plan,
        first_header,
    ));
    let mut out = S3Response::new(body);
    out.status = Some(StatusCode::PARTIAL_CONTENT);
    out.headers = headers;
    Ok(Some(out))
}

/// The stored length must be exactly what the metadata implies: bytes appended or cut
/// off whole parts show here before anything is decrypted.
pub fn check_cipher_len(stored: Option<u64>, meta: &ObjectMeta) -> Result<(), Error> {
    let want = meta.layout.cipher_len();
    match stored {
        Some(n) if n == want => Ok(()),
        Some(n) => Err(Error::Client(objmeta::corrupt(format!(
            "it holds {n} bytes where {want} were written"
        )))),
        None => Err(Error::Client(objmeta::corrupt(
            "the store did not say how long it is",
        ))),
    }
}

/// A stored object as the store addresses it (for ciphertext reads).
pub struct Stored {
    pub bucket: String,
    pub key: String,
    /// `versionId`, if any (never sealgate's `partNumber`).
    pub query: Vec<(String, String)>,
}

/// A ciphertext range request to the store, pinned to `etag`.
pub async fn range_request(
    ctx: &Ctx,
    obj: &Stored,
    etag: Option<&http::HeaderValue>,
    start: u64,
    end: u64,
) -> Result<crate::upstream::UpResponse, Error> {
    let mut h = HeaderMap::new();
    forward::set_header(&mut h, "range", &format!("bytes={}-{}", start, end - 1));
    if let Some(e) = etag {
        h.insert(http::header::IF_MATCH, e.clone());
    }
    let resp = ctx
        .state
        .upstream
        .send(UpRequest {
            method: Method::GET,
            bucket: Some(obj.bucket.clone()),
            key: Some(obj.key.clone()),
            query: obj.query.clone(),
            headers: h,
            body: UpBody::Empty,
        })
        .await?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => Ok(resp),
        StatusCode::OK if start == 0 && resp.content_length() == Some(end) => Ok(resp),
        StatusCode::PRECONDITION_FAILED => {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("SlowDown".into()),
                "The object changed while it was being read; retry.",
            );
            e.set_status_code(StatusCode::SERVICE_UNAVAILABLE);
            Err(Error::Client(e))
        }
        s => Err(Error::Client(objmeta::corrupt(format!(
            "the store answered a ciphertext range read with {s}"
        )))),
    }
}

/// Where the ciphertext of `plan` starts and the header of its first part: from metadata
/// for a single-part object; for a multipart part, read inline when the range starts at
/// the part's first segment, else fetched on its own (and checked against the part list).
pub async fn first_header(
    ctx: &Ctx,
    obj: &Stored,
    meta: &ObjectMeta,
    plan: &format::ReadPlan,
    etag: Option<&http::HeaderValue>,
) -> Result<(Option<PartHeader>, u64), Error> {
    if !meta.layout.headers_in_body {
        return Ok((meta.single_header(), plan.cipher_start));
    }
    if plan.first_segment == 0 {
        return Ok((None, plan.cipher_start - HEADER_LEN));
    }
    let at = meta.layout.part_cipher_start(plan.first_part);
    let raw = range_request(ctx, obj, etag, at, at + HEADER_LEN)
        .await?
        .bytes()
        .await
        .map_err(|e| Error::Upstream(crate::upstream::UpstreamError::Transport(e.to_string())))?;
    if raw.len() as u64 != HEADER_LEN {
        return Err(Error::Client(objmeta::corrupt(
            "a part header is truncated",
        )));
    }
    let h = PartHeader::decode(&raw).map_err(|e| Error::Client(objmeta::corrupt(e)))?;
    Decryptor::check_header(&meta.layout, plan.first_part, &h)
        .map_err(|e| Error::Client(objmeta::corrupt(e)))?;
    Ok((Some(h), plan.cipher_start))
}

/// The response body of a decryption: an error aborts the connection (logged once).
pub fn decrypting_body(d: Decryptor) -> Body {
    let stream = d.map(|r| {
        r.map(http_body::Frame::data).map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
            tracing::error!(error = %e, "aborting response: stored object failed authentication or the store failed mid-stream");
            Box::new(e)
        })
    });
    Body::http_body_unsync(http_body_util::StreamBody::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse_like_s3() {
        let w = |s, e| {
            Ok(Some(Want {
                start: s,
                end: e,
                partial: true,
            }))
        };
        assert_eq!(parse_range(Some("bytes=0-0"), 10), w(0, 1));
        assert_eq!(parse_range(Some("bytes=5-"), 10), w(5, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), w(7, 10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), w(0, 10));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), w(8, 10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(None, 10), Ok(None));
    }
}
