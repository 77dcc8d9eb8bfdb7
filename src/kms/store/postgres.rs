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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, mpsc};
use std::time::{Duration, Instant};

use postgres::{Client, GenericClient};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{FORMAT_VERSION, Loaded, Mutation, ROWS_AUTHENTICATED, Rows, grant_key, region_key};
use crate::kms::KmsError;
use crate::kms::crypto::RootKey;
use crate::kms::grants::Grant;
use crate::kms::model::KeyRecord;

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
const SCHEMA_VERSION: i32 = 1;
/// Advisory lock keys: schema creation/migration, and the maintenance lease.
const SCHEMA_LOCK: i64 = 0x5ea1_6a7e_0000_0001;
const MAINTENANCE_LOCK: i64 = 0x5ea1_6a7e_0000_0002;
/// A KMS call waits at most this long for the database thread.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

const MIGRATION_1: &str = "
CREATE TABLE kms_meta (name text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE kms_rows (tbl text NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (tbl, k));
CREATE TABLE kms_revision (id boolean PRIMARY KEY DEFAULT true CHECK (id), revision bigint NOT NULL);
INSERT INTO kms_revision (id, revision) VALUES (true, 0);
";

/// Connection settings, read once (the URL holds a password).
struct Params {
    config: postgres::Config,
    tls: rustls::ClientConfig,
}

impl Params {
    fn read(cfg: &PostgresConfig) -> Result<Params, KmsError> {
        let url = match &cfg.url_file {
            Some(path) => {
                crate::kms::check_private(path)?;
                let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    KmsError::Config(format!(
                        "cannot read kms.postgres.url_file {}: {e}",
                        path.display()
                    ))
                })?);
                Zeroizing::new(raw.trim().to_string())
            }
            None => Zeroizing::new(std::env::var(&cfg.url_env).map_err(|_| {
                KmsError::Config(format!(
                    "kms.store = \"postgres\" but no connection URL: set kms.postgres.url_file or the environment variable {}",
                    cfg.url_env
                ))
            })?),
        };
        // The parser's errors name the option, never its value.
        let mut config: postgres::Config = url.parse().map_err(|e| {
            KmsError::Config(format!(
                "the kms.postgres connection URL does not parse: {e}"
            ))
        })?;
        config
            .application_name("sealgate-kms")
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(10));
        let tls = crate::upstream::tls_config(cfg.ca_file.as_deref(), "kms.postgres.ca_file")
            .map_err(KmsError::Config)?;
        Ok(Params { config, tls })
    }

    fn connect(&self) -> Result<Client, KmsError> {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls.clone());
        let mut c = self.config.connect(tls).map_err(unavailable)?;
        // A stuck statement or lock wait must not hold a KMS call (or, with an open
        // transaction, every instance's writes) for long.
        c.batch_execute(
            "SET statement_timeout = 10000; SET lock_timeout = 10000; \
             SET idle_in_transaction_session_timeout = 30000",
        )
        .map_err(unavailable)?;
        Ok(c)
    }
}

/// The database could not be used: logged with detail, answered as the KMS's internal
/// failure.
fn unavailable(e: postgres::Error) -> KmsError {
    KmsError::storage(format_args!("PostgreSQL: {e}"))
}

fn stale(bound: Duration) -> KmsError {
    KmsError::DependencyTimeout(format!(
        "The KMS could not confirm within {} ms that its keys and policies are current (its PostgreSQL database does not answer); retry later.",
        bound.as_millis()
    ))
}

/// One connection, on its own thread.
struct Conn {
    params: Arc<Params>,
    client: Option<Client>,
    /// A transaction holding the revision lock is open.
    in_tx: bool,
}

impl Conn {
    fn new(params: Arc<Params>) -> Conn {
        Conn {
            params,
            client: None,
            in_tx: false,
        }
    }

