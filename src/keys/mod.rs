//! Where the S3 path's data keys come from: pluggable KMS backends — the embedded KMS
//! (in process, default), any AWS-KMS-API endpoint, and Vault/OpenBao Transit — and the
//! data-key caches. A peer of `crate::kms` (the embedded KMS is one backend among
//! others), not part of it. See `docs/design/backends.md`.
//!
//! Invariants:
//! - The S3 path obtains and unwraps data keys only through [`Backends`]; writes use the
//!   backend configured for the bucket, reads the backend recorded in the object.
//! - A backend failure is either a KMS decision ([`BackendError::Kms`], mapped to the S3
//!   error AWS gives) or [`BackendError::Unavailable`] (503); neither ever leads to a
//!   plaintext write.
//! - Caches never serve a key across backends, CMKs, encryption contexts or principals,
//!   and the read cache only holds keys the same principal unwrapped itself.

pub mod aws;
pub mod cache;
pub mod config;
pub mod embedded;
pub mod remote;
pub mod transit;

use std::collections::HashMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::crypto::stream::Dek;
use crate::kms::{EncryptionContext, KmsError};
use crate::metrics::SharedMetrics;
pub use config::{BackendConfig, CacheConfig, EMBEDDED, KmsBackendConfig, ResilienceConfig};

/// What a backend can do (reported, e.g. in logs and docs; callers don't branch on it
/// except where noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The encryption context is cryptographically bound to the wrapped key.
    pub encryption_context: bool,
    /// Keys can rotate while old wrapped keys stay decryptable.
    pub rotation: bool,
    /// Wrapped keys name the key version that wrapped them.
    pub key_versions: bool,
    /// The backend authorises sealgate's S3 callers individually (the embedded KMS) rather
    /// than sealgate's own credentials.
    pub per_caller_authorization: bool,
}

/// Who asks, for what request: the KMS's own caller type, so the embedded KMS sees the
/// S3 request's principal and call context as they are.
pub use crate::kms::Caller;

/// A fresh data key.
pub struct GeneratedKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub wrapped: Vec<u8>,
    /// The backend's reference to the key that wrapped it (ARN, `transit:mount/key`).
    pub key_ref: String,
}

/// What DescribeKey reports, in backend-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_ref: String,
    pub enabled: bool,
    /// Newest key version, where the backend has versions.
    pub latest_version: Option<u64>,
    /// Transit: whether the key derives per-context keys (required for context binding).
    pub derived: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The KMS answered with a decision (denied, disabled, not found, bad ciphertext...).
    #[error(transparent)]
    Kms(KmsError),
    /// The KMS could not answer: unreachable, timed out, 5xx, or the circuit is open.
    #[error("KMS backend unavailable: {0}")]
    Unavailable(String),
}

impl From<KmsError> for BackendError {
    fn from(e: KmsError) -> Self {
        BackendError::Kms(e)
    }
}

