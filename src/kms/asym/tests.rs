//! Unit tests of the key-spec tables, the algorithm checks and the key material.

use super::*;
use crate::kms::crypto::KEY_LEN;

const SIGNING_SPECS: [KeySpec; 7] = [
    KeySpec::Rsa2048,
    KeySpec::Rsa3072,
    KeySpec::Rsa4096,
    KeySpec::EccNistP256,
    KeySpec::EccNistP384,
    KeySpec::EccNistP521,
    KeySpec::EccSecgP256k1,
];

#[test]
fn spec_usage_table_matches_aws() {
    use KeyUsageType::*;
    for spec in KeySpec::ALL {
        for usage in KeyUsageType::ALL {
            let want = match (spec, usage) {
                (KeySpec::SymmetricDefault, EncryptDecrypt) => true,
                (s, EncryptDecrypt | SignVerify) if s.is_rsa() => true,
                (s, SignVerify) if s.is_ecc() => true,
                (s, GenerateVerifyMac) if s.is_hmac() => true,
                _ => false,
            };
            let got = spec.check_usage(*usage);
            assert_eq!(got.is_ok(), want, "{spec} {usage}");
            if let Err(e) = got {
                assert_eq!(e.aws_type(), "ValidationException");
            }
        }
    }
}

#[test]
fn algorithm_lists_are_those_aws_describes() {
    let names = |v: &[SigningAlgorithm]| v.iter().map(|a| a.as_str()).collect::<Vec<_>>();
    assert_eq!(
        names(KeySpec::Rsa3072.signing_algorithms(KeyUsageType::SignVerify)),
        [
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512"
        ]
    );
    assert_eq!(
        names(KeySpec::EccNistP256.signing_algorithms(KeyUsageType::SignVerify)),
        ["ECDSA_SHA_256"]
    );
    assert_eq!(
        names(KeySpec::EccSecgP256k1.signing_algorithms(KeyUsageType::SignVerify)),
        ["ECDSA_SHA_256"]
    );
    assert_eq!(
        names(KeySpec::EccNistP384.signing_algorithms(KeyUsageType::SignVerify)),
        ["ECDSA_SHA_384"]
    );
    assert_eq!(
        names(KeySpec::EccNistP521.signing_algorithms(KeyUsageType::SignVerify)),
        ["ECDSA_SHA_512"]
    );
    assert!(
        KeySpec::Rsa2048
            .signing_algorithms(KeyUsageType::EncryptDecrypt)
            .is_empty()
    );
    assert_eq!(
        KeySpec::Rsa4096.encryption_algorithms(KeyUsageType::EncryptDecrypt),
        [
            EncryptionAlgorithm::RsaesOaepSha1,
            EncryptionAlgorithm::RsaesOaepSha256
        ]
    );
    assert_eq!(
        KeySpec::SymmetricDefault.encryption_algorithms(KeyUsageType::EncryptDecrypt),
        [EncryptionAlgorithm::SymmetricDefault]
    );
    assert_eq!(
        KeySpec::Hmac224.mac_algorithms(),
        [MacAlgorithm::HmacSha224]
    );
    assert!(KeySpec::Rsa2048.mac_algorithms().is_empty());
}

#[test]
fn names_parse_round_trip_and_unknown_names_are_validation_errors() {
    for s in KeySpec::ALL {
        assert_eq!(KeySpec::parse(s.as_str(), "keySpec").unwrap(), *s);
    }
    for a in SigningAlgorithm::ALL {
        assert_eq!(SigningAlgorithm::parse(a.as_str()).unwrap(), *a);
    }
    assert_eq!(
        KeySpec::parse("RSA_1024", "keySpec")
            .unwrap_err()
            .aws_type(),
        "ValidationException"
    );
    assert_eq!(
        KeySpec::parse("SM2", "keySpec").unwrap_err().aws_type(),
        "UnsupportedOperationException"
    );
    assert_eq!(
        SigningAlgorithm::parse("RSASSA_PSS_MD5")
            .unwrap_err()
            .aws_type(),
        "ValidationException"
    );
    assert_eq!(
        MacAlgorithm::parse("HMAC_SHA_1").unwrap_err().aws_type(),
        "ValidationException"
    );
    assert_eq!(
        EncryptionAlgorithm::parse(None, "encryptionAlgorithm").unwrap(),
        EncryptionAlgorithm::SymmetricDefault
    );
    assert_eq!(MessageType::parse(None).unwrap(), MessageType::Raw);
    assert!(MessageType::parse(Some("HASH")).is_err());
    assert!(parse_key_pair_spec("HMAC_256").is_err());
    assert_eq!(
        parse_key_pair_spec("ECC_SECG_P256K1").unwrap(),
        KeySpec::EccSecgP256k1
    );
    // Stored as the AWS name, so records stay readable as JSON.
    assert_eq!(
        serde_json::to_string(&KeySpec::EccSecgP256k1).unwrap(),
        "\"ECC_SECG_P256K1\""
    );
}