    fn client(&mut self) -> Result<&mut Client, KmsError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
            self.in_tx = false;
        }
        if self.client.is_none() {
            self.client = Some(self.params.connect()?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Ends an open transaction without committing it (a failed or abandoned change).
    fn rollback(&mut self) {
        if self.in_tx {
            self.in_tx = false;
            if let Some(c) = self.client.as_mut()
                && c.batch_execute("ROLLBACK").is_err()
            {
                self.client = None;
            }
        }
    }

    /// Opens a change's transaction and locks the revision row; returns the revision.
    fn lock_revision(&mut self) -> Result<i64, KmsError> {
        if !self.in_tx {
            self.client()?.batch_execute("BEGIN").map_err(unavailable)?;
            self.in_tx = true;
        }
        let r = self
            .client()?
            .query_one("SELECT revision FROM kms_revision FOR UPDATE", &[])
            .map_err(unavailable)?;
        Ok(r.get(0))
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The thread that owns the connection changes go through.
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn spawn(params: Arc<Params>) -> Result<Worker, KmsError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sealgate-kms-pg".into())
            .spawn(move || {
                let mut conn = Conn::new(params);
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| {
                KmsError::Internal(format!("cannot start the KMS database thread: {e}"))
            })?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the connection; a failure rolls back an open transaction.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, KmsError> + Send + 'static,
    ) -> Result<R, KmsError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c: &mut Conn| {
                let r = f(c);
                if r.is_err() {
                    c.rollback();
                }
                let _ = tx.send(r);
            }))
            .map_err(|_| KmsError::Internal("the KMS database thread has stopped".into()))?;
        rx.recv_timeout(CALL_TIMEOUT).map_err(|_| {
            KmsError::DependencyTimeout(
                "The KMS's PostgreSQL database did not answer in time; retry later.".into(),
            )
        })?
    }
}

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

/// Raw rows as read: (table, key, value).
type RawRows = Vec<(String, Vec<u8>, Vec<u8>)>;

/// One row change, owned (it crosses to the database thread).
enum RowOp {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
    /// Every row of the table whose key starts with the 16 bytes of a key id.
    DeleteKeyRows(&'static str, [u8; 16]),
    /// The grants of a key id in one region (None = home), which only their JSON tells.
    DeleteGrants([u8; 16], Option<String>),
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
        let started = Instant::now();
        let (revision, raw) = writer.run(move |c| {
            let mut tx = c.client()?.transaction().map_err(unavailable)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .map_err(unavailable)?;
            migrate(&mut tx)?;
            let stored: Option<Vec<u8>> = tx
                .query_opt("SELECT value FROM kms_meta WHERE name = 'kcv'", &[])
                .map_err(unavailable)?
                .map(|r| r.get(0));
            match stored {
                Some(s) if s == kcv => {}
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
        let rows = Arc::new(Rows::new(root));
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
            Ok((r, Some(raw)))
        })?;
        self.shared.confirm(started);
        self.adopt(revision, raw)
    }

    /// The contents read at `revision` (if any were read), now this instance's.
    fn adopt(&self, revision: i64, raw: Option<RawRows>) -> Result<Option<Loaded>, KmsError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
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
                Some(read_rows(&mut tx)?)
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
    Ok(())
}

fn read_rows(c: &mut impl GenericClient) -> Result<RawRows, KmsError> {
    Ok(
        c.query("SELECT tbl, k, v FROM kms_rows ORDER BY tbl, k", &[])
            .map_err(unavailable)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    )
}

fn malformed(tbl: &str, k: &[u8]) -> KmsError {
    KmsError::Config(format!(
        "the kms.postgres row {tbl}/{} has a malformed key; refusing to open",
        hex::encode(k)
    ))
}

fn key_id(tbl: &str, k: &[u8]) -> Result<u128, KmsError> {
    let b: [u8; 16] = k.try_into().map_err(|_| malformed(tbl, k))?;
    Ok(u128::from_be_bytes(b))
}

/// (region, rest) of a `region_key`.
fn split_region<'k>(tbl: &str, k: &'k [u8]) -> Result<(String, &'k [u8]), KmsError> {
    let at = k
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| malformed(tbl, k))?;
    let region = std::str::from_utf8(&k[..at]).map_err(|_| malformed(tbl, k))?;
    Ok((region.to_string(), &k[at + 1..]))
}

