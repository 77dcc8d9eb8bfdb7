//! SSE-C (customer-provided keys) end to end, on both stores, over sealgate's TLS
//! listener: aws-sdk-s3 round trips (PUT, GET, ranges, partNumber, HEAD, attributes,
//! listings, multipart, the copy matrix, presigned URLs), AWS's errors and their order,
//! what the store and the log hold (never the key, its MD5 or the plaintext), and the
//! real aws-cli (`--sse-c`) and rclone (`sse_customer_key`), both the pinned/Debian and
//! the newest releases.
//!
//! AWS's behaviour these tests hold sealgate to: `/work/research/s3-ssec-post-cors.md` §1.

mod common;

use common::Store;
use rstest::rstest;

use std::path::Path;
use std::process::Command;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectAttributes, ServerSideEncryption,
};
use common::{Sealgate, b64, pattern, sha256};

/// A customer key as clients send it.
#[derive(Clone)]
struct Key {
    raw: Vec<u8>,
    b64: String,
    md5: String,
}

fn md5_b64(b: &[u8]) -> String {
    use md5::Digest as _;
    b64(&md5::Md5::digest(b))
}

fn key_of(raw: Vec<u8>) -> Key {
    Key {
        b64: b64(&raw),
        md5: md5_b64(&raw),
        raw,
    }
}

/// A fresh random 256-bit key.
fn key() -> Key {
    let mut raw = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).unwrap();
    key_of(raw)
}

/// Recognisable plaintext: it must never appear in the store.
fn text(len: usize) -> Vec<u8> {
    b"ssec-plaintext-marker:0123456789;"
        .iter()
        .cycle()
        .take(len)
        .copied()
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The customer trio on any request builder that has it.
macro_rules! with_key {
    ($b:expr, $k:expr) => {{
        let k: &Key = &$k;
        $b.sse_customer_algorithm("AES256")
            .sse_customer_key(&k.b64)
            .sse_customer_key_md5(&k.md5)
    }};
}

/// The copy-source trio.
macro_rules! with_source_key {
    ($b:expr, $k:expr) => {{
        let k: &Key = &$k;
        $b.copy_source_sse_customer_algorithm("AES256")
            .copy_source_sse_customer_key(&k.b64)
            .copy_source_sse_customer_key_md5(&k.md5)
    }};
}

/// Status, code and message of a failed request.
fn failure<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: SdkError<E, HttpResponse>,
) -> (u16, String, String) {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    (
        status,
        e.code().unwrap_or_default().to_string(),
        e.message().unwrap_or_default().to_string(),
    )
}

const REQUIRED: &str = "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.";
const WRONG: &str = "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key.";
const NOT_APPLICABLE: &str = "The encryption parameters are not applicable to this object.";
const INSECURE: &str = "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.";
const MPU_REQUIRED: &str = "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.";
const MPU_MISMATCH: &str =
    "The provided encryption parameters did not match the ones used originally.";

fn required() -> (u16, String, String) {
    (400, "InvalidRequest".into(), REQUIRED.into())
}
fn wrong() -> (u16, String, String) {
    (403, "AccessDenied".into(), WRONG.into())
}
fn not_applicable() -> (u16, String, String) {
    (400, "InvalidRequest".into(), NOT_APPLICABLE.into())
}