#[test]
fn sign_verify_round_trips_for_every_spec_and_algorithm_raw_and_digest() {
    for spec in SIGNING_SPECS {
        let (m, raw) = KeyMaterial::generate(spec).unwrap();
        // Unsealed bytes rebuild the same key.
        let again = KeyMaterial::from_raw(spec, &raw).unwrap();
        assert_eq!(again.public_key_der(), m.public_key_der());
        for alg in spec.signing_algorithms(KeyUsageType::SignVerify) {
            let msg = b"message to sign";
            let sig = m.sign(*alg, MessageType::Raw, msg).unwrap();
            assert!(
                again.verify(*alg, MessageType::Raw, msg, &sig).unwrap(),
                "{spec} {alg}"
            );
            assert!(!m.verify(*alg, MessageType::Raw, b"other", &sig).unwrap());
            // DIGEST of the same message verifies the RAW signature and vice versa.
            let d = digest::digest(alg.digest(), msg);
            assert!(
                m.verify(*alg, MessageType::Digest, d.as_ref(), &sig)
                    .unwrap()
            );
            let dsig = m.sign(*alg, MessageType::Digest, d.as_ref()).unwrap();
            assert!(
                m.verify(*alg, MessageType::Raw, msg, &dsig).unwrap(),
                "{spec} {alg}"
            );
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(!m.verify(*alg, MessageType::Raw, msg, &bad).unwrap());
            assert!(!m.verify(*alg, MessageType::Raw, msg, &[]).unwrap());
        }
    }
}

#[test]
fn digest_length_must_match_the_algorithm() {
    let sha256 = [7u8; 32];
    check_message(
        &sha256,
        MessageType::Digest,
        Some(SigningAlgorithm::EcdsaSha256),
    )
    .unwrap();
    for (alg, ok_len) in [
        (SigningAlgorithm::EcdsaSha384, 48),
        (SigningAlgorithm::RsassaPssSha512, 64),
        (SigningAlgorithm::RsassaPkcs1V15Sha256, 32),
    ] {
        let e = check_message(&[1u8; 20], MessageType::Digest, Some(alg)).unwrap_err();
        assert_eq!(e.aws_type(), "ValidationException");
        check_message(&vec![1u8; ok_len], MessageType::Digest, Some(alg)).unwrap();
    }
    // RAW has no length relation, but 1..=4096 bytes.
    check_message(
        &[1u8; 20],
        MessageType::Raw,
        Some(SigningAlgorithm::EcdsaSha384),
    )
    .unwrap();
    assert!(check_message(&[], MessageType::Raw, None).is_err());
    assert!(check_message(&[0u8; 4097], MessageType::Raw, None).is_err());
    check_message(&[0u8; 4096], MessageType::Raw, None).unwrap();
}

#[test]
fn rsa_oaep_plaintext_limits_are_awss() {
    let cases = [
        (KeySpec::Rsa2048, 214, 190),
        (KeySpec::Rsa3072, 342, 318),
        (KeySpec::Rsa4096, 470, 446),
    ];
    for (spec, sha1, sha256) in cases {
        let (m, _) = KeyMaterial::generate(spec).unwrap();
        for (alg, max) in [
            (EncryptionAlgorithm::RsaesOaepSha1, sha1),
            (EncryptionAlgorithm::RsaesOaepSha256, sha256),
        ] {
            assert_eq!(m.max_rsa_plaintext(alg).unwrap(), max, "{spec} {alg}");
            let pt = vec![0x5a; max];
            let ct = m.rsa_encrypt(spec, alg, &pt).unwrap();
            assert_eq!(ct.len() * 8, spec.as_str()[4..].parse::<usize>().unwrap());
            assert_eq!(&m.rsa_decrypt(alg, &ct).unwrap()[..], &pt[..]);
            let too_big = m.rsa_encrypt(spec, alg, &vec![0; max + 1]).unwrap_err();
            assert_eq!(too_big.aws_type(), "ValidationException");
            // The other OAEP hash, a short or a flipped ciphertext: InvalidCiphertext.
            let other = if alg == EncryptionAlgorithm::RsaesOaepSha1 {
                EncryptionAlgorithm::RsaesOaepSha256
            } else {
                EncryptionAlgorithm::RsaesOaepSha1
            };
            let e = m.rsa_decrypt(other, &ct).unwrap_err();
            assert_eq!(e.aws_type(), "InvalidCiphertextException");
            let e = m.rsa_decrypt(alg, &ct[1..]).unwrap_err();
            assert_eq!(e.aws_type(), "InvalidCiphertextException");
        }
    }
}

