//! The KMS service: keys in memory (an `RwLock`ed map of immutable `Arc<KeyEntry>`
//! snapshots) backed by redb. Reads and cryptographic operations never touch the
//! database; every mutation holds the single writer lock, commits one transaction, then
//! swaps the new snapshot in. Every key operation goes through `key_for` (`gate.rs`),
//! which resolves the key, calls the one policy hook (`authorize`: key policy, then
//! grants) and checks the one state table.
//!
//! Files: this one holds the in-memory state and opening; `gate.rs` resolution and the
//! policy hook; `writes.rs` the transactions every mutation goes through; the
//! operations by family in `keys.rs`, `rotation.rs`, `aliases.rs`, `crypto_ops.rs`,
//! `asym_ops.rs`, `policy_ops.rs`, `grant_ops.rs`, `import_ops.rs`, `multi_region.rs`;
//! `audit_ops.rs` the audit plumbing of in-process calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use super::asym::KeyMaterial;
use super::audit::AuditLog;
use super::clock::{Clock, millis};
use super::constraints::{self, Paging};
use super::crypto::{BackingKey, RootKey};
use super::grants::Grant;
use super::model::{AliasRecord, KeyManager, KeyRecord, display_key_id};
use super::policy::{Policy, default_policy_text, service_policy_text};
use super::store::{Loaded, Mutation, Store};
use super::usage::KeyUsage;
use super::{KmsConfig, KmsError};

mod aliases;
mod asym_ops;
mod audit_ops;
mod crypto_ops;
mod gate;
mod grant_ops;
mod import_ops;
mod key_store_ops;
mod keys;
mod multi_region;
mod policy_ops;
mod quota;
mod rotation;
mod settings;
mod writes;

pub use aliases::AliasEntry;
pub use crypto_ops::ReEncryptParams;
pub use import_ops::MaterialExpiry;
pub use key_store_ops::{CustomKeyStoreInfo, CustomKeyStoreUpdate, NewCustomKeyStore};
pub use keys::CreateKeyOptions;
pub use multi_region::{Replica, ReplicaOptions};
pub use rotation::{RotationEntry, RotationStatus};

/// A key as held in memory: its record, ARN, unsealed backing keys by version, parsed
/// key policy, grants and usage counters.
#[derive(Debug)]
pub struct KeyEntry {
    pub rec: KeyRecord,
    pub arn: String,
    material: HashMap<u32, Arc<KeyMaterial>>,
    policy: Arc<Policy>,
    grants: Arc<Vec<Grant>>,
    usage: Arc<KeyUsage>,
}

impl KeyEntry {
    /// A new snapshot with `rec` (and the policy parsed from it), same material/grants.
    fn with_record(&self, rec: KeyRecord, policy: Arc<Policy>) -> Arc<KeyEntry> {
        Arc::new(KeyEntry {
            rec,
            arn: self.arn.clone(),
            material: self.material.clone(),
            policy,
            grants: self.grants.clone(),
            usage: self.usage.clone(),
        })
    }

    fn with_grants(&self, grants: Vec<Grant>) -> Arc<KeyEntry> {
        Arc::new(KeyEntry {
            rec: self.rec.clone(),
            arn: self.arn.clone(),
            material: self.material.clone(),
            policy: self.policy.clone(),
            grants: Arc::new(grants),
            usage: self.usage.clone(),
        })
    }

    fn with_material(&self, rec: KeyRecord, material: HashMap<u32, Arc<KeyMaterial>>) -> Arc<Self> {
        Arc::new(KeyEntry {
            rec,
            arn: self.arn.clone(),
            material,
            policy: self.policy.clone(),
            grants: self.grants.clone(),
            usage: self.usage.clone(),
        })
    }

    /// The AES key that encrypts now (InvalidKeyUsage for other key specs).
    fn current(&self) -> Result<(u32, &BackingKey), KmsError> {
        let (v, m) = self.current_material()?;
        Ok((v, m.aes(self.rec.key_spec)?))
    }

    fn current_material(&self) -> Result<(u32, &KeyMaterial), KmsError> {
        let v = self
            .rec
            .current_version()
            .ok_or_else(|| KmsError::InvalidState(format!("{} has no key material.", self.arn)))?;
        let k = self
            .material
            .get(&v)
            .ok_or_else(|| KmsError::Internal(format!("material of {} v{v} missing", self.arn)))?;
        Ok((v, k))
    }
}

