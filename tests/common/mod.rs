//! Test harness: real S3 stores ([`store`]: Garage and SeaweedFS, one shared instance of
//! each per test binary, started on free loopback ports in their own directory), an
//! in-process sealgate per test on 127.0.0.1:0 or the sealgate binary as a process
//! ([`instance`]), client helpers ([`clients`]) and KMS peers ([`kms`]).
//!
//! Tests fail — never skip — when a component is missing: `scripts/setup.sh` installs
//! everything.
#![allow(dead_code)]

pub mod clients;
pub mod instance;
pub mod kms;
pub mod pg;
pub mod softhsm;
pub mod store;

use std::path::{Path, PathBuf};

pub use clients::*;
pub use instance::*;
pub use kms::*;
#[allow(unused_imports)]
pub use pg::*;
pub use pg::{free_port, random_hex, write_private};
pub use store::*;

pub const CLIENT_AK: &str = "AKIDSEALGATETEST";
pub const CLIENT_SK: &str = "sealgate-test-secret-key";

/// The shared Garage of this test binary, started on first use.
pub fn garage() -> &'static StoreProc {
    Store::Garage.shared()
}

/// A client talking to Garage directly (what the store really holds).
pub fn direct_client() -> aws_sdk_s3::Client {
    garage().client()
}

/// PutObject of `data` as `bucket/key`; panics if the client gets an error.
pub async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key}: {e:?}"));
}

/// GetObject of `bucket/key`, whole body; panics if the client gets an error.
pub async fn get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bytes::Bytes {
    c.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key} body: {e:?}"))
        .into_bytes()
}

/// An object as the store holds it (read directly): its bytes and user metadata.
pub async fn stored(
    direct: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> (Vec<u8>, std::collections::HashMap<String, String>) {
    let r = direct
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("direct GET {bucket}/{key}: {e:?}"));
    let meta = r.metadata().cloned().unwrap_or_default();
    (r.body.collect().await.unwrap().into_bytes().to_vec(), meta)
}

/// Writes an object directly to the store with these bytes and user metadata (what a
/// store operator could do).
pub async fn store_as(
    direct: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    meta: std::collections::HashMap<String, String>,
) {
    direct
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(meta))
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("direct PUT {bucket}/{key}: {e:?}"));
}

/// Deterministic pseudo-random bytes (fast, so large bodies are cheap to make).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

/// The first file under `dir` whose bytes contain `needle`.
pub fn find_in_tree(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                return Some(p);
            }
        }
    }
    None
}

pub fn b64(d: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(d)
}
