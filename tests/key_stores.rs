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

/// A SoftHSM2 token store of its own, with one token initialised.
struct SoftHsm {
    dir: tempfile::TempDir,
    label: String,
}

impl SoftHsm {
    fn new(label: &str) -> SoftHsm {
        let dir = tempfile::tempdir().unwrap();
        softhsm::token_store(dir.path(), label, PIN);
        let hsm = SoftHsm {
            dir,
            label: label.to_string(),
        };
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
            softhsm::module().display(),
            self.label,
            self.pin_file().display()
        )
    }

    /// What `pkcs11-tool` (OpenSC) lists of the token's objects, logged in.
    fn list_objects(&self) -> String {
        self.tool(&["--list-objects"])
    }

    /// `pkcs11-tool` (OpenSC) on the token as its user: its output.
    fn tool(&self, args: &[&str]) -> String {
        softhsm::tool(Some(&self.conf()), &self.label, PIN, args)
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
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // The log (stderr, at the default level) never claims a start that failed.
    assert!(!err.contains("sealgate listening"), "{err}");
    err
}

/// `sealgate serve` on `dir/sealgate.toml` must fail to start, saying `needle`.
async fn fails_to_start(dir: &Path, env: &[(String, String)], needle: &str) {
    let err = serve_fails(dir, env).await;
    assert!(err.contains(needle), "wanted {needle:?} in: {err}");
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

/// `[kms_unseal]` with a Transit unsealer at `address` (plain http allowed).
fn transit_unseal_toml(sealed: &Path, key: &str, address: &str, token: &str) -> String {
    format!(
        "[kms_unseal]\nsealed_root_key_file = \"{}\"\nkey = \"{key}\"\n[kms_unseal.transit]\naddress = \"{address}\"\ntoken = \"{token}\"\nallow_insecure_http = true\n",
        sealed.display()
    )
}

/// Starts sealgate on `dir/sealgate.toml`, writes `body` into a new bucket, starts it
/// again (the root key unsealed anew) and reads `body` back.
async fn round_trip_across_restart(dir: &Path, port: u16, env: &[(String, String)], body: &[u8]) {
    let p = start(dir, port, env).await;
    let bucket = new_bucket(&p).await;
    put(&p, &bucket, "k", body).await;
    drop(p);
    let p = start(dir, port, env).await;
    assert_eq!(get(&p, &bucket, "k").await, body);
}

async fn new_bucket(p: &SealgateProcess) -> String {
    let b = format!("ks-{}", random_hex(8));
    p.client().create_bucket().bucket(&b).send().await.unwrap();
    b
}

/// `seal-root --root-key-file K` refuses a key file others may read (as `serve` refuses
/// such a `kms.root_key_file`) and writes nothing; the same key made private is sealed.
#[tokio::test(flavor = "multi_thread")]
async fn seal_root_refuses_a_root_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let hsm = SoftHsm::new("sealgate-perm");
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.sealed");
    write_config(dir.path(), "", &hsm.unseal_toml(&first, None));
    let (ok, out) = seal_root(dir.path(), &first, true, &hsm.env()).await;
    assert!(ok, "{out}");
    let key = dir.path().join("old-root.key");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sealed = dir.path().join("moved.sealed");
    let args = [
        "kms",
        "seal-root",
        "--out",
        sealed.to_str().unwrap(),
        "--root-key-file",
        key.to_str().unwrap(),
    ];
    let (ok, out) = cli(dir.path(), &args, &hsm.env()).await;
    assert!(!ok && out.contains("old-root.key"), "{out}");
    assert!(!sealed.exists(), "nothing is written");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = cli(dir.path(), &args, &hsm.env()).await;
    assert!(ok, "{out}");
    assert!(sealed.exists());
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
    fails_to_start(dir.path(), &hsm.env(), "no token labelled 'no-such-token'").await;
    assert!(
        err.contains("sealgate-b"),
        "the message lists the tokens: {err}"
    );

    // A module that is not there.
    write_config(
        dir.path(),
        "",
        &unseal.replace(
            &softhsm::module().display().to_string(),
            "/nonexistent/libpkcs11.so",
        ),
    );
    fails_to_start(dir.path(), &hsm.env(), "cannot load the PKCS#11 module").await;

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
    fails_to_start(dir.path(), &hsm.env(), "could not authenticate").await;

    // The key deleted from the token.
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(softhsm::module())
        .args(["--token-label", "sealgate-b", "--login", "--pin", PIN])
        .args(["--delete-object", "--type", "secrkey", "--label", HSM_KEY])
        .env("SOFTHSM2_CONF", hsm.conf())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    write_config(dir.path(), "", &unseal);
    fails_to_start(
        dir.path(),
        &hsm.env(),
        "no secret key labelled 'sealgate-root'",
    )
    .await;

    // A file sealed by PKCS#11 given to a Transit unsealer.
    write_config(
        dir.path(),
        "",
        &transit_unseal_toml(&sealed, HSM_KEY, "http://127.0.0.1:1", "t"),
    );
    fails_to_start(
        dir.path(),
        &[],
        "was sealed by pkcs11 but [kms_unseal] configures transit",
    )
    .await;
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
    let unseal = |token: &str| transit_unseal_toml(&sealed, "sealgate-root", &bao.endpoint, token);
    let port = write_config(dir.path(), "", &unseal(BAO_TOKEN));
    let (ok, out) = seal_root(dir.path(), &sealed, false, &[]).await;
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&sealed).unwrap();
    assert!(text.contains("\"transit\""), "{text}");
    round_trip_across_restart(dir.path(), port, &[], b"sealed by transit").await;

    write_config(dir.path(), "", &unseal("a-token-openbao-refuses"));
    fails_to_start(
        dir.path(),
        &[],
        "the transit unsealer refused key 'sealgate-root'",
    )
    .await;

    write_config(dir.path(), "", &unseal(BAO_TOKEN));
    bao.kill();
    fails_to_start(dir.path(), &[], "the transit unsealer cannot be reached").await;
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
        round_trip_across_restart(dir.path(), port, &[], b"sealed by an AWS KMS API").await;
        if endpoint == central.endpoint {
            write_config(dir.path(), "", &unseal("not-the-secret-key"));
            fails_to_start(dir.path(), &[], "the aws-kms unsealer refused key").await;
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
    fails_to_start(dir.path(), &[], "root key").await;

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
    fails_to_start(dir.path(), &hsm.env(), "root key").await;
}

