//! Behavioural tests of the KMS service: lifecycle, state table enforcement, rotation,
//! deletion windows (injected clock), aliases, persistence and root-key refusal. The
//! shared fixture lives here; `access` (policies, grants, explain, audit) and `asym`
//! (RSA, ECC and HMAC keys) use it.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::*;
use crate::auth::Principal;

mod access;
mod asym;
mod audit;
mod database;

const DAY: Duration = Duration::from_secs(86_400);

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub cfg: KmsConfig,
    pub clock: Arc<TestClock>,
    pub kms: Kms,
}

pub(crate) fn root_key(byte: u8) -> RootKey {
    RootKey::from_bytes(&[byte; 32]).unwrap()
}

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = KmsConfig {
        db_path: dir.path().join("kms.redb"),
        ..KmsConfig::default()
    };
    Fixture::open(dir, cfg, Arc::new(TestClock::starting_now()))
}

impl Fixture {
    fn open(dir: tempfile::TempDir, cfg: KmsConfig, clock: Arc<TestClock>) -> Fixture {
        let kms = Kms::open_with_root_key(&cfg, clock.clone(), root_key(7)).unwrap();
        Fixture {
            dir,
            cfg,
            clock,
            kms,
        }
    }

    /// Closes the KMS; its directory, config and clock stay for opening it again.
    pub(crate) fn close(self) -> (tempfile::TempDir, KmsConfig, Arc<TestClock>) {
        drop(self.kms);
        (self.dir, self.cfg, self.clock)
    }

    pub(crate) fn reopen(self) -> Fixture {
        drop(self.kms);
        Fixture::open(self.dir, self.cfg, self.clock)
    }
}

static ALICE: LazyLock<Principal> = LazyLock::new(|| Principal {
    name: "alice".into(),
    account: "000000000000".into(),
    is_root: false,
});

/// The algorithm of KMS ciphertext blobs.
pub(crate) const SYM: EncryptionAlgorithm = EncryptionAlgorithm::SymmetricDefault;

/// Alice (an account user) calling in process.
pub(crate) fn alice() -> Caller<'static> {
    Caller::in_process(&ALICE)
}

pub(crate) fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    crate::test_support::pairs(pairs)
}

pub(crate) fn new_key(f: &Fixture) -> String {
    f.kms
        .create_key(alice(), &CreateKeyOptions::default())
        .unwrap()
        .key_id
}

/// Decrypts and returns the plaintext (panics on failure).
fn plain(f: &Fixture, key: Option<&str>, blob: &[u8], c: &EncryptionContext) -> Vec<u8> {
    f.kms
        .decrypt(alice(), key, blob, c, SYM)
        .unwrap()
        .plaintext
        .to_vec()
}

/// Asserts that `r` failed with the AWS exception `want`; returns the message.
#[track_caller]
pub(crate) fn assert_err<T: std::fmt::Debug>(r: Result<T, KmsError>, want: &str) -> String {
    let e = r.expect_err("expected an error");
    assert_eq!(e.aws_type(), want, "{e}");
    e.to_string()
}

#[test]
fn data_key_round_trips_and_context_must_match_exactly() {
    let f = fixture();
    let id = new_key(&f);
    let c = ctx(&[("aws:s3:arn", "arn:aws:s3:::b/k")]);
    let dk = f.kms.generate_data_key(alice(), &id, &c, 32).unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(dk.key_arn.ends_with(&id));
    let d = f
        .kms
        .decrypt(alice(), None, &dk.ciphertext_blob, &c, SYM)
        .unwrap();
    assert_eq!(d.plaintext, dk.plaintext);
    let wrong = ctx(&[("aws:s3:arn", "arn:aws:s3:::b/other")]);
    assert_err(
        f.kms
            .decrypt(alice(), None, &dk.ciphertext_blob, &wrong, SYM),
        "InvalidCiphertextException",
    );
    assert!(!format!("{dk:?}").contains(&hex::encode(&dk.plaintext[..])));
}

