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

impl Cli {
    /// Runs `aws kms <args>`; returns (success, parsed stdout or Null, stderr).
    fn kms(&self, args: &[&str]) -> (bool, serde_json::Value, String) {
        let out = Command::new(&self.bin)
            .arg("kms")
            .args(args)
            .args(["--endpoint-url", &self.url, "--region", kms_support::REGION])
            .args(["--output", "json"])
            .env("AWS_ACCESS_KEY_ID", kms_support::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", kms_support::SECRET)
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
        let (ok, v, err) = self.kms(args);
        assert!(ok, "aws kms {args:?} failed: {err}");
        v
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_manages_keys_and_round_trips_data() {
    let server = kms_support::start().await;
    let cli = Cli {
        bin: std::env::var("SEALGATE_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into()),
        url: server.url.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
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
