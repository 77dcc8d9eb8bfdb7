//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, ListParts (and upload-id translation for Abort).
//!
//! Design (`docs/design/multipart.md`):
//! - CreateMultipartUpload draws the object's DEK and hands the client an upload id that
//!   carries the store's upload id plus the wrapped DEK (`sg1.` token): sealgate keeps no
//!   per-upload state, any instance can take any part, and the wrapped DEK is useless
//!   without KMS Decrypt permission.
//! - Each part is encrypted independently (any order, in parallel, any size) with its own
//!   header and a fresh salt per attempt, so a re-uploaded part never reuses key+nonce.
//! - CompleteMultipartUpload completes the store's upload, then copies the object onto
//!   itself server-side with the final metadata: the authenticated part list (sizes for
//!   range reads, MAC against dropped or reordered parts).
//! - Client checksums are verified by sealgate per part and removed before the store sees
//!   them (the store holds different bytes).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method, StatusCode};
use quick_xml::events::Event;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::checksum::Declared;
use super::objmeta::{self, ObjectMeta};
use super::sse::{self, Alg};
use super::xml::{Edit, rewrite_text, texts};
use super::{Ctx, forward, keys, put};
use crate::crypto::format::{Layout, PartHeader, part_cipher_len, plain_len_of_part_cipher};
use crate::crypto::stream::{Encryptor, random_salt};
use crate::error::Error;
use crate::upstream::{UpBody, UpRequest};

const TOKEN_PREFIX: &str = "sg1.";

/// What a sealgate upload id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadToken {
    pub upstream_id: String,
    pub wrapped_dek: Vec<u8>,
    pub key_arn: String,
    pub context_b64: Option<String>,
    pub alg: Alg,
    pub bucket_key: bool,
    /// KMS backend that wrapped the key (`None` = embedded).
    pub backend: Option<String>,
    /// Bucket-key uploads (format v2): salt of the DEK derivation.
    pub bk_salt: Option<[u8; 16]>,
}

fn put_field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_field<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    if b.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let rest = &b[2..];
    if rest.len() < n {
        return None;
    }
    let (f, r) = rest.split_at(n);
    *b = r;
    Some(f)
}

impl UploadToken {
    pub fn encode(&self) -> String {
        let mut out = vec![
            match self.alg {
                Alg::Kms => 1u8,
                Alg::S3 => 2,
            } | if self.bucket_key { 0x80 } else { 0 },
        ];
        put_field(&mut out, self.upstream_id.as_bytes());
        put_field(&mut out, &self.wrapped_dek);
        put_field(&mut out, self.key_arn.as_bytes());
        put_field(
            &mut out,
            self.context_b64.as_deref().unwrap_or("").as_bytes(),
        );
        // Optional trailing fields (absent in tokens of embedded, per-object-key uploads,
        // so older tokens still decode): backend name, bucket-key salt.
        if self.backend.is_some() || self.bk_salt.is_some() {
            put_field(&mut out, self.backend.as_deref().unwrap_or("").as_bytes());
            put_field(&mut out, self.bk_salt.as_ref().map_or(&[][..], |s| &s[..]));
        }
        format!("{TOKEN_PREFIX}{}", B64URL.encode(out))
    }

    /// `Ok(None)` when `id` is not a sealgate token (a store upload id).
    pub fn decode(id: &str) -> Result<Option<UploadToken>, S3Error> {
        let Some(rest) = id.strip_prefix(TOKEN_PREFIX) else {
            return Ok(None);
        };
        let bad = || {
            S3Error::with_message(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            )
        };
        let raw = B64URL.decode(rest).map_err(|_| bad())?;
        let (&flags, mut b) = raw.split_first().ok_or_else(bad)?;
        let alg = match flags & 0x7f {
            1 => Alg::Kms,
            2 => Alg::S3,
            _ => return Err(bad()),
        };
        let s = |f: &[u8]| String::from_utf8(f.to_vec()).map_err(|_| bad());
        let upstream_id = s(take_field(&mut b).ok_or_else(bad)?)?;
        let wrapped_dek = take_field(&mut b).ok_or_else(bad)?.to_vec();
        let key_arn = s(take_field(&mut b).ok_or_else(bad)?)?;
        let ctx = s(take_field(&mut b).ok_or_else(bad)?)?;
        let (backend, bk_salt) = if b.is_empty() {
            (None, None)
        } else {
            let backend = s(take_field(&mut b).ok_or_else(bad)?)?;
            let salt = take_field(&mut b).ok_or_else(bad)?;
            let salt: Option<[u8; 16]> = match salt.len() {
                0 => None,
                _ => Some(salt.try_into().map_err(|_| bad())?),
            };
            ((!backend.is_empty()).then_some(backend), salt)
        };
        if !b.is_empty() || upstream_id.is_empty() {
            return Err(bad());
        }
        Ok(Some(UploadToken {
            upstream_id,
            wrapped_dek,
            key_arn,
            context_b64: (!ctx.is_empty()).then_some(ctx),
            alg,
            bucket_key: flags & 0x80 != 0,
            backend,
            bk_salt,
        }))
    }

