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
use crate::upstream::{UpBody, UpRequest, Upstream};
use crate::xml::texts;

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

/// Lists `(key, size)` under `prefix`, after `start_after` when given.
async fn list_objects(
    c: &Upstream,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<Vec<(String, u64)>, String> {
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![
            ("list-type".to_string(), "2".to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        if let Some(t) = &token {
            q.push(("continuation-token".to_string(), t.clone()));
        } else if let Some(s) = start_after {
            q.push(("start-after".to_string(), s.to_string()));
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
        let keys = texts(&body, &["Contents", "Key"])?;
        let sizes = texts(&body, &["Contents", "Size"])?;
        if keys.len() != sizes.len() {
            return Err(format!("listing {bucket}: entries without a Size"));
        }
        for (k, n) in keys.into_iter().zip(sizes) {
            let n = n
                .parse()
                .map_err(|_| format!("listing {bucket}: bad Size {n}"))?;
            objects.push((k, n));
        }
        token = texts(&body, &["NextContinuationToken"])?.into_iter().next();
        if token.is_none() {
            return Ok(objects);
        }
    }
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

/// Which objects a job goes over.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub bucket: String,
    pub prefix: String,
    /// Resume: only keys after this one (as printed by an interrupted run).
    pub start_after: Option<String>,
    /// Report what would be done; change nothing.
    pub dry_run: bool,
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
        let line = match encrypt_one(&c, bucket, key, head.headers(), extra).await {
            Ok(n) => {
                report.encrypted += 1;
                report.bytes += n;
                format!("[{}/{total}] {key}: {did} ({n} bytes, verified)", i + 1)
            }
            Err(e) => {
                report.failed += 1;
                format!("[{}/{total}] {key}: FAILED, left as it was: {e}", i + 1)
            }
        };
        progress.object(Some(&line), *listed_size);
    }
    progress.finish();
    Ok(report)
}

/// Objects that still need a key, per bucket (the key-deletion impact report).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Impact {
    pub scanned: u64,
    /// (bucket, objects under the key, example keys)
    pub buckets: Vec<(String, u64, Vec<String>)>,
}

/// How many HEADs the impact scan keeps in flight.
const SCAN_CONCURRENCY: usize = 16;

/// Scans the store directly (with the store's credentials: sealgate hides its metadata
/// from clients) for objects whose data key is wrapped under `key` (id or ARN), in
/// `buckets` (all the store's buckets when empty) minus `skip`.
pub async fn key_impact(
    store: &Upstream,
    key: &str,
    buckets: &[String],
    skip: &[String],
    progress: &mut (dyn Progress + Send),
) -> Result<Impact, String> {
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
        let status = r.status();
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "listing buckets: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        texts(&body, &["Bucket", "Name"])?
    } else {
        buckets.to_vec()
    };
    let mut listed = Vec::new();
    for b in buckets.into_iter().filter(|b| !skip.contains(b)) {
        let objects = list_objects(store, &b, "", None).await?;
        listed.push((b, objects));
    }
    progress.start(
        listed.iter().map(|(_, o)| o.len() as u64).sum(),
        listed.iter().flat_map(|(_, o)| o.iter().map(|x| x.1)).sum(),
    );
    let mut impact = Impact::default();
    for (b, objects) in listed {
        let mut hits = 0u64;
        let mut examples = Vec::new();
        let mut heads = futures::stream::iter(objects.into_iter().map(|(k, n)| {
            let b = &b;
            async move {
                let h = head_object(store, b, &k).await?;
                let arn = h
                    .headers()
                    .get(crate::crypto::format::meta::KEY)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                Ok::<_, String>((k, n, arn))
            }
        }))
        .buffered(SCAN_CONCURRENCY);
        while let Some(r) = heads.next().await {
            let (k, n, arn) = r?;
            impact.scanned += 1;
            progress.object(None, n);
            if !arn.is_empty() && names_key(&arn, key) {
                hits += 1;
                if examples.len() < 5 {
                    examples.push(k);
                }
            }
        }
        drop(heads);
        if hits > 0 {
            impact.buckets.push((b, hits, examples));
        }
    }
    progress.finish();
    Ok(impact)
}

impl Impact {
    /// Objects found under the key, in all buckets.
    pub fn objects(&self) -> u64 {
        self.buckets.iter().map(|b| b.1).sum()
    }

    /// `bucket: n (e.g. k1, k2)` per bucket, `; `-separated.
    pub fn summary(&self) -> String {
        self.buckets
            .iter()
            .map(|(b, n, ex)| format!("{b}: {n} (e.g. {})", ex.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
