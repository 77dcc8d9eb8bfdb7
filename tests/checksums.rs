//! Client checksums (`x-amz-checksum-*`) kept with objects, as AWS keeps them: a
//! checksum a client sends with a PUT (in a header, or in the trailer of an aws-chunked
//! body) comes back on HEAD and GET when the client asks with `x-amz-checksum-mode:
//! ENABLED`, with `x-amz-checksum-type: FULL_OBJECT`; a multipart upload whose parts
//! carry checksums gets AWS's composite (`-N`) or, for CRCs asked for as FULL_OBJECT, the
//! CRC of the whole object. The store holds them sealed, and cannot change them unnoticed.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, ServerSideEncryption};
use common::{Sealgate, Store, b64, pattern};
use rstest::rstest;

/// The base64 digest AWS gives for `data` under `algo`.
fn digest(algo: &ChecksumAlgorithm, data: &[u8]) -> String {
    use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
    fn of<C: s3s::crypto::Checksum>(data: &[u8]) -> Vec<u8> {
        let mut c = C::new();
        c.update(data);
        c.finalize().as_ref().to_vec()
    }
    b64(&match algo {
        ChecksumAlgorithm::Crc32 => of::<Crc32>(data),
        ChecksumAlgorithm::Crc32C => of::<Crc32c>(data),
        ChecksumAlgorithm::Crc64Nvme => of::<Crc64Nvme>(data),
        ChecksumAlgorithm::Sha1 => of::<Sha1>(data),
        ChecksumAlgorithm::Sha256 => of::<Sha256>(data),
        other => panic!("no such algorithm {other:?}"),
    })
}

/// The checksum of `algo` a HEAD or GET answer carries.
macro_rules! checksum_of {
    ($out:expr, $algo:expr) => {
        match $algo {
            ChecksumAlgorithm::Crc32 => $out.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => $out.checksum_crc32_c(),
            ChecksumAlgorithm::Crc64Nvme => $out.checksum_crc64_nvme(),
            ChecksumAlgorithm::Sha1 => $out.checksum_sha1(),
            ChecksumAlgorithm::Sha256 => $out.checksum_sha256(),
            _ => None,
        }
        .map(str::to_string)
    };
}

/// Every checksum header of a HEAD answer, whatever its algorithm.
fn any_checksum(h: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Option<String> {
    [
        h.checksum_crc32(),
        h.checksum_crc32_c(),
        h.checksum_crc64_nvme(),
        h.checksum_sha1(),
        h.checksum_sha256(),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(str::to_string)
}

const ALGOS: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Crc32,
    ChecksumAlgorithm::Crc32C,
    ChecksumAlgorithm::Crc64Nvme,
    ChecksumAlgorithm::Sha1,
    ChecksumAlgorithm::Sha256,
];

/// A body the SDK streams from a file: it sends the checksum in the aws-chunked
/// trailer, after the body (an in-memory body gets it in a header).
async fn streamed(data: &[u8]) -> (ByteStream, tempfile::NamedTempFile) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    (ByteStream::from_path(f.path()).await.unwrap(), f)
}

async fn head(
    c: &aws_sdk_s3::Client,
    b: &str,
    k: &str,
    checksum_mode: bool,
) -> Result<
    aws_sdk_s3::operation::head_object::HeadObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::head_object::HeadObjectError>,
> {
    let mut h = c.head_object().bucket(b).key(k);
    if checksum_mode {
        h = h.checksum_mode(ChecksumMode::Enabled);
    }
    h.send().await
}

