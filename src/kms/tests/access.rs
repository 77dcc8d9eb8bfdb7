//! Behavioural tests of access control through `Kms`: key policies (Put/Get, lockout
//! check, malformed documents), grants (create, use, retire, revoke, persistence),
//! explain / dry run, usage counters.

use std::sync::LazyLock;

use super::{Fixture, SYM, alice, assert_err, ctx, fixture, new_key};
use crate::auth::Principal;
use crate::kms::ops::Op;
use crate::kms::*;

static BOB: LazyLock<Principal> = LazyLock::new(|| Principal {
    name: "bob".into(),
    account: "000000000000".into(),
    is_root: false,
});

/// Bob (another user of the account) calling in process.
fn bob() -> Caller<'static> {
    Caller::in_process(&BOB)
}

const DENY_BOB: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*"},
 {"Sid":"NoBobCrypto","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":["kms:GenerateDataKey*","kms:Decrypt"],"Resource":"*"}]}"#;

#[test]
fn put_key_policy_denying_a_principal_refuses_its_data_keys_and_decrypts() {
    let f = fixture();
    let id = new_key(&f);
    let c = ctx(&[("app", "x")]);
    let blob = f
        .kms
        .generate_data_key(bob(), &id, &c, 32)
        .unwrap()
        .ciphertext_blob;
    f.kms
        .put_key_policy(alice(), &id, None, DENY_BOB, false)
        .unwrap();
    let msg = assert_err(
        f.kms.generate_data_key(bob(), &id, &c, 32),
        "AccessDeniedException",
    );
    assert!(
        msg.contains("arn:aws:iam::000000000000:user/bob")
            && msg.contains("kms:GenerateDataKey")
            && msg.contains(&id)
            && msg.contains("explicit deny")
            && msg.contains("NoBobCrypto"),
        "{msg}"
    );
    assert_err(
        f.kms.decrypt(bob(), None, &blob, &c, SYM),
        "AccessDeniedException",
    );
    // Others are unaffected; bob may still do what the deny does not name.
    f.kms.decrypt(alice(), None, &blob, &c, SYM).unwrap();
    f.kms.encrypt(bob(), &id, b"hi", &c, SYM).unwrap();
    // The policy reads back exactly and survives a restart.
    assert_eq!(f.kms.get_key_policy(alice(), &id, None).unwrap(), DENY_BOB);
    assert_eq!(
        f.kms.list_key_policies(alice(), &id, None, None).unwrap(),
        vec!["default"]
    );
    let f = f.reopen();
    assert_err(
        f.kms.decrypt(bob(), None, &blob, &c, SYM),
        "AccessDeniedException",
    );
}