async fn put_with(sg: &Sealgate, b: &str, k: &str, data: &[u8], key: &Key) -> String {
    let out = with_key!(sg.client.put_object().bucket(b).key(k), key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("SSE-C PUT {k}: {e:?}"));
    assert_eq!(out.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(out.sse_customer_key_md5(), Some(key.md5.as_str()));
    assert_eq!(out.server_side_encryption(), None, "no SSE-S3/KMS claim");
    out.e_tag().unwrap().to_string()
}

async fn get_with(sg: &Sealgate, b: &str, k: &str, key: &Key) -> Vec<u8> {
    let out = with_key!(sg.client.get_object().bucket(b).key(k), key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SSE-C GET {k}: {e:?}"));
    assert_eq!(out.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(out.sse_customer_key_md5(), Some(key.md5.as_str()));
    assert_eq!(out.server_side_encryption(), None);
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn get_range(sg: &Sealgate, b: &str, k: &str, key: &Key, range: &str) -> Vec<u8> {
    with_key!(sg.client.get_object().bucket(b).key(k), key)
        .range(range)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SSE-C GET {k} {range}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// Everything about a stored object as the store holds it: its bytes and its metadata.
async fn raw(sg: &Sealgate, b: &str, k: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let r = sg
        .direct
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    let meta: Vec<(String, String)> = r
        .metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    (r.body.collect().await.unwrap().into_bytes().to_vec(), meta)
}

/// The key in every form a client sends it, and its MD5 (raw and base64).
fn key_forms(k: &Key) -> Vec<Vec<u8>> {
    use md5::Digest as _;
    vec![
        k.raw.clone(),
        k.b64.as_bytes().to_vec(),
        md5::Md5::digest(&k.raw).to_vec(),
        k.md5.as_bytes().to_vec(),
        hex::encode(&k.raw).into_bytes(),
    ]
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn an_sse_c_object_is_served_only_with_its_key(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    // A bucket default does not apply to SSE-C writes (the request's SSE-C wins).
    common::put_kms_bucket_rule(&sg.client, &b, "alias/aws/s3").await;
    let k = key();
    let data = text(200_000);
    let etag = put_with(&sg, &b, "obj", &data, &k).await;
    use md5::Digest as _;
    let md5_etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&data)));
    assert_ne!(etag, md5_etag, "an SSE-C ETag is not the MD5 of the data");

    assert_eq!(get_with(&sg, &b, "obj", &k).await, data);
    // Ranges: one the store answers in one trip, a suffix, and one across segments.
    assert_eq!(
        get_range(&sg, &b, "obj", &k, "bytes=70000-140000").await,
        &data[70_000..=140_000]
    );
    assert_eq!(
        get_range(&sg, &b, "obj", &k, "bytes=-100").await,
        &data[data.len() - 100..]
    );
    let part1 = with_key!(sg.client.get_object().bucket(&b).key("obj"), k)
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(part1.content_length(), Some(data.len() as i64));
    assert_eq!(part1.sse_customer_key_md5(), Some(k.md5.as_str()));

    let head = with_key!(sg.client.head_object().bucket(&b).key("obj"), k)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(head.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(head.sse_customer_key_md5(), Some(k.md5.as_str()));
    assert_eq!(head.server_side_encryption(), None);
    // Conditions work on the ETag clients see.
    let not_modified = with_key!(sg.client.get_object().bucket(&b).key("obj"), k)
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(not_modified.raw_response().unwrap().status().as_u16(), 304);
    with_key!(sg.client.get_object().bucket(&b).key("obj"), k)
        .if_match(&etag)
        .send()
        .await
        .unwrap();

    // Without the key: AWS's 400; another key, or a key of another length whose MD5
    // matches it: 403, on GET and HEAD (HEAD: no body).
    let e = sg.client.get_object().bucket(&b).key("obj").send().await;
    assert_eq!(failure(e.unwrap_err()), required());
    let e = sg.client.head_object().bucket(&b).key("obj").send().await;
    assert_eq!(
        e.unwrap_err().raw_response().unwrap().status().as_u16(),
        400
    );
    let other = key();
    let e = with_key!(sg.client.get_object().bucket(&b).key("obj"), other)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), wrong());
    let e = with_key!(sg.client.head_object().bucket(&b).key("obj"), other)
        .send()
        .await;
    assert_eq!(
        e.unwrap_err().raw_response().unwrap().status().as_u16(),
        403
    );
    let long = key_of(k.b64.as_bytes().to_vec());
    let e = with_key!(sg.client.get_object().bucket(&b).key("obj"), long)
        .send()
        .await;
    assert_eq!(
        failure(e.unwrap_err()),
        wrong(),
        "E9b: length after the key"
    );
    let e = with_key!(sg.client.get_object().bucket(&b).key("obj"), other)
        .range("bytes=0-9")
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), wrong(), "ranged");
    let e = sg
        .client
        .get_object()
        .bucket(&b)
        .key("obj")
        .sse_customer_algorithm("AES128")
        .sse_customer_key(&k.b64)
        .sse_customer_key_md5(&k.md5)
        .send()
        .await;
    let (s, code, msg) = failure(e.unwrap_err());
    assert_eq!(
        (s, code.as_str(), msg.as_str()),
        (
            400,
            "InvalidEncryptionAlgorithmError",
            "The Encryption request you specified is not valid. Supported value: AES256."
        )
    );

    // GetObjectAttributes needs the key too, and reports the plaintext size.
    let attrs = with_key!(sg.client.get_object_attributes().bucket(&b).key("obj"), k)
        .object_attributes(ObjectAttributes::ObjectSize)
        .object_attributes(ObjectAttributes::Etag)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.object_size(), Some(data.len() as i64));
    assert_eq!(attrs.e_tag(), Some(etag.trim_matches('"')));
    let e = sg
        .client
        .get_object_attributes()
        .bucket(&b)
        .key("obj")
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), required());

    // A listing (no key) shows the plaintext size and the same ETag.
    let list = sg.client.list_objects_v2().bucket(&b).send().await.unwrap();
    let o = &list.contents()[0];
    assert_eq!(o.size(), Some(data.len() as i64));
    assert_eq!(o.e_tag(), Some(etag.as_str()));
    // Also from an instance that never saw the object (its metadata, no key).
    let other_sg = Sealgate::start_tls_on(store).await;
    let list = other_sg
        .client
        .list_objects_v2()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(list.contents()[0].size(), Some(data.len() as i64));
    assert_eq!(list.contents()[0].e_tag(), Some(etag.as_str()));

    // A key for an object that is not SSE-C: AWS's 400.
    sg.client
        .put_object()
        .bucket(&b)
        .key("plain")
        .body(ByteStream::from_static(b"not ssec"))
        .send()
        .await
        .unwrap();
    let e = with_key!(sg.client.get_object().bucket(&b).key("plain"), k)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), not_applicable());
    let e = with_key!(sg.client.head_object().bucket(&b).key("plain"), k)
        .send()
        .await;
    assert_eq!(
        e.unwrap_err().raw_response().unwrap().status().as_u16(),
        400
    );
    let plain = sg
        .client
        .head_object()
        .bucket(&b)
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(
        plain.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );

    // The store holds ciphertext of the right length and no key material.
    let (body, meta) = raw(&sg, &b, "obj").await;
    assert!(!contains(&body, b"ssec-plaintext-marker"));
    assert_eq!(body.len(), data.len() + 16 * 4, "four sealed segments");
    assert!(
        meta.iter()
            .any(|(n, v)| n == "sealgate-alg" && v == "SSE-C"),
        "{meta:?}"
    );
    assert!(!meta.iter().any(|(n, _)| n == "sealgate-key"), "{meta:?}");
    for form in key_forms(&k) {
        assert!(!contains(&body, &form));
        for (n, v) in &meta {
            assert!(!contains(v.as_bytes(), &form), "{n}={v}");
        }
    }
    // A tampered object is refused even with the right key.
    let mut bad = body.clone();
    bad[10] ^= 1;
    let m: std::collections::HashMap<String, String> = meta.into_iter().collect();
    sg.direct
        .put_object()
        .bucket(&b)
        .key("obj")
        .set_metadata(Some(m))
        .body(ByteStream::from(bad))
        .send()
        .await
        .unwrap();
    let r = with_key!(sg.client.get_object().bucket(&b).key("obj"), k)
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(o) => o.body.collect().await.is_err(),
    };
    assert!(failed, "a tampered segment is never served");
}

