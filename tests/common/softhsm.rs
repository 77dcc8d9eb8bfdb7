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
