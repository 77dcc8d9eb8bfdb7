//! The KMS JSON API driven by AWS's own Rust SDK against an in-process server.

mod kms_support;

use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState, RotationType};
use kms_support::{code, sdk_client, start};

/// A fresh server, an SDK client for it and the id of one new key.
async fn server_with_key() -> (kms_support::Server, aws_sdk_kms::Client, String) {
    let s = start().await;
    let c = sdk_client(&s.url);
    let md = c.create_key().send().await.unwrap().key_metadata.unwrap();
    (s, c, md.key_id)
}

#[tokio::test]
async fn sdk_create_key_encrypt_decrypt_and_data_keys() {
    let s = start().await;
    let c = sdk_client(&s.url);
    let md = c
        .create_key()
        .description("app key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(md.key_state, Some(KeyState::Enabled));
    let id = md.key_id;

    let enc = c
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"top secret".to_vec()))
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(enc.key_id.as_deref(), md.arn.as_deref());
    let dec = c
        .decrypt()
        .ciphertext_blob(enc.ciphertext_blob.unwrap())
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext.unwrap().as_ref(), b"top secret");

    let dk = c
        .generate_data_key()
        .key_id(&id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let plain = dk.plaintext.unwrap();
    assert_eq!(plain.as_ref().len(), 32);
    let back = c
        .decrypt()
        .key_id(&id)
        .ciphertext_blob(dk.ciphertext_blob.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext.unwrap(), plain);

    let random = c
        .generate_random()
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    assert_eq!(random.plaintext.unwrap().as_ref().len(), 64);

    let listed = c.list_keys().limit(10).send().await.unwrap();
    assert_eq!(listed.keys.unwrap().len(), 1);
    assert!(!listed.truncated);
}

#[tokio::test]
async fn sdk_errors_have_aws_exception_names() {
    let (_s, c, id) = server_with_key().await;
    let big = c
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(vec![0u8; 4097]))
        .send()
        .await;
    assert_eq!(code(big), "ValidationException");

    c.disable_key().key_id(&id).send().await.unwrap();
    let disabled = c
        .generate_data_key()
        .key_id(&id)
        .number_of_bytes(32)
        .send()
        .await;
    assert_eq!(code(disabled), "DisabledException");

    let missing = c
        .describe_key()
        .key_id("11111111-2222-3333-4444-555555555555")
        .send()
        .await;
    assert_eq!(code(missing), "NotFoundException");

    let garbage = c
        .decrypt()
        .ciphertext_blob(Blob::new(vec![1u8; 60]))
        .send()
        .await;
    assert_eq!(code(garbage), "InvalidCiphertextException");

    let bad_window = c
        .schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(3)
        .send()
        .await;
    assert_eq!(code(bad_window), "ValidationException");
}

#[tokio::test]
async fn sdk_schedule_and_cancel_deletion_then_deletion_after_window() {
    let (s, c, id) = server_with_key().await;
    let sched = c
        .schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(sched.key_state, Some(KeyState::PendingDeletion));
    assert_eq!(sched.pending_window_in_days, Some(7));
    let when = sched.deletion_date.unwrap().secs();
    let now = s
        .kms
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((when - now - 7 * 86400).abs() <= 1, "{when} vs {now}");
    let enc = c
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(enc), "KMSInvalidStateException");
    c.cancel_key_deletion().key_id(&id).send().await.unwrap();
    let md = c.describe_key().key_id(&id).send().await.unwrap();
    assert_eq!(md.key_metadata.unwrap().key_state, Some(KeyState::Disabled));

    c.schedule_key_deletion().key_id(&id).send().await.unwrap();
    s.clock.advance(Duration::from_secs(30 * 86400));
    s.kms.tick().unwrap();
    let gone = c.describe_key().key_id(&id).send().await;
    assert_eq!(code(gone), "NotFoundException");
}

