//! KMS throughput: GenerateDataKey and Decrypt per second, in-process (1 and 2 threads)
//! and over HTTP (aws-sdk-kms client, 16 concurrent requests, same machine); Sign and
//! Verify per key spec, algorithm and message type (RSA, ECDSA, Ed25519, ML-DSA),
//! DeriveSharedSecret per curve, and GenerateMac/VerifyMac, in-process on 1 thread; and
//! over HTTP, one instance on redb against two instances sharing one PostgreSQL
//! (`kms.store = "postgres"`, a throwaway local cluster; needs PostgreSQL installed, as
//! `scripts/setup.sh` does).
//! And a key in a custom key store on a SoftHSM2 token against a key in the database
//! (GenerateDataKey and Decrypt in-process and over HTTP; SoftHSM2 runs in the process, so its figures
//! are a floor for the PKCS#11 path, not an HSM's; needs Debian's softhsm2).
//! Run: `cargo bench --bench kms` (`-- --no-postgres` skips the shared-store part,
//! `-- --no-hsm` the custom key store part).

#[path = "../tests/kms_support/mod.rs"]
mod kms_support;

use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use sealgate::kms::{
    Caller, CreateKeyOptions, EncryptionAlgorithm, EncryptionContext, KeyAgreementAlgorithm,
    KeySpec, KeyUsageType, Kms, MacAlgorithm, MessageType, SigningAlgorithm,
};

const SYMMETRIC: EncryptionAlgorithm = EncryptionAlgorithm::SymmetricDefault;