#[test]
fn new_key_has_the_default_policy_and_create_key_accepts_one() {
    let f = fixture();
    let plain = f
        .kms
        .create_key(alice(), &CreateKeyOptions::default())
        .unwrap();
    let p = f.kms.get_key_policy(alice(), &plain.key_id, None).unwrap();
    assert!(
        p.contains("Enable IAM User Permissions") && p.contains("arn:aws:iam::000000000000:root")
    );
    let own = f
        .kms
        .create_key(
            alice(),
            &CreateKeyOptions {
                policy: Some(DENY_BOB.into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_err(
        f.kms.generate_data_key(bob(), &own.key_id, &ctx(&[]), 16),
        "AccessDeniedException",
    );
    assert_err(
        f.kms.get_key_policy(alice(), &own.key_id, Some("other")),
        "NotFoundException",
    );
}

#[test]
fn lockout_safety_check_rejects_a_policy_that_locks_the_caller_out_unless_bypassed() {
    let f = fixture();
    let id = new_key(&f);
    let only_bob = r#"{"Statement":[{"Sid":"Bob","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"kms:*","Resource":"*"}]}"#;
    let msg = assert_err(
        f.kms.put_key_policy(alice(), &id, None, only_bob, false),
        "MalformedPolicyDocumentException",
    );
    assert!(
        msg.contains("will not allow you to update the key policy"),
        "{msg}"
    );
    // Same for CreateKey.
    assert_err(
        f.kms.create_key(
            alice(),
            &CreateKeyOptions {
                policy: Some(only_bob.into()),
                ..Default::default()
            },
        ),
        "MalformedPolicyDocumentException",
    );
    // With the bypass flag it applies, and alice is locked out as warned.
    f.kms
        .put_key_policy(alice(), &id, None, only_bob, true)
        .unwrap();
    assert_err(f.kms.describe_key(alice(), &id), "AccessDeniedException");
    f.kms.describe_key(bob(), &id).unwrap();
}

#[test]
fn malformed_policy_names_the_offending_statement() {
    let f = fixture();
    let id = new_key(&f);
    let bad = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Permit","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
    let msg = assert_err(
        f.kms.put_key_policy(alice(), &id, None, bad, true),
        "MalformedPolicyDocumentException",
    );
    assert!(
        msg.contains("Statement[2].Effect: expected Allow or Deny"),
        "{msg}"
    );
    // Nothing changed.
    assert!(
        f.kms
            .get_key_policy(alice(), &id, None)
            .unwrap()
            .contains("Enable IAM")
    );
}

const ALICE_ONLY: &str = r#"{"Statement":[{"Sid":"Alice","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]}"#;

fn alice_only_key(f: &Fixture) -> String {
    f.kms
        .create_key(
            alice(),
            &CreateKeyOptions {
                policy: Some(ALICE_ONLY.into()),
                ..Default::default()
            },
        )
        .unwrap()
        .key_id
}

#[test]
fn grant_lets_the_grantee_decrypt_until_retired_or_revoked_and_persists() {
    let f = fixture();
    let id = alice_only_key(&f);
    let c = ctx(&[("app", "x")]);
    let blob = f
        .kms
        .generate_data_key(alice(), &id, &c, 32)
        .unwrap()
        .ciphertext_blob;
    assert_err(
        f.kms.decrypt(bob(), None, &blob, &c, SYM),
        "AccessDeniedException",
    );
    let req = GrantRequest {
        grantee_principal: bob().principal.arn(),
        retiring_principal: Some(alice().principal.arn()),
        operations: vec!["Decrypt".into()],
        constraints: Some(GrantConstraints {
            encryption_context_subset: Some(ctx(&[("app", "x")])),
            ..Default::default()
        }),
        name: Some("bob-reads".into()),
    };
    let (gid, token) = f.kms.create_grant(alice(), &id, &req).unwrap();
    // Name idempotency: same name + same parameters = same grant.
    assert_eq!(f.kms.create_grant(alice(), &id, &req).unwrap().0, gid);
    f.kms.decrypt(bob(), None, &blob, &c, SYM).unwrap();
    // Grant tokens are accepted on crypto calls; garbage ones are refused.
    let call = CallContext {
        grant_tokens: vec![token.clone()],
        ..Default::default()
    };
    f.kms
        .decrypt(Caller::new(bob().principal, &call), None, &blob, &c, SYM)
        .unwrap();
    let bad = CallContext {
        grant_tokens: vec!["garbage".into()],
        ..Default::default()
    };
    assert_err(
        f.kms
            .decrypt(Caller::new(bob().principal, &bad), None, &blob, &c, SYM),
        "InvalidGrantTokenException",
    );
    // Only Decrypt, only with the constrained context.
    assert_err(
        f.kms.encrypt(bob(), &id, b"x", &c, SYM),
        "AccessDeniedException",
    );
    let other = ctx(&[("app", "y")]);
    let blob_y = f.kms.encrypt(alice(), &id, b"y", &other, SYM).unwrap().0;
    assert_err(
        f.kms.decrypt(bob(), None, &blob_y, &other, SYM),
        "AccessDeniedException",
    );
    // explain names the grant.
    let x = f.kms.explain(bob(), "Decrypt", &id, &c).unwrap();
    assert!(
        x.allowed
            && x.reason
                == Reason::Grant {
                    grant_id: gid.clone(),
                    name: Some("bob-reads".into())
                }
    );
    // Listed; persisted across restarts.
    let f = f.reopen();
    let page = f
        .kms
        .list_grants(alice(), &id, None, None, None, None)
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].grant_id, gid);
    let retirable = f
        .kms
        .list_retirable_grants(alice(), &alice().principal.arn(), None, None)
        .unwrap();
    assert_eq!(retirable.items.len(), 1);
    f.kms.decrypt(bob(), None, &blob, &c, SYM).unwrap();
    // Bob (grantee without RetireGrant) may not retire it; alice (retiring) may.
    assert_err(
        f.kms.retire_grant(bob(), Some(&token), None, None),
        "AccessDeniedException",
    );
    f.kms
        .retire_grant(alice(), Some(&token), None, None)
        .unwrap();
    assert_err(
        f.kms.decrypt(bob(), None, &blob, &c, SYM),
        "AccessDeniedException",
    );
    // A second grant, revoked by the key's administrator.
    let (gid2, _) = f
        .kms
        .create_grant(
            alice(),
            &id,
            &GrantRequest {
                name: None,
                constraints: None,
                ..req
            },
        )
        .unwrap();
    f.kms.decrypt(bob(), None, &blob, &c, SYM).unwrap();
    assert_err(
        f.kms.revoke_grant(bob(), &id, &gid2),
        "AccessDeniedException",
    );
    f.kms.revoke_grant(alice(), &id, &gid2).unwrap();
    assert_err(
        f.kms.decrypt(bob(), None, &blob, &c, SYM),
        "AccessDeniedException",
    );
    assert_err(f.kms.revoke_grant(alice(), &id, &gid2), "NotFoundException");
    let f = f.reopen();
    assert!(
        f.kms
            .list_grants(alice(), &id, None, None, None, None)
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn grantee_with_create_grant_can_only_pass_on_a_subset() {
    let f = fixture();
    let id = alice_only_key(&f);
    let grant = |ops: &[&str], to: &Principal| GrantRequest {
        grantee_principal: to.arn(),
        operations: ops.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    f.kms
        .create_grant(alice(), &id, &grant(&["Decrypt", "CreateGrant"], &BOB))
        .unwrap();
    let carol = Principal {
        name: "carol".into(),
        ..BOB.clone()
    };
    f.kms
        .create_grant(bob(), &id, &grant(&["Decrypt"], &carol))
        .unwrap();
    assert_err(
        f.kms.create_grant(bob(), &id, &grant(&["Encrypt"], &carol)),
        "AccessDeniedException",
    );
    assert_err(
        f.kms
            .create_grant(Caller::in_process(&carol), &id, &grant(&["Decrypt"], &BOB)),
        "AccessDeniedException",
    );
}

#[test]
fn explain_and_dry_run_name_the_deciding_statement() {
    let f = fixture();
    let id = f
        .kms
        .create_key(
            alice(),
            &CreateKeyOptions {
                policy: Some(DENY_BOB.into()),
                ..Default::default()
            },
        )
        .unwrap()
        .key_id;
    let x = f.kms.explain(bob(), "kms:Decrypt", &id, &ctx(&[])).unwrap();
    assert!(!x.allowed);
    assert_eq!(
        x.reason,
        Reason::PolicyDeny {
            statement: 1,
            sid: Some("NoBobCrypto".into())
        }
    );
    assert!(
        x.to_string()
            .contains("explicitly denied by key policy Statement[1] (Sid \"NoBobCrypto\")")
    );
    let y = f.kms.explain(alice(), "decrypt", &id, &ctx(&[])).unwrap();
    assert!(y.allowed && y.action == "kms:Decrypt");
    let mallory = Principal {
        account: "999999999999".into(),
        ..BOB.clone()
    };
    let z = f
        .kms
        .explain(Caller::in_process(&mallory), "Encrypt", &id, &ctx(&[]))
        .unwrap();
    assert_eq!(z.reason, Reason::NoMatch);
    // Dry run: would succeed → DryRunOperationException with the explanation.
    let e = f.kms.dry_run(alice(), Op::GenerateDataKey, &id, &ctx(&[]));
    assert_eq!(e.aws_type(), "DryRunOperationException");
    assert!(e.to_string().contains("Enable IAM User Permissions"), "{e}");
    let e = f.kms.dry_run(bob(), Op::GenerateDataKey, &id, &ctx(&[]));
    assert_eq!(e.aws_type(), "AccessDeniedException");
    f.kms.disable_key(alice(), &id).unwrap();
    let e = f.kms.dry_run(alice(), Op::GenerateDataKey, &id, &ctx(&[]));
    assert_eq!(e.aws_type(), "DisabledException");
    let x = f
        .kms
        .explain(alice(), "GenerateDataKey", &id, &ctx(&[]))
        .unwrap();
    assert!(x.allowed && x.state_error.is_some());
}

#[test]
fn usage_counters_count_successful_calls_by_operation() {
    let f = fixture();
    let id = new_key(&f);
    for _ in 0..3 {
        f.kms
            .generate_data_key(alice(), &id, &ctx(&[]), 32)
            .unwrap();
    }
    let blob = f.kms.encrypt(alice(), &id, b"x", &ctx(&[]), SYM).unwrap().0;
    f.kms.decrypt(alice(), None, &blob, &ctx(&[]), SYM).unwrap();
    let u = f.kms.key_usage(alice(), &id).unwrap();
    assert_eq!(u.calls.get("GenerateDataKey"), Some(&3));
    assert_eq!(u.calls.get("Encrypt"), Some(&1));
    assert_eq!(u.calls.get("Decrypt"), Some(&1));
    assert_eq!(u.last_operation.as_deref(), Some("Decrypt"));
    assert!(u.last_used_ms.is_some());
}
