//! ListObjects (V1/V2), ListObjectVersions and GetObjectAttributes: sizes in plaintext terms.
//!
//! A listing carries no metadata, so the plaintext size and client ETag of each listed
//! object come from what sealgate already knows about that version
//! ([`crate::object::known`], filled by writes and reads), else from its metadata (HEAD,
//! concurrently). Objects sealgate did not encrypt keep what the store reports.
//!
//! Invariant: a listing never reports a ciphertext size as a plaintext size: an object
//! whose metadata cannot be read or verified is listed with the store's values and a log
//! line, and the rest of the page is served.

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use percent_encoding::percent_decode_str;
use s3s::{Body, S3Response};

use super::classify::Op;
use super::{Ctx, forward};
use crate::error::Error;
use crate::object::checksum::Served;
use crate::object::known::Known;
use crate::object::read::check_cipher_len;
use crate::object::{ETag, ObjectMeta, ObjectRef, meta};
use crate::upstream::UpBody;
use crate::xml::{Edit, rewrite_text};

/// How many HEADs a listing issues at once.
const CONCURRENCY: usize = 16;
/// Largest listing body sealgate rewrites.
const MAX_LIST_BODY: usize = 16 * 1024 * 1024;

/// One listed object version.
#[derive(Debug, Clone, Default)]
struct Entry {
    key: String,
    version: Option<String>,
    etag: String,
}

/// What a listing reports for one object version: its plaintext size and client ETag
/// (`None`: as the store listed it, for objects sealgate did not write). An object whose
/// metadata cannot be read or verified is listed as stored, with a log line: one bad
/// object never fails a page.
async fn describe(ctx: &Ctx, bucket: &str, e: Entry) -> Option<Known> {
    if let Some(k) = ctx.objects().known.get(bucket, &e.key, &e.etag) {
        return Some(k);
    }
    let obj = ObjectRef {
        bucket: bucket.to_string(),
        key: e.key.clone(),
        version_id: e.version.clone(),
    };
    match resolve(ctx, &obj).await {
        Ok(k) => k,
        Err(err) => {
            tracing::warn!(bucket = %bucket, key = %e.key, error = %err, "listed object unreadable; listed with the store's size and ETag");
            None
        }
    }
}

/// Reads one version's metadata (and, for an MD5 ETag, opens its key) as the caller.
async fn resolve(ctx: &Ctx, obj: &ObjectRef) -> Result<Option<Known>, Error> {
    let resp = ctx.objects().head(obj, HeaderMap::new()).await?;
    if !resp.status().is_success() {
        // Deleted since the listing: nothing better to report than the store's value.
        return Ok(None);
    }
    let Some(meta) = ObjectMeta::read(resp.headers())? else {
        return Ok(None);
    };
    let store_etag = super::plaintext::store_etag(resp.headers());
    let (meta, etag) = if meta.envelope.is_customer() {
        // SSE-C: a listing has no customer key, so nothing can be authenticated. The size
        // is the one the metadata (a multipart object: its part list) says, checked
        // against the stored length; the ETag is the store's, as for every SSE-C object
        // (docs/format.md, SSE-C).
        let meta = match meta.upload {
            Some(u) if meta.needs_manifest() => {
                let m = ctx.objects().manifest_unverified(&u).await?;
                meta.with_manifest(&m)
            }
            _ => meta,
        };
        check_cipher_len(resp.content_length(), &meta)?;
        (meta, None)
    } else if meta.etag == ETag::Store && !meta.needs_manifest() {
        // The size is the one the stored length implies (checked), and the ETag the
        // store's: no key needed.
        check_cipher_len(resp.content_length(), &meta)?;
        (meta, None)
    } else {
        let (meta, dek) = ctx
            .objects()
            .open(ctx.caller(), meta, None, obj, resp.content_length())
            .await?;
        let etag = ctx
            .objects()
            .client_etag(obj, &meta, &dek, resp.headers())
            .await?;
        (meta, (etag != store_etag).then_some(etag))
    };
    let known = Known {
        size: meta.size,
        etag,
        checksum: None,
    };
    ctx.objects()
        .known
        .put(&obj.bucket, &obj.key, &store_etag, known.clone());
    Ok(Some(known))
}

