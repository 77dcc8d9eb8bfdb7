//! Object data sent to the store with a CRC32C checksum the store verifies: in the
//! `x-amz-checksum-crc32c` header for a body sealgate holds whole, and in an aws-chunked
//! trailer (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`) for a streamed body.
//!
//! Why: a streamed upload that breaks off (the client's body failed its checksum or
//! stalled, sealgate aborts the request) must never be stored. Some stores commit
//! whatever arrived before the connection broke (SeaweedFS 4.48 stores an empty object
//! over the previous one). With aws-chunked framing the store only has a complete body
//! when the final chunk and a matching trailer arrived, so an aborted upload fails in the
//! store too. Stores that require a checksum for some writes (AWS S3 under Object Lock)
//! get one. CRC32C costs a fraction of the encryption (docs/performance.md).
//!
//! Invariants: the encoded length is known before the first byte (chunks are exactly
//! [`CHUNK`] bytes but the last), the trailer is emitted only after exactly the declared
//! number of bytes, and nothing is copied: chunk headers are small separate buffers and
//! data chunks are slices of the input.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use s3s::crypto::{Checksum as _, Crc32c};

/// Data bytes per aws-chunked chunk.
pub const CHUNK: u64 = 64 * 1024;

/// The request header naming the trailer.
pub const TRAILER: &str = "x-amz-checksum-crc32c";

/// The base64 CRC32C of `data` (the `x-amz-checksum-crc32c` header value).
pub fn crc32c_b64(data: &[u8]) -> String {
    let mut c = Crc32c::new();
    c.update(data);
    b64(&c.finalize())
}

fn b64(d: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(d)
}

fn hex_len(n: u64) -> u64 {
    format!("{n:x}").len() as u64
}

/// The length of `len` data bytes encoded as aws-chunked with the CRC32C trailer.
pub fn encoded_len(len: u64) -> u64 {
    let full = len / CHUNK;
    let rest = len % CHUNK;
    let chunk = |n: u64| hex_len(n) + 2 + n + 2;
    let last = if rest > 0 { chunk(rest) } else { 0 };
    // "0\r\n" + "x-amz-checksum-crc32c:" + 8 base64 chars + "\r\n" + "\r\n"
    let end = 3 + TRAILER.len() as u64 + 1 + 8 + 2 + 2;
    full * chunk(CHUNK) + last + end
}

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Encodes exactly `len` bytes of `inner` as aws-chunked with a CRC32C trailer.
pub struct Chunked {
    inner: Inner,
    crc: Option<Crc32c>,
    /// Data bytes not yet emitted.
    remaining: u64,
    /// Data bytes left in the current chunk.
    in_chunk: u64,
    /// Input received and not yet emitted.
    pending: Bytes,
    /// The `\r\n` that ends a data chunk is owed before the next header.
    owe_crlf: bool,
    done: bool,
}

impl Chunked {
    pub fn new(inner: Inner, len: u64) -> Chunked {
        Chunked {
            inner,
            crc: Some(Crc32c::new()),
            remaining: len,
            in_chunk: 0,
            pending: Bytes::new(),
            owe_crlf: false,
            done: false,
        }
    }

    fn fail(&mut self, e: std::io::Error) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for Chunked {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if this.in_chunk == 0 {
                // Between chunks: end the previous one, start the next, or finish.
                let mut head = String::new();
                if std::mem::take(&mut this.owe_crlf) {
                    head.push_str("\r\n");
                }
                if this.remaining == 0 {
                    if !this.pending.is_empty() {
                        return this.fail(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "the body is longer than declared",
                        ));
                    }
                    let crc = this.crc.take().map(|c| c.finalize()).unwrap_or_default();
                    head.push_str(&format!("0\r\n{TRAILER}:{}\r\n\r\n", b64(&crc)));
                    this.done = true;
                    return Poll::Ready(Some(Ok(Bytes::from(head))));
                }
                this.in_chunk = this.remaining.min(CHUNK);
                head.push_str(&format!("{:x}\r\n", this.in_chunk));
                return Poll::Ready(Some(Ok(Bytes::from(head))));
            }
            if !this.pending.is_empty() {
                let n = (this.pending.len() as u64).min(this.in_chunk) as usize;
                let part = this.pending.split_to(n);
                if let Some(c) = this.crc.as_mut() {
                    c.update(&part);
                }
                this.in_chunk -= n as u64;
                this.remaining -= n as u64;
                if this.in_chunk == 0 {
                    this.owe_crlf = true;
                }
                return Poll::Ready(Some(Ok(part)));
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(b))) => this.pending = b,
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(None) => {
                    return this.fail(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the body ended {} bytes short", this.remaining),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn encode(data: &[u8], piece: usize) -> Result<Vec<u8>, std::io::Error> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut s = Chunked::new(futures::stream::iter(chunks).boxed(), data.len() as u64);
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    /// Decodes aws-chunked independently: (data, trailer line).
    fn decode(mut b: &[u8]) -> (Vec<u8>, String) {
        let mut data = Vec::new();
        loop {
            let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap(), 16).unwrap();
            b = &b[line_end + 2..];
            if n == 0 {
                let t = std::str::from_utf8(b).unwrap();
                assert!(t.ends_with("\r\n\r\n"), "{t:?}");
                return (data, t.trim_end().to_string());
            }
            data.extend_from_slice(&b[..n]);
            assert_eq!(&b[n..n + 2], b"\r\n");
            b = &b[n + 2..];
        }
    }

    #[tokio::test]
    async fn bodies_encode_to_their_announced_length_and_decode_back() {
        for len in [0usize, 1, 65_535, 65_536, 65_537, 200_000, 3 * 65_536] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for piece in [1000, 65_552, 1 << 20] {
                let enc = encode(&data, piece).await.unwrap();
                assert_eq!(enc.len() as u64, encoded_len(len as u64), "{len}/{piece}");
                let (back, trailer) = decode(&enc);
                assert_eq!(back, data);
                assert_eq!(trailer, format!("{TRAILER}:{}", crc32c_b64(&data)));
            }
        }
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283.
        assert_eq!(crc32c_b64(b"123456789"), b64(&0xE306_9283u32.to_be_bytes()));
    }

    #[tokio::test]
    async fn a_short_or_long_body_ends_the_stream_with_an_error_and_no_trailer() {
        let short: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from_static(b"abc"))];
        let mut s = Chunked::new(futures::stream::iter(short).boxed(), 10);
        let mut out = Vec::new();
        let mut failed = false;
        while let Some(b) = s.next().await {
            match b {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        assert!(failed);
        assert!(!String::from_utf8_lossy(&out).contains(TRAILER));
        let long: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from_static(b"abcdef"))];
        let mut s = Chunked::new(futures::stream::iter(long).boxed(), 3);
        let mut errs = 0;
        while let Some(b) = s.next().await {
            errs += usize::from(b.is_err());
        }
        assert_eq!(errs, 1);
    }
}
