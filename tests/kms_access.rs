//! KMS access control and audit through the JSON API, driven by aws-sdk-kms as two
//! principals: alice (the account root) and bob (a user of the same account).

mod kms_support;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, GrantConstraints, GrantOperation};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kms_support::{BOB_ACCESS_KEY, BOB_SECRET, sdk_client, sdk_client_as, start};

/// The AWS error (code, message) of a failed SDK call.
fn err<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    r: Result<T, aws_sdk_kms::error::SdkError<E, R>>,
) -> (String, String) {
    let e = r.unwrap_err();
    let s = e
        .as_service_error()
        .unwrap_or_else(|| panic!("not a service error: {e:?}"));
    (
        s.code().unwrap_or_default().to_string(),
        s.message().unwrap_or_default().to_string(),
    )
}

/// Only the account root itself (not every principal of the account).
const ROOT_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"RootOnly","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::000000000000:root"}}}]}"#;

const DENY_BOB: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*"},{"Sid":"NoBob","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":["kms:GenerateDataKey*","kms:Decrypt"],"Resource":"*"}]}"#;

#[tokio::test]
async fn sdk_grant_lets_bob_decrypt_until_retired_and_revoked() {
    let s = start().await;
    let alice = sdk_client(&s.url);
    let bob = sdk_client_as(&s.url, BOB_ACCESS_KEY, BOB_SECRET);
    let key = key_with_policy(&alice, Some(ROOT_ONLY)).await;
    let dk = alice
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context("app", "reports")
        .send()
        .await
        .unwrap();
    let blob = dk.ciphertext_blob.unwrap();
    let decrypt = |b: &aws_sdk_kms::Client| {
        b.decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("app", "reports")
    };
    let (code, msg) = err(decrypt(&bob).send().await);
    assert_eq!(code, "AccessDeniedException");
    assert!(msg.contains("arn:aws:iam::000000000000:user/bob") && msg.contains("kms:Decrypt"));

    let grant = alice
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::000000000000:user/bob")
        .operations(GrantOperation::Decrypt)
        .operations(GrantOperation::RetireGrant)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_subset("app", "reports")
                .build(),
        )
        .name("bob-reports")
        .send()
        .await
        .unwrap();
    let (gid, token) = (grant.grant_id.unwrap(), grant.grant_token.unwrap());
    let out = decrypt(&bob).grant_tokens(&token).send().await.unwrap();
    assert_eq!(out.plaintext, dk.plaintext);
    // DryRun says it would succeed, and why.
    let (code, msg) = err(decrypt(&bob).dry_run(true).send().await);
    assert_eq!(code, "DryRunOperationException");
    assert!(msg.contains(&gid), "{msg}");
    // The grant does not reach other operations or contexts.
    let (code, _) = err(bob
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await);
    assert_eq!(code, "AccessDeniedException");
    let grants = alice.list_grants().key_id(&key).send().await.unwrap();
    let listed = &grants.grants()[0];
    assert_eq!(listed.grant_id(), Some(gid.as_str()));
    assert_eq!(listed.name(), Some("bob-reports"));
    assert_eq!(
        listed
            .constraints()
            .unwrap()
            .encryption_context_subset()
            .unwrap()["app"],
        "reports"
    );

    bob.retire_grant().grant_token(&token).send().await.unwrap();
    let (code, _) = err(decrypt(&bob).send().await);
    assert_eq!(code, "AccessDeniedException");

    let gid2 = alice
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::000000000000:user/bob")
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    decrypt(&bob).send().await.unwrap();
    alice
        .revoke_grant()
        .key_id(&key)
        .grant_id(&gid2)
        .send()
        .await
        .unwrap();
    let (code, _) = err(decrypt(&bob).send().await);
    assert_eq!(code, "AccessDeniedException");
    assert!(
        alice
            .list_grants()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .grants()
            .is_empty()
    );
}

/// A server, clients for alice and bob, and a key alice created with the default policy.
async fn alice_bob_and_key() -> (kms_support::Server, Client, Client, String) {
    let s = start().await;
    let alice = sdk_client(&s.url);
    let bob = sdk_client_as(&s.url, BOB_ACCESS_KEY, BOB_SECRET);
    let key = alice
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    (s, alice, bob, key)
}

