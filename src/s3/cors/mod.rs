//! CORS: sealgate answers preflight `OPTIONS` requests itself and adds CORS headers to
//! the responses of cross-origin requests, from the bucket's CORS configuration (research
//! spec §4). The configuration is the store's (Put/Get/DeleteBucketCors pass through);
//! sealgate reads it with its own store credentials and keeps it briefly ([`Cors`]).
//!
//! Invariants:
//! - A preflight is answered from the configuration alone: nothing of the request reaches
//!   the store, and the answer is headers only (never the configuration or any object
//!   data), so `OPTIONS` grants nothing; the actual request is authenticated as always.
//! - A configuration is served from the cache for at most [`TTL`] (a change made through
//!   this instance is seen at once, one made elsewhere within `TTL`); at most
//!   [`CAPACITY`] buckets are kept and at most [`LOOKUPS`] store reads are in flight, so
//!   unauthenticated preflights for made-up buckets cost bounded store work.
//! - A configuration that cannot be read (store down, unparsable) allows nothing.

pub mod rules;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Response, StatusCode};
use s3s::Body;

use crate::upstream::{UpBody, UpRequest, Upstream};
use rules::{Ask, Config};

/// How long a bucket's configuration (or its absence) is served from the cache.
pub const TTL: Duration = Duration::from_secs(5);

/// How many buckets' configurations are cached.
pub const CAPACITY: usize = 1024;

/// How many configuration reads may be in flight at once.
pub const LOOKUPS: usize = 16;

/// Longest configuration document read from the store (100 rules fit in far less).
const MAX_DOC: usize = 256 * 1024;

/// What the store says about a bucket's CORS.
#[derive(Debug, Clone)]
pub enum Lookup {
    NoBucket,
    NoConfig,
    Rules(Arc<Config>),
}

/// The per-instance cache of bucket CORS configurations.
pub struct Cors {
    cache: Mutex<lru::LruCache<String, (Instant, Lookup)>>,
    lookups: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Cors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cors").finish_non_exhaustive()
    }
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
            lookups: tokio::sync::Semaphore::new(LOOKUPS),
        }
    }
}

/// Whether `b` can be a bucket name at all (anything else is not looked up).
fn plausible_bucket(b: &str) -> bool {
    (1..=255).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

impl Cors {
    /// Drops what is cached for `bucket` (after a Put/DeleteBucketCors through sealgate).
    pub fn forget(&self, bucket: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.pop(bucket);
        }
    }

    fn cached(&self, bucket: &str) -> Option<Lookup> {
        let mut c = self.cache.lock().ok()?;
        match c.get(bucket) {
            Some((at, l)) if at.elapsed() < TTL => Some(l.clone()),
            _ => None,
        }
    }

    /// The bucket's configuration, from the cache or the store. `Err`: the store could
    /// not say (nothing is cached then).
    pub async fn lookup(&self, store: &Upstream, bucket: &str) -> Result<Lookup, String> {
        if !plausible_bucket(bucket) {
            return Ok(Lookup::NoBucket);
        }
        if let Some(l) = self.cached(bucket) {
            return Ok(l);
        }
        let _permit = self.lookups.acquire().await.map_err(|e| e.to_string())?;
        // Another request may have read it while this one waited.
        if let Some(l) = self.cached(bucket) {
            return Ok(l);
        }
        let resp = store
            .send(UpRequest {
                method: Method::GET,
                bucket: Some(bucket.to_string()),
                key: None,
                query: vec![("cors".into(), String::new())],
                headers: HeaderMap::new(),
                body: UpBody::Empty,
            })
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let doc = resp.bytes_limited(MAX_DOC).await?;
        let lookup = if status.is_success() {
            Lookup::Rules(Arc::new(Config::from_xml(&doc)?))
        } else {
            let code = crate::xml::error_code(&String::from_utf8_lossy(&doc)).unwrap_or_default();
            match (status, code.as_str()) {
                (StatusCode::NOT_FOUND, "NoSuchBucket") => Lookup::NoBucket,
                (StatusCode::NOT_FOUND, _) => Lookup::NoConfig,
                _ => {
                    return Err(format!(
                        "the store answered GetBucketCors with {status} {code}"
                    ));
                }
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            c.put(bucket.to_string(), (Instant::now(), lookup.clone()));
        }
        Ok(lookup)
    }
}

/// The methods a preflight may ask about.
const METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "DELETE"];

const NOT_ALLOWED: &str = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.";

