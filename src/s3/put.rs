//! PutObject: the body is verified against the client's checksums, encrypted segment by
//! segment, and streamed to the store with sealgate's metadata; nothing is buffered
//! beyond one segment.
//!
//! Invariants: when encryption applies (requested, bucket default or global default) the
//! store receives only ciphertext — any failure (KMS, checksum, short body) ends the
//! upload stream with an error before the last segment, so the store stores nothing.
//! Client checksums are verified by sealgate and never forwarded; the verified checksum is
//! echoed in the response as S3 does.

use futures::StreamExt;
use http::HeaderMap;
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::checksum::{Algo, Declared, Verifying, b64};
use super::objmeta::{self, ObjectMeta};
use super::sse;
use super::{Ctx, forward, keys};
use crate::crypto::format::{Layout, PartHeader, part_cipher_len};
use crate::crypto::stream::{Encryptor, random_salt};
use crate::error::Error;
use crate::upstream::UpBody;

/// Headers never forwarded on object writes: checksums (about plaintext) and SSE requests
/// (sealgate does the encryption).
pub fn write_drop_list() -> Vec<&'static str> {
    forward::CHECKSUM_REQUEST
        .iter()
        .chain(sse::SSE_REQUEST_HEADERS)
        .copied()
        .collect()
}

pub async fn put_object(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    objmeta::reject_reserved(&ctx.headers)?;
    let requested = sse::parse(&ctx.headers)?;
    let drop = write_drop_list();
    let mut headers = forward::request_headers(&ctx.headers, &drop);
    let Some(sse) = super::bucket_encryption::effective(&ctx, requested).await? else {
        // Encryption is configured off for this bucket and not requested: store as sent.
        let (resp, digests) = send_verified(&mut ctx, headers, &declared, None).await?;
        let ok = resp.status().is_success();
        let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
        if ok {
            echo_checksums(&mut out, &digests);
        }
        return Ok(out);
    };
    let (bucket, key) = ctx.object()?;
    let len = declared_len(&ctx)?;
    let nk = keys::new_data_key(&ctx, &sse, &bucket, &key).await?;
    let (meta, encrypt) = seal_single_part(nk, &sse, len, &mut headers);
    let (resp, digests) = send_verified(&mut ctx, headers, &declared, Some(encrypt)).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, &response_drop_list());
    if ok {
        echo_checksums(&mut out, &digests);
        sse_response_headers(&mut out.headers, &meta);
    }
    Ok(out)
}

/// A new single-part object of `len` plaintext bytes under `nk`: its metadata (also
/// written into `headers`) and the transform that encrypts its body (PutObject, and
/// CopyObject when the bytes must change form).
pub fn seal_single_part(
    nk: keys::NewKey,
    sse: &sse::Sse,
    len: u64,
    headers: &mut HeaderMap,
) -> (ObjectMeta, Transform) {
    let salt = random_salt();
    let layout = Layout::single(len);
    let meta = ObjectMeta {
        key_arn: nk.key_arn,
        wrapped_dek: nk.wrapped,
        backend: nk.backend,
        bk_salt: nk.bk_salt,
        context_b64: nk.context_b64,
        alg: sse.alg,
        bucket_key: sse.bucket_key,
        size: len,
        mac: ObjectMeta::compute_mac(&nk.dek, len, &layout),
        layout,
        salt: Some(salt),
    };
    meta.write(headers);
    let header = PartHeader {
        part_number: 1,
        salt,
        plain_len: len,
    };
    let dek = nk.dek;
    let encrypt = move |plain: PlainStream| {
        (
            Encryptor::new(plain, &dek, header, false).boxed(),
            part_cipher_len(len, false),
        )
    };
    (meta, Box::new(encrypt))
}

/// Store response headers never returned on encrypted paths: checksums and SSE claims of
/// the store are about ciphertext.
pub fn response_drop_list() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = forward::CHECKSUM_REQUEST.to_vec();
    v.extend(sse::SSE_REQUEST_HEADERS);
    v.push("x-amz-checksum-type");
    v
}

/// The SSE headers S3 returns for an encrypted object.
pub fn sse_response_headers(h: &mut HeaderMap, meta: &ObjectMeta) {
    forward::set_header(h, sse::H_SSE, meta.alg.as_str());
    if meta.alg == sse::Alg::Kms {
        forward::set_header(h, sse::H_KEY_ID, &meta.key_arn);
    }
    if meta.bucket_key {
        forward::set_header(h, sse::H_BUCKET_KEY, "true");
    }
    if let Some(c) = &meta.context_b64 {
        forward::set_header(h, sse::H_CONTEXT, c);
    }
}

