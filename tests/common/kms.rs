//! KMS peers (moto's AWS KMS API server, OpenBao Transit) as child processes, KMS clients
//! and sealgate's metrics.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[allow(unused_imports)]
use super::*;
use std::sync::Mutex;

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

/// An AWS KMS client for a sealgate endpoint (test client key).
pub fn kms_client_at(endpoint: &str) -> aws_sdk_kms::Client {
    kms_client_for(endpoint, CLIENT_AK, CLIENT_SK)
}
