//! Behavioural tests of the KMS database through `Kms`: persistence across reopen, the
//! root key (wrong key, from a file or the environment), authenticated rows (edits,
//! moves, older plain rows), private files.

use super::*;

#[test]
fn persistence_survives_reopen_with_aliases_tags_and_state() {
    let f = fixture();
    let id = new_key(&f);
    f.kms.create_alias(alice(), "alias/app", &id).unwrap();
    f.kms
        .tag_resource(alice(), &id, &[("team".into(), "blue".into())])
        .unwrap();
    f.kms.update_key_description(alice(), &id, "hello").unwrap();
    let (blob, _) = f
        .kms
        .encrypt(alice(), "alias/app", b"p", &ctx(&[]), SYM)
        .unwrap();
    f.kms.disable_key(alice(), &id).unwrap();
    let f = f.reopen();
    let md = f.kms.describe_key(alice(), "alias/app").unwrap();
    assert_eq!(
        (md.key_id.as_str(), md.key_state, md.description.as_str()),
        (id.as_str(), "Disabled", "hello")
    );
    let tags = f.kms.list_resource_tags(alice(), &id, None, None).unwrap();
    assert_eq!(tags.items, vec![("team".to_string(), "blue".to_string())]);
    f.kms.enable_key(alice(), &id).unwrap();
    assert_eq!(plain(&f, None, &blob, &ctx(&[])), b"p");
}

#[test]
fn wrong_root_key_is_refused_and_changes_nothing() {
    let f = fixture();
    let id = new_key(&f);
    let (dir, cfg, clock) = f.close();
    let before = std::fs::read(&cfg.db_path).unwrap();
    let err = Kms::open_with_root_key(&cfg, clock.clone(), root_key(8)).unwrap_err();
    assert!(matches!(err, KmsError::WrongRootKey(_)), "{err}");
    assert!(err.to_string().contains("root key does not match"));
    assert_eq!(std::fs::read(&cfg.db_path).unwrap(), before);
    let kms = Kms::open_with_root_key(&cfg, clock, root_key(7)).unwrap();
    assert!(kms.describe_key(alice(), &id).is_ok());
    drop(dir);
}

#[test]
fn root_key_comes_from_file_or_env() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("root.key");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let cfg = KmsConfig {
        db_path: dir.path().join("kms.redb"),
        root_key_file: Some(key_file.clone()),
        ..KmsConfig::default()
    };
    // Readable by others: refused, naming the file and the fix.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Kms::open(&cfg).unwrap_err().to_string();
        assert!(
            err.contains(&key_file.display().to_string()) && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let kms = Kms::open(&cfg).unwrap();
    assert!(
        kms.create_key(alice(), &CreateKeyOptions::default())
            .is_ok()
    );
    drop(kms);
    let cfg_env = KmsConfig {
        root_key_file: None,
        root_key_env: "SEALGATE_TEST_ROOT_KEY_UNSET_VAR".into(),
        ..cfg
    };
    let err = Kms::open(&cfg_env).unwrap_err();
    assert!(
        err.to_string().contains("SEALGATE_TEST_ROOT_KEY_UNSET_VAR"),
        "{err}"
    );
}

/// Issue 19: key records (policies, tags, states), aliases and grants were plain JSON
/// in the database: whoever could write the file could rewrite a policy. Now each row is
/// MACed under a root-derived key, bound to its table and row key.
#[test]
fn database_rows_are_authenticated_so_edited_or_moved_rows_refuse_the_open() {
    use crate::kms::store::testing;
    let f = fixture();
    let a = new_key(&f);
    let b = new_key(&f);
    f.kms.create_alias(alice(), "alias/app", &a).unwrap();
    let (dir, cfg, clock) = f.close();
    let (ida, idb) = (
        uuid::Uuid::parse_str(&a).unwrap(),
        uuid::Uuid::parse_str(&b).unwrap(),
    );
    let row = testing::key_row(&cfg.db_path, ida);
    assert!(row.starts_with(b"SGR1"), "an authenticated row");
    // A changed policy, MAC left as it was.
    testing::edit_key_row(&cfg.db_path, ida, |r| {
        let s = String::from_utf8_lossy(r)
            .replace("Enable IAM User Permissions", "Enable IAM User Permissionz");
        *r = s.into_bytes();
    });
    let err = Kms::open_with_root_key(&cfg, clock.clone(), root_key(7)).unwrap_err();
    assert!(err.to_string().contains("does not authenticate"), "{err}");
    // A valid row moved to another key's place.
    testing::edit_key_row(&cfg.db_path, ida, |r| *r = row.clone());
    let b_row = testing::key_row(&cfg.db_path, idb);
    testing::edit_key_row(&cfg.db_path, idb, |r| *r = row.clone());
    let err = Kms::open_with_root_key(&cfg, clock.clone(), root_key(7)).unwrap_err();
    assert!(err.to_string().contains("does not authenticate"), "{err}");
    // A plain JSON row, once the database is authenticated.
    testing::edit_key_row(&cfg.db_path, idb, |r| *r = b_row[36..].to_vec());
    let err = Kms::open_with_root_key(&cfg, clock.clone(), root_key(7)).unwrap_err();
    assert!(err.to_string().contains("is not authenticated"), "{err}");
    testing::edit_key_row(&cfg.db_path, idb, |r| *r = b_row.clone());
    let kms = Kms::open_with_root_key(&cfg, clock, root_key(7)).unwrap();
    assert_eq!(kms.describe_key(alice(), "alias/app").unwrap().key_id, a);
    drop(dir);
}

