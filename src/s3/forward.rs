//! Shared forwarding mechanics: which headers cross the proxy in each direction, and how a
//! store response becomes a client response.
//!
//! Invariants: the client's credentials, signature and transport framing never reach the
//! store (the forwarder re-signs), nor do SSE-C headers (they carry the customer key), on
//! any operation; hop-by-hop headers never cross in either direction;
//! response bodies stream through unbuffered, except error documents, which are rewritten
//! ([`client_error_body`]): the client gets the store's error code with AWS's message for
//! it, never the store's own text (which can name the store's credentials, hosts or
//! internals).

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use s3s::{Body, S3Response};

use super::Ctx;
use crate::error::Error;
use crate::object::describe::without_aws_chunked;
use crate::upstream::{UpBody, UpRequest};

/// Request headers never forwarded to the store.
const DROP_REQUEST: &[&str] = &[
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    // CORS is sealgate's to evaluate (`s3/cors`), not the store's.
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
];

/// Checksum headers: verified by sealgate and stripped on paths where the store's bytes
/// differ (or will differ) from the client's.
pub const CHECKSUM_REQUEST: &[&str] = &[
    "content-md5",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-algorithm",
    "x-amz-checksum-type",
    "x-amz-sdk-checksum-algorithm",
];

/// Headers never forwarded on object writes: checksums (about plaintext) and SSE requests
/// (sealgate does the encryption).
pub fn write_drop_list() -> Vec<&'static str> {
    CHECKSUM_REQUEST
        .iter()
        .chain(super::sse::SSE_REQUEST_HEADERS)
        .copied()
        .collect()
}

/// Store response headers never returned on encrypted paths: checksums and SSE claims of
/// the store are about ciphertext.
pub fn response_drop_list() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = CHECKSUM_REQUEST.to_vec();
    v.extend(super::sse::SSE_REQUEST_HEADERS);
    v.extend([super::sse::H_C_ALG, super::sse::H_C_MD5]);
    v.push("x-amz-checksum-type");
    v
}

/// Headers describing an object (content type, cache control, ...), besides user metadata.
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
        if n == "content-encoding" {
            if let Some(v) = without_aws_chunked(v) {
                h.append(k.clone(), v);
            }
        } else if DESCRIPTIVE.contains(&n)
            || (n.starts_with("x-amz-meta-") && !n.starts_with(crate::crypto::format::meta::PREFIX))
        {
            h.append(k.clone(), v.clone());
        }
    }
    h
}

/// What the store says about its own encryption of an object sealgate did not encrypt:
/// never passed on (a plaintext response must not look encrypted).
pub const STORE_SSE: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// Response headers never returned to the client.
const DROP_RESPONSE: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "trailer",
    "upgrade",
    "proxy-connection",
    // The store's request ids and server name (the client's request is sealgate's:
    // `request_id`).
    "x-amz-request-id",
    "x-amz-id-2",
    "server",
    // sealgate adds the CORS headers of the bucket's rules itself (`s3/cors`).
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

/// Client headers to forward, minus `extra_drop`. `content-encoding: aws-chunked` is
/// removed (the body reaching us is already decoded). SSE-C headers are never forwarded.
pub fn request_headers(h: &HeaderMap, extra_drop: &[&str]) -> HeaderMap {
    copy_headers(h, |n| {
        DROP_REQUEST.contains(&n)
            || super::sse::SSE_C_HEADERS.contains(&n)
            || extra_drop.contains(&n)
    })
}

/// Response headers from the store, minus hop-by-hop ones and `extra_drop`. A stored
/// Content-Encoding loses an `aws-chunked` token: some stores (SeaweedFS 4.48) keep it
/// from an upload's `aws-chunked,gzip`, where S3 stores `gzip`.
pub fn response_headers(h: &HeaderMap, extra_drop: &[&str]) -> HeaderMap {
    copy_headers(h, |n| DROP_RESPONSE.contains(&n) || extra_drop.contains(&n))
}

