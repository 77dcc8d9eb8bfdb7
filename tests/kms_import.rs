//! Importing key material (BYOK) the way AWS's documentation walks a user through it:
//! `aws kms get-parameters-for-import`, wrapping with **openssl** (`pkeyutl` RSA-OAEP
//! and `enc -id-aes256-wrap-pad` for RSA_AES_KEY_WRAP_SHA_256), `aws kms
//! import-key-material`; plus the error cases and expiry through aws-sdk-kms.

mod kms_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{AlgorithmSpec, ExpirationModelType, KeyState, OriginType};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kms_support::{Cli, cli_for, code, sdk_client, start};

fn b64(v: &serde_json::Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string")).unwrap()
}

/// Runs openssl in `dir`; fails the test (not skips) when it is missing.
#[track_caller]
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); scripts/setup.sh installs it"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `aws kms get-parameters-for-import`, saving WrappingPublicKey.bin (DER) and
/// ImportToken.bin as the AWS guide does.
fn get_parameters(cli: &Cli, key_id: &str, alg: &str, spec: &str) -> serde_json::Value {
    let p = cli.ok(&[
        "get-parameters-for-import",
        "--key-id",
        key_id,
        "--wrapping-algorithm",
        alg,
        "--wrapping-key-spec",
        spec,
    ]);
    cli.file("WrappingPublicKey.bin", &b64(&p["PublicKey"]));
    cli.file("ImportToken.bin", &b64(&p["ImportToken"]));
    p
}

/// `openssl pkeyutl` RSA-OAEP-SHA-256 encryption of `input` under the wrapping key.
fn rsa_oaep_sha256(dir: &Path, input: &str, output: &str) {
    openssl(
        dir,
        &[
            "pkeyutl",
            "-encrypt",
            "-in",
            input,
            "-out",
            output,
            "-inkey",
            "WrappingPublicKey.bin",
            "-keyform",
            "DER",
            "-pubin",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ],
    );
}

/// RSAES_OAEP_SHA_256: the material itself is encrypted with the public key.
fn wrap_oaep_sha256(cli: &Cli) {
    let dir = cli.dir.path();
    rsa_oaep_sha256(dir, "PlaintextKeyMaterial.bin", "EncryptedKeyMaterial.bin");
}

/// RSA_AES_KEY_WRAP_SHA_256: a fresh AES-256 key wraps the material (AES-KWP), RSA-OAEP
/// wraps the AES key, and the two are concatenated.
fn wrap_rsa_aes_key_wrap_sha256(cli: &Cli) {
    let dir = cli.dir.path();
    openssl(dir, &["rand", "-out", "aes-key.bin", "32"]);
    let aes_hex = hex::encode(std::fs::read(dir.join("aes-key.bin")).unwrap());
    openssl(
        dir,
        &[
            "enc",
            "-id-aes256-wrap-pad",
            "-K",
            &aes_hex,
            "-iv",
            "A65959A6",
            "-in",
            "PlaintextKeyMaterial.bin",
            "-out",
            "key-material-wrapped.bin",
        ],
    );
    rsa_oaep_sha256(dir, "aes-key.bin", "aes-key-wrapped.bin");
    let mut both = std::fs::read(dir.join("aes-key-wrapped.bin")).unwrap();
    both.extend(std::fs::read(dir.join("key-material-wrapped.bin")).unwrap());
    cli.file("EncryptedKeyMaterial.bin", &both);
}

