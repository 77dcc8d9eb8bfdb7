//! Test harness shared by the KMS integration tests and bench: an in-process KMS behind
//! a tiny hyper server on 127.0.0.1:0 that reads the body and calls `kms::api::handle`,
//! the way sealgate's listener wires it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sealgate::auth::{AccessKey, AccessKeys, Principal};
use sealgate::kms::{Kms, KmsConfig, RootKey, TestClock};
use zeroize::Zeroizing;

pub const ACCESS_KEY: &str = "AKIDALICE";
pub const SECRET: &str = "alice-secret-key";
/// A second principal: an ordinary IAM-style user of the same account.
pub const BOB_ACCESS_KEY: &str = "AKIDBOB";
pub const BOB_SECRET: &str = "bob-secret-key";
pub const REGION: &str = "us-east-1";

pub struct Server {
    pub url: String,
    pub kms: Kms,
    pub clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
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
    let dir = tempfile::tempdir().unwrap();
    let cfg = KmsConfig {
        db_path: dir.path().join("kms.redb"),
        ..KmsConfig::default()
    };
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
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, sealgate::kms::api::MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"body too large")));
            *r.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(r);
        }
    };
    let req = http::Request::from_parts(parts, body);
    let resp = sealgate::kms::api::handle(&kms, &keys, req, Some(peer.ip())).await;
    Ok(resp.map(Full::new))
}

/// An aws-sdk-kms client pointed at the server, signing as alice (the account root).
pub fn sdk_client(url: &str) -> aws_sdk_kms::Client {
    sdk_client_as(url, ACCESS_KEY, SECRET)
}

/// An aws-sdk-kms client signing with the given access key.
pub fn sdk_client_as(url: &str, access_key: &str, secret: &str) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new(access_key, secret, None, None, "test");
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(creds)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// A KMS API request for `host` (`127.0.0.1:PORT`) signed as alice with aws-sigv4, as
/// the SDKs sign (service `kms`, signed body). `target` is the whole `X-Amz-Target`.
pub fn signed_request(host: &str, target: &str, body: &[u8]) -> http::Request<Bytes> {
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
    let signable = SignableRequest::new(
        "POST",
        format!("http://{host}/"),
        headers.iter().copied(),
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
    let req = signed_request(host, target, body.as_bytes());
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