/// One KMS backend. Methods take the key reference as the object's metadata or the
/// request names it.
#[async_trait::async_trait]
pub trait KmsBackend: Send + Sync {
    /// The configured name (`embedded` for the in-process KMS).
    fn name(&self) -> &str;
    fn capabilities(&self) -> Capabilities;
    /// The key for writes whose request names none (SSE-S3, aws:kms without key id).
    async fn default_key(&self) -> Result<String, BackendError>;
    /// A fresh 256-bit data key, plaintext and wrapped under `key_id` with `ctx`.
    async fn generate_data_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<GeneratedKey, BackendError>;
    /// Unwraps a data key written by this backend.
    async fn decrypt_data_key(
        &self,
        who: Caller<'_>,
        key_ref: &str,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError>;
    /// Wraps an existing data key under `key_id` with `ctx` (CopyObject: the same DEK for
    /// a new object name or key). Returns (wrapped, key_ref).
    async fn wrap_data_key(
        &self,
        who: Caller<'_>,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), BackendError>;
    async fn describe_key(&self, who: Caller<'_>, key_id: &str) -> Result<KeyInfo, BackendError>;
}

/// A data key for a new object, as the S3 path records it.
pub struct ObjectKey {
    /// The object's DEK (derived from a bucket key when `bk_salt` is set).
    pub dek: Dek,
    pub wrapped: Vec<u8>,
    pub key_ref: String,
    /// `None` = the embedded KMS (nothing recorded, as before backends existed).
    pub backend: Option<String>,
    /// Bucket-key objects (format v2): the per-object salt of the DEK derivation.
    pub bk_salt: Option<[u8; 16]>,
}

/// Where a stored wrapped key came from, as the object's metadata says.
pub struct StoredKey<'a> {
    pub backend: Option<&'a str>,
    pub key_ref: &'a str,
    pub wrapped: &'a [u8],
    pub bk_salt: Option<&'a [u8; 16]>,
}

/// All configured backends, the write selection, the caches and their metrics.
pub struct Backends {
    by_name: HashMap<String, Arc<dyn KmsBackend>>,
    /// The embedded KMS, whose state generation voids cached embedded keys.
    kms: crate::kms::Kms,
    /// The generation the caches were filled under.
    cached_generation: std::sync::atomic::AtomicU64,
    default_write: String,
    buckets: HashMap<String, String>,
    cache_cfg: CacheConfig,
    cache: cache::Caches,
    metrics: SharedMetrics,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Backends")
            .field("backends", &names)
            .field("default_write", &self.default_write)
            .finish()
    }
}

/// The object-ARN context of a per-object key.
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

impl Backends {
    /// Builds every configured backend (the config must be validated).
    pub fn new(
        cfg: &KmsBackendConfig,
        kms: crate::kms::Kms,
        metrics: SharedMetrics,
    ) -> Result<Backends, String> {
        let mut by_name: HashMap<String, Arc<dyn KmsBackend>> = HashMap::new();
        by_name.insert(
            EMBEDDED.into(),
            Arc::new(embedded::Embedded::new(kms.clone())),
        );
        for (name, b) in &cfg.backends {
            let r = remote::Remote::new(name, &cfg.resilience, metrics.clone())?;
            let backend: Arc<dyn KmsBackend> = match b {
                BackendConfig::Aws(a) => Arc::new(aws::AwsKms::new(name, a, r)?),
                BackendConfig::Transit(t) => Arc::new(transit::Transit::new(name, t, r)?),
            };
            tracing::info!(backend = %name, capabilities = ?backend.capabilities(), "KMS backend configured");
            by_name.insert(name.clone(), backend);
        }
        Ok(Backends {
            cached_generation: kms.generation().into(),
            kms,
            by_name,
            default_write: cfg.default.clone(),
            buckets: cfg
                .buckets
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cache_cfg: cfg.cache.clone(),
            cache: cache::Caches::new(&cfg.cache),
            metrics,
        })
    }

    /// Readiness: every remote backend that new objects are written with answers
    /// DescribeKey for its default key (the embedded KMS is checked by its caller).
    pub async fn probe(&self, account: &str) -> Result<(), String> {
        let who = Principal {
            name: "sealgate-ready".into(),
            account: account.to_string(),
            is_root: true,
        };
        let mut names: Vec<&String> = self.buckets.values().collect();
        names.push(&self.default_write);
        names.sort();
        names.dedup();
        for name in names {
            if name == EMBEDDED {
                continue;
            }
            let Some(b) = self.by_name.get(name) else {
                continue;
            };
            let key = b
                .default_key()
                .await
                .map_err(|e| format!("kms backend {name}: {e}"))?;
            b.describe_key(Caller::in_process(&who), &key)
                .await
                .map_err(|e| format!("kms backend {name}: {e}"))?;
        }
        Ok(())
    }

    /// The backend new objects in `bucket` are written with.
    pub fn for_write(&self, bucket: &str) -> &Arc<dyn KmsBackend> {
        let name = self.buckets.get(bucket).unwrap_or(&self.default_write);
        // Names were validated against the configured backends.
        self.by_name
            .get(name)
            .unwrap_or_else(|| &self.by_name[EMBEDDED])
    }

    /// The backend an object's metadata names (`None` = embedded).
    pub fn for_read(&self, name: Option<&str>) -> Result<&Arc<dyn KmsBackend>, BackendError> {
        let name = name.unwrap_or(EMBEDDED);
        self.by_name.get(name).ok_or_else(|| {
            BackendError::Kms(KmsError::NotFound(format!(
                "the object's data key was written by the KMS backend '{name}', which is not configured"
            )))
        })
    }

