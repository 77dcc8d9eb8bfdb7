//! The shared engine: the KMS's rows in one PostgreSQL database that any number of
//! sealgate instances use at once (issue 21; docs/design/kms-postgres.md).
//!
//! Schema (created and migrated by sealgate, versions in `sealgate_schema`):
//! - `kms_meta(name, value)`: `format`, `kcv` (root-key check value), `rows`;
//! - `kms_rows(tbl, k, v)`: the rows `store/mod.rs` describes, `k` the row key's bytes
//!   (the same bytes the row MAC covers), `v` the authenticated row or sealed material;
//! - `kms_revision(revision)`: one row, incremented by every committed change.
//!
//! Consistency: every change runs in one transaction that first locks the revision row
//! (`SELECT ... FOR UPDATE`), so changes from all instances are serialised; an instance
//! whose in-memory contents are older than the locked revision reloads them before it
//! validates its change (so concurrent CreateAlias calls see each other: one wins, the
//! other gets AlreadyExistsException). A watcher thread (its own connection) polls the
//! revision every quarter of `max_staleness_ms` and reloads on a change; an instance that
//! has not confirmed its contents as current within `max_staleness_ms` refuses key
//! operations (DependencyTimeoutException) instead of answering from stale state. The
//! watcher's session also holds the maintenance lease (an advisory lock): exactly one
//! instance runs scheduled work (rotation, deletion, import expiry), and the lock is
//! released when that instance's session ends.
//!
//! Threads: the `postgres` client is synchronous and runs its own runtime, so it lives on
//! dedicated threads (never a tokio worker); KMS calls hand it jobs and wait for the
//! answer (as they wait for redb's fsync).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::conn::{Conn, Params, Worker, stale, unavailable};
use self::rows::{RawRows, decode, read_kcv, read_rows, row_ops, run_op};
use super::{FORMAT_VERSION, Loaded, Mutation, ROWS_AUTHENTICATED, Rows};
use crate::kms::KmsError;
use crate::kms::crypto::RootKey;

mod audit;
mod conn;
mod rows;

/// `[kms.postgres]`: where the shared KMS database is and how current each instance's
/// view of it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// File holding the connection URL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require`). It holds the password:
    /// sealgate refuses a file others can read. Takes precedence over `url_env`.
    pub url_file: Option<PathBuf>,
    /// Environment variable holding the connection URL when no file is given.
    pub url_env: String,
    /// PEM CA certificates trusted for the server's TLS certificate besides the system
    /// roots (`sslmode=require` in the URL makes TLS mandatory; the certificate is
    /// always verified when TLS is used).
    pub ca_file: Option<PathBuf>,
    /// The most this instance's view of keys, policies, grants and aliases may lag a
    /// change made through another instance; past it (database unreachable) key
    /// operations fail with DependencyTimeoutException rather than use stale state.
    pub max_staleness_ms: u64,
    /// Connecting to the database gives up after this long.
    pub connect_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url_file: None,
            url_env: "SEALGATE_KMS_POSTGRES_URL".into(),
            ca_file: None,
            max_staleness_ms: 1000,
            connect_timeout_ms: 3000,
        }
    }
}