// ------------------------------------------------------------------ custom key stores

/// The cluster id the tests configure (`[kms.hsm_clusters.<id>]`).
const CLUSTER: &str = "cluster-sealgatehsma";
/// A second cluster id on the same token (a related cluster).
const CLUSTER2: &str = "cluster-sealgatehsmb";

/// A PEM certificate to pass as TrustAnchorCertificate.
fn anchor_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["hsm.example".to_string()])
        .unwrap()
        .cert
        .pem()
}

/// Starts the binary with a root key file and `[kms.hsm_clusters.CLUSTER]` on `module`
/// and `token_label`, with `env` (SoftHSM2's configuration, or p11-kit's address).
async fn start_with_cluster(
    dir: &Path,
    module: &Path,
    token_label: &str,
    extra_cluster_lines: &str,
    env: &[(String, String)],
) -> SealgateProcess {
    let root = dir.join("root.key");
    if !root.exists() {
        write_private(&root, random_hex(32).as_bytes());
    }
    let port = free_port();
    let cfg = config_text(dir, garage(), port, "", "")
        + &format!(
            "root_key_file = \"{}\"\n[kms.hsm_clusters.{CLUSTER}]\nmodule = \"{m}\"\ntoken_label = \"{token_label}\"\n{extra_cluster_lines}[kms.hsm_clusters.{CLUSTER2}]\nmodule = \"{m}\"\ntoken_label = \"{token_label}\"\n{extra_cluster_lines}",
            root.display(),
            m = module.display()
        );
    write_private(&dir.join("sealgate.toml"), cfg.as_bytes());
    start(dir, port, env).await
}