    /// Whether `b`'s keys are cached. Cached embedded keys last only as long as the
    /// embedded KMS's state: any change to it (here, or by another instance sharing its
    /// database) empties the caches, so a disabled key or a revoked grant is not
    /// bypassed by a cached key.
    fn caching(&self, b: &dyn KmsBackend) -> bool {
        let on = self.cache_cfg.enabled && (b.name() != EMBEDDED || self.cache_cfg.embedded);
        if on && b.name() == EMBEDDED {
            use std::sync::atomic::Ordering;
            let now = self.kms.generation();
            if self.cached_generation.swap(now, Ordering::SeqCst) != now {
                self.cache.clear();
            }
        }
        on
    }

    fn count(&self, op: &str) {
        self.metrics.kms(op);
    }

    async fn key_or_default(
        b: &dyn KmsBackend,
        key_id: Option<&str>,
    ) -> Result<String, BackendError> {
        match key_id {
            Some(k) => Ok(k.to_string()),
            None => b.default_key().await,
        }
    }

    fn recorded(b: &dyn KmsBackend) -> Option<String> {
        (b.name() != EMBEDDED).then(|| b.name().to_string())
    }

    /// A data key for a new object `bucket/key` under `key_id` (or the backend's default),
    /// bound to `caller_ctx` + `aws:s3:arn`. With caching, the DEK is derived from a bucket
    /// key (wrapped with `aws:s3:arn = arn:aws:s3:::BUCKET`) reused for a bounded time and
    /// number of objects.
    pub async fn new_object_key(
        &self,
        who: Caller<'_>,
        bucket: &str,
        key: &str,
        key_id: Option<&str>,
        caller_ctx: &EncryptionContext,
    ) -> Result<ObjectKey, BackendError> {
        let b = self.for_write(bucket);
        let key_id = Self::key_or_default(b.as_ref(), key_id).await?;
        if !self.caching(b.as_ref()) {
            let mut ctx = caller_ctx.clone();
            ctx.insert("aws:s3:arn".into(), object_arn(bucket, key));
            self.count("GenerateDataKey");
            let g = b.generate_data_key(who, &key_id, &ctx).await?;
            let dek = dek_of(&g.plaintext)?;
            return Ok(ObjectKey {
                dek,
                wrapped: g.wrapped,
                key_ref: g.key_ref,
                backend: Self::recorded(b.as_ref()),
                bk_salt: None,
            });
        }
        let mut ctx = caller_ctx.clone();
        ctx.insert("aws:s3:arn".into(), format!("arn:aws:s3:::{bucket}"));
        let ck = cache::GenKey {
            backend: b.name().to_string(),
            principal: who.principal.arn(),
            key_id: key_id.clone(),
            context: ctx.clone(),
        };
        let bk = match self.cache.generated(&ck) {
            Some(bk) => {
                self.metrics.dek_cache("bucket_key", "hit");
                bk
            }
            None => {
                self.metrics.dek_cache("bucket_key", "miss");
                self.count("GenerateDataKey");
                let g = b.generate_data_key(who, &key_id, &ctx).await?;
                let bk = Arc::new(cache::BucketKey {
                    key: dek_of(&g.plaintext)?,
                    wrapped: g.wrapped,
                    key_ref: g.key_ref,
                });
                self.cache.insert_generated(ck, bk.clone());
                bk
            }
        };
        let salt = crate::crypto::stream::random_salt();
        Ok(ObjectKey {
            dek: derive_object_key(&bk.key, &salt, bucket, key),
            wrapped: bk.wrapped.clone(),
            key_ref: bk.key_ref.clone(),
            backend: Self::recorded(b.as_ref()),
            bk_salt: Some(salt),
        })
    }

