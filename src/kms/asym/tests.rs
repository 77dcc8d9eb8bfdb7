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
                (s, SignVerify) if s.is_ecc() || s.is_ed25519() || s.is_ml_dsa() => true,
                (s, KeyAgreement) if s.is_ecc_nist() => true,
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
        let (m, raw) = KeyMaterial::generate(spec, spec.usages()[0]).unwrap();
        // Unsealed bytes rebuild the same key.
        let again = KeyMaterial::from_raw(spec, spec.usages()[0], &raw).unwrap();
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
            let d = digest::digest(alg.digest().unwrap(), msg);
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
        let (m, _) = KeyMaterial::generate(spec, spec.usages()[0]).unwrap();
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
        let (m, raw) = KeyMaterial::generate(spec, spec.usages()[0]).unwrap();
        assert_eq!(raw.len(), tag_len);
        let mac = m.mac(b"hello").unwrap();
        assert_eq!(mac.len(), tag_len);
        assert!(
            KeyMaterial::from_raw(spec, spec.usages()[0], &raw)
                .unwrap()
                .verify_mac(b"hello", &mac)
                .unwrap()
        );
        assert!(!m.verify_mac(b"hellO", &mac).unwrap());
        assert!(!m.verify_mac(b"hello", &mac[1..]).unwrap());
        assert!(KeyMaterial::from_raw(spec, spec.usages()[0], &raw[1..]).is_err());
    }
}

#[test]
fn symmetric_material_refuses_asymmetric_operations_and_vice_versa() {
    let (aes, raw) = KeyMaterial::generate(
        KeySpec::SymmetricDefault,
        KeySpec::SymmetricDefault.usages()[0],
    )
    .unwrap();
    assert_eq!(raw.len(), KEY_LEN);
    assert!(aes.aes(KeySpec::SymmetricDefault).is_ok());
    assert!(aes.public_key_der().is_none());
    assert!(aes.mac(b"x").is_err());
    let (ec, _) =
        KeyMaterial::generate(KeySpec::EccNistP256, KeySpec::EccNistP256.usages()[0]).unwrap();
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
    let (m, raw) =
        KeyMaterial::generate(KeySpec::EccNistP256, KeySpec::EccNistP256.usages()[0]).unwrap();
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
        let m = KeyMaterial::from_raw(spec, spec.usages()[0], &kp.private_pkcs8).unwrap();
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

/// PKCS#8 v1 of an Ed25519 seed (RFC 8410).
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(seed);
    der
}

