//! ETags as AWS gives them and what sealgate serves about an object, authenticated:
//! SSE-S3 objects have the MD5 of their plaintext as ETag (PUT, HEAD, GET, listings,
//! copies, conditional requests), SSE-KMS objects a stable ETag that is not an MD5, and
//! a store that changes an object's content headers, user metadata or SSE algorithm gets
//! an error instead of the changed answer served.

mod common;

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use common::{Sealgate, Store, pattern};
use rstest::rstest;

fn md5_hex(d: &[u8]) -> String {
    use md5::Digest as _;
    format!("\"{}\"", hex::encode(md5::Md5::digest(d)))
}

fn status<E>(e: &aws_sdk_s3::error::SdkError<E>) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

async fn etag_everywhere(sg: &Sealgate, b: &str, k: &str) -> Vec<String> {
    let head = sg
        .client
        .head_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    let get = sg
        .client
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    let v2 = sg
        .client
        .list_objects_v2()
        .bucket(b)
        .prefix(k)
        .send()
        .await
        .unwrap();
    let v1 = sg
        .client
        .list_objects()
        .bucket(b)
        .prefix(k)
        .send()
        .await
        .unwrap();
    vec![
        head.e_tag().unwrap().to_string(),
        get.e_tag().unwrap().to_string(),
        v2.contents()[0].e_tag().unwrap().to_string(),
        v1.contents()[0].e_tag().unwrap().to_string(),
    ]
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn sse_s3_objects_have_their_plaintext_md5_as_etag_everywhere(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    // Held whole (one segment), streamed (MD5 sealed after the last segment), streamed
    // with the client's Content-MD5 (MD5 known up front).
    for (k, len, content_md5) in [
        ("small", 1000usize, false),
        ("large", 300_000, false),
        ("large-md5", 300_000, true),
        ("empty", 0, false),
    ] {
        let data = pattern(len, len as u64);
        let mut put = sg
            .client
            .put_object()
            .bucket(&b)
            .key(k)
            .body(ByteStream::from(data.clone()));
        if content_md5 {
            use md5::Digest as _;
            put = put.content_md5(common::b64(&md5::Md5::digest(&data)));
        }
        let out = put.send().await.unwrap();
        assert_eq!(out.e_tag(), Some(md5_hex(&data).as_str()), "PUT {k}");
        for e in etag_everywhere(&sg, &b, k).await {
            assert_eq!(e, md5_hex(&data), "{k}");
        }
    }
    // A restarted sealgate knows nothing about these objects yet: its listing reads them.
    let state = sg.state_dir.clone();
    sg.stop().await.unwrap();
    let mut cfg = common::test_config_on(store);
    cfg.kms.root_key_file = Some(state.path().join("root.key"));
    cfg.kms.db_path = state.path().join("kms.redb");
    let fresh = Sealgate::start_in(cfg, state).await;
    let listed = fresh
        .client
        .list_objects_v2()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let etags: HashMap<String, String> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().into(), o.e_tag().unwrap().into()))
        .collect();
    assert_eq!(etags["large"], md5_hex(&pattern(300_000, 300_000)));
    assert_eq!(etags["small"], md5_hex(&pattern(1000, 1000)));
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn conditional_requests_compare_the_etag_clients_see(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(200_000, 9);
    common::put(&sg.client, &b, "k", &data).await;
    let etag = md5_hex(&data);
    let get = |m: Option<&str>, n: Option<&str>| {
        let mut r = sg
            .client
            .get_object()
            .bucket(&b)
            .key("k")
            .range("bytes=10-19");
        if let Some(m) = m {
            r = r.if_match(m);
        }
        if let Some(n) = n {
            r = r.if_none_match(n);
        }
        r.send()
    };
    let ok = get(Some(&etag), None).await.unwrap();
    let body = ok.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &data[10..20]);
    assert_eq!(status(&get(Some("\"0000\""), None).await.unwrap_err()), 412);
    assert_eq!(status(&get(None, Some(&etag)).await.unwrap_err()), 304);
    get(None, Some("\"0000\"")).await.unwrap();
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&head), 304);
    let whole = sg
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.body.collect().await.unwrap().into_bytes(), data);
    // Copies: the source condition uses the same ETag.
    sg.client
        .copy_object()
        .bucket(&b)
        .key("copy")
        .copy_source(format!("{b}/k"))
        .copy_source_if_match(&etag)
        .send()
        .await
        .unwrap();
    let e = sg
        .client
        .copy_object()
        .bucket(&b)
        .key("copy2")
        .copy_source(format!("{b}/k"))
        .copy_source_if_match("\"0000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn sse_kms_objects_keep_a_stable_etag_that_is_not_the_md5(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(100_000, 4);
    let out = sg
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let etag = out.e_tag().unwrap().to_string();
    assert_ne!(etag, md5_hex(&data));
    for e in etag_everywhere(&sg, &b, "k").await {
        assert_eq!(e, etag);
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn copies_to_sse_s3_get_the_md5_etag(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let data = pattern(150_000, 8);
    common::put(&sg.client, &b, "s3", &data).await;
    sg.client
        .put_object()
        .bucket(&b)
        .key("kms")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    for src in ["s3", "kms"] {
        let out = sg
            .client
            .copy_object()
            .bucket(&b)
            .key(format!("from-{src}"))
            .copy_source(format!("{b}/{src}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.copy_object_result().unwrap().e_tag(),
            Some(md5_hex(&data).as_str()),
            "{src}"
        );
        for e in etag_everywhere(&sg, &b, &format!("from-{src}")).await {
            assert_eq!(e, md5_hex(&data), "{src}");
        }
        assert_eq!(
            common::get(&sg.client, &b, &format!("from-{src}")).await,
            data
        );
    }
}

/// Re-writes an object in the store with its bytes and sealgate's metadata but one
/// header changed (what a store operator could do).
async fn restore_with(sg: &Sealgate, b: &str, k: &str, change: &str, value: &str) {
    let r = sg
        .direct
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    let mut meta = r.metadata().cloned().unwrap_or_default();
    let ct = r.content_type().map(str::to_string);
    let cc = r.cache_control().map(str::to_string);
    let body = r.body.collect().await.unwrap().into_bytes();
    let mut put = sg.direct.put_object().bucket(b).key(k);
    let (mut ct, mut cc) = (ct, cc);
    match change {
        "content-type" => ct = Some(value.into()),
        "cache-control" => cc = Some(value.into()),
        m => {
            meta.insert(m.into(), value.into());
        }
    }
    if let Some(ct) = ct {
        put = put.content_type(ct);
    }
    if let Some(cc) = cc {
        put = put.cache_control(cc);
    }
    put.set_metadata(Some(meta))
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn content_headers_metadata_and_algorithm_changed_in_the_store_are_detected(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    for (change, value) in [
        ("sealgate-ct", "text/html"),
        ("cache-control", "public, max-age=99999"),
        ("owner", "mallory"),
        ("added", "x"),
        ("sealgate-alg", "aws:kms"),
    ] {
        let k = format!("obj-{change}");
        sg.client
            .put_object()
            .bucket(&b)
            .key(&k)
            .content_type("text/plain")
            .cache_control("no-store")
            .metadata("owner", "bob")
            .body(ByteStream::from_static(b"payload"))
            .send()
            .await
            .unwrap();
        assert_eq!(common::get(&sg.client, &b, &k).await, b"payload"[..]);
        // The store's own Content-Type is about the ciphertext: changing it changes
        // nothing sealgate serves.
        restore_with(&sg, &b, &k, "content-type", "text/html").await;
        let h = sg
            .client
            .head_object()
            .bucket(&b)
            .key(&k)
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_type(), Some("text/plain"));
        restore_with(&sg, &b, &k, change, value).await;
        let get = sg.client.get_object().bucket(&b).key(&k).send().await;
        assert_eq!(
            status(&get.unwrap_err()),
            500,
            "{change} changed: GET refused"
        );
        let head = sg.client.head_object().bucket(&b).key(&k).send().await;
        assert_eq!(
            status(&head.unwrap_err()),
            500,
            "{change} changed: HEAD refused"
        );
    }
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn content_headers_and_redirects_round_trip_on_every_store(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    sg.client
        .put_object()
        .bucket(&b)
        .key("page")
        .content_type("text/html; charset=utf-8")
        .content_language("en-GB")
        .content_disposition("attachment; filename=\"a b.html\"")
        .cache_control("max-age=60")
        .website_redirect_location("/elsewhere")
        .metadata("colour", "blue")
        .body(ByteStream::from_static(b"<p>hi</p>"))
        .send()
        .await
        .unwrap();
    let h = sg
        .client
        .head_object()
        .bucket(&b)
        .key("page")
        .send()
        .await
        .unwrap();
    assert_eq!(h.content_type(), Some("text/html; charset=utf-8"));
    assert_eq!(h.content_language(), Some("en-GB"));
    assert_eq!(
        h.content_disposition(),
        Some("attachment; filename=\"a b.html\"")
    );
    assert_eq!(h.cache_control(), Some("max-age=60"));
    assert_eq!(h.website_redirect_location(), Some("/elsewhere"));
    assert_eq!(h.metadata().unwrap()["colour"], "blue");
    // Without a Content-Type the object gets S3's default, not the store's guess (the
    // SDK always sends one, so a hand-signed request).
    let r = common::signed_request(
        &sg,
        "PUT",
        &format!("/{b}/plain.txt"),
        b"just text".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = sg
        .client
        .head_object()
        .bucket(&b)
        .key("plain.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(h.content_type(), Some("binary/octet-stream"));
}

/// `response-*` query parameters (download links with
/// `response-content-disposition=attachment; filename=...` are the common case) set the
/// answer's headers on GET, ranged GET, HEAD and presigned GET, after sealgate checked the
/// stored headers; the stored object keeps its own.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn response_header_overrides_apply_to_gets_and_heads(#[case] store: Store) {
    use aws_sdk_s3::presigning::PresigningConfig;
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let body = pattern(3 << 20, 7);
    sg.client
        .put_object()
        .bucket(&b)
        .key("report.pdf")
        .content_type("text/plain")
        .cache_control("max-age=60")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let get = sg
        .client
        .get_object()
        .bucket(&b)
        .key("report.pdf")
        .response_content_type("application/pdf")
        .response_content_disposition("attachment; filename=\"report 2026.pdf\"")
        .response_cache_control("no-cache")
        .response_content_language("esperanto")
        .response_content_encoding("identity")
        .response_expires(aws_sdk_s3::primitives::DateTime::from_secs(1_800_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(get.content_type(), Some("application/pdf"));
    assert_eq!(
        get.content_disposition(),
        Some("attachment; filename=\"report 2026.pdf\"")
    );
    assert_eq!(get.cache_control(), Some("no-cache"));
    assert_eq!(get.content_language(), Some("esperanto"));
    assert_eq!(get.content_encoding(), Some("identity"));
    assert_eq!(get.expires_string(), Some("Fri, 15 Jan 2027 08:00:00 GMT"));
    assert_eq!(get.body.collect().await.unwrap().into_bytes(), body);

    let ranged = sg
        .client
        .get_object()
        .bucket(&b)
        .key("report.pdf")
        .range("bytes=100-199")
        .response_content_disposition("inline")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.content_disposition(), Some("inline"));
    assert_eq!(ranged.content_type(), Some("text/plain"));
    assert_eq!(
        ranged.body.collect().await.unwrap().into_bytes(),
        body[100..200]
    );

    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("report.pdf")
        .response_cache_control("private")
        .send()
        .await
        .unwrap();
    assert_eq!(head.cache_control(), Some("private"));
    assert_eq!(head.content_length(), Some(3 << 20));

    let link = sg
        .client
        .get_object()
        .bucket(&b)
        .key("report.pdf")
        .response_content_disposition("attachment; filename=\"r.pdf\"")
        .presigned(PresigningConfig::expires_in(std::time::Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let r = reqwest::get(link.uri()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"r.pdf\""
    );
    assert_eq!(r.bytes().await.unwrap(), body);

    // The stored object is unchanged.
    let plain = sg
        .client
        .head_object()
        .bucket(&b)
        .key("report.pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.content_type(), Some("text/plain"));
    assert_eq!(plain.cache_control(), Some("max-age=60"));
    assert_eq!(plain.content_disposition(), None);
}

/// User metadata with an empty value comes back as AWS keeps it (`x-amz-meta-NAME:` with
/// no value), also on SeaweedFS, which stores such an object but drops the header: the
/// object stayed unreadable there (its metadata check failed). A store that drops the
/// name from sealgate's record is still caught.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test]
async fn empty_metadata_values_round_trip_on_every_store(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    sg.client
        .put_object()
        .bucket(&b)
        .key("m")
        .metadata("empty", "")
        .metadata("full", "x")
        .body(ByteStream::from_static(b"bar"))
        .send()
        .await
        .unwrap();
    let id = sg
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("mp")
        .metadata("empty", "")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let part = sg
        .client
        .upload_part()
        .bucket(&b)
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"bar"))
        .send()
        .await
        .unwrap();
    sg.client
        .complete_multipart_upload()
        .bucket(&b)
        .key("mp")
        .upload_id(&id)
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
    // A copy keeps the source's metadata (COPY directive).
    sg.client
        .copy_object()
        .bucket(&b)
        .key("copy")
        .copy_source(format!("{b}/m"))
        .send()
        .await
        .unwrap();
    for (k, want) in [
        ("m", vec![("empty", ""), ("full", "x")]),
        ("mp", vec![("empty", "")]),
        ("copy", vec![("empty", ""), ("full", "x")]),
    ] {
        let h = sg
            .client
            .head_object()
            .bucket(&b)
            .key(k)
            .send()
            .await
            .unwrap();
        let mut got: Vec<(String, String)> = h
            .metadata()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        got.sort();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{k}");
        assert_eq!(common::get(&sg.client, &b, k).await, b"bar"[..], "{k}");
    }
    // The store drops the empty value's name from sealgate's record: refused.
    restore_with(&sg, &b, "m", "sealgate-empty", "other").await;
    let get = sg.client.get_object().bucket(&b).key("m").send().await;
    assert_eq!(status(&get.unwrap_err()), 500);
}