    /// Object metadata for this upload (layout and MAC filled in at completion).
    fn meta(&self, size: u64, layout: Layout, mac: [u8; 16]) -> ObjectMeta {
        ObjectMeta {
            key_arn: self.key_arn.clone(),
            wrapped_dek: self.wrapped_dek.clone(),
            backend: self.backend.clone(),
            bk_salt: self.bk_salt,
            context_b64: self.context_b64.clone(),
            alg: self.alg,
            bucket_key: self.bucket_key,
            size,
            layout,
            salt: None,
            mac,
        }
    }

    fn meta_for_headers(&self) -> ObjectMeta {
        self.meta(0, Layout::single(0), [0; 16])
    }
}

/// The upload token of this request, if its upload id is one.
fn token(ctx: &Ctx) -> Result<Option<UploadToken>, Error> {
    match ctx.query_value("uploadId") {
        Some(id) => Ok(UploadToken::decode(id)?),
        None => Ok(None),
    }
}

fn malformed(e: impl std::fmt::Display) -> Error {
    Error::Client(S3Error::with_message(
        S3ErrorCode::MalformedXML,
        format!(
            "The XML you provided was not well-formed or did not validate against our published schema: {e}"
        ),
    ))
}

pub async fn create(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    objmeta::reject_reserved(&ctx.headers)?;
    let requested = sse::parse(&ctx.headers)?;
    let algo = ctx.headers.get("x-amz-checksum-algorithm").cloned();
    let mut headers = forward::request_headers(&ctx.headers, &put::write_drop_list());
    let sse = super::bucket_encryption::effective(&ctx, requested).await?;
    let nk = match &sse {
        Some(sse) => {
            let (bucket, key) = ctx.object()?;
            // Marks the object as sealgate's until Complete writes the real metadata.
            forward::set_header(&mut headers, "x-amz-meta-sealgate-v", "1");
            forward::set_header(&mut headers, "x-amz-meta-sealgate-pending", "1");
            Some(keys::new_data_key(&ctx, sse, &bucket, &key).await?)
        }
        None => None,
    };
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, UpBody::Empty))
        .await?;
    let ok = resp.status().is_success();
    let (Some(nk), Some(sse), true) = (nk, sse, ok) else {
        let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
        if let (true, Some(a)) = (ok, algo) {
            out.headers.insert("x-amz-checksum-algorithm", a);
        }
        return Ok(out);
    };
    let store_headers = forward::response_headers(resp.headers(), &put::response_drop_list());
    let body = resp
        .bytes()
        .await
        .map_err(|e| Error::Upstream(crate::upstream::UpstreamError::Transport(e.to_string())))?;
    let tok_for = |upstream_id: &str| UploadToken {
        upstream_id: upstream_id.to_string(),
        wrapped_dek: nk.wrapped.clone(),
        key_arn: nk.key_arn.clone(),
        context_b64: nk.context_b64.clone(),
        alg: sse.alg,
        bucket_key: sse.bucket_key,
        backend: nk.backend.clone(),
        bk_salt: nk.bk_salt,
    };
    let mut meta_for_headers = None;
    let body = rewrite_text(&body, |p, t| {
        if p.last().map(String::as_str) == Some("UploadId") {
            let tok = tok_for(t);
            meta_for_headers = Some(tok.meta_for_headers());
            Edit::Replace(tok.encode())
        } else {
            Edit::Keep
        }
    })
    .map_err(|e| Error::Internal(format!("store's CreateMultipartUpload answer: {e}")))?;
    let mut out = S3Response::new(Body::from(body));
    out.status = Some(StatusCode::OK);
    out.headers = store_headers;
    out.headers.remove("content-length");
    if let Some(m) = meta_for_headers {
        put::sse_response_headers(&mut out.headers, &m);
    }
    if let Some(a) = algo {
        out.headers.insert("x-amz-checksum-algorithm", a);
    }
    Ok(out)
}