/// Each version has its own key (research §1.7): the newest version's key fails on an
/// older version with 403. SeaweedFS only: Garage 2.5 has no versioning.
#[tokio::test]
async fn each_version_of_an_sse_c_object_has_its_own_key() {
    let sg = Sealgate::start_tls_on(Store::SeaweedFs).await;
    let b = sg.bucket().await;
    sg.client
        .put_bucket_versioning()
        .bucket(&b)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (k1, k2) = (key(), key());
    let v1 = with_key!(sg.client.put_object().bucket(&b).key("v"), k1)
        .body(ByteStream::from_static(b"version one"))
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    put_with(&sg, &b, "v", b"version two", &k2).await;
    assert_eq!(get_with(&sg, &b, "v", &k2).await, b"version two");
    let e = with_key!(
        sg.client.get_object().bucket(&b).key("v").version_id(&v1),
        k2
    )
    .send()
    .await;
    assert_eq!(failure(e.unwrap_err()), wrong());
    let old = with_key!(
        sg.client.get_object().bucket(&b).key("v").version_id(&v1),
        k1
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        old.body.collect().await.unwrap().into_bytes().as_ref(),
        b"version one"
    );
    let versions = sg
        .client
        .list_object_versions()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let mut sizes: Vec<i64> = versions
        .versions()
        .iter()
        .filter_map(|v| v.size())
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![11, 11], "plaintext sizes without a key");
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn invalid_sse_c_requests_get_awss_errors_and_store_nothing(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let k = key();
    let short = key_of(vec![7u8; 10]);
    let put = || {
        sg.client
            .put_object()
            .bucket(&b)
            .key("refused")
            .body(ByteStream::from_static(b"data"))
    };
    let arg = |m: &str| (400u16, "InvalidArgument".to_string(), m.to_string());
    let cases = vec![
        (
            "bad MD5",
            put()
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.b64)
                .sse_customer_key_md5(&short.md5),
            arg("The calculated MD5 hash of the key did not match the hash that was provided."),
        ),
        (
            "wrong algorithm",
            put()
                .sse_customer_algorithm("AES128")
                .sse_customer_key(&k.b64)
                .sse_customer_key_md5(&k.md5),
            (
                400,
                "InvalidEncryptionAlgorithmError".into(),
                "The Encryption request you specified is not valid. Supported value: AES256."
                    .into(),
            ),
        ),
        (
            "short key",
            with_key!(put(), short),
            arg("The secret key was invalid for the specified algorithm."),
        ),
        (
            "no algorithm",
            put().sse_customer_key(&k.b64).sse_customer_key_md5(&k.md5),
            arg(
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
            ),
        ),
        (
            "no key",
            put()
                .sse_customer_algorithm("AES256")
                .sse_customer_key_md5(&k.md5),
            arg(
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            ),
        ),
        (
            "no MD5",
            put()
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.b64),
            arg(
                "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.",
            ),
        ),
        (
            "with SSE-S3",
            with_key!(put(), k).server_side_encryption(ServerSideEncryption::Aes256),
            arg(
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ),
        ),
        (
            "with SSE-KMS",
            with_key!(put(), k).server_side_encryption(ServerSideEncryption::AwsKms),
            arg(
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ),
        ),
    ];
    for (what, req, want) in cases {
        let e = req.send().await.unwrap_err();
        // AWS names x-amz-server-side-encryption in every one of these answers.
        let body = e
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        assert!(
            body.contains("<ArgumentName>x-amz-server-side-encryption</ArgumentName>"),
            "{what}: {body}"
        );
        if what == "wrong algorithm" {
            assert!(
                body.contains("<ArgumentValue>AES128</ArgumentValue>"),
                "{body}"
            );
        }
        assert_eq!(failure(e), want, "{what}");
    }
    assert!(
        sg.direct
            .head_object()
            .bucket(&b)
            .key("refused")
            .send()
            .await
            .is_err(),
        "nothing was stored"
    );
    // CreateMultipartUpload validates the same way.
    let e = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("mpu")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&k.b64)
        .sse_customer_key_md5(&short.md5)
        .send()
        .await;
    assert_eq!(
        failure(e.unwrap_err()),
        arg("The calculated MD5 hash of the key did not match the hash that was provided.")
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn sse_c_over_plain_http_is_refused_unless_allowed(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let k = key();
    let e = with_key!(sg.client.put_object().bucket(&b).key("o"), k)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(
        failure(e.unwrap_err()),
        (400, "InvalidRequest".into(), INSECURE.into())
    );
    assert!(
        sg.direct
            .head_object()
            .bucket(&b)
            .key("o")
            .send()
            .await
            .is_err()
    );
    // A read carrying the key is refused too (the key crossed the network in the clear
    // already; the answer says so rather than serving).
    let e = with_key!(sg.client.get_object().bucket(&b).key("o"), k)
        .send()
        .await;
    assert_eq!(
        failure(e.unwrap_err()),
        (400, "InvalidRequest".into(), INSECURE.into())
    );
    // Behind a TLS-terminating proxy: `encryption.allow_ssec_over_http`.
    let mut cfg = common::test_config_on(store);
    cfg.encryption.allow_ssec_over_http = true;
    let sg2 = Sealgate::start_with(cfg).await;
    put_with(&sg2, &b, "o", b"behind a proxy", &k).await;
    assert_eq!(get_with(&sg2, &b, "o", &k).await, b"behind a proxy");
    // An object written so is an SSE-C object like any other.
    let e = with_key!(sg.client.get_object().bucket(&b).key("o"), k)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()).2, INSECURE);
}

async fn upload_part(
    sg: &Sealgate,
    b: &str,
    k: &str,
    id: &str,
    n: i32,
    data: &[u8],
    key: Option<&Key>,
) -> Result<String, (u16, String, String)> {
    let mut r = sg
        .client
        .upload_part()
        .bucket(b)
        .key(k)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()));
    if let Some(key) = key {
        r = with_key!(r, key);
    }
    match r.send().await {
        Ok(o) => {
            if let Some(key) = key {
                assert_eq!(o.sse_customer_key_md5(), Some(key.md5.as_str()));
            }
            Ok(o.e_tag().unwrap().to_string())
        }
        Err(e) => Err(failure(e)),
    }
}