#[test]
fn ed25519_signs_pure_and_prehashed_as_rfc_8032() {
    // RFC 8032 §7.3, Ed25519ph "abc": KMS's ED25519_PH_SHA_512 hashes the message it is
    // given once more, so signing the bytes "abc" as the digest is exactly this vector.
    let seed: [u8; 32] =
        hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
            .unwrap()
            .try_into()
            .unwrap();
    let spec = KeySpec::EccNistEdwards25519;
    let m = KeyMaterial::from_raw(spec, KeyUsageType::SignVerify, &ed25519_pkcs8(&seed)).unwrap();
    let ph = SigningAlgorithm::Ed25519PhSha512;
    let sig = m.sign(ph, MessageType::Digest, b"abc").unwrap();
    assert_eq!(
        hex::encode(&sig),
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
    );
    assert!(m.verify(ph, MessageType::Digest, b"abc", &sig).unwrap());
    assert!(!m.verify(ph, MessageType::Digest, b"abd", &sig).unwrap());
    // RFC 8032 §7.1 TEST 1: pure Ed25519 of the empty message, by aws-lc-rs.
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    let m = KeyMaterial::from_raw(spec, KeyUsageType::SignVerify, &ed25519_pkcs8(&seed)).unwrap();
    let pure = SigningAlgorithm::Ed25519Sha512;
    let sig = m.sign(pure, MessageType::Raw, b"").unwrap();
    assert_eq!(
        hex::encode(&sig),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    assert!(m.verify(pure, MessageType::Raw, b"", &sig).unwrap());
    // A pure signature is no Ed25519ph signature of the same bytes, and vice versa.
    assert!(!m.verify(ph, MessageType::Digest, b"", &sig).unwrap());
    let der = m.public_key_der().unwrap();
    assert_eq!(der.len(), 44);
    assert_eq!(
        hex::encode(&der[12..]),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
}

#[test]
fn ml_dsa_keys_sign_raw_and_external_mu_and_round_trip_their_seed() {
    for (spec, pk_len, sig_len) in [
        (KeySpec::MlDsa44, 1312, 2420),
        (KeySpec::MlDsa65, 1952, 3309),
        (KeySpec::MlDsa87, 2592, 4627),
    ] {
        let (m, seed) = KeyMaterial::generate(spec, KeyUsageType::SignVerify).unwrap();
        assert_eq!(seed.len(), 32);
        let again = KeyMaterial::from_raw(spec, KeyUsageType::SignVerify, &seed).unwrap();
        assert_eq!(again.public_key_der(), m.public_key_der());
        let der = m.public_key_der().unwrap();
        assert!(der.len() > pk_len && der.len() < pk_len + 30, "{spec}");
        let alg = SigningAlgorithm::MlDsaShake256;
        let sig = m.sign(alg, MessageType::Raw, b"message").unwrap();
        assert_eq!(sig.len(), sig_len);
        assert!(
            again
                .verify(alg, MessageType::Raw, b"message", &sig)
                .unwrap()
        );
        assert!(
            !again
                .verify(alg, MessageType::Raw, b"messagE", &sig)
                .unwrap()
        );
        let mu = [0x5cu8; 64];
        let sig = m.sign(alg, MessageType::ExternalMu, &mu).unwrap();
        assert_eq!(sig.len(), sig_len);
        assert!(
            again
                .verify(alg, MessageType::ExternalMu, &mu, &sig)
                .unwrap()
        );
        assert!(
            !again
                .verify(alg, MessageType::ExternalMu, &[0u8; 64], &sig)
                .unwrap()
        );
        assert!(!again.verify(alg, MessageType::Raw, &mu, &sig).unwrap());
    }
}

#[test]
fn message_types_are_tied_to_their_algorithms() {
    use SigningAlgorithm::*;
    let ok = |m: &[u8], t, a| check_message(m, t, Some(a)).is_ok();
    assert!(ok(&[1; 64], MessageType::Digest, Ed25519PhSha512));
    assert!(!ok(&[1; 32], MessageType::Digest, Ed25519PhSha512));
    assert!(!ok(&[1; 64], MessageType::Raw, Ed25519PhSha512));
    assert!(ok(&[1; 10], MessageType::Raw, Ed25519Sha512));
    assert!(!ok(&[1; 64], MessageType::Digest, Ed25519Sha512));
    assert!(ok(&[1; 4096], MessageType::Raw, MlDsaShake256));
    assert!(ok(&[1; 64], MessageType::ExternalMu, MlDsaShake256));
    assert!(!ok(&[1; 32], MessageType::ExternalMu, MlDsaShake256));
    assert!(!ok(&[1; 64], MessageType::Digest, MlDsaShake256));
    assert!(!ok(&[1; 64], MessageType::ExternalMu, EcdsaSha512));
}

#[test]
fn ecdh_keys_agree_with_each_other_and_refuse_foreign_keys() {
    for (spec, len) in [
        (KeySpec::EccNistP256, 32),
        (KeySpec::EccNistP384, 48),
        (KeySpec::EccNistP521, 66),
    ] {
        let (a, raw) = KeyMaterial::generate(spec, KeyUsageType::KeyAgreement).unwrap();
        let (b, _) = KeyMaterial::generate(spec, KeyUsageType::KeyAgreement).unwrap();
        let ab = a.derive_shared_secret(b.public_key_der().unwrap()).unwrap();
        let ba = b.derive_shared_secret(a.public_key_der().unwrap()).unwrap();
        assert_eq!(ab.len(), len);
        assert_eq!(&ab[..], &ba[..]);
        let again = KeyMaterial::from_raw(spec, KeyUsageType::KeyAgreement, &raw).unwrap();
        assert_eq!(again.public_key_der(), a.public_key_der());
        // A bare point (SPKI minus its header) and garbage are ValidationException.
        let der = b.public_key_der().unwrap();
        let point = &der[der.len() - (2 * len + 1)..];
        let e = a.derive_shared_secret(point).unwrap_err();
        assert_eq!(e.aws_type(), "ValidationException");
        assert!(a.derive_shared_secret(&[0x30, 1, 2]).is_err());
    }
    // Another curve's public key.
    let (p256, _) =
        KeyMaterial::generate(KeySpec::EccNistP256, KeyUsageType::KeyAgreement).unwrap();
    let (p384, _) =
        KeyMaterial::generate(KeySpec::EccNistP384, KeyUsageType::KeyAgreement).unwrap();
    let e = p256
        .derive_shared_secret(p384.public_key_der().unwrap())
        .unwrap_err();
    assert_eq!(e.aws_type(), "ValidationException");
}
