//! Versioned buckets end to end (issue 18): versionId on GET, HEAD, ranged GET,
//! GetObjectAttributes, DELETE, CopyObject and UploadPartCopy sources; ListObjectVersions
//! with plaintext sizes, delete markers and null versions; no plaintext in any stored
//! version.
//!
//! SeaweedFS only: Garage 2.5 has no bucket versioning (`Store::versioning`).

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, ObjectAttributes,
    VersioningConfiguration,
};
use common::{Sealgate, Store};

async fn enable_versioning(sg: &Sealgate, b: &str) {
    sg.client
        .put_bucket_versioning()
        .bucket(b)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn put(sg: &Sealgate, b: &str, k: &str, body: &[u8]) -> Option<String> {
    sg.client
        .put_object()
        .bucket(b)
        .key(k)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap()
        .version_id()
        .map(str::to_string)
}

async fn get_version(sg: &Sealgate, b: &str, k: &str, v: &str, range: Option<&str>) -> Vec<u8> {
    sg.client
        .get_object()
        .bucket(b)
        .key(k)
        .version_id(v)
        .set_range(range.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {k}?versionId={v}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_an_object_reads_back_by_its_version_id() {
    assert!(Store::SeaweedFs.versioning());
    let sg = Sealgate::start_on(Store::SeaweedFs).await;
    let b = sg.bucket().await;
    // A version written before versioning is enabled is the null version.
    put(&sg, &b, "k", b"version zero: before versioning").await;
    enable_versioning(&sg, &b).await;
    let v1 = put(&sg, &b, "k", b"version one")
        .await
        .expect("a version id");
    let v2 = put(&sg, &b, "k", b"version two, longer")
        .await
        .expect("a version id");
    assert_ne!(v1, v2);

    assert_eq!(get_version(&sg, &b, "k", &v1, None).await, b"version one");
    assert_eq!(
        get_version(&sg, &b, "k", &v2, None).await,
        b"version two, longer"
    );
    assert_eq!(
        get_version(&sg, &b, "k", "null", None).await,
        b"version zero: before versioning"
    );
    assert_eq!(
        get_version(&sg, &b, "k", &v1, Some("bytes=8-10")).await,
        b"one"
    );
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(11));
    assert_eq!(head.version_id(), Some(v1.as_str()));
    let attrs = sg
        .client
        .get_object_attributes()
        .bucket(&b)
        .key("k")
        .version_id(&v1)
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.object_size(), Some(11));

    // Copies from an older version: the answer names the version read and the one
    // written, as AWS's does.
    let copied = sg
        .client
        .copy_object()
        .bucket(&b)
        .key("copy")
        .copy_source(format!("{b}/k?versionId={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.copy_source_version_id(), Some(v1.as_str()));
    let copy_version = copied
        .version_id()
        .expect("the new version's id")
        .to_string();
    let got = sg
        .client
        .get_object()
        .bucket(&b)
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.version_id(), Some(copy_version.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"version one"
    );
    let up = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("partcopy")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let pc = sg
        .client
        .upload_part_copy()
        .bucket(&b)
        .key("partcopy")
        .upload_id(id)
        .part_number(1)
        .copy_source(format!("{b}/k?versionId=null"))
        .send()
        .await
        .unwrap();
    let etag = pc.copy_part_result().unwrap().e_tag().unwrap().to_string();
    sg.client
        .complete_multipart_upload()
        .bucket(&b)
        .key("partcopy")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = sg
        .client
        .get_object()
        .bucket(&b)
        .key("partcopy")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"version zero: before versioning"
    );

    // A DELETE without a version id adds a delete marker; the versions stay readable.
    let del = sg
        .client
        .delete_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.into_service_error().meta().code(), Some("NoSuchKey"));
    assert_eq!(
        get_version(&sg, &b, "k", &v2, None).await,
        b"version two, longer"
    );

    // ListObjectVersions: plaintext sizes, the delete marker, the null version.
    let list = sg
        .client
        .list_object_versions()
        .bucket(&b)
        .prefix("k")
        .send()
        .await
        .unwrap();
    let mut sizes: Vec<(String, i64)> = list
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap().to_string(), v.size().unwrap()))
        .collect();
    sizes.sort();
    let mut want = vec![(v1.clone(), 11), (v2.clone(), 19), ("null".to_string(), 31)];
    want.sort();
    assert_eq!(sizes, want);
    assert_eq!(list.delete_markers().len(), 1);
    assert_eq!(list.delete_markers()[0].is_latest(), Some(true));

    // Deleting one version removes just that one.
    sg.client
        .delete_object()
        .bucket(&b)
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap_err();
    let code = e.into_service_error().meta().code().map(str::to_string);
    assert!(
        matches!(code.as_deref(), Some("NoSuchVersion" | "NoSuchKey")),
        "{code:?}"
    );
    assert_eq!(
        get_version(&sg, &b, "k", &v2, None).await,
        b"version two, longer"
    );

    // No stored version holds plaintext.
    let stored = sg
        .direct
        .list_object_versions()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    for v in stored.versions() {
        let body = sg
            .direct
            .get_object()
            .bucket(&b)
            .key(v.key().unwrap())
            .version_id(v.version_id().unwrap())
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(
            !body.windows(7).any(|w| w == b"version"),
            "plaintext in stored version {:?} of {:?}",
            v.version_id(),
            v.key()
        );
    }
}

/// A bucket with Object Lock and a default retention: the store requires a checksum on
/// every write (AWS requires one too), which sealgate sends (CRC32C), so single-part and
/// multipart writes are accepted, read back, and cannot be deleted by version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_buckets_with_default_retention_accept_sealgates_writes() {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    assert!(Store::SeaweedFs.object_lock());
    let sg = Sealgate::start_on(Store::SeaweedFs).await;
    let b = format!("lock-{}", common::random_hex(6));
    sg.client
        .create_bucket()
        .bucket(&b)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    sg.client
        .put_object_lock_configuration()
        .bucket(&b)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Governance)
                                .days(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v = put(&sg, &b, "locked", b"retained plaintext")
        .await
        .expect("a version id");
    assert_eq!(
        get_version(&sg, &b, "locked", &v, None).await,
        b"retained plaintext"
    );
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("locked")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode(),
        Some(&aws_sdk_s3::types::ObjectLockMode::Governance)
    );
    // Multipart too.
    let data = common::pattern(6 << 20, 3);
    let up = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("locked-mp")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut done = Vec::new();
    for (n, chunk) in data.chunks(5 << 20).enumerate() {
        let p = sg
            .client
            .upload_part()
            .bucket(&b)
            .key("locked-mp")
            .upload_id(id)
            .part_number(n as i32 + 1)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n as i32 + 1)
                .e_tag(p.e_tag().unwrap())
                .build(),
        );
    }
    sg.client
        .complete_multipart_upload()
        .bucket(&b)
        .key("locked-mp")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = sg
        .client
        .get_object()
        .bucket(&b)
        .key("locked-mp")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[..]
    );
    // The retained version cannot be deleted.
    let e = sg
        .client
        .delete_object()
        .bucket(&b)
        .key("locked")
        .version_id(&v)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(
        get_version(&sg, &b, "locked", &v, None).await,
        b"retained plaintext"
    );
}
