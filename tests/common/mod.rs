//! Test harness: a real Garage store (one per test binary, started on free loopback
//! ports in its own directory) and an in-process sealgate per test on 127.0.0.1:0.
//!
//! Tests fail — never skip — when Garage is missing: install it with `.ci/run` or
//! `cargo install --locked garage --version 2.5.0 --no-default-features --features bundled-libs,sqlite`.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region};
use sealgate::config::{AccessKeyConfig, Config, Secret, TlsConfig, UpstreamConfig};

pub const CLIENT_AK: &str = "AKIDSEALGATETEST";
pub const CLIENT_SK: &str = "sealgate-test-secret-key";
const GARAGE_AK: &str = "GKsealgatetest01";

pub struct Garage {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub dir: PathBuf,
    // The wrapper shell exits (killing Garage) when this pipe closes, i.e. when the test
    // process exits, since statics are never dropped.
    _guard: Mutex<Child>,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Path of the garage binary: `SEALGATE_GARAGE_BIN`, `garage` on PATH, or ~/.cargo/bin/garage.
pub fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SEALGATE_GARAGE_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg("command -v garage")
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = Path::new(&home).join(".cargo/bin/garage");
    if p.exists() {
        return p;
    }
    panic!(
        "Garage is not installed (needed by the integration tests). Install it with `.ci/run` or \
         `cargo install --locked garage --version 2.5.0 --no-default-features --features bundled-libs,sqlite`, \
         or point SEALGATE_GARAGE_BIN at it."
    );
}

/// The shared Garage of this test binary, started on first use.
pub fn garage() -> &'static Garage {
    static G: OnceLock<Garage> = OnceLock::new();
    G.get_or_init(start_garage)
}

