//! The two key caches: bucket keys for writes (bounded age and use count) and unwrapped
//! keys for reads (bounded age and entry count).
//!
//! Invariants: cache keys include the backend, the principal, the KMS key and the full
//! encryption context, so nothing is served across any of them; entries hold keys in
//! `Dek` (zeroized on drop); expired entries are never returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::CacheConfig;
use crate::crypto::stream::Dek;
use crate::kms::EncryptionContext;

/// Which bucket key: per backend, principal, requested key id and context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GenKey {
    pub backend: String,
    pub principal: String,
    pub key_id: String,
    pub context: EncryptionContext,
}

/// Which unwrapped key: per backend, principal, key, wrapped bytes and context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenKey {
    pub backend: String,
    pub principal: String,
    pub key_ref: String,
    pub wrapped: Vec<u8>,
    pub context: EncryptionContext,
}

/// A bucket key in use for new objects.
pub struct BucketKey {
    pub key: Dek,
    pub wrapped: Vec<u8>,
    pub key_ref: String,
}

struct GenEntry {
    key: Arc<BucketKey>,
    born: Instant,
    uses: u64,
}

struct OpenEntry {
    key: Arc<Dek>,
    born: Instant,
}

pub struct Caches {
    max_age: Duration,
    max_uses: u64,
    ttl: Duration,
    max_entries: usize,
    generated: Mutex<HashMap<GenKey, GenEntry>>,
    opened: Mutex<HashMap<OpenKey, OpenEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caches {
    pub fn new(cfg: &CacheConfig) -> Caches {
        Caches {
            max_age: Duration::from_secs(cfg.bucket_key_max_age_secs),
            max_uses: cfg.bucket_key_max_objects,
            ttl: Duration::from_secs(cfg.decrypt_ttl_secs),
            max_entries: cfg.decrypt_max_entries,
            generated: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// Drops every entry (the KMS's state changed: a key disabled, a policy or grant
    /// changed, here or on another instance sharing its database).
    pub fn clear(&self) {
        lock(&self.generated).clear();
        lock(&self.opened).clear();
    }

    /// The current bucket key for `k`, counting one use; `None` when there is none or it
    /// is used up or too old (it is then dropped).
    pub fn generated(&self, k: &GenKey) -> Option<Arc<BucketKey>> {
        let mut m = lock(&self.generated);
        let e = m.get_mut(k)?;
        if e.born.elapsed() >= self.max_age || e.uses >= self.max_uses {
            m.remove(k);
            return None;
        }
        e.uses += 1;
        Some(e.key.clone())
    }

    pub fn insert_generated(&self, k: GenKey, key: Arc<BucketKey>) {
        let mut m = lock(&self.generated);
        let max_age = self.max_age;
        m.retain(|_, e| e.born.elapsed() < max_age);
        m.insert(
            k,
            GenEntry {
                key,
                born: Instant::now(),
                uses: 1,
            },
        );
    }

    pub fn opened(&self, k: &OpenKey) -> Option<Arc<Dek>> {
        let mut m = lock(&self.opened);
        let e = m.get(k)?;
        if e.born.elapsed() >= self.ttl {
            m.remove(k);
            return None;
        }
        Some(e.key.clone())
    }

    pub fn insert_opened(&self, k: OpenKey, key: Arc<Dek>) {
        if self.max_entries == 0 || self.ttl.is_zero() {
            return;
        }
        let mut m = lock(&self.opened);
        if m.len() >= self.max_entries {
            let ttl = self.ttl;
            m.retain(|_, e| e.born.elapsed() < ttl);
        }
        while m.len() >= self.max_entries {
            // Drop the oldest entry.
            let Some(oldest) = m.iter().min_by_key(|(_, e)| e.born).map(|(k, _)| k.clone()) else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(
            k,
            OpenEntry {
                key,
                born: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_objects: u64, entries: usize) -> CacheConfig {
        CacheConfig {
            bucket_key_max_objects: max_objects,
            decrypt_max_entries: entries,
            ..CacheConfig::default()
        }
    }

    fn gk(principal: &str, ctx: &[(&str, &str)]) -> GenKey {
        GenKey {
            backend: "b".into(),
            principal: principal.into(),
            key_id: "k".into(),
            context: ctx
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    fn bk() -> Arc<BucketKey> {
        Arc::new(BucketKey {
            key: Dek::from_slice(&[7; 32]).unwrap(),
            wrapped: vec![1],
            key_ref: "arn".into(),
        })
    }

    #[test]
    fn a_bucket_key_serves_a_bounded_number_of_objects_for_one_principal_and_context() {
        let c = Caches::new(&cfg(3, 10));
        let k = gk("alice", &[("aws:s3:arn", "arn:aws:s3:::b")]);
        c.insert_generated(k.clone(), bk());
        assert!(c.generated(&k).is_some());
        assert!(c.generated(&k).is_some());
        assert!(c.generated(&k).is_none(), "used up after 3 objects");
        c.insert_generated(k.clone(), bk());
        assert!(
            c.generated(&gk("bob", &[("aws:s3:arn", "arn:aws:s3:::b")]))
                .is_none()
        );
        assert!(
            c.generated(&gk("alice", &[("aws:s3:arn", "arn:aws:s3:::c")]))
                .is_none()
        );
    }

    #[test]
    fn the_read_cache_is_bounded_and_keyed_by_principal() {
        let c = Caches::new(&cfg(3, 2));
        let ok = |p: &str, w: u8| OpenKey {
            backend: "b".into(),
            principal: p.into(),
            key_ref: "k".into(),
            wrapped: vec![w],
            context: Default::default(),
        };
        let d = || Arc::new(Dek::from_slice(&[1; 32]).unwrap());
        c.insert_opened(ok("alice", 1), d());
        c.insert_opened(ok("alice", 2), d());
        c.insert_opened(ok("alice", 3), d());
        assert_eq!(lock(&c.opened).len(), 2);
        assert!(c.opened(&ok("alice", 3)).is_some());
        assert!(c.opened(&ok("bob", 3)).is_none());
    }
}
