//! Listings that scale (issue 18): objects written or read through this sealgate are
//! listed with plaintext sizes and AWS ETags without a store request per object, and
//! an object whose metadata cannot be verified is listed, not a 500 for the page.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::{Sealgate, Store};
use futures::StreamExt;
use rstest::rstest;

/// Store requests sealgate made with `method` (its /metrics).
async fn store_requests(sg: &Sealgate, method: &str) -> u64 {
    common::metric(
        &sg.endpoint,
        &format!("sealgate_upstream_requests_total{{method=\"{method}\",copy=\"false\"}}"),
    )
    .await
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_ten_thousand_objects_makes_no_per_object_store_requests(#[case] store: Store) {
    const N: usize = 10_000;
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    futures::stream::iter(0..N)
        .map(|i| {
            let (c, b) = (sg.client.clone(), b.clone());
            async move {
                c.put_object()
                    .bucket(b)
                    .key(format!("many/{i:05}"))
                    .body(ByteStream::from(format!("object number {i}").into_bytes()))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let (heads, gets) = (
        store_requests(&sg, "HEAD").await,
        store_requests(&sg, "GET").await,
    );
    let started = std::time::Instant::now();
    let mut pages = sg
        .client
        .list_objects_v2()
        .bucket(&b)
        .prefix("many/")
        .into_paginator()
        .send();
    let mut listed = 0;
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        for o in page.contents() {
            let i: usize = o.key().unwrap()["many/".len()..].parse().unwrap();
            let body = format!("object number {i}");
            assert_eq!(o.size(), Some(body.len() as i64), "{:?}", o.key());
            let md5 = {
                use md5::Digest as _;
                format!("\"{}\"", hex::encode(md5::Md5::digest(body.as_bytes())))
            };
            assert_eq!(o.e_tag(), Some(md5.as_str()), "{:?}", o.key());
            listed += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(listed, N);
    assert_eq!(
        store_requests(&sg, "HEAD").await - heads,
        0,
        "no HEAD per object"
    );
    assert_eq!(
        store_requests(&sg, "GET").await - gets,
        page_count,
        "one store request per page"
    );
    eprintln!(
        "{}: listed {N} objects in {page_count} pages in {took:?}",
        store.name()
    );
}

/// An object whose sealgate metadata no longer verifies is listed with the store's
/// values (and a log line) while the rest of the page keeps its plaintext sizes.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_with_broken_metadata_is_listed_and_the_page_is_served(#[case] store: Store) {
    let cfg = common::test_config_on(store);
    let writer = Sealgate::start_with(cfg.clone()).await;
    let b = writer.bucket().await;
    for k in ["a", "broken", "c"] {
        writer
            .client
            .put_object()
            .bucket(&b)
            .key(k)
            .body(ByteStream::from_static(b"twenty-one bytes long"))
            .send()
            .await
            .unwrap();
    }
    // The store rewrites `broken`'s metadata: its MAC no longer matches.
    let head = writer
        .direct
        .head_object()
        .bucket(&b)
        .key("broken")
        .send()
        .await
        .unwrap();
    let mut meta = head.metadata().cloned().unwrap();
    let mac = meta.get_mut("sealgate-mac").expect("a sealgate object");
    *mac = mac.chars().rev().collect();
    let stored_size = head.content_length().unwrap();
    writer
        .direct
        .copy_object()
        .bucket(&b)
        .key("broken")
        .copy_source(format!("{b}/broken"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .set_metadata(Some(meta))
        .send()
        .await
        .unwrap();
    // Another sealgate instance (nothing cached) on the same KMS database.
    let sg = writer.restart().await;
    let page = sg.client.list_objects_v2().bucket(&b).send().await.unwrap();
    let sizes: Vec<(String, i64)> = page
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_string(), o.size().unwrap()))
        .collect();
    assert_eq!(
        sizes,
        vec![
            ("a".to_string(), 21),
            ("broken".to_string(), stored_size),
            ("c".to_string(), 21)
        ]
    );
    // Reading it is refused, never served.
    assert!(
        sg.client
            .get_object()
            .bucket(&b)
            .key("broken")
            .send()
            .await
            .is_err()
    );
}