/// Refuses a store upload id while encryption is on: parts of sealgate uploads must be
/// encrypted, and only the token says with which key.
async fn require_plain_upload(ctx: &Ctx) -> Result<(), Error> {
    if super::bucket_encryption::effective(ctx, None)
        .await?
        .is_some()
    {
        return Err(Error::Client(S3Error::with_message(
            S3ErrorCode::NoSuchUpload,
            "The upload id is not a sealgate upload id; encrypted uploads must use the UploadId returned by CreateMultipartUpload through sealgate.",
        )));
    }
    Ok(())
}

fn part_number(ctx: &Ctx) -> Result<u32, Error> {
    ctx.query_value("partNumber")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            Error::Client(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            ))
        })
}

pub async fn upload_part(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    let headers = forward::request_headers(&ctx.headers, &put::write_drop_list());
    let Some(tok) = token(&ctx)? else {
        require_plain_upload(&ctx).await?;
        let (resp, digests) = put::send_verified(&mut ctx, headers, &declared, None).await?;
        let ok = resp.status().is_success();
        let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
        if ok {
            put::echo_checksums(&mut out, &digests);
        }
        return Ok(out);
    };
    let pn = part_number(&ctx)?;
    let len = put::declared_len(&ctx)?;
    let (bucket, key) = ctx.object()?;
    let meta = tok.meta_for_headers();
    let dek = keys::open_token_key(&ctx, &meta, &bucket, &key).await?;
    let header = PartHeader {
        part_number: pn,
        salt: random_salt(),
        plain_len: len,
    };
    let encrypt =
        move |plain: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>| {
            (
                Encryptor::new(plain, &dek, header, true).boxed(),
                part_cipher_len(len, true),
            )
        };
    let (resp, digests) =
        put::send_verified(&mut ctx, headers, &declared, Some(Box::new(encrypt))).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, &put::response_drop_list());
    if ok {
        put::echo_checksums(&mut out, &digests);
        put::sse_response_headers(&mut out.headers, &meta);
    }
    Ok(out)
}

/// Parses `x-amz-copy-source-range: bytes=a-b` into `[a, b+1)`.
fn copy_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, Error> {
    let Some(v) = h.get("x-amz-copy-source-range") else {
        return Ok(None);
    };
    let bad = || {
        Error::Client(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        ))
    };
    let s = v
        .to_str()
        .map_err(|_| bad())?
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(bad)?;
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b + 1)))
}

pub async fn upload_part_copy(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let src = super::copy::parse_source(&ctx.headers)?;
    let tok = token(&ctx)?;
    if tok.is_none() {
        require_plain_upload(&ctx).await?;
    }
    let head = super::copy::head_source(&ctx, &src).await?;
    let range = copy_range(&ctx.headers)?;
    if tok.is_none() && ObjectMeta::read(head.headers())?.is_none() {
        // Plaintext into a plaintext upload: the store copies.
        let mut h = forward::request_headers(&ctx.headers, &put::write_drop_list());
        forward::set_header(&mut h, "x-amz-copy-source", &src.header_value());
        let resp = ctx
            .state
            .upstream
            .send(forward::up_request(&ctx, h, UpBody::Empty))
            .await?;
        return Ok(forward::to_client(resp, false, &[]));
    }
    if let Some((a, b)) = range {
        let size = match ObjectMeta::read(head.headers())? {
            Some(m) => m.size,
            None => head.content_length().unwrap_or(0),
        };
        if b > size || a >= size {
            let mut e = S3Error::with_message(
                S3ErrorCode::InvalidRange,
                "The requested range is not satisfiable",
            );
            e.set_status_code(StatusCode::RANGE_NOT_SATISFIABLE);
            return Err(Error::Client(e));
        }
    }
    let (plain, len) = super::copy::plaintext_source(&ctx, &src, head.headers(), range).await?;
    let pn = part_number(&ctx)?;
    let headers = HeaderMap::new();
    let (body, meta) = match tok {
        Some(tok) => {
            let (bucket, key) = ctx.object()?;
            let meta = tok.meta_for_headers();
            let dek = keys::open_token_key(&ctx, &meta, &bucket, &key).await?;
            let header = PartHeader {
                part_number: pn,
                salt: random_salt(),
                plain_len: len,
            };
            (
                UpBody::Stream {
                    stream: Encryptor::new(plain, &dek, header, true).boxed(),
                    len: part_cipher_len(len, true),
                },
                Some(meta),
            )
        }
        None => (UpBody::Stream { stream: plain, len }, None),
    };
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, body))
        .await?;
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    Ok(super::copy::copy_result(
        "CopyPartResult",
        &resp,
        meta.as_ref(),
    ))
}

