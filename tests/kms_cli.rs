//! The KMS API driven by the real aws-cli (`aws kms ... --endpoint-url`). The binary is
//! taken from SEALGATE_TEST_AWS_CLI (default: `aws` on PATH); if it cannot be run the
//! test fails rather than skips, so CI notices a missing client.

mod kms_support;

use kms_support::{ALICE, BOB, cli_for};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

fn b64(v: &serde_json::Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string")).unwrap()
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
