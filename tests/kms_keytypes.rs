//! KMS keys beyond AES through the JSON API (aws-sdk-kms against an in-process server):
//! RSA, ECC and HMAC key specs, Sign/Verify, GetPublicKey, RSA-OAEP Encrypt/Decrypt,
//! GenerateMac/VerifyMac and GenerateDataKeyPair — cross-checked with the `openssl`
//! CLI (it verifies KMS signatures against the GetPublicKey DER, encrypts to KMS RSA
//! public keys, and signs with data key pairs). The openssl binary is taken from
//! SEALGATE_TEST_OPENSSL (default `openssl` on PATH; scripts/setup.sh installs it); if
//! it cannot be run the tests fail rather than skip.

// CreateKey's deprecated `CustomerMasterKeySpec` alias is part of what is tested.
#![allow(deprecated)]

mod kms_support;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, EncryptionAlgorithmSpec, KeySpec, KeyUsageType, MacAlgorithmSpec, MessageType,
    SigningAlgorithmSpec,
};
use kms_support::tools::{Openssl, s};
use kms_support::{Server, sdk_client, sdk_client_as, start};

/// The AWS error code of a failed SDK call.
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    r: Result<T, aws_sdk_kms::error::SdkError<E, R>>,
) -> String {
    let e = r.unwrap_err();
    e.as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_else(|| panic!("not a service error: {e:?}"))
        .to_string()
}