fn completed(etags: &[String]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            etags
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .e_tag(e)
                        .build()
                })
                .collect(),
        ))
        .build()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn sse_c_multipart_uploads_bind_their_key_and_complete_without_it(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let k = key();
    let create = with_key!(sg.client.create_multipart_upload().bucket(&b).key("big"), k)
        .send()
        .await
        .unwrap();
    assert_eq!(create.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(create.sse_customer_key_md5(), Some(k.md5.as_str()));
    assert_eq!(create.server_side_encryption(), None);
    let id = create.upload_id().unwrap().to_string();
    let p1 = pattern(5 << 20, 1);
    let p2 = pattern(1 << 20, 2);
    // A part without the key, with another key, or with SSE-S3 headers: AWS's 400s.
    assert_eq!(
        upload_part(&sg, &b, "big", &id, 1, &p1, None).await,
        Err((400, "InvalidRequest".into(), MPU_REQUIRED.into()))
    );
    let stranger = key();
    assert_eq!(
        upload_part(&sg, &b, "big", &id, 1, &p1, Some(&stranger)).await,
        Err((400, "InvalidRequest".into(), MPU_MISMATCH.into()))
    );
    let e1 = upload_part(&sg, &b, "big", &id, 1, &p1, Some(&k))
        .await
        .unwrap();
    // Part 2 is copied from another SSE-C object (UploadPartCopy, both keys).
    let src_key = key();
    put_with(&sg, &b, "src", &p2, &src_key).await;
    let e = with_key!(
        sg.client
            .upload_part_copy()
            .bucket(&b)
            .key("big")
            .upload_id(&id)
            .part_number(2)
            .copy_source(format!("{b}/src")),
        k
    )
    .send()
    .await;
    assert_eq!(failure(e.unwrap_err()), required(), "no source key");
    let copied = with_source_key!(
        with_key!(
            sg.client
                .upload_part_copy()
                .bucket(&b)
                .key("big")
                .upload_id(&id)
                .part_number(2)
                .copy_source(format!("{b}/src")),
            k
        ),
        src_key
    )
    .send()
    .await
    .unwrap();
    assert_eq!(copied.sse_customer_key_md5(), Some(k.md5.as_str()));
    let e2 = copied
        .copy_part_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    // ListParts without the key: plaintext sizes.
    let parts = sg
        .client
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let sizes: Vec<i64> = parts.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, vec![5 << 20, 1 << 20]);
    // ListMultipartUploads gives an id without the upload key: completing with it needs
    // the customer key.
    let listed = sg
        .client
        .list_multipart_uploads()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let listed_id = listed.uploads()[0].upload_id().unwrap().to_string();
    assert_ne!(listed_id, id);
    let e = sg
        .client
        .complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&listed_id)
        .multipart_upload(completed(&[e1.clone(), e2.clone()]))
        .send()
        .await;
    assert_eq!(
        failure(e.unwrap_err()),
        (400, "InvalidRequest".into(), MPU_REQUIRED.into())
    );
    // Completion without the key (as AWS allows; Debian's rclone does it).
    let done = sg
        .client
        .complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed(&[e1.clone(), e2.clone()]))
        .send()
        .await
        .unwrap();
    assert_eq!(done.server_side_encryption(), None);
    let etag = done.e_tag().unwrap().to_string();
    assert!(etag.ends_with("-2\""), "{etag}");

    let mut whole = p1.clone();
    whole.extend_from_slice(&p2);
    assert_eq!(sha256(&get_with(&sg, &b, "big", &k).await), sha256(&whole));
    let across = get_range(&sg, &b, "big", &k, "bytes=5242000-5243999").await;
    assert_eq!(across, &whole[5_242_000..5_244_000]);
    let part2 = with_key!(sg.client.get_object().bucket(&b).key("big"), k)
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(part2.parts_count(), Some(2));
    assert_eq!(
        part2.body.collect().await.unwrap().into_bytes().as_ref(),
        &p2[..]
    );
    let head = with_key!(sg.client.head_object().bucket(&b).key("big"), k)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(whole.len() as i64));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    let e = with_key!(sg.client.get_object().bucket(&b).key("big"), src_key)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), wrong());
    // A listing without the key, from an instance that never saw the object.
    let other_sg = Sealgate::start_tls_on(store).await;
    let list = other_sg
        .client
        .list_objects_v2()
        .bucket(&b)
        .prefix("big")
        .send()
        .await
        .unwrap();
    assert_eq!(list.contents()[0].size(), Some(whole.len() as i64));
    assert_eq!(list.contents()[0].e_tag(), Some(etag.as_str()));

    // A key for a part of an upload that is not SSE-C.
    let plain = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("plain-mpu")
        .send()
        .await
        .unwrap();
    let pid = plain.upload_id().unwrap();
    assert_eq!(
        upload_part(&sg, &b, "plain-mpu", pid, 1, b"x", Some(&k)).await,
        Err((400, "InvalidRequest".into(), MPU_REQUIRED.into()))
    );

    // Completion with the key works as well, and with a listed id.
    let c2 = with_key!(
        sg.client.create_multipart_upload().bucket(&b).key("big2"),
        k
    )
    .send()
    .await
    .unwrap();
    let id2 = c2.upload_id().unwrap().to_string();
    let f1 = upload_part(&sg, &b, "big2", &id2, 1, &p2, Some(&k))
        .await
        .unwrap();
    let listed = sg
        .client
        .list_multipart_uploads()
        .bucket(&b)
        .prefix("big2")
        .send()
        .await
        .unwrap();
    let listed_id2 = listed.uploads()[0].upload_id().unwrap().to_string();
    let stranger = key();
    let e = with_key!(
        sg.client
            .complete_multipart_upload()
            .bucket(&b)
            .key("big2")
            .upload_id(&listed_id2),
        stranger
    )
    .multipart_upload(completed(std::slice::from_ref(&f1)))
    .send()
    .await;
    assert_eq!(
        failure(e.unwrap_err()),
        (400, "InvalidRequest".into(), MPU_MISMATCH.into())
    );
    with_key!(
        sg.client
            .complete_multipart_upload()
            .bucket(&b)
            .key("big2")
            .upload_id(&listed_id2),
        k
    )
    .multipart_upload(completed(&[f1]))
    .send()
    .await
    .unwrap();
    assert_eq!(get_with(&sg, &b, "big2", &k).await, p2);

    // The store holds no key material for any of this (objects, uploads, part lists).
    let mut forms = key_forms(&k);
    forms.extend(key_forms(&src_key));
    for form in forms {
        assert_eq!(common::find_in_tree(&store.shared().dir, &form), None);
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn copies_between_sse_c_and_other_encryptions_work_in_every_direction(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let (k1, k2) = (key(), key());
    let data = text(100_000);
    let src_etag = put_with(&sg, &b, "c-src", &data, &k1).await;
    let copy = |to: &str| {
        sg.client
            .copy_object()
            .bucket(&b)
            .key(to)
            .copy_source(format!("{b}/c-src"))
    };
    use md5::Digest as _;
    let md5 = format!("\"{}\"", hex::encode(md5::Md5::digest(&data)));

    // SSE-C → the bucket default (SSE-S3): the ETag is the real MD5.
    let out = with_source_key!(copy("to-s3"), k1).send().await.unwrap();
    assert_eq!(
        out.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(out.sse_customer_algorithm(), None);
    assert_eq!(
        out.copy_object_result().unwrap().e_tag(),
        Some(md5.as_str())
    );
    assert_eq!(
        common::get(&sg.client, &b, "to-s3").await.as_ref(),
        &data[..]
    );

    // SSE-C → SSE-C under another key: the new key's MD5 is echoed; only it opens.
    let out = with_key!(with_source_key!(copy("to-c"), k1), k2)
        .send()
        .await
        .unwrap();
    assert_eq!(out.sse_customer_key_md5(), Some(k2.md5.as_str()));
    assert_eq!(out.server_side_encryption(), None);
    let c_etag = out
        .copy_object_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    assert_ne!(c_etag, md5);
    assert_eq!(get_with(&sg, &b, "to-c", &k2).await, data);
    let e = with_key!(sg.client.get_object().bucket(&b).key("to-c"), k1)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), wrong());
    let head = with_key!(sg.client.head_object().bucket(&b).key("to-c"), k2)
        .send()
        .await
        .unwrap();
    assert_eq!(head.e_tag(), Some(c_etag.as_str()));

    // SSE-C → SSE-KMS.
    let out = with_source_key!(copy("to-kms"), k1)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        common::get(&sg.client, &b, "to-kms").await.as_ref(),
        &data[..]
    );

    // SSE-S3 (with an MD5 ETag) and SSE-KMS → SSE-C.
    for from in ["to-s3", "to-kms"] {
        let to = format!("{from}-back");
        let out = with_key!(
            sg.client
                .copy_object()
                .bucket(&b)
                .key(&to)
                .copy_source(format!("{b}/{from}")),
            k2
        )
        .send()
        .await
        .unwrap();
        assert_eq!(out.sse_customer_key_md5(), Some(k2.md5.as_str()));
        assert_eq!(out.server_side_encryption(), None);
        assert_eq!(get_with(&sg, &b, &to, &k2).await, data, "{from}");
        let e = sg.client.get_object().bucket(&b).key(&to).send().await;
        assert_eq!(failure(e.unwrap_err()), required(), "{from}");
        // As every SSE-C object: the listed and served ETags agree.
        let head = with_key!(sg.client.head_object().bucket(&b).key(&to), k2)
            .send()
            .await
            .unwrap();
        let list = sg
            .client
            .list_objects_v2()
            .bucket(&b)
            .prefix(&to)
            .send()
            .await
            .unwrap();
        assert_eq!(list.contents()[0].e_tag(), head.e_tag(), "{from}");
        assert_eq!(list.contents()[0].size(), Some(data.len() as i64));
    }
    // An SSE-S3 object streamed to the store (its MD5 sealed after the body) → SSE-C.
    let streamed = text(300_000);
    sg.client
        .put_object()
        .bucket(&b)
        .key("streamed")
        .body(ByteStream::from(streamed.clone()))
        .send()
        .await
        .unwrap();
    with_key!(
        sg.client
            .copy_object()
            .bucket(&b)
            .key("streamed-c")
            .copy_source(format!("{b}/streamed")),
        k2
    )
    .send()
    .await
    .unwrap();
    assert_eq!(get_with(&sg, &b, "streamed-c", &k2).await, streamed);

    // Errors: no source key, a wrong one, a source key for a source that is not SSE-C,
    // SSE-C with SSE-S3 for the destination.
    let e = copy("x").send().await;
    assert_eq!(failure(e.unwrap_err()), required());
    let e = with_source_key!(copy("x"), k2).send().await;
    assert_eq!(failure(e.unwrap_err()), wrong());
    let e = with_source_key!(
        sg.client
            .copy_object()
            .bucket(&b)
            .key("x")
            .copy_source(format!("{b}/to-s3")),
        k1
    )
    .send()
    .await;
    assert_eq!(failure(e.unwrap_err()), not_applicable());
    let e = with_key!(with_source_key!(copy("x"), k1), k2)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await;
    assert_eq!(
        failure(e.unwrap_err()),
        (
            400,
            "InvalidArgument".into(),
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified".into()
        )
    );
    assert!(
        sg.direct
            .head_object()
            .bucket(&b)
            .key("x")
            .send()
            .await
            .is_err()
    );

    // Onto itself under a new key (a change of encryption attributes).
    with_key!(with_source_key!(copy("c-src"), k1), k2)
        .send()
        .await
        .unwrap();
    assert_eq!(get_with(&sg, &b, "c-src", &k2).await, data);
    let e = with_key!(sg.client.get_object().bucket(&b).key("c-src"), k1)
        .send()
        .await;
    assert_eq!(failure(e.unwrap_err()), wrong());
    let _ = src_etag;
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn presigned_urls_carry_the_sse_c_headers(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let k = key();
    let cfg =
        aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(300))
            .unwrap();
    let http = sg.http();
    // A presigned PUT: the SSE-C headers are signed and must be sent with it.
    let put = with_key!(sg.client.put_object().bucket(&b).key("pre"), k)
        .presigned(cfg.clone())
        .await
        .unwrap();
    let signed: Vec<String> = put.headers().map(|(n, _)| n.to_lowercase()).collect();
    assert!(
        signed
            .iter()
            .any(|n| n == "x-amz-server-side-encryption-customer-key"),
        "{signed:?}"
    );
    let mut req = http.put(put.uri()).body("presigned with my key");
    for (n, v) in put.headers() {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(get_with(&sg, &b, "pre", &k).await, b"presigned with my key");

    let get = with_key!(sg.client.get_object().bucket(&b).key("pre"), k)
        .presigned(cfg)
        .await
        .unwrap();
    let mut req = http.get(get.uri());
    for (n, v) in get.headers() {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("x-amz-server-side-encryption-customer-key-md5")
            .unwrap(),
        k.md5.as_str()
    );
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        b"presigned with my key"
    );
    // Without the headers the signature does not hold (they were signed).
    let resp = http.get(get.uri()).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    // Another key in the signed headers does not hold either.
    let other = key();
    let mut req = http.get(get.uri());
    for (n, v) in get.headers() {
        let v = v.replace(&k.b64, &other.b64).replace(&k.md5, &other.md5);
        req = req.header(n, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 403);
}

