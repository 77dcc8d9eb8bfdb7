//! Test harness shared by the KMS integration tests and bench: an in-process KMS behind
//! a tiny hyper server on 127.0.0.1:0 that reads the body and calls `kms::api::handle`,
//! the way sealgate's listener wires it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sealgate::auth::{AccessKey, AccessKeys, Principal};
use sealgate::kms::{Kms, KmsConfig, RootKey, TestClock};
use zeroize::Zeroizing;

#[path = "../common/pg.rs"]
pub mod pg;
#[path = "../common/softhsm.rs"]
pub mod softhsm;
pub mod tools;

pub const ACCESS_KEY: &str = "AKIDALICE";
pub const SECRET: &str = "alice-secret-key";
/// A second principal: an ordinary IAM-style user of the same account.
pub const BOB_ACCESS_KEY: &str = "AKIDBOB";
pub const BOB_SECRET: &str = "bob-secret-key";
pub const REGION: &str = "us-east-1";

pub struct Server {
    pub url: String,
    pub kms: Kms,
    /// The KMS's config (its store: a redb file in the server's directory, or a
    /// PostgreSQL database).
    pub cfg: KmsConfig,
    pub clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The server's KMS database file.
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("kms.redb")
    }
}

pub fn alice() -> Principal {
    Principal {
        name: "alice".into(),
        account: "000000000000".into(),
        is_root: true,
    }
}

pub fn bob() -> Principal {
    Principal {
        name: "bob".into(),
        account: "000000000000".into(),
        is_root: false,
    }
}

pub fn access_keys() -> AccessKeys {
    let key = |secret: &str, principal| AccessKey {
        secret: Arc::new(Zeroizing::new(secret.into())),
        principal,
    };
    AccessKeys::new(HashMap::from([
        (ACCESS_KEY.to_string(), key(SECRET, alice())),
        (BOB_ACCESS_KEY.to_string(), key(BOB_SECRET, bob())),
    ]))
}

/// Starts the KMS endpoint on an ephemeral port (on the current tokio runtime).
pub async fn start() -> Server {
    start_in_regions(&[]).await
}

/// Starts the KMS endpoint serving `regions` (`kms.regions`; the home region is REGION).
pub async fn start_in_regions(regions: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = KmsConfig {
        db_path: dir.path().join("kms.redb"),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        ..KmsConfig::default()
    };
    // SEALGATE_TEST_KMS_STORE=postgres: the same tests on the shared store.
    if pg::kms_on_postgres() {
        pg::use_postgres_kms(&mut cfg, dir.path());
    }
    start_with(cfg, dir).await
}

/// Starts the KMS endpoint with `cfg` (its files in `dir`, kept as long as the server).
pub async fn start_with(cfg: KmsConfig, dir: tempfile::TempDir) -> Server {
    let clock = Arc::new(TestClock::starting_now());
    let kms = Kms::open_with_root_key(&cfg, clock.clone(), RootKey::from_bytes(&[3; 32]).unwrap())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (k, keys) = (kms.clone(), access_keys());
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let (k, keys) = (k.clone(), keys.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| serve(k.clone(), keys.clone(), req, peer));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server {
        url: format!("http://{addr}"),
        kms,
        cfg,
        clock,
        _dir: dir,
    }
}

async fn serve(
    kms: Kms,
    keys: AccessKeys,
    req: hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let handled = sealgate::kms::api::serve_http(&kms, &keys, req, Some(peer.ip()), false).await;
    Ok(handled.response.map(Full::new))
}

/// An aws-sdk-kms client pointed at the server, signing as alice (the account root).
pub fn sdk_client(url: &str) -> aws_sdk_kms::Client {
    sdk_client_as(url, ACCESS_KEY, SECRET)
}

/// An aws-sdk-kms client signing with the given access key.
pub fn sdk_client_as(url: &str, access_key: &str, secret: &str) -> aws_sdk_kms::Client {
    sdk_client_in(url, REGION, access_key, secret)
}

/// An aws-sdk-kms client for `region` (its SigV4 scope) signing with the given key.
pub fn sdk_client_in(
    url: &str,
    region: &str,
    access_key: &str,
    secret: &str,
) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new(access_key, secret, None, None, "test");
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new(region.to_string()))
        .endpoint_url(url)
        .credentials_provider(creds)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// A KMS API request for `host` (`127.0.0.1:PORT`) signed as alice with aws-sigv4, as
/// the SDKs sign (service `kms`, signed body). `target` is the whole `X-Amz-Target`.
pub fn signed_request(host: &str, target: &str, body: &[u8]) -> http::Request<Bytes> {
    sign_request(host, target, body, true)
}

