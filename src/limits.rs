//! Limits and timeouts on client connections: what one client (or many) can make sealgate
//! hold. Documented for operators in `docs/operations.md` ("Limits and timeouts").
//!
//! Invariants: every limit has a finite default (`LimitsConfig::default`); a connection
//! that has no request in progress (from accept, TLS handshake and protocol detection
//! included, to its first complete request head, and between requests) is closed after
//! `header_read_timeout_secs`, for HTTP/1 and HTTP/2 alike; a request head larger than
//! `max_header_bytes` / `max_headers` never reaches a handler; a request body that sends
//! nothing for `body_idle_timeout_secs` fails (the store then receives a short body and
//! stores nothing), and so does a connection whose client reads nothing of what sealgate
//! writes for as long ([`WriteStall`]); at most `max_connections` client connections are served at once —
//! at the limit the connection idle the longest is closed to make room for a new one
//! ([`conns`]), and only when none is idle do new ones wait in the listen backlog; an
//! HTTP/2 connection whose peer stops answering PINGs is closed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde::Deserialize;

pub mod conns;

/// Limits on client connections and requests (`[limits]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Seconds a connection may go without a request in progress: from accept (TLS
    /// handshake and HTTP/1-or-2 detection included) to its first complete request head,
    /// and from the end of a response to the next complete head (HTTP/1 keep-alive and
    /// HTTP/2 alike); then it is closed. Defends against connections that send nothing
    /// or trickle their headers (slowloris).
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request fails, and a client
    /// may read nothing of a response sealgate is sending before the connection is
    /// closed (a client that stops reading a download would otherwise hold its
    /// connection, slot and store stream for good).
    pub body_idle_timeout_secs: u64,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    pub max_headers: usize,
    /// Most client connections served at once. At the limit the connection idle the
    /// longest is closed to make room for a new client; when none is idle, new ones wait
    /// to be accepted.
    pub max_connections: usize,
    /// Seconds between HTTP/2 PINGs sealgate sends to its clients, to find connections
    /// whose peer is gone (a long download to a vanished client, a half-open socket).
    pub http2_keep_alive_interval_secs: u64,
    /// Seconds an HTTP/2 PING may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout_secs: u64,
    /// Most requests in progress at once on one HTTP/2 connection (so that
    /// `max_connections` also bounds the requests in progress).
    pub http2_max_concurrent_streams: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 30,
            body_idle_timeout_secs: 60,
            max_header_bytes: 64 * 1024,
            max_headers: 128,
            max_connections: 1024,
            http2_keep_alive_interval_secs: 30,
            http2_keep_alive_timeout_secs: 20,
            http2_max_concurrent_streams: 100,
        }
    }
}

impl LimitsConfig {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            (
                "limits.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("limits.body_idle_timeout_secs", self.body_idle_timeout_secs),
            ("limits.max_connections", self.max_connections as u64),
            ("limits.max_headers", self.max_headers as u64),
            (
                "limits.http2_keep_alive_interval_secs",
                self.http2_keep_alive_interval_secs,
            ),
            (
                "limits.http2_keep_alive_timeout_secs",
                self.http2_keep_alive_timeout_secs,
            ),
            (
                "limits.http2_max_concurrent_streams",
                u64::from(self.http2_max_concurrent_streams),
            ),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        if !(8192..=1 << 20).contains(&self.max_header_bytes) {
            return Err((
                "limits.max_header_bytes",
                "must be between 8192 and 1048576".into(),
            ));
        }
        Ok(())
    }

    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.body_idle_timeout_secs)
    }

    /// How long a connection may go without a request in progress.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
}

/// hyper's HTTP/1 buffer limit. It bounds the read buffer (so also how large a request
/// head hyper will read) *and* how much response body it queues before writing: tied to
/// `max_header_bytes` (64 KiB) it flushed every 64 KiB segment on its own and read
/// uploads 64 KiB at a time. hyper's default (408 KiB) lets it batch; `max_header_bytes`
/// is enforced on the parsed head instead ([`head_bytes`], 431 in `server/mod.rs`).
const HTTP1_BUF: usize = 8192 + 4096 * 100;

/// The size of a request's line and headers as sent (HTTP/1.1 framing).
pub fn head_bytes<B>(req: &http::Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + ": \r\n".len())
        .sum();
    line + fields + 2
}