#[test]
fn plain_rows_of_an_older_database_are_read_and_authenticated_at_open() {
    use crate::kms::store::testing;
    let f = fixture();
    let id = new_key(&f);
    f.kms.create_alias(alice(), "alias/old", &id).unwrap();
    let bob = Principal {
        name: "bob".into(),
        account: "000000000000".into(),
        is_root: false,
    };
    let req = GrantRequest {
        grantee_principal: bob.arn(),
        operations: vec!["Encrypt".into()],
        ..Default::default()
    };
    f.kms.create_grant(alice(), &id, &req).unwrap();
    let (dir, cfg, clock) = f.close();
    testing::make_legacy(&cfg.db_path);
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert!(testing::key_row(&cfg.db_path, uuid).starts_with(b"{"));
    let kms = Kms::open_with_root_key(&cfg, clock.clone(), root_key(7)).unwrap();
    assert_eq!(kms.describe_key(alice(), "alias/old").unwrap().key_id, id);
    let page = kms
        .list_grants(alice(), &id, None, None, None, None)
        .unwrap();
    assert_eq!(page.items.len(), 1);
    kms.encrypt(Caller::in_process(&bob), &id, b"x", &ctx(&[]), SYM)
        .unwrap();
    drop(kms);
    // Migrated: the rows now carry their MAC, and a plain row is refused from now on.
    let row = testing::key_row(&cfg.db_path, uuid);
    assert!(row.starts_with(b"SGR1"));
    testing::edit_key_row(&cfg.db_path, uuid, |r| *r = row[36..].to_vec());
    let err = Kms::open_with_root_key(&cfg, clock, root_key(7)).unwrap_err();
    assert!(err.to_string().contains("is not authenticated"), "{err}");
    drop(dir);
}

/// Issue 19: the database and the audit log were created with the process umask
/// (typically 0644: readable by every local user).
#[cfg(unix)]
#[test]
fn database_and_audit_log_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    new_key(&f);
    f.kms.flush_audit().unwrap();
    for p in [f.cfg.db_path.clone(), f.cfg.audit_path()] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

fn opened(kms: &Kms, blob: &[u8], c: &EncryptionContext) -> Vec<u8> {
    kms.decrypt(alice(), None, blob, c, SYM)
        .unwrap()
        .plaintext
        .to_vec()
}

