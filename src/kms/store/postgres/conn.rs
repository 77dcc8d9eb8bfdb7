//! Connections to the KMS's PostgreSQL database: settings read once, one connection per
//! thread, and the worker thread changes go through.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use postgres::Client;
use zeroize::Zeroizing;

use super::PostgresConfig;
use crate::kms::KmsError;

/// A KMS call waits at most this long for the database thread.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Connection settings, read once (the URL holds a password).
pub(super) struct Params {
    config: postgres::Config,
    tls: rustls::ClientConfig,
}

impl Params {
    pub(super) fn read(cfg: &PostgresConfig) -> Result<Params, KmsError> {
        let url = match &cfg.url_file {
            Some(path) => {
                crate::kms::check_private(path, "kms.postgres.url_file")?;
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
pub(super) fn unavailable(e: postgres::Error) -> KmsError {
    KmsError::storage(format_args!("PostgreSQL: {e}"))
}

pub(super) fn stale(bound: Duration) -> KmsError {
    KmsError::DependencyTimeout(format!(
        "The KMS could not confirm within {} ms that its keys and policies are current (its PostgreSQL database does not answer); retry later.",
        bound.as_millis()
    ))
}

/// One connection, on its own thread.
pub(super) struct Conn {
    params: Arc<Params>,
    pub(super) client: Option<Client>,
    /// A transaction holding the revision lock is open.
    pub(super) in_tx: bool,
}

impl Conn {
    pub(super) fn new(params: Arc<Params>) -> Conn {
        Conn {
            params,
            client: None,
            in_tx: false,
        }
    }

    pub(super) fn client(&mut self) -> Result<&mut Client, KmsError> {
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
    pub(super) fn rollback(&mut self) {
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
    pub(super) fn lock_revision(&mut self) -> Result<i64, KmsError> {
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
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    pub(super) fn spawn(params: Arc<Params>) -> Result<Worker, KmsError> {
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
    pub(super) fn run<R: Send + 'static>(
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
