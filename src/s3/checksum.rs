//! Client checksums (Content-MD5, `x-amz-checksum-*` headers and trailers), verified by
//! sealgate against the bytes the client sent.
//!
//! Invariants:
//! - The store never sees a client checksum header: once bodies are encrypted, the store's
//!   bytes differ from the client's, so sealgate verifies and strips them.
//! - [`Verifying`] holds back the last chunk until the whole body has been checked, so a
//!   body that fails verification never reaches the store whole (the upload fails there).
//! - MD5 is computed only when the client sent Content-MD5.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use s3s::{S3Error, S3ErrorCode};

pub use crate::object::checksum::Algo;
use crate::object::checksum::Hasher;

/// One checksum the client asked us to verify.
#[derive(Debug, Clone)]
pub struct Expected {
    pub algo: Algo,
    /// Decoded digest; `None` when it arrives in the trailer.
    pub value: Option<Vec<u8>>,
}

/// What the client declared about checksums, parsed from the request headers.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    pub expected: Vec<Expected>,
}

fn decode(algo: Algo, v: &str) -> Result<Vec<u8>, S3Error> {
    let bad = || {
        if algo == Algo::Md5 {
            S3Error::with_message(
                S3ErrorCode::InvalidDigest,
                "The Content-MD5 you specified is not valid.",
            )
        } else {
            S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!("Value for {} header is invalid.", algo.header()),
            )
        }
    };
    let d = B64.decode(v.trim()).map_err(|_| bad())?;
    if d.len() != algo.digest_len() {
        return Err(bad());
    }
    Ok(d)
}

impl Declared {
    /// Parses Content-MD5, `x-amz-checksum-*` and `x-amz-trailer` from request headers.
    pub fn from_headers(h: &HeaderMap) -> Result<Self, S3Error> {
        let mut expected = Vec::new();
        if let Some(v) = h.get("content-md5") {
            let v = v
                .to_str()
                .map_err(|_| S3Error::new(S3ErrorCode::InvalidDigest))?;
            expected.push(Expected {
                algo: Algo::Md5,
                value: Some(decode(Algo::Md5, v)?),
            });
        }
        for a in Algo::CHECKSUMS {
            if let Some(v) = h.get(a.header()) {
                let v = v.to_str().map_err(|_| decode(a, "!").unwrap_err())?;
                expected.push(Expected {
                    algo: a,
                    value: Some(decode(a, v)?),
                });
            }
        }
        if let Some(t) = h.get("x-amz-trailer") {
            let t = t.to_str().unwrap_or_default().trim();
            let algo = Algo::from_header(t)
                .filter(|a| *a != Algo::Md5)
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        format!(
                            "The value specified in the x-amz-trailer header is not supported: {t}"
                        ),
                    )
                })?;
            if expected.iter().any(|e| e.algo != Algo::Md5) {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    "Expecting a single x-amz-checksum- header",
                ));
            }
            expected.push(Expected { algo, value: None });
        }
        if expected.iter().filter(|e| e.algo != Algo::Md5).count() > 1 {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        Ok(Declared { expected })
    }

    pub fn is_empty(&self) -> bool {
        self.expected.is_empty()
    }

    /// The value a header gave for `algo` (`None` when it comes in the trailer).
    pub fn value(&self, algo: Algo) -> Option<Vec<u8>> {
        self.expected
            .iter()
            .find(|e| e.algo == algo)
            .and_then(|e| e.value.clone())
    }

    /// The checksum algorithm (not MD5) the client used, if any.
    pub fn checksum_algo(&self) -> Option<Algo> {
        self.expected
            .iter()
            .map(|e| e.algo)
            .find(|a| *a != Algo::Md5)
    }
}

/// Verified digests, by algorithm.
pub type Digests = Vec<(Algo, Vec<u8>)>;

/// Outcome shared between the stream and the handler that owns it.
#[derive(Debug, Clone, Default)]
pub struct Verdict(Arc<Mutex<Option<Outcome>>>);

/// A verification outcome; the error is kept as code + message so it can be cloned.
type Outcome = Result<Digests, (S3ErrorCode, String)>;

impl Verdict {
    /// `Some(Ok(digests))` once the whole body verified, `Some(Err)` on a mismatch,
    /// `None` while the body has not been read to its end.
    pub fn get(&self) -> Option<Result<Digests, S3Error>> {
        let v = self.0.lock().ok().and_then(|g| g.clone())?;
        Some(v.map_err(|(code, msg)| S3Error::with_message(code, msg)))
    }
    /// The verified digest of `algo`, once the whole body verified.
    pub fn digest(&self, algo: Algo) -> Option<Vec<u8>> {
        self.get()?
            .ok()?
            .into_iter()
            .find(|(a, _)| *a == algo)
            .map(|(_, d)| d)
    }