/// `signed_request`, with `x-amz-target` left out of the signature when `sign_target` is
/// false (sent, but not signed).
pub fn sign_request(
    host: &str,
    target: &str,
    body: &[u8],
    sign_target: bool,
) -> http::Request<Bytes> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET, None, None, "t").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("kms")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("host", host),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let signed = if sign_target {
        &headers[..]
    } else {
        &headers[..2]
    };
    let signable = SignableRequest::new(
        "POST",
        format!("http://{host}/"),
        signed.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::post("/")
        .body(Bytes::copy_from_slice(body))
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    instructions.apply_to_request_http1x(&mut req);
    req
}

/// POSTs a raw body to the KMS endpoint, signed with aws-sigv4 (for malformed-input
/// tests the SDK cannot produce). Returns (status, parsed JSON body).
pub async fn raw_call(url: &str, target: &str, body: &str) -> (u16, serde_json::Value) {
    let host = url.trim_start_matches("http://");
    send(url, signed_request(host, target, body.as_bytes())).await
}

/// Sends a prepared request to the KMS endpoint; returns (status, parsed JSON body).
pub async fn send(url: &str, req: http::Request<Bytes>) -> (u16, serde_json::Value) {
    let body = String::from_utf8_lossy(req.body()).into_owned();
    let mut rb = reqwest::Client::new()
        .post(format!("{url}/"))
        .body(body.to_string());
    for (k, v) in req.headers() {
        rb = rb.header(k.as_str(), v.to_str().unwrap());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Access key id and secret of alice (the account root).
pub const ALICE: (&str, &str) = (ACCESS_KEY, SECRET);
/// Access key id and secret of bob (a user of the same account).
pub const BOB: (&str, &str) = (BOB_ACCESS_KEY, BOB_SECRET);

/// The real aws-cli (`aws kms ... --endpoint-url`) pointed at a server, in one region.
/// The binary is SEALGATE_TEST_AWS_CLI (default: `aws` on PATH); if it cannot be run the
/// test fails rather than skips, so CI notices a missing client.
pub struct Cli {
    pub bin: String,
    pub url: String,
    pub region: String,
    /// Scratch files (`fileb://` arguments, wrapping keys, ...).
    pub dir: tempfile::TempDir,
}

/// An aws-cli for `server` in the default region.
pub fn cli_for(server: &Server) -> Cli {
    cli_in(server, REGION)
}

/// An aws-cli for `server` signing for `region`.
pub fn cli_in(server: &Server, region: &str) -> Cli {
    Cli {
        bin: std::env::var("SEALGATE_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into()),
        url: server.url.clone(),
        region: region.to_string(),
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Cli {
    /// Runs `aws kms <args>` as alice; returns (success, parsed stdout or Null, stderr).
    pub fn kms(&self, args: &[&str]) -> (bool, serde_json::Value, String) {
        self.kms_as(ALICE, args)
    }

    /// Runs `aws kms <args>` with the given credentials.
    pub fn kms_as(&self, creds: (&str, &str), args: &[&str]) -> (bool, serde_json::Value, String) {
        let out = std::process::Command::new(&self.bin)
            .arg("kms")
            .args(args)
            .args(["--endpoint-url", &self.url, "--region", &self.region])
            .args(["--output", "json"])
            .env("AWS_ACCESS_KEY_ID", creds.0)
            .env("AWS_SECRET_ACCESS_KEY", creds.1)
            .env("AWS_CONFIG_FILE", self.dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("none"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the aws-cli '{}' ({e}); install it or set SEALGATE_TEST_AWS_CLI",
                    self.bin
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.success(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> serde_json::Value {
        self.ok_as(ALICE, args)
    }

    #[track_caller]
    pub fn ok_as(&self, creds: (&str, &str), args: &[&str]) -> serde_json::Value {
        let (ok, v, err) = self.kms_as(creds, args);
        assert!(ok, "aws kms {args:?} failed: {err}");
        v
    }

    /// Runs a command that must fail with the given AWS error code.
    #[track_caller]
    pub fn fails(&self, args: &[&str], code: &str) {
        self.fails_as(ALICE, args, code)
    }

    /// Runs a command that must fail with the given AWS error code.
    #[track_caller]
    pub fn fails_as(&self, creds: (&str, &str), args: &[&str], code: &str) {
        let (ok, _, err) = self.kms_as(creds, args);
        assert!(
            !ok && err.contains(code),
            "aws kms {args:?}: want {code}, got: {err}"
        );
    }

    /// Writes bytes to a file and returns a `fileb://` argument for it.
    pub fn fileb(&self, name: &str, bytes: &[u8]) -> String {
        format!("fileb://{}", self.file(name, bytes).display())
    }

    /// Writes bytes to a scratch file and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// The AWS error code of a failed SDK call.
pub fn code<T, E, R>(r: Result<T, aws_sdk_kms::error::SdkError<E, R>>) -> String
where
    T: std::fmt::Debug,
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let e = r.unwrap_err();
    e.as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_else(|| panic!("not a service error: {e:?}"))
        .to_string()
}