/// HEAD and GET with checksum mode give `want` (full object); without it, or for a
/// range, no checksum.
async fn served_checksum_is(
    sg: &Sealgate,
    b: &str,
    k: &str,
    algo: &ChecksumAlgorithm,
    want: &str,
    data: &[u8],
) {
    let h = head(&sg.client, b, k, true).await.unwrap();
    assert_eq!(checksum_of!(h, algo).as_deref(), Some(want), "HEAD {k}");
    assert_eq!(h.checksum_type(), Some(&ChecksumType::FullObject), "{k}");
    // The SDK checks the body against the checksum the answer carries.
    let g = sg
        .client
        .get_object()
        .bucket(b)
        .key(k)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(checksum_of!(g, algo).as_deref(), Some(want), "GET {k}");
    assert_eq!(g.body.collect().await.unwrap().into_bytes(), data, "{k}");
    let plain = head(&sg.client, b, k, false).await.unwrap();
    assert_eq!(any_checksum(&plain), None, "HEAD {k} without checksum mode");
    if data.len() > 10 {
        let r = sg
            .client
            .get_object()
            .bucket(b)
            .key(k)
            .range("bytes=1-9")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(checksum_of!(r, algo), None, "a range has no checksum ({k})");
        assert_eq!(r.body.collect().await.unwrap().into_bytes(), data[1..10]);
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_checksum_sent_with_a_put_comes_back_with_checksum_mode(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    for algo in ALGOS {
        // Held whole (one segment), and streamed from a file (the SDK sends the
        // checksum in the aws-chunked trailer, after the body); SSE-S3 (an MD5 trailer
        // too) and SSE-KMS.
        for (len, kms) in [(1000usize, false), (300_000, false), (300_000, true)] {
            let k = format!("{}-{len}-{kms}", algo.as_str());
            let data = pattern(len, len as u64 + kms as u64);
            let want = digest(&algo, &data);
            let (body, _file) = streamed(&data).await;
            let mut put = sg
                .client
                .put_object()
                .bucket(&b)
                .key(&k)
                .checksum_algorithm(algo.clone())
                .body(body);
            if kms {
                put = put.server_side_encryption(ServerSideEncryption::AwsKms);
            }
            let out = put.send().await.unwrap();
            assert_eq!(
                checksum_of!(out, &algo).as_deref(),
                Some(want.as_str()),
                "{k}"
            );
            assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject), "{k}");
            served_checksum_is(&sg, &b, &k, &algo, &want, &data).await;
        }
    }
    // The value in a header, known before the body is streamed.
    let data = pattern(300_000, 9);
    let want = digest(&ChecksumAlgorithm::Sha256, &data);
    sg.client
        .put_object()
        .bucket(&b)
        .key("header")
        .checksum_sha256(&want)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    served_checksum_is(&sg, &b, "header", &ChecksumAlgorithm::Sha256, &want, &data).await;
    // A restarted sealgate reads them from the store alone.
    let fresh = sg.restart().await;
    let algo = ChecksumAlgorithm::Crc64Nvme;
    let data = pattern(300_000, 300_000);
    let k = format!("{}-300000-false", algo.as_str());
    served_checksum_is(&fresh, &b, &k, &algo, &digest(&algo, &data), &data).await;
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_stored_checksum_the_store_changed_is_refused(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(300_000, 5);
    for k in ["trailer", "sealed"] {
        let (body, _file) = streamed(&data).await;
        let mut put = sg
            .client
            .put_object()
            .bucket(&b)
            .key(k)
            .server_side_encryption(ServerSideEncryption::AwsKms);
        put = if k == "trailer" {
            put.checksum_algorithm(ChecksumAlgorithm::Crc32).body(body)
        } else {
            put.checksum_crc32(digest(&ChecksumAlgorithm::Crc32, &data))
                .body(ByteStream::from(data.clone()))
        };
        put.send().await.unwrap();
        // The store rewrites the object: its last byte (the sealed trailer's), or the
        // sealed checksum in the metadata swapped for another object's.
        let (mut body, mut meta) = common::stored(&sg.direct, &b, k).await;
        if k == "trailer" {
            *body.last_mut().unwrap() ^= 1;
        } else {
            let v = meta.get_mut("sealgate-cks").unwrap();
            *v = v.replace("CRC32:", "CRC32C:");
        }
        common::store_as(&sg.direct, &b, k, body, meta).await;
        let e = head(&sg.client, &b, k, true).await.unwrap_err();
        let status = e.raw_response().map(|r| r.status().as_u16());
        assert!(status.is_some_and(|s| s >= 500), "{k}: {e:?}");
    }
    // The trailer is not part of the data: without checksum mode (which the SDK asks for
    // by default), the object still reads.
    let conf = sg
        .client
        .config()
        .to_builder()
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    let plain = aws_sdk_s3::Client::from_conf(conf);
    assert_eq!(common::get(&plain, &b, "trailer").await, data);
}
