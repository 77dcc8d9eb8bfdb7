//! aws-cli (from PyPI) through sealgate's TLS listener, with the CLI's default checksum
//! behaviour (CRC32 in aws-chunked trailers over HTTPS).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Sealgate, pattern, sha256};

fn aws(sg_endpoint: &str, ca: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(common::aws_cli())
        .args(["--endpoint-url", sg_endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
        .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
        .env("AWS_CA_BUNDLE", ca)
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REQUEST_CHECKSUM_CALCULATION")
        .output()
        .expect("run aws-cli");
    assert!(
        out.status.success(),
        "aws {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_smoke_test_over_tls_with_default_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config();
    let tls = common::write_test_cert(dir.path());
    let ca = tls.cert_file.clone();
    cfg.tls = Some(tls);
    let sg = Sealgate::start_with(cfg).await;
    let ep = sg.endpoint.clone();
    let home = dir.path().to_path_buf();
    let bucket = format!("cli-{}", std::process::id());
    let src = dir.path().join("up.bin");
    let back = dir.path().join("down.bin");
    let data = pattern(100 << 20, 42);
    std::fs::write(&src, &data).unwrap();

    let (ep2, ca2, home2, b2, src2, back2) = (
        ep.clone(),
        ca.clone(),
        home.clone(),
        bucket.clone(),
        src.clone(),
        back.clone(),
    );
    let outputs = tokio::task::spawn_blocking(move || {
        let run = |a: &[&str]| aws(&ep2, &ca2, &home2, a);
        let s3url = format!("s3://{b2}/dir/file.bin");
        run(&["s3", "mb", &format!("s3://{b2}")]);
        run(&[
            "s3",
            "cp",
            "--only-show-errors",
            src2.to_str().unwrap(),
            &s3url,
        ]);
        let ls = run(&["s3", "ls", &format!("s3://{b2}/dir/")]);
        let head = run(&[
            "s3api",
            "head-object",
            "--bucket",
            &b2,
            "--key",
            "dir/file.bin",
        ]);
        run(&[
            "s3",
            "cp",
            "--only-show-errors",
            &s3url,
            back2.to_str().unwrap(),
        ]);
        let range_file = back2.with_extension("range");
        let ranged = run(&[
            "s3api",
            "get-object",
            "--bucket",
            &b2,
            "--key",
            "dir/file.bin",
            "--range",
            "bytes=8388600-8388620",
            range_file.to_str().unwrap(),
        ]);
        assert!(
            ranged.contains("bytes 8388600-8388620/104857600"),
            "{ranged}"
        );
        run(&["s3", "rm", &s3url]);
        // `s3 ls` exits 1 on an empty listing; list-objects-v2 answers `{}` or no output.
        let after = run(&[
            "s3api",
            "list-objects-v2",
            "--bucket",
            &b2,
            "--prefix",
            "dir/",
        ]);
        (ls, head, after)
    })
    .await
    .unwrap();
    let (ls, head, after) = outputs;
    assert!(ls.contains("104857600 file.bin"), "{ls}");
    let head: serde_json::Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["ContentLength"], 100 << 20);
    assert_eq!(head["ServerSideEncryption"], "AES256");
    let got = std::fs::read(&back).unwrap();
    assert_eq!(sha256(&got), sha256(&data));
    let range = std::fs::read(back.with_extension("range")).unwrap();
    assert_eq!(range, &data[8_388_600..8_388_621]);
    assert!(!after.contains("file.bin"), "{after}");
    let direct = sg
        .direct
        .head_object()
        .bucket(&bucket)
        .key("dir/file.bin")
        .send()
        .await;
    assert!(direct.is_err(), "removed from the store");
}