fn start_garage() -> Garage {
    // Any S3 store can stand in for Garage (e.g. MinIO from compose/): point the
    // harness at it and no Garage is started.
    if let Ok(endpoint) = std::env::var("SEALGATE_TEST_STORE_ENDPOINT") {
        let var = |n: &str| {
            std::env::var(n)
                .unwrap_or_else(|_| panic!("{n} must be set with SEALGATE_TEST_STORE_ENDPOINT"))
        };
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let guard = Command::new("true").spawn().expect("spawn true");
        return Garage {
            endpoint,
            access_key: var("SEALGATE_TEST_STORE_ACCESS_KEY"),
            secret_key: var("SEALGATE_TEST_STORE_SECRET_KEY"),
            region: std::env::var("SEALGATE_TEST_STORE_REGION")
                .unwrap_or_else(|_| "us-east-1".into()),
            dir,
            _guard: Mutex::new(guard),
        };
    }
    let bin = garage_bin();
    let base =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("garage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let s3_port = free_port();
    let rpc_port = free_port();
    let cfg = format!(
        "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
         [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n",
        d = base.display(),
        secret = random_hex(32),
    );
    let cfg_path = base.join("garage.toml");
    write_private(&cfg_path, cfg.as_bytes());
    let secret_key = random_hex(32);
    let script = format!(
        "'{bin}' -c '{cfg}' server --single-node --default-bucket > '{log}' 2>&1 & G=$!; cat > /dev/null; kill $G 2>/dev/null; wait $G 2>/dev/null; rm -rf '{base}'",
        bin = bin.display(),
        cfg = cfg_path.display(),
        log = base.join("garage.log").display(),
        base = base.display(),
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_AK)
        .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
        .env("GARAGE_DEFAULT_BUCKET", "default")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn garage");
    let g = Garage {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        access_key: GARAGE_AK.into(),
        secret_key,
        region: "garage".into(),
        dir: base.clone(),
        _guard: Mutex::new(child),
    };
    // Ready when the S3 port answers a signed ListBuckets with 200.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Probe from a thread of our own: callers may be inside a tokio runtime.
    let (endpoint, ak, sk) = (
        g.endpoint.clone(),
        g.access_key.clone(),
        g.secret_key.clone(),
    );
    let probe = move || {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let direct = s3_client(&endpoint, &ak, &sk, "garage");
            rt.block_on(async { direct.list_buckets().send().await.is_ok() })
        })
        .join()
        .unwrap_or(false)
    };
    loop {
        let ok = probe.clone()();
        if ok {
            break;
        }
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(base.join("garage.log")).unwrap_or_default();
            panic!("Garage did not become ready within 60 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    g
}

pub fn s3_client(endpoint: &str, ak: &str, sk: &str, region: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn direct_client_for(g: &Garage) -> aws_sdk_s3::Client {
    s3_client(&g.endpoint, &g.access_key, &g.secret_key, &g.region)
}

/// A client talking to Garage directly (what the store really holds).
pub fn direct_client() -> aws_sdk_s3::Client {
    direct_client_for(garage())
}

/// A running in-process sealgate.
pub struct Sealgate {
    pub addr: SocketAddr,
    /// Holds the KMS database and root key of this instance.
    pub state_dir: std::sync::Arc<tempfile::TempDir>,
    pub endpoint: String,
    pub client: aws_sdk_s3::Client,
    pub direct: aws_sdk_s3::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// The config tests use: Garage upstream, one client key.
pub fn test_config() -> Config {
    let g = garage();
    config_for_store(&g.endpoint, &g.access_key, &g.secret_key, &g.region)
}

impl Sealgate {
    /// Starts sealgate against the shared Garage.
    pub async fn start() -> Sealgate {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(mut cfg: Config) -> Sealgate {
        let state_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        if cfg.kms.root_key_file.is_none() {
            let root = state_dir.path().join("root.key");
            write_private(&root, random_hex(32).as_bytes());
            cfg.kms.root_key_file = Some(root);
            cfg.kms.db_path = state_dir.path().join("kms.redb");
        }
        Self::start_in(cfg, state_dir).await
    }

    /// Starts with a config whose KMS paths are already set (e.g. a restart on the same state).
    pub async fn start_in(cfg: Config, state_dir: std::sync::Arc<tempfile::TempDir>) -> Sealgate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sealgate::run(listener, cfg, async move {
            let _ = rx.await;
        }));
        let endpoint = format!("{scheme}://127.0.0.1:{}", addr.port());
        let client = s3_client(&endpoint, CLIENT_AK, CLIENT_SK, "us-east-1");
        Sealgate {
            addr,
            state_dir,
            endpoint,
            client,
            direct: direct_client(),
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

/// PutObject of `data` as `bucket/key`; panics if the client gets an error.
pub async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key}: {e:?}"));
}

/// GetObject of `bucket/key`, whole body; panics if the client gets an error.
pub async fn get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bytes::Bytes {
    c.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key} body: {e:?}"))
        .into_bytes()
}

/// Deterministic pseudo-random bytes (fast, so large bodies are cheap to make).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

/// The aws-cli binary: `SEALGATE_TEST_AWS_CLI`, else `aws` on PATH. Fails when absent.
pub fn aws_cli() -> PathBuf {
    if let Ok(p) = std::env::var("SEALGATE_TEST_AWS_CLI") {
        return PathBuf::from(p);
    }
    match Command::new("sh").arg("-c").arg("command -v aws").output() {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => panic!(
            "aws-cli not found: run .ci/run (it creates a venv) or set SEALGATE_TEST_AWS_CLI"
        ),
    }
}

/// The newest aws-cli release the suite tests besides the pinned one:
/// `SEALGATE_TEST_AWS_CLI_NEWEST`, else `.venv/newest/bin/aws` (installed by
/// scripts/setup.sh). Fails when absent.
pub fn aws_cli_newest() -> PathBuf {
    venv_tool_in("SEALGATE_TEST_AWS_CLI_NEWEST", ".venv/newest/bin", "aws")
}

pub fn b64(d: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// Signs `headers` (which must include `host`) for sealgate with the test client key.
pub fn sign_for_sealgate(
    method: &str,
    url: &str,
    headers: &mut http::HeaderMap,
    payload_hash: &str,
) {
    sign_s3(
        method,
        url,
        headers,
        (CLIENT_AK, CLIENT_SK, "us-east-1"),
        payload_hash,
    );
}

/// Signs `headers` (which must include `host`) with SigV4 for service `s3` as
/// `(access key, secret, region)`.
pub fn sign_s3(
    method: &str,
    url: &str,
    headers: &mut http::HeaderMap,
    (ak, sk, region): (&str, &str, &str),
    payload_hash: &str,
) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        sign,
    };
    let identity = aws_credential_types::Credentials::new(ak, sk, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    let signable = SignableRequest::new(
        method,
        url,
        hs.into_iter(),
        SignableBody::Precomputed(payload_hash.to_string()),
    )
    .unwrap();
    let (instr, _) = sign(signable, &params).unwrap().into_parts();
    let (new_headers, _) = instr.into_parts();
    for h in new_headers {
        headers.insert(
            http::HeaderName::from_static(h.name()),
            h.value().parse().unwrap(),
        );
    }
}

/// Sends a hand-signed request (payload hash UNSIGNED-PAYLOAD) to sealgate.
pub async fn signed_request(
    sg: &Sealgate,
    method: &str,
    path_and_query: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let url = format!("{}{}", sg.endpoint, path_and_query);
    let mut h = http::HeaderMap::new();
    h.insert(
        "host",
        format!("127.0.0.1:{}", sg.addr.port()).parse().unwrap(),
    );
    sign_for_sealgate(method, &url, &mut h, "UNSIGNED-PAYLOAD");
    reqwest::Client::new()
        .request(method.parse().unwrap(), &url)
        .headers(h)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A PutObject with an aws-chunked body and an unsigned CRC32 trailer
/// (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`), as aws-cli sends over HTTPS.
pub async fn trailer_put(
    sg: &Sealgate,
    bucket: &str,
    key: &str,
    data: &[u8],
    crc32_b64: &str,
) -> reqwest::Response {
    let url = format!("{}/{bucket}/{key}", sg.endpoint);
    let mut body = format!("{:x}\r\n", data.len()).into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{crc32_b64}\r\n\r\n").as_bytes());
    let mut h = http::HeaderMap::new();
    h.insert(
        "host",
        format!("127.0.0.1:{}", sg.addr.port()).parse().unwrap(),
    );
    h.insert("content-encoding", "aws-chunked".parse().unwrap());
    h.insert(
        "x-amz-decoded-content-length",
        data.len().to_string().parse().unwrap(),
    );
    h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().unwrap());
    sign_for_sealgate("PUT", &url, &mut h, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    reqwest::Client::new()
        .put(&url)
        .headers(h)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A tool installed into the crate's `.venv` by `scripts/setup.sh`: the path in `env_var`,
/// else `.venv/bin/<name>` under the crate root. Fails (never skips) when absent.
pub fn venv_tool(env_var: &str, name: &str) -> PathBuf {
    venv_tool_in(env_var, ".venv/bin", name)
}

/// A tool installed by `scripts/setup.sh` under `dir` of the crate root, or at the path
/// in `env_var`.
pub fn venv_tool_in(env_var: &str, dir: &str, name: &str) -> PathBuf {
    let p = match std::env::var(env_var) {
        Ok(p) => PathBuf::from(p),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name),
    };
    assert!(
        p.exists(),
        "{name} not found at {} (run scripts/setup.sh, or set {env_var})",
        p.display()
    );
    p
}

/// Which KMS peer process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// moto's AWS KMS API server.
    Moto,
    /// An OpenBao dev server with Transit enabled and a derived key `sealgate`.
    OpenBao,
}

/// A KMS peer running as a child process on a fixed loopback port, which tests can kill
/// and restart (both keep their state in memory: a restart starts empty).
pub struct KmsPeer {
    pub kind: PeerKind,
    pub port: u16,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

pub const BAO_TOKEN: &str = "sealgate-test-root-token";
/// The key (moto: alias) tests write under.
pub const PEER_KEY_ALIAS: &str = "alias/sealgate-test";
pub const TRANSIT_KEY: &str = "sealgate";

impl KmsPeer {
    pub async fn start(kind: PeerKind) -> KmsPeer {
        let port = free_port();
        let p = KmsPeer {
            kind,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir: tempfile::tempdir().unwrap(),
            child: Mutex::new(None),
        };
        p.spawn().await;
        p
    }

    async fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("peer.log"))
            .unwrap();
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            PeerKind::Moto => {
                let mut c = Command::new(venv_tool("SEALGATE_TEST_MOTO", "moto_server"));
                c.args(["-H", "127.0.0.1", "-p", &port]);
                c
            }
            PeerKind::OpenBao => {
                let mut c = Command::new(venv_tool("SEALGATE_TEST_BAO", "bao"));
                c.args([
                    "server",
                    "-dev",
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                    &format!("-dev-root-token-id={BAO_TOKEN}"),
                ]);
                c.env("HOME", self.dir.path());
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn KMS peer");
        *self.child.lock().unwrap() = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            let probe = match self.kind {
                PeerKind::Moto => http.get(format!("{}/", self.endpoint)).send().await,
                PeerKind::OpenBao => {
                    http.get(format!("{}/v1/sys/health", self.endpoint))
                        .send()
                        .await
                }
            };
            if probe.is_ok_and(|r| r.status().as_u16() < 500) {
                break;
            }
            if std::time::Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default();
                panic!("{:?} did not become ready; log:\n{log}", self.kind);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.provision().await;
    }

    /// Creates what the tests write under: moto a key with alias `PEER_KEY_ALIAS`, OpenBao
    /// the Transit mount and the derived key `sealgate`.
    async fn provision(&self) {
        match self.kind {
            PeerKind::Moto => {
                let kms = kms_client_for(&self.endpoint, "AKIDMOTO", "motosecret");
                let id = kms
                    .create_key()
                    .send()
                    .await
                    .unwrap()
                    .key_metadata()
                    .unwrap()
                    .key_id()
                    .to_string();
                kms.create_alias()
                    .alias_name(PEER_KEY_ALIAS)
                    .target_key_id(id)
                    .send()
                    .await
                    .unwrap();
            }
            PeerKind::OpenBao => {
                self.bao("POST", "sys/mounts/transit", r#"{"type":"transit"}"#)
                    .await;
                self.bao(
                    "POST",
                    &format!("transit/keys/{TRANSIT_KEY}"),
                    r#"{"derived":true}"#,
                )
                .await;
            }
        }
    }

    /// An OpenBao API call as root; panics unless it succeeds.
    pub async fn bao(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let r = reqwest::Client::new()
            .request(
                method.parse().unwrap(),
                format!("{}/v1/{path}", self.endpoint),
            )
            .header("X-Vault-Token", BAO_TOKEN)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "bao {method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty, and provisions it again.
    pub async fn restart(&self) {
        self.kill();
        self.spawn().await;
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: a backend that hangs.
    pub fn pause(&self, stop: bool) {
        if let Some(c) = self.child.lock().unwrap().as_ref() {
            let sig = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for KmsPeer {
    fn drop(&mut self) {
        self.pause(false);
        self.kill();
    }
}

/// The Prometheus exposition (`/metrics`) of the sealgate at `endpoint`.
pub async fn metrics_text(endpoint: &str) -> String {
    reqwest::get(format!("{endpoint}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Creates a symmetric KMS key in `sg`'s embedded KMS (as the test client) and returns
/// its ARN.
pub async fn new_key_arn(sg: &Sealgate) -> String {
    kms_client_for(&sg.endpoint, CLIENT_AK, CLIENT_SK)
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

/// An AWS KMS API client for `endpoint` (moto, or a sealgate instance).
pub fn kms_client_for(endpoint: &str, ak: &str, sk: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            ak, sk, None, None, "test",
        ))
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// Reads one sample of sealgate's Prometheus metrics (`name{labels}` exactly), 0 if absent.
pub async fn metric(endpoint: &str, name: &str) -> u64 {
    metrics_text(endpoint)
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|r| r.starts_with(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A Garage owned by one test: it can be killed (SIGKILL) and restarted on the same
/// data, and stores blocks uncompressed so its data directory can be searched for
/// plaintext. The shared [`garage()`] is unaffected.
pub struct PrivateGarage {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// Holds `meta/`, `data/`, the config and the log.
    pub dir: tempfile::TempDir,
    cfg_path: PathBuf,
    child: Option<Child>,
}

impl PrivateGarage {
    /// Starts a fresh single-node Garage on free loopback ports and waits until it answers.
    pub fn start() -> PrivateGarage {
        let dir = tempfile::Builder::new()
            .prefix("private-garage-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let (s3_port, rpc_port) = (free_port(), free_port());
        let base = dir.path();
        let cfg = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
             compression_level = \"none\"\n\
             rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n",
            d = base.display(),
            secret = random_hex(32),
        );
        let cfg_path = base.join("garage.toml");
        write_private(&cfg_path, cfg.as_bytes());
        let mut g = PrivateGarage {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            access_key: GARAGE_AK.into(),
            secret_key: random_hex(32),
            region: "garage".into(),
            dir,
            cfg_path,
            child: None,
        };
        g.restart();
        g
    }

    /// Starts (again) on the same config and data; waits until ListBuckets answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "Garage is still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("garage.log"))
            .unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.cfg_path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_key)
            .env("GARAGE_DEFAULT_BUCKET", "default")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn garage");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (endpoint, ak, sk) = (
                self.endpoint.clone(),
                self.access_key.clone(),
                self.secret_key.clone(),
            );
            let ok = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let c = s3_client(&endpoint, &ak, &sk, "garage");
                rt.block_on(async { c.list_buckets().send().await.is_ok() })
            })
            .join()
            .unwrap_or(false);
            if ok {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("Garage exited with {st}; its log:\n{}", self.log());
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "Garage did not become ready within 60 s; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// A client talking to this Garage directly.
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(
            &self.endpoint,
            &self.access_key,
            &self.secret_key,
            &self.region,
        )
    }

    /// A sealgate config whose upstream is this Garage.
    pub fn sealgate_config(&self) -> Config {
        config_for_store(
            &self.endpoint,
            &self.access_key,
            &self.secret_key,
            &self.region,
        )
    }

    /// Whether any file under this Garage's directories (data blocks, metadata database)
    /// contains `needle`.
    pub fn files_contain(&self, needle: &[u8]) -> Option<PathBuf> {
        find_in_tree(self.dir.path(), needle)
    }
}

impl Drop for PrivateGarage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first file under `dir` whose bytes contain `needle`.
pub fn find_in_tree(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                return Some(p);
            }
        }
    }
    None
}

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
            ..AccessKeyConfig::default()
        }],
        ..Config::default()
    }
}

/// Writes a file readable by its owner only (root keys, configs with secrets).
pub fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(contents).unwrap();
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
        (endpoint, ak, sk, region): (&str, &str, &str, &str),
        log_level: &str,
        top_level: &str,
    ) -> Self {
        let bin = std::env::var("SEALGATE_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_sealgate")));
        let root = dir.join("root.key");
        if !root.exists() {
            write_private(&root, random_hex(32).as_bytes());
        }
        let port = free_port();
        let cfg = format!(
            "{top_level}\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\naccess_key_id = \"{ak}\"\nsecret_access_key = \"{sk}\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"tester\"\n[kms]\ndb_path = \"{}\"\nroot_key_file = \"{}\"\n",
            CLIENT_AK,
            CLIENT_SK,
            dir.join("kms.redb").display(),
            root.display()
        );
        write_private(&dir.join("sealgate.toml"), cfg.as_bytes());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("sealgate.log"))
            .unwrap();
        let child = Command::new(&bin)
            .args(["--log-level", log_level, "serve", "--config"])
            .arg(dir.join("sealgate.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
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

impl Drop for SealgateProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An AWS KMS client for a sealgate endpoint (test client key).
pub fn kms_client_at(endpoint: &str) -> aws_sdk_kms::Client {
    kms_client_for(endpoint, CLIENT_AK, CLIENT_SK)
}

/// Headers for a request to `url` (host taken from it) signed with the test client key
/// and `UNSIGNED-PAYLOAD`, plus `extra` (signed too).
pub fn signed_headers(method: &str, url: &str, extra: &[(&str, String)]) -> http::HeaderMap {
    let host = url.split('/').nth(2).expect("url with a host");
    let mut h = http::HeaderMap::new();
    h.insert("host", host.parse().unwrap());
    for (k, v) in extra {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    sign_for_sealgate(method, url, &mut h, "UNSIGNED-PAYLOAD");
    h
}

/// A request body the test feeds by hand: chunks sent on the returned sender arrive at
/// the server as they are sent; dropping the sender ends the body.
pub fn hand_fed_body() -> (
    tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, reqwest::Body::wrap_stream(s))
}

/// Feeds a request body chunk by chunk (see [`hand_fed_body`]).
pub type Feeder = tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>;
/// A request under way on its own task.
pub type Pending = tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>;

/// Starts a signed PUT (`UNSIGNED-PAYLOAD`) declaring `total` bytes, whose body the test
/// feeds; returns the feeder and the pending response.
pub fn start_fed_put(url: String, total: u64) -> (Feeder, Pending) {
    let headers = signed_headers("PUT", &url, &[("content-length", total.to_string())]);
    let (tx, body) = hand_fed_body();
    let task = tokio::spawn(async move {
        reqwest::Client::new()
            .put(&url)
            .headers(headers)
            .body(body)
            .send()
            .await
    });
    (tx, task)
}
