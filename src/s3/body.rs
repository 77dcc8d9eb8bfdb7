//! Client request bodies: verified against the client's checksums, pre-read when small,
//! transformed (encrypted) and streamed to the store; and small XML bodies read whole.
//!
//! Invariants: a body that fails a client checksum never reaches the store whole (the
//! verifier holds back its last chunk), so the store stores nothing and the client gets
//! BadDigest; a client body that fails (short, stalled) is reported as the client's
//! error; at most one segment of a body is held in memory, and an XML body at most the
//! configured bound.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::HeaderMap;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::checksum::{Algo, Declared, Verifying, b64};
use super::{Ctx, forward};
use crate::error::Error;
use crate::object::ByteStream;
use crate::object::write::{ChecksumSource, Writer, computing_checksum};
use crate::upstream::UpBody;

/// The plaintext length the client declared; S3 requires one for PutObject/UploadPart.
pub fn declared_len(ctx: &Ctx) -> Result<u64, Error> {
    let len = forward::content_length(&ctx.headers).ok_or_else(Error::missing_content_length)?;
    if len > crate::crypto::format::MAX_PLAIN {
        return Err(Error::Client(S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size (5 TiB).",
        )));
    }
    Ok(len)
}

/// The MD5 the client declared in Content-MD5 (verified by the time the upload is
/// stored).
pub fn declared_md5(declared: &Declared) -> Option<[u8; 16]> {
    declared
        .expected
        .iter()
        .find(|e| e.algo == Algo::Md5)
        .and_then(|e| e.value.as_ref())
        .and_then(|v| v.as_slice().try_into().ok())
}

/// Adds the verified `x-amz-checksum-*` value to a successful response.
pub fn echo_checksums(out: &mut S3Response<Body>, digests: &[(Algo, Vec<u8>)]) {
    for (algo, d) in digests {
        if *algo != Algo::Md5 {
            forward::set_header(&mut out.headers, algo.header(), &b64(d));
        }
    }
}

type PlainStream = ByteStream;

/// Bodies up to this many bytes (one segment) are read whole before the store is called.
const PREREAD_MAX: u64 = crate::crypto::format::SEGMENT;

/// S3's message for a body shorter than its Content-Length.
const SHORT_BODY: &str =
    "You did not provide the number of bytes specified by the Content-Length HTTP header.";

/// A body that carries more than its declared length.
const LONG_BODY: &str = "The body is longer than its Content-Length.";

/// Records how the client's body failed, if it did, so that the client is told about its
/// own error rather than about the store's.
#[derive(Clone, Default)]
struct ClientFailure(std::sync::Arc<std::sync::OnceLock<bool>>);

impl ClientFailure {
    fn watch(&self, s: PlainStream) -> PlainStream {
        let me = self.clone();
        s.inspect(move |r| {
            if let Err(e) = r {
                let _ = me.0.set(crate::limits::stalled(e));
            }
        })
        .boxed()
    }

    /// The S3 error for a client body that failed before its end.
    fn error(&self) -> Option<S3Error> {
        let stalled = *self.0.get()?;
        Some(if stalled {
            S3Error::with_message(
                S3ErrorCode::RequestTimeout,
                "Your socket connection to the server was not read from or written to within the timeout period.",
            )
        } else {
            S3Error::with_message(S3ErrorCode::IncompleteBody, SHORT_BODY)
        })
    }
}

/// Collects a stream of at most `max` bytes into one buffer; a longer one is the client's
/// error as soon as it goes past `max` (the declared length bounds what is held, whatever
/// the body really carries). A client checksum mismatch is BadDigest and a failed client
/// body is the client's error; nothing has reached the store then.
async fn preread(
    mut s: PlainStream,
    max: u64,
    verdict: &super::checksum::Verdict,
    client: &ClientFailure,
) -> Result<bytes::Bytes, Error> {
    let mut chunks: Vec<bytes::Bytes> = Vec::with_capacity(2);
    let mut held = 0u64;
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(c) => {
                held += c.len() as u64;
                if held > max {
                    return Err(Error::Client(S3Error::with_message(
                        S3ErrorCode::IncompleteBody,
                        LONG_BODY,
                    )));
                }
                chunks.push(c)
            }
            Err(e) => {
                if let Some(Err(v)) = verdict.get() {
                    return Err(Error::Client(v));
                }
                return Err(match client.error() {
                    Some(c) => Error::Client(c),
                    None => Error::Internal(format!("reading the upload: {e}")),
                });
            }
        }
    }
    Ok(match chunks.len() {
        0 => bytes::Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => bytes::Bytes::from(chunks.concat()),
    })
}

