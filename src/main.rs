//! The `sealgate` binary: parse the command line, load the config, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
    about = "S3-compatible encrypting reverse proxy with an embedded KMS"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "SEALGATE_LOG", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "SEALGATE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Serve {
        /// TOML config file (environment variables SEALGATE_* override it; flags override both).
        #[arg(long, short, env = "SEALGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8014.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Store endpoint URL, e.g. http://127.0.0.1:3900.
        #[arg(long)]
        upstream_endpoint: Option<String>,
        /// Check the configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// The KMS audit log: verify its hash chain, show its end, or search it.
    Audit {
        /// Config file (to find the log); or give --log.
        #[arg(long, short, env = "SEALGATE_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// The audit log file (default: from the config's kms section).
        #[arg(long, global = true)]
        log: Option<PathBuf>,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Encrypt, in place, the objects of a bucket that sealgate did not encrypt (existing
    /// data), through a running sealgate. Each object is read back and compared before the
    /// job moves on; objects already encrypted are skipped, so the job can be re-run.
    Migrate {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Re-wrap every object's data key under another KMS key (e.g. to move a bucket to a
    /// new CMK): the store copies the bodies server-side; each object is read back and
    /// compared. Objects already under the key are skipped, so the job can be re-run.
    Rewrap {
        /// The KMS key id or key ARN to wrap under.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Exit 0 when URL answers with a 2xx status, 1 otherwise (container health checks:
    /// the image has no curl).
    Probe {
        #[arg(default_value = "http://127.0.0.1:8014/health")]
        url: String,
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// KMS administration that needs no running server.
    Kms {
        #[arg(long, short, env = "SEALGATE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: KmsCmd,
    },
}

/// What `migrate` and `rewrap` go over, and as whom they talk to sealgate.
#[derive(clap::Args)]
struct JobArgs {
    /// sealgate's S3 endpoint, e.g. http://127.0.0.1:8014.
    #[arg(long, env = "SEALGATE_ENDPOINT")]
    endpoint: String,
    #[arg(long)]
    bucket: String,
    #[arg(long, default_value = "")]
    prefix: String,
    /// List what would be changed and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Resume an interrupted run after this key (the last one it printed).
    #[arg(long)]
    start_after: Option<String>,
    /// Versioned buckets: delete the version each replaced object was read from, once
    /// the replacement is verified (otherwise it remains as a noncurrent version).
    #[arg(long)]
    delete_replaced_versions: bool,
    /// A sealgate client access key (the principal needs kms:GenerateDataKey).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

impl JobArgs {
    fn into_parts(self) -> (sealgate::admin::Target, sealgate::admin::Scope) {
        (
            sealgate::admin::Target {
                endpoint: self.endpoint,
                access_key_id: self.access_key_id,
                secret_access_key: self.secret_access_key,
                region: self.region,
            },
            sealgate::admin::Scope {
                bucket: self.bucket,
                prefix: self.prefix,
                start_after: self.start_after,
                dry_run: self.dry_run,
                delete_replaced: self.delete_replaced_versions,
            },
        )
    }
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check every record's hash chain; exit status 1 if anything was edited, removed,
    /// reordered or inserted (the report says where). With `kms.store = "postgres"` (and
    /// no --log): every instance's chain in the cluster's trail.
    Verify,
    /// Print every event as JSON lines: the log file, or with `kms.store = "postgres"`
    /// (and no --log) the whole cluster's trail in time order.
    Export,
    /// Print the last N events (JSON lines).
    Tail {
        #[arg(short, default_value_t = 20)]
        n: usize,
    },
    /// Print events matching all given filters (JSON lines).
    Query(AuditQuery),
}

#[derive(clap::Args)]
struct AuditQuery {
    /// Key id or ARN.
    #[arg(long)]
    key: Option<String>,
    /// Principal ARN or user name.
    #[arg(long)]
    principal: Option<String>,
    /// Event name, e.g. Decrypt.
    #[arg(long)]
    event: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Only the last N matching events.
    #[arg(long)]
    limit: Option<usize>,
}

impl AuditQuery {
    /// The filter and the limit the options name.
    fn filter(self) -> Result<(sealgate::kms::AuditFilter, Option<usize>), String> {
        let filter = sealgate::kms::AuditFilter {
            key: self.key,
            principal: self.principal,
            event_name: self.event,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
        };
        Ok((filter, self.limit))
    }
}

#[derive(Subcommand)]
enum KmsCmd {
    /// Explain why a principal is allowed or denied an action on a key, naming the
    /// policy statement or grant that decides it.
    Explain {
        /// Principal name from the config's access_keys (e.g. alice).
        #[arg(long)]
        principal: String,
        /// Action, e.g. Decrypt or kms:GenerateDataKey.
        #[arg(long)]
        action: String,
        /// Key id, ARN or alias.
        #[arg(long)]
        key: String,
        /// Encryption context pair k=v (repeatable).
        #[arg(long = "context")]
        context: Vec<String>,
        /// Evaluate as a call made through S3 (kms:ViaService).
        #[arg(long)]
        via_s3: bool,
    },
    /// Key-deletion impact report: which objects in the store still need a key. Run it
    /// before `schedule-key-deletion`; after the waiting period those objects are lost.
    Impact {
        /// Key id or key ARN.
        #[arg(long)]
        key: String,
        /// Buckets to scan (default: all the store's buckets).
        #[arg(long = "bucket")]
        buckets: Vec<String>,
    },
    /// Copy the KMS (keys, sealed key material, aliases, grants, settings) from the store
    /// the config uses into another, empty one, and verify the copy: `--to postgres`
    /// copies a redb file into `[kms.postgres]`, `--to redb --db FILE` copies back into a
    /// new file. Stop sealgate first; then set `kms.store` to the copy's.
    MigrateStore {
        /// postgres or redb.
        #[arg(long)]
        to: String,
        /// With `--to redb`: the new database file.
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Re-seal every key's material and re-authenticate every row under a new root key,
    /// in one transaction: the config's root key is the new one, and
    /// `kms.previous_root_key_file` (or $SEALGATE_KMS_PREVIOUS_ROOT_KEY) the one the
    /// database is sealed under. With PostgreSQL, run it while the instances serve (each
    /// started with both keys); a redb file must not be open. See docs/operations.md.
    /// With `[kms_unseal]`, the previous key may be a sealed file
    /// (`kms_unseal.previous_sealed_root_key_file`).
    RotateRoot,
    /// Seal a root key with the unsealer `[kms_unseal]` configures (PKCS#11 token,
    /// Vault/OpenBao Transit, AWS-KMS-API endpoint) into a new file, and check that it
    /// opens again. The key is a fresh random one (`--generate`: a new installation, or
    /// the new key of a rotation) or the one in `--root-key-file` (moving an existing
    /// root key into the unsealer). See docs/kms.md, "Key stores".
    SealRoot {
        /// Where to write the sealed root key (must not exist; created mode 600).
        #[arg(long)]
        out: PathBuf,
        /// Seal a fresh random 32-byte root key.
        #[arg(long, conflicts_with = "root_key_file")]
        generate: bool,
        /// Seal the root key in this file (raw, hex or base64, as `kms.root_key_file`).
        #[arg(long, required_unless_present = "generate")]
        root_key_file: Option<PathBuf>,
        /// PKCS#11: create the key `kms_unseal.key` in the token if it does not exist
        /// (a non-extractable AES-256 key).
        #[arg(long)]
        create_key: bool,
    },
}

/// Runs an admin job over a bucket: a progress bar on stderr (when it is a terminal), one
/// line per object changed or failed on stdout, then a summary.
fn admin_job(args: JobArgs, job: &sealgate::admin::Job) -> Result<std::process::ExitCode, String> {
    let (t, scope) = args.into_parts();
    let rt =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (done, did, what) = match job {
        sealgate::admin::Job::Migrate => ("already encrypted", "encrypted", "migrate"),
        sealgate::admin::Job::Rewrap { .. } => ("already under the key", "re-wrapped", "rewrap"),
    };
    let mut bar = sealgate::admin::TermProgress::new(what);
    let r = rt.block_on(sealgate::admin::run(&t, job, &scope, &mut bar))?;
    println!(
        "{} listed, {} {done}, {} {did} ({} bytes), {} failed{}",
        r.listed,
        r.already_encrypted,
        r.encrypted,
        r.bytes,
        r.failed,
        if scope.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    if r.replaced_kept + r.replaced_deleted > 0 {
        println!(
            "versions replaced: {} deleted, {} kept as noncurrent versions",
            r.replaced_deleted, r.replaced_kept
        );
    }
    if r.noncurrent_remaining > 0 {
        println!(
            "{} noncurrent versions are {} (listed above)",
            r.noncurrent_remaining,
            if what == "migrate" {
                "still not encrypted"
            } else {
                "still not under the key"
            }
        );
    }
    if r.failed > 0 {
        println!("re-run the same command to retry the failed objects (done ones are skipped)");
    }
    Ok(if r.failed > 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn probe(url: &str, timeout_secs: u64) -> Result<std::process::ExitCode, String> {
    let rt =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let status = rt.block_on(async {
        // Built inside the runtime: reqwest's timer needs it.
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(timeout_secs))
            .build()
            .map_err(|e| e.to_string())?;
        let r = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>(r.status())
    })?;
    println!("{url}: {status}");
    Ok(if status.is_success() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

fn load_config(path: Option<&std::path::Path>) -> Result<sealgate::config::Config, String> {
    let mut cfg = sealgate::config::Config::load(path).map_err(|e| e.to_string())?;
    cfg.kms.account = cfg.account.clone();
    Ok(cfg)
}

fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s}: {e}"))?;
    Ok(std::time::SystemTime::from(t))
}

/// `sealgate audit` on the trail a cluster keeps in PostgreSQL: every instance's chain.
fn cluster_audit(
    cfg: &sealgate::config::Config,
    cmd: AuditCmd,
) -> Result<std::process::ExitCode, String> {
    match cmd {
        AuditCmd::Verify => {
            let chains =
                sealgate::kms::cluster_audit_chains(&cfg.kms).map_err(|e| e.to_string())?;
            let root = sealgate::unseal::root_key(cfg)?;
            let mut intact = true;
            for (chain, lines) in &chains {
                let label = PathBuf::from(format!("chain {}", &chain[..chain.len().min(16)]));
                let report = sealgate::kms::verify_audit_lines(&label, lines, &root);
                intact &= report.is_intact();
                println!("{report}");
            }
            println!("{} chains in the cluster's audit trail", chains.len());
            Ok(if intact {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
        cmd => {
            let all = sealgate::kms::cluster_audit_trail(&cfg.kms).map_err(|e| e.to_string())?;
            let lines = all.iter().map(String::as_bytes);
            let records = match cmd {
                AuditCmd::Tail { n } => sealgate::kms::query_audit_lines(
                    lines,
                    &sealgate::kms::AuditFilter::default(),
                    Some(n),
                ),
                AuditCmd::Query(q) => {
                    let (filter, limit) = q.filter()?;
                    sealgate::kms::query_audit_lines(lines, &filter, limit)
                }
                _ => {
                    for line in &all {
                        println!("{line}");
                    }
                    return Ok(std::process::ExitCode::SUCCESS);
                }
            };
            for r in records {
                println!("{}", r.event);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn audit(
    config: Option<PathBuf>,
    log: Option<PathBuf>,
    cmd: AuditCmd,
) -> Result<std::process::ExitCode, String> {
    let explicit_log = log.is_some();
    let cfg = match (&log, &config) {
        (Some(_), None) => None,
        _ => Some(load_config(config.as_deref())?),
    };
    let path = match (log, &cfg) {
        (Some(p), _) => p,
        (None, Some(c)) => c.kms.audit_path(),
        (None, None) => unreachable!("a config is loaded when no log is named"),
    };
    let cluster = cfg
        .as_ref()
        .filter(|c| c.kms.store == sealgate::kms::StoreKind::Postgres && !explicit_log);
    if let Some(c) = cluster {
        return cluster_audit(c, cmd);
    }
    match cmd {
        AuditCmd::Export => {
            let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for line in std::io::BufRead::lines(std::io::BufReader::new(f)) {
                println!("{}", line.map_err(|e| e.to_string())?);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        AuditCmd::Verify => {
            // Keyed records are checked with the root key (from the config, or the
            // default environment variable when only --log is given).
            let root = match &cfg {
                Some(c) => sealgate::unseal::root_key(c),
                None => sealgate::kms::KmsConfig::default()
                    .load_root_key()
                    .map_err(|e| e.to_string()),
            };
            let report = match root {
                Ok(root) => sealgate::kms::verify_audit_log_with_key(&path, &root, None),
                Err(e) => {
                    eprintln!(
                        "warning: no KMS root key ({e}): the records' MACs cannot be checked, \
                         only their hash chain (which a consistent rewrite passes)"
                    );
                    sealgate::kms::verify_audit_log(&path)
                }
            }
            .map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(if report.is_intact() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
        AuditCmd::Tail { n } => {
            for r in sealgate::kms::tail_audit_log(&path, n).map_err(|e| e.to_string())? {
                println!("{}", r.event);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        AuditCmd::Query(q) => {
            let (filter, limit) = q.filter()?;
            for r in
                sealgate::kms::query_audit_log(&path, &filter, limit).map_err(|e| e.to_string())?
            {
                println!("{}", r.event);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn kms_cmd(config: Option<PathBuf>, cmd: KmsCmd) -> Result<std::process::ExitCode, String> {
    let mut cfg = load_config(config.as_deref())?;
    match cmd {
        KmsCmd::Impact { key, buckets } => {
            cfg.validate().map_err(|e| e.to_string())?;
            let store = sealgate::upstream::Upstream::new(&cfg.upstream)?;
            let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            let mut bar = sealgate::admin::TermProgress::new("impact");
            let impact = rt.block_on(sealgate::admin::key_impact(
                &store,
                &key,
                &buckets,
                std::slice::from_ref(&cfg.state_bucket),
                &mut bar,
            ))?;
            println!(
                "{} of {} objects still need key {key}",
                impact.objects(),
                impact.scanned
            );
            for (b, n, examples) in &impact.buckets {
                println!("  {b}: {n} (e.g. {})", examples.join(", "));
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        KmsCmd::MigrateStore { to, db } => {
            let mut dest = cfg.kms.clone();
            match (to.as_str(), db) {
                ("postgres", None) => dest.store = sealgate::kms::StoreKind::Postgres,
                ("redb", Some(path)) => {
                    dest.store = sealgate::kms::StoreKind::Redb;
                    dest.db_path = path;
                }
                ("redb", None) => return Err("--to redb needs --db FILE (a new file)".into()),
                ("postgres", Some(_)) => {
                    return Err("--db is for --to redb; --to postgres uses [kms.postgres]".into());
                }
                _ => return Err(format!("--to must be postgres or redb, not {to}")),
            }
            if dest.store == cfg.kms.store {
                return Err(format!("the config's KMS is in {to} already"));
            }
            if dest.store == sealgate::kms::StoreKind::Redb && dest.db_path.exists() {
                return Err(format!(
                    "{} exists; migrate-store writes a new file",
                    dest.db_path.display()
                ));
            }
            let root = sealgate::unseal::root_key(&cfg)?;
            let n = sealgate::kms::Kms::copy_store(&cfg.kms, &dest, &root)
                .map_err(|e| e.to_string())?;
            println!(
                "copied and verified: {} keys ({} material versions), {} aliases, {} grants, {} settings",
                n.keys, n.material_versions, n.aliases, n.grants, n.settings
            );
            println!("now set kms.store = \"{to}\" in the config and start sealgate");
            Ok(std::process::ExitCode::SUCCESS)
        }
        KmsCmd::RotateRoot => {
            let root = sealgate::unseal::root_key(&cfg)?;
            let n =
                sealgate::kms::Kms::rotate_root_key(&cfg.kms, &root).map_err(|e| e.to_string())?;
            println!(
                "re-sealed and verified under the new root key: {} keys ({} material versions), {} rows",
                n.keys, n.material_versions, n.rows
            );
            println!(
                "instances no longer need the previous root key: drop kms.previous_root_key_file (or $SEALGATE_KMS_PREVIOUS_ROOT_KEY) at their next restart, and keep the key offline to verify audit records from before the rotation"
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        KmsCmd::SealRoot {
            out,
            generate,
            root_key_file,
            create_key,
        } => {
            let u = cfg.kms_unseal.as_ref().ok_or_else(|| {
                "seal-root needs a [kms_unseal] section naming the unsealer (see docs/kms.md, \"Key stores\")".to_string()
            })?;
            let root = match (&root_key_file, generate) {
                (Some(path), _) => {
                    // A key others can read is a key others may have: refused, as sealgate
                    // refuses such a `kms.root_key_file`.
                    sealgate::files::check_private(path, "root key file")?;
                    let raw = zeroize::Zeroizing::new(
                        std::fs::read(path)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                    );
                    sealgate::kms::RootKey::parse_bytes(&raw, &path.display().to_string())
                        .map_err(|e| e.to_string())?
                }
                (None, _) => sealgate::kms::random_bytes(32).map_err(|e| e.to_string())?,
            };
            let kcv = sealgate::unseal::seal_root_key(u, &root, &out, create_key)?;
            println!(
                "sealed the root key into {} (check value {}…); it opened again through the unsealer",
                out.display(),
                &kcv[..16]
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        KmsCmd::Explain {
            principal,
            action,
            key,
            context,
            via_s3,
        } => {
            let table = cfg.access_key_table();
            let who = cfg
                .access_keys
                .iter()
                .find(|k| k.principal == principal)
                .and_then(|k| table.principal(&k.access_key_id).cloned())
                .ok_or_else(|| {
                    format!("no principal named {principal} in the config's access_keys")
                })?;
            let mut ctx = sealgate::kms::EncryptionContext::new();
            for pair in context {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--context {pair}: expected key=value"))?;
                ctx.insert(k.to_string(), v.to_string());
            }
            let kms = sealgate::kms::Kms::open_with_root_key(
                &cfg.kms,
                std::sync::Arc::new(sealgate::kms::SystemClock),
                sealgate::unseal::root_key(&cfg)?,
            )
            .map_err(|e| e.to_string())?;
            let call = if via_s3 {
                sealgate::kms::CallContext::s3(None, None)
            } else {
                sealgate::kms::CallContext::default()
            };
            let caller = sealgate::kms::Caller::new(&who, &call);
            let e = kms
                .explain(caller, &action, &key, &ctx)
                .map_err(|e| e.to_string())?;
            println!("{e}");
            Ok(if e.allowed {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
    }
}

fn init_logging(level: &str, format: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Crates that log request details at debug/trace are capped whatever the filter asks
    // for (`--log-level trace,s3s=trace` included): s3s (paths, queries, computed
    // signatures) and aws-sigv4 (canonical requests to the store: header and metadata
    // values). No log level prints credentials, signatures or metadata values.
    const CAPPED: [(&str, tracing::Level); 2] = [
        ("s3s", tracing::Level::WARN),
        ("aws_sigv4", tracing::Level::INFO),
    ];
    let cap = tracing_subscriber::filter::filter_fn(|m| {
        CAPPED
            .iter()
            .all(|(t, max)| !m.target().starts_with(t) || m.level() <= max)
    });
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = if format == "json" {
        layer.json().boxed()
    } else {
        layer.boxed()
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(cap))
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level, &cli.log_format);
    let admin_error = |e: String| {
        eprintln!("sealgate: {e}");
        std::process::ExitCode::from(2)
    };
    match cli.cmd {
        Cmd::Audit { config, log, cmd } => audit(config, log, cmd).unwrap_or_else(admin_error),
        Cmd::Kms { config, cmd } => kms_cmd(config, cmd).unwrap_or_else(admin_error),
        Cmd::Probe { url, timeout_secs } => probe(&url, timeout_secs).unwrap_or_else(admin_error),
        Cmd::Migrate { job } => {
            admin_job(job, &sealgate::admin::Job::Migrate).unwrap_or_else(admin_error)
        }
        Cmd::Rewrap { key, job } => {
            admin_job(job, &sealgate::admin::Job::Rewrap { key }).unwrap_or_else(admin_error)
        }
        Cmd::Serve {
            config,
            listen,
            upstream_endpoint,
            check,
        } => {
            let mut cfg = match sealgate::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(u) = upstream_endpoint {
                cfg.upstream.endpoint = u;
            }
            if let Err(e) = sealgate::check_config(&mut cfg) {
                eprintln!("sealgate: {e}");
                return std::process::ExitCode::from(2);
            }
            if check {
                println!("configuration OK");
                return std::process::ExitCode::SUCCESS;
            }
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = cfg.worker_threads {
                builder.worker_threads(n);
            }
            let rt = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sealgate: cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(cfg.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
                sealgate::run(listener, cfg, shutdown_signal()).await
            });
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