/// Two instances sharing one KMS in PostgreSQL (the same root key, each its own audit
/// log) and one SoftHSM2 token, each opening its own session: a custom key store
/// connected and a key created through one are used through the other; disconnecting
/// through one makes the other refuse the key within the staleness bound; reconnecting
/// through the other restores both.
#[tokio::test(flavor = "multi_thread")]
async fn instances_sharing_a_postgresql_kms_share_custom_key_stores() {
    let hsm = SoftHsm::new("cks-cluster");
    let shared = tempfile::tempdir().unwrap();
    let url_file = Postgres::shared().url_file(shared.path());
    let root = random_hex(32);
    let mut members = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("root.key"), root.as_bytes());
        let kms_lines = format!(
            "store = \"postgres\"\npostgres.url_file = \"{}\"\n",
            url_file.display()
        );
        let port = free_port();
        let cfg = config_text(dir.path(), garage(), port, "", &kms_lines)
            + &format!(
                "root_key_file = \"{}\"\n[kms.hsm_clusters.{CLUSTER}]\nmodule = \"{}\"\ntoken_label = \"cks-cluster\"\n",
                dir.path().join("root.key").display(),
                softhsm::module().display()
            );
        write_private(&dir.path().join("sealgate.toml"), cfg.as_bytes());
        members.push(start(dir.path(), port, &hsm.env()).await);
        dirs.push(dir);
    }
    let (a, b) = (members[0].kms_client(), members[1].kms_client());
    let store = connected_store(&a, "shared").await;
    let key = softhsm::key_in_store(&a, &store).await;
    let blob = a
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"shared".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let decrypt = |c: &aws_sdk_kms::Client| c.decrypt().ciphertext_blob(blob.clone()).send();
    let through_b = decrypt(&b).await.unwrap();
    assert_eq!(through_b.plaintext().unwrap().as_ref(), b"shared");
    assert_eq!(connection(&b, &store).await, ("CONNECTED".into(), None));

    store_op(&a, StoreOp::Disconnect, &store).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match decrypt(&b).await {
            Err(e) if service_error_code(&e) == "KMSInvalidStateException" => break,
            r => assert!(
                std::time::Instant::now() < deadline,
                "the other instance still decrypts 5 s after the disconnect: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store_op(&b, StoreOp::Connect, &store).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while decrypt(&a).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first instance does not decrypt 5 s after the reconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        decrypt(&b).await.unwrap().plaintext().unwrap().as_ref(),
        b"shared"
    );
}

/// aws-cli (default settings) against `endpoint`: (success, stdout, stderr).
async fn aws(endpoint: &str, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(aws_cli())
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", CLIENT_AK)
        .env("AWS_SECRET_ACCESS_KEY", CLIENT_SK)
        .env("HOME", home)
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// aws-cli that must fail with the error `code`.
async fn aws_fails(endpoint: &str, home: &Path, args: &[&str], code: &str) {
    let (ok, _, err) = aws(endpoint, home, args).await;
    assert!(
        !ok && err.contains(code),
        "aws {args:?}: wanted {code}, got: {err}"
    );
}

/// aws-cli that must succeed: its JSON answer.
async fn aws_json(endpoint: &str, home: &Path, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = aws(endpoint, home, args).await;
    assert!(ok, "aws {args:?}: {err}");
    if out.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("aws {args:?}: {e}: {out}"))
    }
}

fn store_state(v: &serde_json::Value) -> String {
    v["CustomKeyStores"][0]["ConnectionState"]
        .as_str()
        .unwrap()
        .to_string()
}

fn service_error_code<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_string()
}

