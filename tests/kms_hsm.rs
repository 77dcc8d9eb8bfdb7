//! Keys in a custom key store over time (the deletion window), with the KMS in this
//! process on a test clock and a real SoftHSM2 token. SoftHSM2 reads its configuration
//! (`SOFTHSM2_CONF`) once, when its module initialises, and this crate may not change its
//! own environment, so this test binary has its own `main` (`harness = false`): it makes
//! a token store, runs itself again with `SOFTHSM2_CONF` set, and reports as the test
//! harness does.

#[path = "kms_support/mod.rs"]
mod kms_support;

use std::time::Duration;

use kms_support::softhsm;
use sealgate::kms::KmsConfig;
use sealgate::kms::key_stores::HsmClusterConfig;

const PIN: &str = "lifecycle-pin";
const TOKEN: &str = "lifecycle";
const CLUSTER: &str = "cluster-lifecyclehsma";

/// The token's objects as `pkcs11-tool` (OpenSC) lists them.
fn token_objects() -> String {
    softhsm::tool(None, TOKEN, PIN, &["--list-objects"])
}

fn main() {
    softhsm::rerun_with_own_token_store(TOKEN, PIN);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = "a_deleted_keys_material_leaves_the_token_at_the_end_of_its_waiting_period";
    println!("\nrunning 1 test");
    rt.block_on(a_deleted_keys_material_leaves_the_token_at_the_end_of_its_waiting_period());
    println!("test {name} ... ok");
    println!("\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
}

fn code<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_string()
}

/// When a key's deletion window ends, the KMS destroys its material in the token; a key
/// whose store is disconnected at that moment is deleted from the KMS and its material
/// stays in the token (as AWS leaves it in the cluster). Key policy, grants and the
/// deletion window apply as to any key.
async fn a_deleted_keys_material_leaves_the_token_at_the_end_of_its_waiting_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = KmsConfig {
        db_path: dir.path().join("kms.redb"),
        ..KmsConfig::default()
    };
    cfg.hsm_clusters.insert(
        CLUSTER.into(),
        HsmClusterConfig {
            module: softhsm::module(),
            token_label: TOKEN.into(),
            trust_anchor_certificate_file: None,
        },
    );
    let server = kms_support::start_with(cfg, dir).await;
    let kms = kms_support::sdk_client(&server.url);
    let anchor = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    let store = softhsm::connected_store(&kms, "lifecycle", CLUSTER, anchor, PIN).await;
    let (gone, kept) = (
        softhsm::key_in_store(&kms, &store).await,
        softhsm::key_in_store(&kms, &store).await,
    );
    // A grant lets bob use the key, as for any key.
    kms.create_grant()
        .key_id(&gone)
        .grantee_principal("arn:aws:iam::000000000000:user/bob")
        .operations(aws_sdk_kms::types::GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    let bob = kms_support::sdk_client_as(
        &server.url,
        kms_support::BOB_ACCESS_KEY,
        kms_support::BOB_SECRET,
    );
    bob.encrypt()
        .key_id(&gone)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"granted".to_vec()))
        .send()
        .await
        .expect("the grant allows Encrypt");
    let listing = token_objects();
    assert!(
        listing.contains(&gone) && listing.contains(&kept),
        "{listing}"
    );

    for key in [&gone, &kept] {
        kms.schedule_key_deletion()
            .key_id(key)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
    }
    let e = kms
        .encrypt()
        .key_id(&gone)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "KMSInvalidStateException", "pending deletion");

    // `gone` reaches the end of its window while the store is connected.
    server.clock.advance(Duration::from_secs(8 * 86_400));
    let e = kms.describe_key().key_id(&gone).send().await.unwrap_err();
    assert_eq!(code(&e), "NotFoundException");
    assert!(
        !token_objects().contains(&gone),
        "the deleted key's material is destroyed in the token"
    );

    // `kept` reaches it while the store is disconnected: gone from the KMS, left in the
    // token.
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let e = kms.describe_key().key_id(&kept).send().await.unwrap_err();
    assert_eq!(code(&e), "NotFoundException");
    assert!(
        token_objects().contains(&kept),
        "material of a key deleted while disconnected stays in the token"
    );
    // With no key left, the store can be deleted.
    kms.delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
}