#[test]
fn decrypt_with_another_key_id_is_incorrect_key() {
    let f = fixture();
    let (a, b) = (new_key(&f), new_key(&f));
    let (blob, _) = f.kms.encrypt(alice(), &a, b"hi", &ctx(&[]), SYM).unwrap();
    assert_err(
        f.kms.decrypt(alice(), Some(&b), &blob, &ctx(&[]), SYM),
        "IncorrectKeyException",
    );
    let arn = f.kms.describe_key(alice(), &a).unwrap().arn;
    assert_eq!(plain(&f, Some(&arn), &blob, &ctx(&[])), b"hi");
}

#[test]
fn encrypt_rejects_empty_and_oversized_plaintext() {
    let f = fixture();
    let id = new_key(&f);
    let c = ctx(&[]);
    assert_err(
        f.kms.encrypt(alice(), &id, &[], &c, SYM),
        "ValidationException",
    );
    assert_err(
        f.kms.encrypt(alice(), &id, &[0; 4097], &c, SYM),
        "ValidationException",
    );
    let (blob, _) = f.kms.encrypt(alice(), &id, &[1; 4096], &c, SYM).unwrap();
    assert!(blob.len() <= 6144);
}

#[test]
fn disabled_key_refuses_crypto_but_allows_describe_and_enable() {
    let f = fixture();
    let id = new_key(&f);
    f.kms.disable_key(alice(), &id).unwrap();
    let c = ctx(&[]);
    assert_err(
        f.kms.generate_data_key(alice(), &id, &c, 32),
        "DisabledException",
    );
    assert_err(
        f.kms.rotate_key_on_demand(alice(), &id),
        "DisabledException",
    );
    assert_eq!(
        f.kms.describe_key(alice(), &id).unwrap().key_state,
        "Disabled"
    );
    f.kms.enable_key(alice(), &id).unwrap();
    assert!(f.kms.generate_data_key(alice(), &id, &c, 16).is_ok());
}

#[test]
fn deletion_window_then_key_and_material_are_gone() {
    let f = fixture();
    let id = new_key(&f);
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let c = ctx(&[]);
    let (blob, _) = f.kms.encrypt(alice(), &id, b"x", &c, SYM).unwrap();
    assert_err(
        f.kms.schedule_key_deletion(alice(), &id, Some(6)),
        "ValidationException",
    );
    let (_, when, days) = f.kms.schedule_key_deletion(alice(), &id, Some(7)).unwrap();
    assert_eq!(days, 7);
    assert!(when > 0);
    assert_err(
        f.kms.decrypt(alice(), None, &blob, &c, SYM),
        "KMSInvalidStateException",
    );
    assert_err(
        f.kms.schedule_key_deletion(alice(), &id, None),
        "KMSInvalidStateException",
    );
    f.clock.advance(6 * DAY);
    f.kms.tick().unwrap();
    assert_eq!(
        f.kms.describe_key(alice(), &id).unwrap().key_state,
        "PendingDeletion"
    );
    f.clock.advance(DAY);
    f.kms.tick().unwrap();
    assert_err(f.kms.describe_key(alice(), &id), "NotFoundException");
    assert_eq!(f.kms.stored_material_versions(&uuid).unwrap(), 0);
    let f = f.reopen();
    assert_err(f.kms.describe_key(alice(), &id), "NotFoundException");
}

#[test]
fn expired_deletion_is_enforced_on_access_without_tick() {
    let f = fixture();
    let id = new_key(&f);
    f.kms.schedule_key_deletion(alice(), &id, None).unwrap();
    f.clock.advance(30 * DAY);
    assert_err(f.kms.describe_key(alice(), &id), "NotFoundException");
}

#[test]
fn cancel_deletion_returns_key_to_disabled() {
    let f = fixture();
    let id = new_key(&f);
    assert_err(
        f.kms.cancel_key_deletion(alice(), &id),
        "KMSInvalidStateException",
    );
    f.kms.schedule_key_deletion(alice(), &id, Some(10)).unwrap();
    f.kms.cancel_key_deletion(alice(), &id).unwrap();
    let md = f.kms.describe_key(alice(), &id).unwrap();
    assert_eq!(md.key_state, "Disabled");
    assert_eq!(md.deletion_date, None);
    f.clock.advance(40 * DAY);
    f.kms.tick().unwrap();
    assert_eq!(
        f.kms.describe_key(alice(), &id).unwrap().key_state,
        "Disabled"
    );
}