fn import_args<'a>(cli: &'a Cli, key_id: &'a str, extra: &[&'a str]) -> Vec<String> {
    let d = cli.dir.path().display();
    let mut args: Vec<String> = [
        "import-key-material",
        "--key-id",
        key_id,
        "--encrypted-key-material",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("fileb://{d}/EncryptedKeyMaterial.bin"));
    args.push("--import-token".into());
    args.push(format!("fileb://{d}/ImportToken.bin"));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_and_openssl_import_delete_and_reimport_like_the_aws_guide() {
    let server = start().await;
    let cli = cli_for(&server);
    let audit = server.kms.audit_log_path().unwrap().to_path_buf();
    let kms = server.kms.clone();
    tokio::task::spawn_blocking(move || {
        let md = cli.ok(&[
            "create-key",
            "--origin",
            "EXTERNAL",
            "--description",
            "byok",
        ]);
        let id = md["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        assert_eq!(md["KeyMetadata"]["KeyState"], "PendingImport");
        assert_eq!(md["KeyMetadata"]["Origin"], "EXTERNAL");

        // Step 1-3 of the guide: parameters, material, wrapping (RSAES_OAEP_SHA_256).
        let p = get_parameters(&cli, &id, "RSAES_OAEP_SHA_256", "RSA_2048");
        assert!(p["KeyId"].as_str().unwrap().ends_with(&id));
        let valid_to = p["ParametersValidTo"].as_f64().unwrap();
        let now = kms.now().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!((valid_to - now.as_secs_f64() - 86_400.0).abs() < 5.0);
        openssl(
            cli.dir.path(),
            &["rand", "-out", "PlaintextKeyMaterial.bin", "32"],
        );
        let material = std::fs::read(cli.dir.path().join("PlaintextKeyMaterial.bin")).unwrap();
        wrap_oaep_sha256(&cli);
        let wrapped = std::fs::read(cli.dir.path().join("EncryptedKeyMaterial.bin")).unwrap();
        let token = std::fs::read(cli.dir.path().join("ImportToken.bin")).unwrap();

        // Step 4: import.
        let args = import_args(
            &cli,
            &id,
            &["--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE"],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.ok(&args);
        let md = cli.ok(&["describe-key", "--key-id", &id]);
        assert_eq!(md["KeyMetadata"]["KeyState"], "Enabled");
        assert_eq!(
            md["KeyMetadata"]["ExpirationModel"],
            "KEY_MATERIAL_DOES_NOT_EXPIRE"
        );

        let pt = cli.fileb("pt", b"sealed under my own key material");
        let enc = cli.ok(&["encrypt", "--key-id", &id, "--plaintext", &pt]);
        let ct = cli.fileb("ct", &b64(&enc["CiphertextBlob"]));
        let dec = cli.ok(&["decrypt", "--ciphertext-blob", &ct]);
        assert_eq!(b64(&dec["Plaintext"]), b"sealed under my own key material");
        cli.fails(
            &["rotate-key-on-demand", "--key-id", &id],
            "UnsupportedOperationException",
        );

        // Delete: the key waits for its material again, blobs are unusable meanwhile.
        cli.ok(&["delete-imported-key-material", "--key-id", &id]);
        let md = cli.ok(&["describe-key", "--key-id", &id]);
        assert_eq!(md["KeyMetadata"]["KeyState"], "PendingImport");
        cli.fails(
            &["decrypt", "--ciphertext-blob", &ct],
            "KMSInvalidStateException",
        );

        // Re-import the same material, this time with RSA_AES_KEY_WRAP_SHA_256 and an
        // expiry: the old ciphertext opens again.
        get_parameters(&cli, &id, "RSA_AES_KEY_WRAP_SHA_256", "RSA_4096");
        wrap_rsa_aes_key_wrap_sha256(&cli);
        let valid_to = (now.as_secs() + 30 * 86_400).to_string();
        let args = import_args(
            &cli,
            &id,
            &[
                "--expiration-model",
                "KEY_MATERIAL_EXPIRES",
                "--valid-to",
                &valid_to,
            ],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.ok(&args);
        let md = cli.ok(&["describe-key", "--key-id", &id]);
        assert_eq!(md["KeyMetadata"]["KeyState"], "Enabled");
        assert_eq!(md["KeyMetadata"]["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
        assert_eq!(
            md["KeyMetadata"]["ValidTo"].as_f64(),
            Some(valid_to.parse::<f64>().unwrap())
        );
        let dec = cli.ok(&["decrypt", "--ciphertext-blob", &ct]);
        assert_eq!(b64(&dec["Plaintext"]), b"sealed under my own key material");

        // Other material is refused, with AWS's exception.
        cli.ok(&["delete-imported-key-material", "--key-id", &id]);
        get_parameters(&cli, &id, "RSAES_OAEP_SHA_256", "RSA_3072");
        openssl(
            cli.dir.path(),
            &["rand", "-out", "PlaintextKeyMaterial.bin", "32"],
        );
        wrap_oaep_sha256(&cli);
        let args = import_args(
            &cli,
            &id,
            &["--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE"],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.fails(&args, "IncorrectKeyMaterialException");

        // The audit log records the calls but never the material, token or wrapped blob.
        kms.flush_audit().unwrap();
        let log = std::fs::read_to_string(&audit).unwrap();
        for name in [
            "GetParametersForImport",
            "ImportKeyMaterial",
            "DeleteImportedKeyMaterial",
        ] {
            assert!(log.contains(&format!("\"eventName\":\"{name}\"")), "{name}");
        }
        for secret in [&material, &wrapped, &token] {
            assert!(!log.contains(&hex::encode(secret)));
            assert!(!log.contains(&B64.encode(secret)));
            assert!(!log.contains(&B64.encode(&secret[..24])));
        }
    })
    .await
    .unwrap();
}

/// Client-side RSAES_OAEP_SHA_256 wrapping with aws-lc-rs.
fn wrap(public_der: &[u8], material: &[u8]) -> Vec<u8> {
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap()).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    let n = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .unwrap()
        .len();
    out.truncate(n);
    out
}

async fn external_key(c: &aws_sdk_kms::Client) -> String {
    let md = c
        .create_key()
        .origin(OriginType::External)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    md.key_id
}

/// (import token, public key) of a fresh GetParametersForImport.
async fn parameters(c: &aws_sdk_kms::Client, id: &str) -> (Blob, Vec<u8>) {
    let p = c
        .get_parameters_for_import()
        .key_id(id)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap();
    (p.import_token.unwrap(), p.public_key.unwrap().into_inner())
}

#[tokio::test]
async fn sdk_import_errors_have_aws_exception_names() {
    let s = start().await;
    let c = sdk_client(&s.url);
    let (a, b) = (external_key(&c).await, external_key(&c).await);
    let (token_a, public_a) = parameters(&c, &a).await;
    let wrapped = Blob::new(wrap(&public_a, &[7u8; 32]));
    let import = |key: &str, token: Blob, material: Blob| {
        c.import_key_material()
            .key_id(key)
            .import_token(token)
            .encrypted_key_material(material)
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
    };

    let other_key = import(&b, token_a.clone(), wrapped.clone()).await;
    assert_eq!(code(other_key), "InvalidImportTokenException");
    let mut bytes = token_a.clone().into_inner();
    bytes[30] ^= 0x40;
    let tampered = import(&a, Blob::new(bytes), wrapped.clone()).await;
    assert_eq!(code(tampered), "InvalidImportTokenException");
    let garbage = import(&a, token_a.clone(), Blob::new(vec![1u8; 256])).await;
    assert_eq!(code(garbage), "InvalidCiphertextException");
    let no_valid_to = c
        .import_key_material()
        .key_id(&a)
        .import_token(token_a.clone())
        .encrypted_key_material(wrapped.clone())
        .send()
        .await;
    assert_eq!(code(no_valid_to), "ValidationException");

    s.clock.advance(Duration::from_secs(24 * 3600));
    let expired = import(&a, token_a, wrapped).await;
    assert_eq!(code(expired), "ExpiredImportTokenException");

    let aws_key = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let not_external = c
        .get_parameters_for_import()
        .key_id(&aws_key.key_id)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
        .send()
        .await;
    assert_eq!(code(not_external), "UnsupportedOperationException");
    let not_external = c
        .delete_imported_key_material()
        .key_id(&aws_key.key_id)
        .send()
        .await;
    assert_eq!(code(not_external), "UnsupportedOperationException");

    let cases = [
        (
            "TrentService.GetParametersForImport",
            format!(
                r#"{{"KeyId":"{a}","WrappingAlgorithm":"ROT13","WrappingKeySpec":"RSA_2048"}}"#
            ),
            "ValidationException",
        ),
        (
            "TrentService.GetParametersForImport",
            format!(r#"{{"KeyId":"{a}","WrappingKeySpec":"RSA_2048"}}"#),
            "ValidationException",
        ),
        (
            "TrentService.ImportKeyMaterial",
            format!(r#"{{"KeyId":"{a}","EncryptedKeyMaterial":"AAAA"}}"#),
            "ValidationException",
        ),
        (
            "TrentService.ImportKeyMaterial",
            format!(
                r#"{{"KeyId":"{a}","ImportToken":"AAAA","EncryptedKeyMaterial":"AAAA","ValidTo":"soon"}}"#
            ),
            "SerializationException",
        ),
        (
            "TrentService.ImportKeyMaterial",
            format!(
                r#"{{"KeyId":"{a}","ImportToken":"AAAA","EncryptedKeyMaterial":"AAAA","ExpirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"}}"#
            ),
            "InvalidImportTokenException",
        ),
        (
            "TrentService.DeleteImportedKeyMaterial",
            "{}".to_string(),
            "ValidationException",
        ),
    ];
    for (target, body, want) in cases {
        let (status, v) = kms_support::raw_call(&s.url, target, &body).await;
        assert_eq!(
            (status, v["__type"].as_str()),
            (400, Some(want)),
            "{target} {body}"
        );
    }
}

#[tokio::test]
async fn sdk_imported_material_expires_at_valid_to() {
    let s = start().await;
    let c = sdk_client(&s.url);
    let id = external_key(&c).await;
    let (token, public) = parameters(&c, &id).await;
    let now = s.kms.now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let valid_to = now.as_secs() as i64 + 3 * 86_400;
    c.import_key_material()
        .key_id(&id)
        .import_token(token)
        .encrypted_key_material(Blob::new(wrap(&public, &[9u8; 32])))
        .expiration_model(ExpirationModelType::KeyMaterialExpires)
        .valid_to(DateTime::from_secs(valid_to))
        .send()
        .await
        .unwrap();
    let md = c.describe_key().key_id(&id).send().await.unwrap();
    let md = md.key_metadata.unwrap();
    assert_eq!(md.key_state, Some(KeyState::Enabled));
    assert_eq!(
        md.expiration_model,
        Some(ExpirationModelType::KeyMaterialExpires)
    );
    assert_eq!(md.valid_to.map(|t| t.secs()), Some(valid_to));
    let blob = c
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"until friday".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    s.clock.advance(Duration::from_secs(3 * 86_400));
    s.kms.tick().unwrap();
    let md = c.describe_key().key_id(&id).send().await.unwrap();
    let md = md.key_metadata.unwrap();
    assert_eq!(md.key_state, Some(KeyState::PendingImport));
    assert_eq!(md.valid_to, None);
    let dec = c.decrypt().ciphertext_blob(blob.clone()).send().await;
    assert_eq!(code(dec), "KMSInvalidStateException");

    let (token, public) = parameters(&c, &id).await;
    c.import_key_material()
        .key_id(&id)
        .import_token(token)
        .encrypted_key_material(Blob::new(wrap(&public, &[9u8; 32])))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .unwrap();
    let dec = c.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(dec.plaintext.unwrap().as_ref(), b"until friday");
}
