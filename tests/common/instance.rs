//! sealgate under test: in process on 127.0.0.1:0 ([`Sealgate`]), or the binary as a
//! separate process that a test can SIGKILL ([`SealgateProcess`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sealgate::config::{AccessKeyConfig, Config, Secret, TlsConfig, UpstreamConfig};

#[allow(unused_imports)]
use super::*;

/// A running in-process sealgate.
pub struct Sealgate {
    pub addr: SocketAddr,
    /// Holds the KMS database and root key of this instance.
    pub state_dir: std::sync::Arc<tempfile::TempDir>,
    pub endpoint: String,
    pub client: aws_sdk_s3::Client,
    /// A client of the store behind this sealgate (what the store really holds).
    pub direct: aws_sdk_s3::Client,
    /// The certificate (PEM file) of sealgate's TLS listener, when it has one; `client`
    /// trusts it.
    pub ca: Option<PathBuf>,
    /// The config it runs with (KMS paths and store filled in).
    pub cfg: Config,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// The config tests use: Garage upstream, one client key.
pub fn test_config() -> Config {
    test_config_on(Store::Garage)
}

/// The config tests use on `store`: that store upstream, one client key.
pub fn test_config_on(store: Store) -> Config {
    let g = store.shared();
    config_for_store(&g.endpoint, &g.access_key, &g.secret_key, &g.region)
}

impl Sealgate {
    /// Starts sealgate against the shared Garage.
    pub async fn start() -> Sealgate {
        Self::start_with(test_config()).await
    }

    /// Starts sealgate against the shared instance of `store`.
    pub async fn start_on(store: Store) -> Sealgate {
        Self::start_with(test_config_on(store)).await
    }

    pub async fn start_with(cfg: Config) -> Sealgate {
        let state_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        Self::start_with_dir(cfg, state_dir).await
    }

    async fn start_with_dir(
        mut cfg: Config,
        state_dir: std::sync::Arc<tempfile::TempDir>,
    ) -> Sealgate {
        if cfg.kms.root_key_file.is_none() {
            let root = state_dir.path().join("root.key");
            write_private(&root, random_hex(32).as_bytes());
            cfg.kms.root_key_file = Some(root);
            cfg.kms.db_path = state_dir.path().join("kms.redb");
            if super::pg::kms_on_postgres() {
                super::pg::use_postgres(&mut cfg, state_dir.path());
            }
        }
        Self::start_in(cfg, state_dir).await
    }

    /// Starts sealgate with a TLS listener (a self-signed certificate for 127.0.0.1)
    /// against the shared instance of `store`; `client` trusts the certificate.
    pub async fn start_tls_on(store: Store) -> Sealgate {
        Self::start_tls_with(test_config_on(store)).await
    }

    /// As [`Self::start_with`], with a TLS listener.
    pub async fn start_tls_with(mut cfg: Config) -> Sealgate {
        let state_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        cfg.tls = Some(write_test_cert(state_dir.path()));
        Self::start_with_dir(cfg, state_dir).await
    }

    /// A reqwest client for this sealgate (trusting its certificate, if it has TLS).
    pub fn http(&self) -> reqwest::Client {
        match &self.ca {
            Some(ca) => https_client(&std::fs::read(ca).unwrap()),
            None => reqwest::Client::new(),
        }
    }

    /// Starts with a config whose KMS paths are already set (e.g. a restart on the same state).
    pub async fn start_in(cfg: Config, state_dir: std::sync::Arc<tempfile::TempDir>) -> Sealgate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let ca = cfg.tls.as_ref().map(|t| t.cert_file.clone());
        let up = &cfg.upstream;
        let direct = s3_client(
            &up.endpoint,
            &up.access_key_id,
            up.secret_access_key.expose(),
            &up.region,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let kept = cfg.clone();
        let task = tokio::spawn(sealgate::run(listener, cfg, async move {
            let _ = rx.await;
        }));
        let endpoint = format!("{scheme}://127.0.0.1:{}", addr.port());
        let client = match &ca {
            Some(ca) => s3_client_trusting(
                &endpoint,
                CLIENT_AK,
                CLIENT_SK,
                "us-east-1",
                &std::fs::read(ca).unwrap(),
            ),
            None => s3_client(&endpoint, CLIENT_AK, CLIENT_SK, "us-east-1"),
        };
        Sealgate {
            addr,
            state_dir,
            endpoint,
            client,
            direct,
            ca,
            cfg: kept,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Creates a fresh bucket through sealgate and returns its name.
    pub async fn bucket(&self) -> String {
        let name = format!("t-{}", &random_hex(8));
        self.client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket through sealgate");
        name
    }

    /// Stops sealgate and waits for it to drain.
    /// Stops this instance and starts another with the same config and state (KMS
    /// database, root key, audit log).
    pub async fn restart(self) -> Sealgate {
        let (cfg, dir) = (self.cfg.clone(), self.state_dir.clone());
        self.stop().await.unwrap();
        Sealgate::start_in(cfg, dir).await
    }

    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(|e| e.to_string())?,
            None => Ok(()),
        }
    }
}

/// A self-signed certificate for 127.0.0.1/localhost, written as PEM into `dir`.
pub fn write_test_cert(dir: &Path) -> TlsConfig {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&key_file, ck.key_pair.serialize_pem()).unwrap();
    TlsConfig {
        cert_file,
        key_file,
    }
}

/// An identity policy allowing every S3 action on every resource: the test key's, so it
/// may do everything in S3 without being root (a root principal would change what KMS
/// key policies mean for it).
pub const S3_FULL_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

