//! The KMS itself: keys in memory (an `RwLock`ed map of immutable `Arc<KeyEntry>`
//! snapshots) backed by redb. Reads and cryptographic operations never touch the
//! database; every mutation holds the single writer lock, commits one transaction, then
//! swaps the new snapshot in. Every key operation goes through `key_for`, which resolves
//! the key, calls the one policy hook (`authorize`: key policy, then grants) and checks
//! the one state table. Key policies, grants, explain and audit helpers live in
//! `core/access_ops.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::access::{CallContext, Via, ambient, decide};
use super::asym::{self, KeyMaterial, KeySpec, KeyUsageType};
use super::audit::{AuditLog, CryptoParams, Params};
use super::clock::{Clock, DAY_MS, millis};
use super::crypto::{self, BackingKey, MAX_PLAINTEXT, RootKey};
use super::grants::Grant;
use super::model::{
    AliasRecord, KeyManager, KeyMetadata, KeyRecord, KeyState, MultiRegionRole, Op, Origin,
    RotationType, VersionInfo, check_state, display_key_id,
};
use super::policy::{Policy, RequestFacts, default_policy_text, service_policy_text};
use super::store::{Mutation, Store};
use super::usage::KeyUsage;
use super::{DataKey, Decrypted, EncryptionContext, KmsConfig, KmsError};
use crate::auth::Principal;

pub const MIN_ROTATION_DAYS: i64 = 90;
pub const MAX_ROTATION_DAYS: i64 = 2560;
pub const DEFAULT_ROTATION_DAYS: u32 = 365;
pub const MAX_ON_DEMAND_ROTATIONS: usize = 10;

mod access_ops;
mod asym_ops;
pub use asym_ops::ReEncryptParams;
mod import_ops;
mod multi_region;

pub use import_ops::MaterialExpiry;
pub use multi_region::{Replica, ReplicaOptions};

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
}

/// Proof that the writer lock is held.
type WriteGuard<'a> = MutexGuard<'a, ()>;

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

/// What `CreateKey` accepts beyond defaults.
#[derive(Debug, Clone, Default)]
pub struct CreateKeyOptions {
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// `EXTERNAL` creates a key in PendingImport without material.
    pub external: bool,
    /// Key policy document; `None` = the default policy (account has full access).
    pub policy: Option<String>,
    /// Skip the check that the policy still lets the creator call PutKeyPolicy.
    pub bypass_policy_lockout_safety_check: bool,
    /// SYMMETRIC_DEFAULT (default), RSA, ECC or HMAC.
    pub key_spec: KeySpec,
    /// Must be one `key_spec` supports (ENCRYPT_DECRYPT by default).
    pub key_usage: KeyUsageType,
    /// A multi-Region primary key (`mrk-` id) that ReplicateKey can copy to other regions.
    pub multi_region: bool,
}

/// `GetKeyRotationStatus` result.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationStatus {
    pub enabled: bool,
    pub key_arn: String,
    pub period_days: Option<u32>,
    pub next_rotation_ms: Option<i64>,
}

