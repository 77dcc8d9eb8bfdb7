//! SoftHSM2 (Debian's softhsm2) as a real PKCS#11 token for tests and benches: the
//! module's path, and a token store of one's own (a `softhsm2.conf` naming a token
//! directory, selected with `SOFTHSM2_CONF`) with one initialised token.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The SoftHSM2 PKCS#11 module (`SEALGATE_TEST_SOFTHSM_MODULE` overrides the search).
pub fn module() -> PathBuf {
    if let Ok(p) = std::env::var("SEALGATE_TEST_SOFTHSM_MODULE") {
        return PathBuf::from(p);
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libsofthsm2.so not found: install Debian's softhsm2 (scripts/setup.sh does)")
}

/// Writes `dir/softhsm2.conf` (tokens in `dir/tokens`) and initialises a token
/// labelled `label` with user PIN `pin`: the config file to put in `SOFTHSM2_CONF`.
pub fn token_store(dir: &Path, label: &str, pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", pin])
        .args(["--so-pin", "so-pin-1234"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (Debian's softhsm2)");
    assert!(out.status.success(), "init token {label}: {out:?}");
    conf
}

/// For a test or bench with its own `main` that loads SoftHSM2 in its process: SoftHSM2
/// reads `SOFTHSM2_CONF` once, and the crate may not change its own environment. The
/// first call makes a token store with one token (`label`, `pin`), runs this executable
/// again with the same arguments and `SOFTHSM2_CONF` set, and exits with its status; in
/// that second run it returns at once.
pub fn rerun_with_own_token_store(label: &str, pin: &str) {
    const RERUN: &str = "SEALGATE_TEST_SOFTHSM_RERUN";
    if std::env::var_os(RERUN).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = token_store(dir.path(), label, pin);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env("SOFTHSM2_CONF", conf)
        .env(RERUN, "1")
        .status()
        .unwrap();
    std::process::exit(status.code().unwrap_or(1));
}

/// `pkcs11-tool` (Debian's opensc) on the token `label` as its user, with the SoftHSM2
/// configuration `conf` (None: the one in this process's environment): its output.
pub fn tool(conf: Option<&Path>, label: &str, pin: &str, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new("pkcs11-tool");
    cmd.arg("--module")
        .arg(module())
        .args(["--token-label", label, "--login", "--pin", pin])
        .args(args);
    if let Some(c) = conf {
        cmd.env("SOFTHSM2_CONF", c);
    }
    let out = cmd.output().expect("pkcs11-tool (Debian's opensc)");
    assert!(out.status.success(), "pkcs11-tool {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new KMS key in custom key store `store`, created through the SDK client `kms`
/// (Origin AWS_CLOUDHSM): its id.
pub async fn key_in_store(kms: &aws_sdk_kms::Client, store: &str) -> String {
    kms.create_key()
        .custom_key_store_id(store)
        .origin(aws_sdk_kms::types::OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string()
}

/// A new custom key store named `name` on cluster `cluster` (trust anchor `anchor`,
/// password `pin`), connected through the SDK client `kms`: its id.
pub async fn connected_store(
    kms: &aws_sdk_kms::Client,
    name: &str,
    cluster: &str,
    anchor: &str,
    pin: &str,
) -> String {
    let store = kms
        .create_custom_key_store()
        .custom_key_store_name(name)
        .cloud_hsm_cluster_id(cluster)
        .trust_anchor_certificate(anchor)
        .key_store_password(pin)
        .send()
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_string();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    store
}