/// Part numbers and ETags listed in a CompleteMultipartUpload body, in order.
fn completed_parts(xml: &[u8]) -> Result<Vec<u32>, Error> {
    let nums = texts(xml, &["Part", "PartNumber"]).map_err(malformed)?;
    let nums: Vec<u32> = nums
        .iter()
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(malformed)?;
    if nums.is_empty() {
        return Err(malformed("no parts"));
    }
    if nums.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::Client(S3Error::with_message(
            S3ErrorCode::InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number.",
        )));
    }
    Ok(nums)
}

/// Ciphertext sizes of the store's parts of an upload (ListParts, all pages).
async fn store_part_sizes(
    ctx: &Ctx,
    upstream_id: &str,
) -> Result<std::collections::HashMap<u32, u64>, Error> {
    let mut sizes = std::collections::HashMap::new();
    let mut marker: Option<String> = None;
    loop {
        let mut query = vec![("uploadId".to_string(), upstream_id.to_string())];
        if let Some(m) = &marker {
            query.push(("part-number-marker".to_string(), m.clone()));
        }
        let resp = ctx
            .state
            .upstream
            .send(UpRequest {
                method: Method::GET,
                bucket: ctx.bucket.clone(),
                key: ctx.key.clone(),
                query,
                headers: HeaderMap::new(),
                body: UpBody::Empty,
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Error::Client(S3Error::with_message(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            )));
        }
        let body = resp.bytes().await.map_err(|e| {
            Error::Upstream(crate::upstream::UpstreamError::Transport(e.to_string()))
        })?;
        let nums = texts(&body, &["Part", "PartNumber"]).map_err(Error::Internal)?;
        let lens = texts(&body, &["Part", "Size"]).map_err(Error::Internal)?;
        for (n, l) in nums.iter().zip(&lens) {
            if let (Ok(n), Ok(l)) = (n.parse(), l.parse()) {
                sizes.insert(n, l);
            }
        }
        let truncated = texts(&body, &["IsTruncated"]).map_err(Error::Internal)?;
        let next = texts(&body, &["NextPartNumberMarker"]).map_err(Error::Internal)?;
        match (truncated.first().map(String::as_str), next.first()) {
            (Some("true"), Some(n)) if Some(n) != marker.as_ref() => marker = Some(n.clone()),
            _ => break,
        }
    }
    Ok(sizes)
}

