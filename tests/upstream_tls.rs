//! A store behind HTTPS: sealgate verifies it against `upstream.ca_file` and streams
//! through it. The HTTPS store here is a second sealgate with a TLS listener in front of
//! Garage, so both ends of the TLS connection are real (the outer sealgate stores
//! unencrypted; the inner one encrypts).

mod common;

use common::{CLIENT_AK, CLIENT_SK, Sealgate, pattern, sha256};

async fn https_store(dir: &std::path::Path) -> (Sealgate, std::path::PathBuf) {
    let mut cfg = common::test_config();
    let tls = common::write_test_cert(dir);
    let ca = tls.cert_file.clone();
    cfg.tls = Some(tls);
    (Sealgate::start_with(cfg).await, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_through_an_https_store_trusted_by_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ca) = https_store(dir.path()).await;
    let port = store.addr.port();
    let mut cfg = common::config_for_store(
        &format!("https://localhost:{port}"),
        CLIENT_AK,
        CLIENT_SK,
        "us-east-1",
    );
    cfg.upstream.ca_file = Some(ca);
    // The inner sealgate hides its own state bucket; the outer one keeps its settings
    // in another.
    cfg.state_bucket = "sealgate-outer-state".into();
    // The inner sealgate refuses sealgate's reserved metadata from its clients, so the
    // outer one stores as they are what the inner one then encrypts.
    cfg.encryption.default = "none".into();
    let sg = Sealgate::start_with(cfg).await;
    let bucket = sg.bucket().await;
    // Several segments and not a whole number of them.
    let data = pattern(3 * 65536 + 1234, 7);
    common::put(&sg.client, &bucket, "over/tls", &data).await;
    let got = common::get(&sg.client, &bucket, "over/tls").await;
    assert_eq!(sha256(&got), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_store_with_an_untrusted_certificate_is_unavailable_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _ca) = https_store(dir.path()).await;
    let cfg = common::config_for_store(
        &format!("https://localhost:{}", store.addr.port()),
        CLIENT_AK,
        CLIENT_SK,
        "us-east-1",
    );
    let sg = Sealgate::start_with(cfg).await;
    let err = sg.client.list_buckets().send().await.unwrap_err();
    let raw = err.raw_response().expect("an HTTP answer from sealgate");
    assert_eq!(raw.status().as_u16(), 503, "{err:?}");
    let body = String::from_utf8_lossy(raw.body().bytes().unwrap()).into_owned();
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
    assert!(body.contains("certificate"), "says why: {body}");
}