/// The plaintext length the client declared; S3 requires one for PutObject/UploadPart.
pub fn declared_len(ctx: &Ctx) -> Result<u64, Error> {
    let len = forward::content_length(&ctx.headers).ok_or_else(|| {
        Error::Client(S3Error::with_message(
            S3ErrorCode::MissingContentLength,
            "You must provide the Content-Length HTTP header.",
        ))
    })?;
    if len > crate::crypto::format::MAX_PLAIN {
        return Err(Error::Client(S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size (5 TiB).",
        )));
    }
    Ok(len)
}

/// Adds the verified `x-amz-checksum-*` value to a successful response.
pub fn echo_checksums(out: &mut S3Response<Body>, digests: &[(Algo, Vec<u8>)]) {
    for (algo, d) in digests {
        if *algo != Algo::Md5 {
            forward::set_header(&mut out.headers, algo.header(), &b64(d));
        }
    }
}

type PlainStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;
/// Turns the verified plaintext stream into what the store receives, and its length.
pub type Transform = Box<dyn FnOnce(PlainStream) -> (PlainStream, u64) + Send>;

/// Bodies up to this many bytes (one segment) are read whole before the store is called.
const PREREAD_MAX: u64 = crate::crypto::format::SEGMENT;

/// S3's message for a body shorter than its Content-Length.
const SHORT_BODY: &str =
    "You did not provide the number of bytes specified by the Content-Length HTTP header.";

/// Records how the client's body failed, if it did, so that the client is told about its
/// own error rather than about the store's.
#[derive(Clone, Default)]
struct ClientFailure(std::sync::Arc<std::sync::OnceLock<bool>>);

impl ClientFailure {
    fn watch(&self, s: PlainStream) -> PlainStream {
        let me = self.clone();
        s.inspect(move |r| {
            if let Err(e) = r {
                let _ = me.0.set(stalled(e));
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

/// Whether a body error is the idle timeout (crate::limits::IdleTimeout) or a socket timeout.
fn stalled(e: &std::io::Error) -> bool {
    std::iter::successors(e.get_ref().map(|e| e as &dyn std::error::Error), |e| {
        e.source()
    })
    .any(|e| {
        e.is::<crate::limits::BodyIdle>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// Collects a stream already bounded to about one segment into one buffer. A client
/// checksum mismatch is BadDigest and a failed client body is the client's error; nothing
/// has reached the store then.
async fn preread(
    mut s: PlainStream,
    verdict: &super::checksum::Verdict,
    client: &ClientFailure,
) -> Result<bytes::Bytes, Error> {
    let mut chunks: Vec<bytes::Bytes> = Vec::with_capacity(2);
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(c) => chunks.push(c),
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

/// Streams the client body to the store through the checksum verifier (and `transform`,
/// e.g. encryption). On a checksum mismatch the store never receives the whole body, and
/// the client gets BadDigest.
pub async fn send_verified(
    ctx: &mut Ctx,
    headers: HeaderMap,
    declared: &Declared,
    transform: Option<Transform>,
) -> Result<(crate::upstream::UpResponse, super::checksum::Digests), Error> {
    let len = declared_len(ctx)?;
    let client = ClientFailure::default();
    let body = client.watch(forward::body_stream(std::mem::take(&mut ctx.body)));
    let (verifying, verdict) = Verifying::new(body, declared, ctx.trailers.take());
    let up_body = if len <= PREREAD_MAX {
        // One segment or less: read it all before calling the store, so that the request
        // head and body reach it in one write and a bad body never reaches it at all
        // (docs/performance.md, "Where the time goes": small uploads).
        let plain = preread(verifying.boxed(), &verdict, &client).await?;
        if plain.len() as u64 != len {
            return Err(Error::Client(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                if (plain.len() as u64) < len {
                    SHORT_BODY
                } else {
                    "The body is longer than its Content-Length."
                },
            )));
        }
        match transform {
            Some(t) => {
                let input = (!plain.is_empty()).then_some(Ok(plain));
                let (stream, n) = t(futures::stream::iter(input).boxed());
                let sealed = preread(stream, &verdict, &client).await?;
                if sealed.len() as u64 != n {
                    return Err(Error::Internal(format!(
                        "sealed {} bytes where {n} were expected",
                        sealed.len()
                    )));
                }
                ctx.state.metrics.upstream_write_bytes.inc_by(n);
                UpBody::Bytes(sealed)
            }
            None if len == 0 => UpBody::Empty,
            None => UpBody::Bytes(plain),
        }
    } else {
        let plain: PlainStream = verifying.boxed();
        match transform {
            Some(t) => {
                let (stream, n) = t(plain);
                let stream =
                    crate::metrics::counted(stream, ctx.state.metrics.upstream_write_bytes.clone())
                        .boxed();
                UpBody::Stream { stream, len: n }
            }
            None => UpBody::Stream { stream: plain, len },
        }
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
            let digests = match v {
                Some(Ok(d)) => d,
                // The store answered before reading the body (e.g. NoSuchBucket).
                _ => Vec::new(),
            };
            Ok((resp, digests))
        }
    }
}