/// Whether the request declares `x-amz-decoded-content-length` without an aws-chunked
/// body. The decoded length is what sealgate takes as the object's size (aws-chunked
/// bodies may come without Content-Length), and it is the length of the body only when
/// s3s decodes aws-chunked framing, which it does exactly when (the only)
/// `x-amz-content-sha256` names a `STREAMING-*` payload. Otherwise a small declared
/// length in front of a large body would make the whole body count as "small" (read into
/// memory before the store is called): such a request is refused (400 InvalidRequest).
pub fn decoded_length_without_aws_chunked(h: &http::HeaderMap) -> bool {
    if !h.contains_key("x-amz-decoded-content-length") {
        return false;
    }
    let mut sha = h.get_all("x-amz-content-sha256").iter();
    let streaming = match (sha.next(), sha.next()) {
        (Some(v), None) => matches!(
            v.as_bytes(),
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
                | b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
                | b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        ),
        _ => false,
    };
    !streaming
}

/// A PUT whose body is HTTP/1.1 `Transfer-Encoding: chunked` with no length at all
/// (neither Content-Length nor aws-chunked's `x-amz-decoded-content-length`). AWS S3
/// refuses such uploads with 501 NotImplemented naming the header (`<Header>
/// Transfer-Encoding</Header>`); sealgate does the same, before s3s, whose own answer
/// would be a bare "missing header" error.
pub fn chunked_without_length(method: &http::Method, h: &http::HeaderMap) -> bool {
    method == http::Method::PUT
        && h.get_all(http::header::TRANSFER_ENCODING).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        })
        && !h.contains_key(http::header::CONTENT_LENGTH)
        && !h.contains_key("x-amz-decoded-content-length")
}

/// The connection builder with these limits applied to HTTP/1.1 and HTTP/2.
pub fn conn_builder(l: &LimitsConfig) -> ConnBuilder<TokioExecutor> {
    let mut b = ConnBuilder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(l.header_read_timeout_secs))
        .max_buf_size(l.max_header_bytes.max(HTTP1_BUF))
        .max_headers(l.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(l.http2_max_concurrent_streams)
        .keep_alive_interval(Duration::from_secs(l.http2_keep_alive_interval_secs))
        .keep_alive_timeout(Duration::from_secs(l.http2_keep_alive_timeout_secs));
    b
}

pin_project_lite::pin_project! {
    /// A request body that fails when no data arrives for the idle timeout.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: tokio::time::Sleep,
        idle: Duration,
        ended: Option<BodyEnded>,
    }
}

/// Whether a request body was read to its end (set by [`IdleTimeout`]): a response sent
/// before that must close its HTTP/1.1 connection, whose unread bytes are not a request.
#[derive(Debug, Clone, Default)]
pub struct BodyEnded(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl BodyEnded {
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
    fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            timer: tokio::time::sleep(idle),
            idle,
            ended: None,
        }
    }

    /// Records in `ended` when the body has been read to its end.
    pub fn watching_end(mut self, ended: BodyEnded) -> Self {
        self.ended = Some(ended);
        self
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub struct BodyIdle(pub Duration);

/// Whether a body error is a stall: the idle deadline ([`BodyIdle`]) or a socket
/// timeout, anywhere in its chain of sources.
pub fn stalled(e: &std::io::Error) -> bool {
    std::iter::successors(e.get_ref().map(|e| e as &dyn std::error::Error), |e| {
        e.source()
    })
    .any(|e| {
        e.is::<BodyIdle>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.timer.as_mut().reset(deadline);
                if let Some(e) = this.ended.as_ref()
                    && (r.is_none() || this.inner.is_end_stream())
                {
                    e.set();
                }
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(*this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A client connection whose writes fail when the client reads nothing for `idle`:
    /// a write (or flush) that stays pending that long, because the socket's send
    /// buffer stays full, ends with `TimedOut`, and hyper closes the connection.
    pub struct WriteStall<T> {
        #[pin]
        inner: T,
        // Boxed so that a connection stays `Unpin` (hyper wants that of its IO).
        timer: Pin<Box<tokio::time::Sleep>>,
        idle: Duration,
        // Whether `timer` runs for the write now pending.
        armed: bool,
    }
}

impl<T> WriteStall<T> {
    pub fn new(inner: T, idle: Duration) -> Self {
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep(idle)),
            idle,
            armed: false,
        }
    }
}

/// A write's (or flush's) outcome, watched: while it stays pending the timer runs, and
/// once the stall has lasted `idle` it fails with `TimedOut`; any progress disarms it.
fn watched<R>(
    r: Poll<std::io::Result<R>>,
    mut timer: Pin<&mut tokio::time::Sleep>,
    armed: &mut bool,
    idle: Duration,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<R>> {
    if r.is_ready() {
        *armed = false;
        return r;
    }
    if !*armed {
        timer.as_mut().reset(tokio::time::Instant::now() + idle);
        *armed = true;
    }
    match timer.poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client read nothing for {idle:?}"),
        ))),
        Poll::Pending => Poll::Pending,
    }
}

