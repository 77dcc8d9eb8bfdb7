//! Authorization between principals: two users, alice and bob, each with identity
//! policies that scope them to their own buckets (`alice-*`, `bob-*`) and their own prefix
//! of a shared bucket, talking to a real sealgate on a real store with aws-sdk-s3. What
//! one may not do to the other's data is refused with AWS's AccessDenied wording, nothing
//! reaches the store, and the denial is in the audit log.

mod common;

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    Delete, ObjectIdentifier, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use common::{Sealgate, Store, random_hex};
use rstest::rstest;
use sealgate::config::{AccessKeyConfig, PolicyConfig, Secret};

const ACCOUNT: &str = "000000000000";

/// Each user's own buckets (named `USER-...`), their prefix `USER/` of any `shared-...`
/// bucket, and the bucket list: one named policy for everyone, through policy variables.
const HOME: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"OwnBuckets","Effect":"Allow","Action":"s3:*",
   "Resource":["arn:aws:s3:::${aws:username}-*","arn:aws:s3:::${aws:username}-*/*"]},
  {"Sid":"BucketList","Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"},
  {"Sid":"OwnPrefix","Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],
   "Resource":"arn:aws:s3:::shared-*/${aws:username}/*"},
  {"Sid":"ListOwnPrefix","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::shared-*",
   "Condition":{"StringLike":{"s3:prefix":"${aws:username}/*"}}}]}"#;

/// bob's guard rails: nothing under `keep/` is ever deleted, and only SSE-KMS uploads
/// under `kms-only/` (the usual "deny unencrypted uploads" statement).
const BOB_GUARDS: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"KeepIsForever","Effect":"Deny","Action":["s3:DeleteObject","s3:DeleteObjectVersion"],
   "Resource":"arn:aws:s3:::bob-*/keep/*"},
  {"Sid":"KmsOnly","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::bob-*/kms-only/*",
   "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#;

fn user(name: &str, policies: &[&str]) -> AccessKeyConfig {
    AccessKeyConfig {
        access_key_id: format!("AKID{}", name.to_uppercase()),
        secret_access_key: Secret::new(format!("{name}-secret-key-0001")),
        principal: name.into(),
        policies: policies.iter().map(|p| p.to_string()).collect(),
        ..AccessKeyConfig::default()
    }
}

/// sealgate with alice, bob (HOME, and BOB_GUARDS), and the harness's tester key (every
/// S3 action), each with a client; alice's and bob's own buckets and a shared bucket.
struct World {
    sg: Sealgate,
    alice: Client,
    bob: Client,
    alice_bucket: String,
    bob_bucket: String,
    shared: String,
}

fn client_of(sg: &Sealgate, name: &str) -> Client {
    common::s3_client(
        &sg.endpoint,
        &format!("AKID{}", name.to_uppercase()),
        &format!("{name}-secret-key-0001"),
        "us-east-1",
    )
}

async fn world(store: Store) -> World {
    let mut cfg = common::test_config_on(store);
    for (name, doc) in [("home", HOME), ("bob-guards", BOB_GUARDS)] {
        cfg.policies.insert(
            name.into(),
            PolicyConfig {
                document: Some(doc.into()),
                file: None,
            },
        );
    }
    cfg.access_keys.push(user("alice", &["home"]));
    cfg.access_keys.push(user("bob", &["home", "bob-guards"]));
    let sg = Sealgate::start_with(cfg).await;
    let (alice, bob) = (client_of(&sg, "alice"), client_of(&sg, "bob"));
    let suffix = random_hex(6);
    let (alice_bucket, bob_bucket, shared) = (
        format!("alice-{suffix}"),
        format!("bob-{suffix}"),
        format!("shared-{suffix}"),
    );
    for (c, b) in [
        (&alice, &alice_bucket),
        (&bob, &bob_bucket),
        (&sg.client, &shared),
    ] {
        c.create_bucket().bucket(b).send().await.unwrap();
    }
    World {
        sg,
        alice,
        bob,
        alice_bucket,
        bob_bucket,
        shared,
    }
}

/// AWS's message for a request no identity policy allows.
fn implicit(who: &str, action: &str, resource: &str) -> String {
    format!(
        "User: arn:aws:iam::{ACCOUNT}:user/{who} is not authorized to perform: {action} on resource: \"{resource}\" because no identity-based policy allows the {action} action"
    )
}

/// AWS's message for a request a statement of the named policy denies.
fn explicit(who: &str, action: &str, resource: &str, policy: &str) -> String {
    format!(
        "User: arn:aws:iam::{ACCOUNT}:user/{who} is not authorized to perform: {action} on resource: \"{resource}\" with an explicit deny in an identity-based policy: arn:aws:iam::{ACCOUNT}:policy/{policy}"
    )
}

/// The request failed with 403 AccessDenied and exactly `message`.
#[track_caller]
fn assert_denied<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
    message: &str,
) {
    let e = r.expect_err("the request must be denied");
    let status = e.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "{e:?}");
    assert_eq!(e.code(), Some("AccessDenied"), "{e:?}");
    assert_eq!(e.message(), Some(message), "{e:?}");
}