async fn key(c: &Client, spec: KeySpec, usage: KeyUsageType) -> String {
    c.create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

/// A Sign request (callers add `message_type` and `dry_run` as needed).
fn sign_req(
    c: &Client,
    id: &str,
    msg: impl Into<Vec<u8>>,
    alg: SigningAlgorithmSpec,
) -> aws_sdk_kms::operation::sign::builders::SignFluentBuilder {
    c.sign()
        .key_id(id)
        .message(Blob::new(msg))
        .signing_algorithm(alg)
}

async fn public_key(c: &Client, id: &str) -> Vec<u8> {
    c.get_public_key()
        .key_id(id)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap()
        .into_inner()
}

const PSS: &[&str] = &["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"];

#[tokio::test]
async fn sdk_creates_every_key_spec_and_describes_it_as_aws() {
    let srv = start().await;
    let c = sdk_client(&srv.url);
    let cases = [
        (KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt),
        (KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt),
        (KeySpec::Rsa3072, KeyUsageType::SignVerify),
        (KeySpec::EccNistP256, KeyUsageType::SignVerify),
        (KeySpec::EccNistP384, KeyUsageType::SignVerify),
        (KeySpec::EccNistP521, KeyUsageType::SignVerify),
        (KeySpec::EccSecgP256K1, KeyUsageType::SignVerify),
        (KeySpec::Hmac224, KeyUsageType::GenerateVerifyMac),
        (KeySpec::Hmac512, KeyUsageType::GenerateVerifyMac),
    ];
    for (spec, usage) in cases {
        let id = key(&c, spec.clone(), usage.clone()).await;
        let md = c
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(md.key_spec, Some(spec.clone()));
        assert_eq!(md.key_usage, Some(usage.clone()));
        assert_eq!(
            md.customer_master_key_spec.as_ref().map(|s| s.as_str()),
            Some(spec.as_str())
        );
        let enc = md.encryption_algorithms.unwrap_or_default();
        let sig = md.signing_algorithms.unwrap_or_default();
        let mac = md.mac_algorithms.unwrap_or_default();
        match usage {
            KeyUsageType::EncryptDecrypt if spec == KeySpec::SymmetricDefault => {
                assert_eq!(enc, [EncryptionAlgorithmSpec::SymmetricDefault]);
            }
            KeyUsageType::EncryptDecrypt => assert_eq!(
                enc,
                [
                    EncryptionAlgorithmSpec::RsaesOaepSha1,
                    EncryptionAlgorithmSpec::RsaesOaepSha256
                ]
            ),
            KeyUsageType::SignVerify => {
                assert!(
                    enc.is_empty() && !sig.is_empty() && mac.is_empty(),
                    "{spec:?}"
                );
            }
            _ => assert!(enc.is_empty() && sig.is_empty() && mac.len() == 1),
        }
    }
    // The deprecated alias works, but not together with KeySpec.
    let md = c
        .create_key()
        .customer_master_key_spec(aws_sdk_kms::types::CustomerMasterKeySpec::EccNistP384)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(md.key_spec, Some(KeySpec::EccNistP384));
    let both = c
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .customer_master_key_spec(aws_sdk_kms::types::CustomerMasterKeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    assert_eq!(code(both), "ValidationException");
    for (spec, usage) in [
        (KeySpec::EccNistP256, None),
        (KeySpec::EccNistP256, Some(KeyUsageType::EncryptDecrypt)),
        (KeySpec::Hmac256, None),
        (KeySpec::Rsa2048, Some(KeyUsageType::GenerateVerifyMac)),
    ] {
        let r = c
            .create_key()
            .key_spec(spec)
            .set_key_usage(usage)
            .send()
            .await;
        assert_eq!(code(r), "ValidationException");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_verifies_kms_signatures_against_the_get_public_key_der() {
    let srv = start().await;
    let c = sdk_client(&srv.url);
    let ssl = Openssl::new();
    use SigningAlgorithmSpec as A;
    let cases: &[(KeySpec, A, &str, &[&str])] = &[
        (KeySpec::Rsa2048, A::RsassaPkcs1V15Sha256, "-sha256", &[]),
        (KeySpec::Rsa2048, A::RsassaPssSha256, "-sha256", PSS),
        (KeySpec::Rsa3072, A::RsassaPssSha384, "-sha384", PSS),
        (KeySpec::Rsa4096, A::RsassaPkcs1V15Sha512, "-sha512", &[]),
        (KeySpec::EccNistP256, A::EcdsaSha256, "-sha256", &[]),
        (KeySpec::EccNistP384, A::EcdsaSha384, "-sha384", &[]),
        (KeySpec::EccNistP521, A::EcdsaSha512, "-sha512", &[]),
        (KeySpec::EccSecgP256K1, A::EcdsaSha256, "-sha256", &[]),
    ];
    let msg = b"a message signed inside sealgate's KMS";
    for (spec, alg, hash, opts) in cases {
        let id = key(&c, spec.clone(), KeyUsageType::SignVerify).await;
        let pem = ssl.public_pem(&id, &public_key(&c, &id).await);
        let sig = sign_req(&c, &id, msg.to_vec(), alg.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(sig.signing_algorithm.as_ref(), Some(alg));
        let sig = sig.signature.unwrap().into_inner();
        assert!(
            ssl.verifies(&pem, hash, msg, &sig, opts),
            "{spec:?} {alg:?}"
        );
        assert!(!ssl.verifies(&pem, hash, b"another message", &sig, opts));

        // DIGEST: KMS signs a digest openssl computed; openssl verifies the message.
        let digest_out = ssl.ok(&[
            "dgst",
            hash,
            "-binary",
            "-out",
            "d.bin",
            s(&ssl.file("m.bin", msg)),
        ]);
        assert!(digest_out.is_empty());
        let digest = std::fs::read(ssl.path("d.bin")).unwrap();
        let dsig = sign_req(&c, &id, digest.clone(), alg.clone())
            .message_type(MessageType::Digest)
            .send()
            .await
            .unwrap()
            .signature
            .unwrap()
            .into_inner();
        assert!(
            ssl.verifies(&pem, hash, msg, &dsig, opts),
            "{spec:?} DIGEST"
        );
        // And KMS Verify accepts both forms.
        for (m, ty, sg) in [
            (msg.to_vec(), MessageType::Raw, &dsig),
            (digest, MessageType::Digest, &sig),
        ] {
            let v = c
                .verify()
                .key_id(&id)
                .message(Blob::new(m))
                .message_type(ty)
                .signature(Blob::new(sg.clone()))
                .signing_algorithm(alg.clone())
                .send()
                .await
                .unwrap();
            assert!(v.signature_valid);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_encrypts_to_a_kms_rsa_public_key_and_kms_decrypts() {
    let srv = start().await;
    let c = sdk_client(&srv.url);
    let ssl = Openssl::new();
    let id = key(&c, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let pem = ssl.public_pem("rsa", &public_key(&c, &id).await);
    for (md, alg, max) in [
        ("sha256", EncryptionAlgorithmSpec::RsaesOaepSha256, 190),
        ("sha1", EncryptionAlgorithmSpec::RsaesOaepSha1, 214),
    ] {
        let pt = vec![0xa5u8; max];
        let pt_file = ssl.file("pt.bin", &pt);
        let ct_file = ssl.path("ct.bin");
        ssl.ok(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            s(&pem),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
            "-in",
            s(&pt_file),
            "-out",
            s(&ct_file),
        ]);
        let ct = std::fs::read(&ct_file).unwrap();
        assert_eq!(ct.len(), 256);
        let d = c
            .decrypt()
            .key_id(&id)
            .ciphertext_blob(Blob::new(ct.clone()))
            .encryption_algorithm(alg.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(d.plaintext.unwrap().into_inner(), pt);
        assert_eq!(d.encryption_algorithm, Some(alg.clone()));
        // Without the key id or with the default algorithm it cannot be decrypted.
        let no_key = c
            .decrypt()
            .ciphertext_blob(Blob::new(ct.clone()))
            .encryption_algorithm(alg.clone())
            .send()
            .await;
        assert_eq!(code(no_key), "ValidationException");
        let symmetric = c
            .decrypt()
            .key_id(&id)
            .ciphertext_blob(Blob::new(ct))
            .send()
            .await;
        assert_eq!(code(symmetric), "InvalidKeyUsageException");

        // KMS Encrypt: raw OAEP ciphertext; AWS's size limit; no encryption context.
        let enc = c
            .encrypt()
            .key_id(&id)
            .plaintext(Blob::new(pt.clone()))
            .encryption_algorithm(alg.clone())
            .send()
            .await
            .unwrap();
        let blob = enc.ciphertext_blob.unwrap();
        assert_eq!(blob.as_ref().len(), 256);
        let back = c
            .decrypt()
            .key_id(&id)
            .ciphertext_blob(blob)
            .encryption_algorithm(alg.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(back.plaintext.unwrap().into_inner(), pt);
        let too_big = c
            .encrypt()
            .key_id(&id)
            .plaintext(Blob::new(vec![1; max + 1]))
            .encryption_algorithm(alg.clone())
            .send()
            .await;
        assert_eq!(code(too_big), "ValidationException");
        let with_ctx = c
            .encrypt()
            .key_id(&id)
            .plaintext(Blob::new(b"x".to_vec()))
            .encryption_algorithm(alg.clone())
            .encryption_context("k", "v")
            .send()
            .await;
        assert_eq!(code(with_ctx), "ValidationException");
    }
    let default_alg = c
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(default_alg), "InvalidKeyUsageException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_data_key_pair_private_key_decrypts_and_matches_its_public_key() {
    let srv = start().await;
    let c = sdk_client(&srv.url);
    let ssl = Openssl::new();
    let cmk = c
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    for (spec, hash) in [
        (DataKeyPairSpec::Rsa2048, "-sha256"),
        (DataKeyPairSpec::EccNistP256, "-sha256"),
        (DataKeyPairSpec::EccSecgP256K1, "-sha256"),
    ] {
        let pair = c
            .generate_data_key_pair()
            .key_id(&cmk)
            .key_pair_spec(spec.clone())
            .encryption_context("purpose", "pair")
            .send()
            .await
            .unwrap();
        assert_eq!(pair.key_pair_spec, Some(spec.clone()));
        let private = pair.private_key_plaintext.unwrap().into_inner();
        let public = pair.public_key.unwrap().into_inner();
        // The wrapped private key is an ordinary KMS ciphertext bound to the context.
        let blob = pair.private_key_ciphertext_blob.unwrap();
        let d = c
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("purpose", "pair")
            .send()
            .await
            .unwrap();
        assert_eq!(d.plaintext.unwrap().into_inner(), private);
        let wrong = c.decrypt().ciphertext_blob(blob).send().await;
        assert_eq!(code(wrong), "InvalidCiphertextException");
        // openssl signs with the PKCS#8 private key and verifies with the SPKI public key.
        let key_pem = ssl.private_pem("priv", &private);
        let pem = ssl.public_pem("pub", &public);
        let m = ssl.file("m.bin", b"signed with a data key pair");
        ssl.ok(&["dgst", hash, "-sign", s(&key_pem), "-out", "sig.bin", s(&m)]);
        let sig = std::fs::read(ssl.path("sig.bin")).unwrap();
        assert!(ssl.verifies(&pem, hash, b"signed with a data key pair", &sig, &[]));
    }
    // Ed25519 data key pairs (2025): openssl reads the PKCS#8 private key, derives the
    // same SPKI public key from it, and its signatures verify with that public key.
    let pair = c
        .generate_data_key_pair()
        .key_id(&cmk)
        .key_pair_spec(DataKeyPairSpec::from("ECC_NIST_EDWARDS25519"))
        .send()
        .await
        .unwrap();
    let private_der = pair.private_key_plaintext.unwrap().into_inner();
    let public = pair.public_key.unwrap().into_inner();
    let key_pem = ssl.private_pem("ed", &private_der);
    let derived = ssl.path("ed-pub.der");
    ssl.ok(&[
        "pkey",
        "-in",
        s(&key_pem),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        s(&derived),
    ]);
    assert_eq!(std::fs::read(&derived).unwrap(), public);
    let m = ssl.file("m.bin", b"an Ed25519 data key");
    ssl.ok(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        s(&key_pem),
        "-rawin",
        "-in",
        s(&m),
        "-out",
        "ed.sig",
    ]);
    let sig = std::fs::read(ssl.path("ed.sig")).unwrap();
    let pem = ssl.public_pem("edpub", &public);
    assert!(ssl.verifies_raw(&pem, b"an Ed25519 data key", &sig));
    let without = c
        .generate_data_key_pair_without_plaintext()
        .key_id(&cmk)
        .key_pair_spec(DataKeyPairSpec::EccNistP384)
        .send()
        .await
        .unwrap();
    assert!(without.public_key.is_some());
    let d = c
        .decrypt()
        .ciphertext_blob(without.private_key_ciphertext_blob.unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        d.plaintext.unwrap().as_ref().len() > 100,
        "a PKCS#8 P-384 key"
    );
    // The wrapping key must be a symmetric encryption key.
    let rsa = key(&c, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let r = c
        .generate_data_key_pair()
        .key_id(&rsa)
        .key_pair_spec(DataKeyPairSpec::Rsa2048)
        .send()
        .await;
    assert_eq!(code(r), "InvalidKeyUsageException");
}

#[tokio::test]
async fn hmac_keys_generate_and_verify_macs() {
    let srv = start().await;
    let c = sdk_client(&srv.url);
    for (spec, alg, len) in [
        (KeySpec::Hmac224, MacAlgorithmSpec::HmacSha224, 28),
        (KeySpec::Hmac256, MacAlgorithmSpec::HmacSha256, 32),
        (KeySpec::Hmac384, MacAlgorithmSpec::HmacSha384, 48),
        (KeySpec::Hmac512, MacAlgorithmSpec::HmacSha512, 64),
    ] {
        let id = key(&c, spec, KeyUsageType::GenerateVerifyMac).await;
        let mac = c
            .generate_mac()
            .key_id(&id)
            .message(Blob::new(b"token".to_vec()))
            .mac_algorithm(alg.clone())
            .send()
            .await
            .unwrap()
            .mac
            .unwrap();
        assert_eq!(mac.as_ref().len(), len);
        let ok = c
            .verify_mac()
            .key_id(&id)
            .message(Blob::new(b"token".to_vec()))
            .mac(mac.clone())
            .mac_algorithm(alg.clone())
            .send()
            .await
            .unwrap();
        assert!(ok.mac_valid);
        let bad = c
            .verify_mac()
            .key_id(&id)
            .message(Blob::new(b"tokeN".to_vec()))
            .mac(mac)
            .mac_algorithm(alg)
            .send()
            .await;
        assert_eq!(code(bad), "KMSInvalidMacException");
    }
    let id = key(&c, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let wrong_alg = c
        .generate_mac()
        .key_id(&id)
        .message(Blob::new(b"m".to_vec()))
        .mac_algorithm(MacAlgorithmSpec::HmacSha512)
        .send()
        .await;
    assert_eq!(code(wrong_alg), "InvalidKeyUsageException");
    let gdk = c
        .generate_data_key()
        .key_id(&id)
        .number_of_bytes(32)
        .send()
        .await;
    assert_eq!(code(gdk), "InvalidKeyUsageException");
    let pk = c.get_public_key().key_id(&id).send().await;
    assert_eq!(code(pk), "UnsupportedOperationException");
    let rot = c.enable_key_rotation().key_id(&id).send().await;
    assert_eq!(code(rot), "UnsupportedOperationException");
}

#[tokio::test]
async fn bad_sign_and_verify_input_gets_aws_exceptions_not_500() {
    let srv = start().await;
    let c = sdk_client(&srv.url);
    let id = key(&c, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let enc_key = key(&c, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let sig = sign_req(&c, &id, b"m".to_vec(), SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap()
        .signature
        .unwrap();
    let mut tampered = sig.clone().into_inner();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    let bad = c
        .verify()
        .key_id(&id)
        .message(Blob::new(b"m".to_vec()))
        .signature(Blob::new(tampered))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await;
    assert_eq!(code(bad), "KMSInvalidSignatureException");
    let short_digest = sign_req(&c, &id, vec![0; 20], SigningAlgorithmSpec::EcdsaSha256)
        .message_type(MessageType::Digest)
        .send()
        .await;
    assert_eq!(code(short_digest), "ValidationException");
    let other_curve = sign_req(&c, &id, b"m".to_vec(), SigningAlgorithmSpec::EcdsaSha384)
        .send()
        .await;
    assert_eq!(code(other_curve), "InvalidKeyUsageException");
    let enc_usage = sign_req(
        &c,
        &enc_key,
        b"m".to_vec(),
        SigningAlgorithmSpec::RsassaPssSha256,
    )
    .send()
    .await;
    assert_eq!(code(enc_usage), "InvalidKeyUsageException");

    let body = |extra: &str| format!(r#"{{"KeyId":"{id}",{extra}}}"#);
    let cases = [
        (
            "Sign",
            body(r#""Message":"%%%","SigningAlgorithm":"ECDSA_SHA_256""#),
            "SerializationException",
        ),
        (
            "Sign",
            body(r#""Message":"bQ==","SigningAlgorithm":"ECDSA_MD5""#),
            "ValidationException",
        ),
        ("Sign", body(r#""Message":"bQ==""#), "ValidationException"),
        (
            "Sign",
            body(r#""Message":"bQ==","SigningAlgorithm":"ECDSA_SHA_256","MessageType":"HASH""#),
            "ValidationException",
        ),
        (
            "Sign",
            body(&format!(
                r#""Message":"{}","SigningAlgorithm":"ECDSA_SHA_256""#,
                kms_support_b64(&[7; 4097])
            )),
            "ValidationException",
        ),
        (
            "Verify",
            body(r#""Message":"bQ==","SigningAlgorithm":"ECDSA_SHA_256""#),
            "ValidationException",
        ),
        (
            "Verify",
            body(r#""Message":"bQ==","Signature":"!!","SigningAlgorithm":"ECDSA_SHA_256""#),
            "SerializationException",
        ),
        (
            "GenerateMac",
            body(r#""Message":"bQ==","MacAlgorithm":"HMAC_SHA_256""#),
            "InvalidKeyUsageException",
        ),
        (
            "GenerateMac",
            body(r#""Message":"bQ==","MacAlgorithm":"HMAC_MD5""#),
            "ValidationException",
        ),
        (
            "GenerateDataKeyPair",
            body(r#""KeyPairSpec":"RSA_1024""#),
            "ValidationException",
        ),
        (
            "CreateKey",
            r#"{"KeySpec":"RSA_1024"}"#.to_string(),
            "ValidationException",
        ),
        (
            "CreateKey",
            r#"{"KeySpec":"ECC_NIST_P256","KeyUsage":"FLY"}"#.to_string(),
            "ValidationException",
        ),
        (
            "Encrypt",
            body(r#""Plaintext":"bQ==","EncryptionAlgorithm":"ROT13""#),
            "ValidationException",
        ),
    ];
    for (op, body, want) in cases {
        let (status, v) =
            kms_support::raw_call(&srv.url, &format!("TrentService.{op}"), &body).await;
        assert_eq!(
            (status, v["__type"].as_str()),
            (400, Some(want)),
            "{op} {body}"
        );
    }
}

fn kms_support_b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn grants_dry_run_and_audit_cover_the_new_operations() {
    let srv: Server = start().await;
    let c = sdk_client(&srv.url);
    let bob = sdk_client_as(
        &srv.url,
        kms_support::BOB_ACCESS_KEY,
        kms_support::BOB_SECRET,
    );
    // The key policy allows alice (the account root) only; bob needs a grant.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::000000000000:root"}}}]}"#;
    let id = c
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .policy(policy)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let sign = |cl: &Client| {
        cl.sign()
            .key_id(&id)
            .message(Blob::new(b"grant me".to_vec()))
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
    };
    assert_eq!(code(sign(&bob).await), "AccessDeniedException");
    c.create_grant()
        .key_id(&id)
        .grantee_principal("arn:aws:iam::000000000000:user/bob")
        .operations(aws_sdk_kms::types::GrantOperation::Sign)
        .operations(aws_sdk_kms::types::GrantOperation::GetPublicKey)
        .send()
        .await
        .unwrap();
    let sig = sign(&bob).await.unwrap().signature.unwrap();
    bob.get_public_key().key_id(&id).send().await.unwrap();
    let verify = bob
        .verify()
        .key_id(&id)
        .message(Blob::new(b"grant me".to_vec()))
        .signature(sig.clone())
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await;
    assert_eq!(
        code(verify),
        "AccessDeniedException",
        "the grant has no Verify"
    );
    let dry = sign_req(&c, &id, b"m".to_vec(), SigningAlgorithmSpec::EcdsaSha256)
        .dry_run(true)
        .send()
        .await;
    assert_eq!(code(dry), "DryRunOperationException");

    // The API audit log names the operations but never holds messages or signatures.
    srv.kms.flush_audit().unwrap();
    let log = std::fs::read_to_string(srv.kms.audit_log_path().unwrap()).unwrap();
    assert!(log.contains(r#""eventName":"Sign""#));
    assert!(log.contains(r#""signingAlgorithm":"ECDSA_SHA_256""#));
    assert!(!log.contains(&kms_support_b64(sig.as_ref())));
    assert!(!log.contains(&kms_support_b64(b"grant me")));
}
