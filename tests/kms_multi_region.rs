//! Multi-Region keys across the regions one sealgate serves (`kms.regions`): aws-sdk-kms
//! clients signing for different regions against the same endpoint, plus the aws-cli.

mod kms_support;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, MultiRegionKeyType, Tag};
use kms_support::{ACCESS_KEY, SECRET, cli_in, code, sdk_client_in, start_in_regions};
use sealgate::kms::{Caller, EncryptionAlgorithm};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const ACCOUNT: &str = "000000000000";

fn clients(url: &str) -> (aws_sdk_kms::Client, aws_sdk_kms::Client) {
    (
        sdk_client_in(url, EAST, ACCESS_KEY, SECRET),
        sdk_client_in(url, WEST, ACCESS_KEY, SECRET),
    )
}

async fn encrypt(c: &aws_sdk_kms::Client, key: &str, pt: &[u8]) -> Blob {
    c.encrypt()
        .key_id(key)
        .plaintext(Blob::new(pt.to_vec()))
        .encryption_context("app", "mrk")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

/// Decrypts without naming a key; returns (plaintext, key ARN).
async fn decrypt(c: &aws_sdk_kms::Client, blob: &Blob) -> (Vec<u8>, String) {
    let d = c
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("app", "mrk")
        .send()
        .await
        .unwrap();
    (d.plaintext.unwrap().into_inner(), d.key_id.unwrap())
}

async fn new_mrk(c: &aws_sdk_kms::Client) -> String {
    let md = c
        .create_key()
        .multi_region(true)
        .description("orders")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    md.key_id
}

#[tokio::test]
async fn sdk_replica_in_another_region_decrypts_the_primarys_data_and_back() {
    let s = start_in_regions(&[EAST, WEST]).await;
    let (east, west) = clients(&s.url);
    let id = new_mrk(&east).await;
    assert!(id.starts_with("mrk-") && id.len() == 36, "{id}");
    assert!(
        id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let md = east.describe_key().key_id(&id).send().await.unwrap();
    let md = md.key_metadata.unwrap();
    assert_eq!(md.multi_region, Some(true));
    let east_arn = format!("arn:aws:kms:{EAST}:{ACCOUNT}:key/{id}");
    assert_eq!(md.arn.as_deref(), Some(east_arn.as_str()));
    let cfg = md.multi_region_configuration.unwrap();
    assert_eq!(cfg.multi_region_key_type, Some(MultiRegionKeyType::Primary));
    assert_eq!(cfg.primary_key.unwrap().region.as_deref(), Some(EAST));
    assert!(cfg.replica_keys.unwrap_or_default().is_empty());

    // Keys are regional until replicated.
    assert_eq!(
        code(west.describe_key().key_id(&id).send().await),
        "NotFoundException"
    );
    let in_east = encrypt(&east, &id, b"written in us-east-1").await;

    let rep = west_replica(&east, &id, WEST).await;
    let west_arn = format!("arn:aws:kms:{WEST}:{ACCOUNT}:key/{id}");
    assert_eq!(rep.arn.as_deref(), Some(west_arn.as_str()));
    assert_eq!(rep.key_id, id);
    let cfg = rep.multi_region_configuration.unwrap();
    assert_eq!(cfg.multi_region_key_type, Some(MultiRegionKeyType::Replica));
    assert_eq!(
        cfg.primary_key.unwrap().arn.as_deref(),
        Some(east_arn.as_str())
    );

    let (pt, arn) = decrypt(&west, &in_east).await;
    assert_eq!(
        (pt.as_slice(), arn.as_str()),
        (&b"written in us-east-1"[..], west_arn.as_str())
    );
    let in_west = encrypt(&west, &west_arn, b"written in eu-west-1").await;
    let (pt, arn) = decrypt(&east, &in_west).await;
    assert_eq!(
        (pt.as_slice(), arn.as_str()),
        (&b"written in eu-west-1"[..], east_arn.as_str())
    );

    // The primary now lists its replica; both regions list the key; aliases are per region.
    let md = east.describe_key().key_id(&id).send().await.unwrap();
    let replicas = md
        .key_metadata
        .unwrap()
        .multi_region_configuration
        .unwrap()
        .replica_keys;
    let replicas = replicas.unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].arn.as_deref(), Some(west_arn.as_str()));
    let listed = west.list_keys().send().await.unwrap().keys.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_arn.as_deref(), Some(west_arn.as_str()));
    west.create_alias()
        .alias_name("alias/orders")
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let aliased = encrypt(&west, "alias/orders", b"via the west alias").await;
    assert_eq!(decrypt(&east, &aliased).await.0, b"via the west alias");
    let east_enc = east
        .encrypt()
        .key_id("alias/orders")
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(east_enc), "NotFoundException");
    // Audit events carry the region the request was signed for.
    s.kms.flush_audit().unwrap();
    let log = std::fs::read_to_string(s.kms.audit_log_path().unwrap()).unwrap();
    let alias_event = log
        .lines()
        .find(|l| l.contains(r#""eventName":"CreateAlias""#))
        .unwrap();
    assert!(
        alias_event.contains(&format!(r#""awsRegion":"{WEST}""#)),
        "{alias_event}"
    );
    assert!(alias_event.contains(&west_arn), "{alias_event}");
    // Key state is per region too.
    west.disable_key().key_id(&id).send().await.unwrap();
    let disabled = west
        .decrypt()
        .ciphertext_blob(in_east.clone())
        .encryption_context("app", "mrk")
        .send()
        .await;
    assert_eq!(code(disabled), "DisabledException");
    assert_eq!(decrypt(&east, &in_east).await.0, b"written in us-east-1");
}

async fn west_replica(
    east: &aws_sdk_kms::Client,
    id: &str,
    region: &str,
) -> aws_sdk_kms::types::KeyMetadata {
    let out = east
        .replicate_key()
        .key_id(id)
        .replica_region(region)
        .description("orders, west")
        .tags(
            Tag::builder()
                .tag_key("team")
                .tag_value("ops")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.replica_policy.unwrap().contains("kms:*"));
    assert_eq!(out.replica_tags.unwrap()[0].tag_key, "team");
    out.replica_key_metadata.unwrap()
}

#[tokio::test]
async fn sdk_rotation_of_the_primary_reaches_replicas_and_survives_restart_and_primary_swap() {
    let s = start_in_regions(&[EAST, WEST, "ap-south-1"]).await;
    let (east, west) = clients(&s.url);
    let south = sdk_client_in(&s.url, "ap-south-1", ACCESS_KEY, SECRET);
    let id = new_mrk(&east).await;
    west_replica(&east, &id, WEST).await;
    let old = encrypt(&east, &id, b"version one").await;

    east.rotate_key_on_demand()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    let replica_rotate = west.rotate_key_on_demand().key_id(&id).send().await;
    assert_eq!(code(replica_rotate), "UnsupportedOperationException");
    let replica_enable = west.enable_key_rotation().key_id(&id).send().await;
    assert_eq!(code(replica_enable), "UnsupportedOperationException");
    east.enable_key_rotation()
        .key_id(&id)
        .rotation_period_in_days(120)
        .send()
        .await
        .unwrap();
    let st = west
        .get_key_rotation_status()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    assert!(st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, Some(120));

    let new_west = encrypt(&west, &id, b"version two, west").await;
    let new_east = encrypt(&east, &id, b"version two, east").await;
    // A replica created after the rotation gets every version too.
    east.replicate_key()
        .key_id(&id)
        .replica_region("ap-south-1")
        .send()
        .await
        .unwrap();
    for c in [&east, &west, &south] {
        assert_eq!(decrypt(c, &old).await.0, b"version one");
        assert_eq!(decrypt(c, &new_west).await.0, b"version two, west");
        assert_eq!(decrypt(c, &new_east).await.0, b"version two, east");
    }
    let rotations = west.list_key_rotations().key_id(&id).send().await.unwrap();
    assert_eq!(rotations.rotations.unwrap().len(), 1);

    // UpdatePrimaryRegion: west becomes primary and takes the rotation schedule.
    east.update_primary_region()
        .key_id(&id)
        .primary_region(WEST)
        .send()
        .await
        .unwrap();
    let md = west.describe_key().key_id(&id).send().await.unwrap();
    let cfg = md.key_metadata.unwrap().multi_region_configuration.unwrap();
    assert_eq!(cfg.multi_region_key_type, Some(MultiRegionKeyType::Primary));
    let regions: Vec<_> = cfg
        .replica_keys
        .unwrap()
        .into_iter()
        .filter_map(|k| k.region)
        .collect();
    assert_eq!(regions, ["ap-south-1", EAST]);
    assert_eq!(
        code(east.rotate_key_on_demand().key_id(&id).send().await),
        "UnsupportedOperationException"
    );
    west.rotate_key_on_demand()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    let st = east
        .get_key_rotation_status()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(st.rotation_period_in_days, Some(120));
    let newest = encrypt(&south, &id, b"version three").await;
    assert_eq!(decrypt(&east, &newest).await.0, b"version three");

    // Everything is persisted: a reopened KMS (on a copy of the redb file, or a second
    // instance on the same PostgreSQL database) sees the same regions, roles and versions.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(s.db_path(), &copy).ok();
    let cfg = sealgate::kms::KmsConfig {
        db_path: copy,
        regions: vec![EAST.into(), WEST.into(), "ap-south-1".into()],
        audit_enabled: false,
        store: s.cfg.store,
        postgres: s.cfg.postgres.clone(),
        ..Default::default()
    };
    let reopened = sealgate::kms::Kms::open_with_root_key(
        &cfg,
        s.clock.clone(),
        sealgate::kms::RootKey::from_bytes(&[3; 32]).unwrap(),
    )
    .unwrap();
    let principal = kms_support::alice();
    let alice = Caller::in_process(&principal);
    let sym = EncryptionAlgorithm::SymmetricDefault;
    let ctx = [("app".to_string(), "mrk".to_string())]
        .into_iter()
        .collect();
    for region in [EAST, WEST, "ap-south-1"] {
        let k = reopened.in_region(region).unwrap();
        let d = k.decrypt(alice, None, old.as_ref(), &ctx, sym).unwrap();
        assert_eq!(&d.plaintext[..], b"version one");
        let d = k.decrypt(alice, None, newest.as_ref(), &ctx, sym).unwrap();
        assert_eq!(&d.plaintext[..], b"version three");
        let md = k.describe_key(alice, &id).unwrap();
        let want = if region == WEST { "PRIMARY" } else { "REPLICA" };
        assert_eq!(
            md.multi_region_configuration.unwrap().multi_region_key_type,
            want
        );
    }
}

#[tokio::test]
async fn sdk_multi_region_errors_have_aws_exception_names() {
    let s = start_in_regions(&[EAST, WEST]).await;
    let (east, west) = clients(&s.url);
    let replicate = |c: &aws_sdk_kms::Client, key: &str, region: &str| {
        c.replicate_key().key_id(key).replica_region(region).send()
    };
    let single = east
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let single = single.key_id;
    let not_mrk = replicate(&east, &single, WEST).await;
    assert_eq!(code(not_mrk), "UnsupportedOperationException");

    let id = new_mrk(&east).await;
    for (region, want) in [
        (EAST, "ValidationException"),
        ("sa-east-1", "UnsupportedOperationException"),
        ("Mars", "ValidationException"),
    ] {
        assert_eq!(code(replicate(&east, &id, region).await), want, "{region}");
    }
    west_replica(&east, &id, WEST).await;
    let again = replicate(&east, &id, WEST).await;
    assert_eq!(code(again), "AlreadyExistsException");
    let from_replica = replicate(&west, &id, EAST).await;
    assert_eq!(code(from_replica), "UnsupportedOperationException");
    let update = |key: &str, region: &str| {
        east.update_primary_region()
            .key_id(key)
            .primary_region(region)
            .send()
    };
    let not_mrk = update(&single, WEST).await;
    assert_eq!(code(not_mrk), "UnsupportedOperationException");

    east.disable_key().key_id(&id).send().await.unwrap();
    let disabled = update(&id, WEST).await;
    assert_eq!(code(disabled), "DisabledException");

    // A request signed for a region this sealgate does not serve.
    let south = sdk_client_in(&s.url, "sa-east-1", ACCESS_KEY, SECRET);
    assert_eq!(
        code(south.list_keys().send().await),
        "InvalidSignatureException"
    );

    let cases = [
        (
            "TrentService.ReplicateKey",
            format!(r#"{{"KeyId":"{id}"}}"#),
        ),
        (
            "TrentService.UpdatePrimaryRegion",
            format!(r#"{{"KeyId":"{id}"}}"#),
        ),
        (
            "TrentService.DescribeKey",
            r#"{"KeyId":"mrk-XYZ"}"#.to_string(),
        ),
    ];
    for (target, body) in cases {
        let (status, v) = kms_support::raw_call(&s.url, target, &body).await;
        assert_eq!(status, 400, "{target} {body}: {v}");
        assert!(
            v["__type"]
                .as_str()
                .is_some_and(|t| t.ends_with("Exception"))
        );
    }
}

#[tokio::test]
async fn sdk_primary_deletion_waits_for_its_replicas() {
    let s = start_in_regions(&[EAST, WEST]).await;
    let (east, west) = clients(&s.url);
    let id = new_mrk(&east).await;
    west_replica(&east, &id, WEST).await;
    let blob = encrypt(&east, &id, b"kept by the replica").await;
    east.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    s.clock.advance(std::time::Duration::from_secs(8 * 86_400));
    s.kms.tick().unwrap();
    let md = east.describe_key().key_id(&id).send().await.unwrap();
    assert_eq!(
        md.key_metadata.unwrap().key_state,
        Some(KeyState::PendingDeletion)
    );
    assert_eq!(decrypt(&west, &blob).await.0, b"kept by the replica");

    west.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    s.clock.advance(std::time::Duration::from_secs(8 * 86_400));
    s.kms.tick().unwrap();
    s.kms.tick().unwrap();
    assert_eq!(
        code(west.describe_key().key_id(&id).send().await),
        "NotFoundException"
    );
    assert_eq!(
        code(east.describe_key().key_id(&id).send().await),
        "NotFoundException"
    );
    let uuid = uuid::Uuid::parse_str(&id[4..]).unwrap();
    assert_eq!(s.kms.stored_material_versions(&uuid).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_replicates_and_decrypts_across_regions() {
    let s = start_in_regions(&[EAST, WEST]).await;
    let (east, west) = (cli_in(&s, EAST), cli_in(&s, WEST));
    tokio::task::spawn_blocking(move || {
        let md = east.ok(&["create-key", "--multi-region", "--description", "cli mrk"]);
        let id = md["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        assert_eq!(
            md["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"],
            "PRIMARY"
        );
        let rep = east.ok(&["replicate-key", "--key-id", &id, "--replica-region", WEST]);
        assert_eq!(
            rep["ReplicaKeyMetadata"]["Arn"],
            format!("arn:aws:kms:{WEST}:{ACCOUNT}:key/{id}")
        );
        let pt = east.fileb("pt", b"from the east");
        let enc = east.ok(&["encrypt", "--key-id", &id, "--plaintext", &pt]);
        let blob = base64_decode(&enc["CiphertextBlob"]);
        let ct = west.fileb("ct", &blob);
        let dec = west.ok(&["decrypt", "--ciphertext-blob", &ct]);
        assert_eq!(base64_decode(&dec["Plaintext"]), b"from the east");
        west.ok(&["describe-key", "--key-id", &id]);
        east.ok(&[
            "update-primary-region",
            "--key-id",
            &id,
            "--primary-region",
            WEST,
        ]);
        let md = west.ok(&["describe-key", "--key-id", &id]);
        assert_eq!(
            md["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"],
            "PRIMARY"
        );
    })
    .await
    .unwrap();
}

fn base64_decode(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn sdk_multi_region_signing_key_signs_in_one_region_and_verifies_in_the_other() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, SigningAlgorithmSpec};
    let s = start_in_regions(&[EAST, WEST]).await;
    let (east, west) = clients(&s.url);
    let id = east
        .create_key()
        .multi_region(true)
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    east.replicate_key()
        .key_id(&id)
        .replica_region(WEST)
        .send()
        .await
        .unwrap();
    let msg = Blob::new(b"signed in us-east-1".to_vec());
    let sig = east
        .sign()
        .key_id(&id)
        .message(msg.clone())
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap()
        .signature
        .unwrap();
    let v = west
        .verify()
        .key_id(&id)
        .message(msg)
        .signature(sig)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    assert!(v.signature_valid, "the replica holds the same key pair");
    let pub_east = east.get_public_key().key_id(&id).send().await.unwrap();
    let pub_west = west.get_public_key().key_id(&id).send().await.unwrap();
    assert_eq!(pub_east.public_key, pub_west.public_key);
    assert_eq!(pub_west.key_spec, Some(KeySpec::EccNistP256));
}

#[tokio::test]
async fn sdk_external_origin_is_refused_for_non_symmetric_key_specs() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, OriginType};
    let s = start_in_regions(&[EAST]).await;
    let (east, _) = clients(&s.url);
    let r = east
        .create_key()
        .origin(OriginType::External)
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    assert_eq!(code(r), "UnsupportedOperationException");
}
