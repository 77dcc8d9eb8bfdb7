//! DeleteObjects, authorized key by key as AWS does: the keys the principal may not delete
//! are taken out of the request body, the rest are deleted, and the answer (`200`) gets one
//! `<Error><Code>AccessDenied</Code>` entry per denied key.
//!
//! Invariants: the client's body is verified against its checksums (Content-MD5,
//! `x-amz-checksum-*`, trailers) before anything is decided on it; the body forwarded is
//! the client's with whole `<Object>` elements removed (nothing else changes) and carries
//! a fresh Content-MD5; when every key is denied the store is not asked at all.

use bytes::Bytes;
use futures::TryStreamExt;
use http::{HeaderValue, StatusCode};
use quick_xml::events::Event;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::context::Context;
use super::table::delete_key_checks;
use super::{Identity, Outcome, audit_denial, denial_message};
use crate::error::Error;
use crate::s3::Ctx;
use crate::s3::checksum::{Declared, Verifying};
use crate::s3::forward;

/// One `<Object>` of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub version_id: Option<String>,
    /// Byte range of the whole `<Object>...</Object>` element in the body.
    span: (usize, usize),
}

/// The keys denied, to report in the answer.
#[derive(Debug)]
pub struct Denied(Vec<Entry>);

/// What may be deleted.
pub enum Authorized {
    /// Every key: the request goes on unchanged (its body re-sent as read).
    All,
    /// Some keys: the request goes on with the others; the answer gets these as errors.
    Some(Denied),
    /// No key: this is the answer.
    None(S3Response<Body>),
}