/// What the issue's user does with the stock aws-cli: create, connect and describe a
/// custom key store on a SoftHSM2 token, create a key in it, use it (encrypt, decrypt,
/// generate-data-key, generate-random, S3 objects under SSE-KMS); the key is a
/// non-extractable object of the token; disconnecting makes the key Unavailable and its
/// objects unreadable with KMS.KMSInvalidStateException; reconnecting restores them.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_key_store_on_a_pkcs11_token_works_with_the_aws_cli() {
    let hsm = SoftHsm::new("cks-token-a");
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_cluster(
        dir.path(),
        &softhsm::module(),
        "cks-token-a",
        "",
        &hsm.env(),
    )
    .await;
    let home = dir.path();
    let ep = p.endpoint.clone();
    std::fs::write(home.join("anchor.pem"), anchor_pem()).unwrap();
    let anchor = format!("file://{}", home.join("anchor.pem").display());

    let v = aws_json(
        &ep,
        home,
        &[
            "kms",
            "create-custom-key-store",
            "--custom-key-store-name",
            "hsm-one",
            "--cloud-hsm-cluster-id",
            CLUSTER,
            "--trust-anchor-certificate",
            &anchor,
            "--key-store-password",
            PIN,
        ],
    )
    .await;
    let store = v["CustomKeyStoreId"].as_str().unwrap().to_string();
    assert!(store.starts_with("cks-"), "{v}");
    let describe = [
        "kms",
        "describe-custom-key-stores",
        "--custom-key-store-id",
        &store,
    ];
    let d = aws_json(&ep, home, &describe).await;
    assert_eq!(store_state(&d), "DISCONNECTED", "{d}");
    assert_eq!(d["CustomKeyStores"][0]["CloudHsmClusterId"], CLUSTER);
    assert_eq!(d["CustomKeyStores"][0]["CustomKeyStoreName"], "hsm-one");
    assert_eq!(
        d["CustomKeyStores"][0]["CustomKeyStoreType"],
        "AWS_CLOUDHSM"
    );
    assert!(
        !d.to_string().contains(PIN),
        "the password is never shown: {d}"
    );

    // A key cannot be created in a disconnected store.
    let create_key = [
        "kms",
        "create-key",
        "--custom-key-store-id",
        &store,
        "--origin",
        "AWS_CLOUDHSM",
    ];
    aws_fails(
        &ep,
        home,
        &create_key,
        "CustomKeyStoreInvalidStateException",
    )
    .await;

    store_verb(&ep, home, "connect-custom-key-store", &store).await;
    assert_eq!(
        store_state(&aws_json(&ep, home, &describe).await),
        "CONNECTED"
    );

    let k = aws_json(&ep, home, &create_key).await;
    let md = &k["KeyMetadata"];
    assert_eq!(md["Origin"], "AWS_CLOUDHSM", "{k}");
    assert_eq!(md["CustomKeyStoreId"], store.as_str());
    assert_eq!(md["CloudHsmClusterId"], CLUSTER);
    assert_eq!(md["KeyState"], "Enabled");
    let key_id = md["KeyId"].as_str().unwrap().to_string();
    let arn = md["Arn"].as_str().unwrap().to_string();

    // The material is the token's: labelled with the key id, sensitive, never extractable.
    let listing = hsm.list_objects();
    let entry = listing
        .split("Secret Key Object")
        .find(|o| o.contains(&key_id))
        .unwrap_or_else(|| panic!("no token object for {key_id}: {listing}"));
    assert!(entry.contains("never extractable"), "{entry}");
    assert!(entry.contains("sensitive"), "{entry}");

    // Cryptography through the token.
    std::fs::write(home.join("plain.txt"), b"inside the HSM").unwrap();
    let plain_arg = format!("fileb://{}", home.join("plain.txt").display());
    let e = aws_json(
        &ep,
        home,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key_id,
            "--plaintext",
            &plain_arg,
        ],
    )
    .await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let blob = b64.decode(e["CiphertextBlob"].as_str().unwrap()).unwrap();
    std::fs::write(home.join("blob.bin"), &blob).unwrap();
    let blob_arg = format!("fileb://{}", home.join("blob.bin").display());
    let d = aws_json(
        &ep,
        home,
        &["kms", "decrypt", "--ciphertext-blob", &blob_arg],
    )
    .await;
    assert_eq!(
        b64.decode(d["Plaintext"].as_str().unwrap()).unwrap(),
        b"inside the HSM"
    );
    assert_eq!(d["KeyId"], arn.as_str());
    let g = aws_json(
        &ep,
        home,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            &key_id,
            "--key-spec",
            "AES_256",
        ],
    )
    .await;
    assert_eq!(
        b64.decode(g["Plaintext"].as_str().unwrap()).unwrap().len(),
        32
    );
    let r = aws_json(
        &ep,
        home,
        &[
            "kms",
            "generate-random",
            "--number-of-bytes",
            "48",
            "--custom-key-store-id",
            &store,
        ],
    )
    .await;
    assert_eq!(
        b64.decode(r["Plaintext"].as_str().unwrap()).unwrap().len(),
        48
    );

    // AWS: keys in custom key stores do not rotate.
    aws_fails(
        &ep,
        home,
        &["kms", "enable-key-rotation", "--key-id", &key_id],
        "UnsupportedOperationException",
    )
    .await;
    aws_fails(
        &ep,
        home,
        &["kms", "rotate-key-on-demand", "--key-id", &key_id],
        "UnsupportedOperationException",
    )
    .await;

    // S3 objects under the HSM key.
    let bucket = new_bucket(&p).await;
    std::fs::write(home.join("object.bin"), pattern(300_000, 7)).unwrap();
    let obj = home.join("object.bin").display().to_string();
    aws_json(
        &ep,
        home,
        &[
            "s3api",
            "put-object",
            "--bucket",
            &bucket,
            "--key",
            "hsm-object",
            "--body",
            &obj,
            "--server-side-encryption",
            "aws:kms",
            "--ssekms-key-id",
            &key_id,
        ],
    )
    .await;
    let out = home.join("got.bin").display().to_string();
    let got = aws_json(
        &ep,
        home,
        &[
            "s3api",
            "get-object",
            "--bucket",
            &bucket,
            "--key",
            "hsm-object",
            &out,
        ],
    )
    .await;
    assert_eq!(got["SSEKMSKeyId"], arn.as_str(), "{got}");
    assert_eq!(std::fs::read(&out).unwrap(), pattern(300_000, 7));

    // Disconnected: the key is Unavailable, its objects fail cleanly.
    store_verb(&ep, home, "disconnect-custom-key-store", &store).await;
    assert_eq!(
        store_state(&aws_json(&ep, home, &describe).await),
        "DISCONNECTED"
    );
    let dk = aws_json(&ep, home, &["kms", "describe-key", "--key-id", &key_id]).await;
    assert_eq!(dk["KeyMetadata"]["KeyState"], "Unavailable", "{dk}");
    assert_eq!(dk["KeyMetadata"]["Enabled"], false);
    aws_fails(
        &ep,
        home,
        &["kms", "decrypt", "--ciphertext-blob", &blob_arg],
        "KMSInvalidStateException",
    )
    .await;
    let r = p
        .client()
        .get_object()
        .bucket(&bucket)
        .key("hsm-object")
        .send()
        .await
        .expect_err("read through a disconnected key store");
    let raw = r.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(
        r.as_service_error().and_then(|e| e.meta().code()),
        Some("KMS.KMSInvalidStateException")
    );
    aws_fails(
        &ep,
        home,
        &[
            "kms",
            "delete-custom-key-store",
            "--custom-key-store-id",
            &store,
        ],
        "CustomKeyStoreHasCMKsException",
    )
    .await;

    // Reconnected: everything reads again, also after a restart (the state persists).
    store_verb(&ep, home, "connect-custom-key-store", &store).await;
    drop(p);
    let p = start(dir.path(), port_of(dir.path()), &hsm.env()).await;
    let ep = p.endpoint.clone();
    let body = p
        .client()
        .get_object()
        .bucket(&bucket)
        .key("hsm-object")
        .send()
        .await
        .expect("the object reads after reconnecting and restarting")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(body.as_ref(), pattern(300_000, 7).as_slice());
    let d = aws_json(
        &ep,
        home,
        &["kms", "decrypt", "--ciphertext-blob", &blob_arg],
    )
    .await;
    assert_eq!(
        b64.decode(d["Plaintext"].as_str().unwrap()).unwrap(),
        b"inside the HSM"
    );
}