#[test]
fn rotation_keeps_old_versions_decryptable_and_encrypts_with_newest() {
    let f = fixture();
    let id = new_key(&f);
    let c = ctx(&[("k", "v")]);
    let (old, _) = f.kms.encrypt(alice(), &id, b"old", &c, SYM).unwrap();
    f.kms.rotate_key_on_demand(alice(), &id).unwrap();
    let (new, _) = f.kms.encrypt(alice(), &id, b"new", &c, SYM).unwrap();
    assert_eq!(&new[17..21], &2u32.to_be_bytes());
    assert_eq!(&old[17..21], &1u32.to_be_bytes());
    let f = f.reopen();
    assert_eq!(plain(&f, None, &old, &c), b"old");
    assert_eq!(plain(&f, None, &new, &c), b"new");
    let rot = f.kms.list_key_rotations(alice(), &id, None, None).unwrap();
    assert_eq!(rot.items.len(), 1);
    assert!(rot.items[0].on_demand);
}

#[test]
fn automatic_rotation_happens_when_due() {
    let f = fixture();
    let id = new_key(&f);
    assert_err(
        f.kms.enable_key_rotation(alice(), &id, Some(89)),
        "ValidationException",
    );
    f.kms.enable_key_rotation(alice(), &id, Some(90)).unwrap();
    let st = f.kms.get_key_rotation_status(alice(), &id).unwrap();
    assert!(st.enabled);
    assert_eq!(st.period_days, Some(90));
    f.clock.advance(89 * DAY);
    f.kms.tick().unwrap();
    assert!(
        f.kms
            .list_key_rotations(alice(), &id, None, None)
            .unwrap()
            .items
            .is_empty()
    );
    f.clock.advance(DAY);
    f.kms.tick().unwrap();
    let rot = f.kms.list_key_rotations(alice(), &id, None, None).unwrap();
    assert_eq!(rot.items.len(), 1);
    assert!(!rot.items[0].on_demand);
    // Also due-on-access: the next period passes, an encrypt triggers rotation 2.
    f.clock.advance(90 * DAY);
    let (blob, _) = f.kms.encrypt(alice(), &id, b"z", &ctx(&[]), SYM).unwrap();
    assert_eq!(&blob[17..21], &3u32.to_be_bytes());
    f.kms.disable_key_rotation(alice(), &id).unwrap();
    assert!(!f.kms.get_key_rotation_status(alice(), &id).unwrap().enabled);
}

#[test]
fn aliases_resolve_update_and_reserve_aws_prefix() {
    let f = fixture();
    let (a, b) = (new_key(&f), new_key(&f));
    f.kms.create_alias(alice(), "alias/x", &a).unwrap();
    assert_err(
        f.kms.create_alias(alice(), "alias/x", &b),
        "AlreadyExistsException",
    );
    assert_err(
        f.kms.create_alias(alice(), "alias/aws/mine", &a),
        "NotAuthorizedException",
    );
    assert_err(
        f.kms.create_alias(alice(), "noprefix", &a),
        "ValidationException",
    );
    f.kms.update_alias(alice(), "alias/x", &b).unwrap();
    let alias_arn = "arn:aws:kms:us-east-1:000000000000:alias/x";
    assert_eq!(f.kms.describe_key(alice(), alias_arn).unwrap().key_id, b);
    let listed = f.kms.list_aliases(alice(), Some(&b), None, None).unwrap();
    assert_eq!(listed.items.len(), 1);
    f.kms.delete_alias(alice(), "alias/x").unwrap();
    assert_err(f.kms.describe_key(alice(), "alias/x"), "NotFoundException");
    // Aliases are not accepted where AWS wants a key id.
    f.kms.create_alias(alice(), "alias/y", &a).unwrap();
    assert_err(f.kms.disable_key(alice(), "alias/y"), "NotFoundException");
}

