//! Requests crafted to get around sealgate's checks, sent at the raw HTTP level (a client
//! library would normalise or refuse what matters here): Signature Version 2 hidden
//! behind percent-encoded query names, presigned URLs valid for too long, and a small
//! `x-amz-decoded-content-length` in front of a large body.

mod common;
mod raw_http;

use std::time::Duration;

use common::{CLIENT_AK, CLIENT_SK, Sealgate, test_config};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A Signature Version 2 presigned GET of `/bucket/key` (HMAC-SHA1 over AWS's V2 string
/// to sign), with the query parameter names as given (so they can be percent-encoded).
fn v2_presigned_path(bucket: &str, key: &str, names: (&str, &str, &str)) -> String {
    use base64::Engine as _;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let to_sign = format!("GET\n\n\n{expires}\n/{bucket}/{key}");
    let k = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        CLIENT_SK.as_bytes(),
    );
    let sig = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::hmac::sign(&k, to_sign.as_bytes()).as_ref());
    let sig: String =
        percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC).to_string();
    let (ak, ex, sg) = names;
    format!("/{bucket}/{key}?{ak}={CLIENT_AK}&{ex}={expires}&{sg}={sig}")
}

async fn get_path(sg: &Sealgate, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        sg.addr.port()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    response_within(&mut s, Duration::from_secs(10)).await
}

/// What arrives within `wait`: (status or 0, the text).
async fn response_within(s: &mut TcpStream, wait: Duration) -> (u16, String) {
    let r = raw_http::read_response(s, wait).await;
    (r.status, r.text())
}

#[tokio::test]
async fn signature_v2_is_refused_however_its_query_names_are_encoded() {
    let sg = Sealgate::start().await;
    let b = sg.bucket().await;
    common::put(&sg.client, &b, "secret", b"v2 must not read this").await;
    for names in [
        ("AWSAccessKeyId", "Expires", "Signature"),
        ("AWSAccessKey%49d", "Expires", "Signatur%65"),
        ("%41WSAccessKeyId", "Expire%73", "%53%69gnature"),
    ] {
        let path = v2_presigned_path(&b, "secret", names);
        let (status, text) = get_path(&sg, &path).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("<Code>InvalidRequest</Code>"), "{text}");
        assert!(!text.contains("v2 must not read this"), "{text}");
    }

    // The same URLs are real V2 signatures: served where V2 is allowed.
    let mut cfg = test_config();
    cfg.allow_signature_v2 = true;
    let v2 = Sealgate::start_with(cfg).await;
    common::put(&v2.client, &b, "secret", b"v2 may read this").await;
    for names in [
        ("AWSAccessKeyId", "Expires", "Signature"),
        ("AWSAccessKey%49d", "Expires", "Signatur%65"),
    ] {
        let (status, text) = get_path(&v2, &v2_presigned_path(&b, "secret", names)).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("v2 may read this"), "{text}");
    }
}