#[tokio::test]
async fn sdk_aliases_and_rotation() {
    let (_s, c, id) = server_with_key().await;
    c.create_alias()
        .alias_name("alias/orders")
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let reserved = c
        .create_alias()
        .alias_name("alias/aws/mine")
        .target_key_id(&id)
        .send()
        .await;
    assert_eq!(code(reserved), "NotAuthorizedException");
    let old = c
        .encrypt()
        .key_id("alias/orders")
        .plaintext(Blob::new(b"v1".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.rotate_key_on_demand().key_id(&id).send().await.unwrap();
    let rotations = c.list_key_rotations().key_id(&id).send().await.unwrap();
    let r = rotations.rotations.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].rotation_type, Some(RotationType::OnDemand));
    let dec = c.decrypt().ciphertext_blob(old).send().await.unwrap();
    assert_eq!(dec.plaintext.unwrap().as_ref(), b"v1");

    c.enable_key_rotation()
        .key_id(&id)
        .rotation_period_in_days(180)
        .send()
        .await
        .unwrap();
    let st = c
        .get_key_rotation_status()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    assert!(st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, Some(180));

    let aliases = c.list_aliases().key_id(&id).send().await.unwrap();
    let names: Vec<_> = aliases
        .aliases
        .unwrap()
        .into_iter()
        .filter_map(|a| a.alias_name)
        .collect();
    assert_eq!(names, vec!["alias/orders".to_string()]);
}

