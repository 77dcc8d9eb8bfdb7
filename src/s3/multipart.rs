//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload, ListParts.
//!
//! Checksums: each part's checksum is verified by sealgate against the client's bytes (as
//! for PutObject) and not forwarded; the checksum algorithm declared at creation and the
//! per-part checksums listed in the Complete body are therefore removed before the store
//! sees them (the store never holds the client's checksums, which would be about bytes it
//! does not have once bodies are encrypted).

use bytes::Bytes;
use futures::TryStreamExt;
use quick_xml::events::Event;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::Ctx;
use super::checksum::Declared;
use super::forward;
use crate::error::Error;
use crate::upstream::UpBody;

pub async fn create(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let algo = ctx.headers.get("x-amz-checksum-algorithm").cloned();
    let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, UpBody::Empty))
        .await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
    if let (true, Some(a)) = (ok, algo) {
        out.headers.insert("x-amz-checksum-algorithm", a);
    }
    Ok(out)
}

pub async fn upload_part(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
    let (resp, digests) = super::put::send_verified(&mut ctx, headers, &declared).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
    if ok {
        super::put::echo_checksums(&mut out, &digests);
    }
    Ok(out)
}

pub async fn complete(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let body = read_small_body(&mut ctx).await?;
    let body = strip_part_checksums(&body)?;
    let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, UpBody::Bytes(body)))
        .await?;
    Ok(forward::to_client(resp, false, forward::CHECKSUM_REQUEST))
}

pub async fn list_parts(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx
        .state
        .upstream
        .send(forward::up_request(&ctx, headers, UpBody::Empty))
        .await?;
    Ok(forward::to_client(resp, false, &[]))
}

/// Reads an XML request body, refusing anything over the configured bound (a Complete
/// body for 10,000 parts is about 1.5 MB; the default bound is checked in config).
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
    let malformed = |e: &dyn std::fmt::Display| {
        Error::Client(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            format!(
                "The XML you provided was not well-formed or did not validate against our published schema: {e}"
            ),
        ))
    };
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    let mut skip_depth = 0usize;
    loop {
        let ev = reader.read_event().map_err(|e| malformed(&e))?;
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
        writer.write_event(ev).map_err(|e| malformed(&e))?;
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
        assert!(s.contains("<PartNumber>2</PartNumber>"), "{s}");
    }

    #[test]
    fn malformed_xml_is_a_client_error() {
        let e = strip_part_checksums(b"<a><b></a>").unwrap_err();
        let s: S3Error = e.into();
        assert_eq!(*s.code(), S3ErrorCode::MalformedXML);
    }
}
