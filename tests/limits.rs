//! Limits and timeouts on client connections (`[limits]`, `src/limits.rs`), exercised
//! over raw TCP so nothing in a client library hides what the server does.

mod common;

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
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let sg = start(LimitsConfig {
        max_connections: 2,
        ..LimitsConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        s.write_all(HEALTH).await.unwrap();
        let (resp, _) = read_for(&mut s, Duration::from_secs(5)).await;
        assert!(resp.starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(sg.addr).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let (resp, _) = read_for(&mut third, Duration::from_millis(800)).await;
    assert!(
        resp.is_empty(),
        "a third connection waits while two are open"
    );
    drop(held.pop());
    let (resp, _) = read_for(&mut third, Duration::from_secs(5)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "served once one closed: {}",
        String::from_utf8_lossy(&resp)
    );
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