/// The customer key, its base64 and its MD5 appear nowhere in the store (objects, their
/// metadata, sealgate's state bucket) nor in sealgate's log at debug level; what the
/// store holds about an SSE-C object is found where expected (a positive control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_key_is_never_stored_or_logged() {
    let store = Store::Garage;
    let dir = tempfile::tempdir().unwrap();
    let g = store.shared();
    let p = common::SealgateProcess::start_with(
        dir.path(),
        (&g.endpoint, &g.access_key, &g.secret_key, &g.region),
        "debug",
        "encryption.allow_ssec_over_http = true",
    )
    .await;
    let c = p.client();
    let b = format!("t-{}", common::random_hex(8));
    c.create_bucket().bucket(&b).send().await.unwrap();
    let k = key();
    let marker = common::random_hex(16);
    with_key!(c.put_object().bucket(&b).key("secret"), k)
        .metadata("marker", &marker)
        .body(ByteStream::from(text(70_000)))
        .send()
        .await
        .unwrap();
    let got = with_key!(c.get_object().bucket(&b).key("secret"), k)
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().len(), 70_000);
    let _ = with_key!(c.get_object().bucket(&b).key("secret"), key())
        .send()
        .await
        .unwrap_err();
    let id = with_key!(c.create_multipart_upload().bucket(&b).key("mpu"), k)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let e = with_key!(
        c.upload_part()
            .bucket(&b)
            .key("mpu")
            .upload_id(&id)
            .part_number(1),
        k
    )
    .body(ByteStream::from(text(1000)))
    .send()
    .await
    .unwrap()
    .e_tag()
    .unwrap()
    .to_string();
    c.complete_multipart_upload()
        .bucket(&b)
        .key("mpu")
        .upload_id(&id)
        .multipart_upload(completed(&[e]))
        .send()
        .await
        .unwrap();
    let log = p.log();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "debug log: {log}"
    );
    for form in key_forms(&k) {
        assert!(
            !contains(log.as_bytes(), &form),
            "the log holds the key (form {form:?})"
        );
        assert_eq!(common::find_in_tree(&g.dir, &form), None);
        assert_eq!(
            common::find_in_tree(dir.path(), &form),
            None,
            "sealgate's dir"
        );
    }
    assert!(
        common::find_in_tree(&g.dir, marker.as_bytes()).is_some(),
        "the search sees the store's metadata"
    );
    assert_eq!(
        common::find_in_tree(&g.dir, b"ssec-plaintext-marker"),
        None,
        "no plaintext"
    );
}

