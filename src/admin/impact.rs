//! The key-deletion impact report: which objects (every version) in the store still
//! need a KMS key. Shared by `sealgate kms impact` and ScheduleKeyDeletion's warning.

use futures::StreamExt;
use http::{HeaderMap, Method};

use super::{Progress, list_objects, names_key, noncurrent_versions, req};
use crate::upstream::Upstream;
use crate::xml::texts;

/// Objects that still need a key, per bucket (the key-deletion impact report).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Impact {
    pub scanned: u64,
    /// (bucket, objects under the key, example keys)
    pub buckets: Vec<(String, u64, Vec<String>)>,
}

/// A listed object version: key, stored size, version id (None: the current version).
type Listed = (String, u64, Option<String>);

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
        let body = super::list_page(store, None, Vec::new(), "listing buckets")
            .await?
            .ok_or("listing buckets: the store does not implement ListBuckets")?;
        texts(&body, &["Bucket", "Name"])?
    } else {
        buckets.to_vec()
    };
    // Every version: current objects, and noncurrent versions where the bucket keeps
    // them (they become unreadable with the key too).
    let mut listed: Vec<(String, Vec<Listed>)> = Vec::new();
    for b in buckets.into_iter().filter(|b| !skip.contains(b)) {
        let mut objects: Vec<Listed> = list_objects(store, &b, "", None)
            .await?
            .into_iter()
            .map(|(k, n)| (k, n, None))
            .collect();
        for (k, v, n) in noncurrent_versions(store, &b, "").await? {
            objects.push((k, n, Some(v)));
        }
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
        let mut heads = futures::stream::iter(objects.into_iter().map(|(k, n, version)| {
            let b = &b;
            async move {
                let query = version
                    .iter()
                    .map(|v| ("versionId".to_string(), v.clone()))
                    .collect();
                let h = store
                    .send(req(Method::HEAD, b, Some(&k), query, HeaderMap::new()))
                    .await
                    .map_err(|e| e.to_string())?;
                let k = match version {
                    Some(v) => format!("{k} (noncurrent version {v})"),
                    None => k,
                };
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
