//! HTTP/1.1 framing around `Expect: 100-continue`, over raw TCP so nothing in a client
//! library hides what sealgate writes on the connection.
//!
//! botocore (aws-cli, boto3) sends `Expect: 100-continue` on every PutObject/UploadPart,
//! even for an empty body. A server may answer an empty body with the final response and
//! no interim 100; botocore then keeps that connection in a state where the next upload
//! on it parses the real response line as a header (`MissingHeaderBodySeparatorDefect`,
//! `upload failed: ... 'ETag'`). sealgate closes such a connection after its response.

mod common;

use common::Store;
use rstest::rstest;

use std::time::Duration;

use common::Sealgate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A signed PUT request head for `path` with these extra headers.
fn put_head(sg: &Sealgate, path: &str, extra: &[(&str, String)]) -> String {
    let url = format!("{}{path}", sg.endpoint);
    let h = common::signed_headers("PUT", &url, extra);
    let mut req = format!("PUT {path} HTTP/1.1\r\n");
    for (k, v) in &h {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    req
}

/// Reads one response head (through the blank line) and `Content-Length` body bytes.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert_eq!(n, 1, "connection closed mid-head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn an_empty_upload_expecting_100_continue_is_answered_and_its_connection_closed(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    let req = put_head(
        &sg,
        &format!("/{b}/empty"),
        &[
            ("content-length", "0".into()),
            ("expect", "100-continue".into()),
        ],
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "the client is told the connection ends: {resp}"
    );
    assert!(closed(&mut s).await, "and it does end");
    let got = common::get(&sg.client, &b, "empty").await;
    assert!(got.is_empty());
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn an_upload_expecting_100_continue_gets_one_interim_and_one_final_response(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    for (i, len) in [(1, 5000usize), (2, 300_000)] {
        let req = put_head(
            &sg,
            &format!("/{b}/obj{i}"),
            &[
                ("content-length", len.to_string()),
                ("expect", "100-continue".into()),
            ],
        );
        s.write_all(req.as_bytes()).await.unwrap();
        // Nothing but the interim response until the body is sent.
        let mut interim = vec![0u8; b"HTTP/1.1 100 Continue\r\n\r\n".len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
            .await
            .expect("100 Continue within 5 s")
            .unwrap();
        assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(&common::pattern(len, i)).await.unwrap();
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(
            !resp.to_ascii_lowercase().contains("connection: close"),
            "kept alive for the next upload: {resp}"
        );
        assert_eq!(
            common::get(&sg.client, &b, &format!("obj{i}")).await.len(),
            len
        );
    }
}

/// An upload refused before its body is read (here: an unknown SSE algorithm) must end
/// its connection and say so: the unread body (or, after `Expect: 100-continue`, the
/// client's next request) would otherwise be read as the next request on it. boto3 then
/// sometimes got a bare `400 Bad Request` for a valid request that followed.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn an_upload_refused_before_its_body_is_read_closes_its_connection(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    for expect in [true, false] {
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        let mut extra = vec![
            ("content-length", "5000".to_string()),
            ("x-amz-server-side-encryption", "bogus".to_string()),
        ];
        if expect {
            extra.push(("expect", "100-continue".into()));
        }
        let req = put_head(&sg, &format!("/{b}/refused"), &extra);
        s.write_all(req.as_bytes()).await.unwrap();
        if !expect {
            s.write_all(&common::pattern(5000, 1)).await.unwrap();
        }
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
        assert!(resp.contains("<Code>InvalidArgument</Code>"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "expect {expect}: the client is told the connection ends: {resp}"
        );
        assert!(closed(&mut s).await, "expect {expect}: and it does end");
    }
    // A valid upload on a new connection is answered as usual.
    common::put(&sg.client, &b, "after", b"fine").await;
}

/// A PUT framed as plain HTTP/1.1 chunked, with no length (neither Content-Length nor
/// aws-chunked's decoded length), is refused as AWS S3 refuses it: 501 NotImplemented
/// naming the `Transfer-Encoding` header. Nothing is stored.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_chunked_upload_without_a_length_is_refused_as_on_aws(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    let req = put_head(
        &sg,
        &format!("/{b}/chunked"),
        &[("transfer-encoding", "chunked".into())],
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(b"3\r\nbar\r\n0\r\n\r\n").await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 501 "), "{resp}");
    assert!(resp.contains("<Code>NotImplemented</Code>"), "{resp}");
    assert!(
        resp.contains("<Header>Transfer-Encoding</Header>"),
        "{resp}"
    );
    assert!(resp.contains("<RequestId>"), "{resp}");
    let missing = sg
        .client
        .head_object()
        .bucket(&b)
        .key("chunked")
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.raw_response().unwrap().status().as_u16(), 404);
    common::put(&sg.client, &b, "after", b"fine").await;
}
