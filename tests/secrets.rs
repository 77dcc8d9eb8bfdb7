//! Secrets never leak: not in `Debug` output of the config or the running application,
//! not in logs at the most verbose level (even when the operator asks for s3s's own
//! trace output), and not in what the listener refuses.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use base64::Engine as _;
use common::{CLIENT_SK, SealgateProcess, signed_headers};

const UPSTREAM_SECRET: &str = "UPSTREAM-SECRET-do-not-log-4242";

/// Every way `needle` could appear: as is, hex, base64 (for byte secrets).
fn forms(needle: &[u8]) -> Vec<String> {
    let mut v = vec![
        hex::encode(needle),
        base64::engine::general_purpose::STANDARD.encode(needle),
    ];
    if let Ok(s) = std::str::from_utf8(needle) {
        v.push(s.to_string());
    }
    v
}

#[track_caller]
fn assert_absent(haystack: &str, what: &str, needle: &[u8]) {
    for f in forms(needle) {
        assert!(
            !haystack.contains(&f),
            "{what} appears in the output: …{}…",
            &haystack[haystack.find(&f).unwrap().saturating_sub(80)..][..160.min(haystack.len())]
        );
    }
}

#[tokio::test]
async fn config_and_application_debug_output_contains_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let root_hex = "5e".repeat(32);
    common::write_private(&dir.path().join("root.key"), root_hex.as_bytes());
    let mut cfg = common::config_for_store(
        "http://127.0.0.1:9",
        "GKdebug000",
        UPSTREAM_SECRET,
        "garage",
    );
    cfg.kms.root_key_file = Some(dir.path().join("root.key"));
    cfg.kms.db_path = dir.path().join("kms.redb");
    cfg.validate().unwrap();
    let app = sealgate::server::App::new(&cfg).unwrap();
    let kms = sealgate::kms::Kms::open(&{
        let mut k = cfg.kms.clone();
        k.db_path = dir.path().join("kms2.redb");
        k
    })
    .unwrap();
    let metrics = std::sync::Arc::new(sealgate::metrics::Metrics::new());
    let upstream = sealgate::upstream::Upstream::new(&cfg.upstream).unwrap();
    let state = sealgate::s3::State {
        upstream: upstream.clone(),
        objects: sealgate::object::Objects {
            store: upstream,
            keys: sealgate::keys::Backends::new(&cfg.kms_backend, kms.clone(), metrics.clone())
                .unwrap(),
            metrics: metrics.clone(),
            known: Default::default(),
            state_bucket: cfg.state_bucket.clone(),
            manifests: Default::default(),
        },
        access_keys: cfg.access_key_table(),
        vhost_domain: None,
        max_buffered_body: cfg.max_buffered_body,
        kms,
        encryption: cfg.encryption.clone(),
        state_bucket: cfg.state_bucket.clone(),
        metrics,
        cors: Default::default(),
    };
    let dump = format!("{cfg:?}\n{cfg:#?}\n{app:?}\n{app:#?}\n{state:?}\n{state:#?}");
    assert!(dump.contains("GKdebug000"), "the dump is real: {dump}");
    assert_absent(&dump, "the store's secret key", UPSTREAM_SECRET.as_bytes());
    assert_absent(&dump, "a client's secret key", CLIENT_SK.as_bytes());
    assert_absent(&dump, "the KMS root key", root_hex.as_bytes());
    assert_absent(&dump, "the KMS root key bytes", &[0x5e; 32]);
}

/// The Authorization signature of a signed request.
fn signature_of(h: &http::HeaderMap) -> String {
    let auth = h["authorization"].to_str().unwrap();
    auth.rsplit_once("Signature=").unwrap().1.to_string()
}