    fn set(&self, v: Result<Digests, S3Error>) {
        let v = v.map_err(|e| {
            (
                e.code().clone(),
                e.message().unwrap_or_default().to_string(),
            )
        });
        if let Ok(mut g) = self.0.lock() {
            *g = Some(v);
        }
    }
}

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Wraps a body stream: hashes every byte, holds back the last chunk, and releases it
/// only when all declared checksums match.
pub struct Verifying {
    inner: Inner,
    hashers: Vec<(Algo, Option<Vec<u8>>, Hasher)>,
    trailers: Option<s3s::TrailingHeaders>,
    held: Option<Bytes>,
    verdict: Verdict,
    finished: bool,
}

impl Verifying {
    pub fn new(
        inner: Inner,
        declared: &Declared,
        trailers: Option<s3s::TrailingHeaders>,
    ) -> (Self, Verdict) {
        let verdict = Verdict::default();
        let hashers = declared
            .expected
            .iter()
            .map(|e| (e.algo, e.value.clone(), Hasher::new(e.algo)))
            .collect();
        let s = Self {
            inner,
            hashers,
            trailers,
            held: None,
            verdict: verdict.clone(),
            finished: false,
        };
        (s, verdict)
    }

    fn check(&mut self) -> Result<Digests, S3Error> {
        let mut out = Vec::new();
        for (algo, want, hasher) in std::mem::take(&mut self.hashers) {
            let got = hasher.finalize();
            let want = match want {
                Some(w) => w,
                None => {
                    let v = self
                        .trailers
                        .as_ref()
                        .and_then(|t| {
                            t.read(|h| {
                                h.get(algo.header())
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned)
                            })
                        })
                        .flatten()
                        .ok_or_else(|| {
                            S3Error::with_message(
                                S3ErrorCode::InvalidRequest,
                                format!(
                                    "The trailer declared {} but none was received.",
                                    algo.header()
                                ),
                            )
                        })?;
                    decode(algo, &v)?
                }
            };
            if got != want {
                let msg = if algo == Algo::Md5 {
                    "The Content-MD5 you specified did not match what we received.".to_string()
                } else {
                    format!(
                        "The {} you specified did not match the calculated checksum.",
                        algo.display()
                    )
                };
                return Err(S3Error::with_message(S3ErrorCode::BadDigest, msg));
            }
            out.push((algo, got));
        }
        Ok(out)
    }
}

impl Stream for Verifying {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    for (_, _, h) in &mut this.hashers {
                        h.update(&chunk);
                    }
                    if let Some(prev) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let r = this.check();
                    let ok = r.is_ok();
                    this.verdict.set(r);
                    if !ok {
                        return Poll::Ready(Some(Err(std::io::Error::other(
                            "client checksum mismatch",
                        ))));
                    }
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

/// Base64 of a digest, for response headers.
pub fn b64(d: &[u8]) -> String {
    B64.encode(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use s3s::crypto::{Checksum as _, Crc32, Md5};

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::test_support::headers(pairs)
    }

    async fn run(
        body: &[&'static [u8]],
        h: &HeaderMap,
    ) -> (Vec<Result<Bytes, String>>, Option<Result<Digests, S3Error>>) {
        let d = Declared::from_headers(h).unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            body.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let (s, v) = Verifying::new(Box::pin(futures::stream::iter(chunks)), &d, None);
        let out = s
            .map(|r| r.map_err(|e| e.to_string()))
            .collect::<Vec<_>>()
            .await;
        (out, v.get())
    }

    #[tokio::test]
    async fn a_matching_crc32_passes_every_byte_through() {
        let crc = b64(&Crc32::checksum(b"hello world"));
        let (out, v) = run(
            &[b"hello ", b"world"],
            &hm(&[("x-amz-checksum-crc32", &crc)]),
        )
        .await;
        let bytes: Vec<u8> = out.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        assert_eq!(bytes, b"hello world");
        assert!(v.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_wrong_md5_withholds_the_last_chunk_and_reports_bad_digest() {
        let md5 = b64(&Md5::checksum(b"something else"));
        let (out, v) = run(&[b"hello ", b"world"], &hm(&[("content-md5", &md5)])).await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().as_ref(), b"hello ");
        assert!(out[1].is_err(), "the last chunk must not be released");
        assert_eq!(*v.unwrap().unwrap_err().code(), S3ErrorCode::BadDigest);
    }

    #[test]
    fn malformed_checksum_headers_are_invalid_requests() {
        let e =
            Declared::from_headers(&hm(&[("x-amz-checksum-crc32", "not base64!")])).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRequest);
        let e = Declared::from_headers(&hm(&[("content-md5", "AAAA")])).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidDigest);
        let e =
            Declared::from_headers(&hm(&[("x-amz-trailer", "x-amz-checksum-bogus")])).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRequest);
    }
}
