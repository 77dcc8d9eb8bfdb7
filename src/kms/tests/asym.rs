//! Behavioural tests of RSA, ECC and HMAC keys through `Kms`: creation rules, the
//! key-usage gate, persistence of sealed non-AES material, old records, and the audit
//! log of in-process calls.

use super::{Fixture, SYM, alice, assert_err, ctx, fixture, new_key};
use crate::kms::*;

fn create(f: &Fixture, spec: KeySpec, usage: KeyUsageType) -> String {
    let opts = CreateKeyOptions {
        key_spec: spec,
        key_usage: usage,
        ..Default::default()
    };
    f.kms.create_key(alice(), &opts).unwrap().key_id
}

#[test]
fn invalid_spec_usage_combinations_are_validation_errors() {
    let f = fixture();
    for (spec, usage) in [
        (KeySpec::EccNistP256, KeyUsageType::EncryptDecrypt),
        (KeySpec::Hmac256, KeyUsageType::EncryptDecrypt),
        (KeySpec::SymmetricDefault, KeyUsageType::SignVerify),
        (KeySpec::Rsa2048, KeyUsageType::GenerateVerifyMac),
    ] {
        let opts = CreateKeyOptions {
            key_spec: spec,
            key_usage: usage,
            ..Default::default()
        };
        assert_err(f.kms.create_key(alice(), &opts), "ValidationException");
    }
    let external_rsa = CreateKeyOptions {
        key_spec: KeySpec::Rsa2048,
        external: true,
        ..Default::default()
    };
    assert_err(
        f.kms.create_key(alice(), &external_rsa),
        "UnsupportedOperationException",
    );
}

#[test]
fn metadata_lists_the_algorithms_of_the_spec_and_usage() {
    let f = fixture();
    let rsa = create(&f, KeySpec::Rsa2048, KeyUsageType::SignVerify);
    let md = serde_json::to_value(f.kms.describe_key(alice(), &rsa).unwrap()).unwrap();
    assert_eq!(md["KeySpec"], "RSA_2048");
    assert_eq!(md["CustomerMasterKeySpec"], "RSA_2048");
    assert_eq!(md["KeyUsage"], "SIGN_VERIFY");
    assert_eq!(md["SigningAlgorithms"].as_array().unwrap().len(), 6);
    assert!(md.get("EncryptionAlgorithms").is_none());
    let hmac = create(&f, KeySpec::Hmac384, KeyUsageType::GenerateVerifyMac);
    let md = serde_json::to_value(f.kms.describe_key(alice(), &hmac).unwrap()).unwrap();
    assert_eq!(md["MacAlgorithms"], serde_json::json!(["HMAC_SHA_384"]));
    assert_eq!(md["KeyUsage"], "GENERATE_VERIFY_MAC");
    let aes = new_key(&f);
    let md = serde_json::to_value(f.kms.describe_key(alice(), &aes).unwrap()).unwrap();
    assert_eq!(
        md["EncryptionAlgorithms"],
        serde_json::json!(["SYMMETRIC_DEFAULT"])
    );
    assert!(md.get("SigningAlgorithms").is_none() && md.get("MacAlgorithms").is_none());
}