pub async fn complete(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let body = read_small_body(&mut ctx).await?;
    let body = strip_part_checksums(&body)?;
    let headers = forward::request_headers(&ctx.headers, &put::write_drop_list());
    let Some(tok) = token(&ctx)? else {
        require_plain_upload(&ctx).await?;
        let resp = ctx
            .state
            .upstream
            .send(forward::up_request(&ctx, headers, UpBody::Bytes(body)))
            .await?;
        return Ok(forward::to_client(resp, false, forward::CHECKSUM_REQUEST));
    };
    let (bucket, key) = ctx.object()?;
    let nums = completed_parts(&body)?;
    // The part list: plaintext sizes from the store's ciphertext sizes.
    let sizes = store_part_sizes(&ctx, &tok.upstream_id).await?;
    let mut parts = Vec::with_capacity(nums.len());
    for n in &nums {
        let c = sizes.get(n).ok_or_else(|| {
            Error::Client(S3Error::with_message(
                S3ErrorCode::InvalidPart,
                format!("One or more of the specified parts could not be found (part {n})."),
            ))
        })?;
        let p = plain_len_of_part_cipher(*c, true).ok_or_else(|| {
            Error::Client(objmeta::corrupt(format!("part {n} has an impossible size")))
        })?;
        parts.push((*n, p));
    }
    let layout = Layout {
        headers_in_body: true,
        parts,
    };
    let size = layout.plain_len();
    let dek = keys::open_token_key(&ctx, &tok.meta_for_headers(), &bucket, &key).await?;
    let meta = tok.meta(
        size,
        layout.clone(),
        ObjectMeta::compute_mac(&dek, size, &layout),
    );

    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, UpBody::Bytes(body)))
        .await?;
    let status = resp.status();
    let store_headers = resp.headers().clone();
    let answer = resp
        .bytes()
        .await
        .map_err(|e| Error::Upstream(crate::upstream::UpstreamError::Transport(e.to_string())))?;
    // S3 may answer 200 with an <Error> body.
    if !status.is_success() || answer.windows(7).any(|w| w == b"<Error>") {
        let mut out = S3Response::new(Body::from(answer));
        out.status = Some(if status.is_success() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        });
        out.headers = forward::response_headers(&store_headers, &["content-length"]);
        return Ok(out);
    }
    let completed_etag = texts(&answer, &["ETag"])
        .map_err(Error::Internal)?
        .into_iter()
        .next()
        .unwrap_or_default();

    // Write the final metadata: copy the object onto itself server-side (pinned to the
    // object just completed), keeping the client's descriptive headers.
    let head = ctx
        .state
        .upstream
        .send(UpRequest {
            method: Method::HEAD,
            bucket: ctx.bucket.clone(),
            key: ctx.key.clone(),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: UpBody::Empty,
        })
        .await?;
    let mut copy_headers = super::copy::descriptive_headers(head.headers());
    meta.write(&mut copy_headers);
    forward::set_header(&mut copy_headers, "x-amz-metadata-directive", "REPLACE");
    let src = super::copy::Source {
        bucket: bucket.clone(),
        key: key.clone(),
        version_id: None,
    };
    forward::set_header(&mut copy_headers, "x-amz-copy-source", &src.header_value());
    forward::set_header(
        &mut copy_headers,
        "x-amz-copy-source-if-match",
        &completed_etag,
    );
    let copy = ctx
        .state
        .upstream
        .send(UpRequest {
            method: Method::PUT,
            bucket: ctx.bucket.clone(),
            key: ctx.key.clone(),
            query: Vec::new(),
            headers: copy_headers,
            body: UpBody::Empty,
        })
        .await?;
    let copy_status = copy.status();
    let copy_body = copy
        .bytes()
        .await
        .map_err(|e| Error::Upstream(crate::upstream::UpstreamError::Transport(e.to_string())))?;
    if !copy_status.is_success() || copy_body.windows(7).any(|w| w == b"<Error>") {
        return Err(Error::Internal(format!(
            "the upload completed but writing its sealgate metadata failed ({copy_status}); the object is unreadable until re-uploaded"
        )));
    }
    let etag = texts(&copy_body, &["ETag"])
        .map_err(Error::Internal)?
        .into_iter()
        .next()
        .unwrap_or(completed_etag);
    let answer = rewrite_text(&answer, |p, _| {
        if p.last().map(String::as_str) == Some("ETag") {
            Edit::Replace(etag.clone())
        } else {
            Edit::Keep
        }
    })
    .map_err(Error::Internal)?;
    let mut out = S3Response::new(Body::from(answer));
    out.status = Some(StatusCode::OK);
    out.headers = forward::response_headers(&store_headers, &["content-length"]);
    objmeta::strip(&mut out.headers);
    for n in put::response_drop_list() {
        out.headers.remove(n);
    }
    put::sse_response_headers(&mut out.headers, &meta);
    Ok(out)
}