impl<T: tokio::io::AsyncRead> tokio::io::AsyncRead for WriteStall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite> tokio::io::AsyncWrite for WriteStall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        watched(r, this.timer.as_mut(), this.armed, *this.idle, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        watched(r, this.timer.as_mut(), this.armed, *this.idle, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let r = this.inner.poll_flush(cx);
        watched(r, this.timer.as_mut(), this.armed, *this.idle, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let r = this.inner.poll_shutdown(cx);
        watched(r, this.timer.as_mut(), this.armed, *this.idle, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn head_bytes_counts_the_request_line_and_headers_as_sent() {
        let wire = "GET /bucket/key?versionId=3 HTTP/1.1\r\nhost: example\r\nx-amz-date: 20261123T000000Z\r\n\r\n";
        let req = http::Request::get("/bucket/key?versionId=3")
            .header("host", "example")
            .header("x-amz-date", "20261123T000000Z")
            .body(())
            .unwrap();
        assert_eq!(head_bytes(&req), wire.len());
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_idle_timeout_and_a_flowing_one_does_not() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, String>>(4);
        let body = http_body_util::StreamBody::new(rx);
        let idle = Duration::from_millis(400);
        let mut b = std::pin::pin!(IdleTimeout::new(body, idle));
        // Data every 250 ms keeps it alive well past 400 ms in total.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            futures::SinkExt::send(&mut tx, Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            let f = b.as_mut().frame().await.unwrap().unwrap();
            assert_eq!(f.into_data().unwrap(), "x");
        }
        let t = std::time::Instant::now();
        let err = b.as_mut().frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("sent nothing"), "{err}");
        assert!(t.elapsed() >= idle);
    }

    #[test]
    fn a_decoded_length_counts_only_with_a_streaming_payload() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        let dl = ("x-amz-decoded-content-length", "1");
        assert!(!decoded_length_without_aws_chunked(&h(&[])));
        for streaming in [
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        ] {
            let m = h(&[dl, ("x-amz-content-sha256", streaming)]);
            assert!(!decoded_length_without_aws_chunked(&m), "{streaming}");
        }
        for refused in [
            h(&[dl]),
            h(&[dl, ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]),
            h(&[dl, ("content-encoding", "aws-chunked")]),
            h(&[
                dl,
                ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ]),
        ] {
            assert!(decoded_length_without_aws_chunked(&refused), "{refused:?}");
        }
    }

    #[tokio::test]
    async fn a_write_the_peer_does_not_read_fails_after_the_idle_time_and_a_read_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut peer) = tokio::io::duplex(1024);
        let idle = Duration::from_millis(300);
        let mut w = std::pin::pin!(WriteStall::new(ours, idle));
        // A peer that reads, slowly but within the idle time: every write completes.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for _ in 0..16 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                peer.read_exact(&mut buf).await.unwrap();
            }
            peer
        });
        w.write_all(&[1u8; 8192]).await.unwrap();
        let _peer = reader.await.unwrap();
        // Now it reads nothing: the buffer fills and the next writes fail after `idle`.
        let t = std::time::Instant::now();
        let err = w.write_all(&[1u8; 8192]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= idle, "{:?}", t.elapsed());
    }

    #[test]
    fn zero_limits_are_rejected_naming_the_field() {
        let l = LimitsConfig {
            max_connections: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(l.validate().unwrap_err().0, "limits.max_connections");
        let l = LimitsConfig {
            max_header_bytes: 100,
            ..LimitsConfig::default()
        };
        assert_eq!(l.validate().unwrap_err().0, "limits.max_header_bytes");
        LimitsConfig::default().validate().unwrap();
    }
}
