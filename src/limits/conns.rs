//! The client connections being served, and which of them are idle, so that an idle
//! connection can be closed when its deadline passes or to make room for a new client
//! when `limits.max_connections` is reached.
//!
//! Invariants: a connection is *idle* exactly while no request on it is in progress —
//! from accept (TLS handshake and protocol detection included) to its first complete
//! request head, and from the end of each response to the next complete request head;
//! a request is in progress from its complete head until its response body has been
//! sent or dropped. Only idle connections are ever closed by the idle deadline or evicted,
//! and the connection evicted first is the one that has been idle the longest (a client
//! that has just connected is the last to go). Every state change happens under one
//! lock (the registry's, then the connection's), so a request that starts wins against
//! an eviction decided just before it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Why an idle connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No complete request head within the idle deadline.
    IdleTimeout,
    /// Closed to make room for a new client at the connection limit.
    Evicted,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
        }
    }
}

/// All open client connections of one listener.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Wakes the acceptor when a connection becomes idle (it may then be evicted).
    became_idle: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Idle connections by the order in which they became idle (oldest first).
    idle: BTreeMap<u64, Arc<Conn>>,
    next_seq: u64,
    open: usize,
}

#[derive(Debug)]
struct Conn {
    state: Mutex<ConnState>,
    /// Wakes the connection's own task when its state changed.
    wake: Notify,
}

#[derive(Debug)]
struct ConnState {
    /// Requests in progress (HTTP/2 multiplexes several).
    active: usize,
    /// Key in `Inner::idle` while idle.
    idle_key: Option<u64>,
    idle_since: Instant,
    evicted: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent even if a holder panicked: every update is one step.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Registers a connection just accepted (idle from now on).
    pub fn open(self: &Arc<Self>) -> ConnHandle {
        let mut inner = lock(&self.inner);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.open += 1;
        let conn = Arc::new(Conn {
            state: Mutex::new(ConnState {
                active: 0,
                idle_key: Some(seq),
                idle_since: Instant::now(),
                evicted: false,
            }),
            wake: Notify::new(),
        });
        inner.idle.insert(seq, conn.clone());
        drop(inner);
        self.became_idle.notify_one();
        ConnHandle {
            registry: self.clone(),
            conn,
        }
    }

    /// Open connections.
    pub fn open_count(&self) -> usize {
        lock(&self.inner).open
    }

    /// Idle connections.
    pub fn idle_count(&self) -> usize {
        lock(&self.inner).idle.len()
    }

    /// Tells the connection idle the longest to close; false if none is idle.
    pub fn evict_oldest_idle(&self) -> bool {
        let mut inner = lock(&self.inner);
        let Some((_, conn)) = inner.idle.pop_first() else {
            return false;
        };
        let mut st = lock(&conn.state);
        st.idle_key = None;
        st.evicted = true;
        drop(st);
        drop(inner);
        conn.wake.notify_one();
        true
    }

    /// Resolves when some connection may have become idle since the last call.
    pub async fn some_became_idle(&self) {
        self.became_idle.notified().await;
    }
}

/// One open connection; dropping it deregisters the connection.
#[derive(Debug)]
pub struct ConnHandle {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl ConnHandle {
    /// Marks a request as in progress until the returned guard is dropped.
    pub fn request(&self) -> RequestGuard {
        let mut inner = lock(&self.registry.inner);
        let mut st = lock(&self.conn.state);
        if st.active == 0 {
            if let Some(k) = st.idle_key.take() {
                inner.idle.remove(&k);
            }
            // A request that started wins against an eviction not yet carried out.
            st.evicted = false;
        }
        st.active += 1;
        drop(st);
        drop(inner);
        self.conn.wake.notify_one();
        RequestGuard {
            registry: self.registry.clone(),
            conn: self.conn.clone(),
        }
    }

    /// Resolves when this connection should be closed: it has been idle for `idle`, or it
    /// was evicted while idle. Never resolves while a request is in progress.
    pub async fn closing(&self, idle: Duration) -> Closed {
        loop {
            let woken = self.conn.wake.notified();
            let deadline = {
                let st = lock(&self.conn.state);
                if st.active > 0 {
                    None
                } else if st.evicted {
                    return Closed::Evicted;
                } else {
                    Some(st.idle_since + idle)
                }
            };
            match deadline {
                None => woken.await,
                Some(at) => {
                    tokio::select! {
                        () = woken => {}
                        () = tokio::time::sleep_until(at) => {
                            let st = lock(&self.conn.state);
                            if st.active == 0 && st.idle_since + idle <= Instant::now() {
                                return Closed::IdleTimeout;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let mut inner = lock(&self.registry.inner);
        inner.open -= 1;
        if let Some(k) = lock(&self.conn.state).idle_key.take() {
            inner.idle.remove(&k);
        }
    }
}

/// A request in progress on a connection (see [`ConnHandle::request`]).
#[derive(Debug)]
pub struct RequestGuard {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut inner = lock(&self.registry.inner);
        let mut st = lock(&self.conn.state);
        st.active -= 1;
        let idle = st.active == 0;
        if idle {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            st.idle_key = Some(seq);
            st.idle_since = Instant::now();
            inner.idle.insert(seq, self.conn.clone());
        }
        drop(st);
        drop(inner);
        self.conn.wake.notify_one();
        if idle {
            self.registry.became_idle.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request "in progress" until it is sent or dropped.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = r {
            // The whole response is out: the connection is idle again.
            this.guard.take();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_at_its_deadline_and_a_busy_one_never() {
        let reg = Registry::new();
        let c = reg.open();
        let idle = Duration::from_secs(30);
        let t = Instant::now();
        assert_eq!(c.closing(idle).await, Closed::IdleTimeout);
        assert_eq!(t.elapsed(), idle);

        let c = reg.open();
        let busy = c.request();
        let r = tokio::time::timeout(Duration::from_secs(3600), c.closing(idle)).await;
        assert!(r.is_err(), "a request in progress keeps the connection");
        // The deadline restarts when the request ends.
        drop(busy);
        let t = Instant::now();
        assert_eq!(c.closing(idle).await, Closed::IdleTimeout);
        assert_eq!(t.elapsed(), idle);
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_takes_the_longest_idle_connection_and_never_a_busy_one() {
        let reg = Registry::new();
        let oldest = reg.open();
        tokio::time::advance(Duration::from_secs(1)).await;
        let busy = reg.open();
        let _req = busy.request();
        let newest = reg.open();
        assert_eq!((reg.open_count(), reg.idle_count()), (3, 2));

        assert!(reg.evict_oldest_idle());
        assert_eq!(
            oldest.closing(Duration::from_secs(60)).await,
            Closed::Evicted
        );
        assert!(reg.evict_oldest_idle());
        assert_eq!(
            newest.closing(Duration::from_secs(60)).await,
            Closed::Evicted
        );
        assert!(!reg.evict_oldest_idle(), "the busy one is not idle");
        drop((oldest, newest));
        assert_eq!(reg.open_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_starts_after_an_eviction_was_decided_wins() {
        let reg = Registry::new();
        let c = reg.open();
        assert!(reg.evict_oldest_idle());
        let req = c.request();
        let r = tokio::time::timeout(Duration::from_secs(100), c.closing(Duration::from_secs(30)))
            .await;
        assert!(r.is_err(), "not closed while the request runs");
        drop(req);
        // Idle again: evictable again, and the deadline runs again.
        assert_eq!(reg.idle_count(), 1);
        assert_eq!(
            c.closing(Duration::from_secs(30)).await,
            Closed::IdleTimeout
        );
    }
}
