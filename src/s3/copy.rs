//! CopyObject.
//!
//! When the source is a sealgate object and the destination is to be encrypted, only the
//! data key's wrapping changes (new bucket/key context, maybe a new CMK): sealgate
//! unwraps the DEK as the caller, wraps it for the destination, and lets the store copy
//! the body server-side. Otherwise (plaintext source into an encrypted destination, or
//! the reverse) the bytes stream through sealgate: decrypted and/or encrypted on the way.
//!
//! Invariants: the destination never holds plaintext when encryption applies; the
//! source's sealgate metadata never carries over unchanged (its wrapped DEK is bound to
//! the source's name and would not open at the destination).

use http::Method;
use s3s::{Body, S3Response};

use super::{Ctx, forward, plaintext, rules, source, sse};
use crate::error::Error;
use crate::object::describe::{self, Described};
use crate::object::write::{Writer, computing_checksum};
use crate::object::{Alg, ETag, meta};
use crate::upstream::UpBody;

pub async fn copy_object(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    meta::reject_reserved(&ctx.headers)?;
    let requested = ctx.req.sse.clone();
    let src = ctx
        .req
        .copy_source
        .clone()
        .ok_or_else(|| Error::Internal("CopyObject without a source".into()))?;
    let dest = ctx.req.object()?;
    let source = source::open(&ctx, &src).await?;
    let head = &source.head;
    let replace = ctx
        .headers
        .get("x-amz-metadata-directive")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"REPLACE"));
    // An SSE-C source copied onto itself without a customer key for the destination
    // changes its encryption (to the bucket's default), which AWS allows.
    let source_customer = source
        .sealed
        .as_ref()
        .is_some_and(|(m, _)| m.envelope.is_customer());
    if !replace
        && src.bucket == dest.bucket
        && src.key == dest.key
        && src.version_id.is_none()
        && requested.is_none()
        && !source_customer
    {
        return Err(Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let dest_sse = rules::effective(&ctx, requested).await?;
    // What the destination describes itself as: the source's (COPY) or the request's (REPLACE).
    let mut headers = if replace {
        forward::descriptive_headers(&ctx.headers)
    } else {
        let mut view = forward::response_headers(head.headers(), &[]);
        describe::restore(head.headers(), &mut view);
        forward::descriptive_headers(&view)
    };
    for passthrough in [
        "x-amz-tagging-directive",
        "x-amz-tagging",
        "x-amz-storage-class",
        "x-amz-acl",
        "x-amz-object-lock-mode",
        "x-amz-object-lock-retain-until-date",
        "x-amz-object-lock-legal-hold",
    ] {
        if let Some(v) = ctx.headers.get(passthrough) {
            headers.insert(passthrough, v.clone());
        }
    }
    // SSE-S3 destinations get the plaintext MD5 as their ETag; a source without one
    // (SSE-KMS, or written before sealgate kept MD5s) streams through sealgate.
    let md5 = dest_sse
        .as_ref()
        .is_some_and(|s| s.alg == Alg::S3 && ctx.state.encryption.md5_etags);
    // The copy's checksum: the algorithm the request names, else the source's (AWS
    // copies it). A re-wrap keeps the source's; another algorithm is computed while the
    // bytes stream.
    let requested_algo = source::requested_algo(&ctx.headers)?;
    let source_algo = source
        .sealed
        .as_ref()
        .and_then(|(m, _)| m.checksum.as_ref())
        .map(|c| c.algo());
    let keeps_checksum = requested_algo.is_none() || requested_algo == source_algo;
    match (&source.sealed, dest_sse) {
        (Some((meta, dek)), Some(sse))
            if !(md5 && meta.etag == ETag::Store)
                && keeps_checksum
                && (sse.customer.is_none() || meta.rewraps_to_customer()) =>
        {
            // Re-wrap only: the store copies the body (and a checksum trailer with it).
            let etag = source.etag.clone();
            let checksum = ctx
                .objects()
                .client_checksum(&source.obj, meta, dek, head.headers())
                .await?;
            let env = ctx.objects().rewrap(ctx.caller(), dek, &sse, &dest).await?;
            // The body keeps its DEK and salts: only the envelope and what the object
            // says about itself change.
            describe::prepare_write(&mut headers);
            let new_meta = meta.rewrapped(env, dek, Described::of(&headers));
            new_meta.write(&mut headers);
            forward::set_header(&mut headers, "x-amz-metadata-directive", "REPLACE");
            forward::set_header(&mut headers, "x-amz-copy-source", &src.copy_source_header());
            if let Some(e) = head.headers().get(http::header::ETAG) {
                headers.insert("x-amz-copy-source-if-match", e.clone());
            }
            let resp = ctx.forward(headers, UpBody::Empty).await?;
            if !resp.status().is_success() {
                return Ok(forward::to_client(
                    resp,
                    false,
                    &forward::response_drop_list(),
                ));
            }
            let store_headers = resp.headers().clone();
            let answer = resp.bytes().await.map_err(Error::store_body)?;
            let store_etag = crate::xml::texts(&answer, &["ETag"])
                .map_err(Error::Internal)?
                .into_iter()
                .next()
                .unwrap_or_default();
            let client_etag = (new_meta.etag != ETag::Store).then_some(etag);
            plaintext::remember_with(
                &ctx,
                &dest,
                &store_etag,
                new_meta.size,
                client_etag.clone(),
                checksum.clone(),
            );
            // The store's ETag in S3's quoted form (SeaweedFS answers copies with a bare
            // one), as HEAD and listings give it.
            let e = client_etag.unwrap_or_else(|| crate::object::read::quoted(&store_etag));
            let answer = crate::xml::rewrite_text(&answer, |p, _| {
                if p.last().map(String::as_str) == Some("ETag") {
                    crate::xml::Edit::Replace(e.clone())
                } else {
                    crate::xml::Edit::Keep
                }
            })
            .map_err(Error::Internal)?;
            let answer = match &checksum {
                Some(c) => c.add_to(answer, "CopyObjectResult"),
                None => answer,
            };
            let mut out = S3Response::new(Body::from(answer));
            out.status = Some(http::StatusCode::OK);
            out.headers = forward::response_headers(
                &store_headers,
                &[&["content-length"][..], &forward::response_drop_list()].concat(),
            );
            sse::response_headers(&mut out.headers, &new_meta.envelope, ctx.req.ssec.as_ref());
            // The version read from, as AWS answers (SeaweedFS leaves it out).
            if let Some(v) = head.headers().get("x-amz-version-id")
                && !out.headers.contains_key("x-amz-copy-source-version-id")
            {
                out.headers
                    .insert("x-amz-copy-source-version-id", v.clone());
            }
            Ok(out)
        }
        (None, None) => {
            // Plaintext to plaintext (encryption configured off): the store copies.
            let mut h = forward::request_headers(&ctx.headers, &forward::write_drop_list());
            forward::set_header(&mut h, "x-amz-copy-source", &src.copy_source_header());
            let resp = ctx.forward(h, UpBody::Empty).await?;
            Ok(forward::to_client(resp, false, &[]))
        }
        (_, dest_sse) => {
            // The bytes must change form: stream them through sealgate.
            let (plain, len) = source::plaintext(&ctx, &source, None).await?;
            let (body, outcome, tapped) = match dest_sse {
                Some(sse) => {
                    let (env, dek) = ctx.objects().new_key(ctx.caller(), &sse, &dest).await?;
                    let (writer, outcome) = Writer::single(env, dek, len, md5, None);
                    let algo = requested_algo.or(source_algo);
                    let (plain, writer, tapped) = computing_checksum(plain, writer, algo);
                    let (stream, len) = writer.seal_stream(plain, &mut headers);
                    (UpBody::Stream { stream, len }, Some(outcome), tapped)
                }
                None => (UpBody::Stream { stream: plain, len }, None, None),
            };
            let body = UpBody::Checked(Box::new(body));
            ctx.method = Method::PUT;
            let resp = ctx.forward(headers, body).await?;
            if !resp.status().is_success() {
                return Ok(forward::to_client(resp, false, &[]));
            }
            let resp_headers = &resp.headers().clone();
            let written = outcome.map(|o| o.get()).unwrap_or_default();
            let etag = written.md5.filter(|_| md5).map(|m| ETag::quoted_md5(&m));
            let checksum = tapped.as_ref().and_then(|t| t.served());
            let out = source::copy_result(
                "CopyObjectResult",
                &source,
                &resp,
                written.meta.as_ref().map(|m| &m.envelope),
                ctx.req.ssec.as_ref(),
                etag.as_deref(),
                checksum.as_ref(),
            );
            if let Some(m) = &written.meta {
                let store_etag = plaintext::store_etag(resp_headers);
                plaintext::remember_with(&ctx, &dest, &store_etag, m.size, etag, checksum);
            }
            Ok(out)
        }
    }
}
