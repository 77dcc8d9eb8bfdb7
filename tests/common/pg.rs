//! A real PostgreSQL for the shared KMS store (`kms.store = "postgres"`): Debian's
//! `postgresql` package (installed by `scripts/setup.sh`), a throwaway cluster made with
//! `initdb` and run on a free loopback port in its own directory, as the harness runs
//! Garage. One shared cluster per test binary (started on first use; each test gets a
//! database of its own), or a private one a test may kill and restart.
//!
//! Also used by `tests/kms_support` (included by path), so it depends on nothing else of
//! `common`.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI containers) the
//! cluster runs as the `postgres` user the package creates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A loopback port free when asked.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` random bytes, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Writes `contents` to `path`, readable by its owner only (0600).
pub fn write_private(path: &Path, contents: &[u8]) {
    use std::io::Write as _;
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

/// The directory of `initdb`/`postgres`: `SEALGATE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian does not put them on PATH).
pub fn pg_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SEALGATE_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .filter(|p| p.join("initdb").exists())
        .unwrap_or_else(|| panic!("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/setup.sh"))
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command for a PostgreSQL binary, as the `postgres` user when we are root.
fn pg_command(bin: &str) -> Command {
    let path = pg_bin().join(bin);
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// Gives `path` to the `postgres` user (when running as root).
fn hand_over(path: &Path) {
    if running_as_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success(), "chown {} to postgres failed", path.display());
    }
}

const USER: &str = "sealgate";

/// A running PostgreSQL cluster.
pub struct Postgres {
    pub port: u16,
    /// With TLS: the server certificate (self-signed, for 127.0.0.1), PEM.
    pub ca_file: Option<PathBuf>,
    password: String,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    next_db: AtomicU32,
    /// Kills the server and removes its directory once this process is gone (its stdin
    /// is a pipe only we hold): the shared cluster is a static, never dropped.
    _janitor: Child,
}

