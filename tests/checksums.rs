//! Client checksums (`x-amz-checksum-*`) kept with objects, as AWS keeps them: a
//! checksum a client sends with a PUT (in a header, or in the trailer of an aws-chunked
//! body) comes back on HEAD and GET when the client asks with `x-amz-checksum-mode:
//! ENABLED`, with `x-amz-checksum-type: FULL_OBJECT`; a multipart upload whose parts
//! carry checksums gets AWS's composite (`-N`) or, for CRCs asked for as FULL_OBJECT, the
//! CRC of the whole object. The store holds them sealed, and cannot change them unnoticed.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ServerSideEncryption,
};
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

/// The checksums of `algo` GetObjectAttributes lists for the object's parts.
async fn attribute_part_checksums(
    sg: &Sealgate,
    b: &str,
    k: &str,
    algo: &ChecksumAlgorithm,
) -> Vec<Option<String>> {
    let attrs = sg
        .client
        .get_object_attributes()
        .bucket(b)
        .key(k)
        .object_attributes(aws_sdk_s3::types::ObjectAttributes::ObjectParts)
        .send()
        .await
        .unwrap();
    attrs
        .object_parts()
        .unwrap()
        .parts()
        .iter()
        .map(|p| checksum_of!(p, algo))
        .collect()
}