/// A SigV4 presigned GET URL for `url`, valid for `expires`.
fn presign_v4(url: &str, expires: Duration) -> String {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    let identity =
        aws_credential_types::Credentials::new(CLIENT_AK, CLIENT_SK, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let host = url.split('/').nth(2).unwrap();
    let signable = SignableRequest::new(
        "GET",
        url,
        [("host", host)].into_iter(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instr, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::get(url).body(()).unwrap();
    instr.apply_to_request_http1x(&mut req);
    req.uri().to_string()
}

#[tokio::test]
async fn a_presigned_url_valid_for_more_than_seven_days_is_refused_as_aws_does() {
    let sg = Sealgate::start().await;
    let b = sg.bucket().await;
    common::put(&sg.client, &b, "k", b"seven days at most").await;
    let url = format!("{}/{b}/k", sg.endpoint);

    let week = presign_v4(&url, Duration::from_secs(604_800));
    let r = reqwest::get(&week).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "seven days at most");

    let longer = presign_v4(&url, Duration::from_secs(604_801));
    assert!(longer.contains("X-Amz-Expires=604801"), "{longer}");
    let r = reqwest::get(&longer).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<Code>AuthorizationQueryParametersError</Code>")
            && text.contains("X-Amz-Expires must be less than a week (in seconds) that is 604800"),
        "{text}"
    );
}

#[tokio::test]
async fn a_decoded_length_without_aws_chunked_is_refused_before_the_body() {
    let sg = Sealgate::start().await;
    let b = sg.bucket().await;
    let path = format!("/{b}/small-claim");
    let url = format!("{}{path}", sg.endpoint);
    // 1 byte "decoded", 64 MiB on the wire: the whole body would count as a small one
    // and be read into memory before the store is called.
    let h = common::signed_headers(
        "PUT",
        &url,
        &[
            ("content-length", (64u64 << 20).to_string()),
            ("x-amz-decoded-content-length", "1".into()),
        ],
    );
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    s.write_all(raw_http::head("PUT", &path, &h).as_bytes())
        .await
        .unwrap();
    s.write_all(&[0u8; 64 * 1024]).await.unwrap();
    let (status, text) = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status, 400, "answered without reading the body: {text}");
    assert!(text.contains("<Code>InvalidRequest</Code>"), "{text}");
    let listed = sg.direct.list_objects_v2().bucket(&b).send().await.unwrap();
    assert!(listed.contents().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn an_aws_chunked_body_longer_than_its_decoded_length_is_refused_as_it_arrives() {
    let sg = Sealgate::start().await;
    let b = sg.bucket().await;
    let path = format!("/{b}/chunked-claim");
    let url = format!("{}{path}", sg.endpoint);
    let mut h = http::HeaderMap::new();
    h.insert(
        "host",
        format!("127.0.0.1:{}", sg.addr.port()).parse().unwrap(),
    );
    h.insert("content-encoding", "aws-chunked".parse().unwrap());
    h.insert("x-amz-decoded-content-length", "10".parse().unwrap());
    h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().unwrap());
    h.insert("transfer-encoding", "chunked".parse().unwrap());
    common::sign_for_sealgate("PUT", &url, &mut h, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    let mut s = TcpStream::connect(sg.addr).await.unwrap();
    s.write_all(raw_http::head("PUT", &path, &h).as_bytes())
        .await
        .unwrap();
    // One aws-chunked chunk of 64 KiB (in one HTTP chunk), and then the client keeps the
    // body open as if 64 MiB more were coming.
    let data = vec![9u8; 64 * 1024];
    let mut aws_chunk = format!("{:x}\r\n", data.len()).into_bytes();
    aws_chunk.extend_from_slice(&data);
    aws_chunk.extend_from_slice(b"\r\n");
    let mut http_chunk = format!("{:x}\r\n", aws_chunk.len()).into_bytes();
    http_chunk.extend_from_slice(&aws_chunk);
    http_chunk.extend_from_slice(b"\r\n");
    s.write_all(&http_chunk).await.unwrap();
    let (status, text) = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status, 400, "refused once past the declared length: {text}");
    assert!(text.contains("<Code>IncompleteBody</Code>"), "{text}");
    let listed = sg.direct.list_objects_v2().bucket(&b).send().await.unwrap();
    assert!(listed.contents().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn the_kms_database_and_audit_log_are_created_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let sg = Sealgate::start().await;
    // A KMS call: the audit log has a record, the database a key.
    common::new_key_arn(&sg).await;
    let dir = sg.state_dir.path();
    for name in ["kms.redb", "kms.audit.jsonl"] {
        // The audit record is written by a background writer: wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let meta = loop {
            let meta = std::fs::metadata(dir.join(name)).unwrap();
            if meta.len() > 0 || std::time::Instant::now() > deadline {
                break meta;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(meta.len() > 0, "{name} is in use");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{name} is readable by its owner only"
        );
    }
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    let mut cfg = test_config();
    cfg.metrics_token = Some(sealgate::config::Secret::new("scrape-token-0123456789"));
    let sg = Sealgate::start_with(cfg).await;
    let url = format!("{}/metrics", sg.endpoint);
    let http = reqwest::Client::new();
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("scrape-token-0123456789"),
    ] {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().contains_key("www-authenticate"));
        assert!(!r.text().await.unwrap().contains("sealgate_"));
    }
    let r = http
        .get(&url)
        .header("authorization", "Bearer scrape-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("sealgate_client_connections"), "{text}");
    // Without a token configured, /metrics stays open (the default).
    let open = Sealgate::start().await;
    let r = reqwest::get(format!("{}/metrics", open.endpoint))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
