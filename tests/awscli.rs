//! aws-cli (from PyPI) through sealgate's TLS listener, with the CLI's default checksum
//! behaviour (CRC32 in aws-chunked trailers over HTTPS).

mod common;

use common::Store;
use rstest::rstest;

use std::path::Path;
use std::process::Command;

use common::{Sealgate, pattern, sha256};

fn aws(sg_endpoint: &str, ca: &Path, home: &Path, args: &[&str]) -> String {
    aws_with(&common::aws_cli(), sg_endpoint, Some(ca), home, args)
}

/// Runs `cli` (an aws-cli binary) against sealgate with default settings.
fn aws_with(
    cli: &Path,
    sg_endpoint: &str,
    ca: Option<&Path>,
    home: &Path,
    args: &[&str],
) -> String {
    let mut cmd = Command::new(cli);
    if let Some(ca) = ca {
        cmd.env("AWS_CA_BUNDLE", ca);
    }
    let out = cmd
        .args(["--endpoint-url", sg_endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
        .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
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

/// `aws s3 sync` of a folder holding an empty file and a multipart-sized file, up and
/// down, with the pinned aws-cli and the newest release the suite installs. botocore
/// sends `Expect: 100-continue` even for the empty file; a connection answered without an
/// interim response used to break the next upload on it (`upload failed: ... 'ETag'`).
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_s3_sync_of_a_folder_with_an_empty_and_a_large_file_round_trips(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let bucket = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::create_dir_all(up.join("sub")).unwrap();
    let big = pattern(40 << 20, 7);
    std::fs::write(up.join("empty.txt"), b"").unwrap();
    std::fs::write(up.join("big.bin"), &big).unwrap();
    std::fs::write(up.join("sub/small.txt"), b"small file\n").unwrap();
    for (n, cli) in [common::aws_cli(), common::aws_cli_newest()]
        .into_iter()
        .enumerate()
    {
        let (ep, home, b, up) = (
            sg.endpoint.clone(),
            dir.path().to_path_buf(),
            bucket.clone(),
            up.clone(),
        );
        let down = dir.path().join(format!("down{n}"));
        let down2 = down.clone();
        tokio::task::spawn_blocking(move || {
            let run = |a: &[&str]| aws_with(&cli, &ep, None, &home, a);
            let prefix = format!("s3://{b}/sync{n}/");
            // Three times: each run must succeed (connections are reused between them).
            for _ in 0..3 {
                run(&[
                    "s3",
                    "sync",
                    "--only-show-errors",
                    up.to_str().unwrap(),
                    &prefix,
                ]);
            }
            run(&[
                "s3",
                "sync",
                "--only-show-errors",
                &prefix,
                down2.to_str().unwrap(),
            ]);
        })
        .await
        .unwrap();
        assert_eq!(std::fs::read(down.join("empty.txt")).unwrap(), b"");
        assert_eq!(
            sha256(&std::fs::read(down.join("big.bin")).unwrap()),
            sha256(&big)
        );
        assert_eq!(
            std::fs::read(down.join("sub/small.txt")).unwrap(),
            b"small file\n"
        );
    }
}

/// The checksums aws-cli sends by default (CRC32, in aws-chunked trailers over HTTPS) come
/// back on `head-object --checksum-mode ENABLED`, right for the type they are reported
/// as, with the pinned aws-cli and the newest; `get-object --checksum-mode ENABLED` (which
/// validates) and `s3 cp` down return the bytes.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_default_checksums_come_back_with_checksum_mode(#[case] store: Store) {
    use base64::Engine as _;
    let sg = Sealgate::start_tls_on(store).await;
    let ca = sg.cfg.tls.as_ref().unwrap().cert_file.clone();
    let bucket = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let small = pattern(1000, 3);
    let big = pattern(40 << 20, 4);
    std::fs::write(dir.path().join("small"), &small).unwrap();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let crc = |d: &[u8]| crc32fast::hash(d).to_be_bytes();
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    // aws-cli's multipart parts are 8 MiB: the composite is the CRC32 of their CRC32s.
    let parts: Vec<u8> = big.chunks(8 << 20).flat_map(crc).collect();
    let composite = format!("{}-{}", b64(&crc(&parts)), big.len().div_ceil(8 << 20));
    for (n, cli) in [common::aws_cli(), common::aws_cli_newest()]
        .into_iter()
        .enumerate()
    {
        let (ep, ca, home, b) = (
            sg.endpoint.clone(),
            ca.clone(),
            dir.path().to_path_buf(),
            bucket.clone(),
        );
        let heads = tokio::task::spawn_blocking(move || {
            let run = |a: &[&str]| aws_with(&cli, &ep, Some(&ca), &home, a);
            let mut heads = Vec::new();
            for name in ["small", "big"] {
                let key = format!("{n}/{name}");
                let local = home.join(name);
                run(&[
                    "s3",
                    "cp",
                    "--only-show-errors",
                    local.to_str().unwrap(),
                    &format!("s3://{b}/{key}"),
                ]);
                let head = run(&[
                    "s3api",
                    "head-object",
                    "--bucket",
                    &b,
                    "--key",
                    &key,
                    "--checksum-mode",
                    "ENABLED",
                ]);
                let out = home.join(format!("{n}-{name}.get"));
                run(&[
                    "s3api",
                    "get-object",
                    "--bucket",
                    &b,
                    "--key",
                    &key,
                    "--checksum-mode",
                    "ENABLED",
                    out.to_str().unwrap(),
                ]);
                let down = home.join(format!("{n}-{name}.down"));
                run(&[
                    "s3",
                    "cp",
                    "--only-show-errors",
                    &format!("s3://{b}/{key}"),
                    down.to_str().unwrap(),
                ]);
                heads.push((name, head, out, down));
            }
            heads
        })
        .await
        .unwrap();
        for (name, head, got, down) in heads {
            let data = if name == "small" { &small } else { &big };
            assert_eq!(sha256(&std::fs::read(got).unwrap()), sha256(data), "{name}");
            assert_eq!(
                sha256(&std::fs::read(down).unwrap()),
                sha256(data),
                "{name}"
            );
            let h: serde_json::Value = serde_json::from_str(&head).unwrap();
            let value = h["ChecksumCRC32"]
                .as_str()
                .unwrap_or_else(|| panic!("{head}"));
            let want = match h["ChecksumType"].as_str() {
                Some("FULL_OBJECT") => b64(&crc(data)),
                Some("COMPOSITE") => composite.clone(),
                other => panic!("checksum type {other:?}: {head}"),
            };
            assert_eq!(value, want, "aws-cli {n}, {name}: {head}");
        }
    }
}
