//! Object encryption end to end: through sealgate with aws-sdk-s3, checking what Garage
//! really holds with a direct client, and tampering with it there.

mod common;

use common::Store;
use rstest::rstest;

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use common::{Sealgate, metric, pattern, sha256};

/// Recognisable plaintext: the ASCII text must never appear in the store.
fn text(len: usize) -> Vec<u8> {
    b"sealgate-plaintext-marker:0123456789;"
        .iter()
        .cycle()
        .take(len)
        .copied()
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn get(c: &aws_sdk_s3::Client, b: &str, k: &str) -> Result<Vec<u8>, String> {
    let r = c
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .map_err(|e| format!("{:?}", e.into_service_error()))?;
    r.body
        .collect()
        .await
        .map(|d| d.into_bytes().to_vec())
        .map_err(|e| format!("body: {e}"))
}

async fn raw_object(sg: &Sealgate, b: &str, k: &str) -> (Vec<u8>, HashMap<String, String>) {
    let r = sg
        .direct
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    let meta = r.metadata().cloned().unwrap_or_default();
    (r.body.collect().await.unwrap().into_bytes().to_vec(), meta)
}

async fn put_raw(sg: &Sealgate, b: &str, k: &str, body: Vec<u8>, meta: HashMap<String, String>) {
    sg.direct
        .put_object()
        .bucket(b)
        .key(k)
        .set_metadata(Some(meta))
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

fn kms_client(sg: &Sealgate) -> aws_sdk_kms::Client {
    common::kms_client_for(&sg.endpoint, common::CLIENT_AK, common::CLIENT_SK)
}

async fn new_kms_key(sg: &Sealgate) -> String {
    common::new_key_arn(sg).await
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn objects_round_trip_and_the_store_holds_only_ciphertext(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    for len in [0usize, 1, 65_535, 65_536, 65_537, 10 << 20] {
        let data = text(len);
        let k = format!("o{len}");
        let put = sg
            .client
            .put_object()
            .bucket(&b)
            .key(&k)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256),
            "SSE-S3 by default"
        );
        assert_eq!(get(&sg.client, &b, &k).await.unwrap(), data, "len {len}");
        let head = sg
            .client
            .head_object()
            .bucket(&b)
            .key(&k)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(len as i64));
        assert!(
            head.metadata()
                .is_none_or(|m| m.keys().all(|k| !k.starts_with("sealgate"))),
            "internal metadata is hidden"
        );
        let (stored, meta) = raw_object(&sg, &b, &k).await;
        // Bodies over one segment stream to the store; their MD5 (the SSE-S3 ETag) is
        // sealed after the last segment (32 bytes).
        let trailer = if len > 65_536 { 32 } else { 0 };
        assert_eq!(
            stored.len(),
            len + 16 * len.div_ceil(65_536).max(1) + trailer,
            "len {len}"
        );
        if len >= 37 {
            assert!(
                !contains(&stored, b"sealgate-plaintext-marker"),
                "plaintext leaked into the store (len {len})"
            );
        }
        assert_eq!(meta.get("sealgate-v").map(String::as_str), Some("3"));
        let total: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total < 1024, "metadata {total} bytes");
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn sse_kms_with_a_chosen_key_is_echoed_and_used(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let key = new_kms_key(&sg).await;
    let ctx = common::b64(br#"{"team":"blue"}"#);
    let put = sg
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .ssekms_encryption_context(&ctx)
        .body(ByteStream::from(text(1000)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(put.ssekms_key_id(), Some(key.as_str()));
    let g = sg
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(g.ssekms_key_id(), Some(key.as_str()));
    assert_eq!(
        g.body.collect().await.unwrap().into_bytes().to_vec(),
        text(1000)
    );
    // The managed default key when aws:kms names none.
    let put = sg
        .client
        .put_object()
        .bucket(&b)
        .key("k2")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert!(
        put.ssekms_key_id().unwrap().starts_with("arn:aws:kms:"),
        "{:?}",
        put.ssekms_key_id()
    );
    assert_ne!(put.ssekms_key_id(), Some(key.as_str()));
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn invalid_sse_requests_are_refused_and_store_nothing(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("a")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .ssekms_key_id("alias/x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("InvalidArgument")
    );
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("b")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(common::b64(&[1u8; 32]))
        .sse_customer_key_md5(common::b64(&[0u8; 16]))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    // SSE-C over plain HTTP (tests/ssec.rs covers SSE-C itself, over TLS).
    assert_eq!(e.into_service_error().meta().code(), Some("InvalidRequest"));
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("c")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/does-not-exist")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    let raw_status = e.raw_response().unwrap().status().as_u16();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("KMS.NotFoundException")
    );
    assert_eq!(raw_status, 400);
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("d")
        .metadata("sealgate-v", "9")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("InvalidArgument")
    );
    let listed = sg.direct.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing was stored");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_disabled_key_stops_reads_and_writes_with_kms_errors(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let key = new_kms_key(&sg).await;
    sg.client
        .put_object()
        .bucket(&b)
        .key("k")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await
        .unwrap();
    kms_client(&sg)
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("KMS.DisabledException")
    );
    let e = sg
        .client
        .put_object()
        .bucket(&b)
        .key("k2")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("KMS.DisabledException")
    );
    kms_client(&sg)
        .enable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&sg.client, &b, "k").await.unwrap(), b"secret");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn every_range_shape_returns_exact_plaintext(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(300_000, 11);
    common::put(&sg.client, &b, "r", &data).await;
    for (range, lo, hi) in [
        ("bytes=0-0", 0, 1),
        ("bytes=65535-65536", 65_535, 65_537),
        ("bytes=65536-131071", 65_536, 131_072),
        ("bytes=1000-", 1000, 300_000),
        ("bytes=-1", 299_999, 300_000),
        ("bytes=-70000", 230_000, 300_000),
        ("bytes=299000-999999", 299_000, 300_000),
    ] {
        let r = sg
            .client
            .get_object()
            .bucket(&b)
            .key("r")
            .range(range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.content_range(),
            Some(format!("bytes {}-{}/300000", lo, hi - 1).as_str()),
            "{range}"
        );
        assert_eq!(r.content_length(), Some((hi - lo) as i64));
        assert_eq!(
            r.body.collect().await.unwrap().into_bytes().to_vec(),
            &data[lo..hi],
            "{range}"
        );
    }
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("r")
        .range("bytes=300000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 416);
}

async fn multipart(sg: &Sealgate, b: &str, k: &str, sizes: &[usize], seed: u64) -> Vec<u8> {
    let data = pattern(sizes.iter().sum(), seed);
    let up = sg
        .client
        .create_multipart_upload()
        .bucket(b)
        .key(k)
        .content_type("application/x-test")
        .metadata("owner", "t")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut offs = vec![0usize];
    for s in sizes {
        offs.push(offs.last().unwrap() + s);
    }
    let mut tasks = Vec::new();
    for i in (0..sizes.len()).rev() {
        let (c, b, k, id) = (sg.client.clone(), b.to_string(), k.to_string(), id.clone());
        let chunk = data[offs[i]..offs[i + 1]].to_vec();
        tasks.push(tokio::spawn(async move {
            let n = i as i32 + 1;
            let r = c
                .upload_part()
                .bucket(&b)
                .key(&k)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .unwrap();
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build()
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.unwrap());
    }
    parts.sort_by_key(|p| p.part_number());
    let listed = sg
        .client
        .list_parts()
        .bucket(b)
        .key(k)
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let listed_sizes: Vec<i64> = listed.parts().iter().map(|p| p.size().unwrap()).collect();
    assert_eq!(
        listed_sizes,
        sizes.iter().map(|s| *s as i64).collect::<Vec<_>>(),
        "ListParts reports plaintext sizes"
    );
    assert_eq!(listed.upload_id(), Some(id.as_str()));
    sg.client
        .complete_multipart_upload()
        .bucket(b)
        .key(k)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    data
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn multipart_objects_with_odd_part_sizes_read_back_whole_by_range_and_by_part(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let sizes = [(5 << 20) + 1, (5 << 20) + 65_537, 3];
    let data = multipart(&sg, &b, "mp", &sizes, 21).await;
    assert_eq!(
        sha256(&get(&sg.client, &b, "mp").await.unwrap()),
        sha256(&data)
    );
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("mp")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(
        head.metadata().unwrap().get("owner").map(String::as_str),
        Some("t")
    );
    // Ranges across part boundaries.
    let p1 = sizes[0];
    for (lo, hi) in [
        (p1 - 10, p1 + 10),
        (p1 - 65_536, p1 + sizes[1] + 2),
        (data.len() - 5, data.len()),
        (100, 200),
    ] {
        let r = sg
            .client
            .get_object()
            .bucket(&b)
            .key("mp")
            .range(format!("bytes={}-{}", lo, hi - 1))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.body.collect().await.unwrap().into_bytes().to_vec(),
            &data[lo..hi],
            "{lo}-{hi}"
        );
    }
    // GET by part number.
    let r = sg
        .client
        .get_object()
        .bucket(&b)
        .key("mp")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.parts_count(), Some(3));
    assert_eq!(
        r.body.collect().await.unwrap().into_bytes().to_vec(),
        &data[p1..p1 + sizes[1]]
    );
    // Listing shows the plaintext size.
    let l = sg.client.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(l.contents()[0].size(), Some(data.len() as i64));
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn copies_rewrap_the_key_and_read_back_everywhere(#[case] store: Store) {
    let mut cfg = common::test_config_on(store);
    // The last copy reads a plaintext object sealgate did not write.
    cfg.encryption.plaintext_reads = vec!["*".into()];
    let sg = Sealgate::start_with(cfg).await;
    let b = sg.bucket().await;
    let b2 = sg.bucket().await;
    let key = new_kms_key(&sg).await;
    let data = text(200_000);
    sg.client
        .put_object()
        .bucket(&b)
        .key("src")
        .metadata("a", "1")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    // Same bucket, another name: metadata copied.
    sg.client
        .copy_object()
        .bucket(&b)
        .key("dst")
        .copy_source(format!("{b}/src"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&sg.client, &b, "dst").await.unwrap(), data);
    let h = sg
        .client
        .head_object()
        .bucket(&b)
        .key("dst")
        .send()
        .await
        .unwrap();
    assert_eq!(
        h.metadata().unwrap().get("a").map(String::as_str),
        Some("1")
    );
    // Another bucket, another key, metadata replaced.
    let c = sg
        .client
        .copy_object()
        .bucket(&b2)
        .key("x/y")
        .copy_source(format!("{b}/src"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("b", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(c.ssekms_key_id(), Some(key.as_str()));
    assert_eq!(get(&sg.client, &b2, "x/y").await.unwrap(), data);
    let h = sg
        .client
        .head_object()
        .bucket(&b2)
        .key("x/y")
        .send()
        .await
        .unwrap();
    assert_eq!(
        h.metadata().unwrap().get("b").map(String::as_str),
        Some("2")
    );
    assert!(!h.metadata().unwrap().contains_key("a"));
    // The store copied the body: identical ciphertext, different wrapping.
    let (c1, m1) = raw_object(&sg, &b, "src").await;
    let (c2, m2) = raw_object(&sg, &b2, "x/y").await;
    assert_eq!(c1, c2);
    assert_ne!(m1.get("sealgate-dek"), m2.get("sealgate-dek"));
    // A plaintext object in the store is encrypted when copied through sealgate.
    put_raw(&sg, &b, "legacy", data.clone(), HashMap::new()).await;
    sg.client
        .copy_object()
        .bucket(&b)
        .key("legacy-enc")
        .copy_source(format!("{b}/legacy"))
        .send()
        .await
        .unwrap();
    let (stored, _) = raw_object(&sg, &b, "legacy-enc").await;
    assert!(!contains(&stored, b"sealgate-plaintext-marker"));
    assert_eq!(get(&sg.client, &b, "legacy-enc").await.unwrap(), data);
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn objects_sealgate_did_not_write_are_refused_unless_allowed_where_they_are(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    put_raw(&sg, &b, "old", b"existing data".to_vec(), HashMap::new()).await;
    put_raw(
        &sg,
        &b,
        "legacy/old",
        b"existing data".to_vec(),
        HashMap::new(),
    )
    .await;
    // The downgrade: a sealgate object whose metadata the store stripped.
    common::put(&sg.client, &b, "stripped", b"secret").await;
    let (body, _) = raw_object(&sg, &b, "stripped").await;
    put_raw(&sg, &b, "stripped", body, HashMap::new()).await;
    let status = |r: Result<(), u16>| r.err().unwrap_or(200);
    let read = |sg: &Sealgate, k: &str, range: bool| {
        let mut g = sg.client.get_object().bucket(&b).key(k);
        if range {
            g = g.range("bytes=1-3");
        }
        let f = g.send();
        async move {
            f.await
                .map(|_| ())
                .map_err(|e| e.raw_response().map_or(0, |r| r.status().as_u16()))
        }
    };
    for k in ["old", "stripped", "legacy/old"] {
        assert_eq!(status(read(&sg, k, false).await), 403, "GET {k}");
        assert_eq!(status(read(&sg, k, true).await), 403, "ranged GET {k}");
        let h = sg.client.head_object().bucket(&b).key(k).send().await;
        assert_eq!(
            h.unwrap_err().raw_response().unwrap().status().as_u16(),
            403
        );
        let c = sg
            .client
            .copy_object()
            .bucket(&b)
            .key("copy")
            .copy_source(format!("{b}/{k}"))
            .send()
            .await;
        assert_eq!(
            c.unwrap_err().raw_response().unwrap().status().as_u16(),
            403
        );
    }
    // Allowed for one prefix (a migration): served there as stored, without SSE claims.
    let mut cfg = common::test_config_on(store);
    cfg.encryption.plaintext_reads = vec![format!("{b}/legacy/")];
    let scoped = Sealgate::start_with(cfg).await;
    let got = scoped
        .client
        .get_object()
        .bucket(&b)
        .key("legacy/old")
        .send()
        .await
        .unwrap();
    assert!(got.server_side_encryption().is_none());
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes(),
        &b"existing data"[..]
    );
    assert_eq!(status(read(&scoped, "old", false).await), 403);
    // Listings still show every object (with the store's size for plaintext ones).
    let l = sg.client.list_objects_v2().bucket(&b).send().await.unwrap();
    assert!(
        l.contents()
            .iter()
            .any(|o| o.key() == Some("old") && o.size() == Some(13))
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn bucket_default_encryption_applies_to_plain_puts(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let e = sg
        .client
        .get_bucket_encryption()
        .bucket(&b)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("ServerSideEncryptionConfigurationNotFoundError")
    );
    let key = new_kms_key(&sg).await;
    common::put_kms_bucket_rule(&sg.client, &b, &key).await;
    let got = sg
        .client
        .get_bucket_encryption()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let r = &got.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        r.apply_server_side_encryption_by_default()
            .unwrap()
            .kms_master_key_id(),
        Some(key.as_str())
    );
    let put = sg
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(put.ssekms_key_id(), Some(key.as_str()));
    sg.client
        .delete_bucket_encryption()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let put = sg
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    // The state bucket is neither listed nor reachable through sealgate.
    let listed = sg.client.list_buckets().send().await.unwrap();
    assert!(
        listed
            .buckets()
            .iter()
            .all(|x| x.name() != Some("sealgate-state"))
    );
    assert!(
        listed
            .buckets()
            .iter()
            .any(|x| x.name() == Some(b.as_str()))
    );
    let e = sg
        .client
        .list_objects_v2()
        .bucket("sealgate-state")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.into_service_error().meta().code(), Some("AccessDenied"));
}

/// Reads `k` through sealgate, returning the bytes received before any error.
async fn read_until_error(sg: &Sealgate, b: &str, k: &str) -> (Vec<u8>, bool) {
    let url = format!("{}/{b}/{k}", sg.endpoint);
    let mut h = http::HeaderMap::new();
    h.insert(
        "host",
        format!("127.0.0.1:{}", sg.addr.port()).parse().unwrap(),
    );
    common::sign_for_sealgate("GET", &url, &mut h, "UNSIGNED-PAYLOAD");
    // The connection may be aborted before the response head is flushed (the first
    // segment already failed): that is a failed read too.
    let Ok(resp) = reqwest::Client::new().get(&url).headers(h).send().await else {
        return (Vec::new(), true);
    };
    if !resp.status().is_success() {
        return (Vec::new(), true);
    }
    let mut got = Vec::new();
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

/// Puts `data` through sealgate, then returns what the store holds for it.
async fn sealed(
    sg: &Sealgate,
    b: &str,
    k: &str,
    data: &[u8],
) -> (Vec<u8>, HashMap<String, String>) {
    common::put(&sg.client, b, k, data).await;
    raw_object(sg, b, k).await
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn tampering_in_the_store_is_detected_and_no_bad_bytes_are_served(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = text(200_000);

    // One flipped byte in segment 1: segment 0 may arrive, then the response aborts.
    let (mut c, m) = sealed(&sg, &b, "flip", &data).await;
    c[70_000] ^= 1;
    put_raw(&sg, &b, "flip", c, m).await;
    let (got, failed) = read_until_error(&sg, &b, "flip").await;
    assert!(failed, "a tampered object must not read cleanly");
    assert!(
        got.len() <= 65_536 && data.starts_with(&got),
        "only authenticated bytes were served"
    );
    // A range inside the flipped segment fails before any byte.
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("flip")
        .range("bytes=70000-70010")
        .send()
        .await;
    let failed = match e {
        Err(_) => true,
        Ok(r) => r.body.collect().await.is_err(),
    };
    assert!(failed);

    // Truncated at a segment boundary (the new last segment lacks the final flag).
    let (c, m) = sealed(&sg, &b, "trunc", &data).await;
    put_raw(&sg, &b, "trunc", c[..2 * 65_552].to_vec(), m).await;
    let (got, failed) = read_until_error(&sg, &b, "trunc").await;
    assert!(failed && data.starts_with(&got));

    // Truncated off a boundary.
    let (c, m) = sealed(&sg, &b, "trunc2", &data).await;
    put_raw(&sg, &b, "trunc2", c[..100_000].to_vec(), m).await;
    let (got, failed) = read_until_error(&sg, &b, "trunc2").await;
    assert!(failed && data.starts_with(&got));

    // Bytes appended after the last segment.
    let (mut c, m) = sealed(&sg, &b, "long", &data).await;
    c.extend_from_slice(&[0u8; 16]);
    put_raw(&sg, &b, "long", c, m).await;
    let (got, failed) = read_until_error(&sg, &b, "long").await;
    assert!(failed && got.is_empty());

    // The size in the metadata changed.
    let (c, mut m) = sealed(&sg, &b, "meta", &data).await;
    m.insert("sealgate-size".into(), "199999".into());
    put_raw(&sg, &b, "meta", c, m).await;
    let (got, failed) = read_until_error(&sg, &b, "meta").await;
    assert!(failed && got.is_empty());

    // Two objects' bodies swapped (same size, each keeps its own metadata).
    let (c1, m1) = sealed(&sg, &b, "s1", &data).await;
    let (c2, m2) = sealed(&sg, &b, "s2", &data).await;
    put_raw(&sg, &b, "s1", c2, m1).await;
    put_raw(&sg, &b, "s2", c1.clone(), m2).await;
    for k in ["s1", "s2"] {
        let (got, failed) = read_until_error(&sg, &b, k).await;
        assert!(failed && got.is_empty(), "{k}");
    }

    // Body and metadata of one object stored under another key: the data key is bound
    // to the original name.
    let (c3, m3) = sealed(&sg, &b, "s3", &data).await;
    put_raw(&sg, &b, "moved", c3, m3).await;
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("moved")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 500);
    let msg = e
        .into_service_error()
        .meta()
        .message()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("modified in the store"), "{msg}");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn multipart_parts_reordered_or_dropped_in_the_store_are_detected(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let sizes = [5 << 20, 5 << 20, 1000];
    let data = multipart(&sg, &b, "mp", &sizes, 5).await;
    let (c, m) = raw_object(&sg, &b, "mp").await;
    let part = 32 + (5 << 20) + 16 * 80;
    // Parts 1 and 2 swapped.
    let mut swapped = c[part..2 * part].to_vec();
    swapped.extend_from_slice(&c[..part]);
    swapped.extend_from_slice(&c[2 * part..]);
    put_raw(&sg, &b, "mp", swapped, m.clone()).await;
    let (got, failed) = read_until_error(&sg, &b, "mp").await;
    assert!(failed && got.is_empty());
    // Last part dropped, part list edited to match.
    let mut m2 = m.clone();
    m2.insert("sealgate-parts".into(), format!("1:2:{}", 5 << 20));
    m2.insert("sealgate-size".into(), (10u64 << 20).to_string());
    put_raw(&sg, &b, "mp", c[..2 * part].to_vec(), m2).await;
    let (got, failed) = read_until_error(&sg, &b, "mp").await;
    assert!(
        failed && got.is_empty(),
        "the metadata MAC catches an edited part list"
    );
    let _ = data;
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn kms_api_and_s3_share_the_listener(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let kms = kms_client(&sg);
    let k = kms
        .create_key()
        .description("via sealgate")
        .send()
        .await
        .unwrap();
    let id = k.key_metadata().unwrap().key_id().to_string();
    let dk = kms
        .generate_data_key()
        .key_id(&id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(dk.plaintext().unwrap().as_ref().len(), 32);
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_one_byte_range_reads_one_sealed_segment_from_the_store(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(10 << 20, 3);
    common::put(&sg.client, &b, "big", &data).await;
    for at in [0usize, 5_000_000, (10 << 20) - 1] {
        let before = metric(&sg.endpoint, "sealgate_upstream_read_bytes_total").await;
        let r = sg
            .client
            .get_object()
            .bucket(&b)
            .key("big")
            .range(format!("bytes={at}-{at}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.body.collect().await.unwrap().into_bytes().as_ref(),
            &data[at..=at]
        );
        let read = metric(&sg.endpoint, "sealgate_upstream_read_bytes_total").await - before;
        assert!(
            read <= 65_552,
            "read {read} bytes from the store for one byte at {at}"
        );
    }
    let text = common::metrics_text(&sg.endpoint).await;
    assert!(
        text.contains("sealgate_requests_total{op=\"GetObject\",status=\"206\"} 3"),
        "{text}"
    );
    assert!(!text.contains(&b), "no bucket names in metrics");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn s3_requests_that_use_a_key_are_audited_without_secrets(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = text(5000);
    common::put(&sg.client, &b, "audited", &data).await;
    assert_eq!(get(&sg.client, &b, "audited").await.unwrap(), data);
    let (_, meta) = raw_object(&sg, &b, "audited").await;
    let dir = sg.state_dir.clone();
    sg.stop().await.unwrap();
    let path = dir.path().join("kms.audit.jsonl");
    let log = std::fs::read_to_string(&path).unwrap();
    let arn = format!("arn:aws:s3:::{b}/audited");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let s3_events: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e.to_string().contains(&arn))
        .collect();
    let names: Vec<&str> = s3_events
        .iter()
        .filter_map(|e| {
            e.pointer("/event/eventName")
                .or_else(|| e.get("eventName"))
                .and_then(|v| v.as_str())
        })
        .collect();
    assert!(
        names.contains(&"GenerateDataKey") && names.contains(&"Decrypt"),
        "{names:?}\n{log}"
    );
    assert!(
        s3_events
            .iter()
            .all(|e| e.to_string().contains("s3.amazonaws.com")),
        "invoked by S3"
    );
    assert!(!log.contains("sealgate-plaintext-marker"));
    assert!(
        !log.contains(meta.get("sealgate-dek").unwrap()),
        "no wrapped keys in the audit log"
    );
    let report = sealgate::kms::verify_audit_log(&path).unwrap();
    assert!(report.is_intact(), "{report}");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_principal_denied_kms_decrypt_cannot_read_objects_under_that_key(#[case] store: Store) {
    let mut cfg = common::test_config_on(store);
    cfg.access_keys.push(sealgate::config::AccessKeyConfig {
        access_key_id: "AKIDBOBTEST".into(),
        secret_access_key: sealgate::config::Secret::new("bob-secret-key-123"),
        principal: "bob".into(),
        policy: Some(common::S3_FULL_POLICY.into()),
        ..Default::default()
    });
    let sg = Sealgate::start_with(cfg).await;
    let bob = common::s3_client(
        &sg.endpoint,
        "AKIDBOBTEST",
        "bob-secret-key-123",
        "us-east-1",
    );
    let b = sg.bucket().await;
    let key = new_kms_key(&sg).await;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoBobDecrypt", "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"}, "Action": "kms:Decrypt", "Resource": "*"}
        ]
    });
    kms_client(&sg)
        .put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    // bob may write under the key (GenerateDataKey) but not read (Decrypt).
    bob.put_object()
        .bucket(&b)
        .key("k")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(ByteStream::from_static(b"top secret"))
        .send()
        .await
        .unwrap();
    let e = bob
        .get_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    let body = format!("{:?}", e.into_service_error());
    assert!(body.contains("AccessDenied"), "{body}");
    assert!(!body.contains("top secret"));
    assert_eq!(get(&sg.client, &b, "k").await.unwrap(), b"top secret");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn copying_a_plaintext_object_onto_itself_encrypts_it_in_place(#[case] store: Store) {
    let mut cfg = common::test_config_on(store);
    cfg.encryption.plaintext_reads = vec!["*".into()];
    let sg = Sealgate::start_with(cfg).await;
    let b = sg.bucket().await;
    let data = text(300_000);
    put_raw(
        &sg,
        &b,
        "old",
        data.clone(),
        HashMap::from([("owner".to_string(), "ops".to_string())]),
    )
    .await;
    sg.client
        .copy_object()
        .bucket(&b)
        .key("old")
        .copy_source(format!("{b}/old"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("owner", "ops")
        .send()
        .await
        .unwrap();
    let (stored, meta) = raw_object(&sg, &b, "old").await;
    assert!(
        !contains(&stored, b"sealgate-plaintext-marker"),
        "now ciphertext in the store"
    );
    assert_eq!(meta.get("sealgate-v").map(String::as_str), Some("3"));
    assert_eq!(get(&sg.client, &b, "old").await.unwrap(), data);
    let h = sg
        .client
        .head_object()
        .bucket(&b)
        .key("old")
        .send()
        .await
        .unwrap();
    assert_eq!(
        h.metadata().unwrap().get("owner").map(String::as_str),
        Some("ops")
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_non_symmetric_kms_key_is_refused_as_an_sse_kms_key(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    for (spec, usage) in [
        (
            aws_sdk_kms::types::KeySpec::Rsa2048,
            aws_sdk_kms::types::KeyUsageType::EncryptDecrypt,
        ),
        (
            aws_sdk_kms::types::KeySpec::Hmac256,
            aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac,
        ),
    ] {
        let key = kms_client(&sg)
            .create_key()
            .key_spec(spec)
            .key_usage(usage)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        let e = sg
            .client
            .put_object()
            .bucket(&b)
            .key("k")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&key)
            .body(ByteStream::from_static(b"secret"))
            .send()
            .await
            .unwrap_err();
        let status = e.raw_response().unwrap().status().as_u16();
        let err = e.into_service_error();
        assert_eq!(err.meta().code(), Some("KMS.InvalidKeyUsageException"));
        assert!(
            err.meta()
                .message()
                .unwrap_or("")
                .contains("SYMMETRIC_DEFAULT")
        );
        assert_eq!(status, 400);
    }
    let listed = sg.direct.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing was stored");
}