#[test]
fn hmac_keys_have_spec_lengths_and_verify_in_constant_time() {
    for (spec, tag_len) in [
        (KeySpec::Hmac224, 28),
        (KeySpec::Hmac256, 32),
        (KeySpec::Hmac384, 48),
        (KeySpec::Hmac512, 64),
    ] {
        let (m, raw) = KeyMaterial::generate(spec).unwrap();
        assert_eq!(raw.len(), tag_len);
        let mac = m.mac(b"hello").unwrap();
        assert_eq!(mac.len(), tag_len);
        assert!(
            KeyMaterial::from_raw(spec, &raw)
                .unwrap()
                .verify_mac(b"hello", &mac)
                .unwrap()
        );
        assert!(!m.verify_mac(b"hellO", &mac).unwrap());
        assert!(!m.verify_mac(b"hello", &mac[1..]).unwrap());
        assert!(KeyMaterial::from_raw(spec, &raw[1..]).is_err());
    }
}

#[test]
fn symmetric_material_refuses_asymmetric_operations_and_vice_versa() {
    let (aes, raw) = KeyMaterial::generate(KeySpec::SymmetricDefault).unwrap();
    assert_eq!(raw.len(), KEY_LEN);
    assert!(aes.aes(KeySpec::SymmetricDefault).is_ok());
    assert!(aes.public_key_der().is_none());
    assert!(aes.mac(b"x").is_err());
    let (ec, _) = KeyMaterial::generate(KeySpec::EccNistP256).unwrap();
    let e = ec.aes(KeySpec::EccNistP256).unwrap_err();
    assert_eq!(e.aws_type(), "InvalidKeyUsageException");
    assert_eq!(
        e.to_string(),
        "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec ECC_NIST_P256."
    );
    assert!(
        ec.rsa_decrypt(EncryptionAlgorithm::RsaesOaepSha1, &[0; 256])
            .is_err()
    );
}

#[test]
fn debug_output_is_redacted() {
    let (m, raw) = KeyMaterial::generate(KeySpec::EccNistP256).unwrap();
    let s = format!("{m:?}");
    assert_eq!(s, "KeyMaterial::Ecc(<redacted>)");
    assert!(!s.contains(&hex::encode(&raw[..])));
    let kp = generate_key_pair(KeySpec::EccNistP384).unwrap();
    let s = format!("{kp:?}");
    assert!(s.contains("<redacted>"));
    assert!(!s.contains(&hex::encode(&kp.private_pkcs8[..8])));
}

#[test]
fn generated_key_pairs_are_pkcs8_and_spki_that_match() {
    for spec in [
        KeySpec::Rsa2048,
        KeySpec::EccNistP521,
        KeySpec::EccSecgP256k1,
    ] {
        let kp = generate_key_pair(spec).unwrap();
        let m = KeyMaterial::from_raw(spec, &kp.private_pkcs8).unwrap();
        assert_eq!(m.public_key_der(), Some(&kp.public_der[..]));
        let alg = spec.signing_algorithms(KeyUsageType::SignVerify)[0];
        let sig = m.sign(alg, MessageType::Raw, b"m").unwrap();
        // Verified independently of the pair's own verifier, from the SPKI alone.
        let verify: &'static dyn signature::VerificationAlgorithm = match spec {
            KeySpec::Rsa2048 => &signature::RSA_PKCS1_2048_8192_SHA256,
            KeySpec::EccNistP521 => &signature::ECDSA_P521_SHA512_ASN1,
            _ => &signature::ECDSA_P256K1_SHA256_ASN1,
        };
        let spki_key = signature::ParsedPublicKey::new(verify, &kp.public_der).unwrap();
        spki_key.verify_sig(b"m", &sig).unwrap();
    }
}