#[test]
fn service_managed_key_is_created_once_usable_only_via_s3_and_cannot_be_managed() {
    let f = fixture();
    let arn = f.kms.service_managed_key("alias/aws/s3").unwrap();
    assert_eq!(f.kms.service_managed_key("alias/aws/s3").unwrap(), arn);
    let md = f.kms.describe_key(alice(), "alias/aws/s3").unwrap();
    assert_eq!((md.key_manager, md.arn.as_str()), ("AWS", arn.as_str()));
    // As on AWS, the aws/s3 key's fixed policy allows use only through S3.
    let via_s3 = CallContext::s3(None, None);
    let dk = f
        .kms
        .generate_data_key(Caller::new(alice().principal, &via_s3), &arn, &ctx(&[]), 32)
        .unwrap();
    f.kms
        .decrypt(
            Caller::new(alice().principal, &via_s3),
            None,
            &dk.ciphertext_blob,
            &ctx(&[]),
            SYM,
        )
        .unwrap();
    assert_err(
        f.kms.generate_data_key(alice(), &arn, &ctx(&[]), 32),
        "AccessDeniedException",
    );
    assert_err(
        f.kms.put_key_policy(
            alice(),
            &arn,
            None,
            &policy::default_policy_text("000000000000"),
            true,
        ),
        "AccessDeniedException",
    );
    assert!(
        f.kms
            .get_key_policy(alice(), &arn, None)
            .unwrap()
            .contains("kms:ViaService")
    );
    for r in [
        f.kms.disable_key(alice(), &arn),
        f.kms.schedule_key_deletion(alice(), &arn, None).map(drop),
        f.kms.disable_key_rotation(alice(), &arn),
    ] {
        assert_err(r, "AccessDeniedException");
    }
    assert_err(
        f.kms.delete_alias(alice(), "alias/aws/s3"),
        "NotAuthorizedException",
    );
    let f = f.reopen();
    assert_eq!(f.kms.service_managed_key("alias/aws/s3").unwrap(), arn);
}

