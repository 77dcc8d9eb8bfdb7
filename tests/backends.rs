//! The KMS backends end to end: the same object round trip over the embedded KMS, moto's
//! AWS KMS API, a second sealgate's KMS API and a real OpenBao Transit; the backend
//! recorded per object; outages (killed or frozen backends: 503, nothing written, cached
//! keys still read); data-key caching (few KMS calls, swaps still detected).
//!
//! moto and OpenBao come from `.venv` (scripts/setup.sh) or `SEALGATE_TEST_MOTO` /
//! `SEALGATE_TEST_BAO`; the tests fail when they are missing.

mod common;

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use common::{KmsPeer, PeerKind, Sealgate};
use sealgate::config::{Config, Secret};
use sealgate::keys::config::{AwsKmsConfig, BackendConfig, TransitConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Embedded,
    Moto,
    SealgateKms,
    OpenBao,
}

/// A sealgate whose writes use `backend`, and what that backend runs on.
struct Setup {
    sg: Sealgate,
    peer: Option<KmsPeer>,
    /// The sealgate serving as KMS (SealgateKms).
    kms_sg: Option<Sealgate>,
    /// Backend name recorded in object metadata (`None` = embedded).
    recorded: Option<&'static str>,
}

/// Test timings: short timeouts and cool-down so outage tests run quickly.
fn fast_resilience(cfg: &mut Config) {
    let r = &mut cfg.kms_backend.resilience;
    r.request_timeout_ms = 800;
    r.connect_timeout_ms = 300;
    r.retries = 1;
    r.backoff_ms = 20;
    r.breaker_failures = 3;
    r.breaker_cooldown_ms = 300;
}

/// Adds `backend` to `cfg` under its name and makes it the write default.
async fn add_backend(
    cfg: &mut Config,
    backend: Backend,
) -> (Option<KmsPeer>, Option<Sealgate>, Option<&'static str>) {
    fast_resilience(cfg);
    let (name, bc, peer, kms_sg) = match backend {
        Backend::Embedded => return (None, None, None),
        Backend::Moto => {
            let peer = KmsPeer::start(PeerKind::Moto).await;
            let bc = BackendConfig::Aws(AwsKmsConfig {
                endpoint: peer.endpoint.clone(),
                region: "us-east-1".into(),
                access_key_id: "AKIDMOTO".into(),
                secret_access_key: Secret::new("motosecret"),
                default_key: Some(common::PEER_KEY_ALIAS.into()),
                // The test peers listen on loopback without TLS.
                allow_insecure_http: true,
                ..Default::default()
            });
            ("moto", bc, Some(peer), None)
        }
        Backend::SealgateKms => {
            let kms_sg = Sealgate::start().await;
            let key = common::new_key_arn(&kms_sg).await;
            let bc = BackendConfig::Aws(AwsKmsConfig {
                endpoint: kms_sg.endpoint.clone(),
                region: "us-east-1".into(),
                access_key_id: common::CLIENT_AK.into(),
                secret_access_key: Secret::new(common::CLIENT_SK),
                default_key: Some(key),
                allow_insecure_http: true,
                ..Default::default()
            });
            ("peer-sealgate", bc, None, Some(kms_sg))
        }
        Backend::OpenBao => {
            let peer = KmsPeer::start(PeerKind::OpenBao).await;
            let bc = BackendConfig::Transit(TransitConfig {
                address: peer.endpoint.clone(),
                token: Secret::new(common::BAO_TOKEN),
                default_key: Some(common::TRANSIT_KEY.into()),
                allow_insecure_http: true,
                ..Default::default()
            });
            ("bao", bc, Some(peer), None)
        }
    };
    cfg.kms_backend.backends.insert(name.into(), bc);
    cfg.kms_backend.default = name.into();
    (peer, kms_sg, Some(name))
}

async fn setup_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Setup {
    let mut cfg = common::test_config();
    let (peer, kms_sg, recorded) = add_backend(&mut cfg, backend).await;
    tweak(&mut cfg);
    Setup {
        sg: Sealgate::start_with(cfg).await,
        peer,
        kms_sg,
        recorded,
    }
}

async fn get(c: &aws_sdk_s3::Client, b: &str, k: &str) -> Result<Vec<u8>, String> {
    let r = c
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .map_err(|e| format!("{:?}", e.into_service_error()))?;
    Ok(r.body.collect().await.unwrap().into_bytes().to_vec())
}

