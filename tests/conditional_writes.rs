//! Conditional writes as AWS documents them: `If-None-Match: *` writes only where no
//! object has the key, `If-Match: ETAG` only over the object with that ETag, on PutObject
//! and CompleteMultipartUpload, with the ETags clients see (an encrypted object's is not
//! the store's). A refused write changes nothing.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{Sealgate, Store, pattern};
use rstest::rstest;

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> (u16, String) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_default()
        .to_string();
    (status, code)
}

async fn read(sg: &Sealgate, b: &str, k: &str) -> Vec<u8> {
    let o = sg
        .client
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn put_if_none_match_star_writes_a_key_only_once(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let put = |body: &'static [u8]| {
        sg.client
            .put_object()
            .bucket(&b)
            .key("lock")
            .if_none_match("*")
            .body(ByteStream::from_static(body))
            .send()
    };
    put(b"first").await.unwrap();
    let e = put(b"second").await.unwrap_err();
    assert_eq!(code(&e), (412, "PreconditionFailed".into()));
    assert_eq!(read(&sg, &b, "lock").await, b"first");

    // Only `*` is a write condition AWS knows.
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("other")
        .if_none_match("\"0123\"")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (501, "NotImplemented".into()));
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn put_if_match_compares_the_etag_clients_see(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let v1 = sg
        .client
        .put_object()
        .bucket(&b)
        .key("doc")
        .body(ByteStream::from_static(b"version 1"))
        .send()
        .await
        .unwrap();
    let etag1 = v1.e_tag().unwrap().to_string();
    // A stale ETag loses.
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("doc")
        .if_match("\"0cc175b9c0f1b6a831c399e269772661\"")
        .body(ByteStream::from_static(b"lost update"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (412, "PreconditionFailed".into()));
    assert_eq!(read(&sg, &b, "doc").await, b"version 1");
    // The current one wins, once.
    let v2 = sg
        .client
        .put_object()
        .bucket(&b)
        .key("doc")
        .if_match(&etag1)
        .body(ByteStream::from_static(b"version 2"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(&sg, &b, "doc").await, b"version 2");
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("doc")
        .if_match(&etag1)
        .body(ByteStream::from_static(b"version 3"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (412, "PreconditionFailed".into()));
    assert_ne!(v2.e_tag(), Some(etag1.as_str()));
    // No object: 404, as AWS answers.
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("missing")
        .if_match(&etag1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchKey".into()));
    assert!(
        sg.client
            .head_object()
            .bucket(&b)
            .key("missing")
            .send()
            .await
            .is_err()
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn complete_multipart_upload_honours_write_conditions(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let existing = sg
        .client
        .put_object()
        .bucket(&b)
        .key("big")
        .body(ByteStream::from_static(b"small"))
        .send()
        .await
        .unwrap();
    let up = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let body = pattern(5 << 20, 3);
    let part = sg
        .client
        .upload_part()
        .bucket(&b)
        .key("big")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let parts = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().unwrap())
                .build(),
        )
        .build();
    let complete = || {
        sg.client
            .complete_multipart_upload()
            .bucket(&b)
            .key("big")
            .upload_id(id)
            .multipart_upload(parts.clone())
    };
    let e = complete().if_none_match("*").send().await.unwrap_err();
    assert_eq!(code(&e), (412, "PreconditionFailed".into()));
    let e = complete()
        .if_match("\"00000000000000000000000000000000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (412, "PreconditionFailed".into()));
    assert_eq!(read(&sg, &b, "big").await, b"small");
    // The upload survives a refused completion and completes over the object it names.
    complete()
        .if_match(existing.e_tag().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read(&sg, &b, "big").await, body);
}