/// Collects the listed entries (in document order) under `container` elements.
fn entries(xml: &[u8], container: &str, url_encoded: bool) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::new();
    rewrite_text(xml, |p, t| {
        let n = p.len();
        if n >= 2 && p[n - 2] == container {
            match p[n - 1].as_str() {
                "Key" => {
                    let k = if url_encoded {
                        percent_decode_str(t).decode_utf8_lossy().into_owned()
                    } else {
                        t.to_string()
                    };
                    out.push(Entry {
                        key: k,
                        ..Entry::default()
                    });
                }
                "VersionId" => {
                    if let Some(e) = out.last_mut() {
                        e.version = (t != "null").then(|| t.to_string());
                    }
                }
                "ETag" => {
                    if let Some(e) = out.last_mut() {
                        e.etag = t.to_string();
                    }
                }
                _ => {}
            }
        }
        Edit::Keep
    })?;
    Ok(out)
}

pub async fn list(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    let store_headers = forward::response_headers(resp.headers(), &["content-length"]);
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_LIST_BODY)
    {
        return Err(Error::Internal(
            "listing from the store is larger than sealgate rewrites".into(),
        ));
    }
    let body = resp.bytes().await.map_err(Error::store_body)?;
    let container = if ctx.req.op == Op::ListObjectVersions {
        "Version"
    } else {
        "Contents"
    };
    let url_encoded = ctx.req.query_value("encoding-type") == Some("url");
    let list = entries(&body, container, url_encoded)
        .map_err(|e| Error::Internal(format!("listing from the store: {e}")))?;
    let bucket = ctx.req.bucket.clone().unwrap_or_default();
    let known: Vec<Option<Known>> =
        futures::stream::iter(list.into_iter().map(|e| describe(&ctx, &bucket, e)))
            .buffered(CONCURRENCY)
            .collect()
            .await;
    let mut i: Option<usize> = None;
    let body = rewrite_text(&body, |p, _| {
        let n = p.len();
        if n < 2 || p[n - 2] != container {
            return Edit::Keep;
        }
        match p[n - 1].as_str() {
            "Key" => {
                i = Some(i.map_or(0, |i| i + 1));
                Edit::Keep
            }
            "Size" => match i.and_then(|i| known.get(i)).cloned().flatten() {
                Some(k) => Edit::Replace(k.size.to_string()),
                None => Edit::Keep,
            },
            "ETag" => match i.and_then(|i| known.get(i)).cloned().flatten() {
                Some(Known { etag: Some(e), .. }) => Edit::Replace(e),
                _ => Edit::Keep,
            },
            _ => Edit::Keep,
        }
    })
    .map_err(|e| Error::Internal(format!("listing from the store: {e}")))?;
    Ok(forward::rewritten(body, store_headers))
}

/// GetObjectAttributes' `ObjectParts` of a multipart object (the part count is
/// `<PartsCount>` on the wire, `TotalPartsCount` in the SDKs), in plaintext sizes, paged by
/// `x-amz-max-parts` (default 1000) after `x-amz-part-number-marker` as AWS pages them.
fn object_parts(
    h: &http::HeaderMap,
    parts: &[(u32, u64)],
    checksums: &std::collections::HashMap<u32, Served>,
) -> Result<String, Error> {
    let number = |name: &str, default: u32| -> Result<u32, Error> {
        match h
            .get(name)
            .map(|v| v.to_str().unwrap_or("").trim().parse::<u32>())
        {
            None => Ok(default),
            Some(Ok(n)) => Ok(n),
            Some(Err(_)) => Err(Error::invalid_argument(format!(
                "{name} must be a whole number"
            ))),
        }
    };
    let max = number("x-amz-max-parts", 1000)?.min(1000);
    let marker = number("x-amz-part-number-marker", 0)?;
    let after: Vec<&(u32, u64)> = parts.iter().filter(|(n, _)| *n > marker).collect();
    let page = &after[..after.len().min(max as usize)];
    let mut x = format!(
        "<ObjectParts><PartsCount>{}</PartsCount><PartNumberMarker>{marker}</PartNumberMarker>",
        parts.len()
    );
    if let Some((last, _)) = page.last() {
        x.push_str(&format!(
            "<NextPartNumberMarker>{last}</NextPartNumberMarker>"
        ));
    }
    x.push_str(&format!(
        "<MaxParts>{max}</MaxParts><IsTruncated>{}</IsTruncated>",
        after.len() > page.len()
    ));
    for (n, size) in page {
        // Each part's checksum, as the client sent it (AWS lists them).
        let sum = checksums.get(n).map_or(String::new(), Served::element);
        x.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><Size>{size}</Size>{sum}</Part>"
        ));
    }
    x.push_str("</ObjectParts>");
    Ok(x)
}