impl Postgres {
    /// The shared cluster of this test binary.
    pub fn shared() -> &'static Postgres {
        static PG: OnceLock<Postgres> = OnceLock::new();
        PG.get_or_init(Postgres::start)
    }

    /// A cluster of the caller's own (killed when dropped).
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// A cluster of the caller's own that accepts TLS (`sslmode=require` in
    /// [`Postgres::url_tls`]) with a self-signed certificate (`ca_file`).
    pub fn start_tls() -> Postgres {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("sealgate-pg-")
            .tempdir()
            .unwrap();
        let password = random_hex(16);
        let pwfile = dir.path().join("pw");
        write_private(&pwfile, password.as_bytes());
        std::fs::create_dir(dir.path().join("data")).unwrap();
        hand_over(dir.path());
        let out = pg_command("initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "--wal-segsize=1",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ca_file = tls.then(|| {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .unwrap();
            let data = dir.path().join("data");
            write_private(&data.join("server.crt"), ck.cert.pem().as_bytes());
            write_private(
                &data.join("server.key"),
                ck.key_pair.serialize_pem().as_bytes(),
            );
            hand_over(&data);
            let ca = dir.path().join("ca.pem");
            std::fs::write(&ca, ck.cert.pem()).unwrap();
            ca
        });
        let janitor = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat > /dev/null; pid=$(head -n 1 '{data}/postmaster.pid' 2>/dev/null); \
                 [ -n \"$pid\" ] && kill -KILL \"$pid\" 2>/dev/null; sleep 1; rm -rf '{dir}'",
                data = dir.path().join("data").display(),
                dir = dir.path().display(),
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the cluster's janitor");
        let pg = Postgres {
            port: free_port(),
            ca_file,
            password,
            dir,
            child: Mutex::new(None),
            next_db: AtomicU32::new(0),
            _janitor: janitor,
        };
        pg.run();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server on the cluster's port and waits until it accepts connections.
    fn run(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .unwrap();
        let child = pg_command("postgres")
            .arg("-D")
            .arg(self.data())
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
                "-c",
                "min_wal_size=2MB",
                "-c",
                "max_wal_size=32MB",
                "-c",
                if self.ca_file.is_some() {
                    "ssl=on"
                } else {
                    "ssl=off"
                },
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.admin(|_| Ok(())).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections within 30 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Kills the server outright (SIGKILL: no shutdown, as a crash or a lost host).
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            // As root the child is runuser; the server (whose pid the data directory
            // records) is its child.
            let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string));
            if let Some(pid) = pid.filter(|p| p.chars().all(|c| c.is_ascii_digit())) {
                // The shell's builtin `kill` (no procps needed).
                let _ = Command::new("sh")
                    .args(["-c", &format!("kill -KILL {pid}")])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
    }

    /// Starts the server again after [`Postgres::kill`] (same data, same port).
    pub fn restart(&self) {
        self.run();
    }

    fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
            self.password, self.port
        )
    }

    /// The URL of database `db` with TLS required.
    pub fn url_tls(&self, db_url: &str) -> String {
        db_url.replace("sslmode=disable", "sslmode=require")
    }

    /// Runs `f` on a connection to the `postgres` database (from a thread of its own:
    /// the synchronous client must not run on a tokio worker).
    fn admin(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<(), postgres::Error> + Send + 'static,
    ) -> Result<(), String> {
        let url = self.url("postgres");
        std::thread::spawn(move || {
            let mut c =
                postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
            f(&mut c).map_err(|e| e.to_string())
        })
        .join()
        .unwrap()
    }

    /// A new empty database; its connection URL.
    pub fn new_database(&self) -> String {
        let name = format!(
            "sg_{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::SeqCst)
        );
        let sql = format!("CREATE DATABASE {name}");
        self.admin(move |c| c.batch_execute(&sql))
            .unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        self.url(&name)
    }

    /// Runs `sql` on the database at `url` (as someone with write access to it would).
    pub fn execute(&self, url: &str, sql: &str) -> u64 {
        let (url, sql) = (url.to_string(), sql.to_string());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.execute(sql.as_str(), &[]).unwrap()
        })
        .join()
        .unwrap()
    }

    /// `pg_dump -Fc` of the database at `url` into `file` (as an operator backs it up).
    pub fn dump(&self, url: &str, file: &Path) {
        let out = Command::new(pg_bin().join("pg_dump"))
            .args(["-Fc", "-f"])
            .arg(file)
            .arg(url)
            .output()
            .expect("run pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_restore` of `file` into a new database; its URL.
    pub fn restore(&self, file: &Path) -> String {
        let url = self.new_database();
        let out = Command::new(pg_bin().join("pg_restore"))
            .args(["--no-owner", "-d", &url])
            .arg(file)
            .output()
            .expect("run pg_restore");
        assert!(
            out.status.success(),
            "pg_restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        url
    }

    /// A new database, its URL written to a private file in `dir`: the
    /// `kms.postgres.url_file` of a sealgate config.
    pub fn url_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("pg-url-{}", random_hex(4)));
        write_private(&path, self.new_database().as_bytes());
        path
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether this test run puts every sealgate's KMS in PostgreSQL
/// (`SEALGATE_TEST_KMS_STORE=postgres`: the KMS suites run again that way).
pub fn kms_on_postgres() -> bool {
    std::env::var("SEALGATE_TEST_KMS_STORE").is_ok_and(|v| v == "postgres")
}

/// Puts `cfg`'s KMS in a new database of the shared cluster.
pub fn use_postgres(cfg: &mut sealgate::config::Config, dir: &Path) {
    use_postgres_kms(&mut cfg.kms, dir);
}

/// Puts a KMS config in a new database of the shared cluster.
pub fn use_postgres_kms(cfg: &mut sealgate::kms::KmsConfig, dir: &Path) {
    cfg.store = sealgate::kms::StoreKind::Postgres;
    cfg.postgres.url_file = Some(Postgres::shared().url_file(dir));
}