fn write_key_file(dir: &Path, k: &Key, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, &k.raw).unwrap();
    format!("fileb://{}", p.display())
}

fn run(cmd: &mut Command) -> Result<String, String> {
    run_bytes(cmd).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Runs a command; its stdout, or (on failure) its stdout and stderr.
fn run_bytes(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `aws s3 cp --sse-c` up and down (single part and multipart), `s3api head-object`, a
/// copy between two SSE-C keys (multipart copy: UploadPartCopy with both trios), with the
/// pinned aws-cli and the newest release, trusting sealgate's certificate.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_sse_c_copies_up_down_and_between_keys(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (key(), key());
    let key1 = write_key_file(dir.path(), &k1, "k1");
    let key2 = write_key_file(dir.path(), &k2, "k2");
    let small = pattern(1000, 3);
    let big = pattern(20 << 20, 4);
    std::fs::write(dir.path().join("small"), &small).unwrap();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let (ep, ca, d) = (
        sg.endpoint.clone(),
        sg.ca.clone().unwrap(),
        dir.path().to_path_buf(),
    );
    for (n, cli) in [common::aws_cli(), common::aws_cli_newest()]
        .into_iter()
        .enumerate()
    {
        let (ep, ca, d, bk) = (ep.clone(), ca.clone(), d.clone(), b.clone());
        let (key1, key2) = (key1.clone(), key2.clone());
        let head = tokio::task::spawn_blocking(move || {
            let b = bk;
            let aws = |args: &[&str]| {
                run(Command::new(&cli)
                    .args(["--endpoint-url", &ep, "--region", "us-east-1"])
                    .args(args)
                    .env("AWS_CA_BUNDLE", &ca)
                    .env("AWS_ACCESS_KEY_ID", common::CLIENT_AK)
                    .env("AWS_SECRET_ACCESS_KEY", common::CLIENT_SK)
                    .env("HOME", &d)
                    .env("AWS_CONFIG_FILE", d.join("none"))
                    .env("AWS_SHARED_CREDENTIALS_FILE", d.join("none"))
                    .env_remove("AWS_PROFILE"))
            };
            let ssec = ["--sse-c", "AES256", "--sse-c-key"];
            for f in ["small", "big"] {
                let url = format!("s3://{b}/cli{n}/{f}");
                let local = d.join(f);
                aws(&[
                    &[
                        "s3",
                        "cp",
                        "--only-show-errors",
                        local.to_str().unwrap(),
                        &url,
                    ][..],
                    &ssec,
                    &[key1.as_str()],
                ]
                .concat())
                .unwrap();
                let back = d.join(format!("{f}.{n}.back"));
                aws(&[
                    &[
                        "s3",
                        "cp",
                        "--only-show-errors",
                        &url,
                        back.to_str().unwrap(),
                    ][..],
                    &ssec,
                    &[key1.as_str()],
                ]
                .concat())
                .unwrap();
                // Without the key, or with another, the download fails.
                let no_key = aws(&[
                    "s3",
                    "cp",
                    "--only-show-errors",
                    &url,
                    d.join("nope").to_str().unwrap(),
                ]);
                assert!(no_key.is_err(), "{no_key:?}");
                let other = aws(&[
                    &[
                        "s3",
                        "cp",
                        "--only-show-errors",
                        &url,
                        d.join("nope").to_str().unwrap(),
                    ][..],
                    &ssec,
                    &[key2.as_str()],
                ]
                .concat());
                assert!(other.unwrap_err().contains("403"));
            }
            // A copy to another key: the 20 MiB object is copied in parts (UploadPartCopy).
            aws(&[
                "s3",
                "cp",
                "--only-show-errors",
                &format!("s3://{b}/cli{n}/big"),
                &format!("s3://{b}/cli{n}/big2"),
                "--sse-c-copy-source",
                "AES256",
                "--sse-c-copy-source-key",
                &key1,
                "--sse-c",
                "AES256",
                "--sse-c-key",
                &key2,
            ])
            .unwrap();
            let back = d.join(format!("big2.{n}.back"));
            aws(&[
                &[
                    "s3",
                    "cp",
                    "--only-show-errors",
                    &format!("s3://{b}/cli{n}/big2"),
                    back.to_str().unwrap(),
                ][..],
                &ssec,
                &[key2.as_str()],
            ]
            .concat())
            .unwrap();
            aws(&[
                "s3api",
                "head-object",
                "--bucket",
                &b,
                "--key",
                &format!("cli{n}/big"),
                "--sse-customer-algorithm",
                "AES256",
                "--sse-customer-key",
                &key1,
            ])
            .unwrap()
        })
        .await
        .unwrap();
        let head: serde_json::Value = serde_json::from_str(&head).unwrap();
        assert_eq!(head["ContentLength"], 20 << 20);
        assert_eq!(head["SSECustomerAlgorithm"], "AES256");
        assert_eq!(head["SSECustomerKeyMD5"], k1.md5.as_str());
        assert!(head.get("ServerSideEncryption").is_none(), "{head}");
        assert_eq!(
            std::fs::read(dir.path().join(format!("small.{n}.back"))).unwrap(),
            small
        );
        for f in ["big", "big2"] {
            let back = std::fs::read(dir.path().join(format!("{f}.{n}.back"))).unwrap();
            assert_eq!(sha256(&back), sha256(&big), "{f}");
        }
        assert_eq!(
            get_with(&sg, &b, &format!("cli{n}/big2"), &k2).await.len(),
            20 << 20
        );
    }
}

/// rclone with `sse_customer_algorithm` / `sse_customer_key` (Debian's release and the
/// newest): a folder with a multipart-sized file up, listed, checked by content, read in
/// ranges and copied back. Debian's rclone completes multipart uploads without the key.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_with_an_sse_customer_key_round_trips(#[case] store: Store) {
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::create_dir_all(up.join("sub")).unwrap();
    let big = pattern(13 << 20, 9);
    std::fs::write(up.join("big.bin"), &big).unwrap();
    std::fs::write(up.join("sub/small.txt"), b"small file\n").unwrap();
    // rclone's `sse_customer_key` is the key itself (32 characters).
    let raw_key = common::random_hex(16);
    let k = key_of(raw_key.as_bytes().to_vec());
    let rclones = [
        std::env::var("SEALGATE_TEST_RCLONE").unwrap_or_else(|_| "rclone".into()),
        common::venv_tool_in("SEALGATE_TEST_RCLONE_NEWEST", ".venv/newest/bin", "rclone")
            .display()
            .to_string(),
    ];
    for (n, rclone) in rclones.into_iter().enumerate() {
        let (ep, ca, d, b2, up2, raw_key) = (
            sg.endpoint.clone(),
            sg.ca.clone().unwrap(),
            dir.path().to_path_buf(),
            b.clone(),
            up.clone(),
            raw_key.clone(),
        );
        let (lsl, range) = tokio::task::spawn_blocking(move || {
            let rc = |args: &[&str], key: &str| {
                run_bytes(
                    Command::new(&rclone)
                        .args(args)
                        .args(["--ca-cert", ca.to_str().unwrap()])
                        .args(["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"])
                        .env_remove("AWS_CA_BUNDLE")
                        .env("RCLONE_CONFIG", d.join("rclone.conf"))
                        .env("RCLONE_CONFIG_SG_TYPE", "s3")
                        .env("RCLONE_CONFIG_SG_PROVIDER", "Other")
                        .env("RCLONE_CONFIG_SG_ACCESS_KEY_ID", common::CLIENT_AK)
                        .env("RCLONE_CONFIG_SG_SECRET_ACCESS_KEY", common::CLIENT_SK)
                        .env("RCLONE_CONFIG_SG_ENDPOINT", &ep)
                        .env("RCLONE_CONFIG_SG_REGION", "us-east-1")
                        .env("RCLONE_CONFIG_SG_SSE_CUSTOMER_ALGORITHM", "AES256")
                        .env("RCLONE_CONFIG_SG_SSE_CUSTOMER_KEY", key),
                )
            };
            let remote = format!("sg:{b2}/rc{n}");
            rc(&["copy", up2.to_str().unwrap(), &remote], &raw_key).unwrap();
            rc(
                &["check", "--download", up2.to_str().unwrap(), &remote],
                &raw_key,
            )
            .unwrap();
            let lsl = String::from_utf8(rc(&["lsl", &remote], &raw_key).unwrap()).unwrap();
            let range = rc(
                &[
                    "cat",
                    "--offset",
                    "5242870",
                    "--count",
                    "20",
                    &format!("{remote}/big.bin"),
                ],
                &raw_key,
            )
            .unwrap();
            rc(
                &[
                    "copy",
                    &remote,
                    d.join(format!("down{n}")).to_str().unwrap(),
                ],
                &raw_key,
            )
            .unwrap();
            // Another key gets none of it (rclone finds no object it can open: its HEAD
            // is refused, and `cat` prints nothing).
            let other = common::random_hex(16);
            let stolen = rc(&["cat", &format!("{remote}/sub/small.txt")], &other);
            assert!(
                stolen.as_ref().map_or(true, |o| o.is_empty()),
                "{:?}",
                stolen.map(String::from_utf8)
            );
            (lsl, range)
        })
        .await
        .unwrap();
        assert!(lsl.contains(&format!("{} ", 13 << 20)), "{lsl}");
        assert!(lsl.contains("       11 "), "{lsl}");
        assert_eq!(range, &big[5_242_870..5_242_890]);
        let down = dir.path().join(format!("down{n}"));
        assert_eq!(
            sha256(&std::fs::read(down.join("big.bin")).unwrap()),
            sha256(&big)
        );
        assert_eq!(
            std::fs::read(down.join("sub/small.txt")).unwrap(),
            b"small file\n"
        );
        assert_eq!(
            sha256(&get_with(&sg, &b, &format!("rc{n}/big.bin"), &k).await),
            sha256(&big)
        );
    }
}

