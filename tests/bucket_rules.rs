//! Bucket default-encryption rules are sealgate's, out of the store's reach: the store
//! cannot delete or repoint a rule to make sealgate write plaintext or under another
//! key (issue 19), rules an older sealgate kept in the store are imported once, and a
//! state bucket that belongs to someone else stops sealgate at startup.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use common::{Sealgate, Store, random_hex};
use rstest::rstest;

fn rule_xml(alg: &str, key: Option<&str>) -> String {
    let key = key
        .map(|k| format!("<KMSMasterKeyID>{k}</KMSMasterKeyID>"))
        .unwrap_or_default();
    format!(
        "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{alg}</SSEAlgorithm>{key}</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>false</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"
    )
}

/// A config on `store` that stores plaintext unless a bucket rule says otherwise, with
/// a state bucket of its own (so no other test's sealgate touches it).
fn config(store: Store) -> sealgate::config::Config {
    let mut cfg = common::test_config_on(store);
    cfg.encryption.default = "none".into();
    cfg.state_bucket = format!("sg-state-{}", random_hex(6));
    cfg
}

async fn rule_key(sg: &Sealgate, bucket: &str) -> Result<Option<String>, String> {
    match sg
        .client
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(r) => Ok(r.server_side_encryption_configuration().unwrap().rules()[0]
            .apply_server_side_encryption_by_default()
            .unwrap()
            .kms_master_key_id()
            .map(str::to_string)),
        Err(e) => Err(e
            .into_service_error()
            .meta()
            .code()
            .unwrap_or_default()
            .to_string()),
    }
}

/// Puts `k` without asking for encryption; returns what the store holds.
async fn put_plain_request(sg: &Sealgate, b: &str, k: &str, body: &'static [u8]) -> Vec<u8> {
    sg.client
        .put_object()
        .bucket(b)
        .key(k)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap();
    let r = sg
        .direct
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    r.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn put_in_state_bucket(sg: &Sealgate, state: &str, key: &str, body: String) {
    let _ = sg.direct.create_bucket().bucket(state).send().await;
    sg.direct
        .put_object()
        .bucket(state)
        .key(key)
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .unwrap();
}

async fn state_keys(sg: &Sealgate, state: &str) -> Vec<String> {
    let r = sg
        .direct
        .list_objects_v2()
        .bucket(state)
        .send()
        .await
        .unwrap();
    r.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_cannot_remove_or_repoint_a_bucket_default_encryption(#[case] store: Store) {
    let cfg = config(store);
    let state = cfg.state_bucket.clone();
    let sg = Sealgate::start_with(cfg.clone()).await;
    let b = sg.bucket().await;
    let plain_bucket = sg.bucket().await;
    let key = common::new_key_arn(&sg).await;
    let other_key = common::new_key_arn(&sg).await;
    common::put_kms_bucket_rule(&sg.client, &b, &key).await;
    // The store deletes everything in sealgate's state bucket, and plants rules of its
    // own: one repointing the rule at another key, one for a bucket without a rule.
    for k in state_keys(&sg, &state).await {
        sg.direct
            .delete_object()
            .bucket(&state)
            .key(k)
            .send()
            .await
            .unwrap();
    }
    put_in_state_bucket(
        &sg,
        &state,
        &format!("bucket-encryption/{b}"),
        rule_xml("aws:kms", Some(&other_key)),
    )
    .await;
    put_in_state_bucket(
        &sg,
        &state,
        &format!("bucket-encryption/{plain_bucket}"),
        rule_xml("aws:kms", Some(&other_key)),
    )
    .await;
    assert_eq!(rule_key(&sg, &b).await, Ok(Some(key.clone())));
    assert_eq!(
        rule_key(&sg, &plain_bucket).await,
        Err("ServerSideEncryptionConfigurationNotFoundError".into())
    );
    let secret = b"the rule still holds after the store's edits";
    let stored = put_plain_request(&sg, &b, "k", secret).await;
    assert!(!stored.windows(secret.len()).any(|w| w == secret));
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(key.as_str()));

    // And across a restart on the same KMS database.
    let sg = sg.restart().await;
    assert_eq!(rule_key(&sg, &b).await, Ok(Some(key.clone())));
    assert_eq!(
        rule_key(&sg, &plain_bucket).await,
        Err("ServerSideEncryptionConfigurationNotFoundError".into())
    );
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(key.as_str()));
    // Deleting the rule through sealgate is what removes it.
    sg.client
        .delete_bucket_encryption()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        rule_key(&sg, &b).await,
        Err("ServerSideEncryptionConfigurationNotFoundError".into())
    );
    assert_eq!(put_plain_request(&sg, &b, "p", b"plain").await, b"plain");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_an_older_sealgate_kept_in_the_state_bucket_are_imported_once(#[case] store: Store) {
    let cfg = config(store);
    let state = cfg.state_bucket.clone();
    // An older sealgate wrote this bucket's rule into the state bucket.
    let first = Sealgate::start_with(cfg.clone()).await;
    let b = first.bucket().await;
    first.stop().await.unwrap();
    let direct = common::s3_client(
        &cfg.upstream.endpoint,
        &cfg.upstream.access_key_id,
        cfg.upstream.secret_access_key.expose(),
        &cfg.upstream.region,
    );
    direct
        .put_object()
        .bucket(&state)
        .key(format!("bucket-encryption/{b}"))
        .body(ByteStream::from(rule_xml("AES256", None).into_bytes()))
        .send()
        .await
        .unwrap();
    // The upgraded sealgate (a KMS database that has not imported yet) takes it over.
    let sg = Sealgate::start_with(cfg).await;
    let got = sg
        .client
        .get_bucket_encryption()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.server_side_encryption_configuration().unwrap().rules()[0]
            .apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
    let stored = put_plain_request(&sg, &b, "k", b"imported rule encrypts").await;
    assert_ne!(stored, b"imported rule encrypts");
    // Moved, not copied: the state bucket no longer holds it.
    assert!(
        !state_keys(&sg, &state)
            .await
            .iter()
            .any(|k| k.starts_with("bucket-encryption/")),
    );
}

