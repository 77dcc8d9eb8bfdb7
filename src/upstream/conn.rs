//! Connections to the store: TCP (optionally TLS) with `TCP_NODELAY`, and `TCP_QUICKACK`
//! re-armed after every read.
//!
//! Why quick ACKs: many stores (Garage among them) write a response's headers and its body
//! separately and leave Nagle's algorithm on. A body smaller than one segment then waits
//! for the ACK of the headers, and Linux delays that ACK by up to 40 ms on a connection
//! it considers interactive, which a reused keep-alive connection always is. Acknowledging
//! at once what we have read costs one `setsockopt` per read and removes that stall
//! (docs/design/front.md, "The store client").

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens store connections: plain TCP for `http://`, TLS for `https://`.
#[derive(Clone)]
pub struct StoreConnector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Bounds TCP connect and TLS handshake together.
    connect_timeout: Duration,
}

impl std::fmt::Debug for StoreConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConnector")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl StoreConnector {
    /// `tls` is the client configuration for `https://` endpoints; without it only
    /// `http://` can be reached.
    pub fn new(connect_timeout: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        Self {
            http,
            tls: tls.map(tokio_rustls::TlsConnector::from),
            connect_timeout,
        }
    }
}

impl tower_service::Service<Uri> for StoreConnector {
    type Response = StoreIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<StoreIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().to_string();
        let tls = self.tls.clone();
        let connecting = self.http.call(uri);
        let limit = self.connect_timeout;
        let connect = async move {
            let tcp = connecting.await?.into_inner();
            let io = if https {
                let tls = tls.ok_or("https endpoint without a TLS configuration")?;
                // IPv6 literals come bracketed in URIs; rustls wants them bare.
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                )?;
                Either::Right(tls.connect(name, tcp).await?)
            } else {
                Either::Left(tcp)
            };
            Ok::<_, BoxError>(StoreIo {
                io: TokioIo::new(io),
            })
        };
        Box::pin(async move {
            match tokio::time::timeout(limit, connect).await {
                Ok(r) => r,
                Err(_) => Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection (TCP and TLS) within {limit:?}"),
                )) as BoxError),
            }
        })
    }
}

/// One store connection.
pub struct StoreIo {
    io: TokioIo<Either<TcpStream, TlsStream<TcpStream>>>,
}

impl StoreIo {
    fn tcp(&self) -> &TcpStream {
        match self.io.inner() {
            Either::Left(tcp) => tcp,
            Either::Right(tls) => tls.get_ref().0,
        }
    }

    /// Acknowledges at once whatever has been received (best effort: a failure only
    /// means the kernel's delayed ACK applies).
    fn quick_ack(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = self.tcp().set_quickack(true);
    }
}

impl Connection for StoreIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for StoreIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.quick_ack();
        }
        r
    }
}

impl hyper::rt::Write for StoreIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[tokio::test]
    async fn connections_have_nodelay_and_quick_acks_after_reads() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
            s
        });
        let mut c = StoreConnector::new(Duration::from_secs(5), None);
        let mut io = c
            .call(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap();
        let _server_side = server.await.unwrap();
        assert!(io.tcp().nodelay().unwrap());
        io.tcp().set_quickack(false).unwrap();
        let mut buf = [0u8; 16];
        let n = {
            let mut io = TokioIo::new(&mut io);
            tokio::io::AsyncReadExt::read(&mut io, &mut buf)
                .await
                .unwrap()
        };
        assert_eq!(&buf[..n], b"hello");
        assert!(
            io.tcp().quickack().unwrap(),
            "quick ACK re-armed by the read"
        );
    }

    #[tokio::test]
    async fn a_stalled_tls_handshake_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and then says nothing, as a hung store would.
        let _hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let cfg = crate::upstream::client::tls_config(None, "upstream.ca_file").unwrap();
        let mut c = StoreConnector::new(Duration::from_millis(300), Some(Arc::new(cfg)));
        let t = std::time::Instant::now();
        let err = c
            .call(format!("https://{addr}/").parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let io = err.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    #[tokio::test]
    async fn https_without_tls_configuration_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = StoreConnector::new(Duration::from_secs(5), None);
        let err = c
            .call(format!("https://{addr}/").parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
