//! PutObject. Client checksums are verified by sealgate against the bytes the client sent
//! and are not forwarded (the store's bytes will be ciphertext); the verified checksum is
//! echoed in the response as S3 does.

use futures::StreamExt;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::Ctx;
use super::checksum::{Algo, Declared, Verifying, b64};
use super::forward;
use crate::error::Error;
use crate::upstream::UpBody;

pub async fn put_object(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    let headers = forward::request_headers(&ctx.headers, forward::CHECKSUM_REQUEST);
    let (resp, digests) = send_verified(&mut ctx, headers, &declared).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
    if ok {
        echo_checksums(&mut out, &digests);
    }
    Ok(out)
}

/// Adds the verified `x-amz-checksum-*` value to a successful response.
pub fn echo_checksums(out: &mut S3Response<Body>, digests: &[(Algo, Vec<u8>)]) {
    for (algo, d) in digests {
        if *algo != Algo::Md5 {
            forward::set_header(&mut out.headers, algo.header(), &b64(d));
        }
    }
}

/// Streams the client body to the store through the checksum verifier. On a mismatch the
/// store never receives the whole body, and the client gets BadDigest.
pub async fn send_verified(
    ctx: &mut Ctx,
    headers: http::HeaderMap,
    declared: &Declared,
) -> Result<(reqwest::Response, super::checksum::Digests), Error> {
    let len = forward::content_length(&ctx.headers).ok_or_else(|| {
        Error::Client(S3Error::with_message(
            S3ErrorCode::MissingContentLength,
            "You must provide the Content-Length HTTP header.",
        ))
    })?;
    let body = forward::body_stream(std::mem::take(&mut ctx.body));
    let (mut verifying, verdict) = Verifying::new(body, declared, ctx.trailers.take());
    let up_body = if len == 0 {
        // Nothing will poll an empty body: check it here.
        while let Some(chunk) = verifying.next().await {
            if chunk.as_ref().is_ok_and(|c| !c.is_empty()) {
                return Err(Error::Client(S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    "The body is longer than its Content-Length.",
                )));
            }
        }
        if let Some(Err(e)) = verdict.get() {
            return Err(Error::Client(e));
        }
        UpBody::Empty
    } else {
        UpBody::Stream {
            stream: verifying.boxed(),
            len,
        }
    };
    let result = ctx
        .state
        .upstream
        .send(forward::up_request(ctx, headers, up_body))
        .await;
    match (result, verdict.get()) {
        (_, Some(Err(e))) => Err(Error::Client(e)),
        (Err(e), _) => Err(e.into()),
        (Ok(resp), v) => {
            let digests = match v {
                Some(Ok(d)) => d,
                // The store answered before reading the body (e.g. NoSuchBucket).
                _ => Vec::new(),
            };
            Ok((resp, digests))
        }
    }
}