pub async fn list_parts(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let tok = token(&ctx)?;
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, UpBody::Empty))
        .await?;
    let Some(tok) = tok else {
        return Ok(forward::to_client(resp, false, &[]));
    };
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    let store_headers = forward::response_headers(resp.headers(), &["content-length"]);
    let body = resp
        .bytes()
        .await
        .map_err(|e| Error::Upstream(crate::upstream::UpstreamError::Transport(e.to_string())))?;
    let client_id = ctx.query_value("uploadId").unwrap_or_default().to_string();
    let body = rewrite_text(&body, |p, t| match p.last().map(String::as_str) {
        Some("UploadId") if t == tok.upstream_id => Edit::Replace(client_id.clone()),
        Some("Size") if p.len() >= 2 && p[p.len() - 2] == "Part" => match t
            .parse::<u64>()
            .ok()
            .and_then(|c| plain_len_of_part_cipher(c, true))
        {
            Some(plain) => Edit::Replace(plain.to_string()),
            None => Edit::Keep,
        },
        _ => Edit::Keep,
    })
    .map_err(Error::Internal)?;
    let mut out = S3Response::new(Body::from(body));
    out.status = Some(StatusCode::OK);
    out.headers = store_headers;
    Ok(out)
}

/// Reads an XML request body, refusing anything over the configured bound (a Complete
/// body for 10,000 parts is about 1.5 MB; the bound is at least 4 MiB here).
pub async fn read_small_body(ctx: &mut Ctx) -> Result<Bytes, Error> {
    let limit = ctx.state.max_buffered_body.max(4 * 1024 * 1024);
    let mut stream = forward::body_stream(std::mem::take(&mut ctx.body));
    let mut buf = Vec::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        Error::Client(S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!("reading the request body failed: {e}"),
        ))
    })? {
        if buf.len() + chunk.len() > limit {
            return Err(Error::Client(S3Error::with_message(
                S3ErrorCode::MaxMessageLengthExceeded,
                format!("The request body exceeds sealgate's limit of {limit} bytes."),
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Removes every `<Checksum*>` element from a CompleteMultipartUpload body.
pub fn strip_part_checksums(xml: &[u8]) -> Result<Bytes, Error> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    let mut skip_depth = 0usize;
    loop {
        let ev = reader.read_event().map_err(malformed)?;
        match &ev {
            Event::Eof => break,
            Event::Start(s)
                if skip_depth > 0 || s.local_name().as_ref().starts_with(b"Checksum") =>
            {
                skip_depth += 1;
                continue;
            }
            Event::End(_) if skip_depth > 0 => {
                skip_depth -= 1;
                continue;
            }
            Event::Empty(s) if s.local_name().as_ref().starts_with(b"Checksum") => continue,
            _ if skip_depth > 0 => continue,
            _ => {}
        }
        writer.write_event(ev).map_err(malformed)?;
    }
    Ok(Bytes::from(writer.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_checksums_are_removed_and_everything_else_kept() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"e1"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32><PartNumber>1</PartNumber></Part><Part><ETag>"e2"</ETag><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>"#;
        let out = strip_part_checksums(xml).unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(!s.contains("Checksum"), "{s}");
        assert!(
            s.contains("<ETag>\"e1\"</ETag><PartNumber>1</PartNumber>"),
            "{s}"
        );
        assert_eq!(completed_parts(&out).unwrap(), vec![1, 2]);
    }

    #[test]
    fn malformed_xml_is_a_client_error() {
        let e = strip_part_checksums(b"<a><b></a>").unwrap_err();
        let s: S3Error = e.into();
        assert_eq!(*s.code(), S3ErrorCode::MalformedXML);
    }

    #[test]
    fn parts_out_of_order_are_invalid_part_order() {
        let xml = b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber></Part><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>";
        let s: S3Error = completed_parts(xml).unwrap_err().into();
        assert_eq!(s.code().as_str(), "InvalidPartOrder");
    }

    #[test]
    fn upload_tokens_round_trip_and_reject_garbage() {
        let t = UploadToken {
            upstream_id: "abc123".into(),
            wrapped_dek: vec![1, 2, 3, 255],
            key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            context_b64: Some("e30=".into()),
            alg: Alg::Kms,
            bucket_key: true,
            backend: None,
            bk_salt: None,
        };
        assert_eq!(UploadToken::decode(&t.encode()).unwrap(), Some(t.clone()));
        let remote = UploadToken {
            backend: Some("bao".into()),
            bk_salt: Some([7; 16]),
            ..t.clone()
        };
        assert_eq!(
            UploadToken::decode(&remote.encode()).unwrap(),
            Some(remote.clone())
        );
        assert_eq!(UploadToken::decode("plain-store-id").unwrap(), None);
        assert!(UploadToken::decode("sg1.!!!").is_err());
        let mut s = t.encode();
        s.pop();
        assert!(UploadToken::decode(&s).is_err());
    }
}
