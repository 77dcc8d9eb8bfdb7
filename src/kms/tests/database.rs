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
    let Fixture {
        dir,
        cfg,
        clock,
        kms,
    } = f;
    drop(kms);
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
    let Fixture {
        dir,
        cfg,
        clock,
        kms,
    } = f;
    drop(kms);
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
    let Fixture {
        dir,
        cfg,
        clock,
        kms,
    } = f;
    drop(kms);
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
