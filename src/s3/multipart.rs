//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, ListParts.
//!
//! Design (`docs/design/multipart.md`):
//! - CreateMultipartUpload draws the object's DEK and hands the client an upload id that
//!   carries the store's upload id plus the wrapped DEK (an [`UploadToken`]): sealgate
//!   keeps no per-upload state, any instance can take any part, and the wrapped DEK is
//!   useless without KMS Decrypt permission.
//! - Each part is encrypted independently (any order, in parallel, any size) with its own
//!   header and a fresh salt per attempt, so a re-uploaded part never reuses key+nonce.
//! - CompleteMultipartUpload completes the store's upload, then copies the object onto
//!   itself server-side with the final metadata: the authenticated part list (sizes for
//!   range reads, MAC against dropped or reordered parts).
//! - Client checksums are verified by sealgate per part and removed before the store sees
//!   them (the store holds different bytes).

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use quick_xml::events::Event;
use s3s::{Body, S3Response};

use super::body::{declared_len, echo_checksums, read_small_body, send_verified};
use super::checksum::Declared;
use super::request::Upload;
use super::{Ctx, forward, rules, source, sse};
use crate::crypto::format::{meta as names, plain_len_of_part_cipher};
use crate::error::Error;
use crate::object::write::Writer;
use crate::object::{Envelope, ObjectMeta, UploadToken, meta};
use crate::upstream::{UpBody, UpRequest};
use crate::xml::{Edit, rewrite_text, texts};

pub async fn create(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    meta::reject_reserved(&ctx.headers)?;
    let algo = ctx.headers.get("x-amz-checksum-algorithm").cloned();
    let mut headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    let sse = rules::effective(&ctx, ctx.req.sse.clone()).await?;
    let env = match &sse {
        Some(sse) => {
            let obj = ctx.req.object()?;
            let (env, _dek) = ctx.objects().new_key(ctx.caller(), sse, &obj).await?;
            // Marks the object as sealgate's until Complete writes the real metadata.
            forward::set_header(&mut headers, names::VERSION, "1");
            forward::set_header(&mut headers, names::PENDING, "1");
            Some(env)
        }
        None => None,
    };
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    let ok = resp.status().is_success();
    let (Some(env), true) = (env, ok) else {
        let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
        if let (true, Some(a)) = (ok, algo) {
            out.headers.insert("x-amz-checksum-algorithm", a);
        }
        return Ok(out);
    };
    let store_headers = forward::response_headers(resp.headers(), &forward::response_drop_list());
    let body = resp.bytes().await.map_err(Error::store_body)?;
    let body = rewrite_text(&body, |p, t| {
        if p.last().map(String::as_str) == Some("UploadId") {
            let tok = UploadToken {
                upstream_id: t.to_string(),
                envelope: env.clone(),
            };
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
    sse::response_headers(&mut out.headers, &env);
    if let Some(a) = algo {
        out.headers.insert("x-amz-checksum-algorithm", a);
    }
    Ok(out)
}

/// Refuses a store upload id while encryption is on: parts of sealgate uploads must be
/// encrypted, and only the token says with which key.
async fn require_plain_upload(ctx: &Ctx) -> Result<(), Error> {
    if rules::effective(ctx, None).await?.is_some() {
        return Err(Error::client(
            s3s::S3ErrorCode::NoSuchUpload,
            "The upload id is not a sealgate upload id; encrypted uploads must use the UploadId returned by CreateMultipartUpload through sealgate.",
        ));
    }
    Ok(())
}

/// The upload's envelope, or `None` for a plaintext upload (refused while encryption is
/// on).
async fn upload_envelope(ctx: &Ctx) -> Result<Option<Envelope>, Error> {
    match &ctx.req.upload {
        Some(Upload::Token(t)) => Ok(Some(t.envelope.clone())),
        _ => {
            require_plain_upload(ctx).await?;
            Ok(None)
        }
    }
}

fn part_number(ctx: &Ctx) -> Result<u32, Error> {
    ctx.req.part_number.ok_or_else(Error::invalid_part_number)
}

pub async fn upload_part(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    let headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    let Some(env) = upload_envelope(&ctx).await? else {
        let (resp, digests) = send_verified(&mut ctx, headers, &declared, None, true).await?;
        let ok = resp.status().is_success();
        let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
        if ok {
            echo_checksums(&mut out, &digests);
        }
        return Ok(out);
    };
    let pn = part_number(&ctx)?;
    let len = declared_len(&ctx)?;
    let obj = ctx.req.object()?;
    let dek = ctx.objects().open_key(ctx.caller(), &env, &obj).await?;
    let (writer, _outcome) = Writer::part(dek, pn, len, false);
    let (resp, digests) = send_verified(&mut ctx, headers, &declared, Some(writer), true).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, &forward::response_drop_list());
    if ok {
        echo_checksums(&mut out, &digests);
        sse::response_headers(&mut out.headers, &env);
    }
    Ok(out)
}

/// Parses `x-amz-copy-source-range: bytes=a-b` into `[a, b+1)`.
fn copy_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, Error> {
    let Some(v) = h.get("x-amz-copy-source-range") else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
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
    let src = ctx
        .req
        .copy_source
        .clone()
        .ok_or_else(|| Error::Internal("UploadPartCopy without a source".into()))?;
    let env = upload_envelope(&ctx).await?;
    let source = source::open(&ctx, &src).await?;
    let range = copy_range(&ctx.headers)?;
    if env.is_none() && source.sealed.is_none() {
        // Plaintext into a plaintext upload: the store copies.
        let mut h = forward::request_headers(&ctx.headers, &forward::write_drop_list());
        forward::set_header(&mut h, "x-amz-copy-source", &src.copy_source_header());
        let resp = ctx.forward(h, UpBody::Empty).await?;
        return Ok(forward::to_client(resp, false, &[]));
    }
    if let Some((a, b)) = range {
        let size = source.size();
        if b > size || a >= size {
            return Err(Error::invalid_range(size));
        }
    }
    let (plain, len) = source::plaintext(&ctx, &source, range).await?;
    let pn = part_number(&ctx)?;
    let body = match &env {
        Some(env) => {
            let obj = ctx.req.object()?;
            let dek = ctx.objects().open_key(ctx.caller(), env, &obj).await?;
            let (writer, _outcome) = Writer::part(dek, pn, len, false);
            let (stream, len) = writer.seal_stream(plain, &mut HeaderMap::new());
            UpBody::Checked(Box::new(UpBody::Stream { stream, len }))
        }
        None => UpBody::Checked(Box::new(UpBody::Stream { stream: plain, len })),
    };
    let resp = ctx.forward(HeaderMap::new(), body).await?;
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    Ok(source::copy_result(
        "CopyPartResult",
        &resp,
        env.as_ref(),
        None,
    ))
}

/// Part numbers listed in a CompleteMultipartUpload body, in order.
fn completed_parts(xml: &[u8]) -> Result<Vec<u32>, Error> {
    let nums = texts(xml, &["Part", "PartNumber"]).map_err(Error::malformed_xml)?;
    let nums: Vec<u32> = nums
        .iter()
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(Error::malformed_xml)?;
    if nums.is_empty() {
        return Err(Error::malformed_xml("no parts"));
    }
    if nums.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::client(
            s3s::S3ErrorCode::InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number.",
        ));
    }
    Ok(nums)
}