fn text(tbl: &str, k: &[u8]) -> Result<String, KmsError> {
    String::from_utf8(k.to_vec()).map_err(|_| malformed(tbl, k))
}

/// The rows as the KMS loads them, every row authenticated.
fn decode(rows: &Rows, raw: RawRows) -> Result<Loaded, KmsError> {
    let mut material: HashMap<u128, Vec<(u32, Vec<u8>)>> = HashMap::new();
    let mut loaded = Loaded {
        keys: Vec::new(),
        aliases: Vec::new(),
        grants: Vec::new(),
        settings: Vec::new(),
    };
    let mut records = Vec::new();
    for (tbl, k, v) in raw {
        let json = |t: &str| rows.open(t, &k, &v).map(|(j, _)| j.to_vec());
        match tbl.as_str() {
            "material" => {
                if k.len() != 20 {
                    return Err(malformed(&tbl, &k));
                }
                let id = key_id(&tbl, &k[..16])?;
                let version = u32::from_be_bytes(k[16..].try_into().expect("4 bytes"));
                material.entry(id).or_default().push((version, v));
            }
            "keys" => {
                key_id(&tbl, &k)?;
                let mut rec: KeyRecord = serde_json::from_slice(&json("keys")?)?;
                rec.region = None;
                records.push(rec);
            }
            "region_keys" => {
                let (region, id) = split_region(&tbl, &k)?;
                key_id(&tbl, id)?;
                let mut rec: KeyRecord = serde_json::from_slice(&json("region_keys")?)?;
                rec.region = Some(region);
                records.push(rec);
            }
            "aliases" => {
                let name = text(&tbl, &k)?;
                let rec = serde_json::from_slice(&json("aliases")?)?;
                loaded.aliases.push((None, name, rec));
            }
            "region_aliases" => {
                let (region, name) = split_region(&tbl, &k)?;
                let name = text(&tbl, name)?;
                let rec = serde_json::from_slice(&json("region_aliases")?)?;
                loaded.aliases.push((Some(region), name, rec));
            }
            "grants" => {
                let g: Grant = serde_json::from_slice(&json("grants")?)?;
                loaded.grants.push(g);
            }
            "settings" => {
                let name = text(&tbl, &k)?;
                loaded.settings.push((name, json("settings")?));
            }
            _ => return Err(malformed(&tbl, &k)),
        }
    }
    for rec in records {
        let mut mats = material.get(&rec.id.as_u128()).cloned().unwrap_or_default();
        mats.sort_by_key(|(v, _)| *v);
        loaded.keys.push((rec, mats));
    }
    Ok(loaded)
}