async fn put(c: &aws_sdk_s3::Client, b: &str, k: &str, data: &[u8]) -> Result<(), (u16, String)> {
    c.put_object()
        .bucket(b)
        .key(k)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            (status, format!("{:?}", e.into_service_error()))
        })
}

/// A client that does not retry (the SDK retries 503s by default), so each call is one
/// request to sealgate.
fn one_shot_client(sg: &Sealgate) -> aws_sdk_s3::Client {
    let conf = sg
        .client
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn raw_meta(sg: &Sealgate, b: &str, k: &str) -> HashMap<String, String> {
    sg.direct
        .head_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap()
        .metadata()
        .cloned()
        .unwrap_or_default()
}

async fn store_keys(sg: &Sealgate, b: &str) -> Vec<String> {
    sg.direct
        .list_objects_v2()
        .bucket(b)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// PUT/GET at several sizes, a range, a multipart upload read across the part boundary,
/// a copy; and the backend recorded in each object's metadata.
async fn round_trip(s: &Setup) {
    let sg = &s.sg;
    let b = sg.bucket().await;
    for (i, len) in [0usize, 1, 4096, 65_536 + 7, 300_000]
        .into_iter()
        .enumerate()
    {
        let data = common::pattern(len, i as u64);
        let k = format!("obj-{len}");
        put(&sg.client, &b, &k, &data).await.unwrap();
        assert!(get(&sg.client, &b, &k).await.unwrap() == data, "size {len}");
        let m = raw_meta(sg, &b, &k).await;
        assert_eq!(
            m.get("sealgate-kms").map(String::as_str),
            s.recorded,
            "backend recorded for {k}: {m:?}"
        );
    }
    let data = common::pattern(300_000, 4);
    let r = sg
        .client
        .get_object()
        .bucket(&b)
        .key("obj-300000")
        .range("bytes=65530-200009")
        .send()
        .await
        .unwrap();
    let got = r.body.collect().await.unwrap().into_bytes();
    assert!(got[..] == data[65530..200010], "range of obj-300000");

    // Multipart: 5 MiB + a short last part, with SSE-KMS asked for explicitly.
    let parts = [5 << 20, 1000usize];
    let up = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("mp")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut whole = Vec::new();
    let mut done = Vec::new();
    for (i, len) in parts.iter().enumerate() {
        let d = common::pattern(*len, 100 + i as u64);
        whole.extend_from_slice(&d);
        let r = sg
            .client
            .upload_part()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .part_number(i as i32 + 1)
            .body(ByteStream::from(d))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    sg.client
        .complete_multipart_upload()
        .bucket(&b)
        .key("mp")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        get(&sg.client, &b, "mp").await.unwrap() == whole,
        "multipart"
    );
    let r = sg
        .client
        .get_object()
        .bucket(&b)
        .key("mp")
        .range(format!("bytes={}-{}", (5 << 20) - 10, (5 << 20) + 9))
        .send()
        .await
        .unwrap();
    let got = r.body.collect().await.unwrap().into_bytes();
    assert!(
        got[..] == whole[(5 << 20) - 10..(5 << 20) + 10],
        "range across parts"
    );
    assert_eq!(
        raw_meta(sg, &b, "mp")
            .await
            .get("sealgate-kms")
            .map(String::as_str),
        s.recorded
    );

    // Copy (server-side, key re-wrapped for the new name) of both kinds of object.
    for (src, want) in [("obj-65543", common::pattern(65_543, 3)), ("mp", whole)] {
        let dst = format!("copy-of-{src}");
        sg.client
            .copy_object()
            .bucket(&b)
            .key(&dst)
            .copy_source(format!("{b}/{src}"))
            .send()
            .await
            .unwrap();
        assert!(get(&sg.client, &b, &dst).await.unwrap() == want, "{dst}");
    }
}

#[tokio::test]
async fn objects_round_trip_over_the_embedded_kms() {
    round_trip(&setup_with(Backend::Embedded, |_| {}).await).await;
}

#[tokio::test]
async fn objects_round_trip_over_the_embedded_kms_with_bucket_keys() {
    round_trip(&setup_with(Backend::Embedded, |c| c.kms_backend.cache.embedded = true).await).await;
}

#[tokio::test]
async fn objects_round_trip_over_moto_aws_kms_api() {
    round_trip(&setup_with(Backend::Moto, |_| {}).await).await;
}

#[tokio::test]
async fn objects_round_trip_over_another_sealgates_kms_api() {
    let s = setup_with(Backend::SealgateKms, |_| {}).await;
    round_trip(&s).await;
    assert!(s.kms_sg.is_some());
}

#[tokio::test]
async fn objects_round_trip_over_openbao_transit() {
    round_trip(&setup_with(Backend::OpenBao, |_| {}).await).await;
}

#[tokio::test]
async fn objects_round_trip_over_remote_backends_without_caching() {
    for backend in [Backend::Moto, Backend::OpenBao] {
        round_trip(&setup_with(backend, |c| c.kms_backend.cache.enabled = false).await).await;
    }
}

#[tokio::test]
async fn a_bucket_moved_to_another_backend_still_reads_its_old_objects() {
    // Written with the embedded KMS...
    let mut cfg = common::test_config();
    let first = Sealgate::start_with(cfg.clone()).await;
    let b = first.bucket().await;
    put(&first.client, &b, "old", b"written by embedded")
        .await
        .unwrap();
    let state = first.state_dir.clone();
    let mut kms_cfg = cfg.kms.clone();
    first.stop().await.unwrap();
    // ...then only this bucket's writes move to OpenBao; reads follow the metadata.
    let (peer, _, _) = add_backend(&mut cfg, Backend::OpenBao).await;
    cfg.kms_backend.default = "embedded".into();
    cfg.kms_backend.buckets.insert(b.clone(), "bao".into());
    kms_cfg.root_key_file = Some(state.path().join("root.key"));
    kms_cfg.db_path = state.path().join("kms.redb");
    cfg.kms = kms_cfg;
    let sg = Sealgate::start_in(cfg, state).await;
    put(&sg.client, &b, "new", b"written by bao").await.unwrap();
    assert_eq!(
        get(&sg.client, &b, "old").await.unwrap(),
        b"written by embedded"
    );
    assert_eq!(get(&sg.client, &b, "new").await.unwrap(), b"written by bao");
    assert_eq!(raw_meta(&sg, &b, "old").await.get("sealgate-kms"), None);
    assert_eq!(
        raw_meta(&sg, &b, "new")
            .await
            .get("sealgate-kms")
            .map(String::as_str),
        Some("bao")
    );
    // Another bucket still writes with the embedded KMS.
    let other = sg.bucket().await;
    put(&sg.client, &other, "x", b"embedded").await.unwrap();
    assert_eq!(raw_meta(&sg, &other, "x").await.get("sealgate-kms"), None);
    drop(peer);
}

#[tokio::test]
async fn a_transit_key_that_is_not_derived_is_refused_for_writes() {
    let s = setup_with(Backend::OpenBao, |_| {}).await;
    let peer = s.peer.as_ref().unwrap();
    peer.bao("POST", "transit/keys/plain", "{}").await;
    let b = s.sg.bucket().await;
    let e =
        s.sg.client
            .put_object()
            .bucket(&b)
            .key("k")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id("plain")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
    let body = format!("{:?}", e.into_service_error());
    assert!(body.contains("not a derived key"), "{body}");
    assert!(store_keys(&s.sg, &b).await.is_empty());
}

#[tokio::test]
async fn transit_ciphertexts_record_the_key_version_and_survive_rotation() {
    let s = setup_with(Backend::OpenBao, |c| c.kms_backend.cache.enabled = false).await;
    let peer = s.peer.as_ref().unwrap();
    let b = s.sg.bucket().await;
    put(&s.sg.client, &b, "old", b"before rotation")
        .await
        .unwrap();
    peer.bao(
        "POST",
        &format!("transit/keys/{}/rotate", common::TRANSIT_KEY),
        "{}",
    )
    .await;
    put(&s.sg.client, &b, "new", b"after rotation")
        .await
        .unwrap();
    let wrapped = |m: HashMap<String, String>| {
        use base64::Engine as _;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(m["sealgate-dek"].as_bytes())
                .unwrap(),
        )
        .unwrap()
    };
    assert!(wrapped(raw_meta(&s.sg, &b, "old").await).starts_with("vault:v1:"));
    assert!(wrapped(raw_meta(&s.sg, &b, "new").await).starts_with("vault:v2:"));
    assert_eq!(
        raw_meta(&s.sg, &b, "new").await["sealgate-key"],
        "transit:transit/sealgate"
    );
    assert_eq!(
        get(&s.sg.client, &b, "old").await.unwrap(),
        b"before rotation"
    );
    assert_eq!(
        get(&s.sg.client, &b, "new").await.unwrap(),
        b"after rotation"
    );
}

/// Kills the backend mid-test: PUTs answer 503 and the store gets nothing; GETs of objects
/// whose keys are cached still work; after a restart writes work again.
async fn outage(backend: Backend) {
    let s = setup_with(backend, |_| {}).await;
    let peer = s.peer.as_ref().unwrap();
    let b = s.sg.bucket().await;
    put(&s.sg.client, &b, "before", b"written while up")
        .await
        .unwrap();
    assert_eq!(
        get(&s.sg.client, &b, "before").await.unwrap(),
        b"written while up"
    );
    let ready = reqwest::get(format!("{}/ready", s.sg.endpoint))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    peer.kill();
    // /ready reports the backend down, so a load balancer can take the instance out.
    let ready = reqwest::get(format!("{}/ready", s.sg.endpoint))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let why = ready.text().await.unwrap();
    assert!(why.contains("kms backend"), "{why}");
    let client = one_shot_client(&s.sg);
    // A new principal-context pair has no cached bucket key: the KMS must be asked.
    let e = client
        .put_object()
        .bucket(&b)
        .key("during")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_encryption_context(common::b64(br#"{"fresh":"context"}"#))
        .body(ByteStream::from_static(b"must not be stored"))
        .send()
        .await
        .unwrap_err();
    let status = e.raw_response().unwrap().status().as_u16();
    assert_eq!(status, 503, "{:?}", e.into_service_error());
    // Repeated failures open the circuit: answers stay 503 and come fast.
    for i in 0..4 {
        let t = std::time::Instant::now();
        let r = client
            .put_object()
            .bucket(&b)
            .key(format!("during-{i}"))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_encryption_context(common::b64(format!(r#"{{"n":"{i}"}}"#).as_bytes()))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(r.raw_response().unwrap().status().as_u16(), 503);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
    assert_eq!(store_keys(&s.sg, &b).await, vec!["before".to_string()]);
    assert!(
        common::metric(
            &s.sg.endpoint,
            &format!(
                "sealgate_kms_backend_calls_total{{backend=\"{}\",outcome=\"circuit_open\"}}",
                s.recorded.unwrap()
            )
        )
        .await
            > 0
    );
    // The key of "before" is cached: it still reads while the backend is down.
    assert_eq!(
        get(&s.sg.client, &b, "before").await.unwrap(),
        b"written while up"
    );
    peer.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    put(&s.sg.client, &b, "after", b"written after restart")
        .await
        .unwrap();
    assert_eq!(
        get(&s.sg.client, &b, "after").await.unwrap(),
        b"written after restart"
    );
}

#[tokio::test]
async fn a_killed_moto_means_503_nothing_written_and_cached_reads_until_it_returns() {
    outage(Backend::Moto).await;
}

#[tokio::test]
async fn a_killed_openbao_means_503_nothing_written_and_cached_reads_until_it_returns() {
    outage(Backend::OpenBao).await;
}

#[tokio::test]
async fn a_hung_backend_times_out_into_503_and_writes_nothing() {
    let s = setup_with(Backend::OpenBao, |c| c.kms_backend.cache.enabled = false).await;
    let peer = s.peer.as_ref().unwrap();
    let b = s.sg.bucket().await;
    put(&s.sg.client, &b, "ok", b"fine").await.unwrap();
    peer.pause(true);
    let client = one_shot_client(&s.sg);
    let t = std::time::Instant::now();
    let (status, _) = put(&client, &b, "hung", b"x").await.unwrap_err();
    assert_eq!(status, 503);
    // Two attempts of 800 ms plus backoff, not forever.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    let e = get(&client, &b, "ok").await.unwrap_err();
    assert!(e.contains("ServiceUnavailable"), "{e}");
    peer.pause(false);
    assert_eq!(store_keys(&s.sg, &b).await, vec!["ok".to_string()]);
}

#[tokio::test]
async fn many_puts_to_one_bucket_make_few_kms_calls_with_bucket_keys() {
    let s = setup_with(Backend::OpenBao, |_| {}).await;
    let b = s.sg.bucket().await;
    for i in 0..100 {
        put(&s.sg.client, &b, &format!("k{i}"), b"small")
            .await
            .unwrap();
    }
    for i in 0..100 {
        assert_eq!(
            get(&s.sg.client, &b, &format!("k{i}")).await.unwrap(),
            b"small"
        );
    }
    let generated = common::metric(
        &s.sg.endpoint,
        "sealgate_kms_calls_total{op=\"GenerateDataKey\"}",
    )
    .await;
    let dec = common::metric(&s.sg.endpoint, "sealgate_kms_calls_total{op=\"Decrypt\"}").await;
    assert!(generated <= 2, "GenerateDataKey calls: {generated}");
    assert!(dec <= 2, "Decrypt calls: {dec}");
    let hits = common::metric(
        &s.sg.endpoint,
        "sealgate_dek_cache_total{cache=\"bucket_key\",result=\"hit\"}",
    )
    .await;
    assert!(hits >= 98, "bucket-key cache hits: {hits}");
    // All share one wrapped bucket key, each with its own salt.
    let m0 = raw_meta(&s.sg, &b, "k0").await;
    let m1 = raw_meta(&s.sg, &b, "k1").await;
    assert_eq!(m0["sealgate-dek"], m1["sealgate-dek"]);
    assert_ne!(m0["sealgate-bks"], m1["sealgate-bks"]);
    assert_eq!(
        m0["sealgate-v"], "3",
        "format 3 records the bucket-key salt"
    );
}

#[tokio::test]
async fn bucket_key_caching_respects_the_object_limit() {
    let s = setup_with(Backend::Moto, |c| {
        c.kms_backend.cache.bucket_key_max_objects = 10
    })
    .await;
    let b = s.sg.bucket().await;
    for i in 0..35 {
        put(&s.sg.client, &b, &format!("k{i}"), b"x").await.unwrap();
    }
    let generated = common::metric(
        &s.sg.endpoint,
        "sealgate_kms_calls_total{op=\"GenerateDataKey\"}",
    )
    .await;
    assert_eq!(generated, 4, "35 objects at 10 per bucket key");
}

#[tokio::test]
async fn objects_under_one_bucket_key_still_fail_when_swapped_in_the_store() {
    let s = setup_with(Backend::OpenBao, |_| {}).await;
    let b = s.sg.bucket().await;
    let (da, db) = (common::pattern(5000, 1), common::pattern(5000, 2));
    put(&s.sg.client, &b, "a", &da).await.unwrap();
    put(&s.sg.client, &b, "b", &db).await.unwrap();
    let (ca, ma) = common::stored(&s.sg.direct, &b, "a").await;
    let (cb, mb) = common::stored(&s.sg.direct, &b, "b").await;
    assert_eq!(ma["sealgate-dek"], mb["sealgate-dek"], "one bucket key");
    // Swap whole objects (body and metadata) between the names.
    for (k, body, meta) in [("a", cb, mb), ("b", ca, ma)] {
        common::store_as(&s.sg.direct, &b, k, body, meta).await;
    }
    for k in ["a", "b"] {
        let e = get(&s.sg.client, &b, k).await.unwrap_err();
        assert!(e.contains("failed verification"), "{k}: {e}");
    }
    // And across buckets: the bucket key is bound to its bucket.
    let b2 = s.sg.bucket().await;
    let (c, m) = common::stored(&s.sg.direct, &b, "a").await;
    common::store_as(&s.sg.direct, &b2, "a", c, m).await;
    assert!(get(&s.sg.client, &b2, "a").await.is_err());
}

#[tokio::test]
async fn cached_keys_are_not_shared_between_principals() {
    let s = setup_with(Backend::Embedded, |c| {
        c.kms_backend.cache.embedded = true;
        c.access_keys.push(sealgate::config::AccessKeyConfig {
            access_key_id: "AKIDBOBTEST".into(),
            secret_access_key: Secret::new("bob-secret-key-123"),
            principal: "bob".into(),
            policy: Some(common::S3_FULL_POLICY.into()),
            ..Default::default()
        });
    })
    .await;
    let b = s.sg.bucket().await;
    let bob = common::s3_client(
        &s.sg.endpoint,
        "AKIDBOBTEST",
        "bob-secret-key-123",
        "us-east-1",
    );
    put(&s.sg.client, &b, "t1", b"tester").await.unwrap();
    put(&bob, &b, "b1", b"bob").await.unwrap();
    let generated = common::metric(
        &s.sg.endpoint,
        "sealgate_kms_calls_total{op=\"GenerateDataKey\"}",
    )
    .await;
    assert_eq!(generated, 2, "one bucket key per principal");
    assert_ne!(
        raw_meta(&s.sg, &b, "t1").await["sealgate-dek"],
        raw_meta(&s.sg, &b, "b1").await["sealgate-dek"]
    );
}