/// The request failed with 403 (HEAD: no body, so no code or message).
#[track_caller]
fn assert_forbidden<T: std::fmt::Debug, E: std::fmt::Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
) {
    let e = r.expect_err("the request must be refused");
    assert_eq!(
        e.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{e:?}"
    );
}

async fn put_text(c: &Client, bucket: &str, key: &str, text: &str) {
    common::put(c, bucket, key, text.as_bytes()).await;
}

async fn exists(c: &Client, bucket: &str, key: &str) -> bool {
    c.head_object().bucket(bucket).key(key).send().await.is_ok()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn bob_cannot_read_overwrite_or_delete_alices_objects(#[case] store: Store) {
    let w = world(store).await;
    let (a, doc) = (&w.alice_bucket, "report.txt");
    put_text(&w.alice, a, doc, "alice's report").await;
    let arn = format!("arn:aws:s3:::{a}/{doc}");

    let get = w.bob.get_object().bucket(a).key(doc).send().await;
    assert_denied(get, &implicit("bob", "s3:GetObject", &arn));
    assert_forbidden(w.bob.head_object().bucket(a).key(doc).send().await);
    let put = w
        .bob
        .put_object()
        .bucket(a)
        .key(doc)
        .body(ByteStream::from_static(b"bob was here"))
        .send()
        .await;
    assert_denied(put, &implicit("bob", "s3:PutObject", &arn));
    let delete = w.bob.delete_object().bucket(a).key(doc).send().await;
    assert_denied(delete, &implicit("bob", "s3:DeleteObject", &arn));
    let new = w
        .bob
        .put_object()
        .bucket(a)
        .key("planted")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_denied(
        new,
        &implicit("bob", "s3:PutObject", &format!("arn:aws:s3:::{a}/planted")),
    );

    // Nothing reached the store: alice's object is hers, unchanged, and nothing was added.
    let body = common::get(&w.alice, a, doc).await;
    assert_eq!(&body[..], b"alice's report");
    assert!(!exists(&w.sg.client, a, "planted").await);
    // bob's policies do let him use his own bucket (the denials are not a broken setup).
    put_text(&w.bob, &w.bob_bucket, doc, "bob's report").await;
    assert_eq!(
        &common::get(&w.bob, &w.bob_bucket, doc).await[..],
        b"bob's report"
    );
    let buckets = w.bob.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().iter().any(|b| b.name() == Some(a)));
    // alice is scoped the same way.
    let get = w
        .alice
        .get_object()
        .bucket(&w.bob_bucket)
        .key(doc)
        .send()
        .await;
    let bobs = format!("arn:aws:s3:::{}/{doc}", w.bob_bucket);
    assert_denied(get, &implicit("alice", "s3:GetObject", &bobs));
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn bob_cannot_list_reconfigure_or_delete_alices_bucket(#[case] store: Store) {
    let w = world(store).await;
    let a = &w.alice_bucket;
    let bucket_arn = format!("arn:aws:s3:::{a}");
    put_text(&w.alice, a, "k", "v").await;

    let list = w.bob.list_objects_v2().bucket(a).send().await;
    assert_denied(list, &implicit("bob", "s3:ListBucket", &bucket_arn));
    let v1 = w.bob.list_objects().bucket(a).send().await;
    assert_denied(v1, &implicit("bob", "s3:ListBucket", &bucket_arn));

    // alice's bucket encrypts new objects under a KMS key of hers.
    let key = common::new_key_arn(&w.sg).await;
    let rule = |alg: ServerSideEncryption, key: Option<&str>| {
        ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(
                        ServerSideEncryptionByDefault::builder()
                            .sse_algorithm(alg)
                            .set_kms_master_key_id(key.map(str::to_string))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
            .unwrap()
    };
    w.alice
        .put_bucket_encryption()
        .bucket(a)
        .server_side_encryption_configuration(rule(ServerSideEncryption::AwsKms, Some(&key)))
        .send()
        .await
        .unwrap();
    let change = w
        .bob
        .put_bucket_encryption()
        .bucket(a)
        .server_side_encryption_configuration(rule(ServerSideEncryption::Aes256, None))
        .send()
        .await;
    let encryption = implicit("bob", "s3:PutEncryptionConfiguration", &bucket_arn);
    assert_denied(change, &encryption);
    let delete = w.bob.delete_bucket_encryption().bucket(a).send().await;
    assert_denied(delete, &encryption);
    let read = w.bob.get_bucket_encryption().bucket(a).send().await;
    assert_denied(
        read,
        &implicit("bob", "s3:GetEncryptionConfiguration", &bucket_arn),
    );
    // alice's rule is intact: her next write still goes under her key.
    let got = w
        .alice
        .get_bucket_encryption()
        .bucket(a)
        .send()
        .await
        .unwrap();
    let by_default = got.server_side_encryption_configuration().unwrap().rules()[0]
        .apply_server_side_encryption_by_default()
        .unwrap();
    assert_eq!(by_default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    put_text(&w.alice, a, "after", "still under alice's key").await;
    let head = w
        .alice
        .head_object()
        .bucket(a)
        .key("after")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(key.as_str()));

    let gone = w.bob.delete_bucket().bucket(a).send().await;
    assert_denied(gone, &implicit("bob", "s3:DeleteBucket", &bucket_arn));
    w.alice.head_bucket().bucket(a).send().await.unwrap();
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn alices_objects_cannot_be_copy_sources_for_bob(#[case] store: Store) {
    let w = world(store).await;
    let (a, b) = (&w.alice_bucket, &w.bob_bucket);
    put_text(&w.alice, a, "secret", "alice's secret").await;
    put_text(&w.bob, b, "mine", "bob's own").await;
    let source_arn = format!("arn:aws:s3:::{a}/secret");
    let read_source = implicit("bob", "s3:GetObject", &source_arn);

    let copy = w
        .bob
        .copy_object()
        .bucket(b)
        .key("stolen")
        .copy_source(format!("{a}/secret"))
        .send()
        .await;
    assert_denied(copy, &read_source);
    assert!(!exists(&w.bob, b, "stolen").await);

    let up = w
        .bob
        .create_multipart_upload()
        .bucket(b)
        .key("stolen-mp")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap();
    let part = w
        .bob
        .upload_part_copy()
        .bucket(b)
        .key("stolen-mp")
        .upload_id(upload_id)
        .part_number(1)
        .copy_source(format!("{a}/secret"))
        .send()
        .await;
    assert_denied(part, &read_source);
    // The same copies from bob's own object work.
    w.bob
        .upload_part_copy()
        .bucket(b)
        .key("stolen-mp")
        .upload_id(upload_id)
        .part_number(1)
        .copy_source(format!("{b}/mine"))
        .send()
        .await
        .unwrap();
    w.bob
        .abort_multipart_upload()
        .bucket(b)
        .key("stolen-mp")
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();
    w.bob
        .copy_object()
        .bucket(b)
        .key("copy")
        .copy_source(format!("{b}/mine"))
        .send()
        .await
        .unwrap();
    assert_eq!(&common::get(&w.bob, b, "copy").await[..], b"bob's own");
}

fn delete_of(keys: &[&str]) -> Delete {
    Delete::builder()
        .set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn delete_objects_deletes_only_the_keys_the_caller_may_delete(#[case] store: Store) {
    let w = world(store).await;
    let s = &w.shared;
    put_text(&w.bob, s, "bob/old", "bob's").await;
    put_text(&w.alice, s, "alice/plan", "alice's").await;
    put_text(&w.bob, &w.bob_bucket, "tmp", "scratch").await;
    put_text(&w.bob, &w.bob_bucket, "keep/contract", "forever").await;

    let out = w
        .bob
        .delete_objects()
        .bucket(s)
        .delete(delete_of(&["bob/old", "alice/plan", "bob/never-existed"]))
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["bob/never-existed", "bob/old"]);
    let errors: Vec<_> = out
        .errors()
        .iter()
        .map(|e| (e.key().unwrap(), e.code().unwrap()))
        .collect();
    assert_eq!(errors, [("alice/plan", "AccessDenied")]);
    assert!(!exists(&w.sg.client, s, "bob/old").await);
    assert!(
        exists(&w.sg.client, s, "alice/plan").await,
        "alice's key stays"
    );

    // An explicit Deny (bob-guards: keep/) is reported per key the same way.
    let out = w
        .bob
        .delete_objects()
        .bucket(&w.bob_bucket)
        .delete(delete_of(&["keep/contract", "tmp"]))
        .send()
        .await
        .unwrap();
    let deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, ["tmp"]);
    let errors: Vec<_> = out.errors().iter().filter_map(|e| e.key()).collect();
    assert_eq!(errors, ["keep/contract"]);
    assert!(exists(&w.bob, &w.bob_bucket, "keep/contract").await);

    // Every key denied: nothing is deleted and each is reported.
    put_text(&w.alice, &w.alice_bucket, "x", "1").await;
    let out = w
        .bob
        .delete_objects()
        .bucket(&w.alice_bucket)
        .delete(delete_of(&["x"]))
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    assert_eq!(out.errors()[0].code(), Some("AccessDenied"));
    assert!(exists(&w.alice, &w.alice_bucket, "x").await);
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn an_explicit_deny_beats_an_allow(#[case] store: Store) {
    let w = world(store).await;
    let b = &w.bob_bucket;
    put_text(&w.bob, b, "keep/contract", "signed").await;
    // HOME allows bob everything in his bucket; bob-guards denies deleting under keep/.
    let delete = w
        .bob
        .delete_object()
        .bucket(b)
        .key("keep/contract")
        .send()
        .await;
    let arn = format!("arn:aws:s3:::{b}/keep/contract");
    assert_denied(
        delete,
        &explicit("bob", "s3:DeleteObject", &arn, "bob-guards"),
    );
    assert_eq!(
        &common::get(&w.bob, b, "keep/contract").await[..],
        b"signed",
        "the Deny is about deleting only"
    );
    // alice has no such Deny in her own bucket.
    put_text(&w.alice, &w.alice_bucket, "keep/contract", "x").await;
    w.alice
        .delete_object()
        .bucket(&w.alice_bucket)
        .key("keep/contract")
        .send()
        .await
        .unwrap();
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn listing_a_shared_bucket_is_limited_by_the_prefix_condition(#[case] store: Store) {
    let w = world(store).await;
    let s = &w.shared;
    put_text(&w.bob, s, "bob/1", "b").await;
    put_text(&w.alice, s, "alice/1", "a").await;
    let own = w
        .bob
        .list_objects_v2()
        .bucket(s)
        .prefix("bob/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = own.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["bob/1"]);
    let bucket_arn = format!("arn:aws:s3:::{s}");
    let denied = implicit("bob", "s3:ListBucket", &bucket_arn);
    for prefix in [Some("alice/"), Some(""), None] {
        let r = w
            .bob
            .list_objects_v2()
            .bucket(s)
            .set_prefix(prefix.map(str::to_string))
            .send()
            .await;
        assert_denied(r, &denied);
    }
    // Objects under the other prefix stay out of reach too.
    let get = w.bob.get_object().bucket(s).key("alice/1").send().await;
    assert_denied(
        get,
        &implicit("bob", "s3:GetObject", &format!("{bucket_arn}/alice/1")),
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn uploads_without_sse_kms_are_refused_where_the_policy_requires_it(#[case] store: Store) {
    let w = world(store).await;
    let b = &w.bob_bucket;
    let put = |key: &'static str, sse: Option<ServerSideEncryption>| {
        w.bob
            .put_object()
            .bucket(b)
            .key(key)
            .set_server_side_encryption(sse)
            .body(ByteStream::from_static(b"payroll"))
            .send()
    };
    let arn = |k: &str| format!("arn:aws:s3:::{b}/{k}");
    let denied = |k: &str| explicit("bob", "s3:PutObject", &arn(k), "bob-guards");
    assert_denied(put("kms-only/plain", None).await, &denied("kms-only/plain"));
    assert_denied(
        put("kms-only/sse-s3", Some(ServerSideEncryption::Aes256)).await,
        &denied("kms-only/sse-s3"),
    );
    let ok = put("kms-only/kms", Some(ServerSideEncryption::AwsKms))
        .await
        .unwrap();
    assert_eq!(
        ok.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        &common::get(&w.bob, b, "kms-only/kms").await[..],
        b"payroll"
    );
    assert!(!exists(&w.bob, b, "kms-only/plain").await);
    // Elsewhere the condition does not apply.
    put("elsewhere", None).await.unwrap();

    // Multipart: CreateMultipartUpload is decided on its header; the parts and the
    // completion (which send none) on the upload's encryption, so an SSE-KMS upload goes
    // through and a plain one never starts.
    let create = |key: &'static str, sse: Option<ServerSideEncryption>| {
        w.bob
            .create_multipart_upload()
            .bucket(b)
            .key(key)
            .set_server_side_encryption(sse)
            .send()
    };
    assert_denied(
        create("kms-only/mp-plain", None).await,
        &denied("kms-only/mp-plain"),
    );
    let up = create("kms-only/mp", Some(ServerSideEncryption::AwsKms))
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = w
        .bob
        .upload_part()
        .bucket(b)
        .key("kms-only/mp")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"payroll, in parts"))
        .send()
        .await
        .unwrap();
    w.bob
        .complete_multipart_upload()
        .bucket(b)
        .key("kms-only/mp")
        .upload_id(id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        &common::get(&w.bob, b, "kms-only/mp").await[..],
        b"payroll, in parts"
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn presigned_urls_are_authorized_as_their_signer(#[case] store: Store) {
    let w = world(store).await;
    let a = &w.alice_bucket;
    put_text(&w.alice, a, "photo", "alice's photo").await;
    let cfg = || PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let http = reqwest::Client::new();

    let alices = w
        .alice
        .get_object()
        .bucket(a)
        .key("photo")
        .presigned(cfg())
        .await
        .unwrap();
    let r = http.get(alices.uri()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "alice's photo");

    let bobs = w
        .bob
        .get_object()
        .bucket(a)
        .key("photo")
        .presigned(cfg())
        .await
        .unwrap();
    let r = http.get(bobs.uri()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    let message = implicit("bob", "s3:GetObject", &format!("arn:aws:s3:::{a}/photo"));
    assert!(
        body.contains("<Code>AccessDenied</Code>")
            && body.contains(&message.replace('"', "&quot;")),
        "{body}"
    );
    let upload = w
        .bob
        .put_object()
        .bucket(a)
        .key("photo")
        .presigned(cfg())
        .await
        .unwrap();
    let r = http
        .put(upload.uri())
        .body("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        &common::get(&w.alice, a, "photo").await[..],
        b"alice's photo"
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn denials_are_in_the_audit_log_with_the_principal(#[case] store: Store) {
    let w = world(store).await;
    let a = w.alice_bucket.clone();
    put_text(&w.alice, &a, "doc", "alice's").await;
    let get = w.bob.get_object().bucket(&a).key("doc").send().await;
    let arn = format!("arn:aws:s3:::{a}/doc");
    assert_denied(get, &implicit("bob", "s3:GetObject", &arn));
    let out = w
        .bob
        .delete_objects()
        .bucket(&a)
        .delete(delete_of(&["doc"]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.errors().len(), 1);
    let dir = w.sg.state_dir.clone();
    w.sg.stop().await.unwrap();

    let path = dir.path().join("kms.audit.jsonl");
    let log = std::fs::read_to_string(&path).unwrap();
    let denials: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["errorCode"] == "AccessDenied")
        .collect();
    let get = denials
        .iter()
        .find(|e| e["eventName"] == "GetObject")
        .unwrap_or_else(|| panic!("no GetObject denial in\n{log}"));
    assert_eq!(get["eventSource"], "s3.amazonaws.com");
    assert_eq!(get["userIdentity"]["type"], "IAMUser");
    assert_eq!(
        get["userIdentity"]["arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/bob")
    );
    assert_eq!(get["userIdentity"]["userName"], "bob");
    assert_eq!(get["requestParameters"]["action"], "s3:GetObject");
    assert_eq!(get["requestParameters"]["resource"], arn);
    assert_eq!(get["requestParameters"]["bucketName"], a);
    assert_eq!(get["requestParameters"]["key"], "doc");
    assert_eq!(
        get["errorMessage"],
        implicit("bob", "s3:GetObject", &arn).as_str()
    );
    assert_eq!(get["sourceIPAddress"], "127.0.0.1");
    assert!(get["requestID"].as_str().is_some_and(|r| !r.is_empty()));
    // DeleteObjects: one event per denied key.
    let per_key = denials
        .iter()
        .find(|e| e["eventName"] == "DeleteObjects")
        .unwrap_or_else(|| panic!("no DeleteObjects denial in\n{log}"));
    assert_eq!(per_key["requestParameters"]["action"], "s3:DeleteObject");
    assert_eq!(per_key["requestParameters"]["key"], "doc");
    let report = sealgate::kms::verify_audit_log(&path).unwrap();
    assert!(report.is_intact(), "{report}");
}

/// `sealgate serve --check` on `toml`: (exit code, stdout + stderr).
fn check(dir: &std::path::Path, toml: &str) -> (i32, String) {
    let path = dir.join("sealgate.toml");
    common::write_private(&path, toml.as_bytes());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn misconfigured_policies_stop_serve_check_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = |key: &str, extra: &str| {
        format!(
            "[upstream]\nendpoint = \"http://127.0.0.1:1\"\naccess_key_id = \"x\"\nsecret_access_key = \"y\"\n\
             [[access_keys]]\naccess_key_id = \"AKIDBOB\"\nsecret_access_key = \"bob-secret-key-0001\"\nprincipal = \"bob\"\n{key}\n\
             [policies.home]\ndocument = '{}'\n{extra}",
            HOME.replace('\n', " ")
        )
    };
    let (code, out) = check(dir.path(), &base("policies = [\"home\"]", ""));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");

    let cases = [
        (
            base("", ""),
            "configuration error in `access_keys[0]`: access key AKIDBOB (principal bob) is not root and has no identity policy",
        ),
        (
            base("policies = [\"hom\"]", ""),
            "configuration error in `access_keys[0].policies[0]`: no policy named `hom` in [policies] (defined: home)",
        ),
        (
            base(
                "policy = '{\"Version\": \"2012-10-17\", \"Statement\": ['",
                "",
            ),
            "configuration error in `access_keys[0].policy`: not valid JSON",
        ),
        (
            base(
                "policies = [\"home\"]",
                "[policies.typo]\ndocument = '{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"s3:GetObject\",\"Resource\":\"*\",\"Condition\":{\"StringEquals\":{\"s3:x-amz-server-side-encrpytion\":\"aws:kms\"}}}}'\n",
            ),
            "configuration error in `policies.typo`: Statement[0].Condition.StringEquals.s3:x-amz-server-side-encrpytion: sealgate does not supply the condition key",
        ),
    ];
    for (toml, want) in cases {
        let (code, out) = check(dir.path(), &toml);
        assert_eq!(code, 2, "{toml}\n{out}");
        assert!(out.contains(want), "{toml}\n got: {out}\nwant: {want}");
    }
}

/// A store with two buckets and two credentials: the shared one sealgate signs with by
/// default (every permission), and bob's, which the store lets into `own` only.
struct StoreWithUsers {
    /// sealgate's config: the store upstream with the shared credential, the tester key.
    cfg: sealgate::config::Config,
    direct: Client,
    own: String,
    other: String,
    bob_store_key: (String, String),
    /// Keeps a private store running.
    _private: Option<common::PrivateSeaweedFs>,
}

async fn store_with_users(store: Store) -> StoreWithUsers {
    let suffix = random_hex(6);
    let (own, other) = (format!("own-{suffix}"), format!("other-{suffix}"));
    let (cfg, direct, bob_store_key, private) = match store {
        Store::Garage => {
            // A Garage key allowed into `own` only. The buckets get global names (a
            // bucket created through S3 is named in its creator's key only).
            let key = (format!("GK{}", random_hex(12)), random_hex(32));
            let cfg = common::test_config_on(Store::Garage);
            let direct = common::garage().client();
            let name = format!("bob-{suffix}");
            common::garage_cli(&["key", "import", "--yes", "-n", &name, &key.0, &key.1]);
            let allow = |bucket: &str, key: &str| {
                let rw = ["bucket", "allow", "--read", "--write", "--owner", bucket];
                common::garage_cli(&[&rw[..], &["--key", key]].concat());
            };
            for b in [&own, &other] {
                common::garage_cli(&["bucket", "create", b]);
                allow(b, common::GARAGE_AK);
            }
            allow(&own, &key.0);
            (cfg, direct, key, None)
        }
        Store::SeaweedFs => {
            // SeaweedFS identities: bob's actions are scoped to `own`.
            let admin = ("SWadmin0001".to_string(), random_hex(20));
            let key = ("SWbob0001".to_string(), random_hex(20));
            let ids = serde_json::json!({"identities": [
                {"name": "sealgate", "credentials": [{"accessKey": admin.0, "secretKey": admin.1}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
                {"name": "bob", "credentials": [{"accessKey": key.0, "secretKey": key.1}],
                 "actions": [format!("Read:{own}"), format!("Write:{own}"), format!("List:{own}"),
                             format!("Tagging:{own}")]},
            ]});
            let (ids, admin2) = (ids.to_string(), admin.clone());
            let s = tokio::task::spawn_blocking(move || {
                common::PrivateSeaweedFs::start(&ids, (&admin2.0, &admin2.1))
            })
            .await
            .unwrap();
            let cfg = common::config_for_store(&s.endpoint, &admin.0, &admin.1, "us-east-1");
            let direct = s.client(&admin.0, &admin.1);
            for b in [&own, &other] {
                direct.create_bucket().bucket(b).send().await.unwrap();
            }
            (cfg, direct, key, Some(s))
        }
    };
    StoreWithUsers {
        cfg,
        direct,
        own,
        other,
        bob_store_key,
        _private: private,
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_keys_own_store_credential_lets_the_store_enforce_its_permissions(#[case] store: Store) {
    let s = store_with_users(store).await;
    let mut cfg = s.cfg.clone();
    // sealgate's policies let bob do anything: what stops him below is the store.
    cfg.access_keys.push(AccessKeyConfig {
        policy: Some(common::S3_FULL_POLICY.into()),
        store_access_key_id: Some(s.bob_store_key.0.clone()),
        store_secret_access_key: Secret::new(s.bob_store_key.1.clone()),
        ..user("bob", &[])
    });
    let sg = Sealgate::start_with(cfg).await;
    let bob = client_of(&sg, "bob");
    let (own, other) = (&s.own, &s.other);
    put_text(&sg.client, other, "secret", "not bob's").await;

    // In his bucket bob works as usual (encrypted; sealgate's own state is reached with
    // the shared credential), including a multipart upload.
    put_text(&bob, own, "note", "bob's note").await;
    assert_eq!(&common::get(&bob, own, "note").await[..], b"bob's note");
    let raw = s
        .direct
        .get_object()
        .bucket(own)
        .key("note")
        .send()
        .await
        .unwrap();
    let stored = raw.body.collect().await.unwrap().into_bytes();
    assert!(
        !stored.windows(10).any(|w| w == b"bob's note"),
        "stored encrypted"
    );
    let up = bob
        .create_multipart_upload()
        .bucket(own)
        .key("mp")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = bob
        .upload_part()
        .bucket(own)
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"one part"))
        .send()
        .await
        .unwrap();
    bob.complete_multipart_upload()
        .bucket(own)
        .key("mp")
        .upload_id(id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(&common::get(&bob, own, "mp").await[..], b"one part");

    // The other bucket: the store refuses bob's credential (its code reaches bob).
    let get = bob.get_object().bucket(other).key("secret").send().await;
    assert_eq!(
        get.as_ref().err().and_then(|e| e.code()),
        Some("AccessDenied")
    );
    assert_forbidden(get);
    assert_forbidden(bob.list_objects_v2().bucket(other).send().await);
    let put = bob
        .put_object()
        .bucket(other)
        .key("planted")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_forbidden(put);
    assert_forbidden(bob.delete_object().bucket(other).key("secret").send().await);
    let listed = s
        .direct
        .list_objects_v2()
        .bucket(other)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["secret"], "nothing planted, nothing deleted");
    // The same sealgate with the shared credential (the tester key) is let in.
    assert_eq!(
        &common::get(&sg.client, other, "secret").await[..],
        b"not bob's"
    );
}

/// A browser form upload (POST Object) signed by `who` for `bucket/key`: the SigV4 POST
/// policy and the multipart body built by hand, as a browser sends them.
async fn post_object(
    sg: &Sealgate,
    who: &str,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> (u16, String) {
    use aws_lc_rs::hmac;
    use base64::Engine as _;
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let amz_date = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    let ak = format!("AKID{}", who.to_uppercase());
    let sk = format!("{who}-secret-key-0001");
    let credential = format!("{ak}/{date}/us-east-1/s3/aws4_request");
    let expiration = (now + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let policy = serde_json::json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": bucket}, {"key": key},
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": credential},
            {"x-amz-date": amz_date}
        ]
    });
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let mut k = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{sk}").as_bytes());
    for part in [date.as_str(), "us-east-1", "s3", "aws4_request"] {
        k = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&k, part.as_bytes()).as_ref());
    }
    let signature = hex::encode(hmac::sign(&k, policy_b64.as_bytes()).as_ref());
    let boundary = "sealgateformboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in [
        ("key", key),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ("x-amz-credential", credential.as_str()),
        ("x-amz-date", amz_date.as_str()),
        ("policy", policy_b64.as_str()),
        ("x-amz-signature", signature.as_str()),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = reqwest::Client::new()
        .post(format!("{}/{bucket}", sg.endpoint))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// POST Object is authorized as the PutObject it stands for, with the signer's policies.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_form_upload_is_authorized_as_a_put_object(#[case] store: Store) {
    let w = world(store).await;
    let (status, body) = post_object(&w.sg, "bob", &w.alice_bucket, "from-bob", b"intruder").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(
        body.contains(
            &implicit(
                "bob",
                "s3:PutObject",
                &format!("arn:aws:s3:::{}/from-bob", w.alice_bucket)
            )
            .replace('"', "&quot;")
        ),
        "{body}"
    );
    assert!(
        w.sg.direct
            .head_object()
            .bucket(&w.alice_bucket)
            .key("from-bob")
            .send()
            .await
            .is_err(),
        "nothing was stored"
    );
    let (status, body) = post_object(&w.sg, "alice", &w.alice_bucket, "from-alice", b"owner").await;
    assert_eq!(status, 204, "{body}");
    let got = w
        .alice
        .get_object()
        .bucket(&w.alice_bucket)
        .key("from-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"owner"
    );
}
