//! What a GET or HEAD of an encrypted object answers, in plaintext terms: the byte range
//! the request wants (Range header or partNumber) and the response headers (sizes,
//! Content-Range, SSE headers; the store's checksums and sealgate's metadata removed).
//! Shared by the GET and HEAD handlers.

use http::{HeaderMap, StatusCode};
use s3s::Body;

use super::request::Request;
use super::{forward, sse};
use crate::error::Error;
use crate::object::{ByteStream, ObjectMeta, meta};

/// Refuses the request's object when sealgate did not encrypt it, unless plaintext reads
/// are allowed where it is: `encryption.plaintext_reads`, or a bucket whose writes are not
/// encrypted (encryption `none` there), whose objects are meant to be plaintext. A
/// customer key for such an object is AWS's 400 (it is not SSE-C).
pub async fn allowed(ctx: &super::Ctx) -> Result<(), Error> {
    let (b, k) = (
        ctx.req.bucket.as_deref().unwrap_or_default(),
        ctx.req.key.as_deref().unwrap_or_default(),
    );
    allowed_at(ctx, b, k).await?;
    if ctx.req.ssec.is_some() {
        return Err(crate::object::envelope::customer_key_not_applicable());
    }
    Ok(())
}

/// The sealgate metadata a successful HEAD of the request's object carries. `None` when
/// the HEAD failed (the caller lets the store answer), or when the object is not
/// sealgate's and plaintext reads are [`allowed`] there; refused when they are not.
pub async fn sealed_meta(
    ctx: &super::Ctx,
    head: &crate::upstream::UpResponse,
) -> Result<Option<crate::object::ObjectMeta>, Error> {
    if !head.status().is_success() {
        return Ok(None);
    }
    let meta = crate::object::ObjectMeta::read(head.headers())?;
    if meta.is_none() {
        allowed(ctx).await?;
    }
    Ok(meta)
}

/// [`allowed`] for an object `bucket/key` (a copy source).
pub async fn allowed_at(ctx: &super::Ctx, bucket: &str, key: &str) -> Result<(), Error> {
    if ctx.state.encryption.plaintext_allowed(bucket, key)
        || super::rules::default_for(ctx, bucket).await?.is_none()
    {
        return Ok(());
    }
    Err(refused())
}

/// The error for an object sealgate did not encrypt where plaintext reads are not
/// allowed.
pub fn refused() -> Error {
    let mut e = s3s::S3Error::with_message(
        s3s::S3ErrorCode::InvalidObjectState,
        "This object was not encrypted by sealgate, and reading unencrypted objects is not allowed here (encryption.plaintext_reads).",
    );
    e.set_status_code(StatusCode::FORBIDDEN);
    Error::Client(e)
}

/// A plaintext byte range `[start, end)` the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub start: u64,
    pub end: u64,
    /// Whether the answer is partial (206 with Content-Range).
    pub partial: bool,
}

impl Want {
    pub fn whole(size: u64) -> Want {
        Want {
            start: 0,
            end: size,
            partial: false,
        }
    }

    pub fn status(&self) -> StatusCode {
        if self.partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        }
    }
}

/// The part of an encrypted object a `partNumber` request names.
fn want_part(meta: &ObjectMeta, n: u32) -> Result<Want, Error> {
    let idx = if meta.layout.headers_in_body {
        meta.layout.parts.iter().position(|(pn, _)| *pn == n)
    } else {
        (n == 1).then_some(0)
    };
    let Some(i) = idx else {
        return Err(Error::invalid_part_number_range());
    };
    let start = meta.layout.part_plain_start(i);
    Ok(Want {
        start,
        end: start + meta.layout.parts[i].1,
        partial: true,
    })
}