impl PostgresConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.url_file.is_none() && self.url_env.is_empty() {
            return Err("kms.postgres: set url_file or url_env".into());
        }
        if self.max_staleness_ms < 200 {
            return Err("kms.postgres.max_staleness_ms must be at least 200".into());
        }
        if self.connect_timeout_ms == 0 {
            return Err("kms.postgres.connect_timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// The schema version this sealgate writes; a database with a later one is refused.
const SCHEMA_VERSION: i32 = 2;
/// Advisory lock keys: schema creation/migration, and the maintenance lease.
const SCHEMA_LOCK: i64 = 0x5ea1_6a7e_0000_0001;
const MAINTENANCE_LOCK: i64 = 0x5ea1_6a7e_0000_0002;

const MIGRATION_1: &str = "
CREATE TABLE kms_meta (name text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE kms_rows (tbl text NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (tbl, k));
CREATE TABLE kms_revision (id boolean PRIMARY KEY DEFAULT true CHECK (id), revision bigint NOT NULL);
INSERT INTO kms_revision (id, revision) VALUES (true, 0);
";

/// Version 2: the cluster's audit trail (`audit.rs`).
const MIGRATION_2: &str = "
CREATE TABLE kms_audit (chain text NOT NULL, seq bigint NOT NULL, event_time text NOT NULL, line text NOT NULL, PRIMARY KEY (chain, seq));
CREATE INDEX kms_audit_time ON kms_audit (event_time);
";

/// Process-wide origin of the `confirmed` timestamps.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// What the store and its watcher share.
struct Shared {
    /// The revision of the contents this instance holds in memory.
    revision: AtomicI64,
    /// When (ms after `EPOCH`) those contents were last confirmed current.
    confirmed: AtomicU64,
    /// This instance holds the maintenance lease.
    lease: AtomicBool,
    max_staleness: Duration,
}

impl Shared {
    fn confirm(&self, at: Instant) {
        self.confirmed.fetch_max(since_epoch(at), Ordering::SeqCst);
    }

    fn fresh(&self) -> bool {
        let confirmed = self.confirmed.load(Ordering::SeqCst);
        since_epoch(Instant::now()).saturating_sub(confirmed)
            <= self.max_staleness.as_millis() as u64
    }
}

pub struct PgStore {
    writer: Worker,
    params: Arc<Params>,
    rows: Arc<Rows>,
    shared: Arc<Shared>,
}

impl PgStore {
    pub fn open(cfg: &PostgresConfig, root: &RootKey) -> Result<(PgStore, Loaded), KmsError> {
        cfg.validate().map_err(KmsError::Config)?;
        let params = Arc::new(Params::read(cfg)?);
        let writer = Worker::spawn(params.clone())?;
        let kcv = root.check_value();
        let rows = Arc::new(Rows::new(root));
        let check = rows.clone();
        let started = Instant::now();
        let (revision, raw) = writer.run(move |c| {
            let mut tx = c.client()?.transaction().map_err(unavailable)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .map_err(unavailable)?;
            migrate(&mut tx)?;
            match read_kcv(&mut tx)? {
                Some(s) if check.accepts_check_value(&s) => check.follow_check_value(&s),
                Some(_) => {
                    return Err(KmsError::WrongRootKey(
                        "the kms.postgres database".into(),
                    ));
                }
                None => {
                    let rows: i64 = tx
                        .query_one("SELECT count(*) FROM kms_rows", &[])
                        .map_err(unavailable)?
                        .get(0);
                    if rows > 0 {
                        return Err(KmsError::Config(
                            "the kms.postgres database holds keys but no root-key check value; refusing to open".into(),
                        ));
                    }
                    for (name, value) in [
                        ("format", FORMAT_VERSION.to_be_bytes().to_vec()),
                        ("kcv", kcv.clone()),
                        ("rows", ROWS_AUTHENTICATED.to_vec()),
                    ] {
                        tx.execute(
                            "INSERT INTO kms_meta (name, value) VALUES ($1, $2)",
                            &[&name, &value],
                        )
                        .map_err(unavailable)?;
                    }
                }
            }
            let revision: i64 = tx
                .query_one("SELECT revision FROM kms_revision", &[])
                .map_err(unavailable)?
                .get(0);
            let raw = read_rows(&mut tx)?;
            tx.commit().map_err(unavailable)?;
            Ok((revision, raw))
        })?;
        let loaded = decode(&rows, raw)?;
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            confirmed: AtomicU64::new(0),
            lease: AtomicBool::new(false),
            max_staleness: Duration::from_millis(cfg.max_staleness_ms),
        });
        shared.confirm(started);
        Ok((
            PgStore {
                writer,
                params,
                rows,
                shared,
            },
            loaded,
        ))
    }

    /// Readiness: the contents were confirmed current within the staleness bound.
    pub fn check_readable(&self) -> Result<(), KmsError> {
        self.check_fresh()
    }

    /// Key operations run only on contents confirmed current within the bound.
    pub fn check_fresh(&self) -> Result<(), KmsError> {
        if self.shared.fresh() {
            Ok(())
        } else {
            Err(stale(self.shared.max_staleness))
        }
    }

    /// Whether this instance holds the maintenance lease (runs scheduled work).
    pub fn holds_lease(&self) -> bool {
        self.shared.lease.load(Ordering::SeqCst)
    }

    /// See [`super::Store::begin_write`].
    pub fn begin_write(&self) -> Result<Option<Loaded>, KmsError> {
        let local = self.shared.revision.load(Ordering::SeqCst);
        let started = Instant::now();
        let (revision, raw) = self.writer.run(move |c| {
            let r = c.lock_revision()?;
            if r == local {
                return Ok((r, None));
            }
            let raw = read_rows(c.client()?)?;
            let kcv = read_kcv(c.client()?)?;
            Ok((r, Some((raw, kcv))))
        })?;
        self.shared.confirm(started);
        self.adopt(revision, raw)
    }

    /// The contents read at `revision` (if any were read), now this instance's.
    /// A root-key rotation shows in the check value: this instance then seals under the
    /// new key, or, not having it, refuses everything from now on.
    fn adopt(
        &self,
        revision: i64,
        raw: Option<(RawRows, Option<Vec<u8>>)>,
    ) -> Result<Option<Loaded>, KmsError> {
        let Some((raw, kcv)) = raw else {
            return Ok(None);
        };
        match kcv {
            Some(k) if self.rows.accepts_check_value(&k) => self.rows.follow_check_value(&k),
            _ => {
                return Err(KmsError::WrongRootKey(
                    "the kms.postgres database (its root key was rotated: give this instance the new root key)".into(),
                ));
            }
        }
        let loaded = decode(&self.rows, raw)?;
        self.shared.revision.store(revision, Ordering::SeqCst);
        Ok(Some(loaded))
    }

    /// See [`super::Store::end_write`].
    pub fn end_write(&self) {
        let _ = self.writer.run(|c| {
            c.rollback();
            Ok(())
        });
    }

    /// The store's contents if another instance changed them since this one read them
    /// (one consistent snapshot), without taking the writer lock.
    pub fn refresh(&self) -> Result<Option<Loaded>, KmsError> {
        let local = self.shared.revision.load(Ordering::SeqCst);
        let (revision, raw) = self.writer.run(move |c| {
            let mut tx = c
                .client()?
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(unavailable)?;
            let r: i64 = tx
                .query_one("SELECT revision FROM kms_revision", &[])
                .map_err(unavailable)?
                .get(0);
            let raw = if r == local {
                None
            } else {
                Some((read_rows(&mut tx)?, read_kcv(&mut tx)?))
            };
            tx.commit().map_err(unavailable)?;
            Ok((r, raw))
        })?;
        self.adopt(revision, raw)
    }

    /// Applies the mutations and commits (in the transaction `begin_write` opened, or a
    /// new one that finds the revision this instance holds, else fails: a change made
    /// elsewhere meanwhile must be seen before this one is decided).
    pub fn apply(&self, muts: &[Mutation<'_>]) -> Result<(), KmsError> {
        let ops = row_ops(&self.rows, muts)?;
        let rows = self.rows.clone();
        let local = self.shared.revision.load(Ordering::SeqCst);
        let revision = self.writer.run(move |c| {
            let r = c.lock_revision()?;
            if r != local {
                return Err(KmsError::Internal(
                    "The KMS state changed on another sealgate instance during this change; retry."
                        .into(),
                ));
            }
            let client = c.client()?;
            for op in ops {
                run_op(client, &rows, op)?;
            }
            let new: i64 = client
                .query_one(
                    "UPDATE kms_revision SET revision = revision + 1 RETURNING revision",
                    &[],
                )
                .map_err(unavailable)?
                .get(0);
            client.batch_execute("COMMIT").map_err(unavailable)?;
            c.in_tx = false;
            Ok(new)
        })?;
        self.shared.revision.store(revision, Ordering::SeqCst);
        Ok(())
    }

    pub fn material_count(&self, id: Uuid) -> Result<usize, KmsError> {
        let prefix = id.as_u128().to_be_bytes().to_vec();
        self.writer.run(move |c| {
            let n: i64 = c
                .client()?
                .query_one(
                    "SELECT count(*) FROM kms_rows WHERE tbl = 'material' AND substr(k, 1, 16) = $1",
                    &[&prefix],
                )
                .map_err(unavailable)?
                .get(0);
            Ok(n as usize)
        })
    }

    /// Ships this instance's audit file into the cluster's trail (`audit.rs`), while
    /// `alive`.
    pub fn ship_audit(&self, path: PathBuf, alive: impl Fn() -> bool + Send + 'static) {
        audit::ship(self.params.clone(), path, alive);
    }

    /// Starts the watcher thread (its own connection): every quarter of the staleness
    /// bound it reads the revision, calls `refresh(true)` when another instance changed
    /// it (else `refresh(false)`), confirms the contents current, and takes the
    /// maintenance lease if free. `refresh` returns None once the KMS is gone; the
    /// thread then ends, and its session, holding the lease, with it.
    pub fn watch(&self, refresh: impl Fn(bool) -> Option<Result<(), KmsError>> + Send + 'static) {
        let params = self.params.clone();
        let shared = self.shared.clone();
        let every = shared.max_staleness / 4;
        let spawned = std::thread::Builder::new()
            .name("sealgate-kms-pg-watch".into())
            .spawn(move || {
                let mut conn = Conn::new(params);
                let mut failing = false;
                loop {
                    std::thread::sleep(every);
                    let started = Instant::now();
                    let outcome = watch_once(&mut conn, &shared, &refresh);
                    match outcome {
                        None => return,
                        Some(Ok(())) => {
                            shared.confirm(started);
                            if failing {
                                tracing::info!("the KMS's PostgreSQL database answers again");
                                failing = false;
                            }
                        }
                        Some(Err(e)) => {
                            conn.client = None;
                            shared.lease.store(false, Ordering::SeqCst);
                            if !failing {
                                tracing::warn!(error = %e, "cannot confirm the KMS state with PostgreSQL; key operations fail once it is older than kms.postgres.max_staleness_ms");
                                failing = true;
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the KMS database watcher");
        }
    }
}

/// One watcher round; None when the KMS is gone.
fn watch_once(
    conn: &mut Conn,
    shared: &Shared,
    refresh: &impl Fn(bool) -> Option<Result<(), KmsError>>,
) -> Option<Result<(), KmsError>> {
    // None: the KMS is gone (and so is this thread).
    let _alive: Result<(), KmsError> = refresh(false)?;
    let client = match conn.client() {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    let revision: i64 = match client.query_one("SELECT revision FROM kms_revision", &[]) {
        Ok(r) => r.get(0),
        Err(e) => return Some(Err(unavailable(e))),
    };
    if !shared.lease.load(Ordering::SeqCst) {
        match client.query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTENANCE_LOCK]) {
            Ok(r) => {
                let held: bool = r.get(0);
                if held {
                    tracing::info!(
                        "this instance runs the KMS's scheduled work (maintenance lease taken)"
                    );
                }
                shared.lease.store(held, Ordering::SeqCst);
            }
            Err(e) => return Some(Err(unavailable(e))),
        }
    }
    if revision != shared.revision.load(Ordering::SeqCst) {
        return refresh(true);
    }
    Some(Ok(()))
}

/// Creates or migrates the schema (the caller holds the schema lock).
fn migrate(tx: &mut postgres::Transaction<'_>) -> Result<(), KmsError> {
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sealgate_schema (version integer NOT NULL)")
        .map_err(unavailable)?;
    let version: Option<i32> = tx
        .query_one("SELECT max(version) FROM sealgate_schema", &[])
        .map_err(unavailable)?
        .get(0);
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(KmsError::Config(format!(
            "the kms.postgres database has schema version {version}, written by a newer sealgate (this one knows {SCHEMA_VERSION}); refusing to open"
        )));
    }
    if version < 1 {
        tx.batch_execute(MIGRATION_1).map_err(unavailable)?;
        tx.execute("INSERT INTO sealgate_schema (version) VALUES (1)", &[])
            .map_err(unavailable)?;
        tracing::info!("created the KMS schema in PostgreSQL (version 1)");
    }
    if version < 2 {
        tx.batch_execute(MIGRATION_2).map_err(unavailable)?;
        tx.execute("INSERT INTO sealgate_schema (version) VALUES (2)", &[])
            .map_err(unavailable)?;
        tracing::info!("migrated the KMS schema in PostgreSQL to version 2 (audit trail)");
    }
    Ok(())
}

/// The cluster's audit trail in the database of `cfg`: every instance's chain, (chain
/// id, lines in order).
pub fn audit_chains(cfg: &PostgresConfig) -> Result<Vec<(String, Vec<String>)>, KmsError> {
    let mut conn = Conn::new(Arc::new(Params::read(cfg)?));
    audit::chains(&mut conn)
}

/// The cluster's audit trail in the database of `cfg`, every record in time order.
pub fn audit_trail(cfg: &PostgresConfig) -> Result<Vec<String>, KmsError> {
    let mut conn = Conn::new(Arc::new(Params::read(cfg)?));
    audit::trail(&mut conn)
}
