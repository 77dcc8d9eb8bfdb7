//! Admin jobs that work through a running sealgate's S3 API, as a client would.
//!
//! `migrate`: encrypt the objects of a bucket that sealgate did not encrypt, in place.
//! Invariants: an object is only replaced by a server-side copy through sealgate pinned to
//! the version that was read (`x-amz-copy-source-if-match`), so a concurrent write wins
//! and nothing is lost; every replaced object is read back through sealgate and its
//! SHA-256 compared with the original's; objects already encrypted are skipped, so the
//! job can be re-run (resumed) at any time.

use futures::StreamExt;
use http::{HeaderMap, Method};

use crate::config::{Secret, UpstreamConfig};
use crate::s3::xml::texts;
use crate::upstream::{UpBody, UpRequest, Upstream};

/// Where and as whom the job talks to sealgate.
pub struct Target {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// What a migration did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub listed: u64,
    pub already_encrypted: u64,
    pub encrypted: u64,
    pub bytes: u64,
    pub failed: u64,
}

fn client(t: &Target) -> Result<Upstream, String> {
    Upstream::new(&UpstreamConfig {
        endpoint: t.endpoint.clone(),
        region: t.region.clone(),
        access_key_id: t.access_key_id.clone(),
        secret_access_key: Secret::new(t.secret_access_key.clone()),
        ..UpstreamConfig::default()
    })
}

fn req(
    method: Method,
    bucket: &str,
    key: Option<&str>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
) -> UpRequest {
    UpRequest {
        method,
        bucket: Some(bucket.to_string()),
        key: key.map(str::to_string),
        query,
        headers,
        body: UpBody::Empty,
    }
}