#[test]
fn external_origin_key_is_pending_import_and_unusable() {
    let f = fixture();
    let md = f
        .kms
        .create_key(
            alice(),
            &CreateKeyOptions {
                external: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((md.key_state, md.origin), ("PendingImport", "EXTERNAL"));
    assert_err(
        f.kms.encrypt(alice(), &md.key_id, b"x", &ctx(&[]), SYM),
        "KMSInvalidStateException",
    );
    assert_err(
        f.kms.enable_key_rotation(alice(), &md.key_id, None),
        "UnsupportedOperationException",
    );
}

#[test]
fn list_keys_pages_with_markers() {
    let f = fixture();
    let mut ids: Vec<String> = (0..5).map(|_| new_key(&f)).collect();
    ids.sort();
    let p1 = f.kms.list_keys(alice(), Some(2), None).unwrap();
    let p2 = f
        .kms
        .list_keys(alice(), Some(2), p1.next_marker.as_deref())
        .unwrap();
    let p3 = f
        .kms
        .list_keys(alice(), Some(2), p2.next_marker.as_deref())
        .unwrap();
    assert!(p3.next_marker.is_none());
    let all: Vec<String> = [p1.items, p2.items, p3.items]
        .concat()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(all, ids);
    assert_err(
        f.kms.list_keys(alice(), Some(0), None),
        "ValidationException",
    );
    assert_err(
        f.kms.list_keys(alice(), None, Some("garbage")),
        "InvalidMarkerException",
    );
}

#[test]
fn re_encrypt_moves_ciphertext_to_another_key_and_context() {
    let f = fixture();
    let (a, b) = (new_key(&f), new_key(&f));
    let (blob, _) = f
        .kms
        .encrypt(alice(), &a, b"move me", &ctx(&[("x", "1")]), SYM)
        .unwrap();
    let (moved, src, dst) = f
        .kms
        .re_encrypt(
            alice(),
            &ReEncryptParams {
                ciphertext: &blob,
                source_key_id: None,
                source_context: &ctx(&[("x", "1")]),
                source_algorithm: SYM,
                destination_key_id: &b,
                destination_context: &ctx(&[("y", "2")]),
                destination_algorithm: SYM,
            },
        )
        .unwrap();
    assert!(src.ends_with(&a) && dst.ends_with(&b));
    let d = f
        .kms
        .decrypt(alice(), Some(&b), &moved, &ctx(&[("y", "2")]), SYM)
        .unwrap();
    assert_eq!(&d.plaintext[..], b"move me");
}

#[test]
fn health_reads_the_database_and_creates_no_key() {
    let f = fixture();
    f.kms.health().unwrap();
    f.kms.health().unwrap();
    let keys = f.kms.list_keys(alice(), None, None).unwrap();
    assert!(keys.items.is_empty(), "{:?}", keys.items);
}

#[test]
fn callers_from_another_account_are_denied() {
    let f = fixture();
    let id = new_key(&f);
    let mallory = Principal {
        name: "mallory".into(),
        account: "999999999999".into(),
        is_root: true,
    };
    assert_err(
        f.kms.describe_key(Caller::in_process(&mallory), &id),
        "AccessDeniedException",
    );
    assert_err(
        f.kms
            .create_key(Caller::in_process(&mallory), &CreateKeyOptions::default()),
        "AccessDeniedException",
    );
}

#[test]
fn key_ids_in_wrong_forms_are_not_found() {
    let f = fixture();
    let id = new_key(&f);
    for bad in [
        "not-a-uuid",
        "arn:aws:kms:eu-west-1:000000000000:key/00000000-0000-0000-0000-000000000000",
        &format!("arn:aws:kms:us-east-1:111111111111:key/{id}"),
        "alias/missing",
    ] {
        let r = f.kms.describe_key(alice(), bad);
        assert_eq!(r.unwrap_err().aws_type(), "NotFoundException", "{bad}");
    }
    assert_err(f.kms.describe_key(alice(), ""), "ValidationException");
}

/// Issue 19: CreateKey had no cap and key generation no rate, so one principal could
/// fill the database or keep the CPU busy generating RSA keys. AWS's quota of keys per
/// account (and a per-principal cap) is LimitExceededException; the weighted rate of RSA
/// generations per principal is ThrottlingException.
#[test]
fn key_quotas_and_the_rsa_generation_rate_are_per_principal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = KmsConfig {
        db_path: dir.path().join("kms.redb"),
        max_keys: 5,
        max_keys_per_principal: 3,
        rsa_generation_burst: 12,
        ..KmsConfig::default()
    };
    let f = Fixture::open(dir, cfg, Arc::new(TestClock::starting_now()));
    let bob = Principal {
        name: "bob".into(),
        account: "000000000000".into(),
        is_root: false,
    };
    let bob = Caller::in_process(&bob);
    let create = |who| f.kms.create_key(who, &CreateKeyOptions::default());
    for _ in 0..3 {
        create(alice()).unwrap();
    }
    let m = assert_err(create(alice()), "LimitExceededException");
    assert!(m.contains("quota of keys per principal"), "{m}");
    create(bob).unwrap();
    create(bob).unwrap();
    let m = assert_err(create(bob), "LimitExceededException");
    assert!(m.contains("its quota of 5"), "{m}");
    // RSA generations are weighted: RSA_3072 costs 4 of a burst of 12 units.
    let sym = f.kms.list_keys(alice(), None, None).unwrap().items[0]
        .0
        .clone();
    let pair = |who| {
        f.kms
            .generate_data_key_pair(who, &sym, &ctx(&[]), KeySpec::Rsa3072, false)
    };
    for _ in 0..3 {
        pair(alice()).unwrap();
    }
    assert_err(pair(alice()), "ThrottlingException");
    pair(bob).unwrap(); // bob has his own rate
    f.clock.advance(Duration::from_millis(400)); // 10 units per second
    pair(alice()).unwrap();
}