/// `aws kms VERB --custom-key-store-id STORE`, which must succeed.
async fn store_verb(endpoint: &str, home: &Path, verb: &str, store: &str) -> serde_json::Value {
    aws_json(
        endpoint,
        home,
        &["kms", verb, "--custom-key-store-id", store],
    )
    .await
}

/// A store's ConnectionState and ConnectionErrorCode, as DescribeCustomKeyStores
/// reports them through the SDK.
async fn connection(kms: &aws_sdk_kms::Client, id: &str) -> (String, Option<String>) {
    let d = kms
        .describe_custom_key_stores()
        .custom_key_store_id(id)
        .send()
        .await
        .unwrap();
    let entry = &d.custom_key_stores()[0];
    (
        entry.connection_state().unwrap().as_str().to_string(),
        entry
            .connection_error_code()
            .map(|c| c.as_str().to_string()),
    )
}

/// The custom key store operations that take only the store's id.
#[derive(Clone, Copy)]
enum StoreOp {
    Connect,
    Disconnect,
    Delete,
}

/// Runs `op` on store `id` through the SDK: the error code if it fails.
async fn store_op(kms: &aws_sdk_kms::Client, op: StoreOp, id: &str) -> Result<(), String> {
    fn code<T, E: aws_sdk_kms::error::ProvideErrorMetadata>(r: Result<T, E>) -> Result<(), String> {
        r.map(drop).map_err(|e| service_error_code(&e))
    }
    match op {
        StoreOp::Connect => code(
            kms.connect_custom_key_store()
                .custom_key_store_id(id)
                .send()
                .await,
        ),
        StoreOp::Disconnect => code(
            kms.disconnect_custom_key_store()
                .custom_key_store_id(id)
                .send()
                .await,
        ),
        StoreOp::Delete => code(
            kms.delete_custom_key_store()
                .custom_key_store_id(id)
                .send()
                .await,
        ),
    }
}