/// The headers `drop` does not name; Content-Encoding without its `aws-chunked` token.
fn copy_headers(h: &HeaderMap, drop: impl Fn(&str) -> bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (name, value) in h {
        let n = name.as_str();
        if drop(n) {
            continue;
        }
        if n == "content-encoding" {
            if let Some(v) = without_aws_chunked(value) {
                out.append(name.clone(), v);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The body length the client declared, after aws-chunked decoding: aws-chunked bodies
/// may come with `Transfer-Encoding: chunked` and no Content-Length at all, and then only
/// `x-amz-decoded-content-length` says how long the object is.
pub fn content_length(h: &HeaderMap) -> Option<u64> {
    let get = |n: &str| h.get(n)?.to_str().ok()?.trim().parse::<u64>().ok();
    get("x-amz-decoded-content-length").or_else(|| get(http::header::CONTENT_LENGTH.as_str()))
}

/// Takes the client body as a byte stream.
pub fn body_stream(
    body: Body,
) -> futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> {
    body.map_err(std::io::Error::other).boxed()
}

/// Builds the store request for this operation with the client's (filtered) headers.
pub fn up_request(ctx: &Ctx, headers: HeaderMap, body: UpBody) -> UpRequest {
    UpRequest {
        method: ctx.method.clone(),
        bucket: ctx.req.bucket.clone(),
        key: ctx.req.key.clone(),
        query: ctx.req.forward_query(),
        headers,
        body,
    }
}

/// A body-less read of the object behind this request (`method` HEAD or GET), with the
/// client's query minus `partNumber` and the given headers.
pub fn object_read(ctx: &Ctx, method: http::Method, headers: HeaderMap) -> UpRequest {
    UpRequest {
        method,
        bucket: ctx.req.bucket.clone(),
        key: ctx.req.key.clone(),
        query: ctx.req.object_query(),
        headers,
        body: UpBody::Empty,
    }
}

/// Streams the client body (if any) to the store. A body without a declared length is
/// refused for methods that carry one (S3 requires Content-Length).
pub fn client_body(ctx: &mut Ctx) -> Result<UpBody, Error> {
    let body = std::mem::take(&mut ctx.body);
    match content_length(&ctx.headers) {
        Some(0) => Ok(UpBody::Empty),
        Some(len) => Ok(UpBody::Stream {
            stream: body_stream(body),
            len,
        }),
        // No declared length: fine when the body is known to be empty (a CreateBucket
        // without Content-Length), or of known size; otherwise S3 wants a length, and a
        // body must never be dropped silently.
        None => {
            use s3s::stream::ByteStream as _;
            match body.remaining_length().exact() {
                Some(0) => Ok(UpBody::Empty),
                Some(n) => Ok(UpBody::Stream {
                    stream: body_stream(body),
                    len: n as u64,
                }),
                None => Err(Error::missing_content_length()),
            }
        }
    }
}

/// A 200 answer with a store's answer rewritten by sealgate (listings, upload ids) and
/// the store's headers.
pub fn rewritten(body: impl Into<Body>, headers: HeaderMap) -> S3Response<Body> {
    let mut out = S3Response::new(body.into());
    out.status = Some(StatusCode::OK);
    out.headers = headers;
    out
}

/// Converts a store response into the client response, streaming the body.
pub fn to_client(
    resp: crate::upstream::UpResponse,
    is_head: bool,
    extra_drop: &[&str],
) -> S3Response<Body> {
    let status = resp.status();
    let mut headers = response_headers(resp.headers(), extra_drop);
    let body = if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
    {
        Body::empty()
    } else if status.is_client_error() || status.is_server_error() {
        headers.remove(http::header::CONTENT_LENGTH);
        let request_id = crate::request_id::current();
        let doc = futures::stream::once(async move {
            let body = resp.bytes_limited(MAX_ERROR_DOC).await.unwrap_or_default();
            let doc = client_error_body(status, &body);
            let doc = request_id
                .and_then(|id| crate::request_id::with_request_id(&doc, &id))
                .unwrap_or(doc);
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(doc))
        });
        Body::http_body_unsync(http_body_util::StreamBody::new(doc))
    } else {
        let stream = resp.bytes_stream().map_ok(http_body::Frame::data).map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
            tracing::warn!(error = %e, "store response body failed mid-stream; aborting the client response");
            Box::new(e)
        });
        Body::http_body_unsync(http_body_util::StreamBody::new(stream))
    };
    let mut r = S3Response::new(body);
    r.status = Some(status);
    r.headers = headers;
    r
}

/// Longest store error document read; a longer one is treated as having no code.
const MAX_ERROR_DOC: usize = 64 * 1024;

/// The error document a client gets for a store error: the store's `Code` (kept, as
/// clients act on it) with AWS's message for that code; the store's own message is
/// logged, never sent. A failure of the store to accept sealgate's own credentials is
/// sealgate's problem, not the client's signature's.
pub fn client_error_body(status: StatusCode, store_doc: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(store_doc);
    let code = crate::xml::error_code(&text).unwrap_or_else(|| match status.as_u16() {
        403 => "AccessDenied".into(),
        404 => "NotFound".into(),
        503 => "ServiceUnavailable".into(),
        s if s >= 500 => "InternalError".into(),
        _ => "InvalidRequest".into(),
    });
    let store_message = crate::xml::texts(store_doc, &["Error", "Message"])
        .ok()
        .and_then(|m| m.into_iter().next())
        .unwrap_or_default();
    tracing::info!(
        status = status.as_u16(),
        code,
        store_message,
        "the store answered an error"
    );
    let (code, message) = match code.as_str() {
        "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "ExpiredToken" | "InvalidToken" => {
            tracing::warn!(
                code,
                "the store refused sealgate's credentials: check [upstream]"
            );
            (
                "AccessDenied".to_string(),
                "The object store refused sealgate's request; see sealgate's log.",
            )
        }
        _ => {
            let message = aws_message(&code);
            (code, message)
        }
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
        quick_xml::escape::escape(code.as_str()),
        quick_xml::escape::escape(message)
    );
    Bytes::from(body)
}