#[tokio::test]
async fn sdk_put_key_policy_denying_bob_refuses_his_data_keys_and_decrypts() {
    let (_s, alice, bob, key) = alice_bob_and_key().await;
    // Default policy: bob, a user of the account, may use the key.
    let blob = bob
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let default = alice.get_key_policy().key_id(&key).send().await.unwrap();
    assert!(
        default
            .policy
            .unwrap()
            .contains("Enable IAM User Permissions")
    );

    alice
        .put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(DENY_BOB)
        .send()
        .await
        .unwrap();
    let (code, msg) = err(bob
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await);
    assert_eq!(code, "AccessDeniedException");
    assert!(
        msg.contains("explicit deny") && msg.contains("NoBob"),
        "{msg}"
    );
    let (code, _) = err(bob.decrypt().ciphertext_blob(blob.clone()).send().await);
    assert_eq!(code, "AccessDeniedException");
    alice.decrypt().ciphertext_blob(blob).send().await.unwrap();
    let policies = alice.list_key_policies().key_id(&key).send().await.unwrap();
    assert_eq!(policies.policy_names(), ["default"]);
    assert_eq!(
        alice
            .get_key_policy()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .policy
            .as_deref(),
        Some(DENY_BOB)
    );

    // Malformed documents and self-lockout are MalformedPolicyDocumentException.
    let (code, msg) = err(
        alice
            .put_key_policy()
            .key_id(&key)
            .policy(r#"{"Statement":[{"Effect":"Perhaps","Principal":"*","Action":"kms:*","Resource":"*"}]}"#)
            .send()
            .await,
    );
    assert_eq!(code, "MalformedPolicyDocumentException");
    assert!(msg.contains("Statement[0].Effect"), "{msg}");
    let bob_only = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"kms:*","Resource":"*"}]}"#;
    let (code, _) = err(alice
        .put_key_policy()
        .key_id(&key)
        .policy(bob_only)
        .send()
        .await);
    assert_eq!(code, "MalformedPolicyDocumentException");
    alice
        .put_key_policy()
        .key_id(&key)
        .policy(bob_only)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap();
    let (code, _) = err(alice.describe_key().key_id(&key).send().await);
    assert_eq!(code, "AccessDeniedException");
}

#[tokio::test]
async fn api_audit_log_records_every_call_without_secrets_and_verifies() {
    let (s, alice, bob, key) = alice_bob_and_key().await;
    let secret = b"api plaintext that must never be logged";
    let enc = alice
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(secret.to_vec()))
        .encryption_context("case", "audit")
        .send()
        .await
        .unwrap();
    let ct = enc.ciphertext_blob.unwrap();
    alice
        .decrypt()
        .ciphertext_blob(ct.clone())
        .encryption_context("case", "audit")
        .send()
        .await
        .unwrap();
    let dk = bob
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let grant = alice
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::000000000000:user/bob")
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let token = grant.grant_token.unwrap();
    bob.decrypt()
        .ciphertext_blob(dk.ciphertext_blob.clone().unwrap())
        .grant_tokens(&token)
        .send()
        .await
        .unwrap();
    let _ = bob
        .decrypt()
        .ciphertext_blob(Blob::new(b"garbage".to_vec()))
        .send()
        .await;

    s.kms.flush_audit().unwrap();
    let path = s.kms.audit_log_path().unwrap().to_path_buf();
    let report = sealgate::kms::verify_audit_log(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 7);
    let events = sealgate::kms::tail_audit_log(&path, 10).unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.event["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CreateKey",
            "Encrypt",
            "Decrypt",
            "GenerateDataKey",
            "CreateGrant",
            "Decrypt",
            "Decrypt"
        ]
    );
    let gdk = &events[3].event;
    assert_eq!(gdk["userIdentity"]["userName"], "bob");
    assert_eq!(gdk["sourceIPAddress"], "127.0.0.1");
    assert_eq!(gdk["requestParameters"]["keyId"], key.as_str());
    assert_eq!(gdk["requestParameters"]["keySpec"], "AES_256");
    assert!(gdk["resources"][0]["ARN"].as_str().unwrap().ends_with(&key));
    assert_eq!(
        events[1].event["requestParameters"]["encryptionContext"]["case"],
        "audit"
    );
    assert_eq!(events[6].event["errorCode"], "InvalidCiphertextException");

    let log = std::fs::read_to_string(&path).unwrap();
    let plain = dk.plaintext.unwrap();
    let dk_blob = dk.ciphertext_blob.unwrap();
    let mut needles = vec![String::from_utf8_lossy(secret).to_string(), token];
    for bytes in [&secret[..], plain.as_ref(), dk_blob.as_ref(), ct.as_ref()] {
        needles.push(hex::encode(bytes));
        needles.push(B64.encode(bytes));
    }
    for n in needles {
        assert!(!log.contains(&n), "audit log contains a secret: {n}");
    }
}

/// A new key (with `policy`, or the default one) created by `c`; returns its id.
async fn key_with_policy(c: &Client, policy: Option<&str>) -> String {
    c.create_key()
        .set_policy(policy.map(str::to_string))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

/// Bob may use alice's key for data but not manage it.
const BOB_USES_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"RootOnly","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::000000000000:root"}}},{"Sid":"BobUses","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":["kms:Encrypt","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*"}]}"#;