/// A new custom key store on CLUSTER with the right password, connected: its id.
async fn connected_store(kms: &aws_sdk_kms::Client, name: &str) -> String {
    softhsm::connected_store(kms, name, CLUSTER, &anchor_pem(), PIN).await
}

/// The port the config in `dir` listens on.
fn port_of(dir: &Path) -> u16 {
    let cfg = std::fs::read_to_string(dir.join("sealgate.toml")).unwrap();
    let line = cfg.lines().find(|l| l.starts_with("listen = ")).unwrap();
    line.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('"')
        .parse()
        .unwrap()
}

/// AWS's errors and states around custom key stores, through the Rust SDK: a wrong
/// password leaves the store FAILED with INVALID_CREDENTIALS until it is disconnected,
/// given the right password and connected; names and clusters are unique; a pinned trust
/// anchor must match; unknown clusters and external key stores are refused; a connected
/// store cannot be deleted; a deleted key's material leaves the token.
#[tokio::test(flavor = "multi_thread")]
async fn custom_key_store_states_and_errors_are_awss() {
    let hsm = SoftHsm::new("cks-token-b");
    let dir = tempfile::tempdir().unwrap();
    let pinned = anchor_pem();
    std::fs::write(dir.path().join("anchor.pem"), &pinned).unwrap();
    let pin_line = format!(
        "trust_anchor_certificate_file = \"{}\"\n",
        dir.path().join("anchor.pem").display()
    );
    let p = start_with_cluster(
        dir.path(),
        &softhsm::module(),
        "cks-token-b",
        &pin_line,
        &hsm.env(),
    )
    .await;
    let kms = p.kms_client();
    let create = |name: &str, cluster: &str, anchor: &str, password: &str| {
        kms.create_custom_key_store()
            .custom_key_store_name(name)
            .cloud_hsm_cluster_id(cluster)
            .trust_anchor_certificate(anchor)
            .key_store_password(password)
            .send()
    };

    let e = create("s", "cluster-notconfigured", &pinned, PIN)
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "CloudHsmClusterNotFoundException");
    let e = create("s", CLUSTER, &anchor_pem(), PIN).await.unwrap_err();
    assert_eq!(service_error_code(&e), "IncorrectTrustAnchorException");
    let e = create("s", CLUSTER, &pinned, "short").await.unwrap_err();
    assert_eq!(service_error_code(&e), "ValidationException");
    use aws_sdk_kms::error::ProvideErrorMetadata;
    let msg = e.message().unwrap_or_default().to_string();
    assert!(
        msg.contains("keyStorePassword") && !msg.contains("short"),
        "the password is never echoed: {msg}"
    );
    let e = kms
        .create_custom_key_store()
        .custom_key_store_name("x")
        .custom_key_store_type(aws_sdk_kms::types::CustomKeyStoreType::ExternalKeyStore)
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "UnsupportedOperationException");

    let store = create("store-b", CLUSTER, &pinned, "wrong-password")
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_string();
    let e = create("store-b", CLUSTER, &pinned, PIN).await.unwrap_err();
    assert_eq!(service_error_code(&e), "CustomKeyStoreNameInUseException");
    let e = create("store-c", CLUSTER, &pinned, PIN).await.unwrap_err();
    assert_eq!(service_error_code(&e), "CloudHsmClusterInUseException");

    let describe = || {
        kms.describe_custom_key_stores()
            .custom_key_store_id(&store)
            .send()
    };
    store_op(&kms, StoreOp::Connect, &store).await.unwrap();
    assert_eq!(
        connection(&kms, &store).await,
        ("FAILED".into(), Some("INVALID_CREDENTIALS".into()))
    );
    assert_eq!(
        store_op(&kms, StoreOp::Connect, &store).await.unwrap_err(),
        "CustomKeyStoreInvalidStateException"
    );
    let e = kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .new_custom_key_store_name("renamed-while-failed")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        service_error_code(&e),
        "CustomKeyStoreInvalidStateException",
        "a FAILED store must be disconnected first"
    );
    store_op(&kms, StoreOp::Disconnect, &store).await.unwrap();
    assert_eq!(
        store_op(&kms, StoreOp::Disconnect, &store)
            .await
            .unwrap_err(),
        "CustomKeyStoreInvalidStateException"
    );
    kms.update_custom_key_store()
        .custom_key_store_id(&store)
        .key_store_password(PIN)
        .new_custom_key_store_name("store-b-renamed")
        .send()
        .await
        .unwrap();
    store_op(&kms, StoreOp::Connect, &store).await.unwrap();
    let d = describe().await.unwrap();
    let entry = &d.custom_key_stores()[0];
    assert_eq!(entry.connection_state().unwrap().as_str(), "CONNECTED");
    assert_eq!(entry.custom_key_store_name(), Some("store-b-renamed"));
    assert!(entry.connection_error_code().is_none());

    // While the token is logged in for this store, another store on the same token
    // (a second cluster id) with a wrong password does not ride on that login.
    let intruder = create("intruder", CLUSTER2, &pinned, "not-the-pin")
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_string();
    store_op(&kms, StoreOp::Connect, &intruder).await.unwrap();
    assert_eq!(
        connection(&kms, &intruder).await,
        ("FAILED".into(), Some("INVALID_CREDENTIALS".into()))
    );
    store_op(&kms, StoreOp::Disconnect, &intruder)
        .await
        .unwrap();
    store_op(&kms, StoreOp::Delete, &intruder).await.unwrap();

    // Only the name changes while connected; deletion needs a disconnected store.
    let e = kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .key_store_password("another-password")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        service_error_code(&e),
        "CustomKeyStoreInvalidStateException"
    );
    assert_eq!(
        store_op(&kms, StoreOp::Delete, &store).await.unwrap_err(),
        "CustomKeyStoreInvalidStateException"
    );

    // Only single-Region symmetric encryption keys; Origin must agree.
    let e = kms
        .create_key()
        .custom_key_store_id(&store)
        .key_spec(aws_sdk_kms::types::KeySpec::Hmac256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "UnsupportedOperationException");
    let e = kms
        .create_key()
        .origin(aws_sdk_kms::types::OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "ValidationException");
    let e = kms
        .create_key()
        .custom_key_store_id("cks-00000000000000000")
        .origin(aws_sdk_kms::types::OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "CustomKeyStoreNotFoundException");
    let e = kms
        .describe_custom_key_stores()
        .custom_key_store_name("no-such-store")
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "CustomKeyStoreNotFoundException");

    // A key pending deletion still counts: the store cannot be deleted yet.
    let key = softhsm::key_in_store(&kms, &store).await;
    assert!(hsm.list_objects().contains(&key));
    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    store_op(&kms, StoreOp::Disconnect, &store).await.unwrap();
    assert_eq!(
        store_op(&kms, StoreOp::Delete, &store).await.unwrap_err(),
        "CustomKeyStoreHasCMKsException"
    );

    // A store without keys is deleted; its id is then unknown. (A second cluster id
    // names the same token: a related cluster, so the store may also move to it.)
    let empty = create("store-empty", CLUSTER2, &pinned, PIN)
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_string();
    let e = kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .cloud_hsm_cluster_id(CLUSTER2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "CloudHsmClusterInUseException");
    store_op(&kms, StoreOp::Delete, &empty).await.unwrap();
    let e = kms
        .describe_custom_key_stores()
        .custom_key_store_id(&empty)
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "CustomKeyStoreNotFoundException");
    kms.update_custom_key_store()
        .custom_key_store_id(&store)
        .cloud_hsm_cluster_id(CLUSTER2)
        .send()
        .await
        .unwrap();
    store_op(&kms, StoreOp::Connect, &store).await.unwrap();
    let d = describe().await.unwrap();
    assert_eq!(
        d.custom_key_stores()[0].cloud_hsm_cluster_id(),
        Some(CLUSTER2)
    );
    assert_eq!(
        d.custom_key_stores()[0]
            .connection_state()
            .unwrap()
            .as_str(),
        "CONNECTED"
    );
    kms.cancel_key_deletion().key_id(&key).send().await.unwrap();
    // Disabled (after the cancellation) and in a disconnected store: Unavailable wins.
    store_op(&kms, StoreOp::Disconnect, &store).await.unwrap();
    let e = kms
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(service_error_code(&e), "KMSInvalidStateException");
    store_op(&kms, StoreOp::Connect, &store).await.unwrap();
    kms.enable_key().key_id(&key).send().await.unwrap();
    kms.encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"still there".to_vec()))
        .send()
        .await
        .expect("the key works through the related cluster");
}