/// GetObjectAttributes for sealgate objects is answered from the object's metadata: the
/// store's checksums and part sizes are about ciphertext.
pub async fn attributes(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let obj = ctx.req.object()?;
    let head = ctx
        .objects()
        .head(
            &obj,
            forward::request_headers(
                &ctx.headers,
                &[
                    "x-amz-object-attributes",
                    "x-amz-max-parts",
                    "x-amz-part-number-marker",
                ],
            ),
        )
        .await?;
    let Some(meta) = super::plaintext::sealed_meta(&ctx, &head).await? else {
        let headers = forward::request_headers(&ctx.headers, &[]);
        let resp = ctx.forward(headers, UpBody::Empty).await?;
        return Ok(forward::to_client(resp, false, forward::STORE_SSE));
    };
    let (meta, dek, etag) = ctx.open_described(&obj, meta, &head).await?;
    let wanted: Vec<String> = ctx
        .headers
        .get_all("x-amz-object-attributes")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    if wanted.is_empty() {
        return Err(Error::invalid_argument(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
        ));
    }
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetObjectAttributesResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    for w in &wanted {
        match w.as_str() {
            "ETag" => x.push_str(&format!(
                "<ETag>{}</ETag>",
                quick_xml::escape::escape(etag.trim_matches('"'))
            )),
            "ObjectSize" => x.push_str(&format!("<ObjectSize>{}</ObjectSize>", meta.size)),
            "StorageClass" => {
                let sc = head
                    .headers()
                    .get("x-amz-storage-class")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("STANDARD");
                x.push_str(&format!(
                    "<StorageClass>{}</StorageClass>",
                    quick_xml::escape::escape(sc)
                ));
            }
            "ObjectParts" if meta.upload.is_some() || meta.layout.headers_in_body => {
                let sums = ctx.objects().part_checksums(&meta, &dek, None).await?;
                let sums = sums.into_iter().collect();
                x.push_str(&object_parts(&ctx.headers, &meta.layout.parts, &sums)?);
            }
            // The client's checksum sealgate kept (the store's are about ciphertext).
            "Checksum" => {
                if let Some(c) = ctx
                    .objects()
                    .client_checksum(&obj, &meta, &dek, head.headers())
                    .await?
                {
                    x.push_str(&format!("<Checksum>{}</Checksum>", c.xml()));
                }
            }
            _ => {}
        }
    }
    x.push_str("</GetObjectAttributesResponse>");
    let mut out = S3Response::new(Body::from(Bytes::from(x)));
    out.status = Some(StatusCode::OK);
    let mut drop = forward::response_drop_list();
    drop.push("content-length");
    drop.push("content-type");
    out.headers = forward::response_headers(head.headers(), &drop);
    meta::strip(&mut out.headers);
    for h in [
        "etag",
        "accept-ranges",
        "x-amz-storage-class",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "expires",
    ] {
        out.headers.remove(h);
    }
    remove_user_meta(&mut out.headers);
    forward::set_header(&mut out.headers, "content-type", "application/xml");
    Ok(out)
}

/// GetObjectAttributes does not return user metadata.
fn remove_user_meta(h: &mut HeaderMap) {
    let names: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("x-amz-meta-"))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_entries_are_collected_in_order_with_versions() {
        let xml = br#"<ListVersionsResult><Version><Key>a%20b</Key><VersionId>v1</VersionId><ETag>"e1"</ETag><Size>40</Size></Version><DeleteMarker><Key>x</Key></DeleteMarker><Version><Key>c</Key><VersionId>null</VersionId><ETag>"e2"</ETag><Size>17</Size></Version></ListVersionsResult>"#;
        let e = entries(xml, "Version", true).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (
                e[0].key.as_str(),
                e[0].version.as_deref(),
                e[0].etag.as_str()
            ),
            ("a b", Some("v1"), "\"e1\"")
        );
        assert_eq!((e[1].key.as_str(), e[1].version.as_deref()), ("c", None));
    }
}