/// Decides what plaintext the request wants from an encrypted object.
pub fn want(req: &Request, meta: &ObjectMeta) -> Result<Want, Error> {
    if let Some(n) = req.part_number {
        return want_part(meta, n);
    }
    match req.range {
        None => Ok(Want::whole(meta.size)),
        Some(r) => match r.check(meta.size) {
            Ok(range) => Ok(Want {
                start: range.start,
                end: range.end,
                partial: true,
            }),
            Err(_) => Err(Error::invalid_range(meta.size)),
        },
    }
}

/// Client response headers for an encrypted object with client-visible `etag`, from the
/// store's headers.
pub fn headers(
    req: &Request,
    store: &HeaderMap,
    meta: &ObjectMeta,
    etag: &str,
    want: &Want,
) -> HeaderMap {
    let mut drop = forward::response_drop_list();
    drop.extend(["content-length", "content-range", "x-amz-mp-parts-count"]);
    let mut h = forward::response_headers(store, &drop);
    meta::strip(&mut h);
    crate::object::describe::restore(store, &mut h);
    sse::response_headers(&mut h, &meta.envelope, req.ssec.as_ref());
    forward::set_header(&mut h, "etag", etag);
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
    if req.part_number.is_some() {
        forward::set_header(
            &mut h,
            "x-amz-mp-parts-count",
            &meta.layout.parts.len().to_string(),
        );
    }
    h
}

/// With `x-amz-checksum-mode: ENABLED`, an answer carrying the whole object also carries
/// the checksum the client sent when it wrote it, and its type; one carrying a part of a
/// multipart object (`partNumber`), that part's checksum with the object's type. S3 gives
/// none for a range.
pub async fn add_checksum(
    ctx: &super::Ctx,
    obj: &crate::object::ObjectRef,
    meta: &ObjectMeta,
    dek: &crate::crypto::stream::Dek,
    store: &HeaderMap,
    want: &Want,
    h: &mut HeaderMap,
) -> Result<(), Error> {
    let enabled = ctx
        .headers
        .get("x-amz-checksum-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("ENABLED"));
    if !enabled || ctx.req.range.is_some() {
        return Ok(());
    }
    // A part of a multipart object: that part's checksum, with the object's type.
    if let (Some(n), Some(_)) = (ctx.req.part_number, meta.upload) {
        let parts = ctx.objects().part_checksums(meta, dek, Some(n)).await?;
        if let Some((_, s)) = parts.first() {
            s.write(h);
        }
        return Ok(());
    }
    if want.start != 0 || want.end != meta.size {
        return Ok(());
    }
    if let Some(s) = ctx.objects().client_checksum(obj, meta, dek, store).await? {
        s.write(h);
    }
    Ok(())
}

/// A successful read's answer with the headers its `response-*` parameters ask for
/// (applied after the stored headers were checked against the object's metadata). A
/// value that is not a valid header value was refused when the request was parsed.
pub fn with_overrides(
    mut out: s3s::S3Response<Body>,
    overrides: &[(&'static str, String)],
) -> s3s::S3Response<Body> {
    if !out.status.is_none_or(|s| s.is_success()) {
        return out;
    }
    for (name, value) in overrides {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            out.headers.insert(http::HeaderName::from_static(name), v);
        }
    }
    out
}

/// The answer to a read whose conditions say 304 (the object's headers, no body) or 412.
pub fn unmet(
    verdict: super::conditions::Verdict,
    headers: HeaderMap,
) -> Result<s3s::S3Response<Body>, Error> {
    if verdict == super::conditions::Verdict::PreconditionFailed {
        return Err(Error::precondition_failed());
    }
    let mut h = HeaderMap::new();
    for n in [
        "etag",
        "last-modified",
        "cache-control",
        "expires",
        "x-amz-version-id",
    ] {
        if let Some(v) = headers.get(n) {
            h.insert(http::HeaderName::from_static(n), v.clone());
        }
    }
    Ok(response(StatusCode::NOT_MODIFIED, h, None))
}

/// A response carrying decrypted plaintext: an error in the stream aborts the connection
/// (logged once), so a client never receives a cleanly ended response with bytes missing
/// or failing authentication.
pub fn response(
    status: StatusCode,
    headers: HeaderMap,
    body: Option<ByteStream>,
) -> s3s::S3Response<Body> {
    use futures::StreamExt;
    let body = match body {
        None => Body::empty(),
        Some(stream) => {
            let stream = stream.map(|r| {
                r.map(http_body::Frame::data).map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    tracing::error!(error = %e, "aborting response: stored object failed authentication or the store failed mid-stream");
                    Box::new(e)
                })
            });
            Body::http_body_unsync(http_body_util::StreamBody::new(stream))
        }
    };
    let mut out = s3s::S3Response::new(body);
    out.status = Some(status);
    out.headers = headers;
    out
}

