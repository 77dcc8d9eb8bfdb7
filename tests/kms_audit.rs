//! The audit of every KMS operation against its AWS API Reference page (the table in
//! docs/kms.md): each test here pins a behaviour sealgate got wrong before the audit —
//! parameter limits and defaults, markers, quotas, messages, key-state rules — through
//! the JSON API, with the exact exception type and, where AWS's wording is known, its
//! message.

mod kms_support;

use serde_json::{Value, json};

use kms_support::{Server, raw_call, start};

/// One JSON call as alice: (HTTP status, body).
async fn call(s: &Server, op: &str, body: Value) -> (u16, Value) {
    raw_call(&s.url, &format!("TrentService.{op}"), &body.to_string()).await
}

/// A call that must succeed; returns its answer.
#[track_caller]
fn ok(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

/// A call that must fail with `ty`; returns its message.
#[track_caller]
fn fails(r: (u16, Value), ty: &str) -> String {
    assert_eq!(r.1["__type"], ty, "{}", r.1);
    assert_eq!(r.0, 400, "{}", r.1);
    r.1["message"].as_str().unwrap_or_default().to_string()
}

/// A symmetric, an RSA signing and an HMAC key.
async fn three_keys(s: &Server) -> (String, String, String) {
    (
        new_key(s, json!({})).await,
        new_key(s, json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"})).await,
        new_key(
            s,
            json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        )
        .await,
    )
}

async fn new_key(s: &Server, body: Value) -> String {
    let v = ok(call(s, "CreateKey", body).await);
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn validation_messages_are_awss() {
    let s = start().await;
    let key = new_key(&s, json!({})).await;
    let m = fails(
        call(&s, "ListKeys", json!({"Limit": 2000})).await,
        "ValidationException",
    );
    assert_eq!(
        m,
        "1 validation error detected: Value '2000' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 1000"
    );
    let m = fails(
        call(&s, "GenerateRandom", json!({"NumberOfBytes": 1025})).await,
        "ValidationException",
    );
    assert_eq!(
        m,
        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"
    );
    let m = fails(
        call(&s, "GenerateRandom", json!({})).await,
        "ValidationException",
    );
    assert_eq!(m, "NumberOfBytes is required.");
    // Sensitive members are named without their value.
    let big = kms_support_b64(&[7u8; 4097]);
    let m = fails(
        call(&s, "Encrypt", json!({"KeyId": key, "Plaintext": big})).await,
        "ValidationException",
    );
    assert_eq!(
        m,
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"
    );
    let m = fails(
        call(&s, "DescribeKey", json!({})).await,
        "ValidationException",
    );
    assert_eq!(
        m,
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
    let m = fails(
        call(
            &s,
            "ScheduleKeyDeletion",
            json!({"KeyId": key, "PendingWindowInDays": 5}),
        )
        .await,
        "ValidationException",
    );
    assert!(
        m.ends_with("at 'pendingWindowInDays' failed to satisfy constraint: Member must have value greater than or equal to 7"),
        "{m}"
    );
    let m = fails(
        call(&s, "GenerateDataKey", json!({"KeyId": key})).await,
        "ValidationException",
    );
    assert_eq!(
        m,
        "You must specify either the KeySpec or the NumberOfBytes parameter (but not both)."
    );
    let m = fails(
        call(
            &s,
            "EnableKeyRotation",
            json!({"KeyId": key, "RotationPeriodInDays": 89}),
        )
        .await,
        "ValidationException",
    );
    assert!(m.ends_with("greater than or equal to 90"), "{m}");
}

fn kms_support_b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn list_limits_defaults_and_markers_are_per_operation() {
    let s = start().await;
    let keys = [
        new_key(&s, json!({})).await,
        new_key(&s, json!({})).await,
        new_key(&s, json!({})).await,
    ];
    for i in 0..120 {
        let k = &keys[i % 3];
        ok(call(
            &s,
            "CreateAlias",
            json!({"AliasName": format!("alias/a{i:03}"), "TargetKeyId": k}),
        )
        .await);
    }
    // ListAliases: default 50, at most 100 per page even if Limit asks for 1000.
    let p = ok(call(&s, "ListAliases", json!({})).await);
    assert_eq!(p["Aliases"].as_array().unwrap().len(), 50);
    assert_eq!(p["Truncated"], true);
    let p = ok(call(&s, "ListAliases", json!({"Limit": 1000})).await);
    assert_eq!(p["Aliases"].as_array().unwrap().len(), 100);
    let next = p["NextMarker"].as_str().unwrap().to_string();
    let p = ok(call(&s, "ListAliases", json!({"Limit": 1000, "Marker": next})).await);
    assert_eq!(p["Aliases"].as_array().unwrap().len(), 20);
    assert_eq!(p["Truncated"], false);
    assert!(p.get("NextMarker").is_none());
    // A marker sealgate did not issue; one longer than the model allows.
    fails(
        call(&s, "ListAliases", json!({"Marker": "5"})).await,
        "InvalidMarkerException",
    );
    fails(
        call(&s, "ListKeys", json!({"Marker": "x".repeat(1025)})).await,
        "ValidationException",
    );
    fails(
        call(&s, "ListKeys", json!({"Limit": 0})).await,
        "ValidationException",
    );
    // ListResourceTags: default and maximum 50.
    let tags: Vec<Value> = (0..50)
        .map(|i| json!({"TagKey": format!("k{i:02}"), "TagValue": "v"}))
        .collect();
    ok(call(&s, "TagResource", json!({"KeyId": keys[0], "Tags": tags})).await);
    let p = ok(call(
        &s,
        "ListResourceTags",
        json!({"KeyId": keys[0], "Limit": 60}),
    )
    .await);
    assert_eq!(p["Tags"].as_array().unwrap().len(), 50);
    assert_eq!(p["Truncated"], false);
    let p = ok(call(
        &s,
        "ListResourceTags",
        json!({"KeyId": keys[0], "Limit": 20}),
    )
    .await);
    assert_eq!(p["Tags"].as_array().unwrap().len(), 20);
    // ListKeyPolicies checks its Limit like the others.
    fails(
        call(
            &s,
            "ListKeyPolicies",
            json!({"KeyId": keys[0], "Limit": 1001}),
        )
        .await,
        "ValidationException",
    );
    let p = ok(call(&s, "ListKeyPolicies", json!({"KeyId": keys[0], "Limit": 1})).await);
    assert_eq!(p["PolicyNames"], json!(["default"]));
}

#[tokio::test]
async fn grant_tokens_are_limited_to_ten_per_request() {
    let s = start().await;
    let key = new_key(&s, json!({})).await;
    let g = ok(call(
        &s,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "arn:aws:iam::000000000000:user/bob",
               "Operations": ["Encrypt"]}),
    )
    .await);
    let token = g["GrantToken"].as_str().unwrap();
    let pt = kms_support_b64(b"x");
    let ten = vec![token; 10];
    ok(call(
        &s,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": pt, "GrantTokens": ten}),
    )
    .await);
    let eleven = vec![token; 11];
    let m = fails(
        call(
            &s,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": pt, "GrantTokens": eleven}),
        )
        .await,
        "ValidationException",
    );
    assert!(
        m.contains("at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10"),
        "{m}"
    );
}

fn tag_list(range: std::ops::Range<usize>) -> Vec<Value> {
    range
        .map(|i| json!({"TagKey": format!("k{i:02}"), "TagValue": "v"}))
        .collect()
}

#[tokio::test]
async fn tags_follow_awss_quota_and_tag_exceptions() {
    let s = start().await;
    // 51 tags at creation: TagException "Too many tags" (recorded from AWS).
    let m = fails(
        call(&s, "CreateKey", json!({"Tags": tag_list(0..51)})).await,
        "TagException",
    );
    assert_eq!(m, "Too many tags");
    let key = new_key(&s, json!({"Tags": tag_list(0..50)})).await;
    let m = fails(
        call(
            &s,
            "TagResource",
            json!({"KeyId": key, "Tags": tag_list(50..51)}),
        )
        .await,
        "TagException",
    );
    assert_eq!(m, "Too many tags");
    // Replacing the value of an existing tag does not add one.
    ok(call(
        &s,
        "TagResource",
        json!({"KeyId": key, "Tags": tag_list(0..1)}),
    )
    .await);
    let m = fails(
        call(
            &s,
            "CreateKey",
            json!({"Tags": [{"TagKey": "AWS:x", "TagValue": ""}]}),
        )
        .await,
        "TagException",
    );
    assert_eq!(m, "Tags beginning with aws: are reserved");
    let m = fails(
        call(
            &s,
            "CreateKey",
            json!({"Tags": [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}]}),
        )
        .await,
        "TagException",
    );
    assert_eq!(m, "Duplicate tag keys");
    let m = fails(
        call(
            &s,
            "CreateKey",
            json!({"Tags": [{"TagKey": "ok", "TagValue": ""}, {"TagKey": "k".repeat(129), "TagValue": ""}]}),
        )
        .await,
        "ValidationException",
    );
    assert!(
        m.contains("at 'tags.2.member.tagKey' failed to satisfy constraint: Member must have length less than or equal to 128"),
        "{m}"
    );
}

#[tokio::test]
async fn aliases_follow_awss_quota_names_and_update_rules() {
    let s = start().await;
    let key = new_key(&s, json!({})).await;
    let other = new_key(&s, json!({})).await;
    for i in 0..50 {
        ok(call(
            &s,
            "CreateAlias",
            json!({"AliasName": format!("alias/q{i}"), "TargetKeyId": key}),
        )
        .await);
    }
    fails(
        call(
            &s,
            "CreateAlias",
            json!({"AliasName": "alias/q50", "TargetKeyId": key}),
        )
        .await,
        "LimitExceededException",
    );
    ok(call(
        &s,
        "CreateAlias",
        json!({"AliasName": "alias/o", "TargetKeyId": other}),
    )
    .await);
    fails(
        call(
            &s,
            "UpdateAlias",
            json!({"AliasName": "alias/o", "TargetKeyId": key}),
        )
        .await,
        "LimitExceededException",
    );
    // Moving an alias to the key it already names does not count twice.
    ok(call(
        &s,
        "UpdateAlias",
        json!({"AliasName": "alias/q0", "TargetKeyId": key}),
    )
    .await);
    let m = fails(
        call(
            &s,
            "CreateAlias",
            json!({"AliasName": "app", "TargetKeyId": key}),
        )
        .await,
        "ValidationException",
    );
    assert_eq!(
        m,
        "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
    );
    fails(
        call(
            &s,
            "CreateAlias",
            json!({"AliasName": "alias/a:b", "TargetKeyId": other}),
        )
        .await,
        "InvalidAliasNameException",
    );
    let m = fails(
        call(
            &s,
            "CreateAlias",
            json!({"AliasName": "alias/a b", "TargetKeyId": other}),
        )
        .await,
        "ValidationException",
    );
    assert!(
        m.ends_with("Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"),
        "{m}"
    );

    // UpdateAlias: same key type and key usage only.
    let hmac = new_key(
        &s,
        json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    )
    .await;
    fails(
        call(
            &s,
            "UpdateAlias",
            json!({"AliasName": "alias/o", "TargetKeyId": hmac}),
        )
        .await,
        "ValidationException",
    );
    let rsa_sign = new_key(
        &s,
        json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await;
    let ecc_sign = new_key(
        &s,
        json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await;
    let rsa_enc = new_key(
        &s,
        json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
    )
    .await;
    ok(call(
        &s,
        "CreateAlias",
        json!({"AliasName": "alias/signer", "TargetKeyId": rsa_sign}),
    )
    .await);
    ok(call(
        &s,
        "UpdateAlias",
        json!({"AliasName": "alias/signer", "TargetKeyId": ecc_sign}),
    )
    .await);
    fails(
        call(
            &s,
            "UpdateAlias",
            json!({"AliasName": "alias/signer", "TargetKeyId": rsa_enc}),
        )
        .await,
        "ValidationException",
    );
    // A new key pending deletion is refused; a current key pending deletion is not.
    let doomed = new_key(&s, json!({})).await;
    ok(call(&s, "ScheduleKeyDeletion", json!({"KeyId": doomed})).await);
    let m = fails(
        call(
            &s,
            "UpdateAlias",
            json!({"AliasName": "alias/o", "TargetKeyId": doomed}),
        )
        .await,
        "KMSInvalidStateException",
    );
    assert!(m.ends_with(" is pending deletion."), "{m}");
    ok(call(&s, "ScheduleKeyDeletion", json!({"KeyId": other})).await);
    let fresh = new_key(&s, json!({})).await;
    ok(call(
        &s,
        "UpdateAlias",
        json!({"AliasName": "alias/o", "TargetKeyId": fresh}),
    )
    .await);
}

#[tokio::test]
async fn on_demand_rotations_stop_at_awss_25() {
    let s = start().await;
    let key = new_key(&s, json!({})).await;
    for _ in 0..25 {
        ok(call(&s, "RotateKeyOnDemand", json!({"KeyId": key})).await);
    }
    let m = fails(
        call(&s, "RotateKeyOnDemand", json!({"KeyId": key})).await,
        "LimitExceededException",
    );
    assert!(
        m.starts_with("The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: arn:aws:kms:"),
        "{m}"
    );
}

#[tokio::test]
async fn key_policy_over_32_kb_is_limit_exceeded() {
    let s = start().await;
    let filler = "x".repeat(33 * 1024);
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": filler, "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"}]});
    fails(
        call(&s, "CreateKey", json!({"Policy": policy.to_string()})).await,
        "LimitExceededException",
    );
    let key = new_key(&s, json!({})).await;
    fails(
        call(
            &s,
            "PutKeyPolicy",
            json!({"KeyId": key, "PolicyName": "default", "Policy": policy.to_string()}),
        )
        .await,
        "LimitExceededException",
    );
}

#[tokio::test]
async fn key_states_answer_with_awss_exceptions_messages_and_attributes() {
    let s = start().await;
    let key = new_key(&s, json!({})).await;
    let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{key}");
    let m = fails(
        call(&s, "CancelKeyDeletion", json!({"KeyId": key})).await,
        "KMSInvalidStateException",
    );
    assert_eq!(m, format!("{arn} is not pending deletion."));
    // A disabled key takes no new grants (DisabledException, as on AWS).
    ok(call(&s, "DisableKey", json!({"KeyId": key})).await);
    let m = fails(
        call(
            &s,
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": "arn:aws:iam::000000000000:user/bob",
                   "Operations": ["Decrypt"]}),
        )
        .await,
        "DisabledException",
    );
    assert_eq!(m, format!("{arn} is disabled."));
    ok(call(&s, "EnableKey", json!({"KeyId": key})).await);
    ok(call(&s, "EnableKeyRotation", json!({"KeyId": key})).await);
    ok(call(
        &s,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await);
    let pt = kms_support_b64(b"x");
    let m = fails(
        call(&s, "Encrypt", json!({"KeyId": key, "Plaintext": pt})).await,
        "KMSInvalidStateException",
    );
    assert_eq!(m, format!("{arn} is pending deletion."));
    // Rotation reads as disabled while the key is pending deletion, and comes back.
    let st = ok(call(&s, "GetKeyRotationStatus", json!({"KeyId": key})).await);
    assert_eq!(st["KeyRotationEnabled"], false);
    assert!(st.get("RotationPeriodInDays").is_none(), "{st}");
    let md = ok(call(&s, "DescribeKey", json!({"KeyId": key})).await);
    assert!(md["KeyMetadata"].get("DeletionDate").is_some());
    assert!(
        md["KeyMetadata"]
            .get("PendingDeletionWindowInDays")
            .is_none(),
        "only PendingReplicaDeletion reports it: {md}"
    );
    ok(call(&s, "CancelKeyDeletion", json!({"KeyId": key})).await);
    let st = ok(call(&s, "GetKeyRotationStatus", json!({"KeyId": key})).await);
    assert_eq!(st["KeyRotationEnabled"], true);
    // Rotation listings exist only for keys that rotate.
    let rsa = new_key(
        &s,
        json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await;
    fails(
        call(&s, "ListKeyRotations", json!({"KeyId": rsa})).await,
        "UnsupportedOperationException",
    );
    let st = ok(call(&s, "GetKeyRotationStatus", json!({"KeyId": rsa})).await);
    assert_eq!(st["KeyRotationEnabled"], false);
}

#[tokio::test]
async fn grant_operations_must_suit_the_key() {
    let s = start().await;
    let (sym, rsa, hmac) = three_keys(&s).await;
    let grant = |key: &str, ops: Value, constraints: Option<Value>| {
        let mut b = json!({"KeyId": key, "GranteePrincipal": "arn:aws:iam::000000000000:user/bob",
                           "Operations": ops});
        if let Some(c) = constraints {
            b["Constraints"] = c;
        }
        b
    };
    for (key, ops) in [
        (&sym, json!(["Sign"])),
        (&sym, json!(["GenerateMac"])),
        (&sym, json!(["GetPublicKey"])),
        (&rsa, json!(["Decrypt"])),
        (&rsa, json!(["GenerateDataKey"])),
        (&hmac, json!(["Encrypt"])),
        (&hmac, json!(["Sign", "DescribeKey"])),
    ] {
        fails(
            call(&s, "CreateGrant", grant(key, ops.clone(), None)).await,
            "ValidationException",
        );
    }
    for (key, ops) in [
        (
            &sym,
            json!([
                "Decrypt",
                "GenerateDataKeyPair",
                "ReEncryptFrom",
                "DescribeKey"
            ]),
        ),
        (
            &rsa,
            json!(["Sign", "Verify", "GetPublicKey", "RetireGrant"]),
        ),
        (&hmac, json!(["GenerateMac", "VerifyMac", "CreateGrant"])),
    ] {
        ok(call(&s, "CreateGrant", grant(key, ops, None)).await);
    }
    // Encryption-context constraints are for symmetric encryption keys only.
    let c = json!({"EncryptionContextSubset": {"a": "b"}});
    ok(call(
        &s,
        "CreateGrant",
        grant(&sym, json!(["Decrypt"]), Some(c.clone())),
    )
    .await);
    fails(
        call(&s, "CreateGrant", grant(&rsa, json!(["Sign"]), Some(c))).await,
        "ValidationException",
    );
    // SourceArn would be dropped: refused, never silently ignored.
    fails(
        call(
            &s,
            "CreateGrant",
            grant(
                &sym,
                json!(["Decrypt"]),
                Some(json!({"SourceArn": "arn:aws:s3:::bucket"})),
            ),
        )
        .await,
        "UnsupportedOperationException",
    );
}

/// A dry run that would succeed: DryRunOperationException, status 400 as AWS answers
/// (its model says 412; recorded AWS responses are 400).
#[track_caller]
fn dry_ok(r: (u16, Value)) {
    let m = fails(r, "DryRunOperationException");
    assert!(
        m.starts_with("The request would have succeeded, but the DryRun option is set."),
        "{m}"
    );
}

#[tokio::test]
async fn dry_run_checks_everything_and_changes_nothing_on_every_operation_that_takes_it() {
    let s = start().await;
    let (sym, rsa, hmac) = three_keys(&s).await;
    let pt = kms_support_b64(b"hello");
    let blob =
        ok(call(&s, "Encrypt", json!({"KeyId": sym, "Plaintext": pt})).await)["CiphertextBlob"]
            .clone();
    let sig = ok(call(
        &s,
        "Sign",
        json!({"KeyId": rsa, "Message": pt, "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
    )
    .await)["Signature"]
        .clone();
    let mac = ok(call(
        &s,
        "GenerateMac",
        json!({"KeyId": hmac, "Message": pt, "MacAlgorithm": "HMAC_SHA_256"}),
    )
    .await)["Mac"]
        .clone();
    let grant = ok(call(
        &s,
        "CreateGrant",
        json!({"KeyId": sym, "GranteePrincipal": "arn:aws:iam::000000000000:user/bob",
               "RetiringPrincipal": "arn:aws:iam::000000000000:root", "Operations": ["Decrypt"]}),
    )
    .await);
    let gid = grant["GrantId"].as_str().unwrap().to_string();
    let token = grant["GrantToken"].as_str().unwrap().to_string();
    let cases = [
        ("Encrypt", json!({"KeyId": sym, "Plaintext": pt})),
        ("Decrypt", json!({"CiphertextBlob": blob})),
        (
            "ReEncrypt",
            json!({"CiphertextBlob": blob, "DestinationKeyId": sym}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": sym, "KeySpec": "AES_256"}),
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": sym, "NumberOfBytes": 16}),
        ),
        (
            "GenerateDataKeyPair",
            json!({"KeyId": sym, "KeyPairSpec": "RSA_4096"}),
        ),
        (
            "GenerateDataKeyPairWithoutPlaintext",
            json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"}),
        ),
        (
            "Sign",
            json!({"KeyId": rsa, "Message": pt, "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
        ),
        (
            "Verify",
            json!({"KeyId": rsa, "Message": pt, "Signature": sig, "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
        ),
        (
            "GenerateMac",
            json!({"KeyId": hmac, "Message": pt, "MacAlgorithm": "HMAC_SHA_256"}),
        ),
        (
            "VerifyMac",
            json!({"KeyId": hmac, "Message": pt, "Mac": mac, "MacAlgorithm": "HMAC_SHA_256"}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": sym, "GranteePrincipal": "arn:aws:iam::000000000000:user/carol",
                   "Operations": ["Encrypt"]}),
        ),
        ("RetireGrant", json!({"GrantToken": token})),
        ("RevokeGrant", json!({"KeyId": sym, "GrantId": gid})),
    ];
    for (op, mut body) in cases {
        body["DryRun"] = json!(true);
        let r = call(&s, op, body).await;
        assert!(r.1.get("Plaintext").is_none(), "{op}: {}", r.1);
        dry_ok(r);
    }
    // Nothing changed: the one grant is still there, no new one was made.
    let grants = ok(call(&s, "ListGrants", json!({"KeyId": sym})).await);
    assert_eq!(grants["Grants"].as_array().unwrap().len(), 1, "{grants}");
    assert_eq!(grants["Grants"][0]["GrantId"], gid.as_str());

    // A dry run answers what the real call would: parameters, ciphertext, signature.
    let big = kms_support_b64(&[0u8; 4097]);
    fails(
        call(
            &s,
            "Encrypt",
            json!({"KeyId": sym, "Plaintext": big, "DryRun": true}),
        )
        .await,
        "ValidationException",
    );
    fails(
        call(
            &s,
            "Sign",
            json!({"KeyId": rsa, "Message": pt, "SigningAlgorithm": "ECDSA_SHA_256", "DryRun": true}),
        )
        .await,
        "InvalidKeyUsageException",
    );
    let bad_blob = kms_support_b64(&[9u8; 80]);
    fails(
        call(
            &s,
            "Decrypt",
            json!({"CiphertextBlob": bad_blob, "KeyId": sym, "DryRun": true}),
        )
        .await,
        "InvalidCiphertextException",
    );
    fails(
        call(
            &s,
            "CreateGrant",
            json!({"KeyId": sym, "GranteePrincipal": "arn:aws:iam::000000000000:user/carol",
                   "Operations": ["Sign"], "DryRun": true}),
        )
        .await,
        "ValidationException",
    );
    // IGNORE_CIPHERTEXT: the permission on KeyId only, no ciphertext needed.
    dry_ok(
        call(
            &s,
            "Decrypt",
            json!({"KeyId": sym, "DryRun": true, "DryRunModifiers": ["IGNORE_CIPHERTEXT"]}),
        )
        .await,
    );
    dry_ok(
        call(
            &s,
            "ReEncrypt",
            json!({"SourceKeyId": sym, "DestinationKeyId": sym, "DryRun": true,
                   "DryRunModifiers": ["IGNORE_CIPHERTEXT"]}),
        )
        .await,
    );
    fails(
        call(
            &s,
            "Decrypt",
            json!({"DryRun": true, "DryRunModifiers": ["IGNORE_CIPHERTEXT"]}),
        )
        .await,
        "ValidationException",
    );
    fails(
        call(
            &s,
            "Decrypt",
            json!({"KeyId": sym, "DryRun": true, "DryRunModifiers": ["IGNORE_EVERYTHING"]}),
        )
        .await,
        "ValidationException",
    );
    // Operations without DryRun refuse it rather than acting.
    fails(
        call(
            &s,
            "ScheduleKeyDeletion",
            json!({"KeyId": sym, "DryRun": true}),
        )
        .await,
        "UnsupportedOperationException",
    );
}

#[tokio::test]
async fn recipient_is_refused_and_never_answered_with_plaintext() {
    let s = start().await;
    let sym = new_key(&s, json!({})).await;
    let pt = kms_support_b64(b"secret");
    let blob =
        ok(call(&s, "Encrypt", json!({"KeyId": sym, "Plaintext": pt})).await)["CiphertextBlob"]
            .clone();
    let recipient = json!({"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                           "AttestationDocument": kms_support_b64(b"not a real attestation")});
    for (op, mut body) in [
        ("Decrypt", json!({"CiphertextBlob": blob})),
        (
            "GenerateDataKey",
            json!({"KeyId": sym, "KeySpec": "AES_256"}),
        ),
        (
            "GenerateDataKeyPair",
            json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"}),
        ),
        ("GenerateRandom", json!({"NumberOfBytes": 32})),
    ] {
        body["Recipient"] = recipient.clone();
        let r = call(&s, op, body.clone()).await;
        assert!(
            r.1.get("Plaintext").is_none() && r.1.get("PrivateKeyPlaintext").is_none(),
            "{op} answered a Recipient request with plaintext: {}",
            r.1
        );
        let m = fails(r, "UnsupportedOperationException");
        assert!(m.contains("Recipient"), "{m}");
        body["DryRun"] = json!(true);
        if op != "GenerateRandom" {
            fails(call(&s, op, body).await, "UnsupportedOperationException");
        }
    }
}