    /// Unwraps a stored key for `bucket/key` (through the read cache) and derives the
    /// object's DEK for bucket-key objects.
    pub async fn open_object_key(
        &self,
        who: Caller<'_>,
        stored: &StoredKey<'_>,
        bucket: &str,
        key: &str,
        caller_ctx: &EncryptionContext,
    ) -> Result<Dek, BackendError> {
        let b = self.for_read(stored.backend)?;
        let mut ctx = caller_ctx.clone();
        let arn = match stored.bk_salt {
            Some(_) => format!("arn:aws:s3:::{bucket}"),
            None => object_arn(bucket, key),
        };
        ctx.insert("aws:s3:arn".into(), arn);
        let caching = self.caching(b.as_ref());
        let ck = cache::OpenKey {
            backend: b.name().to_string(),
            principal: who.principal.arn(),
            key_ref: stored.key_ref.to_string(),
            wrapped: stored.wrapped.to_vec(),
            context: ctx.clone(),
        };
        let cached = if caching {
            self.cache.opened(&ck)
        } else {
            None
        };
        let unwrapped = match cached {
            Some(k) => {
                self.metrics.dek_cache("decrypt", "hit");
                k
            }
            None => {
                if caching {
                    self.metrics.dek_cache("decrypt", "miss");
                }
                self.count("Decrypt");
                let p = b
                    .decrypt_data_key(who, stored.key_ref, stored.wrapped, &ctx)
                    .await?;
                let k = Arc::new(dek_of(&p)?);
                if caching {
                    self.cache.insert_opened(ck, k.clone());
                }
                k
            }
        };
        Ok(match stored.bk_salt {
            Some(salt) => derive_object_key(&unwrapped, salt, bucket, key),
            None => Dek::from_slice(unwrapped.bytes()).ok_or_else(wrong_len)?,
        })
    }

    /// Wraps an existing DEK for `bucket/key` (CopyObject re-wrap): always a per-object
    /// wrap (format v1), since a copied body keeps its DEK.
    pub async fn wrap_object_key(
        &self,
        who: Caller<'_>,
        bucket: &str,
        key: &str,
        key_id: Option<&str>,
        caller_ctx: &EncryptionContext,
        dek: &Dek,
    ) -> Result<(Vec<u8>, String, Option<String>), BackendError> {
        let b = self.for_write(bucket);
        let key_id = Self::key_or_default(b.as_ref(), key_id).await?;
        let mut ctx = caller_ctx.clone();
        ctx.insert("aws:s3:arn".into(), object_arn(bucket, key));
        self.count("Encrypt");
        let (wrapped, key_ref) = b.wrap_data_key(who, &key_id, dek.bytes(), &ctx).await?;
        Ok((wrapped, key_ref, Self::recorded(b.as_ref())))
    }
}

fn wrong_len() -> BackendError {
    BackendError::Kms(KmsError::Internal(
        "the KMS returned a data key of the wrong length".into(),
    ))
}

fn dek_of(p: &[u8]) -> Result<Dek, BackendError> {
    Dek::from_slice(p).ok_or_else(wrong_len)
}

/// The DEK of object `bucket/key` under a bucket key (format v2, `docs/format.md`):
/// `HKDF-SHA256(salt = per-object salt, ikm = bucket key,
///  info = "sealgate v2 object key" || 0x00 || "arn:aws:s3:::BUCKET/KEY")`.
/// The object name in `info` makes an object moved to another name undecryptable.
pub fn derive_object_key(bucket_key: &Dek, salt: &[u8; 16], bucket: &str, key: &str) -> Dek {
    use aws_lc_rs::hkdf;
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let arn = object_arn(bucket, key);
    let info: [&[u8]; 3] = [
        crate::crypto::format::BUCKET_KEY_DERIVE_INFO,
        b"\0",
        arn.as_bytes(),
    ];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(bucket_key.bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    // Expanding 32 bytes from SHA-256 cannot fail.
    prk.expand(&info, Len)
        .and_then(|okm| okm.fill(&mut out[..]))
        .expect("HKDF-SHA256 expand of 32 bytes");
    Dek::from_slice(&out[..]).expect("32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_from_a_bucket_key_differ_per_name_and_salt_and_match_the_vector() {
        let bk = Dek::from_slice(&(0u8..32).collect::<Vec<_>>()).unwrap();
        let salt: [u8; 16] = std::array::from_fn(|i| 0xa0 + i as u8);
        let k = derive_object_key(&bk, &salt, "bucket", "dir/object");
        // docs/format.md golden vector (cross-checked with Python `cryptography`).
        assert_eq!(
            hex::encode(k.bytes()),
            "b646fe83de6f87e05b1ee7df063c99d4638b53a72afabf8a9d1b89f87146bc98"
        );
        assert_ne!(
            derive_object_key(&bk, &salt, "bucket", "dir/other").bytes(),
            k.bytes()
        );
        assert_ne!(
            derive_object_key(&bk, &[0; 16], "bucket", "dir/object").bytes(),
            k.bytes()
        );
    }
}