#[tokio::test]
async fn raw_http_malformed_requests_get_json_errors_not_500() {
    let s = start().await;
    let r = reqwest::Client::new()
        .post(&s.url)
        .header("x-amz-target", "TrentService.ListKeys")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["__type"], "MissingAuthenticationTokenException");

    let cases = [
        (
            "TrentService.ListKeys",
            "{not json",
            "SerializationException",
        ),
        (
            "TrentService.GenerateRandom",
            r#"{"NumberOfBytes":"x"}"#,
            "SerializationException",
        ),
        (
            "TrentService.GenerateRandom",
            r#"{"NumberOfBytes":5000}"#,
            "ValidationException",
        ),
        ("TrentService.GenerateRandom", "{}", "ValidationException"),
        (
            "TrentService.Encrypt",
            r#"{"KeyId":"k","Plaintext":"%%%"}"#,
            "SerializationException",
        ),
        ("TrentService.Frobnicate", "{}", "UnknownOperationException"),
        (
            "TrentService.GetKeyLastUsage",
            "{}",
            "UnsupportedOperationException",
        ),
        (
            "TrentService.CreateCustomKeyStore",
            "{}",
            "ValidationException",
        ),
        (
            "TrentService.CreateCustomKeyStore",
            r#"{"CustomKeyStoreName":"x","CustomKeyStoreType":"EXTERNAL_KEY_STORE"}"#,
            "UnsupportedOperationException",
        ),
        (
            "TrentService.ConnectCustomKeyStore",
            r#"{"CustomKeyStoreId":"cks-1234567890abcdef0"}"#,
            "CustomKeyStoreNotFoundException",
        ),
        (
            "TrentService.ListKeys",
            r#"{"Limit":0}"#,
            "ValidationException",
        ),
        (
            "TrentService.DescribeKey",
            r#"{"KeyId":"nope"}"#,
            "NotFoundException",
        ),
        (
            "TrentService.Decrypt",
            r#"{"CiphertextBlob":"AAAA"}"#,
            "InvalidCiphertextException",
        ),
    ];
    for (target, body, want) in cases {
        let (status, v) = kms_support::raw_call(&s.url, target, body).await;
        assert_eq!(
            (status, v["__type"].as_str()),
            (400, Some(want)),
            "{target} {body}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, v) = kms_support::raw_call(&s.url, "TrentService.ListKeys", "").await;
    assert_eq!((status, v["Truncated"].as_bool()), (200, Some(false)));
}

/// ScheduleKeyDeletion and CancelKeyDeletion answer with a typed key-lifecycle event
/// (what the server's impact scan reacts to); other and failed requests with none.
#[tokio::test]
async fn key_lifecycle_requests_return_typed_events() {
    use sealgate::kms::api::{KeyEvent, handle};
    let s = start().await;
    let keys = kms_support::access_keys();
    let call = |target: &str, body: String| {
        let req = kms_support::signed_request("127.0.0.1:1", target, body.as_bytes());
        handle(&s.kms, &keys, req, None)
    };
    let created = call("TrentService.CreateKey", "{}".into()).await;
    let md: serde_json::Value = serde_json::from_slice(created.response.body()).unwrap();
    let arn = md["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    assert_eq!(created.event, None);

    let body = format!(r#"{{"KeyId":"{arn}","PendingWindowInDays":7}}"#);
    let scheduled = call("TrentService.ScheduleKeyDeletion", body.clone()).await;
    assert_eq!(scheduled.response.status(), 200);
    let answer: serde_json::Value = serde_json::from_slice(scheduled.response.body()).unwrap();
    let ms = (answer["DeletionDate"].as_f64().unwrap() * 1000.0).round() as u64;
    let when = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    assert_eq!(
        scheduled.event,
        Some(KeyEvent::DeletionScheduled {
            key_arn: arn.clone(),
            deletion_date: when,
        })
    );
    let again = call("TrentService.ScheduleKeyDeletion", body).await;
    assert_eq!(again.response.status(), 400, "already pending deletion");
    assert_eq!(again.event, None);

    let key = format!(r#"{{"KeyId":"{arn}"}}"#);
    let cancelled = call("TrentService.CancelKeyDeletion", key.clone()).await;
    assert_eq!(
        cancelled.event,
        Some(KeyEvent::DeletionCancelled {
            key_arn: arn.clone()
        })
    );
    assert_eq!(call("TrentService.DescribeKey", key).await.event, None);
}

/// Writes a request head (and `partial` body bytes) on a raw connection and returns the
/// response's first bytes, or None if none came within two seconds.
async fn answer_to_head(url: &str, head: &str, partial: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(partial).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Issue 19: the KMS API read up to 1 MiB of body before checking who sent it. Now the
/// headers are authenticated first, and a body over the KMS-sized limit is never read.
#[tokio::test]
async fn requests_are_authenticated_before_their_body_is_read() {
    let s = start().await;
    let host = s.url.trim_start_matches("http://").to_string();
    let head = |extra: &str, len: usize| {
        format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: TrentService.Encrypt\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {len}\r\n{extra}\r\n"
        )
    };
    // No credentials: answered at once, the 300 KB body never sent.
    let r = answer_to_head(&s.url, &head("", 300_000), b"{").await;
    let r = r.expect("no answer: the server waited for the body");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("MissingAuthenticationTokenException"), "{r}");
    // An access key sealgate does not know.
    let date = time::OffsetDateTime::now_utc();
    let amz = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        date.hour(),
        date.minute(),
        date.second()
    );
    let auth = |akid: &str| {
        format!(
            "Authorization: AWS4-HMAC-SHA256 Credential={akid}/{}/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00\r\nX-Amz-Date: {amz}\r\n",
            &amz[..8]
        )
    };
    let r = answer_to_head(&s.url, &head(&auth("AKIDNOBODY"), 300_000), b"{").await;
    let r = r.expect("no answer: the server waited for the body");
    assert!(r.contains("UnrecognizedClientException"), "{r}");
    // A known access key (the signature is checked once the body is read), but a body
    // larger than any KMS request: refused unread.
    let r = answer_to_head(&s.url, &head(&auth("AKIDALICE"), 50_000_000), b"{").await;
    let r = r.expect("no answer: the server waited for the body");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("larger than"), "{r}");
}

/// X-Amz-Target names the operation: unsigned, a signed DescribeKey could be replayed as
/// ScheduleKeyDeletion with the same body. AWS requires it signed; so does sealgate now.
#[tokio::test]
async fn x_amz_target_must_be_signed() {
    let s = start().await;
    let c = sdk_client(&s.url);
    let key = c
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let host = s.url.trim_start_matches("http://");
    let body = serde_json::json!({"KeyId": key}).to_string();
    let signed = kms_support::sign_request(host, "TrentService.DescribeKey", body.as_bytes(), true);
    let (status, _) = kms_support::send(&s.url, signed).await;
    assert_eq!(status, 200);
    let unsigned = kms_support::sign_request(
        host,
        "TrentService.ScheduleKeyDeletion",
        body.as_bytes(),
        false,
    );
    let (status, v) = kms_support::send(&s.url, unsigned).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["__type"], "InvalidSignatureException");
    assert!(
        v["message"].as_str().unwrap().contains("x-amz-target"),
        "{v}"
    );
    let md = c.describe_key().key_id(&key).send().await.unwrap();
    assert_eq!(md.key_metadata.unwrap().key_state, Some(KeyState::Enabled));
}