/// Whether the readable memory of process `pid` contains `needle` (read through
/// /proc/PID/mem, region by region, in overlapping chunks).
fn process_memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let finder = memchr::memmem::Finder::new(needle);
    const CHUNK: u64 = 1 << 20;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let mut at = start;
        while at < end {
            let len = (end - at).min(CHUNK + needle.len() as u64);
            let mut buf = vec![0u8; len as usize];
            if mem.seek(SeekFrom::Start(at)).is_err() || mem.read_exact(&mut buf).is_err() {
                break;
            }
            if finder.find(&buf).is_some() {
                return true;
            }
            at += CHUNK;
        }
    }
    false
}

/// The done-when of the HSM work: the bytes of a custom key store key never appear in
/// sealgate's memory, its database or its audit log, while sealgate encrypts, decrypts
/// and serves S3 objects under the key. The test makes the key's bytes known by putting a
/// key it generated into the token under the KMS key's label (as the token's user can);
/// a control shows the same memory search finds what sealgate does hold (its root key).
/// SoftHSM2 runs inside sealgate's process here (p11-kit 0.24's RPC, which could run it
/// in another, does not forward AES-GCM parameters). SoftHSM2 keeps private objects'
/// values encrypted in memory and opens them only during an operation; a second control
/// shows that a key object it keeps in clear is found by the same search, so a key that
/// sealgate (or the module) held would be.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_key_store_keys_bytes_never_enter_sealgates_memory_or_database() {
    let hsm = SoftHsm::new("cks-memory");
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_cluster(dir.path(), &softhsm::module(), "cks-memory", "", &hsm.env()).await;
    let pid = p.pid().unwrap();
    let kms = p.kms_client();
    let store = connected_store(&kms, "memory").await;
    let key = softhsm::key_in_store(&kms, &store).await;

    // The token's key for this KMS key becomes one whose bytes the test knows (private
    // and sensitive, as the keys sealgate creates).
    let known: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    replace_token_key(&hsm, dir.path(), &key, &known, true);
    use_key(&p, &key).await;

    // The control: the root key sealgate holds is found in its memory...
    let root = hex::decode(
        std::fs::read_to_string(dir.path().join("root.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(
        process_memory_contains(pid, &root),
        "the memory search finds what sealgate holds"
    );
    // ... the HSM key is not, nor in the database or the audit log.
    assert!(
        !process_memory_contains(pid, &known),
        "the HSM key's bytes are in sealgate's memory"
    );
    for f in ["kms.redb", "kms.audit.jsonl"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap();
        assert!(
            memchr::memmem::find(&bytes, &known).is_none(),
            "the HSM key's bytes are in {f}"
        );
    }

    // The second control: a token object the module keeps in clear (not private) is
    // found by the same search once sealgate has used it. The search would see a key
    // that sat in sealgate's process.
    let clear: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(91).wrapping_add(5))
        .collect();
    replace_token_key(&hsm, dir.path(), &key, &clear, false);
    use_key(&p, &key).await;
    assert!(
        process_memory_contains(pid, &clear),
        "the search finds key bytes the module holds in clear"
    );
}