async fn list_keys(c: &Upstream, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![
            ("list-type".to_string(), "2".to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        if let Some(t) = &token {
            q.push(("continuation-token".to_string(), t.clone()));
        }
        let r = c
            .send(req(Method::GET, bucket, None, q, HeaderMap::new()))
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "listing {bucket}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        keys.extend(texts(&body, &["Contents", "Key"])?);
        token = texts(&body, &["NextContinuationToken"])?.into_iter().next();
        if token.is_none() {
            return Ok(keys);
        }
    }
}

/// SHA-256 of an object's plaintext as sealgate serves it.
async fn plaintext_sha256(c: &Upstream, bucket: &str, key: &str) -> Result<(String, u64), String> {
    let r = c
        .send(req(
            Method::GET,
            bucket,
            Some(key),
            Vec::new(),
            HeaderMap::new(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("GET {key}: {}", r.status()));
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut n = 0u64;
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| format!("GET {key}: {e}"))?;
        n += chunk.len() as u64;
        ctx.update(&chunk);
    }
    Ok((hex::encode(ctx.finish().as_ref()), n))
}

/// Encrypts one plaintext object in place; returns its size.
async fn encrypt_one(
    c: &Upstream,
    bucket: &str,
    key: &str,
    head: &HeaderMap,
    extra: HeaderMap,
) -> Result<u64, String> {
    let (before, n) = plaintext_sha256(c, bucket, key).await?;
    let mut h = extra;
    for (k, v) in &crate::s3::copy::descriptive_headers(head) {
        h.append(k.clone(), v.clone());
    }
    let src = crate::s3::copy::Source {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id: None,
    }
    .header_value();
    h.insert(
        "x-amz-copy-source",
        src.parse().map_err(|e| format!("{e}"))?,
    );
    h.insert(
        "x-amz-metadata-directive",
        http::HeaderValue::from_static("REPLACE"),
    );
    if let Some(e) = head.get(http::header::ETAG) {
        h.insert("x-amz-copy-source-if-match", e.clone());
    }
    let r = c
        .send(req(Method::PUT, bucket, Some(key), Vec::new(), h))
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if !status.is_success() || body.contains("<Error>") {
        return Err(format!("copy {key}: {status} {body}"));
    }
    // Read it back: encrypted, and the same bytes.
    let check = c
        .send(req(
            Method::HEAD,
            bucket,
            Some(key),
            Vec::new(),
            HeaderMap::new(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    if check.headers().get(crate::s3::sse::H_SSE).is_none() {
        return Err(format!(
            "{key}: still not encrypted after the copy (changed concurrently?)"
        ));
    }
    let (after, m) = plaintext_sha256(c, bucket, key).await?;
    if after != before || m != n {
        return Err(format!(
            "{key}: read-back differs from the original (sha256 {before} vs {after})"
        ));
    }
    Ok(n)
}

/// What a job does to each listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Encrypt objects sealgate did not encrypt (under the bucket/global default).
    Migrate,
    /// Re-wrap every object's data key under this KMS key (id or ARN); the store copies
    /// the bodies server-side, nothing is re-encrypted.
    Rewrap { key: String },
}

/// Encrypts every object under `prefix` in `bucket` that sealgate did not encrypt.
/// `progress` receives one line per object.
pub async fn migrate(
    t: &Target,
    bucket: &str,
    prefix: &str,
    dry_run: bool,
    progress: impl FnMut(&str),
) -> Result<Report, String> {
    run(t, &Job::Migrate, bucket, prefix, dry_run, progress).await
}

fn names_key(arn: &str, key: &str) -> bool {
    arn == key || arn.ends_with(&format!("key/{key}"))
}

/// Runs `job` over every object under `prefix` in `bucket`.
pub async fn run(
    t: &Target,
    job: &Job,
    bucket: &str,
    prefix: &str,
    dry_run: bool,
    mut progress: impl FnMut(&str),
) -> Result<Report, String> {
    let c = client(t)?;
    let keys = list_keys(&c, bucket, prefix).await?;
    let mut report = Report {
        listed: keys.len() as u64,
        ..Report::default()
    };
    let total = keys.len();
    for (i, key) in keys.iter().enumerate() {
        let head = c
            .send(req(
                Method::HEAD,
                bucket,
                Some(key),
                Vec::new(),
                HeaderMap::new(),
            ))
            .await
            .map_err(|e| e.to_string())?;
        if !head.status().is_success() {
            progress(&format!(
                "[{}/{total}] {key}: skipped (HEAD {})",
                i + 1,
                head.status()
            ));
            continue;
        }
        let current_key = head
            .headers()
            .get(crate::s3::sse::H_KEY_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let encrypted = head.headers().get(crate::s3::sse::H_SSE).is_some();
        let done = match job {
            Job::Migrate => encrypted,
            Job::Rewrap { key } => encrypted && names_key(&current_key, key),
        };
        if done {
            report.already_encrypted += 1;
            continue;
        }
        let size = head.content_length().unwrap_or(0);
        if dry_run {
            progress(&format!(
                "[{}/{total}] {key}: would encrypt ({size} bytes)",
                i + 1
            ));
            continue;
        }
        let extra = match job {
            Job::Migrate => HeaderMap::new(),
            Job::Rewrap { key: k } => {
                let mut h = HeaderMap::new();
                h.insert(
                    crate::s3::sse::H_SSE,
                    http::HeaderValue::from_static("aws:kms"),
                );
                h.insert(
                    crate::s3::sse::H_KEY_ID,
                    k.parse().map_err(|e| format!("--key: {e}"))?,
                );
                h
            }
        };
        match encrypt_one(&c, bucket, key, head.headers(), extra).await {
            Ok(n) => {
                report.encrypted += 1;
                report.bytes += n;
                progress(&format!(
                    "[{}/{total}] {key}: encrypted ({n} bytes, verified)",
                    i + 1
                ));
            }
            Err(e) => {
                report.failed += 1;
                progress(&format!(
                    "[{}/{total}] {key}: FAILED, left as it was: {e}",
                    i + 1
                ));
            }
        }
    }
    Ok(report)
}

/// Objects that still need a key, per bucket (the key-deletion impact report).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Impact {
    pub scanned: u64,
    /// (bucket, objects under the key, example keys)
    pub buckets: Vec<(String, u64, Vec<String>)>,
}

/// Scans the store directly (with the store's credentials: sealgate hides its metadata
/// from clients) for objects whose data key is wrapped under `key` (id or ARN).
pub async fn key_impact(store: &Upstream, key: &str, buckets: &[String]) -> Result<Impact, String> {
    let buckets = if buckets.is_empty() {
        let r = store
            .send(UpRequest {
                method: Method::GET,
                bucket: None,
                key: None,
                query: Vec::new(),
                headers: HeaderMap::new(),
                body: UpBody::Empty,
            })
            .await
            .map_err(|e| e.to_string())?;
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        texts(&body, &["Bucket", "Name"])?
    } else {
        buckets.to_vec()
    };
    let mut impact = Impact::default();
    for b in buckets {
        let keys = list_keys(store, &b, "").await?;
        let mut hits = 0u64;
        let mut examples = Vec::new();
        for k in keys {
            impact.scanned += 1;
            let h = store
                .send(req(
                    Method::HEAD,
                    &b,
                    Some(&k),
                    Vec::new(),
                    HeaderMap::new(),
                ))
                .await
                .map_err(|e| e.to_string())?;
            let arn = h
                .headers()
                .get("x-amz-meta-sealgate-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !arn.is_empty() && names_key(arn, key) {
                hits += 1;
                if examples.len() < 5 {
                    examples.push(k);
                }
            }
        }
        if hits > 0 {
            impact.buckets.push((b, hits, examples));
        }
    }
    Ok(impact)
}
