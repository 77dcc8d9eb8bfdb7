//! What a client learns when the store answers an error: the store's error code (clients
//! act on it), AWS's message for it, never the store's own text, which can name the
//! store's credential, hosts or internals (issue 19).

mod common;

use common::{Sealgate, Store, signed_request};
use rstest::rstest;

/// Text that appears in the store's own error documents but must not reach clients.
fn assert_clean(body: &str, store_access_key: &str) {
    assert!(!body.contains(store_access_key), "{body}");
    assert!(!body.contains("127.0.0.1"), "{body}");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_reach_clients_as_their_code_with_awss_message(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let ak = store.shared().access_key.clone();
    // A pass-through operation on a bucket that does not exist.
    let r = signed_request(&sg, "GET", "/no-such-bucket-here?tagging", Vec::new()).await;
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Code>NoSuchBucket</Code>"), "{body}");
    assert!(
        body.contains("The specified bucket does not exist"),
        "{body}"
    );
    assert_clean(&body, &ak);
    // A store that refuses sealgate's credential: the client's own signature was fine,
    // so it hears AccessDenied, not SignatureDoesNotMatch, and not the store's key id.
    let mut cfg = common::test_config_on(store);
    cfg.upstream.secret_access_key = sealgate::config::Secret::new("not-the-store-secret-at-all");
    let bad = Sealgate::start_with(cfg).await;
    let r = signed_request(&bad, "GET", "/any-bucket?tagging", Vec::new()).await;
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert_clean(&body, &ak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_a_503_that_names_no_address() {
    let mut cfg = common::test_config();
    let port = common::free_port();
    cfg.upstream.endpoint = format!("http://127.0.0.1:{port}");
    let sg = Sealgate::start_with(cfg).await;
    let r = signed_request(&sg, "GET", "/some-bucket/k", Vec::new()).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
    assert!(!body.contains(&port.to_string()), "{body}");
    assert!(!body.contains("os error"), "{body}");
}

/// Every error document carries `<RequestId>`, equal to the `x-amz-request-id` header
/// (SDKs show both; support asks for them): errors of the store, of sealgate's handlers
/// and of the S3 front's authentication alike. The store's own request id and server
/// name are not passed on.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_documents_carry_the_request_id_of_their_header(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let check = |r: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(r.status(), status);
        let id = r.headers()["x-amz-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(!id.is_empty());
        assert!(r.headers().get("server").is_none(), "{:?}", r.headers());
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
        assert!(
            body.contains(&format!("<RequestId>{id}</RequestId>")),
            "{body}"
        );
        id
    };
    // From the store (a missing key, streamed through), from sealgate (a bad part
    // number), from authentication (no such access key).
    let a = check(
        signed_request(&sg, "GET", &format!("/{b}/missing"), Vec::new()).await,
        404,
        "NoSuchKey",
    )
    .await;
    let c = check(
        signed_request(
            &sg,
            "GET",
            &format!("/{b}/missing?partNumber=0"),
            Vec::new(),
        )
        .await,
        400,
        "InvalidArgument",
    )
    .await;
    let anonymous = reqwest::get(format!("{}/{b}/missing", sg.endpoint))
        .await
        .unwrap();
    let d = check(anonymous, 403, "AccessDenied").await;
    assert!(a != c && c != d, "each request has its own id");
    // Successful answers carry it too.
    let ok = signed_request(&sg, "GET", &format!("/{b}?list-type=2"), Vec::new()).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("x-amz-request-id"));
}