/// boto3 (the SDK behind aws-cli): the transfer manager's multipart upload and download
/// with `SSECustomerKey` (botocore base64-encodes it and adds the MD5), a ranged GET, a
/// managed copy to another key, and a presigned GET URL used with the SSE-C headers it
/// signed.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_transfers_copies_and_presigns_with_an_sse_customer_key(#[case] store: Store) {
    let python = std::env::var("SEALGATE_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").into());
    let sg = Sealgate::start_tls_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(20 << 20, 11);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let (k1, k2) = (key(), key());
    let script = r#"
import sys, ssl, urllib.request, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
ep, ca, ak, sk, bucket, src, dst, k1, k2 = sys.argv[1:10]
k1, k2 = bytes.fromhex(k1), bytes.fromhex(k2)
# boto3 presigns with Signature Version 2 unless told otherwise (README, client notes).
s3 = boto3.client("s3", endpoint_url=ep, verify=ca, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1", config=Config(signature_version="s3v4"))
c1 = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": k1}
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
s3.upload_file(src, bucket, "boto/f", Config=cfg, ExtraArgs=c1)
s3.download_file(bucket, "boto/f", dst, Config=cfg, ExtraArgs=c1)
head = s3.head_object(Bucket=bucket, Key="boto/f", **c1)
assert head["SSECustomerAlgorithm"] == "AES256" and "ServerSideEncryption" not in head, head
rng = s3.get_object(Bucket=bucket, Key="boto/f", Range="bytes=8388600-8388609", **c1)["Body"].read()
s3.copy({"Bucket": bucket, "Key": "boto/f"}, bucket, "boto/g", Config=cfg,
        ExtraArgs={"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": k1,
                   "SSECustomerAlgorithm": "AES256", "SSECustomerKey": k2})
g = s3.head_object(Bucket=bucket, Key="boto/g", SSECustomerAlgorithm="AES256", SSECustomerKey=k2)
url = s3.generate_presigned_url("get_object", Params=dict(Bucket=bucket, Key="boto/f", Range="bytes=0-9", **c1), ExpiresIn=300)
req = urllib.request.Request(url)
req.add_header("x-amz-server-side-encryption-customer-algorithm", "AES256")
import base64, hashlib
req.add_header("x-amz-server-side-encryption-customer-key", base64.b64encode(k1).decode())
req.add_header("x-amz-server-side-encryption-customer-key-md5", base64.b64encode(hashlib.md5(k1).digest()).decode())
req.add_header("range", "bytes=0-9")
try:
    pre = urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca)).read()
except urllib.error.HTTPError as e:
    sys.exit(f"presigned GET: {e.code} {e.read()!r}")
print(head["ContentLength"], g["ContentLength"], g["SSECustomerKeyMD5"], rng.hex(), pre.hex())
"#;
    let out = run(Command::new(&python).arg("-c").arg(script).args([
        sg.endpoint.as_str(),
        sg.ca.as_ref().unwrap().to_str().unwrap(),
        common::CLIENT_AK,
        common::CLIENT_SK,
        &b,
        src.to_str().unwrap(),
        dir.path().join("back.bin").to_str().unwrap(),
        &hex::encode(&k1.raw),
        &hex::encode(&k2.raw),
    ]))
    .unwrap();
    assert_eq!(
        sha256(&std::fs::read(dir.path().join("back.bin")).unwrap()),
        sha256(&data)
    );
    let want = format!(
        "{n} {n} {} {} {}",
        k2.md5,
        hex::encode(&data[8_388_600..8_388_610]),
        hex::encode(&data[..10]),
        n = 20u64 << 20,
    );
    assert_eq!(out.trim(), want);
    assert_eq!(
        sha256(&get_with(&sg, &b, "boto/g", &k2).await),
        sha256(&data)
    );
}