/// The keys and aliases of one region.
#[derive(Default)]
struct State {
    keys: HashMap<Uuid, Arc<KeyEntry>>,
    aliases: BTreeMap<String, AliasRecord>,
}

/// Every region's `State`, by region name.
type Regions = HashMap<String, State>;

static EMPTY_STATE: std::sync::LazyLock<State> = std::sync::LazyLock::new(State::default);

/// Read access to the state of one region (a view's).
struct RegionRead<'a> {
    all: RwLockReadGuard<'a, Regions>,
    region: &'a str,
}

impl std::ops::Deref for RegionRead<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.all.get(self.region).unwrap_or(&EMPTY_STATE)
    }
}

/// Write access to the state of one region.
struct RegionWrite<'a> {
    all: RwLockWriteGuard<'a, Regions>,
    region: &'a str,
}

impl std::ops::Deref for RegionWrite<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.all.get(self.region).unwrap_or(&EMPTY_STATE)
    }
}

impl std::ops::DerefMut for RegionWrite<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.all.entry(self.region.to_string()).or_default()
    }
}

pub(crate) struct Inner {
    /// The home region: the S3 front's, and where records without a region live.
    region: String,
    /// Every region the KMS API serves (the home region first).
    regions: Vec<String>,
    account: String,
    clock: Arc<dyn Clock>,
    root: RootKey,
    store: Store,
    state: RwLock<Regions>,
    /// Serialises mutations (one writer; readers never wait on the database).
    writer: Mutex<()>,
    /// The default key policy of this account, parsed once.
    default_policy: Arc<Policy>,
    /// `kms:ViaService` of calls through the S3 front: `s3.<region>.amazonaws.com`.
    via_s3: String,
    /// The hash-chained audit log (None when disabled in the config).
    audit: Option<AuditLog>,
    /// Key quotas and per-principal rates (`quota.rs`).
    limits: quota::Limits,
    /// Settings of the rest of sealgate kept in the database (`settings.rs`).
    settings: RwLock<BTreeMap<String, Vec<u8>>>,
    /// Writes and reloads so far (`Kms::generation`).
    changes: std::sync::atomic::AtomicU64,
    /// The audit chain's last record may be signed with the previous root key (see
    /// `note_root_key_rotation`).
    audit_tail_previous: std::sync::atomic::AtomicBool,
    /// Custom key stores and this instance's connections to their tokens.
    key_stores: Arc<super::key_stores::KeyStores>,
}

/// Proof that the writer lock is held: this process's, and with a shared store the
/// cluster's (a transaction holding the revision row, rolled back on drop unless a
/// change committed).
pub(super) struct WriteGuard<'a> {
    _lock: MutexGuard<'a, ()>,
    store: &'a Store,
    generation: &'a std::sync::atomic::AtomicU64,
}

thread_local! {
    /// This thread holds a `WriteGuard` (the writer lock is not reentrant).
    static HOLDS_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        HOLDS_WRITER.set(false);
        self.store.end_write();
        // Whatever the change was, what was decided before it may no longer hold.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The embedded KMS, seen from one region (`Kms::in_region`; `open` gives the home
/// region). Cheap to clone; all clones and views share one key store.
#[derive(Clone)]
pub struct Kms {
    inner: Arc<Inner>,
    /// The region this view's operations act in (keys, aliases and ARNs are regional).
    region: Arc<str>,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("region", &self.region)
            .field("account", &self.inner.account)
            .finish_non_exhaustive()
    }
}

/// A page of results plus the marker of the next page (None when complete).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

fn poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

/// Pages `items` (sorted by their sort key) after `marker`, as the List operation's
/// `paging` says (Limit range and default, opaque markers: `constraints::page`).
fn paginate<T>(
    items: impl Iterator<Item = (String, T)>,
    paging: Paging,
    limit: Option<i64>,
    marker: Option<&str>,
) -> Result<Page<T>, KmsError> {
    let (items, next_marker) = constraints::page(items, paging, limit, marker)?;
    Ok(Page { items, next_marker })
}

enum KeyRef {
    Id(Uuid),
    /// `mrk-` + 32 hex digits: a multi-Region key.
    Mrk(Uuid),
    Alias(String),
}

/// A key id: a UUID or `mrk-` + 32 lowercase hex digits.
fn parse_key_id(s: &str) -> Option<KeyRef> {
    if let Some(hex) = s.strip_prefix("mrk-") {
        let ok = hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        return ok.then(|| Uuid::parse_str(hex).ok().map(KeyRef::Mrk))?;
    }
    Uuid::parse_str(s).ok().map(KeyRef::Id)
}

