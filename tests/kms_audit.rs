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