/// Stores the client body as sent (no encryption configured or requested; an upload
/// sealgate did not start), checksums verified and echoed.
pub async fn send_as_is(
    ctx: &mut Ctx,
    headers: HeaderMap,
    declared: &Declared,
) -> Result<S3Response<Body>, Error> {
    let (resp, digests) = send_verified(ctx, headers, declared, None, true).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
    if ok {
        echo_checksums(&mut out, &digests);
    }
    Ok(out)
}

/// Streams the client body to the store through the checksum verifier (and `writer`,
/// which encrypts it and writes sealgate's metadata into `headers`). On a checksum mismatch the store never receives the whole body, and
/// the client gets BadDigest. Object data (`object_data`) goes with a CRC32C the store
/// verifies (`upstream::checked`), so a body that breaks off is never stored.
pub async fn send_verified(
    ctx: &mut Ctx,
    mut headers: HeaderMap,
    declared: &Declared,
    writer: Option<Writer>,
    object_data: bool,
) -> Result<(crate::upstream::UpResponse, super::checksum::Digests), Error> {
    let len = declared_len(ctx)?;
    let client = ClientFailure::default();
    let body = client.watch(forward::body_stream(std::mem::take(&mut ctx.body)));
    let (verifying, verdict) = Verifying::new(body, declared, ctx.trailers.take());
    // The client's checksum is kept with the object (or part), sealed, once verified. A
    // new object (or a part of an upload created without an algorithm) whose client sent
    // none gets AWS's default, a CRC64NVME of its bytes.
    let (verifying, writer, default_sum) = match (writer, declared.checksum_algo()) {
        (Some(w), Some(algo)) => {
            let v = verdict.clone();
            let w = w.with_checksum(ChecksumSource {
                algo,
                known: declared.value(algo),
                verified: Box::new(move || v.digest(algo)),
            });
            (verifying.boxed(), Some(w), None)
        }
        (Some(w), None) if w.gets_default_checksum() => {
            let (s, w, tap) = computing_checksum(verifying.boxed(), w, Some(Algo::Crc64Nvme));
            (s, Some(w), tap)
        }
        (w, _) => (verifying.boxed(), w, None),
    };
    let up_body = if len <= PREREAD_MAX {
        // One segment or less: read it all before calling the store, so that the request
        // head and body reach it in one write and a bad body never reaches it at all
        // (docs/performance.md, "Where the time goes": small uploads).
        let plain = preread(verifying, len, &verdict, &client).await?;
        if plain.len() as u64 != len {
            return Err(Error::Client(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                if (plain.len() as u64) < len {
                    SHORT_BODY
                } else {
                    LONG_BODY
                },
            )));
        }
        match writer {
            Some(w) => {
                let stream = w.seal_whole(&plain, &mut headers);
                // Sealed from `plain` (at most one segment): bounded by construction.
                let sealed = preread(stream, u64::MAX, &verdict, &client).await?;
                ctx.state
                    .metrics
                    .upstream_write_bytes
                    .inc_by(sealed.len() as u64);
                UpBody::Bytes(sealed)
            }
            None if len == 0 => UpBody::Empty,
            None => UpBody::Bytes(plain),
        }
    } else {
        let plain: PlainStream = verifying;
        match writer {
            Some(w) => {
                let (stream, n) = w.seal_stream(plain, &mut headers);
                let stream =
                    crate::metrics::counted(stream, ctx.state.metrics.upstream_write_bytes.clone())
                        .boxed();
                UpBody::Stream { stream, len: n }
            }
            None => UpBody::Stream { stream: plain, len },
        }
    };
    let up_body = match up_body {
        UpBody::Empty => UpBody::Empty,
        b if object_data => UpBody::Checked(Box::new(b)),
        b => b,
    };
    let result = ctx
        .state
        .upstream
        .send(forward::up_request(ctx, headers, up_body))
        .await;
    match (result, verdict.get()) {
        (_, Some(Err(e))) => Err(Error::Client(e)),
        (Err(e), _) => Err(client.error().map_or_else(|| e.into(), Error::Client)),
        (Ok(resp), v) => {
            let mut digests = match v {
                Some(Ok(d)) => d,
                // The store answered before reading the body (e.g. NoSuchBucket).
                _ => Vec::new(),
            };
            if let Some(t) = default_sum
                && let Some(d) = t.digest()
            {
                digests.push((t.algo, d));
            }
            Ok((resp, digests))
        }
    }
}

/// Reads an XML request body, refusing anything over the configured bound (a Complete
/// body for 10,000 parts is about 1.5 MB; the bound is at least 4 MiB here).
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