impl Kms {
    pub(crate) fn from_parts(
        cfg: &KmsConfig,
        clock: Arc<dyn Clock>,
        root: RootKey,
    ) -> Result<Kms, KmsError> {
        let (store, loaded) = Store::open(cfg, &root)?;
        let default_policy = Arc::new(
            Policy::parse(&default_policy_text(&cfg.account)).map_err(KmsError::Internal)?,
        );
        let regions = cfg.served_regions();
        let key_stores = super::key_stores::KeyStores::new(cfg.hsm_clusters.clone());
        let (state, settings) = Builder {
            region: &cfg.region,
            account: &cfg.account,
            regions: &regions,
            root: &root,
            default_policy: &default_policy,
            key_stores: &key_stores,
        }
        .build(loaded, None)?;
        key_stores.sync(&settings);
        let audit = if cfg.audit_enabled {
            Some(AuditLog::open(
                &cfg.audit_path(),
                cfg.audit_fsync,
                &cfg.region,
                &cfg.account,
                super::audit::audit_mac_key(&root),
            )?)
        } else {
            None
        };
        let audit_tail_previous = audit.as_ref().is_some_and(AuditLog::tail_under_previous)
            || root.seals_under_previous();
        let kms = Kms {
            region: Arc::from(cfg.region.as_str()),
            inner: Arc::new(Inner {
                region: cfg.region.clone(),
                regions,
                account: cfg.account.clone(),
                clock,
                root,
                store,
                state: RwLock::new(state),
                writer: Mutex::new(()),
                default_policy,
                via_s3: format!("s3.{}.amazonaws.com", cfg.region),
                audit,
                limits: quota::Limits::new(cfg),
                settings: RwLock::new(settings),
                changes: std::sync::atomic::AtomicU64::new(0),
                audit_tail_previous: std::sync::atomic::AtomicBool::new(audit_tail_previous),
                key_stores,
            }),
        };
        kms.note_root_key_rotation();
        if let Some(shared) = kms.inner.store.shared() {
            let weak = Arc::downgrade(&kms.inner);
            let region = kms.region.clone();
            shared.watch(move |changed| {
                let inner = weak.upgrade()?;
                let kms = Kms {
                    inner,
                    region: region.clone(),
                };
                Some(if changed { kms.refresh() } else { Ok(()) })
            });
            if cfg.audit_enabled {
                let weak = Arc::downgrade(&kms.inner);
                shared.ship_audit(cfg.audit_path(), move || weak.strong_count() > 0);
            }
        }
        Ok(kms)
    }

    /// Takes in what another instance changed in the shared store, if anything (the
    /// store's watcher calls this; local changes are in memory already).
    fn refresh(&self) -> Result<(), KmsError> {
        let _g = self.inner.writer.lock().unwrap_or_else(poisoned);
        self.refresh_locked().map(|_| ())
    }

    /// As `refresh` (waiting for a change in progress on another thread), unless this
    /// thread holds the writer lock: then the state is the store's latest already.
    /// Whether the state changed.
    fn refresh_unless_writing(&self) -> Result<bool, KmsError> {
        if self.inner.store.shared().is_none() || HOLDS_WRITER.get() {
            return Ok(false);
        }
        let _g = self.inner.writer.lock().unwrap_or_else(poisoned);
        self.refresh_locked()
    }