/// Remembers a new version's plaintext size and client ETag (`None`: the store's) for
/// listings, by the store's ETag of the version.
pub fn remember(
    ctx: &super::Ctx,
    obj: &crate::object::ObjectRef,
    store_etag: &str,
    size: u64,
    etag: Option<String>,
) {
    remember_with(ctx, obj, store_etag, size, etag, None);
}

/// [`remember`], with the client checksum the new version keeps.
pub fn remember_with(
    ctx: &super::Ctx,
    obj: &crate::object::ObjectRef,
    store_etag: &str,
    size: u64,
    etag: Option<String>,
    checksum: Option<crate::object::checksum::Served>,
) {
    ctx.objects().known.put(
        &obj.bucket,
        &obj.key,
        store_etag,
        crate::object::known::Known {
            size,
            etag,
            checksum,
        },
    );
}

/// The store's ETag of a response.
pub fn store_etag(h: &HeaderMap) -> String {
    h.get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::stream::Dek;
    use crate::s3::request::Classified;

    fn meta(size: u64) -> ObjectMeta {
        ObjectMeta::single(
            crate::test_support::envelope(),
            &Dek::from_slice(&[1; 32]).unwrap(),
            size,
            [2; 16],
            crate::object::ETag::Store,
            Default::default(),
            None,
        )
    }

    fn want_for(range: Option<&str>, size: u64) -> Result<Want, u16> {
        let mut h = HeaderMap::new();
        h.insert("host", "h".parse().unwrap());
        if let Some(r) = range {
            h.insert("range", r.parse().unwrap());
        }
        let c = Classified::of(&http::Method::GET, &"/b/k".parse().unwrap(), &h, None).unwrap();
        let req = Request::parse(c.op.unwrap(), c.target, &h, false).unwrap();
        want(&req, &meta(size)).map_err(|e| {
            s3s::S3Error::from(e)
                .status_code()
                .map_or(0, |s| s.as_u16())
        })
    }

    #[test]
    fn ranges_are_answered_like_s3() {
        let w = |start, end| {
            Ok(Want {
                start,
                end,
                partial: true,
            })
        };
        assert_eq!(want_for(Some("bytes=0-0"), 10), w(0, 1));
        assert_eq!(want_for(Some("bytes=5-"), 10), w(5, 10));
        assert_eq!(want_for(Some("bytes=-3"), 10), w(7, 10));
        assert_eq!(want_for(Some("bytes=-30"), 10), w(0, 10));
        assert_eq!(want_for(Some("bytes=8-100"), 10), w(8, 10));
        assert_eq!(want_for(Some("bytes=10-"), 10), Err(416));
        assert_eq!(want_for(Some("bytes=0-0"), 0), Err(416));
        assert_eq!(want_for(Some("bytes=-0"), 10), Err(416));
        // Ranges S3 ignores: the whole object.
        for ignored in ["bytes=5-2", "items=0-1", "bytes=0-1,3-4"] {
            assert_eq!(
                want_for(Some(ignored), 10),
                Ok(Want::whole(10)),
                "{ignored}"
            );
        }
        assert_eq!(want_for(None, 10), Ok(Want::whole(10)));
    }
}