/// The row changes of `muts`, sealed as `store/mod.rs` describes.
fn row_ops(rows: &Rows, muts: &[Mutation<'_>]) -> Result<Vec<RowOp>, KmsError> {
    let mut ops = Vec::with_capacity(muts.len());
    for m in muts {
        let op = match m {
            Mutation::PutKey(rec) => {
                let json = serde_json::to_vec(rec)?;
                let id = rec.id.as_u128().to_be_bytes();
                match &rec.region {
                    None => RowOp::Put("keys", id.to_vec(), rows.seal("keys", &id, &json)),
                    Some(r) => {
                        let k = region_key(r, &id);
                        let v = rows.seal("region_keys", &k, &json);
                        RowOp::Put("region_keys", k, v)
                    }
                }
            }
            Mutation::PutMaterial {
                id,
                version,
                sealed,
            } => {
                let mut k = id.as_u128().to_be_bytes().to_vec();
                k.extend_from_slice(&version.to_be_bytes());
                RowOp::Put("material", k, sealed.to_vec())
            }
            Mutation::DropKey {
                region,
                id,
                material,
            } => {
                let idb = id.as_u128().to_be_bytes();
                ops.push(match region {
                    None => RowOp::Delete("keys", idb.to_vec()),
                    Some(r) => RowOp::Delete("region_keys", region_key(r, &idb)),
                });
                if *material {
                    ops.push(RowOp::DeleteKeyRows("material", idb));
                }
                RowOp::DeleteGrants(idb, region.map(str::to_string))
            }
            Mutation::DeleteMaterial(id) => {
                RowOp::DeleteKeyRows("material", id.as_u128().to_be_bytes())
            }
            Mutation::PutAlias(name, rec) => {
                let json = serde_json::to_vec(rec)?;
                let v = rows.seal("aliases", name.as_bytes(), &json);
                RowOp::Put("aliases", name.as_bytes().to_vec(), v)
            }
            Mutation::DeleteAlias(name) => RowOp::Delete("aliases", name.as_bytes().to_vec()),
            Mutation::PutRegionAlias(region, name, rec) => {
                let k = region_key(region, name.as_bytes());
                let v = rows.seal("region_aliases", &k, &serde_json::to_vec(rec)?);
                RowOp::Put("region_aliases", k, v)
            }
            Mutation::DeleteRegionAlias(region, name) => {
                RowOp::Delete("region_aliases", region_key(region, name.as_bytes()))
            }
            Mutation::PutGrant(g) => {
                let k = grant_key(g.key_id.as_u128(), &g.grant_id);
                let v = rows.seal("grants", &k, &serde_json::to_vec(g)?);
                RowOp::Put("grants", k, v)
            }
            Mutation::DeleteGrant(key, id) => RowOp::Delete("grants", grant_key(key.as_u128(), id)),
            Mutation::PutSetting(name, json) => {
                let v = rows.seal("settings", name.as_bytes(), json);
                RowOp::Put("settings", name.as_bytes().to_vec(), v)
            }
            Mutation::DeleteSetting(name) => RowOp::Delete("settings", name.as_bytes().to_vec()),
        };
        ops.push(op);
    }
    Ok(ops)
}

fn run_op(c: &mut Client, rows: &Rows, op: RowOp) -> Result<(), KmsError> {
    match op {
        RowOp::Put(tbl, k, v) => c.execute(
            "INSERT INTO kms_rows (tbl, k, v) VALUES ($1, $2, $3) \
             ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v",
            &[&tbl, &k, &v],
        ),
        RowOp::Delete(tbl, k) => c.execute(
            "DELETE FROM kms_rows WHERE tbl = $1 AND k = $2",
            &[&tbl, &k],
        ),
        RowOp::DeleteKeyRows(tbl, id) => c.execute(
            "DELETE FROM kms_rows WHERE tbl = $1 AND substr(k, 1, 16) = $2",
            &[&tbl, &id.to_vec()],
        ),
        RowOp::DeleteGrants(id, region) => {
            let found = c
                .query(
                    "SELECT k, v FROM kms_rows WHERE tbl = 'grants' AND substr(k, 1, 16) = $1",
                    &[&id.to_vec()],
                )
                .map_err(unavailable)?;
            for r in found {
                let (k, v): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
                let region_matches = rows
                    .open("grants", &k, &v)
                    .ok()
                    .and_then(|(json, _)| serde_json::from_slice::<Grant>(json).ok())
                    .is_none_or(|g| g.region == region);
                if region_matches {
                    c.execute(
                        "DELETE FROM kms_rows WHERE tbl = 'grants' AND k = $1",
                        &[&k],
                    )
                    .map_err(unavailable)?;
                }
            }
            Ok(0)
        }
    }
    .map_err(unavailable)?;
    Ok(())
}