    /// Caller holds the writer lock.
    fn refresh_locked(&self) -> Result<bool, KmsError> {
        let Some(shared) = self.inner.store.shared() else {
            return Ok(false);
        };
        match shared.refresh()? {
            Some(loaded) => {
                self.install_loaded(loaded)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Replaces the in-memory state with `loaded` (the store's current contents), keeping
    /// unsealed material and usage counters of the keys that remain. Caller holds the
    /// writer lock.
    fn install_loaded(&self, loaded: Loaded) -> Result<(), KmsError> {
        let inner = &self.inner;
        let (state, settings) = {
            let prev = inner.state.read().unwrap_or_else(poisoned);
            Builder {
                region: &inner.region,
                account: &inner.account,
                regions: &inner.regions,
                root: &inner.root,
                default_policy: &inner.default_policy,
                key_stores: &inner.key_stores,
            }
            .build(loaded, Some(&prev))?
        };
        inner.key_stores.sync(&settings);
        *inner.state.write().unwrap_or_else(poisoned) = state;
        *inner.settings.write().unwrap_or_else(poisoned) = settings;
        inner
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.note_root_key_rotation();
        Ok(())
    }

    /// Around a root-key rotation: while the database is sealed under the previous root
    /// key, so is this instance's audit chain; once it is under the new key, one record
    /// marks the switch (docs/design/root-key-rotation.md).
    fn note_root_key_rotation(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let inner = &self.inner;
        if inner.root.seals_under_previous() {
            inner.audit_tail_previous.store(true, SeqCst);
        } else if inner.audit_tail_previous.swap(false, SeqCst) {
            self.audit_root_key_rotated();
        }
    }

    /// Changes on every change of the KMS's state (a write here, or a reload of what
    /// another instance wrote): a cache of what the KMS decided (unwrapped data keys) is
    /// void once this changes.
    pub fn generation(&self) -> u64 {
        self.inner.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether this instance runs the KMS's scheduled work (`tick`): always with the
    /// embedded store; with a shared one, only the holder of the maintenance lease.
    pub fn runs_maintenance(&self) -> bool {
        self.inner.store.shared().is_none_or(|s| s.holds_lease())
    }

    /// With a shared store: fails unless the state in memory was confirmed current
    /// within the staleness bound (key operations never use older state).
    pub fn check_fresh(&self) -> Result<(), KmsError> {
        match self.inner.store.shared() {
            Some(s) => s.check_fresh(),
            None => Ok(()),
        }
    }

    fn now_ms(&self) -> i64 {
        millis(self.inner.clock.now())
    }

    /// Current time from the injected clock.
    pub fn now(&self) -> std::time::SystemTime {
        self.inner.clock.now()
    }

    /// The region of this view.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Every region the KMS serves (`kms.regions`; the home region first).
    pub fn regions(&self) -> &[String] {
        &self.inner.regions
    }

    /// The same KMS seen from `region` (a KMS API request's SigV4 credential scope).
    pub fn in_region(&self, region: &str) -> Result<Kms, KmsError> {
        if !self.inner.regions.iter().any(|r| r == region) {
            return Err(KmsError::UnsupportedOperation(format!(
                "Region '{region}' is not served by this KMS (it serves {}; see kms.regions).",
                self.inner.regions.join(", ")
            )));
        }
        Ok(Kms {
            inner: self.inner.clone(),
            region: Arc::from(region),
        })
    }

    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// Readiness: the database can be read. Reads only (never creates a key), so
    /// `/ready` probes do not write.
    pub fn health(&self) -> Result<(), KmsError> {
        self.inner.store.check_readable()
    }

    /// Number of stored material versions of a key (0 once destroyed); for tests/ops.
    pub fn stored_material_versions(&self, key_id: &Uuid) -> Result<usize, KmsError> {
        self.inner.store.material_count(*key_id)
    }

    /// The ARN of key `id` in this view's region (`mrk-` form for a multi-Region key).
    pub fn key_arn(&self, id: &Uuid) -> String {
        let mrk = self
            .state()
            .keys
            .get(id)
            .is_some_and(|e| e.rec.multi_region.is_some());
        key_arn(&self.region, &self.inner.account, &display_key_id(id, mrk))
    }

    fn alias_arn(&self, name: &str) -> String {
        format!("arn:aws:kms:{}:{}:{name}", self.region, self.inner.account)
    }

    /// The region a record lives in.
    fn region_of<'a>(&'a self, rec: &'a KeyRecord) -> &'a str {
        rec.region.as_deref().unwrap_or(&self.inner.region)
    }

    /// This view's region when it is not the home region (`KeyRecord::region` of the
    /// keys created here; where the store keeps their records and aliases).
    fn other_region(&self) -> Option<&str> {
        (*self.region != *self.inner.region).then_some(&*self.region)
    }

    fn put_alias_mutation<'a>(&'a self, name: &'a str, rec: &'a AliasRecord) -> Mutation<'a> {
        match self.other_region() {
            None => Mutation::PutAlias(name, rec),
            Some(r) => Mutation::PutRegionAlias(r, name, rec),
        }
    }

    fn delete_alias_mutation<'a>(&'a self, name: &'a str) -> Mutation<'a> {
        match self.other_region() {
            None => Mutation::DeleteAlias(name),
            Some(r) => Mutation::DeleteRegionAlias(r, name),
        }
    }

    fn state(&self) -> RegionRead<'_> {
        RegionRead {
            all: self.inner.state.read().unwrap_or_else(poisoned),
            region: &self.region,
        }
    }

    fn state_mut(&self) -> RegionWrite<'_> {
        RegionWrite {
            all: self.inner.state.write().unwrap_or_else(poisoned),
            region: &self.region,
        }
    }

    /// Takes the writer lock; with a shared store also the cluster's, after which the
    /// state in memory is the store's latest (reloaded if another instance changed it).
    fn lock_writer(&self) -> Result<WriteGuard<'_>, KmsError> {
        let g = WriteGuard {
            _lock: self.inner.writer.lock().unwrap_or_else(poisoned),
            store: &self.inner.store,
            generation: &self.inner.changes,
        };
        HOLDS_WRITER.set(true);
        if let Some(loaded) = self.inner.store.begin_write()? {
            self.install_loaded(loaded)?;
        }
        Ok(g)
    }
}

