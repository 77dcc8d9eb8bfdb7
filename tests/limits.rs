//! Limits and timeouts on client connections (`[limits]`, `src/limits.rs`), exercised
//! over raw TCP so nothing in a client library hides what the server does.

mod common;
mod raw_http;

use std::time::Duration;

use common::{Sealgate, start_fed_put, test_config};
use sealgate::limits::LimitsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: LimitsConfig) -> Sealgate {
    let mut cfg = test_config();
    cfg.limits = limits;
    Sealgate::start_with(cfg).await
}

/// Reads whatever the server sends within `wait`: (bytes, whether it closed).
async fn read_for(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"ok\n") {
                    return (out, false);
                }
            }
        }
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let sg = start(LimitsConfig {
        header_read_timeout_secs: 1,
        ..LimitsConfig::default()
    })
    .await;
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let (_, closed) = read_for(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the connection is closed");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_refused_with_431() {
    let sg = start(LimitsConfig {
        max_header_bytes: 16 * 1024,
        max_headers: 32,
        ..LimitsConfig::default()
    })
    .await;
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let many = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..40)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for req in [big, many] {
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        let (resp, _) = read_for(&mut s, Duration::from_secs(5)).await;
        assert!(
            resp.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    }
    // Within the limits the same request is served.
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    s.write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut s, Duration::from_secs(5)).await;
    assert!(resp.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn an_upload_whose_body_stalls_gets_request_timeout_and_stores_nothing() {
    let sg = start(LimitsConfig {
        body_idle_timeout_secs: 1,
        ..LimitsConfig::default()
    })
    .await;
    let b = sg.bucket().await;
    // A small body is read whole before the store is called; a large one is streamed.
    for (declared, sent) in [(4096u64, 1000usize), (1 << 20, 64 * 1024)] {
        let url = format!("{}/{b}/stalled-{declared}", sg.endpoint);
        let (tx, pending) = start_fed_put(url, declared);
        tx.send(Ok(bytes::Bytes::from(vec![7u8; sent])))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(20), pending)
            .await
            .expect("the stalled upload is answered, not left hanging")
            .unwrap()
            .expect("the client gets a response");
        // `tx` is still alive: the body stalled, it did not end.
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_eq!(r.status(), 400, "{declared}-byte upload");
        let body = r.text().await.unwrap();
        assert!(body.contains("<Code>RequestTimeout</Code>"), "{body}");
        drop(tx);
    }
    let listed = sg.direct.list_objects_v2().bucket(&b).send().await.unwrap();
    assert!(listed.contents().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn an_upload_cut_short_gets_incomplete_body_and_stores_nothing() {
    let sg = start(LimitsConfig::default()).await;
    let b = sg.bucket().await;
    for (declared, sent) in [(4096usize, 1000usize), (1 << 20, 100 * 1024)] {
        let url = format!("{}/{b}/short-{declared}", sg.endpoint);
        let h = common::signed_headers("PUT", &url, &[("content-length", declared.to_string())]);
        let mut req = format!("PUT /{b}/short-{declared} HTTP/1.1\r\n");
        for (k, v) in &h {
            req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
        req.push_str("\r\n");
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(&vec![5u8; sent]).await.unwrap();
        // The client stops sending: its half of the connection is closed.
        s.shutdown().await.unwrap();
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
            .await
            .expect("answered")
            .unwrap();
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 400"), "{declared}: {resp}");
        assert!(resp.contains("<Code>IncompleteBody</Code>"), "{resp}");
    }
    let listed = sg.direct.list_objects_v2().bucket(&b).send().await.unwrap();
    assert!(listed.contents().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn at_the_connection_limit_the_longest_idle_connection_makes_room() {
    let sg = start(LimitsConfig {
        max_connections: 2,
        ..LimitsConfig::default()
    })
    .await;
    // Two kept-alive connections, idle after one request each; the first idle longest.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        s.write_all(HEALTH).await.unwrap();
        let (resp, _) = read_for(&mut s, Duration::from_secs(5)).await;
        assert!(resp.starts_with(b"HTTP/1.1 200"));
        held.push(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = std::time::Instant::now();
    let mut third = TcpStream::connect(sg.addr).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut third, Duration::from_secs(5)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "a new client is served at once: {}",
        String::from_utf8_lossy(&resp)
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let (_, closed) = read_for(&mut held[0], Duration::from_secs(2)).await;
    assert!(closed, "the connection idle the longest was closed");
    held[1].write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut held[1], Duration::from_secs(5)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "the other one still works"
    );
}

#[tokio::test]
async fn when_every_connection_is_busy_new_ones_wait_until_one_ends() {
    let sg = start(LimitsConfig {
        max_connections: 2,
        ..LimitsConfig::default()
    })
    .await;
    let b = sg.bucket().await;
    // Two uploads in progress (head sent, body not yet): neither may be closed.
    let mut busy = Vec::new();
    for i in 0..2 {
        let path = format!("/{b}/busy-{i}");
        let url = format!("{}{path}", sg.endpoint);
        let h = common::signed_headers("PUT", &url, &[("content-length", "4096".into())]);
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        s.write_all(raw_http::head("PUT", &path, &h).as_bytes())
            .await
            .unwrap();
        s.write_all(&[1u8; 100]).await.unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(sg.addr).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut third, Duration::from_millis(800)).await;
    assert!(
        resp.is_empty(),
        "a third connection waits while two requests are in progress"
    );
    drop(busy.pop());
    let (resp, _) = read_for(&mut third, Duration::from_secs(5)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "served once one closed: {}",
        String::from_utf8_lossy(&resp)
    );
    // The upload still in progress was never cut off.
    busy[0].write_all(&[1u8; 3996]).await.unwrap();
    let (resp, _) = read_for(&mut busy[0], Duration::from_secs(10)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_download_loses_the_connection_and_its_slot() {
    let sg = start(LimitsConfig {
        body_idle_timeout_secs: 1,
        max_connections: 1,
        ..LimitsConfig::default()
    })
    .await;
    let b = sg.bucket().await;
    let size = 16 << 20;
    common::put(&sg.client, &b, "big", &common::pattern(size, 3)).await;
    // A signed GET whose client then reads nothing (a small receive buffer fills at once).
    let path = format!("/{b}/big");
    let h = common::signed_headers("GET", &format!("{}{path}", sg.endpoint), &[]);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(sg.addr).await.unwrap();
    stalled
        .write_all(raw_http::head("GET", &path, &h).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The download holds the only slot while it is being read; once it stalls for the
    // idle time, sealgate closes it and the next client gets the slot.
    let t = std::time::Instant::now();
    let mut next = TcpStream::connect(sg.addr).await.unwrap();
    next.write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut next, Duration::from_secs(15)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "served after the stalled download was closed: {}",
        String::from_utf8_lossy(&resp)
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut got)).await;
    assert!(
        got.len() < size,
        "the download was cut off ({} bytes)",
        got.len()
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_deadline() {
    let sg = start(LimitsConfig {
        header_read_timeout_secs: 1,
        ..LimitsConfig::default()
    })
    .await;
    // Silent from the start (hyper-util's HTTP/1-or-2 detection used to wait forever), and
    // silent after a first request on a kept-alive connection.
    let mut silent = TcpStream::connect(sg.addr).await.unwrap();
    let mut kept = TcpStream::connect(sg.addr).await.unwrap();
    kept.write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut kept, Duration::from_secs(5)).await;
    assert!(resp.starts_with(b"HTTP/1.1 200"));
    let t = std::time::Instant::now();
    for s in [&mut silent, &mut kept] {
        let (_, closed) = read_for(s, Duration::from_secs(10)).await;
        assert!(closed, "closed");
    }
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[tokio::test]
async fn an_http2_connection_without_a_request_in_progress_is_closed_at_the_deadline() {
    let sg = start(LimitsConfig {
        header_read_timeout_secs: 1,
        ..LimitsConfig::default()
    })
    .await;
    // Before any request (prior-knowledge HTTP/2: preface and SETTINGS, then nothing) ...
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "closed");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // ... and after one.
    let tcp = TcpStream::connect(sg.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("{}/health", sg.endpoint))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let t = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the server ended the idle HTTP/2 connection");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

/// Raises this process's open-file limit (soft, up to the hard limit; children such as
/// the sealgate binary inherit it) to at least `needed`, or fails saying what to do.
fn need_file_descriptors(needed: u64) {
    let got = rlimit::increase_nofile_limit(needed).expect("RLIMIT_NOFILE");
    assert!(
        got >= needed,
        "this test holds many connections: it needs {needed} file descriptors and the hard \
         limit allows {got} (raise it, e.g. `ulimit -Hn {needed}` as root)"
    );
}

/// Opens `n` connections that never send a byte.
async fn silent_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.unwrap());
    }
    out
}

/// Opens `n` connections that send a request head one byte every `every`, never ending
/// it (slowloris); each stops when the server closes it.
async fn trickling_connections(
    addr: std::net::SocketAddr,
    n: usize,
    every: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        out.push(tokio::spawn(async move {
            let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Trickle: ";
            for i in 0.. {
                let b = head.get(i).copied().unwrap_or(b'a');
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        }));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_and_trickling_connections_does_not_delay_a_normal_get() {
    // The defaults: max_connections 1024, a 30 s deadline. The flood (2,200 connections)
    // is larger than the limit; it used to make every new client wait for as long as the
    // flood stayed.
    // 2,200 client sockets and up to 1,024 (+1 waiting) server sockets in this process.
    need_file_descriptors(4096);
    let sg = start(LimitsConfig::default()).await;
    let b = sg.bucket().await;
    common::put(&sg.client, &b, "small", b"a small object").await;
    let get_url = format!("{}/{b}/small", sg.endpoint);

    let silent = silent_connections(sg.addr, 2000).await;
    let trickling = trickling_connections(sg.addr, 200, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    for round in 0..5 {
        let t = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            raw_http::one_request(sg.addr, std::str::from_utf8(HEALTH).unwrap()),
        )
        .await
        .expect("/health answered");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
        let health = t.elapsed();

        let t = std::time::Instant::now();
        let h = common::signed_headers("GET", &get_url, &[]);
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            raw_http::one_request(sg.addr, &raw_http::head("GET", &format!("/{b}/small"), &h)),
        )
        .await
        .expect("GET answered");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"a small object"[..]),
            "{}",
            r.text()
        );
        let get = t.elapsed();
        assert!(
            health < Duration::from_secs(1) && get < Duration::from_secs(1),
            "round {round}: /health took {health:?}, GET took {get:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(silent);
    for t in trickling {
        t.abort();
    }
}
#[tokio::test]
async fn an_upload_declaring_more_than_five_tib_is_refused_before_any_body() {
    let sg = start(LimitsConfig::default()).await;
    let b = sg.bucket().await;
    let url = format!("{}/{b}/huge", sg.endpoint);
    let (tx, pending) = start_fed_put(url, 6 << 40);
    let r = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("answered without waiting for the body")
        .unwrap()
        .unwrap();
    drop(tx);
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("EntityTooLarge"));
}

/// p-th percentile (0..=100) of sorted durations, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1000.0
}

/// Resident memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The connection-flood figures of docs/performance.md ("Connection floods"): latency of
/// /health and of a small signed GET, each on a new connection, while N silent
/// connections are held open, for N up to 10,000: first with `max_connections` raised
/// above N (all of them are really held; the idle deadline raised to outlast the run),
/// then with the default limits (1024: the connections beyond it are evicted as they
/// come). sealgate runs as its own process (each side then needs only N file
/// descriptors); set `SEALGATE_TEST_BIN` to measure a release build:
///
/// `cargo build --release --bin sealgate && SEALGATE_TEST_BIN=target/release/sealgate
///  cargo test --test limits -- --ignored flood_figures --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about a minute), run by hand for docs/performance.md"]
async fn flood_figures() {
    // 10,000 silent connections on each side: the client here, sealgate in its own process.
    need_file_descriptors(10_500);
    let g = common::garage();
    for (title, limits) in [
        (
            "max_connections = 12000",
            "limits = { max_connections = 12000, header_read_timeout_secs = 900 }",
        ),
        ("default limits (max_connections = 1024)", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sg = common::SealgateProcess::start_with(
            dir.path(),
            (&g.endpoint, &g.access_key, &g.secret_key, &g.region),
            "warn",
            limits,
        )
        .await;
        println!("\n{title}\n");
        flood_table(&sg).await;
    }
}

async fn flood_table(sg: &common::SealgateProcess) {
    const ROUNDS: usize = 300;
    let client = sg.client();
    let b = format!("flood-{}", common::random_hex(4));
    client.create_bucket().bucket(&b).send().await.unwrap();
    common::put(&client, &b, "small", &[7u8; 1024]).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", sg.port).parse().unwrap();
    let get_url = format!("{}/{b}/small", sg.endpoint);
    let health = std::str::from_utf8(HEALTH).unwrap().to_string();
    let pid = sg.pid().unwrap();

    println!(
        "| silent connections opened | /health p50 | /health p99 | signed GET p50 | signed GET p99 | open (server) | server RSS |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in [0usize, 1000, 2000, 5000, 10_000] {
        let held = silent_connections(addr, n).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for i in 0..ROUNDS * 2 {
            let kind = i % 2;
            // Signed before the clock starts: the figure is the server's.
            let head = if kind == 0 {
                health.clone()
            } else {
                let h = common::signed_headers("GET", &get_url, &[]);
                raw_http::head("GET", &format!("/{b}/small"), &h)
            };
            let t = std::time::Instant::now();
            let r = raw_http::one_request(addr, &head).await;
            lat[kind].push(t.elapsed());
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let open = common::metric(&sg.endpoint, "sealgate_client_connections").await;
        for l in lat.iter_mut() {
            l.sort();
        }
        println!(
            "| {n} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {open} | {:.0} MiB |",
            percentile_ms(&lat[0], 50),
            percentile_ms(&lat[0], 99),
            percentile_ms(&lat[1], 50),
            percentile_ms(&lat[1], 99),
            rss_mib(pid),
        );
        drop(held);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
