//! Accepting connections (plain or TLS), one task per connection, the idle deadline and
//! the connection limit, and the graceful shutdown (see the invariants in `server/mod.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::{TcpListener, TcpStream};

use super::App;
use crate::limits::conns::{ConnHandle, Registry};

pub(super) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("tls.key_file {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {e}"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

/// How long in-flight requests may run after shutdown was requested.
const DRAIN: Duration = Duration::from_secs(30);

/// How long a TLS handshake may take (the idle deadline applies too, if shorter).
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// How long an idle connection being closed may take to say goodbye (HTTP/2 GOAWAY).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves until `shutdown` resolves, then drains in-flight connections.
///
/// Each accepted connection gets a slot (`limits.max_connections`); at the limit the
/// connection idle the longest is closed to make room ([`admit`]). Every connection runs
/// on its own task ([`connection`]), which closes it when it has had no request in
/// progress for `limits.header_read_timeout_secs`.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Key deletions that came due and automatic rotations happen even for idle keys
    // (with a shared KMS database, on the one instance holding the maintenance lease).
    let kms = app.kms.clone();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if !kms.runs_maintenance() {
                continue;
            }
            let kms = kms.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || kms.tick()).await {
                tracing::warn!(error = %e, "KMS maintenance failed");
            }
        }
    });
    let builder = Arc::new(crate::limits::conn_builder(&app.limits));
    let registry = Registry::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(app.limits.max_connections));
    let tasks = tokio_util::task::TaskTracker::new();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = tokio::select! {
            s = admit(&slots, &registry) => s,
            () = &mut shutdown => break,
        };
        let conn = registry.open();
        tasks.spawn(connection(
            app.clone(),
            builder.clone(),
            stream,
            peer,
            (slot, conn),
            stop.clone(),
        ));
    }
    drop(listener);
    ticker.abort();
    // Wait until the ticker is gone: it holds the KMS, whose database must be closed
    // when `serve` returns (a restart in the same process opens it again).
    let _ = ticker.await;
    tracing::info!("shutting down: draining in-flight requests");
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {DRAIN:?}; closing them");
    }
    // Audit events still queued reach the disk before the process ends.
    if let Err(e) = app.kms.flush_audit() {
        tracing::error!(error = %e, "flushing the KMS audit log failed");
    }
    Ok(())
}

/// A connection slot: immediately while fewer than `max_connections` are open; else
/// once the connection idle the longest has been closed to make room, or, when every
/// connection has a request in progress, once one ends or becomes idle. (Meanwhile no
/// further connection is accepted: they wait in the listen backlog.)
async fn admit(
    slots: &Arc<tokio::sync::Semaphore>,
    registry: &Registry,
) -> tokio::sync::OwnedSemaphorePermit {
    loop {
        if let Ok(p) = slots.clone().try_acquire_owned() {
            return p;
        }
        let evicted = registry.evict_oldest_idle();
        tokio::select! {
            p = slots.clone().acquire_owned() => {
                if let Ok(p) = p {
                    return p;
                }
            }
            () = registry.some_became_idle(), if !evicted => {}
            // A request that arrived on the evicted connection first keeps it open: try
            // the next one.
            () = tokio::time::sleep(Duration::from_millis(50)), if evicted => {}
        }
    }
}

/// Serves one client connection: TLS handshake (if configured), then HTTP/1.1 or HTTP/2.
/// Closed when it has had no request in progress for the idle deadline, when it is
/// evicted while idle, or gracefully on shutdown.
async fn connection(
    app: Arc<App>,
    builder: Arc<ConnBuilder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    (slot, conn): (tokio::sync::OwnedSemaphorePermit, ConnHandle),
    stop: tokio_util::sync::CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let stream = crate::limits::WriteStall::new(stream, app.limits.body_idle_timeout());
    let metrics = app.metrics.clone();
    metrics.client_connections.inc();
    let _open = scopeguard(move || {
        metrics.client_connections.dec();
    });
    let conn = Arc::new(conn);
    let idle = app.limits.idle_timeout();
    match app.tls.clone() {
        None => drive(app, &builder, TokioIo::new(stream), peer, conn, slot, stop).await,
        Some(acceptor) => {
            let tls = tokio::select! {
                r = tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)) => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                why = conn.closing(idle) => {
                    app.metrics.connection_closed(why.as_str());
                    return;
                }
                () = stop.cancelled() => return,
            };
            drive(app, &builder, TokioIo::new(tls), peer, conn, slot, stop).await
        }
    }
}

/// HTTP on an established (plain or TLS) connection; see [`connection`].
async fn drive<I>(
    app: Arc<App>,
    builder: &ConnBuilder<TokioExecutor>,
    io: I,
    peer: SocketAddr,
    conn: Arc<ConnHandle>,
    slot: tokio::sync::OwnedSemaphorePermit,
    stop: tokio_util::sync::CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let idle = app.limits.idle_timeout();
    let (app2, conn2) = (app.clone(), conn.clone());
    let svc = hyper::service::service_fn(move |req| {
        let in_progress = conn2.request();
        app2.clone().handle(req, peer, in_progress)
    });
    let serving = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(serving);
    tokio::select! {
        r = serving.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        why = conn.closing(idle) => {
            // Idle: nothing is lost by closing; the slot is free for the next client at once.
            drop(slot);
            app.metrics.connection_closed(why.as_str());
            tracing::debug!(peer = %peer.ip(), reason = why.as_str(), "closing an idle connection");
            serving.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, serving).await;
        }
        () = stop.cancelled() => {
            serving.as_mut().graceful_shutdown();
            if let Err(e) = serving.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
