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
use crate::upstream::UpBody;

pub async fn forward(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    if ctx.headers.contains_key("x-amz-trailer") {
        let declared = Declared::from_headers(&ctx.headers)?;
        let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
        let (resp, _) =
            super::body::send_verified(&mut ctx, headers, &declared, None, false).await?;
        return Ok(forward::to_client(resp, ctx.is_head(), &[]));
    }
    let headers = forward::request_headers(&ctx.headers, &[]);
    if ctx.req.op == super::classify::Op::PutBucketPolicy {
        let policy = super::body::read_small_body(&mut ctx).await?;
        check_store_policy(&policy)?;
        let resp = ctx.forward(headers, UpBody::Bytes(policy)).await?;
        return Ok(forward::to_client(resp, false, &[]));
    }
    let body = forward::client_body(&mut ctx)?;
    let resp = ctx.forward(headers, body).await?;
    if ctx.req.op == super::classify::Op::ListBuckets && resp.status().is_success() {
        return list_buckets_without_state(&ctx, resp).await;
    }
    Ok(forward::to_client(resp, ctx.is_head(), &[]))
}

/// A bucket policy for the store must not condition on the request's encryption: the
/// store never sees a client's `x-amz-server-side-encryption*` headers (sealgate
/// encrypts, and sends none), so such a statement would deny every upload, or none. It
/// is refused with where to put it instead (sealgate's own policies evaluate those keys).
/// A policy that does not parse is left to the store to refuse.
fn check_store_policy(policy: &[u8]) -> Result<(), Error> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(policy) else {
        return Ok(());
    };
    // Element names in any case: some stores accept `statement` and `condition`.
    let element = |v: &'_ serde_json::Value, name: &str| -> Option<serde_json::Value> {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let statements = match element(&doc, "Statement") {
        Some(serde_json::Value::Array(a)) => a,
        Some(s @ serde_json::Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    for st in &statements {
        let Some(serde_json::Value::Object(conditions)) = element(st, "Condition") else {
            continue;
        };
        for keys in conditions.values().filter_map(|v| v.as_object()) {
            if let Some(k) = keys.keys().find(|k| {
                k.to_ascii_lowercase()
                    .starts_with("s3:x-amz-server-side-encryption")
            }) {
                return Err(Error::client(
                    s3s::S3ErrorCode::MalformedPolicy,
                    format!(
                        "This bucket policy has a condition on {k}, which the store behind sealgate cannot evaluate: sealgate encrypts, and the store never sees the client's encryption headers, so the statement would apply to every upload or to none. Put the condition in a policy of sealgate's access keys instead (docs/operations.md, \"Authorization between principals\"), or set the bucket's default encryption through sealgate."
                    ),
                ));
            }
        }
    }
    Ok(())
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
    fn store_policies_conditioned_on_encryption_headers_are_refused() {
        let deny_unencrypted = br#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#;
        let e = check_store_policy(deny_unencrypted).unwrap_err();
        assert!(
            e.to_string().contains("s3:x-amz-server-side-encryption"),
            "{e}"
        );
        // One statement as an object, an SSE-C key, any case.
        let ssec = br#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"*","Condition":{"Null":{"S3:X-Amz-Server-Side-Encryption-Customer-Algorithm":"true"}}}}"#;
        assert!(check_store_policy(ssec).is_err());
        let lower = br#"{"statement":[{"effect":"Deny","condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"AES256"}}}]}"#;
        assert!(check_store_policy(lower).is_err());
        // Other conditions, and documents that do not parse, are the store's to judge.
        let ip = br#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
        assert!(check_store_policy(ip).is_ok());
        assert!(check_store_policy(b"not json").is_ok());
    }

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
