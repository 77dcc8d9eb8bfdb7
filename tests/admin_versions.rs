//! `sealgate migrate` and `sealgate kms impact` on versioned buckets (issue 18): migrate
//! reports the plaintext versions it leaves behind and deletes the ones it replaced when
//! asked; impact counts noncurrent versions that still need a key.
//!
//! SeaweedFS only: Garage 2.5 has no bucket versioning (`Store::versioning`).

mod common;

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use common::{Sealgate, Store};

async fn versioned_bucket(sg: &Sealgate) -> String {
    let b = sg.bucket().await;
    sg.client
        .put_bucket_versioning()
        .bucket(&b)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    b
}

/// (version id, encrypted by sealgate) of every stored version of `key`.
async fn stored_versions(sg: &Sealgate, b: &str, key: &str) -> Vec<(String, bool)> {
    let list = sg
        .direct
        .list_object_versions()
        .bucket(b)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for v in list.versions().iter().filter(|v| v.key() == Some(key)) {
        let id = v.version_id().unwrap().to_string();
        let h = sg
            .direct
            .head_object()
            .bucket(b)
            .key(key)
            .version_id(&id)
            .send()
            .await
            .unwrap();
        let encrypted = h.metadata().is_some_and(|m| m.contains_key("sealgate-v"));
        out.push((id, encrypted));
    }
    out
}

fn sealgate_cli(args: Vec<String>) -> (i32, String) {
    std::thread::spawn(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
            .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_reports_plaintext_versions_it_leaves_and_deletes_replaced_ones_when_asked() {
    let mut cfg = common::test_config_on(Store::SeaweedFs);
    cfg.encryption.plaintext_reads = vec!["*".into()];
    let sg = Sealgate::start_with(cfg).await;
    let b = versioned_bucket(&sg).await;
    // Plaintext written before sealgate: two versions of `keep/k`, one of `drop/j`.
    for (k, body) in [
        ("keep/k", "plaintext history"),
        ("keep/k", "plaintext current"),
        ("drop/j", "plaintext only version"),
    ] {
        sg.direct
            .put_object()
            .bucket(&b)
            .key(k)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    let job = |prefix: &str, extra: &[&str]| {
        let mut a: Vec<String> = [
            "migrate",
            "--endpoint",
            &sg.endpoint,
            "--bucket",
            &b,
            "--prefix",
            prefix,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let (code, out) = sealgate_cli(job("keep/", &[]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 encrypted"), "{out}");
    assert!(
        out.contains("remains as a noncurrent version"),
        "the plaintext original left behind is reported: {out}"
    );
    assert!(
        out.contains("2 noncurrent versions are still not encrypted"),
        "{out}"
    );
    let versions = stored_versions(&sg, &b, "keep/k").await;
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(versions.iter().filter(|v| v.1).count(), 1, "{versions:?}");

    let (code, out) = sealgate_cli(job("drop/", &["--delete-replaced-versions"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 encrypted"), "{out}");
    assert!(
        out.contains("versions replaced: 1 deleted, 0 kept"),
        "{out}"
    );
    assert!(!out.contains("noncurrent versions are"), "{out}");
    let versions = stored_versions(&sg, &b, "drop/j").await;
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(
        versions[0].1,
        "the one version left is encrypted: {versions:?}"
    );
    let got = sg
        .client
        .get_object()
        .bucket(&b)
        .key("drop/j")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"plaintext only version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_impact_counts_noncurrent_versions_that_still_need_the_key() {
    let sg = Sealgate::start_on(Store::SeaweedFs).await;
    let b = versioned_bucket(&sg).await;
    let key = common::new_key_arn(&sg).await;
    for body in ["first", "second"] {
        sg.client
            .put_object()
            .bucket(&b)
            .key("doc")
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&key)
            .body(ByteStream::from_static(body.as_bytes()))
            .send()
            .await
            .unwrap();
    }
    // The current version moves to the default key; the old one still needs `key`.
    sg.client
        .put_object()
        .bucket(&b)
        .key("doc")
        .body(ByteStream::from_static(b"third"))
        .send()
        .await
        .unwrap();
    let s = Store::SeaweedFs.shared();
    let dir = sg.state_dir.clone();
    let cfg = dir.path().join("impact.toml");
    std::fs::write(
        &cfg,
        format!(
            "[upstream]\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"tester\"\nroot = true\n[kms]\ndb_path = \"{}\"\nroot_key_file = \"{}\"\n",
            s.endpoint,
            s.region,
            s.access_key,
            s.secret_key,
            common::CLIENT_AK,
            common::CLIENT_SK,
            dir.path().join("kms.redb").display(),
            dir.path().join("root.key").display()
        ),
    )
    .unwrap();
    let (code, out) = sealgate_cli(
        [
            "kms",
            "impact",
            "--config",
            cfg.to_str().unwrap(),
            "--key",
            &key,
            "--bucket",
            &b,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("2 of 3 objects still need key {key}")),
        "both noncurrent versions under the key are counted: {out}"
    );
    assert!(out.contains("noncurrent version"), "{out}");
}