/// One entry of `ListKeyRotations` / `ListAliases` pages.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationEntry {
    pub key_id: String,
    pub rotation_ms: i64,
    pub on_demand: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AliasEntry {
    pub name: String,
    pub arn: String,
    pub target: Option<String>,
    pub created_ms: Option<i64>,
    pub updated_ms: Option<i64>,
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

/// Pages `items` (already sorted by marker) after `marker`, at most `limit`.
fn paginate<T>(
    items: impl Iterator<Item = (String, T)>,
    limit: Option<i64>,
    marker: Option<&str>,
) -> Result<Page<T>, KmsError> {
    let limit = match limit {
        None => 100,
        Some(l) if (1..=1000).contains(&l) => l as usize,
        Some(l) => {
            return Err(KmsError::constraint(
                l,
                "limit",
                "Member must have value between 1 and 1000",
            ));
        }
    };
    let start: usize = match marker {
        None => 0,
        Some(m) => m
            .parse()
            .map_err(|_| KmsError::InvalidMarker(format!("Marker '{m}' is not valid.")))?,
    };
    let mut out: Vec<T> = items.skip(start).take(limit + 1).map(|(_, t)| t).collect();
    let next_marker = (out.len() > limit).then(|| {
        out.truncate(limit);
        (start + limit).to_string()
    });
    Ok(Page {
        items: out,
        next_marker,
    })
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

fn validate_tag(k: &str, v: &str) -> Result<(), KmsError> {
    if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
        return Err(KmsError::Tag(format!(
            "Tag key must be 1-128 characters and value 0-256 characters (key '{k}')."
        )));
    }
    if k.starts_with("aws:") {
        return Err(KmsError::Tag(format!(
            "Tag keys starting with 'aws:' are reserved (key '{k}')."
        )));
    }
    Ok(())
}

fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    let rest = name.strip_prefix("alias/").ok_or_else(|| {
        KmsError::Validation(format!(
            "Alias must start with the prefix \"alias/\": {name}"
        ))
    })?;
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
    {
        return Err(KmsError::constraint(
            name,
            "aliasName",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::NotAuthorized(format!(
            "The alias prefix alias/aws/ is reserved for AWS managed keys: {name}"
        )));
    }
    Ok(())
}

fn validate_description(d: &str) -> Result<(), KmsError> {
    if d.chars().count() > 8192 {
        return Err(KmsError::constraint(
            "<description>",
            "description",
            "Member must have length less than or equal to 8192",
        ));
    }
    Ok(())
}

impl Kms {
    pub(crate) fn from_parts(
        cfg: &KmsConfig,
        clock: Arc<dyn Clock>,
        root: RootKey,
    ) -> Result<Kms, KmsError> {
        let (store, loaded) = Store::open(&cfg.db_path, &root)?;
        let default_policy = Arc::new(
            Policy::parse(&default_policy_text(&cfg.account)).map_err(KmsError::Internal)?,
        );
        let mut grants: HashMap<(Option<String>, Uuid), Vec<Grant>> = HashMap::new();
        for g in loaded.grants {
            grants
                .entry((g.region.clone(), g.key_id))
                .or_default()
                .push(g);
        }
        let regions = cfg.served_regions();
        let mut state: Regions = regions
            .iter()
            .map(|r| (r.clone(), State::default()))
            .collect();
        for (rec, mats) in loaded.keys {
            let mut material = HashMap::new();
            for (v, sealed) in mats {
                let raw = root.open_raw(&rec.id, v, &sealed)?;
                material.insert(v, Arc::new(KeyMaterial::from_raw(rec.key_spec, &raw)?));
            }
            let region = rec.region.clone().unwrap_or_else(|| cfg.region.clone());
            let arn = key_arn(&region, &cfg.account, &rec.key_id());
            let policy = policy_of(&rec, &cfg.account, &cfg.region, &default_policy)?;
            let grants = grants.remove(&(rec.region.clone(), rec.id));
            let grants = Arc::new(grants.unwrap_or_default());
            let usage = Arc::default();
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
            let region = region.unwrap_or_else(|| cfg.region.clone());
            state.entry(region).or_default().aliases.insert(name, alias);
        }
        let audit = if cfg.audit_enabled {
            Some(AuditLog::open(
                &cfg.audit_path(),
                cfg.audit_fsync,
                &cfg.region,
                &cfg.account,
            )?)
        } else {
            None
        };
        Ok(Kms {
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
            }),
        })
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

    fn lock_writer(&self) -> WriteGuard<'_> {
        self.inner.writer.lock().unwrap_or_else(poisoned)
    }

    // ---------------------------------------------------------------- policy hook

    /// THE access-control hook: every operation on a key calls this exactly once per key.
    /// The key policy decides (explicit Deny wins, then Allow); with no decision, a grant
    /// on the key may allow; otherwise AccessDeniedException naming principal, action
    /// and key.
    pub fn authorize(
        &self,
        caller: &Principal,
        action: &str,
        key: &KeyEntry,
        context: Option<&EncryptionContext>,
        call: &CallContext,
    ) -> Result<(), KmsError> {
        let facts = self.facts(caller, action, key, context, call);
        let d = decide(&key.policy, &key.grants, &facts);
        if d.allowed() {
            Ok(())
        } else {
            Err(d.denial(&facts, &key.policy))
        }
    }

    /// The request facts policy conditions see.
    fn facts<'a>(
        &'a self,
        caller: &'a Principal,
        action: &'a str,
        key: &'a KeyEntry,
        context: Option<&'a EncryptionContext>,
        call: &CallContext,
    ) -> RequestFacts<'a> {
        RequestFacts {
            encryption_context: context,
            via_service: (call.via == Via::S3).then_some(self.inner.via_s3.as_str()),
            source_ip: call.source_ip,
            tags: Some(&key.rec.tags),
            ..RequestFacts::new(caller, action, &key.arn)
        }
    }

    /// Account-level check for operations without a key (CreateKey, ListKeys, ...).
    fn authorize_account(&self, caller: &Principal, action: &str) -> Result<(), KmsError> {
        if caller.account != self.inner.account {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} in account {}",
                caller.arn(),
                self.inner.account
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- resolution

    fn parse_key_ref(&self, s: &str, allow_alias: bool) -> Result<KeyRef, KmsError> {
        if s.is_empty() || s.len() > 2048 {
            return Err(KmsError::constraint(
                s,
                "keyId",
                "Member must have length between 1 and 2048",
            ));
        }
        let not_found = || KmsError::NotFound(format!("Invalid keyId '{s}'"));
        let alias = |name: &str| {
            if allow_alias {
                Ok(KeyRef::Alias(name.to_string()))
            } else {
                Err(KmsError::NotFound(format!(
                    "'{s}' is an alias; this operation needs a key id or key ARN."
                )))
            }
        };
        if s.starts_with("alias/") {
            return alias(s);
        }
        if let Some(rest) = s.strip_prefix("arn:aws:kms:") {
            let mut parts = rest.splitn(3, ':');
            let (region, account, resource) = match (parts.next(), parts.next(), parts.next()) {
                (Some(r), Some(a), Some(res)) => (r, a, res),
                _ => return Err(not_found()),
            };
            if region != &*self.region || account != self.inner.account {
                return Err(KmsError::NotFound(format!(
                    "Key '{s}' does not exist in region {} account {}.",
                    self.region, self.inner.account
                )));
            }
            if resource.starts_with("alias/") {
                return alias(resource);
            }
            let id = resource.strip_prefix("key/").ok_or_else(not_found)?;
            return parse_key_id(id).ok_or_else(not_found);
        }
        parse_key_id(s).ok_or_else(not_found)
    }

    /// Finds a key (no maintenance, no checks).
    fn find(&self, s: &str, allow_alias: bool) -> Result<Arc<KeyEntry>, KmsError> {
        let r = self.parse_key_ref(s, allow_alias)?;
        let st = self.state();
        let (id, mrk) = match r {
            KeyRef::Id(id) => (id, false),
            KeyRef::Mrk(id) => (id, true),
            KeyRef::Alias(name) => (
                st.aliases
                    .get(&name)
                    .ok_or_else(|| {
                        KmsError::NotFound(format!("Alias {} is not found.", self.alias_arn(&name)))
                    })?
                    .target,
                false,
            ),
        };
        // An `mrk-` reference names only a multi-Region key (the UUID spelling of the
        // same 128 bits is what blobs and grant tokens carry, so it finds both).
        st.keys
            .get(&id)
            .filter(|e| !mrk || e.rec.multi_region.is_some())
            .cloned()
            .ok_or_else(|| {
                let arn = key_arn(&self.region, &self.inner.account, &display_key_id(&id, mrk));
                KmsError::NotFound(format!("Key '{arn}' does not exist"))
            })
    }

    /// Applies due maintenance to a key found by `find`: an expired PendingDeletion key is
    /// destroyed (and reported NotFound); a key due for automatic rotation is rotated.
    fn maintain(
        &self,
        e: Arc<KeyEntry>,
        held: Option<&WriteGuard<'_>>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        if !e.rec.deletion_due(now) && !e.rec.rotation_due(now) && !e.rec.material_expiry_due(now) {
            return Ok(e);
        }
        let own;
        let guard = match held {
            Some(g) => g,
            None => {
                own = self.lock_writer();
                &own
            }
        };
        // Re-read under the writer lock: another thread may have done it already.
        let e = self.find(&e.rec.id.to_string(), false)?;
        if e.rec.deletion_due(now) && !self.waits_for_replicas(&e.rec) {
            self.destroy_locked(guard, e.rec.id)?;
            return Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                e.arn
            )));
        }
        if e.rec.material_expiry_due(now) {
            return self.drop_material_locked(guard, &e);
        }
        if e.rec.rotation_due(now) {
            return self.rotate_locked(guard, &e, RotationType::Automatic);
        }
        Ok(e)
    }

    /// Resolve + policy hook + state table: the gate of every key operation. Counts the
    /// use when it passes.
    #[allow(clippy::too_many_arguments)]
    fn key_for(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        op: Op,
        allow_alias: bool,
        ctx: Option<&EncryptionContext>,
        held: Option<&WriteGuard<'_>>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        for t in &call.grant_tokens {
            super::grants::parse_token(t)?;
        }
        let e = self.maintain(self.find(key_id, allow_alias)?, held)?;
        self.authorize(caller, op.action(), &e, ctx, call)?;
        check_state(&e.rec, &e.arn, op)?;
        asym::check_usage(&e.rec, &e.arn, op)?;
        e.usage.count(op, self.now_ms());
        Ok(e)
    }

    /// The parsed policy for a record (its own, or the default for old records).
    fn policy_for(&self, rec: &KeyRecord) -> Result<Arc<Policy>, KmsError> {
        policy_of(
            rec,
            &self.inner.account,
            &self.inner.region,
            &self.inner.default_policy,
        )
    }

    /// A new snapshot of `e` with record `rec` (re-parsing the policy only if it changed).
    fn rebuild(&self, e: &KeyEntry, rec: KeyRecord) -> Result<Arc<KeyEntry>, KmsError> {
        let policy = if rec.policy == e.rec.policy {
            e.policy.clone()
        } else {
            self.policy_for(&rec)?
        };
        Ok(e.with_record(rec, policy))
    }

    // ---------------------------------------------------------------- writes

    /// Swaps a new snapshot of a key in (in the key's own region).
    fn install(&self, entry: Arc<KeyEntry>) {
        let region = self.region_of(&entry.rec).to_string();
        let mut all = self.inner.state.write().unwrap_or_else(poisoned);
        all.entry(region)
            .or_default()
            .keys
            .insert(entry.rec.id, entry);
    }

    /// Read-modify-write of one key record in one transaction.
    fn mutate(
        &self,
        caller: &Principal,
        key_id: &str,
        op: Op,
        f: impl FnOnce(&mut KeyRecord, i64) -> Result<(), KmsError>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let g = self.lock_writer();
        let e = self.key_for(caller, &ambient(), key_id, op, false, None, Some(&g))?;
        let mut rec = e.rec.clone();
        f(&mut rec, self.now_ms())?;
        let new = self.rebuild(&e, rec)?;
        self.inner.store.apply(&[Mutation::PutKey(&new.rec)])?;
        self.install(new.clone());
        Ok(new)
    }

    fn rotate_locked(
        &self,
        _g: &WriteGuard<'_>,
        e: &KeyEntry,
        kind: RotationType,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        let mut rec = e.rec.clone();
        let version = rec.current_version().unwrap_or(0) + 1;
        let (key, raw) = KeyMaterial::generate(rec.key_spec)?;
        let sealed = self.inner.root.seal_material(&rec.id, version, &raw)?;
        drop(raw);
        rec.versions.push(VersionInfo {
            version,
            created_ms: now,
            kind,
        });
        if kind == RotationType::Automatic {
            let period = i64::from(rec.rotation_period_days.unwrap_or(DEFAULT_ROTATION_DAYS));
            rec.next_rotation_ms = Some(now + period * DAY_MS);
        }
        // Every copy of a multi-Region key gets the new version in the same transaction.
        let copies = self.copies_elsewhere(rec.id);
        let copy_recs: Vec<KeyRecord> = copies
            .iter()
            .map(|c| {
                let mut r = c.rec.clone();
                r.versions.push(VersionInfo {
                    version,
                    created_ms: now,
                    kind,
                });
                r
            })
            .collect();
        let mut muts = vec![
            Mutation::PutKey(&rec),
            Mutation::PutMaterial {
                id: rec.id,
                version,
                sealed: &sealed,
            },
        ];
        muts.extend(copy_recs.iter().map(Mutation::PutKey));
        self.inner.store.apply(&muts)?;
        drop(muts);
        let key = Arc::new(key);
        for (c, r) in copies.iter().zip(copy_recs) {
            let mut material = c.material.clone();
            material.insert(version, key.clone());
            self.install(c.with_material(r, material));
        }
        let mut material = e.material.clone();
        material.insert(version, key);
        let new = e.with_material(rec, material);
        self.install(new.clone());
        tracing::info!(key_id = %new.rec.id, version, ?kind, "KMS key rotated");
        Ok(new)
    }

    /// Destroys a key, its material and its aliases for good.
    fn destroy_locked(&self, _g: &WriteGuard<'_>, id: Uuid) -> Result<(), KmsError> {
        let aliases: Vec<String> = {
            let st = self.state();
            st.aliases
                .iter()
                .filter(|(_, a)| a.target == id)
                .map(|(n, _)| n.clone())
                .collect()
        };
        // Copies of a multi-Region key in other regions still need the shared material.
        let material = self.copies_elsewhere(id).is_empty();
        let region = self.other_region();
        let mut muts = vec![Mutation::DropKey {
            region,
            id,
            material,
        }];
        muts.extend(aliases.iter().map(|a| self.delete_alias_mutation(a)));
        self.inner.store.apply(&muts)?;
        let mut st = self.state_mut();
        st.keys.remove(&id);
        for a in &aliases {
            st.aliases.remove(a);
        }
        tracing::info!(key_id = %id, "KMS key deleted after its waiting period");
        Ok(())
    }

    fn new_key_locked(
        &self,
        _g: &WriteGuard<'_>,
        id: Uuid,
        opts: &CreateKeyOptions,
        manager: KeyManager,
        alias: Option<&str>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        let mut rec = KeyRecord {
            id,
            created_ms: now,
            description: opts.description.clone(),
            state: KeyState::Enabled,
            manager,
            origin: Origin::AwsKms,
            tags: opts.tags.iter().cloned().collect(),
            deletion_ms: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation_ms: None,
            versions: Vec::new(),
            policy: opts.policy.clone(),
            key_spec: opts.key_spec,
            key_usage: opts.key_usage,
            import: None,
            region: self.other_region().map(str::to_string),
            multi_region: opts.multi_region.then_some(MultiRegionRole::Primary),
        };
        if manager == KeyManager::Aws {
            rec.rotation_period_days = Some(DEFAULT_ROTATION_DAYS);
            rec.next_rotation_ms = Some(now + i64::from(DEFAULT_ROTATION_DAYS) * DAY_MS);
        }
        let mut material = HashMap::new();
        let sealed;
        let alias_rec = AliasRecord {
            target: id,
            created_ms: now,
            updated_ms: now,
        };
        let mut muts = Vec::new();
        if opts.external {
            rec.origin = Origin::External;
            rec.state = KeyState::PendingImport;
        } else {
            let (key, raw) = KeyMaterial::generate(opts.key_spec)?;
            sealed = self.inner.root.seal_material(&id, 1, &raw)?;
            rec.versions.push(VersionInfo {
                version: 1,
                created_ms: now,
                kind: RotationType::Initial,
            });
            material.insert(1, Arc::new(key));
            muts.push(Mutation::PutMaterial {
                id,
                version: 1,
                sealed: &sealed,
            });
        }
        muts.push(Mutation::PutKey(&rec));
        if let Some(a) = alias {
            muts.push(self.put_alias_mutation(a, &alias_rec));
        }
        self.inner.store.apply(&muts)?;
        drop(muts);
        let entry = Arc::new(KeyEntry {
            arn: key_arn(&self.region, &self.inner.account, &rec.key_id()),
            policy: self.policy_for(&rec)?,
            rec,
            material,
            grants: Arc::default(),
            usage: Arc::default(),
        });
        let mut st = self.state_mut();
        st.keys.insert(id, entry.clone());
        if let Some(a) = alias {
            st.aliases.insert(a.to_string(), alias_rec);
        }
        Ok(entry)
    }

    fn metadata(&self, e: &KeyEntry) -> KeyMetadata {
        let mut md = KeyMetadata::from_record(&e.rec, &self.inner.account, e.arn.clone());
        md.multi_region_configuration = self.multi_region_configuration(e);
        md
    }

    // ---------------------------------------------------------------- key management

    pub fn create_key(
        &self,
        caller: &Principal,
        opts: &CreateKeyOptions,
    ) -> Result<KeyMetadata, KmsError> {
        self.authorize_account(caller, "kms:CreateKey")?;
        validate_description(&opts.description)?;
        opts.key_spec.check_usage(opts.key_usage)?;
        if opts.external && !opts.key_spec.is_symmetric() {
            return Err(KmsError::UnsupportedOperation(format!(
                "Origin EXTERNAL is supported only for SYMMETRIC_DEFAULT keys, not {}.",
                opts.key_spec
            )));
        }
        for (k, v) in &opts.tags {
            validate_tag(k, v)?;
        }
        if opts.multi_region && opts.external {
            return Err(KmsError::UnsupportedOperation(
                "Multi-Region keys with imported key material (Origin EXTERNAL) are not supported by sealgate's KMS.".into(),
            ));
        }
        let id = if opts.multi_region {
            multi_region::new_mrk_id()?
        } else {
            Uuid::new_v4()
        };
        let mut opts = opts.clone();
        let text = opts
            .policy
            .take()
            .unwrap_or_else(|| default_policy_text(&self.inner.account));
        let key_id = display_key_id(&id, opts.multi_region);
        self.check_new_policy(
            caller,
            &ambient(),
            &text,
            &key_arn(&self.region, &self.inner.account, &key_id),
            opts.bypass_policy_lockout_safety_check,
        )?;
        opts.policy = Some(text);
        let g = self.lock_writer();
        let e = self.new_key_locked(&g, id, &opts, KeyManager::Customer, None)?;
        Ok(self.metadata(&e))
    }

    /// The ARN of the service-managed key behind `alias` (`alias/aws/s3`), created on
    /// first use.
    pub fn service_managed_key(&self, alias: &str) -> Result<String, KmsError> {
        let service = alias
            .strip_prefix("alias/aws/")
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let Some(service) = service else {
            return Err(KmsError::Validation(format!(
                "'{alias}' is not a service-managed alias (expected alias/aws/<service>)"
            )));
        };
        if let Ok(e) = self.find(alias, true) {
            return Ok(e.arn.clone());
        }
        let g = self.lock_writer();
        if let Ok(e) = self.find(alias, true) {
            return Ok(e.arn.clone());
        }
        let opts = CreateKeyOptions {
            description: format!(
                "Default key that protects my {service} data when no other key is defined"
            ),
            policy: Some(service_policy_text(
                &self.inner.account,
                service,
                &self.inner.region,
            )),
            ..Default::default()
        };
        let e = self.new_key_locked(&g, Uuid::new_v4(), &opts, KeyManager::Aws, Some(alias))?;
        tracing::info!(key_id = %e.rec.id, alias, "created service-managed KMS key");
        self.audit_service_key_created(&e.arn, alias);
        Ok(e.arn.clone())
    }

    pub fn describe_key(&self, caller: &Principal, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::DescribeKey,
            true,
            None,
            None,
        )?;
        Ok(self.metadata(&e))
    }

    /// ListKeys: (key id, key ARN) pairs ordered by key id.
    pub fn list_keys(
        &self,
        caller: &Principal,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<(String, String)>, KmsError> {
        self.authorize_account(caller, "kms:ListKeys")?;
        let now = self.now_ms();
        let entries: Vec<Arc<KeyEntry>> = self.state().keys.values().cloned().collect();
        let mut keys: Vec<(String, String)> = entries
            .iter()
            .filter(|e| !e.rec.deletion_due(now) || self.waits_for_replicas(&e.rec))
            .map(|e| (e.rec.key_id(), e.arn.clone()))
            .collect();
        keys.sort();
        paginate(keys.into_iter().map(|k| (k.0.clone(), k)), limit, marker)
    }

    pub fn update_key_description(
        &self,
        caller: &Principal,
        key_id: &str,
        description: &str,
    ) -> Result<(), KmsError> {
        validate_description(description)?;
        self.mutate(caller, key_id, Op::UpdateKeyDescription, |r, _| {
            r.description = description.to_string();
            Ok(())
        })
        .map(drop)
    }

    pub fn tag_resource(
        &self,
        caller: &Principal,
        key_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), KmsError> {
        for (k, v) in tags {
            validate_tag(k, v)?;
        }
        self.mutate(caller, key_id, Op::TagResource, |r, _| {
            r.tags.extend(tags.iter().cloned());
            if r.tags.len() > 50 {
                return Err(KmsError::LimitExceeded(
                    "A KMS key can have at most 50 tags.".into(),
                ));
            }
            Ok(())
        })
        .map(drop)
    }

    pub fn untag_resource(
        &self,
        caller: &Principal,
        key_id: &str,
        tag_keys: &[String],
    ) -> Result<(), KmsError> {
        self.mutate(caller, key_id, Op::UntagResource, |r, _| {
            for k in tag_keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .map(drop)
    }

    pub fn list_resource_tags(
        &self,
        caller: &Principal,
        key_id: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<(String, String)>, KmsError> {
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::ListResourceTags,
            false,
            None,
            None,
        )?;
        paginate(
            e.rec
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), (k.clone(), v.clone()))),
            limit,
            marker,
        )
    }

    pub fn enable_key(&self, caller: &Principal, key_id: &str) -> Result<(), KmsError> {
        self.mutate(caller, key_id, Op::EnableKey, |r, _| {
            r.state = KeyState::Enabled;
            Ok(())
        })
        .map(drop)
    }

    pub fn disable_key(&self, caller: &Principal, key_id: &str) -> Result<(), KmsError> {
        self.mutate(caller, key_id, Op::DisableKey, |r, _| {
            r.state = KeyState::Disabled;
            Ok(())
        })
        .map(drop)
    }

    /// Returns (key ARN, deletion time in ms, window in days).
    pub fn schedule_key_deletion(
        &self,
        caller: &Principal,
        key_id: &str,
        pending_window_days: Option<i64>,
    ) -> Result<(String, i64, u32), KmsError> {
        let days = pending_window_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::constraint(
                days,
                "pendingWindowInDays",
                "Member must have value between 7 and 30",
            ));
        }
        let days = days as u32;
        let e = self.mutate(caller, key_id, Op::ScheduleKeyDeletion, |r, now| {
            r.state = KeyState::PendingDeletion;
            r.deletion_ms = Some(now + i64::from(days) * DAY_MS);
            r.pending_window_days = Some(days);
            Ok(())
        })?;
        Ok((e.arn.clone(), e.rec.deletion_ms.unwrap_or_default(), days))
    }

    /// Back to Disabled (or PendingImport for an external key without material).
    pub fn cancel_key_deletion(
        &self,
        caller: &Principal,
        key_id: &str,
    ) -> Result<String, KmsError> {
        let e = self.mutate(caller, key_id, Op::CancelKeyDeletion, |r, _| {
            r.state = if r.versions.is_empty() {
                KeyState::PendingImport
            } else {
                KeyState::Disabled
            };
            r.deletion_ms = None;
            r.pending_window_days = None;
            Ok(())
        })?;
        Ok(e.arn.clone())
    }

    // ---------------------------------------------------------------- rotation

    pub fn enable_key_rotation(
        &self,
        caller: &Principal,
        key_id: &str,
        period_days: Option<i64>,
    ) -> Result<(), KmsError> {
        let days = period_days.unwrap_or(i64::from(DEFAULT_ROTATION_DAYS));
        if !(MIN_ROTATION_DAYS..=MAX_ROTATION_DAYS).contains(&days) {
            return Err(KmsError::constraint(
                days,
                "rotationPeriodInDays",
                "Member must have value between 90 and 2560",
            ));
        }
        self.mutate(caller, key_id, Op::EnableKeyRotation, |r, now| {
            import_ops::refuse_rotation_of_imported(r, Op::EnableKeyRotation)?;
            multi_region::refuse_on_replica(r, Op::EnableKeyRotation)?;
            // Re-enabling or changing the period counts from the last rotation (or now).
            let base = match (r.rotation_period_days, r.next_rotation_ms) {
                (Some(old), Some(next)) => next - i64::from(old) * DAY_MS,
                _ => now,
            };
            r.rotation_period_days = Some(days as u32);
            r.next_rotation_ms = Some(base + days * DAY_MS);
            Ok(())
        })
        .map(drop)
    }

    pub fn disable_key_rotation(&self, caller: &Principal, key_id: &str) -> Result<(), KmsError> {
        self.mutate(caller, key_id, Op::DisableKeyRotation, |r, _| {
            import_ops::refuse_rotation_of_imported(r, Op::DisableKeyRotation)?;
            multi_region::refuse_on_replica(r, Op::DisableKeyRotation)?;
            r.rotation_period_days = None;
            r.next_rotation_ms = None;
            Ok(())
        })
        .map(drop)
    }

    pub fn get_key_rotation_status(
        &self,
        caller: &Principal,
        key_id: &str,
    ) -> Result<RotationStatus, KmsError> {
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::GetKeyRotationStatus,
            false,
            None,
            None,
        )?;
        // A multi-Region replica shares its primary's rotation.
        let src = self.rotation_source(&e);
        Ok(RotationStatus {
            enabled: src.rec.next_rotation_ms.is_some(),
            key_arn: e.arn.clone(),
            period_days: src.rec.rotation_period_days,
            next_rotation_ms: src.rec.next_rotation_ms,
        })
    }

    /// Adds a new backing-key version now; returns the key ARN.
    pub fn rotate_key_on_demand(
        &self,
        caller: &Principal,
        key_id: &str,
    ) -> Result<String, KmsError> {
        let g = self.lock_writer();
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::RotateKeyOnDemand,
            false,
            None,
            Some(&g),
        )?;
        import_ops::refuse_rotation_of_imported(&e.rec, Op::RotateKeyOnDemand)?;
        multi_region::refuse_on_replica(&e.rec, Op::RotateKeyOnDemand)?;
        let on_demand = e
            .rec
            .versions
            .iter()
            .filter(|v| v.kind == RotationType::OnDemand)
            .count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations.",
                e.arn
            )));
        }
        Ok(self
            .rotate_locked(&g, &e, RotationType::OnDemand)?
            .arn
            .clone())
    }

    pub fn list_key_rotations(
        &self,
        caller: &Principal,
        key_id: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::ListKeyRotations,
            false,
            None,
            None,
        )?;
        let rotations = e
            .rec
            .versions
            .iter()
            .filter(|v| v.kind != RotationType::Initial)
            .map(|v| {
                (
                    String::new(),
                    RotationEntry {
                        key_id: e.rec.key_id(),
                        rotation_ms: v.created_ms,
                        on_demand: v.kind == RotationType::OnDemand,
                    },
                )
            });
        paginate(rotations, limit, marker)
    }

    /// Timer hook (all regions): destroys keys whose deletion window has passed, deletes
    /// imported material whose ValidTo has passed and performs due automatic rotations.
    pub fn tick(&self) -> Result<(), KmsError> {
        let now = self.now_ms();
        let due: Vec<(String, Arc<KeyEntry>)> = {
            let all = self.inner.state.read().unwrap_or_else(poisoned);
            all.iter()
                .flat_map(|(r, st)| st.keys.values().map(move |e| (r, e)))
                .filter(|(_, e)| {
                    e.rec.deletion_due(now)
                        || e.rec.rotation_due(now)
                        || e.rec.material_expiry_due(now)
                })
                .map(|(r, e)| (r.clone(), e.clone()))
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        let g = self.lock_writer();
        for (region, e) in due {
            match self.view(&region).maintain(e, Some(&g)) {
                Ok(_) | Err(KmsError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- aliases

    pub fn create_alias(
        &self,
        caller: &Principal,
        alias: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        self.set_alias(caller, alias, target_key_id, Op::CreateAlias)
    }

    pub fn update_alias(
        &self,
        caller: &Principal,
        alias: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        self.set_alias(caller, alias, target_key_id, Op::UpdateAlias)
    }

    /// CreateAlias (the alias must not exist) or UpdateAlias (it must).
    fn set_alias(
        &self,
        caller: &Principal,
        alias: &str,
        target_key_id: &str,
        op: Op,
    ) -> Result<(), KmsError> {
        validate_alias_name(alias)?;
        let g = self.lock_writer();
        let existing = {
            let st = self.state();
            st.aliases.get(alias).cloned()
        };
        let created_ms = match (op, existing) {
            (Op::CreateAlias, Some(_)) => {
                return Err(KmsError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    self.alias_arn(alias)
                )));
            }
            (Op::CreateAlias, None) => None,
            (_, Some(old)) => Some(old.created_ms),
            (_, None) => {
                return Err(KmsError::NotFound(format!(
                    "Alias {} is not found.",
                    self.alias_arn(alias)
                )));
            }
        };
        let e = self.key_for(caller, &ambient(), target_key_id, op, false, None, Some(&g))?;
        let now = self.now_ms();
        let rec = AliasRecord {
            target: e.rec.id,
            created_ms: created_ms.unwrap_or(now),
            updated_ms: now,
        };
        self.put_alias_locked(&g, alias, rec)
    }

    fn put_alias_locked(
        &self,
        _g: &WriteGuard<'_>,
        alias: &str,
        rec: AliasRecord,
    ) -> Result<(), KmsError> {
        self.inner
            .store
            .apply(&[self.put_alias_mutation(alias, &rec)])?;
        let mut st = self.state_mut();
        st.aliases.insert(alias.to_string(), rec);
        Ok(())
    }

    pub fn delete_alias(&self, caller: &Principal, alias: &str) -> Result<(), KmsError> {
        validate_alias_name(alias)?;
        let g = self.lock_writer();
        let e = self.key_for(
            caller,
            &ambient(),
            alias,
            Op::DeleteAlias,
            true,
            None,
            Some(&g),
        )?;
        drop(e);
        self.inner
            .store
            .apply(&[self.delete_alias_mutation(alias)])?;
        drop(g);
        let mut st = self.state_mut();
        st.aliases.remove(alias);
        Ok(())
    }

    /// ListAliases, optionally only those pointing at `key_id`. Service aliases that
    /// exist are listed like AWS lists its `alias/aws/...` aliases.
    pub fn list_aliases(
        &self,
        caller: &Principal,
        key_id: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        self.authorize_account(caller, "kms:ListAliases")?;
        let filter = match key_id {
            Some(k) => Some(self.find(k, false)?.rec.id),
            None => None,
        };
        let items: Vec<(String, AliasEntry)> = {
            let st = self.state();
            st.aliases
                .iter()
                .filter(|(_, a)| filter.is_none_or(|f| f == a.target))
                .map(|(n, a)| {
                    (
                        n.clone(),
                        AliasEntry {
                            name: n.clone(),
                            arn: self.alias_arn(n),
                            target: Some(a.target.to_string()),
                            created_ms: Some(a.created_ms),
                            updated_ms: Some(a.updated_ms),
                        },
                    )
                })
                .collect()
        };
        paginate(items.into_iter(), limit, marker)
    }

    // ---------------------------------------------------------------- cryptography
    //
    // Each operation has a `_via` form taking the `CallContext` (the S3 path passes
    // `CallContext::s3(..)`); the plain form is an in-process call. Calls not made by
    // the API layer (which audits its own requests) write their audit event here.

    pub fn encrypt(
        &self,
        caller: &Principal,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        self.encrypt_via(caller, &CallContext::default(), key_id, plaintext, ctx)
    }

    /// Encrypt (at most 4096 bytes): (blob, key ARN).
    pub fn encrypt_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let r = (|| {
            if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
                return Err(KmsError::constraint(
                    format!("<{} bytes>", plaintext.len()),
                    "plaintext",
                    "Member must have length between 1 and 4096",
                ));
            }
            let e = self.key_for(caller, call, key_id, Op::Encrypt, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
            Ok((k.encrypt(&e.rec.id, v, plaintext, ctx)?, e.arn.clone()))
        })();
        self.audit_crypto(caller, call, "Encrypt", Some(key_id), ctx, None, &r, |r| {
            &r.1
        });
        r
    }

    fn check_data_key_len(bytes: usize) -> Result<(), KmsError> {
        if !(1..=1024).contains(&bytes) {
            return Err(KmsError::constraint(
                bytes,
                "numberOfBytes",
                "Member must have value between 1 and 1024",
            ));
        }
        Ok(())
    }

    /// GenerateDataKey: a fresh random data key, plaintext and wrapped. Does not write
    /// the database.
    pub fn generate_data_key(
        &self,
        caller: &Principal,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<DataKey, KmsError> {
        self.generate_data_key_via(caller, &CallContext::default(), key_id, ctx, bytes)
    }

    /// GenerateDataKey with the call's context (the S3 path: `CallContext::s3(..)`).
    pub fn generate_data_key_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<DataKey, KmsError> {
        self.data_key(caller, call, key_id, ctx, bytes, Op::GenerateDataKey)
    }

    /// GenerateDataKeyWithoutPlaintext: (wrapped key, key ARN).
    pub fn generate_data_key_without_plaintext(
        &self,
        caller: &Principal,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let call = CallContext::default();
        self.generate_data_key_without_plaintext_via(caller, &call, key_id, ctx, bytes)
    }

    pub fn generate_data_key_without_plaintext_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let op = Op::GenerateDataKeyWithoutPlaintext;
        let dk = self.data_key(caller, call, key_id, ctx, bytes, op)?;
        Ok((dk.ciphertext_blob, dk.key_arn))
    }

    /// Both GenerateDataKey forms (`op` decides the permission and the event name).
    fn data_key(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: &str,
        ctx: &EncryptionContext,
        bytes: usize,
        op: Op,
    ) -> Result<DataKey, KmsError> {
        let r = (|| {
            Self::check_data_key_len(bytes)?;
            let e = self.key_for(caller, call, key_id, op, true, Some(ctx), None)?;
            let (v, k) = e.current()?;
            let plaintext = crypto::random_bytes(bytes)?;
            let ciphertext_blob = k.encrypt(&e.rec.id, v, &plaintext, ctx)?;
            Ok(DataKey {
                plaintext,
                ciphertext_blob,
                key_arn: e.arn.clone(),
            })
        })();
        let name = op.action().trim_start_matches("kms:");
        let bytes = Some(bytes);
        self.audit_crypto(caller, call, name, Some(key_id), ctx, bytes, &r, |d| {
            &d.key_arn
        });
        r
    }

    fn open_blob(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
        op: Op,
    ) -> Result<Decrypted, KmsError> {
        let parsed = crypto::parse_blob(blob)?;
        let blob_key = parsed.key_id.to_string();
        if let Some(k) = key_id {
            let wanted = self.find(k, true)?;
            if wanted.rec.id != parsed.key_id {
                return Err(KmsError::IncorrectKey(format!(
                    "The key ID in the request does not identify a KMS key that can perform this operation: the ciphertext was encrypted under {}, not {}.",
                    self.key_arn(&parsed.key_id),
                    wanted.arn
                )));
            }
        }
        // A blob naming no existing key is indistinguishable from garbage to the caller.
        let e = match self.key_for(caller, call, &blob_key, op, false, Some(ctx), None) {
            Err(KmsError::NotFound(_)) => return Err(crypto::invalid_ciphertext()),
            r => r?,
        };
        let key = e
            .material
            .get(&parsed.version)
            .and_then(|m| m.aes(e.rec.key_spec).ok())
            .ok_or_else(crypto::invalid_ciphertext)?;
        Ok(Decrypted {
            plaintext: key.decrypt(&parsed, ctx)?,
            key_arn: e.arn.clone(),
        })
    }

    /// Decrypt: the blob names its key; `key_id`, when given, must name the same key.
    pub fn decrypt(
        &self,
        caller: &Principal,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Decrypted, KmsError> {
        self.decrypt_via(caller, &CallContext::default(), key_id, blob, ctx)
    }

    /// Decrypt with the call's context (the S3 path: `CallContext::s3(..)`).
    pub fn decrypt_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        key_id: Option<&str>,
        blob: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Decrypted, KmsError> {
        let r = self.open_blob(caller, call, key_id, blob, ctx, Op::Decrypt);
        if call.via != Via::Api && self.inner.audit.is_some() {
            let blob_key = crypto::parse_blob(blob).ok().map(|p| p.key_id.to_string());
            let key_ref = key_id.map(str::to_string).or(blob_key);
            self.audit_crypto(
                caller,
                call,
                "Decrypt",
                key_ref.as_deref(),
                ctx,
                None,
                &r,
                |d| &d.key_arn,
            );
        }
        r
    }

    /// ReEncrypt: returns (new blob, source key ARN, destination key ARN).
    pub fn re_encrypt(
        &self,
        caller: &Principal,
        blob: &[u8],
        source_ctx: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let call = CallContext::default();
        self.re_encrypt_via(
            caller,
            &call,
            blob,
            source_ctx,
            source_key_id,
            destination_key_id,
            destination_ctx,
        )
    }

    /// ReEncrypt with the call's context (CopyObject re-wrapping a data key).
    #[allow(clippy::too_many_arguments)]
    pub fn re_encrypt_via(
        &self,
        caller: &Principal,
        call: &CallContext,
        blob: &[u8],
        source_ctx: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let r = (|| {
            let op = Op::ReEncryptFrom;
            let src = self.open_blob(caller, call, source_key_id, blob, source_ctx, op)?;
            let op = Op::ReEncryptTo;
            let dst_ctx = Some(destination_ctx);
            let dst = self.key_for(caller, call, destination_key_id, op, true, dst_ctx, None)?;
            let (v, k) = dst.current()?;
            let new_blob = k.encrypt(&dst.rec.id, v, &src.plaintext, destination_ctx)?;
            Ok((new_blob, src.key_arn, dst.arn.clone()))
        })();
        if call.via != Via::Api && self.inner.audit.is_some() {
            let src_key = crypto::parse_blob(blob)
                .ok()
                .map(|p| self.key_arn(&p.key_id));
            let mut resources: Vec<String> = src_key.into_iter().collect();
            resources.extend(
                self.find(destination_key_id, true)
                    .ok()
                    .map(|e| e.arn.clone()),
            );
            let params = CryptoParams {
                key_id: source_key_id.map(str::to_string),
                encryption_context: Some(source_ctx.clone()),
                destination_key_id: Some(destination_key_id.to_string()),
                destination_encryption_context: Some(destination_ctx.clone()),
                encryption_algorithm: "SYMMETRIC_DEFAULT",
                ..Default::default()
            };
            let err = r.as_ref().err();
            self.audit_event(
                caller,
                call,
                "ReEncrypt",
                Params::Crypto(params),
                err,
                resources,
            );
        }
        r
    }

    pub fn generate_random(
        &self,
        caller: &Principal,
        bytes: i64,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.authorize_account(caller, "kms:GenerateRandom")?;
        if !(1..=1024).contains(&bytes) {
            return Err(KmsError::constraint(
                bytes,
                "numberOfBytes",
                "Member must have value between 1 and 1024",
            ));
        }
        crypto::random_bytes(bytes as usize)
    }

    /// Number of stored material versions of a key (0 once destroyed); for tests/ops.
    pub fn stored_material_versions(&self, key_id: &Uuid) -> Result<usize, KmsError> {
        self.inner.store.material_count(*key_id)
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
