//! Faults: sealgate or the store dies in the middle of a request, or sealgate dies while
//! its KMS database is being written. Every test runs the real `sealgate` binary as a
//! separate process (so it can be SIGKILLed) against a private Garage of its own (so it
//! can be killed and restarted, and its files searched for plaintext: it stores blocks
//! uncompressed).
//!
//! What must hold: the store never holds plaintext of an encrypted object, not even in
//! the blocks of an interrupted upload; an interrupted upload leaves no visible object;
//! a response whose source failed is aborted (never a clean short body); the KMS database
//! reopens with every acknowledged key and ciphertext intact.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use common::{Feeder, Pending, PrivateGarage, SealgateProcess, signed_headers, start_fed_put};
use futures::StreamExt;

/// Every line of test plaintext starts with this, so a search of the store's files for it
/// finds any plaintext that reached them.
const MARKER: &[u8] = b"SEALGATE-FAULT-PLAINTEXT-";

/// `len` bytes of marked, recognisable plaintext.
fn marked(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(MARKER);
        out.extend_from_slice(format!("{i:012}\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

async fn sealgate_on(g: &PrivateGarage, dir: &std::path::Path) -> SealgateProcess {
    SealgateProcess::start(dir, &g.endpoint, &g.access_key, &g.secret_key, &g.region).await
}

/// A private Garage with bucket `faults`, a state directory, and sealgate on both.
async fn garage_and_sealgate() -> (PrivateGarage, tempfile::TempDir, SealgateProcess) {
    let g = PrivateGarage::start();
    create_bucket(&g, "faults").await;
    let state = tempfile::tempdir().unwrap();
    let sg = sealgate_on(&g, state.path()).await;
    (g, state, sg)
}

async fn create_bucket(g: &PrivateGarage, name: &str) {
    g.client()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
}

/// Keys the store lists in `bucket` (what any reader of the store can see).
async fn visible_keys(g: &PrivateGarage, bucket: &str) -> Vec<String> {
    let out = g
        .client()
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[track_caller]
fn assert_no_plaintext_in_store(g: &PrivateGarage) {
    if let Some(p) = g.files_contain(MARKER) {
        panic!("plaintext reached the store's files: {}", p.display());
    }
}

/// PUTs `data` as `faults/KEY` through sealgate and reads it back.
async fn put_then_get(c: &aws_sdk_s3::Client, key: &str, data: &[u8]) -> Bytes {
    common::put(c, "faults", key, data).await;
    common::get(c, "faults", key).await
}

/// Starts a multipart upload of `faults/mp` through sealgate and uploads parts 1.. of
/// the given sizes; returns sealgate's upload id.
async fn upload_with_parts(c: &aws_sdk_s3::Client, sizes: &[usize]) -> String {
    let token = c
        .create_multipart_upload()
        .bucket("faults")
        .key("mp")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    for (i, len) in sizes.iter().enumerate() {
        c.upload_part()
            .bucket("faults")
            .key("mp")
            .upload_id(&token)
            .part_number(i as i32 + 1)
            .body(ByteStream::from(marked(*len)))
            .send()
            .await
            .unwrap();
    }
    token
}

/// Sends `data` in 64 KiB chunks; stops quietly if the receiver went away.
async fn feed(tx: &Feeder, data: &[u8]) {
    for c in data.chunks(64 * 1024) {
        let send = tx.send(Ok(Bytes::copy_from_slice(c)));
        match tokio::time::timeout(Duration::from_secs(5), send).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Whether the request failed as the client sees it (transport error or error status).
async fn failed(task: Pending) -> bool {
    match tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the client got an answer within 60 s")
        .unwrap()
    {
        Err(_) => true,
        Ok(r) => !r.status().is_success(),
    }
}

#[tokio::test]
async fn sealgate_killed_mid_put_leaves_no_object_and_no_plaintext_and_a_restart_serves_the_key() {
    let (g, state, mut sg) = garage_and_sealgate().await;

    let data = marked(16 << 20);
    let (tx, task) = start_fed_put(format!("{}/faults/obj", sg.endpoint), data.len() as u64);
    feed(&tx, &data[..6 << 20]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sg.kill();
    drop(tx);
    assert!(
        failed(task).await,
        "a PUT cut off by a crash cannot succeed"
    );

    assert_eq!(visible_keys(&g, "faults").await, Vec::<String>::new());
    assert_no_plaintext_in_store(&g);

    // A fresh sealgate on the same KMS database takes the same key again.
    let sg = sealgate_on(&g, state.path()).await;
    let c = sg.client();
    let got = put_then_get(&c, "obj", &data).await;
    assert!(got == data[..], "the re-uploaded object reads back whole");
    assert_eq!(visible_keys(&g, "faults").await, vec!["obj".to_string()]);
    assert_no_plaintext_in_store(&g);

    // Control: the search does find plaintext that the store was given directly.
    g.client()
        .put_object()
        .bucket("faults")
        .key("plain")
        .body(ByteStream::from(marked(1 << 20)))
        .send()
        .await
        .unwrap();
    assert!(
        g.files_contain(MARKER).is_some(),
        "the plaintext search works"
    );
}

#[tokio::test]
async fn sealgate_killed_mid_multipart_leaves_an_abortable_upload_and_no_plaintext() {
    let (g, state, mut sg) = garage_and_sealgate().await;
    let c = sg.client();

    let token = upload_with_parts(&c, &[5 << 20]).await;
    // Part 2 is cut off by the crash.
    let part2 = marked(8 << 20);
    let url = format!("{}/faults/mp?partNumber=2&uploadId={}", sg.endpoint, token);
    let (tx, task) = start_fed_put(url, part2.len() as u64);
    feed(&tx, &part2[..3 << 20]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sg.kill();
    drop(tx);
    assert!(failed(task).await);

    assert_eq!(visible_keys(&g, "faults").await, Vec::<String>::new());
    assert_no_plaintext_in_store(&g);
    let uploads = g
        .client()
        .list_multipart_uploads()
        .bucket("faults")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1, "the upload is still open");

    // After a restart the client aborts with the upload id it was given.
    let sg = sealgate_on(&g, state.path()).await;
    sg.client()
        .abort_multipart_upload()
        .bucket("faults")
        .key("mp")
        .upload_id(&token)
        .send()
        .await
        .unwrap();
    let uploads = g
        .client()
        .list_multipart_uploads()
        .bucket("faults")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "the abort reached the store");
    assert_eq!(visible_keys(&g, "faults").await, Vec::<String>::new());
    assert_no_plaintext_in_store(&g);
}

#[tokio::test]
async fn an_upload_completed_in_the_store_behind_sealgates_back_reads_as_an_error() {
    // Also what a crash between the store's completion and sealgate's metadata copy
    // leaves behind: a completed object without the authenticated part list.
    let (g, state, mut sg) = garage_and_sealgate().await;
    let c = sg.client();
    upload_with_parts(&c, &[5 << 20, 1 << 20]).await;
    sg.kill();

    // Complete the store's upload directly, as the store's operator (or a crash) could.
    let direct = g.client();
    let up = direct
        .list_multipart_uploads()
        .bucket("faults")
        .send()
        .await
        .unwrap();
    let store_id = up.uploads()[0].upload_id().unwrap().to_string();
    let parts = direct
        .list_parts()
        .bucket("faults")
        .key("mp")
        .upload_id(&store_id)
        .send()
        .await
        .unwrap();
    let done = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .parts()
                .iter()
                .map(|p| {
                    CompletedPart::builder()
                        .part_number(p.part_number().unwrap())
                        .e_tag(p.e_tag().unwrap())
                        .build()
                })
                .collect(),
        ))
        .build();
    direct
        .complete_multipart_upload()
        .bucket("faults")
        .key("mp")
        .upload_id(&store_id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    assert_eq!(visible_keys(&g, "faults").await, vec!["mp".to_string()]);
    assert_no_plaintext_in_store(&g);

    let sg = sealgate_on(&g, state.path()).await;
    let url = format!("{}/faults/mp", sg.endpoint);
    let r = reqwest::Client::new()
        .get(&url)
        .headers(signed_headers("GET", &url, &[]))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.bytes().await.unwrap_or_default();
    assert!(status.is_server_error(), "want an error, got {status}");
    assert!(
        !body.windows(MARKER.len()).any(|w| w == MARKER),
        "plaintext in the error body"
    );
    assert!(
        String::from_utf8_lossy(&body).contains("failed verification"),
        "the error says why: {}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn store_killed_mid_get_aborts_the_response_after_a_prefix_of_the_plaintext() {
    let (mut g, _state, sg) = garage_and_sealgate().await;
    let data = marked(64 << 20);
    sg.client()
        .put_object()
        .bucket("faults")
        .key("big")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();

    let url = format!("{}/faults/big", sg.endpoint);
    let r = reqwest::Client::new()
        .get(&url)
        .headers(signed_headers("GET", &url, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(data.len() as u64));
    let mut body = r.bytes_stream();
    let mut got: Vec<u8> = Vec::new();
    let mut error = None;
    let mut killed = false;
    // A slow reader: the store dies once the first MiB has arrived.
    loop {
        match tokio::time::timeout(Duration::from_secs(60), body.next()).await {
            Err(_) => panic!("the response neither continued nor ended within 60 s"),
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => got.extend_from_slice(&chunk),
            Ok(Some(Err(e))) => {
                error = Some(e);
                break;
            }
        }
        if !killed && got.len() >= 1 << 20 {
            g.kill();
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(killed);
    assert!(
        got.len() < data.len(),
        "the whole object arrived before the store died; make it larger"
    );
    assert!(
        error.is_some(),
        "a response cut off by the store must end in an error, not a clean short body ({} of {} bytes)",
        got.len(),
        data.len()
    );
    assert!(
        got[..] == data[..got.len()],
        "what arrived is a prefix of the plaintext"
    );
}

#[tokio::test]
async fn store_killed_mid_put_fails_the_request_and_leaves_nothing_after_restart() {
    let (mut g, _state, sg) = garage_and_sealgate().await;

    let data = marked(16 << 20);
    let (tx, task) = start_fed_put(format!("{}/faults/obj", sg.endpoint), data.len() as u64);
    feed(&tx, &data[..6 << 20]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    g.kill();
    feed(&tx, &data[6 << 20..]).await;
    drop(tx);
    assert!(
        failed(task).await,
        "a PUT the store never finished cannot succeed"
    );

    g.restart();
    assert_eq!(visible_keys(&g, "faults").await, Vec::<String>::new());
    assert_no_plaintext_in_store(&g);

    // The same sealgate recovers once the store is back.
    let c = sg.client();
    let got = put_then_get(&c, "obj", &data).await;
    assert!(got == data[..]);
    assert_no_plaintext_in_store(&g);
}

type CipherPair = (Vec<u8>, Vec<u8>);

/// What the KMS acknowledged before a crash.
#[derive(Default)]
struct Acked {
    /// key id → (ciphertext, plaintext) pairs.
    keys: Vec<(String, Vec<CipherPair>)>,
    /// key id → on-demand rotations acknowledged.
    rotations: std::collections::HashMap<String, usize>,
}

/// Encrypts `plain` under `id` and records the ciphertext; false if the call failed.
async fn encrypt_acked(
    kms: &aws_sdk_kms::Client,
    id: &str,
    plain: Vec<u8>,
    acked: &std::sync::Mutex<Acked>,
) -> bool {
    let req = kms
        .encrypt()
        .key_id(id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(plain.clone()));
    let Ok(enc) = req.send().await else {
        return false;
    };
    let blob = enc.ciphertext_blob().unwrap().as_ref().to_vec();
    let mut a = acked.lock().unwrap();
    a.keys.last_mut().unwrap().1.push((blob, plain));
    true
}

/// Creates keys, encrypts under them and rotates them until a call fails (the process
/// was killed), recording each acknowledgement.
async fn kms_workload(endpoint: String, acked: std::sync::Arc<std::sync::Mutex<Acked>>) {
    let kms = common::kms_client_at(&endpoint);
    for i in 0u64.. {
        let Ok(out) = kms.create_key().description(format!("k{i}")).send().await else {
            return;
        };
        let id = out.key_metadata().unwrap().key_id().to_string();
        acked.lock().unwrap().keys.push((id.clone(), Vec::new()));
        if !encrypt_acked(&kms, &id, format!("secret {i}").into_bytes(), &acked).await {
            return;
        }
        if i % 2 == 0 {
            if kms.rotate_key_on_demand().key_id(&id).send().await.is_err() {
                return;
            }
            *acked
                .lock()
                .unwrap()
                .rotations
                .entry(id.clone())
                .or_default() += 1;
            // A ciphertext under the new backing key too.
            let plain = format!("after rotation {i}").into_bytes();
            if !encrypt_acked(&kms, &id, plain, &acked).await {
                return;
            }
        }
    }
}

/// Everything acknowledged is there, and every key in the database is whole.
async fn check_kms_consistent(sg: &SealgateProcess, acked: &Acked) {
    use aws_sdk_kms::primitives::Blob;
    let kms = sg.kms_client();
    for (id, cts) in &acked.keys {
        let d = kms
            .describe_key()
            .key_id(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged key {id} is missing after the crash: {e:?}"));
        assert!(d.key_metadata().unwrap().enabled(), "{id} enabled");
        for (ct, pt) in cts {
            let out = kms
                .decrypt()
                .ciphertext_blob(Blob::new(ct.clone()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("an acknowledged ciphertext of {id} fails: {e:?}"));
            assert_eq!(out.plaintext().unwrap().as_ref(), &pt[..]);
        }
        let want = acked.rotations.get(id).copied().unwrap_or(0);
        let rot = kms.list_key_rotations().key_id(id).send().await.unwrap();
        assert!(
            rot.rotations().len() >= want,
            "{id}: {want} rotations acknowledged, {} listed",
            rot.rotations().len()
        );
    }
    // No half-created key: every listed key describes, encrypts and decrypts.
    let mut marker = None;
    loop {
        let page = kms
            .list_keys()
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        for k in page.keys() {
            let id = k.key_id().unwrap();
            let d = kms.describe_key().key_id(id).send().await.unwrap();
            let md = d.key_metadata().unwrap();
            if !md.enabled() || md.key_manager() == Some(&aws_sdk_kms::types::KeyManagerType::Aws) {
                continue;
            }
            let enc = kms
                .encrypt()
                .key_id(id)
                .plaintext(Blob::new(b"probe".to_vec()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("listed key {id} cannot encrypt: {e:?}"));
            let dec = kms
                .decrypt()
                .ciphertext_blob(enc.ciphertext_blob().unwrap().clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("listed key {id} cannot decrypt: {e:?}"));
            assert_eq!(dec.plaintext().unwrap().as_ref(), b"probe");
        }
        if page.truncated() {
            marker = page.next_marker().map(str::to_string);
        } else {
            break;
        }
    }
}

#[tokio::test]
async fn kms_database_reopens_consistent_after_sigkill_during_key_creation_and_rotation() {
    // The store is not needed: nothing here touches objects.
    let state = tempfile::tempdir().unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Acked::default()));
    let start = || {
        SealgateProcess::start(
            state.path(),
            "http://127.0.0.1:9",
            "GKnone000",
            "x",
            "garage",
        )
    };
    let rounds = 6;
    for round in 0..rounds {
        let mut sg = start().await;
        if round > 0 {
            let a = std::mem::take(&mut *acked.lock().unwrap());
            check_kms_consistent(&sg, &a).await;
            *acked.lock().unwrap() = a;
        }
        let work = tokio::spawn(kms_workload(sg.endpoint.clone(), acked.clone()));
        // Kill at a different point of the write path each round.
        tokio::time::sleep(Duration::from_millis(400 + 173 * round)).await;
        sg.kill();
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .expect("the workload notices the crash")
            .unwrap();
    }
    let sg = start().await;
    let a = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        a.keys.len() >= rounds as usize,
        "the workload made progress ({} keys)",
        a.keys.len()
    );
    check_kms_consistent(&sg, &a).await;
    eprintln!(
        "{} keys, {} ciphertexts, {} rotations acknowledged across {rounds} crashes",
        a.keys.len(),
        a.keys.iter().map(|k| k.1.len()).sum::<usize>(),
        a.rotations.values().sum::<usize>()
    );
    drop(sg);
    // The audit log survives the crashes too: its hash chain verifies.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "--log"])
        .arg(state.path().join("kms.audit.jsonl"))
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify after crashes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sealgate SIGKILLed at different moments of a CompleteMultipartUpload (before, while
/// and after it writes the part list and completes the upload in the store): once
/// restarted, the client's retry of the same Complete succeeds and the object reads back
/// exactly — never wrong bytes, never an object without its authenticated part list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealgate_killed_during_completion_then_a_retried_completion_reads_back_exactly() {
    let (g, state, mut sg) = garage_and_sealgate().await;
    let sizes = [5 << 20, 5 << 20, 1234];
    let mut expected = Vec::new();
    for len in sizes {
        expected.extend_from_slice(&marked(len));
    }
    for delay_ms in [0u64, 3, 8, 15, 30, 60] {
        let c = sg.client();
        let token = upload_with_parts(&c, &sizes).await;
        let parts = c
            .list_parts()
            .bucket("faults")
            .key("mp")
            .upload_id(&token)
            .send()
            .await
            .unwrap();
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .parts()
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.part_number().unwrap())
                            .e_tag(p.e_tag().unwrap())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let (c2, t2, d2) = (c.clone(), token.clone(), done.clone());
        let attempt = tokio::spawn(async move {
            c2.complete_multipart_upload()
                .bucket("faults")
                .key("mp")
                .upload_id(t2)
                .multipart_upload(d2)
                .send()
                .await
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        sg.kill();
        let _ = attempt.await;
        sg = sealgate_on(&g, state.path()).await;
        let c = sg.client();
        // The client retries the same request, as SDKs do when the answer was lost.
        c.complete_multipart_upload()
            .bucket("faults")
            .key("mp")
            .upload_id(&token)
            .multipart_upload(done)
            .send()
            .await
            .unwrap_or_else(|e| panic!("retry after a kill at {delay_ms} ms: {e:?}"));
        assert!(
            common::get(&c, "faults", "mp").await == expected,
            "the object read back differs after a kill at {delay_ms} ms"
        );
    }
    assert_no_plaintext_in_store(&g);
}