pub async fn complete(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let body = read_small_body(&mut ctx).await?;
    let body = strip_part_checksums(&body)?;
    let headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    let Some(tok) = ctx.req.token().cloned() else {
        require_plain_upload(&ctx).await?;
        let resp = ctx
            .send(forward::up_request(&ctx, headers, UpBody::Bytes(body)))
            .await?;
        return Ok(forward::to_client(resp, false, forward::CHECKSUM_REQUEST));
    };
    let obj = ctx.req.object()?;
    let nums = completed_parts(&body)?;
    // The part list: plaintext sizes from the store's ciphertext sizes.
    let layout = ctx
        .objects()
        .part_list(&obj, &tok.upstream_id, &nums)
        .await?;
    let dek = ctx
        .objects()
        .open_key(ctx.caller(), &tok.envelope, &obj)
        .await?;
    let meta = ObjectMeta::multipart(tok.envelope.clone(), &dek, layout);

    let resp = ctx
        .send(forward::up_request(&ctx, headers, UpBody::Bytes(body)))
        .await?;
    let status = resp.status();
    let store_headers = resp.headers().clone();
    let answer = resp.bytes().await.map_err(Error::store_body)?;
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
    let current = crate::object::ObjectRef::new(&obj.bucket, &obj.key);
    let head = ctx.objects().head(&current, HeaderMap::new()).await?;
    let mut copy_headers = forward::descriptive_headers(head.headers());
    meta.write(&mut copy_headers);
    forward::set_header(&mut copy_headers, "x-amz-metadata-directive", "REPLACE");
    forward::set_header(
        &mut copy_headers,
        "x-amz-copy-source",
        &current.copy_source_header(),
    );
    forward::set_header(
        &mut copy_headers,
        "x-amz-copy-source-if-match",
        &completed_etag,
    );
    let copy = ctx
        .send(UpRequest {
            method: Method::PUT,
            bucket: Some(obj.bucket.clone()),
            key: Some(obj.key.clone()),
            query: Vec::new(),
            headers: copy_headers,
            body: UpBody::Empty,
        })
        .await?;
    let copy_status = copy.status();
    let copy_body = copy.bytes().await.map_err(Error::store_body)?;
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
    meta::strip(&mut out.headers);
    for n in forward::response_drop_list() {
        out.headers.remove(n);
    }
    sse::response_headers(&mut out.headers, &meta.envelope);
    Ok(out)
}

pub async fn list_parts(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    let Some(tok) = ctx.req.token() else {
        return Ok(forward::to_client(resp, false, &[]));
    };
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    let store_headers = forward::response_headers(resp.headers(), &["content-length"]);
    let body = resp.bytes().await.map_err(Error::store_body)?;
    let client_id = ctx
        .req
        .query_value("uploadId")
        .unwrap_or_default()
        .to_string();
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

/// Removes every `<Checksum*>` element from a CompleteMultipartUpload body.
pub fn strip_part_checksums(xml: &[u8]) -> Result<Bytes, Error> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    let mut skip_depth = 0usize;
    loop {
        let ev = reader.read_event().map_err(Error::malformed_xml)?;
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
        writer.write_event(ev).map_err(Error::malformed_xml)?;
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
        let s: s3s::S3Error = e.into();
        assert_eq!(*s.code(), s3s::S3ErrorCode::MalformedXML);
    }

    #[test]
    fn parts_out_of_order_are_invalid_part_order() {
        let xml = b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber></Part><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>";
        let s: s3s::S3Error = completed_parts(xml).unwrap_err().into();
        assert_eq!(s.code().as_str(), "InvalidPartOrder");
    }
}