/// A preflight refusal: `<Error>` with the method asked about and the resource type.
fn refusal(
    status: StatusCode,
    code: &str,
    message: &str,
    method_and_type: Option<(&str, &str)>,
    request_id: &str,
) -> Response<Body> {
    let extras = match method_and_type {
        Some((m, t)) => vec![("Method", m), ("ResourceType", t)],
        None => Vec::new(),
    };
    crate::error::xml_response(status, code, message, &extras, request_id)
}

/// Answers a preflight `OPTIONS` for `bucket` (`None`: the service URL) and `key`
/// (research spec §4.1, in AWS's order of checks).
pub async fn preflight(
    cors: &Cors,
    store: &Upstream,
    state_bucket: &str,
    headers: &HeaderMap,
    bucket: Option<&str>,
    key: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    let Some(ask) = Ask::of("OPTIONS", headers) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
            None,
            request_id,
        );
    };
    let asked_method = headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    let method_shown = asked_method.clone().unwrap_or_else(|| "OPTIONS".into());
    let forbidden = |message: &str, resource: &str| {
        refusal(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            message,
            Some((&method_shown, resource)),
            request_id,
        )
    };
    let lookup = match bucket {
        None => Ok(Lookup::NoBucket),
        Some(b) if b.eq_ignore_ascii_case(state_bucket) => Ok(Lookup::NoConfig),
        Some(b) => cors.lookup(store, b).await,
    };
    let config = match lookup {
        Ok(Lookup::NoBucket) => return forbidden("CORSResponse: Bucket not found", "BUCKET"),
        Ok(Lookup::NoConfig) => {
            return forbidden(
                "CORSResponse: CORS is not enabled for this bucket.",
                "BUCKET",
            );
        }
        Ok(Lookup::Rules(c)) => c,
        Err(e) => {
            tracing::warn!(error = %e, "reading the bucket's CORS configuration failed");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "sealgate could not read the bucket's CORS configuration; retry.",
                None,
                request_id,
            );
        }
    };
    if !asked_method
        .as_deref()
        .is_some_and(|m| METHODS.contains(&m))
    {
        let shown = asked_method.as_deref().unwrap_or("null");
        return refusal(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid Access-Control-Request-Method: {shown}"),
            None,
            request_id,
        );
    }
    let resource = if key.is_some() { "OBJECT" } else { "BUCKET" };
    let Some(rule) = config.matching(&ask) else {
        return forbidden(NOT_ALLOWED, resource);
    };
    let mut r = Response::new(Body::empty());
    *r.headers_mut() = rule.response_headers(&ask);
    r
}

/// Adds the CORS headers of a matching rule to the response of an actual (non-OPTIONS)
/// request on `bucket`: nothing when it has no `Origin`, the bucket has no configuration
/// or no rule matches (research spec §4.4). Errors get them too, so that a page can read
/// why its request failed.
pub async fn decorate(
    cors: &Cors,
    store: &Upstream,
    method: &Method,
    headers: &HeaderMap,
    bucket: &str,
    resp: &mut Response<Body>,
) {
    let Some(ask) = Ask::of(method.as_str(), headers) else {
        return;
    };
    let config = match cors.lookup(store, bucket).await {
        Ok(Lookup::Rules(c)) => c,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the bucket's CORS configuration failed");
            return;
        }
    };
    if let Some(rule) = config.matching(&ask) {
        for (k, v) in &rule.response_headers(&ask) {
            if k == http::header::VARY {
                // Whatever else the response varies on still holds.
                resp.headers_mut().append(k, v.clone());
            } else {
                resp.headers_mut().insert(k, v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_bucket_names_are_looked_up() {
        for ok in ["b", "my-bucket.1", "Legacy_Bucket"] {
            assert!(plausible_bucket(ok), "{ok}");
        }
        for bad in ["", "a/b", "a?cors", "a b", "é", &"x".repeat(256)] {
            assert!(!plausible_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn cached_entries_expire_and_can_be_forgotten() {
        let c = Cors::default();
        c.cache
            .lock()
            .unwrap()
            .put("b".into(), (Instant::now(), Lookup::NoConfig));
        assert!(matches!(c.cached("b"), Some(Lookup::NoConfig)));
        c.forget("b");
        assert!(c.cached("b").is_none());
        let old = Instant::now() - TTL - Duration::from_millis(1);
        c.cache
            .lock()
            .unwrap()
            .put("b".into(), (old, Lookup::NoConfig));
        assert!(c.cached("b").is_none());
    }
}