/// `arn:aws:kms:REGION:ACCOUNT:key/KEY-ID` (`key_id` as displayed: UUID or `mrk-...`).
fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

/// The parsed policy of a record: its own document, or (records from before key
/// policies) the default policy, or the S3 service policy for service-managed keys.
fn policy_of(
    rec: &KeyRecord,
    account: &str,
    region: &str,
    default: &Arc<Policy>,
) -> Result<Arc<Policy>, KmsError> {
    let text = match (&rec.policy, rec.manager) {
        (Some(t), _) => t.clone(),
        (None, KeyManager::Aws) => service_policy_text(account, "s3", region),
        (None, KeyManager::Customer) => return Ok(default.clone()),
    };
    Policy::parse(&text)
        .map(Arc::new)
        .map_err(|e| KmsError::Internal(format!("stored policy of {} is invalid: {e}", rec.id)))
}

/// What building the in-memory state from stored rows needs.
struct Builder<'a> {
    region: &'a str,
    account: &'a str,
    regions: &'a [String],
    root: &'a RootKey,
    default_policy: &'a Arc<Policy>,
    key_stores: &'a Arc<super::key_stores::KeyStores>,
}

impl Builder<'_> {
    /// The state and settings `loaded` describes. Material already unsealed in `prev`
    /// (same key, same version: material never changes) and usage counters are kept.
    fn build(
        &self,
        loaded: Loaded,
        prev: Option<&Regions>,
    ) -> Result<(Regions, BTreeMap<String, Vec<u8>>), KmsError> {
        let mut grants: HashMap<(Option<String>, Uuid), Vec<Grant>> = HashMap::new();
        for g in loaded.grants {
            grants
                .entry((g.region.clone(), g.key_id))
                .or_default()
                .push(g);
        }
        let mut state: Regions = self
            .regions
            .iter()
            .map(|r| (r.clone(), State::default()))
            .collect();
        for (rec, mats) in loaded.keys {
            let region = rec
                .region
                .clone()
                .unwrap_or_else(|| self.region.to_string());
            let before = prev.and_then(|p| p.get(&region)?.keys.get(&rec.id));
            let mut material = HashMap::new();
            if let Some(store) = &rec.custom_key_store_id {
                // The material is the token's: only its label is known here.
                let label = rec.id.to_string();
                for v in &rec.versions {
                    let m = key_store_ops::hsm_material(self.key_stores, store, &label);
                    material.insert(v.version, m);
                }
            }
            for (v, sealed) in mats {
                if let Some(m) = before.and_then(|b| b.material.get(&v)) {
                    material.insert(v, m.clone());
                    continue;
                }
                let raw = self.root.open_raw(&rec.id, v, &sealed)?;
                material.insert(
                    v,
                    Arc::new(KeyMaterial::from_raw(rec.key_spec, rec.key_usage, &raw)?),
                );
            }
            let arn = key_arn(&region, self.account, &rec.key_id());
            let policy = policy_of(&rec, self.account, self.region, self.default_policy)?;
            let grants = grants.remove(&(rec.region.clone(), rec.id));
            let grants = Arc::new(grants.unwrap_or_default());
            let usage = before.map(|b| b.usage.clone()).unwrap_or_default();
            let e = KeyEntry {
                rec,
                arn,
                material,
                policy,
                grants,
                usage,
            };
            let st = state.entry(region).or_default();
            st.keys.insert(e.rec.id, Arc::new(e));
        }
        for (region, name, alias) in loaded.aliases {
            let region = region.unwrap_or_else(|| self.region.to_string());
            state.entry(region).or_default().aliases.insert(name, alias);
        }
        Ok((state, loaded.settings.into_iter().collect()))
    }
}