const RUN: Duration = Duration::from_secs(2);

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs `f` on `threads` threads for RUN; returns operations per second.
fn in_process(threads: usize, f: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < RUN {
                        for _ in 0..256 {
                            f();
                        }
                        n += 256;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    per_sec(total, start.elapsed())
}

async fn over_http<F, Fut>(concurrency: usize, f: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < RUN {
                    f().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    per_sec(total, start.elapsed())
}

/// Sign and Verify per second (1 thread, in-process) for each asymmetric key spec, then
/// GenerateMac/VerifyMac for each HMAC spec.
fn asymmetric(kms: &Kms, caller: Caller<'_>) {
    use SigningAlgorithm::*;
    let msg = [0x42u8; 256];
    let create = |spec, usage| {
        let opts = CreateKeyOptions {
            key_spec: spec,
            key_usage: usage,
            ..Default::default()
        };
        kms.create_key(caller, &opts).unwrap().key_id
    };
    println!("in-process, 1 thread, 256-byte RAW message (64 bytes for DIGEST/EXTERNAL_MU):");
    let cases = [
        (KeySpec::Rsa2048, RsassaPssSha256),
        (KeySpec::Rsa2048, RsassaPkcs1V15Sha256),
        (KeySpec::Rsa3072, RsassaPssSha256),
        (KeySpec::Rsa3072, RsassaPkcs1V15Sha256),
        (KeySpec::Rsa4096, RsassaPssSha256),
        (KeySpec::Rsa4096, RsassaPkcs1V15Sha256),
        (KeySpec::EccNistP256, EcdsaSha256),
        (KeySpec::EccNistP384, EcdsaSha384),
        (KeySpec::EccNistP521, EcdsaSha512),
        (KeySpec::EccSecgP256k1, EcdsaSha256),
    ];
    let sign_verify = |spec: KeySpec, alg: SigningAlgorithm, ty: MessageType, msg: &[u8]| {
        let key = create(spec, KeyUsageType::SignVerify);
        let (sig, _) = kms.sign(caller, &key, msg, ty, alg).unwrap();
        let sign = in_process(1, || {
            kms.sign(caller, &key, msg, ty, alg).unwrap();
        });
        let verify = in_process(1, || {
            kms.verify(caller, &key, msg, ty, &sig, alg).unwrap();
        });
        println!(
            "  {:<22} {:<26} {:<11} Sign {sign:>8.0}/s   Verify {verify:>8.0}/s",
            spec.as_str(),
            alg.as_str(),
            ty.as_str()
        );
    };
    for (spec, alg) in cases {
        sign_verify(spec, alg, MessageType::Raw, &msg);
    }
    // The 2025 key specs: Ed25519 (pure over the 256-byte message, Ed25519ph over a
    // SHA-512 digest) and ML-DSA (pure, and over a 64-byte external mu).
    let digest = [0x24u8; 64];
    sign_verify(
        KeySpec::EccNistEdwards25519,
        Ed25519Sha512,
        MessageType::Raw,
        &msg,
    );
    sign_verify(
        KeySpec::EccNistEdwards25519,
        Ed25519PhSha512,
        MessageType::Digest,
        &digest,
    );
    for spec in [KeySpec::MlDsa44, KeySpec::MlDsa65, KeySpec::MlDsa87] {
        sign_verify(spec, MlDsaShake256, MessageType::Raw, &msg);
        sign_verify(spec, MlDsaShake256, MessageType::ExternalMu, &digest);
    }
    // Key agreement: DeriveSharedSecret with a peer on the same curve.
    for spec in [
        KeySpec::EccNistP256,
        KeySpec::EccNistP384,
        KeySpec::EccNistP521,
    ] {
        let key = create(spec, KeyUsageType::KeyAgreement);
        let peer = create(spec, KeyUsageType::KeyAgreement);
        let peer_der = kms.get_public_key(caller, &peer).unwrap().public_key;
        let ecdh = KeyAgreementAlgorithm::Ecdh;
        let derive = in_process(1, || {
            kms.derive_shared_secret(caller, &key, ecdh, &peer_der)
                .unwrap();
        });
        println!(
            "  {:<22} {:<26} {:<11} DeriveSharedSecret {derive:>8.0}/s",
            spec.as_str(),
            "ECDH",
            ""
        );
    }
    for (spec, alg) in [
        (KeySpec::Hmac224, MacAlgorithm::HmacSha224),
        (KeySpec::Hmac256, MacAlgorithm::HmacSha256),
        (KeySpec::Hmac384, MacAlgorithm::HmacSha384),
        (KeySpec::Hmac512, MacAlgorithm::HmacSha512),
    ] {
        let key = create(spec, KeyUsageType::GenerateVerifyMac);
        let (mac, _) = kms.generate_mac(caller, &key, &msg, alg).unwrap();
        let gen_mac = in_process(1, || {
            kms.generate_mac(caller, &key, &msg, alg).unwrap();
        });
        let verify_mac = in_process(1, || {
            kms.verify_mac(caller, &key, &msg, &mac, alg).unwrap();
        });
        println!(
            "  {:<16} {:<26} GenerateMac {gen_mac:>8.0}/s   VerifyMac {verify_mac:>8.0}/s",
            spec.as_str(),
            alg.as_str()
        );
    }
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too: only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("kms benchmark: run it with `cargo bench --bench kms`");
        return;
    }
    // SoftHSM2 reads its configuration (SOFTHSM2_CONF) when the module initialises: a
    // token store is made here, then the benchmark runs again with it in its environment.
    let hsm = !std::env::args().any(|a| a == "--no-hsm");
    if hsm {
        kms_support::softhsm::rerun_with_own_token_store("bench", HSM_PIN);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(kms_support::start());
    let kms = server.kms.clone();
    let alice = kms_support::alice();
    let caller = Caller::in_process(&alice);
    let key = kms
        .create_key(caller, &CreateKeyOptions::default())
        .unwrap()
        .key_id;
    let ctx: EncryptionContext = [("aws:s3:arn".to_string(), "arn:aws:s3:::b/k".to_string())]
        .into_iter()
        .collect();
    let blob = kms
        .generate_data_key(caller, &key, &ctx, 32)
        .unwrap()
        .ciphertext_blob;

    for threads in [1, 2] {
        let gdk = in_process(threads, || {
            kms.generate_data_key(caller, &key, &ctx, 32).unwrap();
        });
        let dec = in_process(threads, || {
            kms.decrypt(caller, None, &blob, &ctx, SYMMETRIC).unwrap();
        });
        println!(
            "in-process, {threads} thread(s): GenerateDataKey {gdk:>10.0}/s   Decrypt {dec:>10.0}/s"
        );
    }

    let client = kms_support::sdk_client(&server.url);
    let (gdk, dec) = http_data_keys(&rt, &kms, caller, &client, &key);
    println!(
        "over HTTP (aws-sdk-kms, 16 in flight, client+server on the same 2 cores): GenerateDataKey {gdk:>8.0}/s   Decrypt {dec:>8.0}/s   (one instance, redb)"
    );
    if !std::env::args().any(|a| a == "--no-postgres") {
        let (gdk2, dec2) = shared_store(&rt);
        println!(
            "over HTTP, same client, two instances on one PostgreSQL (8 in flight each):      GenerateDataKey {gdk2:>8.0}/s   Decrypt {dec2:>8.0}/s   (ratio to redb: {:.2} / {:.2})",
            gdk2 / gdk,
            dec2 / dec
        );
    }
    asymmetric(&kms, caller);
    if hsm {
        custom_key_store(&rt);
    }
}

const HSM_PIN: &str = "bench-pin-1234";
const HSM_CLUSTER: &str = "cluster-benchhsmtokena";

/// GenerateDataKey and Decrypt per second in-process: a key in a custom key store on the
/// SoftHSM2 token against a key in the database, in the same run.
fn custom_key_store(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sealgate::kms::KmsConfig {
        db_path: dir.path().join("kms.redb"),
        ..Default::default()
    };
    cfg.hsm_clusters.insert(
        HSM_CLUSTER.into(),
        sealgate::kms::key_stores::HsmClusterConfig {
            module: kms_support::softhsm::module(),
            token_label: "bench".into(),
            trust_anchor_certificate_file: None,
        },
    );
    let server = rt.block_on(kms_support::start_with(cfg, dir));
    let kms = server.kms.clone();
    let alice = kms_support::alice();
    let caller = Caller::in_process(&alice);
    let anchor = "-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----";
    let store = kms
        .create_custom_key_store(
            caller,
            &sealgate::kms::NewCustomKeyStore {
                name: Some("bench"),
                cluster_id: Some(HSM_CLUSTER),
                trust_anchor: Some(anchor),
                password: Some(HSM_PIN),
                ..Default::default()
            },
        )
        .unwrap();
    kms.connect_custom_key_store(caller, &store).unwrap();
    let in_db = kms
        .create_key(caller, &CreateKeyOptions::default())
        .unwrap()
        .key_id;
    let in_hsm = kms
        .create_key(
            caller,
            &CreateKeyOptions {
                custom_key_store_id: Some(store),
                ..Default::default()
            },
        )
        .unwrap()
        .key_id;
    let ctx: EncryptionContext = [("aws:s3:arn".to_string(), "arn:aws:s3:::b/k".to_string())]
        .into_iter()
        .collect();
    for threads in [1, 2] {
        let mut row = Vec::new();
        for key in [&in_db, &in_hsm] {
            let blob = kms
                .generate_data_key(caller, key, &ctx, 32)
                .unwrap()
                .ciphertext_blob;
            let gdk = in_process(threads, || {
                kms.generate_data_key(caller, key, &ctx, 32).unwrap();
            });
            let dec = in_process(threads, || {
                kms.decrypt(caller, None, &blob, &ctx, SYMMETRIC).unwrap();
            });
            row.push((gdk, dec));
        }
        let ((g0, d0), (g1, d1)) = (row[0], row[1]);
        println!(
            "custom key store (SoftHSM2 in-process, a floor for the PKCS#11 path), {threads} thread(s): GenerateDataKey {g1:>9.0}/s vs {g0:>9.0}/s in the database ({:.2})   Decrypt {d1:>9.0}/s vs {d0:>9.0}/s ({:.2})",
            g1 / g0,
            d1 / d0
        );
    }
    // Over HTTP, as clients see it. With a custom key store present every key's
    // cryptography runs on the blocking pool, the database key's too.
    let client = kms_support::sdk_client(&server.url);
    let row: Vec<(f64, f64)> = [&in_db, &in_hsm]
        .into_iter()
        .map(|key| http_data_keys(rt, &kms, caller, &client, key))
        .collect();
    let ((g0, d0), (g1, d1)) = (row[0], row[1]);
    println!(
        "custom key store over HTTP (aws-sdk-kms, 16 in flight): GenerateDataKey {g1:>8.0}/s vs {g0:>8.0}/s in the database ({:.2})   Decrypt {d1:>8.0}/s vs {d0:>8.0}/s ({:.2})",
        g1 / g0,
        d1 / d0
    );
}

/// GenerateDataKey and Decrypt of `key` per second over HTTP (aws-sdk-kms, 16 in flight).
fn http_data_keys(
    rt: &tokio::runtime::Runtime,
    kms: &Kms,
    caller: Caller<'_>,
    client: &aws_sdk_kms::Client,
    key: &str,
) -> (f64, f64) {
    let (c, k) = (client.clone(), key.to_string());
    let gdk = rt.block_on(over_http(16, move || {
        let (c, k) = (c.clone(), k.clone());
        async move {
            c.generate_data_key()
                .key_id(k)
                .number_of_bytes(32)
                .send()
                .await
                .unwrap();
        }
    }));
    let b = Blob::new(
        kms.generate_data_key(caller, key, &EncryptionContext::new(), 32)
            .unwrap()
            .ciphertext_blob,
    );
    let c = client.clone();
    let dec = rt.block_on(over_http(16, move || {
        let (c, b) = (c.clone(), b.clone());
        async move {
            c.decrypt().ciphertext_blob(b).send().await.unwrap();
        }
    }));
    (gdk, dec)
}

/// GenerateDataKey and Decrypt per second over HTTP against two KMS instances sharing
/// one PostgreSQL database (requests alternate between them; same 16 in flight).
fn shared_store(rt: &tokio::runtime::Runtime) -> (f64, f64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pg = kms_support::pg::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let url_file = pg.url_file(dir.path());
    let member = |n: usize| {
        let d = tempfile::tempdir().unwrap();
        let cfg = sealgate::kms::KmsConfig {
            store: sealgate::kms::StoreKind::Postgres,
            postgres: sealgate::kms::PostgresConfig {
                url_file: Some(url_file.clone()),
                ..Default::default()
            },
            db_path: d.path().join(format!("unused-{n}.redb")),
            ..Default::default()
        };
        rt.block_on(kms_support::start_with(cfg, d))
    };
    let servers = [member(1), member(2)];
    let clients: Arc<Vec<aws_sdk_kms::Client>> = Arc::new(
        servers
            .iter()
            .map(|s| kms_support::sdk_client(&s.url))
            .collect(),
    );
    let alice = kms_support::alice();
    let caller = Caller::in_process(&alice);
    let key = servers[0]
        .kms
        .create_key(caller, &CreateKeyOptions::default())
        .unwrap()
        .key_id;
    let next = Arc::new(AtomicUsize::new(0));
    let pick = move |clients: &Arc<Vec<aws_sdk_kms::Client>>, next: &AtomicUsize| {
        clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()].clone()
    };
    let (cs, n, k) = (clients.clone(), next.clone(), key.clone());
    let gdk = rt.block_on(over_http(16, move || {
        let (c, k) = (pick(&cs, &n), k.clone());
        async move {
            c.generate_data_key()
                .key_id(k)
                .number_of_bytes(32)
                .send()
                .await
                .unwrap();
        }
    }));
    let b = Blob::new(
        servers[1]
            .kms
            .generate_data_key(caller, &key, &EncryptionContext::new(), 32)
            .unwrap()
            .ciphertext_blob,
    );
    let (cs, n) = (clients.clone(), next.clone());
    let dec = rt.block_on(over_http(16, move || {
        let (c, b) = (pick(&cs, &n), b.clone());
        async move {
            c.decrypt().ciphertext_blob(b).send().await.unwrap();
        }
    }));
    drop(servers);
    drop(pg);
    (gdk, dec)
}