#[test]
fn operations_on_keys_of_the_wrong_usage_are_invalid_key_usage() {
    let f = fixture();
    let a = alice();
    let hmac = create(&f, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac);
    let ecc = create(&f, KeySpec::EccNistP256, KeyUsageType::SignVerify);
    let rsa_enc = create(&f, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt);
    let aes = new_key(&f);
    let none = ctx(&[]);
    let usage = "InvalidKeyUsageException";
    assert_err(f.kms.generate_data_key(a, &hmac, &none, 32), usage);
    assert_err(f.kms.generate_data_key(a, &rsa_enc, &none, 32), usage);
    assert_err(f.kms.encrypt(a, &ecc, b"x", &none, SYM), usage);
    assert_err(f.kms.encrypt(a, &rsa_enc, b"x", &none, SYM), usage);
    let sha256 = SigningAlgorithm::RsassaPssSha256;
    assert_err(
        f.kms.sign(a, &rsa_enc, b"m", MessageType::Raw, sha256),
        usage,
    );
    assert_err(f.kms.sign(a, &aes, b"m", MessageType::Raw, sha256), usage);
    assert_err(
        f.kms.generate_mac(a, &ecc, b"m", MacAlgorithm::HmacSha256),
        usage,
    );
    // An algorithm of another spec.
    assert_err(
        f.kms.sign(
            a,
            &ecc,
            &[0; 48],
            MessageType::Digest,
            SigningAlgorithm::EcdsaSha384,
        ),
        usage,
    );
    assert_err(
        f.kms.generate_mac(a, &hmac, b"m", MacAlgorithm::HmacSha512),
        usage,
    );
    assert_err(
        f.kms
            .generate_data_key_pair(a, &ecc, &none, KeySpec::EccNistP256, true),
        usage,
    );
    // Public keys exist only for asymmetric keys; rotation only for symmetric ones.
    let unsupported = "UnsupportedOperationException";
    assert_err(f.kms.get_public_key(a, &hmac), unsupported);
    assert_err(f.kms.get_public_key(a, &aes), unsupported);
    assert_err(f.kms.enable_key_rotation(a, &ecc, None), unsupported);
    assert_err(f.kms.rotate_key_on_demand(a, &rsa_enc), unsupported);
    assert!(!f.kms.get_key_rotation_status(a, &ecc).unwrap().enabled);
}

#[test]
fn asymmetric_and_hmac_material_survives_reopen() {
    let f = fixture();
    let a = alice();
    let ecc = create(&f, KeySpec::EccSecgP256k1, KeyUsageType::SignVerify);
    let rsa = create(&f, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt);
    let hmac = create(&f, KeySpec::Hmac224, KeyUsageType::GenerateVerifyMac);
    let alg = SigningAlgorithm::EcdsaSha256;
    let (sig, _) = f.kms.sign(a, &ecc, b"m", MessageType::Raw, alg).unwrap();
    let public = f.kms.get_public_key(a, &ecc).unwrap().public_key;
    let oaep = EncryptionAlgorithm::RsaesOaepSha256;
    let none = ctx(&[]);
    let (ct, _) = f.kms.encrypt(a, &rsa, b"secret", &none, oaep).unwrap();
    assert_eq!(ct.len(), 256, "raw RSA-OAEP ciphertext, as AWS returns it");
    let (mac, _) = f
        .kms
        .generate_mac(a, &hmac, b"m", MacAlgorithm::HmacSha224)
        .unwrap();
    assert_eq!(mac.len(), 28);

    let f = f.reopen();
    f.kms
        .verify(a, &ecc, b"m", MessageType::Raw, &sig, alg)
        .unwrap();
    assert_eq!(f.kms.get_public_key(a, &ecc).unwrap().public_key, public);
    let d = f.kms.decrypt(a, Some(&rsa), &ct, &none, oaep).unwrap();
    assert_eq!(&d.plaintext[..], b"secret");
    f.kms
        .verify_mac(a, &hmac, b"m", &mac, MacAlgorithm::HmacSha224)
        .unwrap();
    assert_err(
        f.kms
            .verify_mac(a, &hmac, b"M", &mac, MacAlgorithm::HmacSha224),
        "KMSInvalidMacException",
    );
    assert_err(
        f.kms.verify(a, &ecc, b"M", MessageType::Raw, &sig, alg),
        "KMSInvalidSignatureException",
    );
}