/// Replaces the token's secret key labelled `label` with one of value `value`.
fn replace_token_key(hsm: &SoftHsm, dir: &Path, label: &str, value: &[u8], private: bool) {
    let key_file = dir.join("known.key");
    std::fs::write(&key_file, value).unwrap();
    hsm.tool(&["--delete-object", "--type", "secrkey", "--label", label]);
    let mut args = vec![
        "--write-object",
        key_file.to_str().unwrap(),
        "--type",
        "secrkey",
        "--key-type",
        "AES:32",
        "--label",
        label,
        "--sensitive",
        "--usage-decrypt",
    ];
    if private {
        args.push("--private");
    }
    hsm.tool(&args);
    std::fs::remove_file(&key_file).unwrap();
}

/// KMS Encrypt/Decrypt and an S3 object (SSE-KMS) under `key`.
async fn use_key(p: &SealgateProcess, key: &str) {
    let kms = p.kms_client();
    for i in 0..20u8 {
        let blob = kms
            .encrypt()
            .key_id(key)
            .plaintext(aws_sdk_kms::primitives::Blob::new(vec![i; 100]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}; sealgate's log:\n{}", p.log()))
            .ciphertext_blob()
            .unwrap()
            .clone();
        let plain = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
        assert_eq!(plain.plaintext().unwrap().as_ref(), vec![i; 100].as_slice());
    }
    let bucket = new_bucket(p).await;
    let body = pattern(200_000, 3);
    p.client()
        .put_object()
        .bucket(&bucket)
        .key("k")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let got = p
        .client()
        .get_object()
        .bucket(&bucket)
        .key("k")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());
}