/// Issue 19: UpdateAlias checked only the new key, so any principal could repoint a
/// victim's alias to a key of its own and read the victim's future writes. AWS needs
/// kms:UpdateAlias on the alias's current key too.
#[tokio::test]
async fn update_alias_needs_permission_on_the_current_key() {
    let s = start().await;
    let alice = sdk_client(&s.url);
    let bob = sdk_client_as(&s.url, BOB_ACCESS_KEY, BOB_SECRET);
    let victim = key_with_policy(&alice, Some(BOB_USES_ONLY)).await;
    alice
        .create_alias()
        .alias_name("alias/app-data")
        .target_key_id(&victim)
        .send()
        .await
        .unwrap();
    // Bob's own key: the default policy lets him do anything with it.
    let mine = key_with_policy(&bob, None).await;
    let (code, msg) = err(bob
        .update_alias()
        .alias_name("alias/app-data")
        .target_key_id(&mine)
        .send()
        .await);
    assert_eq!(code, "AccessDeniedException", "{msg}");
    assert!(
        msg.contains("kms:UpdateAlias") && msg.contains(&victim),
        "{msg}"
    );
    let described = alice
        .describe_key()
        .key_id("alias/app-data")
        .send()
        .await
        .unwrap();
    assert_eq!(described.key_metadata.unwrap().key_id, victim);
    // Alice, who may manage both keys, moves it.
    alice
        .update_alias()
        .alias_name("alias/app-data")
        .target_key_id(&mine)
        .send()
        .await
        .unwrap();
}

/// A key policy letting the account do everything, plus `extra` statements.
fn policy_with(extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::000000000000:root"}},"Action":"kms:*","Resource":"*"}},{extra}]}}"#
    )
}

/// Issue 19: the condition keys users rely on (aws:SecureTransport, aws:SourceIp,
/// aws:CurrentTime, kms:CallerAccount, kms:ViaService) and the Numeric, Date, IfExists
/// and Null operators; a policy with an operator sealgate cannot evaluate is refused.
#[tokio::test]
async fn key_policy_conditions_cover_transport_ip_time_and_typed_operators() {
    let s = start().await;
    let alice = sdk_client(&s.url);
    let key = key_with_policy(&alice, None).await;
    let put = |p: String| {
        let (c, k) = (alice.clone(), key.clone());
        async move {
            c.put_key_policy()
                .key_id(k)
                .policy_name("default")
                .policy(p)
                .send()
                .await
        }
    };
    let encrypt = || {
        alice
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
    };
    let deny = |cond: &str| {
        policy_with(&format!(
            r#"{{"Sid":"Guard","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{cond}}}"#
        ))
    };
    // This test server speaks plain HTTP: aws:SecureTransport is false.
    put(deny(r#"{"Bool":{"aws:SecureTransport":"false"}}"#))
        .await
        .unwrap();
    let (code, msg) = err(encrypt().await);
    assert_eq!(code, "AccessDeniedException", "{msg}");
    put(deny(r#"{"Bool":{"aws:SecureTransport":"true"}}"#))
        .await
        .unwrap();
    encrypt().await.unwrap();
    // aws:SourceIp: the client is on 127.0.0.1.
    put(deny(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
        .await
        .unwrap();
    assert_eq!(err(encrypt().await).0, "AccessDeniedException");
    put(deny(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
        .await
        .unwrap();
    encrypt().await.unwrap();
    // aws:CurrentTime with Date operators, aws:EpochTime with Numeric ones.
    put(deny(
        r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(err(encrypt().await).0, "AccessDeniedException");
    put(deny(r#"{"DateLessThan":{"aws:CurrentTime":"2020-01-01"}}"#))
        .await
        .unwrap();
    encrypt().await.unwrap();
    put(deny(
        r#"{"NumericGreaterThan":{"aws:EpochTime":1577836800}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(err(encrypt().await).0, "AccessDeniedException");
    // kms:CallerAccount, kms:ViaService (absent on direct calls: IfExists holds), Null.
    put(deny(
        r#"{"StringEquals":{"kms:CallerAccount":"000000000000"}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(err(encrypt().await).0, "AccessDeniedException");
    put(deny(
        r#"{"StringNotEqualsIfExists":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(err(encrypt().await).0, "AccessDeniedException");
    put(deny(r#"{"Null":{"kms:ViaService":"false"}}"#))
        .await
        .unwrap();
    encrypt().await.unwrap();
    // An operator sealgate cannot evaluate is refused, not ignored.
    let (code, msg) = err(put(deny(r#"{"BinaryEquals":{"kms:x":"AAAA"}}"#)).await);
    assert_eq!(code, "MalformedPolicyDocumentException", "{msg}");
    assert!(msg.contains("BinaryEquals"), "{msg}");
}