/// A sealgate config for any store, with the test client key.
pub fn config_for_store(endpoint: &str, ak: &str, sk: &str, region: &str) -> Config {
    Config {
        upstream: UpstreamConfig {
            endpoint: endpoint.to_string(),
            region: region.to_string(),
            access_key_id: ak.to_string(),
            secret_access_key: Secret::new(sk.to_string()),
            ..UpstreamConfig::default()
        },
        access_keys: vec![AccessKeyConfig {
            access_key_id: CLIENT_AK.into(),
            secret_access_key: Secret::new(CLIENT_SK),
            principal: "tester".into(),
            policy: Some(S3_FULL_POLICY.into()),
            ..AccessKeyConfig::default()
        }],
        ..Config::default()
    }
}

/// The `sealgate` binary running as a separate process (so a test can SIGKILL it), with
/// its KMS database and root key in `dir`, which outlives the process for a restart.
pub struct SealgateProcess {
    pub endpoint: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl SealgateProcess {
    /// Writes `dir/sealgate.toml` (and a root key, if `dir` has none yet) for the given
    /// store and starts the binary; returns when `/health` answers.
    pub async fn start(dir: &Path, endpoint: &str, ak: &str, sk: &str, region: &str) -> Self {
        Self::start_logging(dir, (endpoint, ak, sk, region), "info").await
    }

    /// As [`Self::start`], with `--log-level log_level` (the log is `dir/sealgate.log`).
    pub async fn start_logging(
        dir: &Path,
        store: (&str, &str, &str, &str),
        log_level: &str,
    ) -> Self {
        Self::start_with(dir, store, log_level, "").await
    }

    /// As [`Self::start_logging`], with `top_level` (TOML lines such as
    /// `worker_threads = 1`) at the head of the config file.
    pub async fn start_with(
        dir: &Path,
        store: (&str, &str, &str, &str),
        log_level: &str,
        top_level: &str,
    ) -> Self {
        // Under SEALGATE_TEST_KMS_STORE=postgres, a database of the shared cluster, kept
        // for restarts on the same `dir`.
        let kms = if super::pg::kms_on_postgres() {
            let url = dir.join("pg-url");
            if !url.exists() {
                write_private(
                    &url,
                    super::pg::Postgres::shared().new_database().as_bytes(),
                );
            }
            format!(
                "store = \"postgres\"\npostgres.url_file = \"{}\"\n",
                url.display()
            )
        } else {
            String::new()
        };
        Self::start_full(dir, store, log_level, top_level, &kms).await
    }

    /// As [`Self::start_with`], with `kms_lines` added to the `[kms]` table.
    pub async fn start_full(
        dir: &Path,
        store: (&str, &str, &str, &str),
        log_level: &str,
        top_level: &str,
        kms_lines: &str,
    ) -> Self {
        let root = dir.join("root.key");
        if !root.exists() {
            write_private(&root, random_hex(32).as_bytes());
        }
        let port = free_port();
        let mut cfg = config_text(dir, store, port, top_level, kms_lines);
        cfg.push_str(&format!("root_key_file = \"{}\"\n", root.display()));
        write_private(&dir.join("sealgate.toml"), cfg.as_bytes());
        Self::start_config(dir, port, log_level, &[]).await
    }

    /// Starts the binary on `dir/sealgate.toml` (already written, listening on `port`),
    /// with `envs` added to its environment; returns when `/health` answers.
    pub async fn start_config(
        dir: &Path,
        port: u16,
        log_level: &str,
        envs: &[(&str, &str)],
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("sealgate.log"))
            .unwrap();
        let child = Command::new(sealgate_bin())
            .args(["--log-level", log_level, "serve", "--config"])
            .arg(dir.join("sealgate.toml"))
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", sealgate_bin().display()));
        let mut p = SealgateProcess {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", p.endpoint)).await
                && r.status().is_success()
            {
                return p;
            }
            if let Some(Ok(Some(st))) = p.child.as_mut().map(|c| c.try_wait()) {
                panic!("sealgate exited with {st}; its log:\n{}", p.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sealgate did not answer /health within 30 s; its log:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL (no graceful shutdown, no flushing), and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sealgate.log")).unwrap_or_default()
    }

    /// An S3 client for this sealgate (test client key).
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, CLIENT_AK, CLIENT_SK, "us-east-1")
    }

    /// A KMS client for this sealgate (test client key).
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        kms_client_at(&self.endpoint)
    }
}

/// The sealgate binary under test.
pub fn sealgate_bin() -> PathBuf {
    std::env::var("SEALGATE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_sealgate")))
}

/// A config file's text for the binary in `dir`: `store` upstream, listening on `port`,
/// the test client key, `top_level` lines at the head and a `[kms]` table (database in
/// `dir`) ending with `kms_lines` and no root key: the caller adds `root_key_file` or
/// a `[kms_unseal]` table.
pub fn config_text(
    dir: &Path,
    (endpoint, ak, sk, region): (&str, &str, &str, &str),
    port: u16,
    top_level: &str,
    kms_lines: &str,
) -> String {
    format!(
        "{top_level}\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\naccess_key_id = \"{ak}\"\nsecret_access_key = \"{sk}\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"tester\"\npolicy = '{S3_FULL_POLICY}'\n[kms]\n{kms_lines}db_path = \"{}\"\n",
        CLIENT_AK,
        CLIENT_SK,
        dir.join("kms.redb").display(),
    )
}

impl Drop for SealgateProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