/// `sealgate kms rotate-root`, as docs/design/root-key-rotation.md describes it: an
/// instance started with the new root key and the previous one serves what either key
/// sealed; after the rotation the new key alone opens the database and the old one is
/// refused. Imported material and import tokens from before the rotation still work.
#[test]
fn root_key_rotation_reseals_everything_and_the_new_key_alone_opens_it() {
    use crate::kms::import::{WrappingAlgorithm, client};
    let (old, new) = (7, 9);
    let both = || root_key(new).with_previous(root_key(old)).unwrap();
    let f = fixture();
    let sym = new_key(&f);
    let c = ctx(&[("app", "x")]);
    let (before, _) = f.kms.encrypt(alice(), &sym, b"before", &c, SYM).unwrap();
    let external = f
        .kms
        .create_key(
            alice(),
            &CreateKeyOptions {
                external: true,
                ..Default::default()
            },
        )
        .unwrap()
        .key_id;
    let material = [5u8; 32];
    let import = |kms: &Kms| {
        let (_, p) = kms
            .get_parameters_for_import(alice(), &external, "RSAES_OAEP_SHA_256", None)
            .unwrap();
        let wrapped = client::wrap(&p.public_key, WrappingAlgorithm::RsaesOaepSha256, &material);
        (p.import_token, wrapped)
    };
    let (token, wrapped) = import(&f.kms);
    f.kms
        .import_key_material(alice(), &external, &token, &wrapped, MaterialExpiry::Never)
        .unwrap();
    let (imported, _) = f.kms.encrypt(alice(), &external, b"imp", &c, SYM).unwrap();
    let (pending_token, pending_wrapped) = import(&f.kms);
    let (dir, cfg, clock) = f.close();

    // The new key alone does not open a database sealed under the old one.
    let err = Kms::open_with_root_key(&cfg, clock.clone(), root_key(new)).unwrap_err();
    assert!(matches!(err, KmsError::WrongRootKey(_)), "{err}");
    // With both, before the rotation: what the old key sealed opens, and new writes are
    // still under the old key, so an instance with the old key alone reads them too.
    let kms = Kms::open_with_root_key(&cfg, clock.clone(), both()).unwrap();
    assert_eq!(opened(&kms, &before, &c), b"before");
    let later = kms
        .create_key(alice(), &CreateKeyOptions::default())
        .unwrap()
        .key_id;
    let (after, _) = kms.encrypt(alice(), &later, b"after", &c, SYM).unwrap();
    drop(kms);
    let kms = Kms::open_with_root_key(&cfg, clock.clone(), root_key(old)).unwrap();
    assert_eq!(opened(&kms, &after, &c), b"after");
    drop(kms);

    let n = crate::kms::rotate::rotate(&cfg, &both()).unwrap();
    assert_eq!((n.keys, n.material_versions), (3, 3), "{n:?}");
    // A rotation without the previous key is refused, naming the setting.
    let err = crate::kms::rotate::rotate(&cfg, &root_key(new)).unwrap_err();
    assert!(err.to_string().contains("previous_root_key_file"), "{err}");

    let err = Kms::open_with_root_key(&cfg, clock.clone(), root_key(old)).unwrap_err();
    assert!(matches!(err, KmsError::WrongRootKey(_)), "{err}");
    let kms = Kms::open_with_root_key(&cfg, clock.clone(), both()).unwrap();
    // A token issued before the rotation opens under the previous key; the same
    // material imported again is recognised under the new key's check value.
    kms.import_key_material(
        alice(),
        &external,
        &pending_token,
        &pending_wrapped,
        MaterialExpiry::Never,
    )
    .unwrap();
    drop(kms);
    let kms = Kms::open_with_root_key(&cfg, clock, root_key(new)).unwrap();
    assert_eq!(opened(&kms, &before, &c), b"before");
    assert_eq!(opened(&kms, &after, &c), b"after");
    assert_eq!(opened(&kms, &imported, &c), b"imp");
    let (token, wrapped) = import(&kms);
    kms.import_key_material(alice(), &external, &token, &wrapped, MaterialExpiry::Never)
        .unwrap();
    let (_, p) = kms
        .get_parameters_for_import(alice(), &external, "RSAES_OAEP_SHA_256", None)
        .unwrap();
    let other = client::wrap(
        &p.public_key,
        WrappingAlgorithm::RsaesOaepSha256,
        &[6u8; 32],
    );
    assert_err(
        kms.import_key_material(
            alice(),
            &external,
            &p.import_token,
            &other,
            MaterialExpiry::Never,
        ),
        "IncorrectKeyMaterialException",
    );
    // The audit chain: records from before the rotation are signed with the old key,
    // so verifying them needs it; with both keys the whole chain verifies.
    drop(kms);
    let path = cfg.audit_path();
    assert!(
        crate::kms::verify_audit_log_with_key(&path, &both(), None)
            .unwrap()
            .is_intact()
    );
    assert!(
        !crate::kms::verify_audit_log_with_key(&path, &root_key(new), None)
            .unwrap()
            .is_intact()
    );
    drop(dir);
}

#[test]
fn root_key_rotation_reseals_the_passwords_of_custom_key_stores() {
    use crate::kms::NewCustomKeyStore;
    use crate::kms::key_stores::HsmClusterConfig;
    let (old, new) = (7, 9);
    let (_dir, mut cfg, clock) = fixture().close();
    // A module that is not there: creating a store does not load it; connecting does.
    cfg.hsm_clusters.insert(
        "cluster-unittesthsma".into(),
        HsmClusterConfig {
            module: "/nonexistent/libpkcs11.so".into(),
            token_label: "t".into(),
            trust_anchor_certificate_file: None,
        },
    );
    let kms = Kms::open_with_root_key(&cfg, clock.clone(), root_key(old)).unwrap();
    let store = kms
        .create_custom_key_store(
            alice(),
            &NewCustomKeyStore {
                name: Some("s"),
                cluster_id: Some("cluster-unittesthsma"),
                trust_anchor: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
                password: Some("password-1"),
                ..Default::default()
            },
        )
        .unwrap();
    drop(kms);
    let both = root_key(new).with_previous(root_key(old)).unwrap();
    crate::kms::rotate::rotate(&cfg, &both).unwrap();
    let kms = Kms::open_with_root_key(&cfg, clock, root_key(new)).unwrap();
    assert_eq!(
        kms.custom_key_store_password(&store).unwrap().as_slice(),
        b"password-1"
    );
    // Connecting gets as far as the module: FAILED, CLUSTER_NOT_FOUND.
    kms.connect_custom_key_store(alice(), &store).unwrap();
    let page = kms
        .describe_custom_key_stores(alice(), Some(&store), None, None, None)
        .unwrap();
    assert_eq!(page.items[0].state, "FAILED");
    assert_eq!(
        page.items[0].error_code.as_deref(),
        Some("CLUSTER_NOT_FOUND")
    );
}