/// The `<Object>` entries of a Delete body, with their spans.
pub fn parse(xml: &[u8]) -> Result<Vec<Entry>, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::new();
    let mut current: Option<(usize, Option<String>, Option<String>)> = None;
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Eof => break,
            Event::Start(s) => {
                let name = s.local_name().as_ref().to_vec();
                if path.len() == 1 && name == b"Object" {
                    current = Some((before, None, None));
                }
                path.push(name);
            }
            Event::Empty(s) if path.len() == 1 && s.local_name().as_ref() == b"Object" => {
                return Err("an <Object> without a <Key>".into());
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                if path.len() == 1 && name == b"Object" {
                    let (start, key, version_id) = current.take().unwrap_or_default();
                    let key = key.ok_or("an <Object> without a <Key>")?;
                    let end = reader.buffer_position() as usize;
                    out.push(Entry {
                        key,
                        version_id,
                        span: (start, end),
                    });
                }
            }
            Event::Text(t) if path.len() == 3 && path[1] == b"Object" => {
                let text = t.unescape().map_err(|e| e.to_string())?.into_owned();
                if let Some(cur) = current.as_mut() {
                    match path[2].as_slice() {
                        b"Key" => cur.1 = Some(text),
                        b"VersionId" => cur.2 = Some(text),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `xml` without the spans of `drop`.
fn without(xml: &[u8], drop: &[Entry]) -> Bytes {
    let mut out = Vec::with_capacity(xml.len());
    let mut at = 0;
    for e in drop {
        out.extend_from_slice(&xml[at..e.span.0]);
        at = e.span.1;
    }
    out.extend_from_slice(&xml[at..]);
    Bytes::from(out)
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// `<Error>` entries for denied keys.
fn errors(denied: &[Entry]) -> String {
    let mut s = String::new();
    for e in denied {
        s.push_str("<Error><Key>");
        s.push_str(&escape(&e.key));
        s.push_str("</Key>");
        if let Some(v) = &e.version_id {
            s.push_str("<VersionId>");
            s.push_str(&escape(v));
            s.push_str("</VersionId>");
        }
        s.push_str("<Code>AccessDenied</Code><Message>Access Denied</Message></Error>");
    }
    s
}

fn xml_answer(body: String) -> S3Response<Body> {
    let mut r = S3Response::new(Body::from(body));
    r.status = Some(StatusCode::OK);
    forward::set_header(&mut r.headers, "content-type", "application/xml");
    r
}

/// Reads the client's body, verified against its checksums, bounded.
async fn read_verified(ctx: &mut Ctx) -> Result<Bytes, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    let stream = forward::body_stream(std::mem::take(&mut ctx.body));
    let (verifying, verdict) = Verifying::new(stream, &declared, ctx.trailers.take());
    let limit = ctx.state.max_buffered_body;
    let mut buf = Vec::new();
    let mut s = Box::pin(verifying);
    loop {
        match s.try_next().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(Error::Client(S3Error::with_message(
                        S3ErrorCode::MaxMessageLengthExceeded,
                        format!("The request body exceeds sealgate's limit of {limit} bytes."),
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(e) => {
                if let Some(Err(v)) = verdict.get() {
                    return Err(Error::Client(v));
                }
                return Err(Error::Client(S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    format!("reading the request body failed: {e}"),
                )));
            }
        }
    }
}

/// Puts `body` back as the request's body, with headers that describe it (its length and
/// a Content-MD5; the client's checksums and aws-chunked framing no longer apply).
fn replace_body(ctx: &mut Ctx, body: Bytes) {
    use base64::Engine as _;
    use md5::Digest as _;
    for h in forward::CHECKSUM_REQUEST
        .iter()
        .chain(&["x-amz-decoded-content-length", "x-amz-trailer"])
    {
        ctx.headers.remove(*h);
    }
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
    if let Ok(v) = HeaderValue::from_str(&md5) {
        ctx.headers.insert("content-md5", v);
    }
    ctx.headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    ctx.trailers = None;
    ctx.body = Body::from(body);
}

/// Decides key by key; rewrites the request body when some keys are denied.
pub async fn authorize(
    identity: &Identity,
    ctx: &mut Ctx,
    cx: &Context,
) -> Result<Authorized, Error> {
    let xml = read_verified(ctx).await?;
    let entries = parse(&xml).map_err(Error::malformed_xml)?;
    let bucket = ctx.req.bucket.clone();
    let mut denied = Vec::new();
    for e in &entries {
        let checks = delete_key_checks(&e.key, e.version_id.as_deref(), &ctx.headers);
        let mut first: Option<(&'static str, String, Outcome)> = None;
        for c in &checks {
            let resource = c.resource(bucket.as_deref(), None);
            match identity.decide(c.action, &resource, &cx.for_check(c)) {
                Outcome::Allow => {}
                o => {
                    let explicit = matches!(o, Outcome::Explicit(_));
                    if first.is_none() || explicit {
                        first = Some((c.action, resource, o));
                    }
                    if explicit {
                        break;
                    }
                }
            }
        }
        if let Some((action, resource, outcome)) = first {
            let msg = denial_message(&ctx.principal, action, Some(&resource), &outcome);
            audit_denial(ctx, action, &resource, Some(&e.key), &msg);
            denied.push(e.clone());
        }
    }
    if denied.is_empty() {
        replace_body(ctx, xml);
        return Ok(Authorized::All);
    }
    if denied.len() == entries.len() {
        return Ok(Authorized::None(xml_answer(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{}</DeleteResult>",
            errors(&denied)
        ))));
    }
    replace_body(ctx, without(&xml, &denied));
    Ok(Authorized::Some(Denied(denied)))
}

/// Adds the denied keys to the store's answer. An answer that is not a `DeleteResult`
/// (an error) is returned as it is.
pub async fn merge(mut resp: S3Response<Body>, denied: Denied) -> Result<S3Response<Body>, Error> {
    if resp.status.is_some_and(|s| s != StatusCode::OK) {
        return Ok(resp);
    }
    let body = resp
        .output
        .store_all_limited(16 * 1024 * 1024)
        .await
        .map_err(|e| Error::store_body(e.to_string()))?;
    let text = String::from_utf8_lossy(&body);
    let errs = errors(&denied.0);
    let merged = if let Some(at) = text.rfind("</DeleteResult>") {
        format!("{}{errs}{}", &text[..at], &text[at..])
    } else if let Some(at) = text.rfind("<DeleteResult")
        && let Some(close) = text[at..].find("/>")
    {
        // `<DeleteResult .../>` (nothing to report in quiet mode).
        let close = at + close;
        format!(
            "{}>{errs}</DeleteResult>{}",
            &text[..close],
            &text[close + 2..]
        )
    } else {
        return Ok(resp);
    };
    resp.headers.remove(http::header::CONTENT_LENGTH);
    resp.output = Body::from(merged);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>false</Quiet>
  <Object><Key>bob/a</Key></Object>
  <Object><Key>alice/&lt;b&gt;</Key><VersionId>v1</VersionId></Object>
  <Object><VersionId>v2</VersionId><Key>bob/c</Key></Object>
</Delete>"#;

    #[test]
    fn entries_are_parsed_with_their_spans_and_removed_whole() {
        let e = parse(BODY.as_bytes()).unwrap();
        let keys: Vec<_> = e
            .iter()
            .map(|e| (e.key.as_str(), e.version_id.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("bob/a", None),
                ("alice/<b>", Some("v1")),
                ("bob/c", Some("v2"))
            ]
        );
        let out = without(BODY.as_bytes(), &e[1..2]);
        let out = std::str::from_utf8(&out).unwrap();
        assert!(!out.contains("alice"), "{out}");
        assert_eq!(parse(out.as_bytes()).unwrap().len(), 2);
        assert_eq!(out.replace(&BODY[e[1].span.0..e[1].span.1], ""), out);
        assert!(out.contains("<Quiet>false</Quiet>") && out.contains("<Key>bob/c</Key>"));
        assert!(parse(b"<Delete><Object><VersionId>x</VersionId></Object></Delete>").is_err());
        assert!(
            parse(b"<Delete><Object>").is_err() || parse(b"<Delete><Object>").unwrap().is_empty()
        );
    }

    #[tokio::test]
    async fn denied_keys_are_added_to_the_stores_answer() {
        let denied = Denied(vec![Entry {
            key: "alice/<b>".into(),
            version_id: Some("v1".into()),
            span: (0, 0),
        }]);
        for store in [
            r#"<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>bob/a</Key></Deleted></DeleteResult>"#,
            r#"<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#,
        ] {
            let mut r = S3Response::new(Body::from(store.to_string()));
            r.status = Some(StatusCode::OK);
            let out = merge(r, Denied(denied.0.clone())).await.unwrap();
            let text = String::from_utf8(out.output.bytes().unwrap().to_vec()).unwrap();
            assert!(
                text.ends_with("<Error><Key>alice/&lt;b&gt;</Key><VersionId>v1</VersionId><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>"),
                "{text}"
            );
            assert!(parse(text.as_bytes()).is_ok());
        }
    }
}
