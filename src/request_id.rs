//! The request id clients see: `x-amz-request-id` on every answer and `<RequestId>` in
//! every S3 error document, the same value as in sealgate's log (`request` span) and its
//! `x-sealgate-request-id` header. A store's own request id never reaches the client (it
//! names the store's request, not the client's, and is logged with the store's error).

use bytes::Bytes;
use http::{HeaderValue, Response};
use s3s::Body;

tokio::task_local! {
    static CURRENT: String;
}

/// Runs `f` as the handling of request `id` (readable with [`current`]).
pub async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Longest error document given a `<RequestId>` (sealgate's are far shorter).
const MAX_DOC: usize = 64 * 1024;

/// Sets `x-amz-request-id` and, on an error answer whose XML document is in memory and
/// has none, adds `<RequestId>` to it (documents streamed from the store get theirs when
/// they are written, `s3::forward::client_error_body`).
pub fn stamp(resp: &mut Response<Body>, id: &str) {
    let Ok(v) = HeaderValue::from_str(id) else {
        return;
    };
    resp.headers_mut().insert("x-amz-request-id", v.clone());
    resp.headers_mut().insert("x-sealgate-request-id", v);
    if resp.status().as_u16() < 400 {
        return;
    }
    let Some(doc) = resp.body().bytes() else {
        return;
    };
    if let Some(with_id) = with_request_id(&doc, id) {
        if resp.headers().contains_key(http::header::CONTENT_LENGTH) {
            resp.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(with_id.len()),
            );
        }
        *resp.body_mut() = Body::from(with_id);
    }
}

/// `doc` with `<RequestId>id</RequestId>` before its closing `</Error>`, if it is an S3
/// error document without one.
pub fn with_request_id(doc: &[u8], id: &str) -> Option<Bytes> {
    if doc.len() > MAX_DOC {
        return None;
    }
    let text = std::str::from_utf8(doc).ok()?;
    if !text.contains("<Error>") || text.contains("<RequestId>") {
        return None;
    }
    let at = text.rfind("</Error>")?;
    let id = quick_xml::escape::escape(id);
    Some(Bytes::from(format!(
        "{}<RequestId>{id}</RequestId>{}",
        &text[..at],
        &text[at..]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_get_the_request_id_once() {
        let doc =
            b"<?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code><Message>m</Message></Error>";
        let out = with_request_id(doc, "ABC123").unwrap();
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code><Message>m</Message><RequestId>ABC123</RequestId></Error>"
        );
        assert!(with_request_id(&out, "ABC123").is_none());
        assert!(with_request_id(b"not xml", "x").is_none());
        assert!(with_request_id(b"<ListBucketResult/>", "x").is_none());
    }
}