#[test]
fn records_without_key_spec_fields_are_symmetric_keys() {
    let old = serde_json::json!({
        "id": "11111111-2222-4333-8444-555555555555",
        "created_ms": 0,
        "description": "",
        "state": "Enabled",
        "manager": "Customer",
        "origin": "AwsKms",
        "tags": {},
        "deletion_ms": null,
        "pending_window_days": null,
        "rotation_period_days": null,
        "next_rotation_ms": null,
        "versions": [{"version": 1, "created_ms": 0, "kind": "Initial"}],
    });
    let rec: KeyRecord = serde_json::from_value(old).unwrap();
    assert_eq!(rec.key_spec, KeySpec::SymmetricDefault);
    assert_eq!(rec.key_usage, KeyUsageType::EncryptDecrypt);
    let written = serde_json::to_value(&rec).unwrap();
    assert_eq!(written["key_spec"], "SYMMETRIC_DEFAULT");
    assert_eq!(written["key_usage"], "ENCRYPT_DECRYPT");
}

#[test]
fn rsa_decrypt_needs_key_id_algorithm_and_no_context() {
    let f = fixture();
    let a = alice();
    let rsa = create(&f, KeySpec::Rsa3072, KeyUsageType::EncryptDecrypt);
    let sha1 = EncryptionAlgorithm::RsaesOaepSha1;
    let none = ctx(&[]);
    let with_ctx = ctx(&[("k", "v")]);
    assert_err(
        f.kms.encrypt(a, &rsa, b"x", &with_ctx, sha1),
        "ValidationException",
    );
    assert_err(
        f.kms.encrypt(a, &rsa, &[1; 343], &none, sha1),
        "ValidationException",
    );
    let (ct, _) = f.kms.encrypt(a, &rsa, &[1; 342], &none, sha1).unwrap();
    assert_err(
        f.kms.decrypt(a, None, &ct, &none, sha1),
        "ValidationException",
    );
    assert_err(
        f.kms.decrypt(a, Some(&rsa), &ct, &none, SYM),
        "InvalidKeyUsageException",
    );
    let aes = new_key(&f);
    assert_err(
        f.kms.encrypt(a, &aes, b"x", &none, sha1),
        "InvalidKeyUsageException",
    );
    // ReEncrypt from the RSA key into a symmetric one and back out.
    let p = ReEncryptParams {
        ciphertext: &ct,
        source_key_id: Some(&rsa),
        source_context: &none,
        source_algorithm: sha1,
        destination_key_id: &aes,
        destination_context: &with_ctx,
        destination_algorithm: SYM,
    };
    let (blob, src, dst) = f.kms.re_encrypt(a, &p).unwrap();
    assert!(src.ends_with(&rsa) && dst.ends_with(&aes));
    let d = f.kms.decrypt(a, None, &blob, &with_ctx, SYM).unwrap();
    assert_eq!(&d.plaintext[..], &[1; 342][..]);
}

#[test]
fn in_process_calls_are_audited_without_messages_signatures_or_keys() {
    let f = fixture();
    let a = alice();
    let ecc = create(&f, KeySpec::EccNistP384, KeyUsageType::SignVerify);
    let aes = new_key(&f);
    let msg = b"audit-me-not-0123456789";
    let (sig, _) = f
        .kms
        .sign(
            a,
            &ecc,
            msg,
            MessageType::Raw,
            SigningAlgorithm::EcdsaSha384,
        )
        .unwrap();
    let pair = f
        .kms
        .generate_data_key_pair(a, &aes, &ctx(&[]), KeySpec::EccNistP256, true)
        .unwrap();
    f.kms.flush_audit().unwrap();
    let log = std::fs::read_to_string(f.kms.audit_log_path().unwrap()).unwrap();
    assert!(log.contains("\"eventName\":\"Sign\""));
    assert!(log.contains("\"signingAlgorithm\":\"ECDSA_SHA_384\""));
    assert!(log.contains("\"eventName\":\"GenerateDataKeyPair\""));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let private = pair.private_key_plaintext.as_ref().unwrap();
    for secret in [
        &msg[..],
        &sig[..],
        &private[..],
        &pair.private_key_ciphertext_blob[..],
    ] {
        assert!(!log.contains(&hex::encode(secret)));
        assert!(!log.contains(&b64.encode(secret)));
    }
    assert!(!log.contains("audit-me-not"));
}