#[tokio::test]
async fn trace_logs_of_put_get_presign_and_kms_calls_contain_no_secret() {
    let g = common::garage();
    let dir = tempfile::tempdir().unwrap();
    // The operator asks for everything, s3s included.
    let sg = SealgateProcess::start_logging(
        dir.path(),
        (&g.endpoint, &g.access_key, &g.secret_key, &g.region),
        "trace,s3s=trace",
    )
    .await;
    let s3 = sg.client();
    s3.create_bucket().bucket("secrets").send().await.unwrap();
    let plaintext = b"OBJECT-PLAINTEXT-never-logged-31337".repeat(100);

    let url = format!("{}/secrets/obj", sg.endpoint);
    let h = signed_headers(
        "PUT",
        &url,
        &[
            ("content-length", plaintext.len().to_string()),
            ("x-amz-meta-note", "USER-METADATA-VALUE-4711".to_string()),
        ],
    );
    let mut signatures = vec![signature_of(&h)];
    let r = reqwest::Client::new()
        .put(&url)
        .headers(h)
        .body(plaintext.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = signed_headers("GET", &url, &[]);
    signatures.push(signature_of(&h));
    let got = reqwest::Client::new()
        .get(&url)
        .headers(h)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &plaintext[..]);
    // A presigned URL carries its signature in the query.
    let pre = s3
        .get_object()
        .bucket("secrets")
        .key("obj")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let pre_url = pre.uri().to_string();
    signatures.push(
        pre_url
            .split("X-Amz-Signature=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string(),
    );
    let got = reqwest::get(&pre_url).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &plaintext[..]);
    // A refused Signature Version 2 request is not echoed either.
    let v2 = reqwest::Client::new()
        .get(&url)
        .header(
            "authorization",
            "AWS AKIDSEALGATETEST:djJzaWduYXR1cmVzZWNyZXQ=",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), 400);
    assert!(v2.text().await.unwrap().contains("Signature Version 2"));

    let kms = sg.kms_client();
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    let dk = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let dek = dk.plaintext().unwrap().as_ref().to_vec();
    let kms_plain = b"KMS-PLAINTEXT-never-logged-2718".to_vec();
    let enc = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(kms_plain.clone()))
        .send()
        .await
        .unwrap();
    let dec = kms
        .decrypt()
        .ciphertext_blob(enc.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), &kms_plain[..]);
    let random = kms
        .generate_random()
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let random = random.plaintext().unwrap().as_ref().to_vec();

    // Let the last log lines reach the file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = sg.log();
    assert!(
        log.contains("done") && log.contains("TRACE"),
        "the log is at trace level and covers the requests:\n{}",
        &log[..log.len().min(2000)]
    );
    eprintln!("{} log lines checked", log.lines().count());
    std::fs::write(
        concat!(env!("CARGO_TARGET_TMPDIR"), "/secrets-trace.log"),
        &log,
    )
    .unwrap();
    let root = std::fs::read(dir.path().join("root.key")).unwrap();
    assert_absent(&log, "a client's secret key", CLIENT_SK.as_bytes());
    assert_absent(&log, "the store's secret key", g.secret_key.as_bytes());
    assert_absent(&log, "the KMS root key", &root);
    assert_absent(&log, "a GenerateDataKey plaintext", &dek);
    assert_absent(&log, "a GenerateRandom result", &random);
    assert_absent(&log, "KMS plaintext", &kms_plain);
    assert_absent(&log, "object plaintext", b"OBJECT-PLAINTEXT-never-logged");
    for s in &signatures {
        assert_absent(&log, "a request signature", s.as_bytes());
    }
    assert_absent(&log, "a refused V2 signature", b"djJzaWduYXR1cmVzZWNyZXQ=");
    assert_absent(&log, "a user metadata value", b"USER-METADATA-VALUE-4711");
    let stored = common::direct_client()
        .head_object()
        .bucket("secrets")
        .key("obj")
        .send()
        .await
        .unwrap();
    let wrapped = &stored.metadata().unwrap()["sealgate-dek"];
    assert_absent(&log, "the wrapped DEK", wrapped.as_bytes());
    // Signatures sealgate computes for the store are as good as credentials for 15 min.
    for line in log.lines() {
        assert!(
            !line.contains("Signature="),
            "a signature appears in the log: {line}"
        );
    }
}
