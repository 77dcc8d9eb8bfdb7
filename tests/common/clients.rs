//! Clients: aws-sdk-s3 for a store or sealgate, the aws-cli and other tools installed by
//! `scripts/setup.sh`, and hand-signed raw HTTP requests (for what client libraries would
//! hide or refuse to send).

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::config::{Credentials, Region};

#[allow(unused_imports)]
use super::*;

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

/// An S3 client over HTTPS that trusts the certificate in `ca_pem` (and nothing else).
pub fn s3_client_trusting(
    endpoint: &str,
    ak: &str,
    sk: &str,
    region: &str,
    ca_pem: &[u8],
) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca_pem.to_vec()))
                .build()
                .unwrap(),
        )
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .force_path_style(true)
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A reqwest client that trusts the certificate in `ca_pem` (raw and presigned requests
/// to a TLS sealgate).
pub fn https_client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap()
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

/// PutBucketEncryption: SSE-KMS under `key` by default for `bucket`.
pub async fn put_kms_bucket_rule(c: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    use aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key)
                .build()
                .unwrap(),
        )
        .build();
    c.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}
