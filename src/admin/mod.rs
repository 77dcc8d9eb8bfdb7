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
use crate::object::paging::{self, Pager};
use crate::upstream::{UpBody, UpRequest, Upstream};
use crate::xml::texts;

mod impact;
pub use impact::{Impact, key_impact};

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
    /// Versioned buckets: versions this run replaced that remain as noncurrent versions
    /// (still plaintext, or under the old key), and those it deleted
    /// (`Scope::delete_replaced`).
    pub replaced_kept: u64,
    pub replaced_deleted: u64,
    /// Noncurrent versions the job did not cover and that still need it (plaintext, or
    /// not under the key): S3 versions cannot be rewritten, only deleted.
    pub noncurrent_remaining: u64,
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

/// One page of a listing of `bucket` (all buckets when `None`): its body, or `None` when
/// the store does not implement the listing (501); `what` names it in errors.
async fn list_page(
    c: &Upstream,
    bucket: Option<&str>,
    query: Vec<(String, String)>,
    what: &str,
) -> Result<Option<bytes::Bytes>, String> {
    let r = c
        .send(UpRequest {
            method: Method::GET,
            bucket: bucket.map(str::to_string),
            key: None,
            query,
            headers: HeaderMap::new(),
            body: UpBody::Empty,
        })
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if status == http::StatusCode::NOT_IMPLEMENTED {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!(
            "{what}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(Some(body))
}

/// Lists `(key, size)` under `prefix`, after `start_after` when given.
async fn list_objects(
    c: &Upstream,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<Vec<(String, u64)>, String> {
    let mut objects = Vec::new();
    let what = format!("listing {bucket}");
    let base = [
        ("list-type".to_string(), "2".to_string()),
        ("prefix".to_string(), prefix.to_string()),
    ];
    let mut pages = Pager::new(paging::OBJECTS_V2);
    while let Some(mut q) = pages.next_query(&base) {
        if let Some(s) = start_after.filter(|_| pages.first()) {
            q.push(("start-after".to_string(), s.to_string()));
        }
        let body = list_page(c, Some(bucket), q, &what)
            .await?
            .ok_or_else(|| format!("{what}: the store does not implement ListObjectsV2"))?;
        let keys = texts(&body, &["Contents", "Key"])?;
        let sizes = texts(&body, &["Contents", "Size"])?;
        if keys.len() != sizes.len() {
            return Err(format!("{what}: entries without a Size"));
        }
        for (k, n) in keys.into_iter().zip(sizes) {
            let n = n.parse().map_err(|_| format!("{what}: bad Size {n}"))?;
            objects.push((k, n));
        }
        pages.read(&body)?;
    }
    Ok(objects)
}

/// HEAD of one object (any status; transport failures are errors).
async fn head_object(
    c: &Upstream,
    bucket: &str,
    key: &str,
) -> Result<crate::upstream::UpResponse, String> {
    c.send(req(
        Method::HEAD,
        bucket,
        Some(key),
        Vec::new(),
        HeaderMap::new(),
    ))
    .await
    .map_err(|e| e.to_string())
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

/// Encrypts one plaintext object in place; returns its size and, in a versioned bucket,
/// the new version's id.
async fn encrypt_one(
    c: &Upstream,
    bucket: &str,
    key: &str,
    head: &HeaderMap,
    extra: HeaderMap,
) -> Result<(u64, Option<String>), String> {
    let (before, n) = plaintext_sha256(c, bucket, key).await?;
    let mut h = extra;
    for (k, v) in &crate::s3::forward::descriptive_headers(head) {
        h.append(k.clone(), v.clone());
    }
    let src = crate::object::ObjectRef::new(bucket, key).copy_source_header();
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
    let new_version = version_id(r.headers());
    let body = r.text().await.unwrap_or_default();
    if !status.is_success() || body.contains("<Error>") {
        return Err(format!("copy {key}: {status} {body}"));
    }
    // Read it back: encrypted, and the same bytes.
    let check = head_object(c, bucket, key).await?;
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
    Ok((n, new_version))
}

/// `x-amz-version-id` of a response.
fn version_id(h: &HeaderMap) -> Option<String> {
    h.get("x-amz-version-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Deletes one version of an object through sealgate.
async fn delete_version(
    c: &Upstream,
    bucket: &str,
    key: &str,
    version: &str,
) -> Result<(), String> {
    let r = c
        .send(req(
            Method::DELETE,
            bucket,
            Some(key),
            vec![("versionId".to_string(), version.to_string())],
            HeaderMap::new(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("DELETE {key}?versionId={version}: {}", r.status()))
    }
}

/// Noncurrent versions under `prefix`: (key, version id, size). Empty for a store or
/// bucket without versioning (the listing answers no noncurrent versions, or is
/// refused as not implemented).
async fn noncurrent_versions(
    c: &Upstream,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, String, u64)>, String> {
    let mut out = Vec::new();
    let what = format!("listing versions of {bucket}");
    let base = [
        ("versions".to_string(), String::new()),
        ("prefix".to_string(), prefix.to_string()),
    ];
    let mut pages = Pager::new(paging::VERSIONS);
    while let Some(q) = pages.next_query(&base) {
        let Some(body) = list_page(c, Some(bucket), q, &what).await? else {
            return Ok(out);
        };
        let keys = texts(&body, &["Version", "Key"])?;
        let ids = texts(&body, &["Version", "VersionId"])?;
        let latest = texts(&body, &["Version", "IsLatest"])?;
        let sizes = texts(&body, &["Version", "Size"])?;
        if keys.len() != ids.len() || keys.len() != latest.len() || keys.len() != sizes.len() {
            return Err(format!("{what}: incomplete entries"));
        }
        for (((k, v), l), n) in keys.into_iter().zip(ids).zip(latest).zip(sizes) {
            if l != "true" {
                out.push((k, v, n.parse().unwrap_or(0)));
            }
        }
        pages.read(&body)?;
    }
    Ok(out)
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

/// Which objects a job goes over.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub bucket: String,
    pub prefix: String,
    /// Resume: only keys after this one (as printed by an interrupted run).
    pub start_after: Option<String>,
    /// Report what would be done; change nothing.
    pub dry_run: bool,
    /// Versioned buckets: delete the version each replaced object was read from, once
    /// its replacement is verified (else it stays as a noncurrent version).
    pub delete_replaced: bool,
}

/// Where a job reports what it does.
pub trait Progress {
    /// The listing is done: `objects` to look at, `bytes` in all.
    fn start(&mut self, objects: u64, bytes: u64) {
        let _ = (objects, bytes);
    }
    /// One object looked at (`bytes` of the total); `line` says what happened, or is
    /// `None` when there was nothing to do.
    fn object(&mut self, line: Option<&str>, bytes: u64);
    /// The job is over.
    fn finish(&mut self) {}
}

/// Any `FnMut(&str)` takes the lines (tests, plain logs).
impl<F: FnMut(&str)> Progress for F {
    fn object(&mut self, line: Option<&str>, _bytes: u64) {
        if let Some(l) = line {
            self(l)
        }
    }
}

/// A progress bar on stderr (objects, bytes, rate, time left) with the per-object lines
/// on stdout. When stderr is not a terminal the bar is not drawn, so logs and pipes get
/// only the lines.
pub struct TermProgress {
    bar: indicatif::ProgressBar,
    objects_done: u64,
    objects_total: u64,
}

impl TermProgress {
    pub fn new(what: &str) -> TermProgress {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {msg} objects, {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        TermProgress {
            bar,
            objects_done: 0,
            objects_total: 0,
        }
    }
}

impl Progress for TermProgress {
    fn start(&mut self, objects: u64, bytes: u64) {
        self.objects_total = objects;
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{objects}"));
    }
    fn object(&mut self, line: Option<&str>, bytes: u64) {
        if let Some(l) = line {
            // Printed above the bar (or plainly when it is hidden).
            self.bar.suspend(|| println!("{l}"));
        }
        self.objects_done += 1;
        self.bar
            .set_message(format!("{}/{}", self.objects_done, self.objects_total));
        self.bar.inc(bytes);
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn names_key(arn: &str, key: &str) -> bool {
    arn == key || arn.ends_with(&format!("key/{key}"))
}

/// Runs `job` over every object in `scope`. Objects are handled in key order, so an
/// interrupted run can be resumed with `start_after` = the last key it reported (or
/// simply re-run: objects already done are skipped).
pub async fn run(
    t: &Target,
    job: &Job,
    scope: &Scope,
    progress: &mut (dyn Progress + Send),
) -> Result<Report, String> {
    let c = client(t)?;
    let bucket = scope.bucket.as_str();
    let objects = list_objects(&c, bucket, &scope.prefix, scope.start_after.as_deref()).await?;
    let mut report = Report {
        listed: objects.len() as u64,
        ..Report::default()
    };
    progress.start(report.listed, objects.iter().map(|(_, n)| *n).sum());
    let total = objects.len();
    for (i, (key, listed_size)) in objects.iter().enumerate() {
        let head = head_object(&c, bucket, key).await?;
        if !head.status().is_success() {
            progress.object(
                Some(&format!(
                    "[{}/{total}] {key}: skipped (HEAD {}{})",
                    i + 1,
                    head.status(),
                    if head.status() == http::StatusCode::FORBIDDEN && matches!(job, Job::Migrate) {
                        ": sealgate reads objects it did not encrypt only where \
                         encryption.plaintext_reads allows it; add this bucket or prefix \
                         there for the migration"
                    } else if head.status() == http::StatusCode::BAD_REQUEST {
                        ": an SSE-C object (or another object a HEAD without encryption \
                         headers cannot read): its data key is wrapped under its owner's \
                         key, which sealgate never holds; only a client with that key can \
                         re-encrypt it, by copying it onto itself"
                    } else {
                        ""
                    }
                )),
                *listed_size,
            );
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
            progress.object(None, *listed_size);
            continue;
        }
        let size = head.content_length().unwrap_or(0);
        let (verb, did) = match job {
            Job::Migrate => ("encrypt", "encrypted"),
            Job::Rewrap { .. } => ("re-wrap", "re-wrapped"),
        };
        if scope.dry_run {
            progress.object(
                Some(&format!(
                    "[{}/{total}] {key}: would {verb} ({size} bytes)",
                    i + 1
                )),
                *listed_size,
            );
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
        let replaced = version_id(head.headers());
        let line = match encrypt_one(&c, bucket, key, head.headers(), extra).await {
            Ok((n, new_version)) => {
                report.encrypted += 1;
                report.bytes += n;
                let mut line = format!("[{}/{total}] {key}: {did} ({n} bytes, verified)", i + 1);
                // In a versioned bucket the version read stays behind as a noncurrent
                // one. ("null" in a bucket with versioning suspended was overwritten.)
                if let Some(old) = replaced
                    .filter(|v| v != "null" && Some(v) != new_version.as_ref())
                    .filter(|_| new_version.is_some())
                {
                    if scope.delete_replaced {
                        match delete_version(&c, bucket, key, &old).await {
                            Ok(()) => {
                                report.replaced_deleted += 1;
                                line.push_str(&format!(
                                    "; the version it replaced ({old}) deleted"
                                ));
                            }
                            Err(e) => {
                                report.replaced_kept += 1;
                                line.push_str(&format!(
                                    "; deleting the version it replaced ({old}) FAILED: {e}"
                                ));
                            }
                        }
                    } else {
                        report.replaced_kept += 1;
                        line.push_str(&format!(
                            "; the version it replaced ({old}) remains as a noncurrent version \
                             (--delete-replaced-versions deletes it)"
                        ));
                    }
                }
                line
            }
            Err(e) => {
                report.failed += 1;
                format!("[{}/{total}] {key}: FAILED, left as it was: {e}", i + 1)
            }
        };
        progress.object(Some(&line), *listed_size);
    }
    // Noncurrent versions that still need the job (older history, or versions kept
    // above): reported, since S3 versions cannot be rewritten.
    if scope.start_after.is_none() {
        for (key, version, size) in noncurrent_versions(&c, bucket, &scope.prefix).await? {
            let r = c
                .send(req(
                    Method::HEAD,
                    bucket,
                    Some(&key),
                    vec![("versionId".to_string(), version.clone())],
                    HeaderMap::new(),
                ))
                .await
                .map_err(|e| e.to_string())?;
            let under = r
                .headers()
                .get(crate::s3::sse::H_KEY_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let encrypted =
                r.status().is_success() && r.headers().get(crate::s3::sse::H_SSE).is_some();
            let fine = match job {
                Job::Migrate => encrypted,
                Job::Rewrap { key: k } => encrypted && names_key(under, k),
            };
            if !fine {
                report.noncurrent_remaining += 1;
                progress.object(
                    Some(&format!(
                        "{key} (noncurrent version {version}, {size} bytes): {} — S3 versions \
                         cannot be rewritten; delete it when no longer needed",
                        match job {
                            Job::Migrate => "not encrypted",
                            Job::Rewrap { .. } => "not under the key",
                        }
                    )),
                    0,
                );
            }
        }
    }
    progress.finish();
    Ok(report)
}
