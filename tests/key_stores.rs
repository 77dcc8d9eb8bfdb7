//! Where the KMS root key lives: sealed by an unsealer instead of a file (`[kms_unseal]`,
//! `sealgate kms seal-root`), as a user sets it up. Real unsealers: a SoftHSM2 token
//! through its PKCS#11 module, an OpenBao Transit key, and AWS-KMS-API endpoints (moto's
//! server and another sealgate's embedded KMS). The binary runs as a separate process,
//! as in production, so each test has its own SoftHSM2 configuration (`SOFTHSM2_CONF`).
//!
//! Objects go through Garage only: no S3 behaviour is under test here, only where the
//! key that seals the KMS database comes from.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::*;

const PIN: &str = "4096-pin";
const HSM_KEY: &str = "sealgate-root";

/// The SoftHSM2 PKCS#11 module from Debian's softhsm2 package.
fn softhsm_module() -> PathBuf {
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

/// A SoftHSM2 token store of its own, with one token initialised.
struct SoftHsm {
    dir: tempfile::TempDir,
    label: String,
}

impl SoftHsm {
    fn new(label: &str) -> SoftHsm {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm {
            dir,
            label: label.to_string(),
        };
        let out = std::process::Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--pin", PIN])
            .args(["--so-pin", "so-pin-1234"])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .expect("softhsm2-util (Debian's softhsm2)");
        assert!(out.status.success(), "init token: {out:?}");
        write_private(&hsm.pin_file(), format!("{PIN}\n").as_bytes());
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf().display().to_string())]
    }

    /// `[kms_unseal]` for this token.
    fn unseal_toml(&self, sealed: &Path, previous: Option<&Path>) -> String {
        format!(
            "[kms_unseal]\nsealed_root_key_file = \"{}\"\n{}key = \"{HSM_KEY}\"\n[kms_unseal.pkcs11]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\n",
            sealed.display(),
            previous
                .map(|p| format!("previous_sealed_root_key_file = \"{}\"\n", p.display()))
                .unwrap_or_default(),
            softhsm_module().display(),
            self.label,
            self.pin_file().display()
        )
    }

    /// What `pkcs11-tool` (OpenSC) lists of the token's objects, logged in.
    fn list_objects(&self) -> String {
        let out = std::process::Command::new("pkcs11-tool")
            .arg("--module")
            .arg(softhsm_module())
            .args(["--token-label", &self.label, "--login", "--pin", PIN])
            .arg("--list-objects")
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .expect("pkcs11-tool (Debian's opensc)");
        assert!(out.status.success(), "pkcs11-tool: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn garage() -> (&'static str, &'static str, &'static str, &'static str) {
    let g = Store::Garage.shared();
    (&g.endpoint, &g.access_key, &g.secret_key, &g.region)
}

/// Writes `dir/sealgate.toml`: Garage, the test client, `[kms]` with `kms_lines`, then
/// `tail` (a `[kms_unseal]` table). Returns the port it listens on.
fn write_config(dir: &Path, kms_lines: &str, tail: &str) -> u16 {
    let port = free_port();
    let mut cfg = config_text(dir, garage(), port, "", kms_lines);
    cfg.push_str(tail);
    write_private(&dir.join("sealgate.toml"), cfg.as_bytes());
    port
}

/// Runs `sealgate ARGS --config dir/sealgate.toml` to completion: (success, stdout+stderr).
async fn cli(dir: &Path, args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let out = tokio::process::Command::new(sealgate_bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("sealgate.toml"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `sealgate kms seal-root --out OUT --generate [--create-key]` on `dir/sealgate.toml`.
async fn seal_root(
    dir: &Path,
    out: &Path,
    create_key: bool,
    env: &[(String, String)],
) -> (bool, String) {
    let mut args = vec![
        "kms",
        "seal-root",
        "--out",
        out.to_str().unwrap(),
        "--generate",
    ];
    if create_key {
        args.push("--create-key");
    }
    cli(dir, &args, env).await
}

/// `sealgate serve` on `dir/sealgate.toml`, which must fail to start: its output.
async fn serve_fails(dir: &Path, env: &[(String, String)]) -> String {
    let mut child = tokio::process::Command::new(sealgate_bin())
        .args(["serve", "--config"])
        .arg(dir.join("sealgate.toml"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("sealgate started (or hung) although its root key cannot be unsealed")
        .unwrap();
    assert!(!status.success());
    let out = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn start(dir: &Path, port: u16, env: &[(String, String)]) -> SealgateProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    SealgateProcess::start_config(dir, port, "info", &env).await
}

/// PUTs `body` (encrypted under the embedded KMS, whose database the root key seals).
async fn put(p: &SealgateProcess, bucket: &str, key: &str, body: &[u8]) {
    p.client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
}

async fn get(p: &SealgateProcess, bucket: &str, key: &str) -> Vec<u8> {
    let r = p
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    r.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn new_bucket(p: &SealgateProcess) -> String {
    let b = format!("ks-{}", random_hex(8));
    p.client().create_bucket().bucket(&b).send().await.unwrap();
    b
}

/// A user's first start with an HSM: `seal-root --generate --create-key`, then serve;
/// objects written before a restart read after it, the wrapping key is non-extractable in
/// the token, and no root key file exists anywhere in sealgate's directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_pkcs11_token_unseals_the_root_key_across_restarts() {
    let hsm = SoftHsm::new("sealgate-a");
    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("root-key.sealed");
    let port = write_config(dir.path(), "", &hsm.unseal_toml(&sealed, None));

    let (ok, out) = seal_root(dir.path(), &sealed, false, &hsm.env()).await;
    assert!(!ok && out.contains("--create-key"), "{out}");
    let (ok, out) = seal_root(dir.path(), &sealed, true, &hsm.env()).await;
    assert!(ok, "{out}");
    let listing = hsm.list_objects();
    assert!(listing.contains(HSM_KEY), "{listing}");
    assert!(listing.contains("never extractable"), "{listing}");
    assert!(listing.contains("sensitive"), "{listing}");
    assert!(
        !listing.contains("wrap"),
        "the key may only encrypt/decrypt: {listing}"
    );
    // The file is private and holds no key in clear.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sealed).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "sealed root key file mode {mode:o}");
    // Sealing again never overwrites.
    let (ok, out) = seal_root(dir.path(), &sealed, false, &hsm.env()).await;
    assert!(!ok && out.contains("exists"), "{out}");

    let p = start(dir.path(), port, &hsm.env()).await;
    let bucket = new_bucket(&p).await;
    put(&p, &bucket, "before", b"written before the restart").await;
    drop(p);
    let p = start(dir.path(), port, &hsm.env()).await;
    assert_eq!(
        get(&p, &bucket, "before").await,
        b"written before the restart"
    );
    put(&p, &bucket, "after", b"written after").await;
    assert_eq!(get(&p, &bucket, "after").await, b"written after");
    drop(p);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.contains("root.key"),
            "a root key file appeared: {name}"
        );
    }
}

/// A wrong PIN, a missing token, a missing key, a changed sealed file and a file sealed
/// by another unsealer each stop startup with a message that says which.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_pkcs11_unsealer_fails_startup_clearly() {
    let hsm = SoftHsm::new("sealgate-b");
    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("root-key.sealed");
    let unseal = hsm.unseal_toml(&sealed, None);
    write_config(dir.path(), "", &unseal);
    let (ok, out) = seal_root(dir.path(), &sealed, true, &hsm.env()).await;
    assert!(ok, "{out}");

    // Wrong PIN.
    write_private(&hsm.pin_file(), b"not-the-pin\n");
    let err = serve_fails(dir.path(), &hsm.env()).await;
    assert!(err.contains("PIN") && err.contains("refused"), "{err}");
    write_private(&hsm.pin_file(), format!("{PIN}\n").as_bytes());

    // No token with that label.
    write_config(
        dir.path(),
        "",
        &unseal.replace("sealgate-b", "no-such-token"),
    );
    let err = serve_fails(dir.path(), &hsm.env()).await;
    assert!(err.contains("no token labelled 'no-such-token'"), "{err}");
    assert!(
        err.contains("sealgate-b"),
        "the message lists the tokens: {err}"
    );

    // A module that is not there.
    write_config(
        dir.path(),
        "",
        &unseal.replace(
            &softhsm_module().display().to_string(),
            "/nonexistent/libpkcs11.so",
        ),
    );
    let err = serve_fails(dir.path(), &hsm.env()).await;
    assert!(err.contains("cannot load the PKCS#11 module"), "{err}");

    // The sealed file changed: one bit of the ciphertext flipped.
    write_config(dir.path(), "", &unseal);
    let text = std::fs::read_to_string(&sealed).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ct = b64.decode(v["ciphertext"].as_str().unwrap()).unwrap();
    ct[20] ^= 1;
    v["ciphertext"] = b64.encode(&ct).into();
    let changed = dir.path().join("changed.sealed");
    write_private(&changed, v.to_string().as_bytes());
    write_config(dir.path(), "", &hsm.unseal_toml(&changed, None));
    let err = serve_fails(dir.path(), &hsm.env()).await;
    assert!(err.contains("could not authenticate"), "{err}");

    // The key deleted from the token.
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(softhsm_module())
        .args(["--token-label", "sealgate-b", "--login", "--pin", PIN])
        .args(["--delete-object", "--type", "secrkey", "--label", HSM_KEY])
        .env("SOFTHSM2_CONF", hsm.conf())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    write_config(dir.path(), "", &unseal);
    let err = serve_fails(dir.path(), &hsm.env()).await;
    assert!(
        err.contains("no secret key labelled 'sealgate-root'"),
        "{err}"
    );

    // A file sealed by PKCS#11 given to a Transit unsealer.
    write_config(
        dir.path(),
        "",
        &format!(
            "[kms_unseal]\nsealed_root_key_file = \"{}\"\nkey = \"{HSM_KEY}\"\n[kms_unseal.transit]\naddress = \"http://127.0.0.1:1\"\ntoken = \"t\"\nallow_insecure_http = true\n",
            sealed.display()
        ),
    );
    let err = serve_fails(dir.path(), &[]).await;
    assert!(
        err.contains("was sealed by pkcs11 but [kms_unseal] configures transit"),
        "{err}"
    );
}

/// OpenBao Transit as the unsealer (Vault's auto-unseal): a derived Transit key seals the
/// root key; sealgate starts and serves; with OpenBao down, or a token it refuses,
/// startup fails and says so.
#[tokio::test(flavor = "multi_thread")]
async fn openbao_transit_unseals_the_root_key() {
    let bao = KmsPeer::start(PeerKind::OpenBao).await;
    bao.bao("POST", "transit/keys/sealgate-root", r#"{"derived":true}"#)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("root-key.sealed");
    let unseal = |token: &str| {
        format!(
            "[kms_unseal]\nsealed_root_key_file = \"{}\"\nkey = \"sealgate-root\"\n[kms_unseal.transit]\naddress = \"{}\"\ntoken = \"{token}\"\nallow_insecure_http = true\n",
            sealed.display(),
            bao.endpoint
        )
    };
    let port = write_config(dir.path(), "", &unseal(BAO_TOKEN));
    let (ok, out) = seal_root(dir.path(), &sealed, false, &[]).await;
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&sealed).unwrap();
    assert!(text.contains("\"transit\""), "{text}");

    let p = start(dir.path(), port, &[]).await;
    let bucket = new_bucket(&p).await;
    put(&p, &bucket, "k", b"sealed by transit").await;
    drop(p);
    let p = start(dir.path(), port, &[]).await;
    assert_eq!(get(&p, &bucket, "k").await, b"sealed by transit");
    drop(p);

    write_config(dir.path(), "", &unseal("a-token-openbao-refuses"));
    let err = serve_fails(dir.path(), &[]).await;
    assert!(
        err.contains("the transit unsealer refused key 'sealgate-root'"),
        "{err}"
    );

    write_config(dir.path(), "", &unseal(BAO_TOKEN));
    bao.kill();
    let err = serve_fails(dir.path(), &[]).await;
    assert!(
        err.contains("the transit unsealer cannot be reached"),
        "{err}"
    );
}

/// Any AWS-KMS-API endpoint as the unsealer: moto's KMS server, and another sealgate's
/// embedded KMS (a central KMS instance unsealing edge instances). A wrong secret key is
/// refused at startup.
#[tokio::test(flavor = "multi_thread")]
async fn an_aws_kms_api_endpoint_unseals_the_root_key() {
    let moto = KmsPeer::start(PeerKind::Moto).await;
    let central = Sealgate::start().await;
    let central_key = new_key_arn(&central).await;
    let cases = [
        (
            moto.endpoint.clone(),
            PEER_KEY_ALIAS.to_string(),
            "AKIDMOTO",
            "motosecret",
        ),
        (central.endpoint.clone(), central_key, CLIENT_AK, CLIENT_SK),
    ];
    for (endpoint, key, ak, sk) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sealed = dir.path().join("root-key.sealed");
        let unseal = |sk: &str| {
            format!(
                "[kms_unseal]\nsealed_root_key_file = \"{}\"\nkey = \"{key}\"\n[kms_unseal.aws]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"{ak}\"\nsecret_access_key = \"{sk}\"\nallow_insecure_http = true\n",
                sealed.display()
            )
        };
        let port = write_config(dir.path(), "", &unseal(sk));
        let (ok, out) = seal_root(dir.path(), &sealed, false, &[]).await;
        assert!(ok, "{endpoint}: {out}");
        let p = start(dir.path(), port, &[]).await;
        let bucket = new_bucket(&p).await;
        put(&p, &bucket, "k", b"sealed by an AWS KMS API").await;
        drop(p);
        let p = start(dir.path(), port, &[]).await;
        assert_eq!(get(&p, &bucket, "k").await, b"sealed by an AWS KMS API");
        drop(p);
        if endpoint == central.endpoint {
            write_config(dir.path(), "", &unseal("not-the-secret-key"));
            let err = serve_fails(dir.path(), &[]).await;
            assert!(err.contains("the aws-kms unsealer refused key"), "{err}");
        }
    }
}

/// Moving an installation from a root key file to an HSM-sealed root key, online-style:
/// seal a new key, rotate with the old file as the previous key, then start with the
/// token alone; a second rotation goes from one sealed key to another. The old keys
/// alone no longer open the database.
#[tokio::test(flavor = "multi_thread")]
async fn a_root_key_file_moves_into_a_pkcs11_token_by_rotation() {
    let hsm = SoftHsm::new("sealgate-c");
    let dir = tempfile::tempdir().unwrap();
    let g = garage();
    let p = SealgateProcess::start_full(dir.path(), g, "info", "", "").await;
    let bucket = new_bucket(&p).await;
    put(&p, &bucket, "old", b"under the file root key").await;
    drop(p);
    let old_file = dir.path().join("root.key");
    std::fs::rename(&old_file, dir.path().join("old-root.key")).unwrap();
    let old_file = dir.path().join("old-root.key");

    let first = dir.path().join("first.sealed");
    let previous = format!("previous_root_key_file = \"{}\"\n", old_file.display());
    write_config(dir.path(), &previous, &hsm.unseal_toml(&first, None));
    let (ok, out) = seal_root(dir.path(), &first, true, &hsm.env()).await;
    assert!(ok, "{out}");
    let (ok, out) = cli(dir.path(), &["kms", "rotate-root"], &hsm.env()).await;
    assert!(ok, "{out}");

    let port = write_config(dir.path(), "", &hsm.unseal_toml(&first, None));
    let p = start(dir.path(), port, &hsm.env()).await;
    assert_eq!(get(&p, &bucket, "old").await, b"under the file root key");
    put(&p, &bucket, "first", b"under the first sealed key").await;
    drop(p);

    // The old file alone is refused now.
    let cfg = config_text(dir.path(), g, port, "", "")
        + &format!("root_key_file = \"{}\"\n", old_file.display());
    write_private(&dir.path().join("sealgate.toml"), cfg.as_bytes());
    let err = serve_fails(dir.path(), &[]).await;
    assert!(err.contains("root key"), "{err}");

    // Sealed to sealed.
    let second = dir.path().join("second.sealed");
    write_config(dir.path(), "", &hsm.unseal_toml(&second, Some(&first)));
    let (ok, out) = seal_root(dir.path(), &second, true, &hsm.env()).await;
    assert!(ok, "{out}");
    let (ok, out) = cli(dir.path(), &["kms", "rotate-root"], &hsm.env()).await;
    assert!(ok, "{out}");
    let port = write_config(dir.path(), "", &hsm.unseal_toml(&second, None));
    let p = start(dir.path(), port, &hsm.env()).await;
    assert_eq!(get(&p, &bucket, "old").await, b"under the file root key");
    assert_eq!(
        get(&p, &bucket, "first").await,
        b"under the first sealed key"
    );
    drop(p);
    write_config(dir.path(), "", &hsm.unseal_toml(&first, None));
    let err = serve_fails(dir.path(), &hsm.env()).await;
    assert!(err.contains("root key"), "{err}");
}
