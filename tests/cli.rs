//! The `sealgate` binary's admin subcommands and config errors, run as a user would.

mod common;

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;

fn sealgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_bad_config_stops_startup_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\n[upstream]\nendpoint = \"ftp://x\"\n",
    )
    .unwrap();
    let (code, out) = sealgate(&["serve", "--check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("upstream.endpoint"), "{out}");
}

#[test]
fn the_compose_config_with_the_example_env_passes_the_config_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let env = std::fs::read_to_string(format!("{root}/compose/.env.example")).unwrap();
    let vars: std::collections::HashMap<&str, &str> = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--check", "--config"])
        .arg(format!("{root}/compose/sealgate.toml"))
        // As docker-compose.yml maps them.
        .env(
            "SEALGATE_UPSTREAM_ACCESS_KEY_ID",
            vars["SEALGATE_STORE_ACCESS_KEY"],
        )
        .env(
            "SEALGATE_UPSTREAM_SECRET_ACCESS_KEY",
            vars["SEALGATE_STORE_SECRET_KEY"],
        )
        .env("SEALGATE_KMS_ROOT_KEY", vars["SEALGATE_KMS_ROOT_KEY"])
        .env("SEALGATE_CLIENT_SECRET", vars["SEALGATE_CLIENT_SECRET"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
}

#[tokio::test]
async fn probe_exits_zero_for_a_healthy_sealgate_and_nonzero_when_nothing_answers() {
    let sg = common::Sealgate::start().await;
    let url = format!("{}/health", sg.endpoint);
    let (code, out) = tokio::task::spawn_blocking(move || sealgate(&["probe", &url]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/health", closed.local_addr().unwrap());
    drop(closed);
    let (code, out) = tokio::task::spawn_blocking(move || sealgate(&["probe", &dead]))
        .await
        .unwrap();
    assert_ne!(code, 0, "{out}");
}

#[tokio::test]
async fn audit_verify_passes_an_intact_log_and_names_the_edited_line() {
    let sg = common::Sealgate::start().await;
    let b = sg.bucket().await;
    for i in 0..3 {
        sg.client
            .put_object()
            .bucket(&b)
            .key(format!("k{i}"))
            .body(ByteStream::from_static(b"audit me"))
            .send()
            .await
            .unwrap();
    }
    let dir = sg.state_dir.clone();
    sg.stop().await.unwrap();
    let log = dir.path().join("kms.audit.jsonl");
    let (code, out) = sealgate(&["audit", "verify", "--log", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = sealgate(&[
        "audit",
        "query",
        "--log",
        log.to_str().unwrap(),
        "--event",
        "GenerateDataKey",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("GenerateDataKey"))
            .count(),
        3,
        "{out}"
    );
    // Edit the second record.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen("GenerateDataKey", "GenerateRandom", 1);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let (code, out) = sealgate(&["audit", "verify", "--log", log.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains('2'), "the report names the line: {out}");
}

#[tokio::test]
async fn kms_explain_names_the_deciding_statement() {
    let sg = common::Sealgate::start().await;
    let kms_dir = sg.state_dir.clone();
    let kms_client = common::kms_client_for(&sg.endpoint, common::CLIENT_AK, common::CLIENT_SK);
    let kms = kms_client;
    let key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    sg.stop().await.unwrap();
    let cfg = kms_dir.path().join("sealgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[upstream]\nendpoint = \"http://127.0.0.1:1\"\naccess_key_id = \"x\"\nsecret_access_key = \"y\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"tester\"\npolicy = '{}'\n[kms]\ndb_path = \"{}\"\nroot_key_file = \"{}\"\n",
            common::CLIENT_AK,
            common::CLIENT_SK,
            common::S3_FULL_POLICY,
            kms_dir.path().join("kms.redb").display(),
            kms_dir.path().join("root.key").display()
        ),
    )
    .unwrap();
    let (code, out) = sealgate(&[
        "kms",
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--principal",
        "tester",
        "--action",
        "Decrypt",
        "--key",
        &key,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.to_lowercase().contains("allow"), "{out}");
    assert!(out.contains("Enable IAM User Permissions"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_encrypts_existing_plaintext_objects_in_place_and_can_be_rerun() {
    // Reading existing plaintext is an explicit, scoped opt-in, as for a real migration.
    let mut cfg = common::test_config();
    cfg.encryption.plaintext_reads = vec!["*".into()];
    let sg = common::Sealgate::start_with(cfg).await;
    let b = sg.bucket().await;
    let data = common::pattern(200_000, 8);
    for k in ["old/a.bin", "old/b.bin"] {
        sg.direct
            .put_object()
            .bucket(&b)
            .key(k)
            .content_type("application/x-old")
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    }
    sg.client
        .put_object()
        .bucket(&b)
        .key("old/c.bin")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await
        .unwrap();
    let ep = sg.endpoint.clone();
    let bucket = b.clone();
    let run = move |extra: &'static [&'static str]| {
        let (ep, bucket) = (ep.clone(), bucket.clone());
        std::thread::spawn(move || {
            let mut args = vec![
                "migrate",
                "--endpoint",
                &ep,
                "--bucket",
                &bucket,
                "--prefix",
                "old/",
            ];
            args.extend_from_slice(extra);
            let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
                .args(&args)
                .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
                .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
        .join()
        .unwrap()
    };
    let (code, out) = run(&["--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("would encrypt") && out.contains("1 already encrypted"),
        "{out}"
    );
    let (code, out) = run(&["--dry-run", "--start-after", "old/a.bin"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("2 listed") && !out.contains("old/a.bin") && out.contains("old/b.bin"),
        "--start-after resumes after the given key: {out}"
    );
    let raw = sg
        .direct
        .get_object()
        .bucket(&b)
        .key("old/a.bin")
        .send()
        .await
        .unwrap();
    assert!(
        raw.metadata().is_none_or(|m| !m.contains_key("sealgate-v")),
        "dry run changed nothing"
    );
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 encrypted"), "{out}");
    for k in ["old/a.bin", "old/b.bin"] {
        let raw = sg
            .direct
            .get_object()
            .bucket(&b)
            .key(k)
            .send()
            .await
            .unwrap();
        assert_eq!(
            raw.metadata()
                .unwrap()
                .get("sealgate-v")
                .map(String::as_str),
            Some("3"),
            "{k} is encrypted in the store"
        );
        let got = sg
            .client
            .get_object()
            .bucket(&b)
            .key(k)
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_type(), Some("application/x-old"));
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().to_vec(),
            data
        );
    }
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("3 already encrypted, 0 encrypted"),
        "a re-run finds nothing to do: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_moves_objects_to_another_key_without_moving_bodies() {
    let mut cfg = common::test_config();
    cfg.encryption.allow_ssec_over_http = true;
    let sg = common::Sealgate::start_with(cfg).await;
    let b = sg.bucket().await;
    for k in ["x/1", "x/2"] {
        sg.client
            .put_object()
            .bucket(&b)
            .key(k)
            .body(ByteStream::from_static(b"rewrap me"))
            .send()
            .await
            .unwrap();
    }
    // An SSE-C object: sealgate never holds its key, so the job leaves it as it is.
    let ck = common::b64(&[5u8; 32]);
    let ck_md5 = {
        use md5::Digest as _;
        common::b64(&md5::Md5::digest([5u8; 32]))
    };
    sg.client
        .put_object()
        .bucket(&b)
        .key("x/3")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&ck)
        .sse_customer_key_md5(&ck_md5)
        .body(ByteStream::from_static(b"my key only"))
        .send()
        .await
        .unwrap();
    let arn = common::new_key_arn(&sg).await;
    let before = common::get(&sg.direct, &b, "x/1").await;
    let (ep, bucket, key) = (sg.endpoint.clone(), b.clone(), arn.clone());
    let out = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args([
                "rewrap",
                "--endpoint",
                &ep,
                "--bucket",
                &bucket,
                "--key",
                &key,
            ])
            .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
            .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
            .output()
            .unwrap()
    })
    .join()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("2 re-wrapped"),
        "{text}"
    );
    assert!(
        text.contains("x/3: skipped (HEAD 400 Bad Request: an SSE-C object"),
        "{text}"
    );
    let h = sg
        .client
        .head_object()
        .bucket(&b)
        .key("x/3")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&ck)
        .sse_customer_key_md5(&ck_md5)
        .send()
        .await
        .unwrap();
    assert_eq!(h.ssekms_key_id(), None);
    assert_eq!(h.sse_customer_key_md5(), Some(ck_md5.as_str()));
    for k in ["x/1", "x/2"] {
        let h = sg
            .client
            .head_object()
            .bucket(&b)
            .key(k)
            .send()
            .await
            .unwrap();
        assert_eq!(h.ssekms_key_id(), Some(arn.as_str()));
    }
    let after = common::get(&sg.direct, &b, "x/1").await;
    assert_eq!(before, after, "the body was copied by the store, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_impact_counts_the_objects_that_still_need_a_key() {
    let sg = common::Sealgate::start().await;
    let b = sg.bucket().await;
    let arn = common::new_key_arn(&sg).await;
    put_under_key(&sg, &b, &arn, &["a", "b"]).await;
    let g = common::garage();
    let dir = sg.state_dir.clone();
    let cfg = dir.path().join("impact.toml");
    std::fs::write(
        &cfg,
        format!(
            "[upstream]\nendpoint = \"{}\"\nregion = \"garage\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"tester\"\npolicy = '{}'\n[kms]\ndb_path = \"{}\"\nroot_key_file = \"{}\"\n",
            g.endpoint,
            g.access_key,
            g.secret_key,
            common::CLIENT_AK,
            common::CLIENT_SK,
            common::S3_FULL_POLICY,
            dir.path().join("kms.redb").display(),
            dir.path().join("root.key").display()
        ),
    )
    .unwrap();
    let (bucket, key) = (b.clone(), arn.clone());
    let (code, out) = std::thread::spawn(move || {
        sealgate(&[
            "kms",
            "impact",
            "--config",
            cfg.to_str().unwrap(),
            "--key",
            &key,
            "--bucket",
            &bucket,
        ])
    })
    .join()
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("2 of 3 objects still need key {arn}")),
        "{out}"
    );
    assert!(out.contains(&format!("{b}: 2")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_deletion_of_a_key_in_use_reports_the_objects_that_need_it() {
    let sg = common::Sealgate::start().await;
    let b = sg.bucket().await;
    let arn = common::new_key_arn(&sg).await;
    put_under_key(&sg, &b, &arn, &["in-use-1", "in-use-2", "in-use-3"]).await;
    let kms_client = common::kms_client_for(&sg.endpoint, common::CLIENT_AK, common::CLIENT_SK);
    kms_client
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let gauge = format!("sealgate_kms_pending_deletion_objects{{key=\"{arn}\"}}");
    let mut found = 0;
    for _ in 0..100 {
        found = common::metric(&sg.endpoint, &gauge).await;
        if found > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        found, 3,
        "the impact scan counted the objects under the key"
    );
    kms_client
        .cancel_key_deletion()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let text = common::metrics_text(&sg.endpoint).await;
    assert!(
        !text.contains(&gauge),
        "cancelling the deletion clears the report"
    );
}

/// Writes one small object per name under `arn`, and one more ("other") under the
/// default key.
async fn put_under_key(sg: &common::Sealgate, b: &str, arn: &str, names: &[&str]) {
    for k in names {
        sg.client
            .put_object()
            .bucket(b)
            .key(*k)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(arn)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    sg.client
        .put_object()
        .bucket(b)
        .key("other")
        .body(ByteStream::from_static(b"y"))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_sets_how_many_threads_serve_requests() {
    let g = common::garage();
    let dir = tempfile::tempdir().unwrap();
    let sg = common::SealgateProcess::start_with(
        dir.path(),
        (&g.endpoint, &g.access_key, &g.secret_key, &g.region),
        "info",
        "worker_threads = 1",
    )
    .await;
    let metrics = common::metrics_text(&sg.endpoint).await;
    assert!(
        metrics.lines().any(|l| l == "sealgate_worker_threads 1"),
        "{metrics}"
    );
    let client = sg.client();
    let b = format!("wt-{}", std::process::id());
    client.create_bucket().bucket(&b).send().await.unwrap();
    let data = common::pattern(3 << 20, 5);
    common::put(&client, &b, "k", &data).await;
    assert_eq!(common::get(&client, &b, "k").await, data);
}