/// A client that sends no checksum unless an operation requires one.
fn no_checksum_client(sg: &Sealgate) -> aws_sdk_s3::Client {
    let conf = sg
        .client
        .config()
        .to_builder()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
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

/// AWS's composite checksum: the digest of the parts' digests, `-N`.
fn composite(algo: &ChecksumAlgorithm, parts: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let raw: Vec<u8> = parts
        .iter()
        .flat_map(|p| {
            base64::engine::general_purpose::STANDARD
                .decode(digest(algo, p))
                .unwrap()
        })
        .collect();
    format!("{}-{}", digest(algo, &raw), parts.len())
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_multipart_upload_with_part_checksums_has_the_object_checksum_aws_gives(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let parts: Vec<Vec<u8>> = [b'A', b'B', b'C']
        .iter()
        .map(|c| vec![*c; 5 << 20])
        .collect();
    let whole = parts.concat();
    for (algo, asked, kind) in [
        (ChecksumAlgorithm::Sha256, None, ChecksumType::Composite),
        (ChecksumAlgorithm::Crc32, None, ChecksumType::Composite),
        (
            ChecksumAlgorithm::Crc32C,
            Some(ChecksumType::FullObject),
            ChecksumType::FullObject,
        ),
        (ChecksumAlgorithm::Crc64Nvme, None, ChecksumType::FullObject),
    ] {
        let k = format!("mp-{}", algo.as_str());
        let want = if kind == ChecksumType::FullObject {
            digest(&algo, &whole)
        } else {
            composite(&algo, &parts)
        };
        let created = sg
            .client
            .create_multipart_upload()
            .bucket(&b)
            .key(&k)
            .checksum_algorithm(algo.clone())
            .set_checksum_type(asked)
            .send()
            .await
            .unwrap();
        assert_eq!(created.checksum_algorithm(), Some(&algo));
        assert_eq!(created.checksum_type(), Some(&kind), "{k}");
        let id = created.upload_id().unwrap();
        let mut done = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let out = sg
                .client
                .upload_part()
                .bucket(&b)
                .key(&k)
                .upload_id(id)
                .part_number(n)
                .checksum_algorithm(algo.clone())
                .body(ByteStream::from(p.clone()))
                .send()
                .await
                .unwrap();
            let sum = checksum_of!(out, &algo).unwrap();
            assert_eq!(sum, digest(&algo, p), "{k} part {n}");
            let part = CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap());
            done.push(match algo {
                ChecksumAlgorithm::Sha256 => part.checksum_sha256(sum),
                ChecksumAlgorithm::Crc32 => part.checksum_crc32(sum),
                ChecksumAlgorithm::Crc32C => part.checksum_crc32_c(sum),
                _ => part.checksum_crc64_nvme(sum),
            });
        }
        // ListParts gives each part's checksum, as AWS does.
        let listed = sg
            .client
            .list_parts()
            .bucket(&b)
            .key(&k)
            .upload_id(id)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.checksum_algorithm(), Some(&algo), "{k}");
        let sums: Vec<Option<String>> = listed
            .parts()
            .iter()
            .map(|p| checksum_of!(p, &algo))
            .collect();
        let want_sums: Vec<Option<String>> = parts.iter().map(|p| Some(digest(&algo, p))).collect();
        assert_eq!(sums, want_sums, "{k}");
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(done.into_iter().map(|p| p.build()).collect()))
            .build();
        let out = sg
            .client
            .complete_multipart_upload()
            .bucket(&b)
            .key(&k)
            .upload_id(id)
            .multipart_upload(completed)
            .send()
            .await
            .unwrap();
        assert_eq!(
            checksum_of!(out, &algo).as_deref(),
            Some(want.as_str()),
            "{k}"
        );
        assert_eq!(out.checksum_type(), Some(&kind), "{k}");
        let h = head(&sg.client, &b, &k, true).await.unwrap();
        assert_eq!(
            checksum_of!(h, &algo).as_deref(),
            Some(want.as_str()),
            "{k}"
        );
        assert_eq!(h.checksum_type(), Some(&kind), "{k}");
        // The SDK checks a full-object checksum against the body (not a composite one).
        let g = sg
            .client
            .get_object()
            .bucket(&b)
            .key(&k)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            checksum_of!(g, &algo).as_deref(),
            Some(want.as_str()),
            "{k}"
        );
        assert!(g.body.collect().await.unwrap().into_bytes() == whole, "{k}");
        let attrs = sg
            .client
            .get_object_attributes()
            .bucket(&b)
            .key(&k)
            .object_attributes(aws_sdk_s3::types::ObjectAttributes::Checksum)
            .send()
            .await
            .unwrap();
        let c = attrs.checksum().unwrap();
        assert_eq!(
            checksum_of!(c, &algo).as_deref(),
            Some(want.as_str()),
            "{k}"
        );
        assert_eq!(c.checksum_type(), Some(&kind), "{k}");
        // A read of one part gives that part's checksum (the SDK checks the part's bytes
        // against it), with the object's type; GetObjectAttributes lists them too.
        for (i, p) in parts.iter().enumerate() {
            let g = sg
                .client
                .get_object()
                .bucket(&b)
                .key(&k)
                .part_number(i as i32 + 1)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
            let part_sum = digest(&algo, p);
            assert_eq!(checksum_of!(g, &algo).as_deref(), Some(part_sum.as_str()));
            assert_eq!(g.checksum_type(), Some(&kind), "{k} part {i}");
            assert!(g.body.collect().await.unwrap().into_bytes() == *p, "{k}");
        }
        let listed = attribute_part_checksums(&sg, &b, &k, &algo).await;
        let want_parts: Vec<Option<String>> =
            parts.iter().map(|p| Some(digest(&algo, p))).collect();
        assert_eq!(listed, want_parts, "{k}");
    }
    // The value s3-tests expects for these three parts under SHA-256.
    assert_eq!(
        composite(&ChecksumAlgorithm::Sha256, &parts),
        "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3"
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn checksums_that_do_not_fit_a_multipart_upload_are_refused(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    // AWS has no full-object SHA-256, and no composite CRC64NVME.
    for (algo, kind) in [
        (ChecksumAlgorithm::Sha256, ChecksumType::FullObject),
        (ChecksumAlgorithm::Crc64Nvme, ChecksumType::Composite),
    ] {
        let e = sg
            .client
            .create_multipart_upload()
            .bucket(&b)
            .key("x")
            .checksum_algorithm(algo)
            .checksum_type(kind)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().unwrap().status().as_u16(), 400);
        assert_eq!(
            e.as_service_error().unwrap().meta().code(),
            Some("InvalidRequest")
        );
    }
    // A completion that lists a part checksum other than the part's.
    let id = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("x")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let out = sg
        .client
        .upload_part()
        .bucket(&b)
        .key("x")
        .upload_id(&id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from_static(b"only part"))
        .send()
        .await
        .unwrap();
    let complete = |listed: &[u8]| {
        let part = CompletedPart::builder()
            .part_number(1)
            .e_tag(out.e_tag().unwrap())
            .checksum_crc32(digest(&ChecksumAlgorithm::Crc32, listed))
            .build();
        sg.client
            .complete_multipart_upload()
            .bucket(&b)
            .key("x")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part).build())
            .send()
    };
    let e = complete(b"another part").await.unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 400);
    assert_eq!(
        e.as_service_error().unwrap().meta().code(),
        Some("InvalidPart")
    );
    // With the part's own checksum the same completion goes through.
    let done = complete(b"only part").await.unwrap();
    assert_eq!(
        done.checksum_crc32(),
        Some(composite(&ChecksumAlgorithm::Crc32, &[b"only part".to_vec()]).as_str())
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn copies_keep_the_source_checksum_or_compute_the_one_asked_for(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(300_000, 77);
    let crc = ChecksumAlgorithm::Crc32;
    for (src, kms) in [("src-s3", false), ("src-kms", true)] {
        let (body, _file) = streamed(&data).await;
        let mut put = sg
            .client
            .put_object()
            .bucket(&b)
            .key(src)
            .checksum_algorithm(crc.clone())
            .body(body);
        if kms {
            put = put.server_side_encryption(ServerSideEncryption::AwsKms);
        }
        put.send().await.unwrap();
        // Same encryption: a re-wrap, the store copies the body and its trailer. From
        // SSE-KMS to the SSE-S3 default: the bytes stream (the MD5 ETag is computed),
        // and so is the checksum.
        let same = format!("{src}-copy");
        let out = sg
            .client
            .copy_object()
            .bucket(&b)
            .key(&same)
            .copy_source(format!("{b}/{src}"))
            .set_server_side_encryption(kms.then_some(ServerSideEncryption::AwsKms))
            .send()
            .await
            .unwrap();
        let want = digest(&crc, &data);
        let r = out.copy_object_result().unwrap();
        assert_eq!(r.checksum_crc32(), Some(want.as_str()), "{same}");
        served_checksum_is(&sg, &b, &same, &crc, &want, &data).await;
        let streamed_copy = format!("{src}-to-s3");
        let out = sg
            .client
            .copy_object()
            .bucket(&b)
            .key(&streamed_copy)
            .copy_source(format!("{b}/{src}"))
            .send()
            .await
            .unwrap();
        let r = out.copy_object_result().unwrap();
        assert_eq!(r.checksum_crc32(), Some(want.as_str()), "{streamed_copy}");
        served_checksum_is(&sg, &b, &streamed_copy, &crc, &want, &data).await;
    }
    // Another algorithm asked for: computed while the bytes stream.
    let sha = ChecksumAlgorithm::Sha256;
    let out = sg
        .client
        .copy_object()
        .bucket(&b)
        .key("as-sha256")
        .copy_source(format!("{b}/src-s3"))
        .checksum_algorithm(sha.clone())
        .send()
        .await
        .unwrap();
    let want = digest(&sha, &data);
    let r = out.copy_object_result().unwrap();
    assert_eq!(r.checksum_sha256(), Some(want.as_str()));
    served_checksum_is(&sg, &b, "as-sha256", &sha, &want, &data).await;
    // A part copied into an upload created with a checksum algorithm gets its checksum,
    // and the object the composite of its parts'.
    let id = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("from-copy")
        .checksum_algorithm(crc.clone())
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let part = sg
        .client
        .upload_part_copy()
        .bucket(&b)
        .key("from-copy")
        .upload_id(&id)
        .part_number(1)
        .copy_source(format!("{b}/src-s3"))
        .send()
        .await
        .unwrap();
    let r = part.copy_part_result().unwrap();
    assert_eq!(r.checksum_crc32(), Some(digest(&crc, &data).as_str()));
    let done = CompletedPart::builder()
        .part_number(1)
        .e_tag(r.e_tag().unwrap())
        .checksum_crc32(r.checksum_crc32().unwrap())
        .build();
    let out = sg
        .client
        .complete_multipart_upload()
        .bucket(&b)
        .key("from-copy")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().parts(done).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.checksum_crc32(),
        Some(composite(&crc, std::slice::from_ref(&data)).as_str())
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_fresh_instance_reads_both_trailers_in_one_request(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    // SSE-S3 (the default), streamed, checksum in the trailer: the MD5 (the ETag) and the
    // checksum are both sealed after the last segment.
    let data = pattern(300_000, 8);
    let (body, _file) = streamed(&data).await;
    sg.client
        .put_object()
        .bucket(&b)
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .body(body)
        .send()
        .await
        .unwrap();
    // Another instance knows nothing of the object yet.
    let sg = sg.restart().await;
    let gets = "sealgate_upstream_requests_total{method=\"GET\",copy=\"false\"}";
    let get_with_checksum = || async {
        let before = common::metric(&sg.endpoint, gets).await;
        let g = sg
            .client
            .get_object()
            .bucket(&b)
            .key("k")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            g.checksum_crc64_nvme(),
            Some(digest(&ChecksumAlgorithm::Crc64Nvme, &data).as_str())
        );
        assert_eq!(g.body.collect().await.unwrap().into_bytes(), data);
        common::metric(&sg.endpoint, gets).await - before
    };
    // The object, and one read of both trailers; then the object alone.
    assert_eq!(get_with_checksum().await, 2);
    assert_eq!(get_with_checksum().await, 1);
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn an_object_put_without_a_checksum_gets_a_crc64nvme_as_on_aws(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    // A client that sends no checksum (older SDKs, s3cmd, rclone, presigned PUTs).
    let plain = no_checksum_client(&sg);
    let crc = ChecksumAlgorithm::Crc64Nvme;
    for (len, kms) in [(1000usize, false), (300_000, false), (300_000, true)] {
        let k = format!("nochecksum-{len}-{kms}");
        let data = pattern(len, 40 + kms as u64);
        let (body, _file) = streamed(&data).await;
        let mut put = plain.put_object().bucket(&b).key(&k).body(body);
        if kms {
            put = put.server_side_encryption(ServerSideEncryption::AwsKms);
        }
        let out = put.send().await.unwrap();
        let want = digest(&crc, &data);
        assert_eq!(out.checksum_crc64_nvme(), Some(want.as_str()), "{k}");
        served_checksum_is(&sg, &b, &k, &crc, &want, &data).await;
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn a_multipart_upload_without_checksums_gets_a_full_object_crc64nvme_as_on_aws(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    // A client that sends no checksum (rclone, s3cmd, older SDKs, presigned parts).
    let plain = no_checksum_client(&sg);
    let crc = ChecksumAlgorithm::Crc64Nvme;
    let parts = [
        pattern(5 << 20, 61),
        pattern(5 << 20, 62),
        pattern(1000, 63),
    ];
    let whole = parts.concat();
    // The second part is copied from another object (UploadPartCopy).
    plain
        .put_object()
        .bucket(&b)
        .key("source")
        .body(ByteStream::from(parts[1].clone()))
        .send()
        .await
        .unwrap();
    for kms in [false, true] {
        let k = format!("mp-nochecksum-{kms}");
        let mut create = plain.create_multipart_upload().bucket(&b).key(&k);
        if kms {
            create = create.server_side_encryption(ServerSideEncryption::AwsKms);
        }
        let created = create.send().await.unwrap();
        assert_eq!(created.checksum_algorithm(), None, "{k}");
        let id = created.upload_id().unwrap();
        let mut done = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let etag = if n == 2 {
                let out = plain
                    .upload_part_copy()
                    .bucket(&b)
                    .key(&k)
                    .upload_id(id)
                    .part_number(n)
                    .copy_source(format!("{b}/source"))
                    .send()
                    .await
                    .unwrap();
                out.copy_part_result().unwrap().e_tag().unwrap().to_string()
            } else {
                let out = plain
                    .upload_part()
                    .bucket(&b)
                    .key(&k)
                    .upload_id(id)
                    .part_number(n)
                    .body(ByteStream::from(p.clone()))
                    .send()
                    .await
                    .unwrap();
                out.e_tag().unwrap().to_string()
            };
            done.push(CompletedPart::builder().part_number(n).e_tag(etag).build());
        }
        let want = digest(&crc, &whole);
        let out = plain
            .complete_multipart_upload()
            .bucket(&b)
            .key(&k)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.checksum_crc64_nvme(), Some(want.as_str()), "{k}");
        assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject), "{k}");
        served_checksum_is(&sg, &b, &k, &crc, &want, &whole).await;
        let listed = attribute_part_checksums(&sg, &b, &k, &crc).await;
        let want_parts: Vec<Option<String>> = parts.iter().map(|p| Some(digest(&crc, p))).collect();
        assert_eq!(listed, want_parts, "{k}");
    }
}
