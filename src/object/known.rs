//! What sealgate already knows about stored object versions: plaintext size,
//! client-visible ETag and client checksum by (bucket, key, the store's ETag). A store ETag names one
//! immutable version of an object's stored bytes and metadata, so an entry never goes
//! stale; it only ages out (a bounded LRU). Writes and reads fill it, so listings of
//! objects this instance wrote or read need no request per object.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// What a listing needs about one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Plaintext size.
    pub size: u64,
    /// The ETag clients see (quoted), or `None` to keep the store's.
    pub etag: Option<String>,
    /// The client checksum kept after the object's last segment, once read (or written
    /// here): a GET with checksum mode then needs no extra read for it.
    pub checksum: Option<super::checksum::Served>,
}

/// (bucket, key, store ETag) → [`Known`], least recently used evicted first.
#[derive(Debug)]
pub struct KnownObjects(Mutex<LruCache<(String, String, String), Known>>);

impl KnownObjects {
    pub fn new(entries: usize) -> KnownObjects {
        let cap = NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        KnownObjects(Mutex::new(LruCache::new(cap)))
    }

    pub fn get(&self, bucket: &str, key: &str, store_etag: &str) -> Option<Known> {
        let mut g = self.0.lock().ok()?;
        g.get(&(bucket.to_string(), key.to_string(), store_etag.to_string()))
            .cloned()
    }

    pub fn put(&self, bucket: &str, key: &str, store_etag: &str, known: Known) {
        if store_etag.is_empty() {
            return;
        }
        if let Ok(mut g) = self.0.lock() {
            g.put(
                (bucket.to_string(), key.to_string(), store_etag.to_string()),
                known,
            );
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for KnownObjects {
    fn default() -> Self {
        Self::new(200_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_keeps_the_recently_used() {
        let c = KnownObjects::new(2);
        let k = |s| Known {
            size: s,
            etag: None,
            checksum: None,
        };
        c.put("b", "a", "\"1\"", k(1));
        c.put("b", "b", "\"2\"", k(2));
        assert_eq!(c.get("b", "a", "\"1\""), Some(k(1)));
        c.put("b", "c", "\"3\"", k(3));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get("b", "b", "\"2\""),
            None,
            "least recently used went first"
        );
        assert_eq!(c.get("b", "a", "\"1\""), Some(k(1)));
        assert_eq!(
            c.get("b", "a", "\"other\""),
            None,
            "another version is another entry"
        );
    }
}
