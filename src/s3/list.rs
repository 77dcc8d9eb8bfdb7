//! ListObjects (V1/V2), ListObjectVersions and GetObjectAttributes: sizes in plaintext terms.
//!
//! A listing carries no metadata, so the plaintext size of each listed object comes from
//! its metadata (HEAD), fetched concurrently and cached by (bucket, key, ETag) — an ETag
//! names one immutable object version, so a cached size never goes stale. Objects sealgate
//! did not encrypt keep the size the store reports.
//!
//! Invariant: a listing never reports a ciphertext size for a sealgate object; if a size
//! cannot be determined the request fails rather than report a wrong one.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use percent_encoding::percent_decode_str;
use s3s::{Body, S3Response};

use super::classify::Op;
use super::{Ctx, forward};
use crate::error::Error;
use crate::object::{ObjectMeta, ObjectRef, meta};
use crate::upstream::UpBody;
use crate::xml::{Edit, rewrite_text};

/// How many HEADs a listing issues at once.
const CONCURRENCY: usize = 16;
/// Largest listing body sealgate rewrites.
const MAX_LIST_BODY: usize = 16 * 1024 * 1024;

/// Plaintext sizes by (bucket, key, ETag); `None` = not a sealgate object.
#[derive(Debug, Default)]
pub struct SizeCache(Mutex<HashMap<(String, String, String), Option<u64>>>);

impl SizeCache {
    fn get(&self, k: &(String, String, String)) -> Option<Option<u64>> {
        self.0.lock().ok()?.get(k).copied()
    }
    fn put(&self, k: (String, String, String), v: Option<u64>) {
        if let Ok(mut g) = self.0.lock() {
            if g.len() > 100_000 {
                g.clear();
            }
            g.insert(k, v);
        }
    }
}

/// One listed object version.
#[derive(Debug, Clone, Default)]
struct Entry {
    key: String,
    version: Option<String>,
    etag: String,
}

/// The plaintext size of one object version, from its metadata.
async fn plain_size(
    state: std::sync::Arc<super::State>,
    bucket: String,
    e: Entry,
) -> Result<Option<u64>, Error> {
    let ck = (bucket.clone(), e.key.clone(), e.etag.clone());
    if let Some(v) = state.sizes.get(&ck) {
        return Ok(v);
    }
    let obj = ObjectRef {
        bucket,
        key: e.key.clone(),
        version_id: e.version.clone(),
    };
    let resp = state.objects.head(&obj, HeaderMap::new()).await?;
    if !resp.status().is_success() {
        // Deleted since the listing: nothing better to report than the store's value.
        return Ok(None);
    }
    let size = ObjectMeta::read(resp.headers())?.map(|m| m.size);
    state.sizes.put(ck, size);
    Ok(size)
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
    let sizes: Vec<Result<Option<u64>, Error>> = futures::stream::iter(
        list.into_iter()
            .map(|e| plain_size(ctx.state.clone(), bucket.clone(), e)),
    )
    .buffered(CONCURRENCY)
    .collect()
    .await;
    let sizes: Vec<Option<u64>> = sizes.into_iter().collect::<Result<_, _>>()?;
    let mut i = 0usize;
    let body = rewrite_text(&body, |p, t| {
        let n = p.len();
        if n >= 2 && p[n - 2] == container && p[n - 1] == "Size" {
            let s = sizes.get(i).copied().flatten();
            i += 1;
            if let Some(s) = s {
                return Edit::Replace(s.to_string());
            }
            let _ = t;
        }
        Edit::Keep
    })
    .map_err(|e| Error::Internal(format!("listing from the store: {e}")))?;
    let mut out = S3Response::new(Body::from(body));
    out.status = Some(StatusCode::OK);
    out.headers = store_headers;
    Ok(out)
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
    let meta = if head.status().is_success() {
        ObjectMeta::read(head.headers())?
    } else {
        None
    };
    let Some(meta) = meta else {
        let headers = forward::request_headers(&ctx.headers, &[]);
        let resp = ctx.forward(headers, UpBody::Empty).await?;
        return Ok(forward::to_client(resp, false, &[]));
    };
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
            "ETag" => {
                if let Some(e) = head
                    .headers()
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                {
                    x.push_str(&format!(
                        "<ETag>{}</ETag>",
                        quick_xml::escape::escape(e.trim_matches('"'))
                    ));
                }
            }
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
            "ObjectParts" if meta.layout.headers_in_body => {
                x.push_str(&format!(
                    "<ObjectParts><TotalPartsCount>{}</TotalPartsCount></ObjectParts>",
                    meta.layout.parts.len()
                ));
            }
            // Checksums the store holds are about ciphertext; sealgate keeps none to report.
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
