//! The KMS API driven by the real aws-cli (`aws kms ... --endpoint-url`). The binary is
//! taken from SEALGATE_TEST_AWS_CLI (default: `aws` on PATH); if it cannot be run the
//! test fails rather than skips, so CI notices a missing client.

mod kms_support;

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

struct Cli {
    bin: String,
    url: String,
    dir: tempfile::TempDir,
}

/// Access key id and secret of alice (the account root).
const ALICE: (&str, &str) = (kms_support::ACCESS_KEY, kms_support::SECRET);
/// Access key id and secret of bob (a user of the same account).
const BOB: (&str, &str) = (kms_support::BOB_ACCESS_KEY, kms_support::BOB_SECRET);

impl Cli {
    /// Runs `aws kms <args>` as alice; returns (success, parsed stdout or Null, stderr).
    fn kms(&self, args: &[&str]) -> (bool, serde_json::Value, String) {
        self.kms_as(ALICE, args)
    }

    /// Runs `aws kms <args>` with the given credentials.
    fn kms_as(&self, creds: (&str, &str), args: &[&str]) -> (bool, serde_json::Value, String) {
        let out = Command::new(&self.bin)
            .arg("kms")
            .args(args)
            .args(["--endpoint-url", &self.url, "--region", kms_support::REGION])
            .args(["--output", "json"])
            .env("AWS_ACCESS_KEY_ID", creds.0)
            .env("AWS_SECRET_ACCESS_KEY", creds.1)
            .env("AWS_CONFIG_FILE", self.dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("none"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the aws-cli '{}' ({e}); install it or set SEALGATE_TEST_AWS_CLI",
                    self.bin
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.success(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> serde_json::Value {
        self.ok_as(ALICE, args)
    }

    #[track_caller]
    fn ok_as(&self, creds: (&str, &str), args: &[&str]) -> serde_json::Value {
        let (ok, v, err) = self.kms_as(creds, args);
        assert!(ok, "aws kms {args:?} failed: {err}");
        v
    }

    /// Runs a command that must fail with the given AWS error code.
    #[track_caller]
    fn fails_as(&self, creds: (&str, &str), args: &[&str], code: &str) {
        let (ok, _, err) = self.kms_as(creds, args);
        assert!(
            !ok && err.contains(code),
            "aws kms {args:?}: want {code}, got: {err}"
        );
    }

    /// Writes bytes to a file and returns a `fileb://` argument for it.
    fn fileb(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("fileb://{}", p.display())
    }
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string")).unwrap()
}

fn cli_for(server: &kms_support::Server) -> Cli {
    Cli {
        bin: std::env::var("SEALGATE_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into()),
        url: server.url.clone(),
        dir: tempfile::tempdir().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_manages_keys_and_round_trips_data() {
    let server = kms_support::start().await;
    let cli = cli_for(&server);
    tokio::task::spawn_blocking(move || {
        let md = cli.ok(&["create-key", "--description", "cli key"]);
        let id = md["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        assert_eq!(md["KeyMetadata"]["KeyState"], "Enabled");

        cli.ok(&[
            "create-alias",
            "--alias-name",
            "alias/cli",
            "--target-key-id",
            &id,
        ]);
        let pt = cli.fileb("pt", b"hello from the aws-cli");
        let enc = cli.ok(&[
            "encrypt",
            "--key-id",
            "alias/cli",
            "--plaintext",
            &pt,
            "--encryption-context",
            "app=cli",
        ]);
        let ct = cli.fileb("ct", &b64(&enc["CiphertextBlob"]));
        let dec = cli.ok(&[
            "decrypt",
            "--ciphertext-blob",
            &ct,
            "--encryption-context",
            "app=cli",
        ]);
        assert_eq!(b64(&dec["Plaintext"]), b"hello from the aws-cli");
        let (ok, _, err) = cli.kms(&["decrypt", "--ciphertext-blob", &ct]);
        assert!(!ok && err.contains("InvalidCiphertextException"), "{err}");

        let dk = cli.ok(&[
            "generate-data-key",
            "--key-id",
            &id,
            "--key-spec",
            "AES_256",
        ]);
        assert_eq!(b64(&dk["Plaintext"]).len(), 32);

        cli.ok(&["rotate-key-on-demand", "--key-id", &id]);
        let rot = cli.ok(&["list-key-rotations", "--key-id", &id]);
        assert_eq!(rot["Rotations"][0]["RotationType"], "ON_DEMAND");
        let aliases = cli.ok(&["list-aliases", "--key-id", &id]);
        assert_eq!(aliases["Aliases"][0]["AliasName"], "alias/cli");

        let sched = cli.ok(&[
            "schedule-key-deletion",
            "--key-id",
            &id,
            "--pending-window-in-days",
            "7",
        ]);
        assert_eq!(sched["KeyState"], "PendingDeletion");
        let (ok, _, err) = cli.kms(&["describe-key", "--key-id", "alias/missing"]);
        assert!(!ok && err.contains("NotFoundException"), "{err}");
    })
    .await
    .unwrap();
}

/// Only the account root itself (not every principal of the account).
const ROOT_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"RootOnly","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::000000000000:root"}}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_grant_lets_bob_decrypt_until_retired_and_revoked() {
    let server = kms_support::start().await;
    let cli = cli_for(&server);
    tokio::task::spawn_blocking(move || {
        let md = cli.ok(&["create-key", "--policy", ROOT_ONLY]);
        let id = md["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        let pt = cli.fileb("pt", b"for bob's eyes once granted");
        let enc = cli.ok(&["encrypt", "--key-id", &id, "--plaintext", &pt]);
        let ct = cli.fileb("ct", &b64(&enc["CiphertextBlob"]));
        let decrypt = ["decrypt", "--ciphertext-blob", ct.as_str()];
        cli.fails_as(BOB, &decrypt, "AccessDeniedException");

        let grant_to_bob = |extra: &[&str]| {
            let mut args = vec![
                "create-grant",
                "--key-id",
                &id,
                "--grantee-principal",
                "arn:aws:iam::000000000000:user/bob",
                "--operations",
                "Decrypt",
            ];
            args.extend_from_slice(extra);
            cli.ok(&args)
        };
        let grant = grant_to_bob(&["RetireGrant", "--name", "cli-grant"]);
        let token = grant["GrantToken"].as_str().unwrap().to_string();
        let out = cli.ok_as(BOB, &decrypt);
        assert_eq!(b64(&out["Plaintext"]), b"for bob's eyes once granted");
        let listed = cli.ok(&["list-grants", "--key-id", &id]);
        assert_eq!(listed["Grants"][0]["Name"], "cli-grant");
        assert_eq!(listed["Grants"][0]["GrantId"], grant["GrantId"]);
        cli.fails_as(
            BOB,
            &["encrypt", "--key-id", &id, "--plaintext", &pt],
            "AccessDeniedException",
        );

        cli.ok_as(BOB, &["retire-grant", "--grant-token", &token]);
        cli.fails_as(BOB, &decrypt, "AccessDeniedException");

        let again = grant_to_bob(&[]);
        cli.ok_as(BOB, &decrypt);
        let gid = again["GrantId"].as_str().unwrap();
        cli.fails_as(
            BOB,
            &["revoke-grant", "--key-id", &id, "--grant-id", gid],
            "AccessDeniedException",
        );
        cli.ok(&["revoke-grant", "--key-id", &id, "--grant-id", gid]);
        cli.fails_as(BOB, &decrypt, "AccessDeniedException");
        let policy = cli.ok(&[
            "get-key-policy",
            "--key-id",
            &id,
            "--policy-name",
            "default",
        ]);
        assert!(policy["Policy"].as_str().unwrap().contains("RootOnly"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_signs_verifies_and_gets_the_public_key_of_an_ecc_key() {
    let server = kms_support::start().await;
    let cli = cli_for(&server);
    tokio::task::spawn_blocking(move || {
        let md = cli.ok(&[
            "create-key",
            "--key-spec",
            "ECC_NIST_P256",
            "--key-usage",
            "SIGN_VERIFY",
        ]);
        assert_eq!(md["KeyMetadata"]["SigningAlgorithms"][0], "ECDSA_SHA_256");
        let id = md["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        let pk = cli.ok(&["get-public-key", "--key-id", &id]);
        assert_eq!(pk["KeySpec"], "ECC_NIST_P256");
        assert_eq!(pk["KeyUsage"], "SIGN_VERIFY");
        assert_eq!(b64(&pk["PublicKey"]).len(), 91, "DER SPKI of a P-256 key");
        let msg = cli.fileb("msg", b"signed by the aws-cli");
        let sig = cli.ok(&[
            "sign",
            "--key-id",
            &id,
            "--message",
            &msg,
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ]);
        let sig = cli.fileb("sig", &b64(&sig["Signature"]));
        let v = cli.ok(&[
            "verify",
            "--key-id",
            &id,
            "--message",
            &msg,
            "--signature",
            &sig,
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ]);
        assert_eq!(v["SignatureValid"], true);
        let other = cli.fileb("other", b"not what was signed");
        cli.fails_as(
            ALICE,
            &[
                "verify",
                "--key-id",
                &id,
                "--message",
                &other,
                "--signature",
                &sig,
                "--signing-algorithm",
                "ECDSA_SHA_256",
            ],
            "KMSInvalidSignatureException",
        );
    })
    .await
    .unwrap();
}
