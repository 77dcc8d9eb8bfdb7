//! Allow-listed pass-through operations: forwarded to the store unchanged (re-signed).
//!
//! The store verifies the client's Content-MD5 / checksum headers itself (it sees the same
//! bytes); a checksum sent in an aws-chunked trailer cannot be forwarded, so sealgate
//! verifies that one before the body completes.

use s3s::{Body, S3Response};

use super::Ctx;
use super::checksum::Declared;
use super::forward;
use crate::error::Error;

pub async fn forward(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    if ctx.headers.contains_key("x-amz-trailer") {
        let declared = Declared::from_headers(&ctx.headers)?;
        let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
        let (resp, _) =
            super::body::send_verified(&mut ctx, headers, &declared, None, false).await?;
        return Ok(forward::to_client(resp, ctx.is_head(), &[]));
    }
    let headers = forward::request_headers(&ctx.headers, &[]);
    let body = forward::client_body(&mut ctx)?;
    let resp = ctx.forward(headers, body).await?;
    if ctx.req.op == super::classify::Op::ListBuckets && resp.status().is_success() {
        return list_buckets_without_state(&ctx, resp).await;
    }
    Ok(forward::to_client(resp, ctx.is_head(), &[]))
}

/// ListBuckets without sealgate's own state bucket (clients cannot use it anyway).
async fn list_buckets_without_state(
    ctx: &Ctx,
    resp: crate::upstream::UpResponse,
) -> Result<S3Response<Body>, Error> {
    let headers = forward::response_headers(resp.headers(), &["content-length"]);
    let xml = resp.bytes().await.map_err(Error::store_body)?;
    let body = drop_bucket(&xml, &ctx.state.state_bucket)
        .map_err(|e| Error::Internal(format!("ListBuckets answer from the store: {e}")))?;
    Ok(super::forward::rewritten(body, headers))
}

/// Removes the `<Bucket>` entry named `name` from a ListBuckets answer. Bucket names are
/// `[a-z0-9.-]`, so the entry can be found textually; everything else is kept byte for byte.
pub fn drop_bucket(xml: &[u8], name: &str) -> Result<bytes::Bytes, String> {
    let text = std::str::from_utf8(xml).map_err(|e| e.to_string())?;
    let wanted = format!("<Name>{name}</Name>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<Bucket>") {
        let end = rest[start..]
            .find("</Bucket>")
            .map(|e| start + e + "</Bucket>".len())
            .ok_or("unterminated <Bucket>")?;
        out.push_str(&rest[..start]);
        let entry = &rest[start..end];
        if !entry.contains(&wanted) {
            out.push_str(entry);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_bucket_is_dropped_from_listings_and_nothing_else() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Buckets><Bucket><Name>a</Name><CreationDate>x</CreationDate></Bucket><Bucket><Name>sealgate-state</Name><CreationDate>y</CreationDate></Bucket><Bucket><Name>sealgate-state2</Name></Bucket></Buckets><Owner><ID>o</ID></Owner></ListAllMyBucketsResult>"#;
        let out = drop_bucket(xml, "sealgate-state").unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            s,
            r#"<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Buckets><Bucket><Name>a</Name><CreationDate>x</CreationDate></Bucket><Bucket><Name>sealgate-state2</Name></Bucket></Buckets><Owner><ID>o</ID></Owner></ListAllMyBucketsResult>"#
        );
    }
}