/// AWS's message for an S3 error code (S3 API Reference, "Error responses"), or a
/// neutral one naming the code.
fn aws_message(code: &str) -> &'static str {
    match code {
        "AccessDenied" => "Access Denied",
        "BucketAlreadyExists" => {
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
        }
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "BucketNotEmpty" => "The bucket you tried to delete is not empty",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidPart" => {
            "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."
        }
        "InvalidPartOrder" => {
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        }
        "InvalidRange" => "The requested range is not satisfiable",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema"
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchUpload" => {
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        }
        "NoSuchVersion" => "The specified version does not exist.",
        "NoSuchTagSet" => "The TagSet does not exist",
        "NoSuchLifecycleConfiguration" => "The lifecycle configuration does not exist",
        "NoSuchCORSConfiguration" => "The CORS configuration does not exist",
        "NoSuchBucketPolicy" => "The bucket policy does not exist",
        "ObjectLockConfigurationNotFoundError" => {
            "Object Lock configuration does not exist for this bucket"
        }
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "SlowDown" => "Please reduce your request rate.",
        "ServiceUnavailable" => "Please reduce your request rate.",
        "InternalError" => "We encountered an internal error. Please try again.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidRequest" => "Invalid Request",
        "OperationAborted" => {
            "A conflicting conditional operation is currently in progress against this resource. Try again."
        }
        "InvalidObjectState" => "The operation is not valid for the current state of the object.",
        _ => "The object store refused the request.",
    }
}

/// Sets a header from a string, ignoring values that are not valid header text.
pub fn set_header(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn store_error_documents_keep_the_code_and_lose_the_stores_text() {
        let doc = br#"<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>Key not found: internal/path on node-7.store.lan</Message><Resource>/b/k</Resource></Error>"#;
        let out = String::from_utf8(super::client_error_body(StatusCode::NOT_FOUND, doc).to_vec())
            .unwrap();
        assert!(out.contains("<Code>NoSuchKey</Code>"), "{out}");
        assert!(out.contains("The specified key does not exist."), "{out}");
        assert!(!out.contains("node-7"), "{out}");
        // The store refusing sealgate's own credential is not the client's bad signature,
        // and the store's key id never reaches the client.
        let doc = br#"<Error><Code>InvalidAccessKeyId</Code><Message>No such key: GKsealgatestore</Message></Error>"#;
        let out = String::from_utf8(super::client_error_body(StatusCode::FORBIDDEN, doc).to_vec())
            .unwrap();
        assert!(out.contains("<Code>AccessDenied</Code>"), "{out}");
        assert!(!out.contains("GKsealgatestore"), "{out}");
        // No document (or not XML): a code from the status.
        let out = String::from_utf8(
            super::client_error_body(StatusCode::SERVICE_UNAVAILABLE, b"<html>proxy</html>")
                .to_vec(),
        )
        .unwrap();
        assert!(out.contains("<Code>ServiceUnavailable</Code>"), "{out}");
        assert!(!out.contains("proxy"), "{out}");
    }
    use super::*;

    #[test]
    fn client_credentials_and_framing_are_not_forwarded() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "AWS4-HMAC-SHA256 ..."),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("content-encoding", "aws-chunked,gzip"),
            ("x-amz-meta-color", "blue"),
            ("x-amz-decoded-content-length", "10"),
            ("content-type", "text/plain"),
            ("x-amz-server-side-encryption-customer-key", "a2V5"),
            (
                "x-amz-copy-source-server-side-encryption-customer-key",
                "a2V5",
            ),
            ("x-amz-server-side-encryption-customer-key-md5", "bWQ1"),
        ] {
            h.insert(HeaderName::from_static(k), v.parse().unwrap());
        }
        let out = request_headers(&h, &[]);
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-amz-content-sha256").is_none());
        assert!(out.get("x-amz-decoded-content-length").is_none());
        assert!(
            !out.keys().any(|k| k.as_str().contains("customer")),
            "SSE-C keys never reach the store: {out:?}"
        );
        assert_eq!(out.get("content-encoding").unwrap(), "gzip");
        assert_eq!(out.get("x-amz-meta-color").unwrap(), "blue");
        assert_eq!(out.get("content-type").unwrap(), "text/plain");
    }

    #[test]
    fn the_decoded_length_wins_for_aws_chunked_bodies_without_content_length() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-decoded-content-length", "42".parse().unwrap());
        assert_eq!(content_length(&h), Some(42));
        h.insert("content-length", "42".parse().unwrap());
        assert_eq!(content_length(&h), Some(42));
    }

    #[test]
    fn a_pure_aws_chunked_content_encoding_is_removed_entirely() {
        let mut h = HeaderMap::new();
        h.insert("content-encoding", "aws-chunked".parse().unwrap());
        assert!(request_headers(&h, &[]).get("content-encoding").is_none());
    }
}