/// Garage only: a bucket created with Garage's admin CLI belongs to no access key, so
/// sealgate's CreateBucket is answered BucketAlreadyExists, as AWS answers a name taken
/// by another account. (SeaweedFS answers BucketAlreadyExists only across identities,
/// which its shared test instance, with a single identity, cannot show.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_bucket_that_belongs_to_someone_else_stops_startup() {
    let g = Store::Garage.shared();
    if std::env::var("SEALGATE_TEST_STORE_ENDPOINT").is_ok() {
        eprintln!("skipped: needs the harness's own Garage (its admin CLI)");
        return;
    }
    let name = format!("foreign-{}", random_hex(6));
    let out = std::process::Command::new(common::store::garage_bin())
        .args(["-c", g.dir.join("garage.toml").to_str().unwrap()])
        .args(["bucket", "create", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = common::test_config_on(Store::Garage);
    cfg.state_bucket = name.clone();
    let sg = Sealgate::start_with(cfg).await;
    let err = sg.stop().await.unwrap_err();
    assert!(err.contains(&name), "{err}");
    assert!(err.contains("belongs to someone else"), "{err}");
}

/// The state bucket cannot be reached through sealgate under another spelling: as a
/// copy source (plain, percent-encoded, with a leading slash), or through a key whose
/// dot-segments would climb out of the client's bucket if the store normalised paths.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_bucket_cannot_be_named_as_a_copy_source_or_reached_by_dot_segments(
    #[case] store: Store,
) {
    let mut cfg = config(store);
    // Even where the operator lets sealgate serve objects it did not write.
    cfg.encryption.plaintext_reads = vec!["*".into()];
    let state = cfg.state_bucket.clone();
    let sg = Sealgate::start_with(cfg).await;
    let b = sg.bucket().await;
    put_in_state_bucket(&sg, &state, "secret-record", "sealgate's own".into()).await;
    let first = state.chars().next().unwrap();
    let encoded = format!("%{:02X}{}", first as u32, &state[1..]);
    for source in [
        format!("{state}/secret-record"),
        format!("/{state}/secret-record"),
        format!("{encoded}/secret-record"),
    ] {
        let e = sg
            .client
            .copy_object()
            .bucket(&b)
            .key("stolen")
            .copy_source(&source)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            e.into_service_error().meta().code(),
            Some("AccessDenied"),
            "{source}"
        );
    }
    assert!(
        sg.client
            .head_object()
            .bucket(&b)
            .key("stolen")
            .send()
            .await
            .is_err(),
        "nothing was copied"
    );
    // A key with dot-segments is a key in the client's bucket, as on AWS (SeaweedFS
    // refuses such keys itself with 400 InvalidRequest, which is as safe).
    let climbing = format!("../{state}/planted");
    let put = sg
        .client
        .put_object()
        .bucket(&b)
        .key(&climbing)
        .body(ByteStream::from_static(b"stays in the client's bucket"))
        .send()
        .await;
    assert!(
        !state_keys(&sg, &state)
            .await
            .iter()
            .any(|k| k.contains("planted")),
        "the write reached the state bucket"
    );
    match put {
        Ok(_) => {
            let got = sg
                .client
                .get_object()
                .bucket(&b)
                .key(&climbing)
                .send()
                .await
                .unwrap();
            assert_eq!(
                got.body.collect().await.unwrap().into_bytes().as_ref(),
                b"stays in the client's bucket"
            );
        }
        Err(e) => assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400)),
    }
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key(format!("../{state}/secret-record"))
        .send()
        .await
        .unwrap_err();
    let code = e.into_service_error().meta().code().map(str::to_string);
    assert!(
        matches!(code.as_deref(), Some("NoSuchKey" | "InvalidRequest")),
        "{code:?}"
    );
}
