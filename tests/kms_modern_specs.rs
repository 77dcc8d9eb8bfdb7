//! The 2025 key specs and key agreement, end to end with the real aws-cli and checked
//! by independent implementations: Ed25519 (`ECC_NIST_EDWARDS25519`) signatures by the
//! openssl CLI (pure Ed25519) and by RFC 8032's algorithm in Python (Ed25519ph, which
//! this openssl lacks); ML-DSA-44/65/87 signatures, RAW and EXTERNAL_MU, by Python's
//! `cryptography`; ECDH shared secrets by `openssl pkeyutl -derive`.

mod kms_support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use kms_support::tools::{Openssl, Python, s};
use kms_support::{Cli, cli_for, raw_call, start};

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string")).unwrap()
}

fn sha512(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b)
        .as_ref()
        .to_vec()
}

/// Verifies an Ed25519ph signature (RFC 8032 §5.1, empty context) in plain Python, after
/// checking itself against RFC 8032's "abc" test vector. argv: public key, message,
/// signature (hex). Prints "ok" or "bad".
const ED25519PH_VERIFY: &str = r#"
import hashlib, sys
p = 2**255 - 19
q = 2**252 + 27742317777372353535851937790883648493
d = -121665 * pow(121666, -1, p) % p
I = pow(2, (p - 1) // 4, p)
def H(m): return hashlib.sha512(m).digest()
def xrecover(y):
    xx = (y * y - 1) * pow(d * y * y + 1, -1, p) % p
    x = pow(xx, (p + 3) // 8, p)
    if (x * x - xx) % p: x = x * I % p
    if (x * x - xx) % p: raise ValueError("not on the curve")
    return x
def add(P, Q):
    (X1, Y1, Z1, T1), (X2, Y2, Z2, T2) = P, Q
    A = (Y1 - X1) * (Y2 - X2) % p; B = (Y1 + X1) * (Y2 + X2) % p
    C = T1 * 2 * d * T2 % p; D = Z1 * 2 * Z2 % p
    E, F, G, Hh = B - A, D - C, D + C, B + A
    return (E * F % p, G * Hh % p, F * G % p, E * Hh % p)
def mul(s, P):
    Q = (0, 1, 1, 0)
    while s:
        if s & 1: Q = add(Q, P)
        P = add(P, P); s >>= 1
    return Q
def same(P, Q): return (P[0] * Q[2] - Q[0] * P[2]) % p == 0 and (P[1] * Q[2] - Q[1] * P[2]) % p == 0
def point(b):
    y = int.from_bytes(b, "little"); sign = y >> 255; y &= (1 << 255) - 1
    x = xrecover(y)
    if x & 1 != sign: x = p - x
    return (x, y, 1, x * y % p)
gy = 4 * pow(5, -1, p) % p; gx = xrecover(gy)
if gx & 1: gx = p - gx
G = (gx, gy, 1, gx * gy % p)
def verify_ph(pub, msg, sig):
    A, R, S = point(pub), point(sig[:32]), int.from_bytes(sig[32:], "little")
    if S >= q: return False
    dom = b"SigEd25519 no Ed25519 collisions" + bytes([1, 0])
    k = int.from_bytes(H(dom + sig[:32] + pub + H(msg)), "little") % q
    return same(mul(S, G), add(R, mul(k, A)))
rfc_pub = bytes.fromhex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
rfc_sig = bytes.fromhex("98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")
assert verify_ph(rfc_pub, b"abc", rfc_sig) and not verify_ph(rfc_pub, b"abd", rfc_sig)
pub, msg, sig = (bytes.fromhex(a) for a in sys.argv[1:4])
print("ok" if verify_ph(pub, msg, sig) else "bad")
"#;

/// ML-DSA with Python's `cryptography`. argv[1]: `mu SPKI MSG` prints the external mu
/// of MSG for the key; `verify SPKI MSG SIG` and `verify_mu SPKI MU SIG` print "ok" or
/// "bad"; `raw SPKI` prints the parameter set and the raw public key's length.
const ML_DSA: &str = r#"
import sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
cmd, *args = sys.argv[1:]
spki, *rest = (bytes.fromhex(a) for a in args)
pub = serialization.load_der_public_key(spki)
if cmd == "raw":
    print(type(pub).__name__, len(pub.public_bytes_raw()))
elif cmd == "mu":
    h = mldsa.MLDSAMuHasher(pub)
    h.update(rest[0])
    print(h.finalize().hex())
else:
    try:
        if cmd == "verify": pub.verify(rest[1], rest[0])
        else: pub.verify_mu(rest[1], rest[0])
        print("ok")
    except InvalidSignature:
        print("bad")
"#;

/// `aws kms get-public-key`: the DER SubjectPublicKeyInfo and the whole answer.
fn public_key(cli: &Cli, key: &str) -> (Vec<u8>, Value) {
    let v = cli.ok(&["get-public-key", "--key-id", key]);
    (b64(&v["PublicKey"]), v)
}

fn create(cli: &Cli, spec: &str, usage: &str) -> String {
    let md = cli.ok(&["create-key", "--key-spec", spec, "--key-usage", usage]);
    md["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
}

/// `aws kms sign`: the signature.
fn sign(cli: &Cli, key: &str, msg: &[u8], ty: &str, alg: &str) -> Vec<u8> {
    let m = cli.fileb("msg", msg);
    let v = cli.ok(&[
        "sign",
        "--key-id",
        key,
        "--message",
        &m,
        "--message-type",
        ty,
        "--signing-algorithm",
        alg,
    ]);
    assert_eq!(v["SigningAlgorithm"], alg);
    b64(&v["Signature"])
}

/// `aws kms sign` of the `fileb://` message `m` must be ValidationException.
#[track_caller]
fn sign_is_invalid(cli: &Cli, key: &str, m: &str, ty: Option<&str>, alg: &str) {
    let mut args = vec!["sign", "--key-id", key, "--message", m];
    if let Some(t) = ty {
        args.extend(["--message-type", t]);
    }
    args.extend(["--signing-algorithm", alg]);
    let (ok, _, err) = cli.kms(&args);
    assert!(!ok && err.contains("ValidationException"), "{err}");
}

/// `aws kms verify` must say the signature is valid.
fn kms_verifies(cli: &Cli, key: &str, msg: &[u8], ty: &str, alg: &str, sig: &[u8]) {
    let m = cli.fileb("vmsg", msg);
    let sg = cli.fileb("vsig", sig);
    let v = cli.ok(&[
        "verify",
        "--key-id",
        key,
        "--message",
        &m,
        "--message-type",
        ty,
        "--signing-algorithm",
        alg,
        "--signature",
        &sg,
    ]);
    assert_eq!(v["SignatureValid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_ed25519_keys_sign_and_openssl_and_rfc_8032_verify() {
    let server = start().await;
    let cli = cli_for(&server);
    tokio::task::spawn_blocking(move || {
        let key = create(&cli, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY");
        let (der, v) = public_key(&cli, &key);
        assert_eq!(v["KeySpec"], "ECC_NIST_EDWARDS25519");
        assert_eq!(
            v["SigningAlgorithms"],
            json!(["ED25519_SHA_512", "ED25519_PH_SHA_512"])
        );
        assert!(v.get("CustomerMasterKeySpec").is_none(), "{v}");
        assert_eq!(der.len(), 44, "RFC 8410 SubjectPublicKeyInfo");
        let md = cli.ok(&["describe-key", "--key-id", &key]);
        assert_eq!(
            md["KeyMetadata"]["SigningAlgorithms"],
            json!(["ED25519_SHA_512", "ED25519_PH_SHA_512"])
        );

        // Pure Ed25519 (RAW): openssl verifies with the GetPublicKey DER.
        let msg = b"an Ed25519 message signed by sealgate's KMS";
        let sig = sign(&cli, &key, msg, "RAW", "ED25519_SHA_512");
        assert_eq!(sig.len(), 64);
        kms_verifies(&cli, &key, msg, "RAW", "ED25519_SHA_512", &sig);
        let o = Openssl::new();
        let pem = o.public_pem("ed", &der);
        assert!(o.verifies_raw(&pem, msg, &sig));
        assert!(!o.verifies_raw(&pem, b"another message", &sig));

        // Ed25519ph (DIGEST): KMS hashes the SHA-512 digest once more, so RFC 8032's
        // Ed25519ph verifier checks it with the digest as its message.
        let digest = sha512(msg);
        let sig = sign(&cli, &key, &digest, "DIGEST", "ED25519_PH_SHA_512");
        kms_verifies(&cli, &key, &digest, "DIGEST", "ED25519_PH_SHA_512", &sig);
        let py = Python::new();
        let hex = |b: &[u8]| hex::encode(b);
        let pub_raw = &der[12..];
        assert_eq!(
            py.run(
                ED25519PH_VERIFY,
                &[&hex(pub_raw), &hex(&digest), &hex(&sig)]
            ),
            "ok"
        );
        assert_eq!(
            py.run(
                ED25519PH_VERIFY,
                &[&hex(pub_raw), &hex(&sha512(b"x")), &hex(&sig)]
            ),
            "bad"
        );
        // The algorithms are locked to their message types.
        let m = cli.fileb("d", &digest);
        sign_is_invalid(&cli, &key, &m, Some("DIGEST"), "ED25519_SHA_512");
        sign_is_invalid(&cli, &key, &m, None, "ED25519_PH_SHA_512");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_ml_dsa_keys_sign_raw_and_external_mu_and_cryptography_verifies() {
    let server = start().await;
    let cli = cli_for(&server);
    tokio::task::spawn_blocking(move || {
        let py = Python::new();
        let hex = |b: &[u8]| hex::encode(b);
        for (spec, class, raw_len, sig_len) in [
            ("ML_DSA_44", "MLDSA44PublicKey", 1312, 2420),
            ("ML_DSA_65", "MLDSA65PublicKey", 1952, 3309),
            ("ML_DSA_87", "MLDSA87PublicKey", 2592, 4627),
        ] {
            let key = create(&cli, spec, "SIGN_VERIFY");
            let (der, v) = public_key(&cli, &key);
            assert_eq!(v["SigningAlgorithms"], json!(["ML_DSA_SHAKE_256"]));
            assert!(v.get("CustomerMasterKeySpec").is_none(), "{v}");
            // The SPKI is what a standard parser expects of that parameter set.
            assert_eq!(
                py.run(ML_DSA, &["raw", &hex(&der)]),
                format!("{class} {raw_len}")
            );
            // RAW: pure ML-DSA of the message.
            let msg = format!("a message for {spec}");
            let sig = sign(&cli, &key, msg.as_bytes(), "RAW", "ML_DSA_SHAKE_256");
            assert_eq!(sig.len(), sig_len);
            kms_verifies(&cli, &key, msg.as_bytes(), "RAW", "ML_DSA_SHAKE_256", &sig);
            let check = |cmd: &str, m: &[u8], sg: &[u8]| {
                py.run(ML_DSA, &[cmd, &hex(&der), &hex(m), &hex(sg)])
            };
            assert_eq!(check("verify", msg.as_bytes(), &sig), "ok", "{spec}");
            assert_eq!(check("verify", b"another", &sig), "bad", "{spec}");
            // EXTERNAL_MU: the caller computes mu; the signature verifies as a signature
            // of the message itself.
            let mu =
                hex::decode(py.run(ML_DSA, &["mu", &hex(&der), &hex(msg.as_bytes())])).unwrap();
            assert_eq!(mu.len(), 64);
            let sig = sign(&cli, &key, &mu, "EXTERNAL_MU", "ML_DSA_SHAKE_256");
            kms_verifies(&cli, &key, &mu, "EXTERNAL_MU", "ML_DSA_SHAKE_256", &sig);
            kms_verifies(&cli, &key, msg.as_bytes(), "RAW", "ML_DSA_SHAKE_256", &sig);
            assert_eq!(check("verify", msg.as_bytes(), &sig), "ok", "{spec}");
            assert_eq!(check("verify_mu", &mu, &sig), "ok", "{spec}");
            // DIGEST is not an ML-DSA message type; EXTERNAL_MU must be 64 bytes.
            let m = cli.fileb("mu", &mu[..32]);
            sign_is_invalid(&cli, &key, &m, Some("EXTERNAL_MU"), "ML_DSA_SHAKE_256");
            sign_is_invalid(&cli, &key, &m, Some("DIGEST"), "ML_DSA_SHAKE_256");
        }
        // ML-DSA keys sign only; they are no data key pair spec.
        let (ok, _, err) = cli.kms(&[
            "create-key",
            "--key-spec",
            "ML_DSA_65",
            "--key-usage",
            "ENCRYPT_DECRYPT",
        ]);
        assert!(!ok && err.contains("ValidationException"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_derive_shared_secret_matches_openssl_ecdh() {
    let server = start().await;
    let cli = cli_for(&server);
    tokio::task::spawn_blocking(move || {
        let o = Openssl::new();
        for (spec, curve, len) in [
            ("ECC_NIST_P256", "P-256", 32),
            ("ECC_NIST_P384", "P-384", 48),
            ("ECC_NIST_P521", "P-521", 66),
        ] {
            let key = create(&cli, spec, "KEY_AGREEMENT");
            let (der, v) = public_key(&cli, &key);
            assert_eq!(v["KeyUsage"], "KEY_AGREEMENT");
            assert_eq!(v["KeyAgreementAlgorithms"], json!(["ECDH"]));
            let md = cli.ok(&["describe-key", "--key-id", &key]);
            assert_eq!(md["KeyMetadata"]["KeyAgreementAlgorithms"], json!(["ECDH"]));
            // The peer: an openssl key pair on the same curve.
            let peer = o.path(&format!("peer-{curve}.pem"));
            o.ok(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-out",
                s(&peer),
            ]);
            let peer_der = o.path(&format!("peer-{curve}.der"));
            o.ok(&[
                "pkey",
                "-in",
                s(&peer),
                "-pubout",
                "-outform",
                "DER",
                "-out",
                s(&peer_der),
            ]);
            let peer_spki = std::fs::read(&peer_der).unwrap();
            let arg = cli.fileb("peer.der", &peer_spki);
            let v = cli.ok(&[
                "derive-shared-secret",
                "--key-id",
                &key,
                "--key-agreement-algorithm",
                "ECDH",
                "--public-key",
                &arg,
            ]);
            assert_eq!(v["KeyAgreementAlgorithm"], "ECDH");
            assert_eq!(v["KeyOrigin"], "AWS_KMS");
            let secret = b64(&v["SharedSecret"]);
            assert_eq!(secret.len(), len);
            // openssl derives the same secret from its private key and KMS's public key.
            let kms_pem = o.public_pem(&format!("kms-{curve}"), &der);
            let z = o.path("z.bin");
            o.ok(&[
                "pkeyutl",
                "-derive",
                "-inkey",
                s(&peer),
                "-peerkey",
                s(&kms_pem),
                "-out",
                s(&z),
            ]);
            assert_eq!(std::fs::read(&z).unwrap(), secret, "{spec}");
        }
        // A signing key cannot agree; a secp256k1 key cannot be a key agreement key.
        let signer = create(&cli, "ECC_NIST_P256", "SIGN_VERIFY");
        let arg = cli.fileb("p.der", &[0x30, 0x00]);
        let (ok, _, err) = cli.kms(&[
            "derive-shared-secret",
            "--key-id",
            &signer,
            "--key-agreement-algorithm",
            "ECDH",
            "--public-key",
            &arg,
        ]);
        assert!(
            !ok && err.contains("InvalidKeyUsageException")
                && err
                    .contains("key usage is SIGN_VERIFY which is not valid for DeriveSharedSecret"),
            "{err}"
        );
        let (ok, _, err) = cli.kms(&[
            "create-key",
            "--key-spec",
            "ECC_SECG_P256K1",
            "--key-usage",
            "KEY_AGREEMENT",
        ]);
        assert!(!ok && err.contains("ValidationException"), "{err}");
    })
    .await
    .unwrap();
}

/// What the JSON API adds around DeriveSharedSecret: two KMS keys agree with each other,
/// a peer key on another curve or not in SPKI form is ValidationException, DryRun and
/// grants work, Recipient is refused, and the secret never reaches the audit log.
#[tokio::test]
async fn derive_shared_secret_through_the_json_api() {
    let s = start().await;
    let call = |op: &str, body: Value| {
        let url = s.url.clone();
        let op = format!("TrentService.{op}");
        async move { raw_call(&url, &op, &body.to_string()).await }
    };
    let mut keys = Vec::new();
    let mut pubs = Vec::new();
    for _ in 0..2 {
        let (st, v) = call(
            "CreateKey",
            json!({"KeySpec": "ECC_NIST_P384", "KeyUsage": "KEY_AGREEMENT"}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let id = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        let (_, p) = call("GetPublicKey", json!({"KeyId": id})).await;
        pubs.push(p["PublicKey"].clone());
        keys.push(id);
    }
    let derive =
        |k: &str, p: &Value| json!({"KeyId": k, "KeyAgreementAlgorithm": "ECDH", "PublicKey": p});
    let (_, a) = call("DeriveSharedSecret", derive(&keys[0], &pubs[1])).await;
    let (_, b) = call("DeriveSharedSecret", derive(&keys[1], &pubs[0])).await;
    assert_eq!(a["SharedSecret"], b["SharedSecret"]);
    let secret = a["SharedSecret"].as_str().unwrap().to_string();

    let (_, p256) = call(
        "CreateKey",
        json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"}),
    )
    .await;
    let p256 = p256["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let (st, v) = call("DeriveSharedSecret", derive(&p256, &pubs[0])).await;
    assert_eq!(
        (st, v["__type"].as_str()),
        (400, Some("ValidationException"))
    );
    let spki = b64(&pubs[0]);
    let point = B64.encode(&spki[spki.len() - 97..]);
    let (_, v) = call("DeriveSharedSecret", derive(&keys[0], &json!(point))).await;
    assert_eq!(v["__type"], "ValidationException");
    let (_, v) = call(
        "DeriveSharedSecret",
        json!({"KeyId": keys[0], "KeyAgreementAlgorithm": "DH", "PublicKey": pubs[1]}),
    )
    .await;
    assert_eq!(v["__type"], "ValidationException");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .ends_with("at 'keyAgreementAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [ECDH]"),
        "{v}"
    );
    let mut dry = derive(&keys[0], &pubs[1]);
    dry["DryRun"] = json!(true);
    let (_, v) = call("DeriveSharedSecret", dry).await;
    assert_eq!(v["__type"], "DryRunOperationException");
    let mut with_recipient = derive(&keys[0], &pubs[1]);
    with_recipient["Recipient"] = json!({"AttestationDocument": B64.encode(b"doc")});
    let (_, v) = call("DeriveSharedSecret", with_recipient).await;
    assert_eq!(v["__type"], "UnsupportedOperationException");
    assert!(v.get("SharedSecret").is_none());
    let (st, v) = call(
        "CreateGrant",
        json!({"KeyId": keys[0], "GranteePrincipal": "arn:aws:iam::000000000000:user/bob",
               "Operations": ["DeriveSharedSecret", "GetPublicKey"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    s.kms.flush_audit().unwrap();
    let log = std::fs::read_to_string(s.kms.audit_log_path().unwrap()).unwrap();
    assert!(log.contains("DeriveSharedSecret"));
    assert!(
        !log.contains(&secret),
        "the shared secret reached the audit log"
    );
}
