//! Small-object PUT throughput with data-key caching on and off, against direct Garage,
//! and KMS calls per 1000 PUTs.
//!
//! `cargo bench --bench backends`. Starts a real Garage, a real OpenBao dev server (Transit,
//! from `.venv`) and release `sealgate` processes: OpenBao backend with caching on and off,
//! and the embedded KMS with and without caching. Rounds are interleaved; medians printed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

struct Target {
    name: String,
    endpoint: String,
    ak: String,
    sk: String,
    region: String,
    bucket: String,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signed(
    c: &reqwest::Client,
    t: &Target,
    method: &str,
    url: &str,
    len: u64,
) -> reqwest::RequestBuilder {
    let mut h = http::HeaderMap::new();
    h.insert("host", url.split('/').nth(2).unwrap().parse().unwrap());
    h.insert("content-length", len.to_string().parse().unwrap());
    common::sign_s3(
        method,
        url,
        &mut h,
        (&t.ak, &t.sk, &t.region),
        "UNSIGNED-PAYLOAD",
    );
    c.request(method.parse().unwrap(), url).headers(h)
}

async fn kms_calls(endpoint: &str) -> u64 {
    common::metrics_text(endpoint)
        .await
        .lines()
        .filter(|l| l.starts_with("sealgate_kms_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Starts a release sealgate with `extra` TOML appended; returns (process, endpoint).
async fn sealgate(dir: &std::path::Path, name: &str, extra: &str) -> (Proc, String) {
    let g = common::garage();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    common::write_private(&d.join("root.key"), "ab".repeat(32).as_bytes());
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n[upstream]\nendpoint = \"{}\"\nregion = \"garage\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"bench\"\npolicy = '{}'\n[kms]\ndb_path = \"{}\"\nroot_key_file = \"{}\"\n{extra}",
        g.endpoint,
        g.access_key,
        g.secret_key,
        common::CLIENT_AK,
        common::CLIENT_SK,
        common::S3_FULL_POLICY,
        d.join("kms.redb").display(),
        d.join("root.key").display()
    );
    std::fs::write(d.join("sealgate.toml"), cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["--log-level", "warn", "serve", "--config"])
        .arg(d.join("sealgate.toml"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{endpoint}/health")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Proc(child), endpoint)
}

async fn put_many(c: &reqwest::Client, t: &Target, body: &Bytes, round: usize, n: usize) -> f64 {
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let url = format!("{}/{}/r{round}-{i}", t.endpoint, t.bucket);
            let rb = signed(c, t, "PUT", &url, body.len() as u64).body(body.clone());
            async move {
                let r = rb.send().await.unwrap();
                assert!(r.status().is_success(), "{} PUT: {}", t.name, r.status());
                let _ = r.bytes().await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("backends benchmark: run it with `cargo bench --bench backends`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let g = common::garage();
        let bao = common::KmsPeer::start(common::PeerKind::OpenBao).await;
        let dir = tempfile::tempdir().unwrap();
        let bao_backend = format!(
            "[kms_backend]\ndefault = \"bao\"\n[kms_backend.backends.bao]\ntype = \"transit\"\naddress = \"{}\"\nallow_insecure_http = true\ntoken = \"{}\"\ndefault_key = \"{}\"\n",
            bao.endpoint,
            common::BAO_TOKEN,
            common::TRANSIT_KEY
        );
        let configs = [
            ("sealgate+openbao, cache on", format!("{bao_backend}[kms_backend.cache]\nenabled = true\n")),
            ("sealgate+openbao, cache off", format!("{bao_backend}[kms_backend.cache]\nenabled = false\n")),
            ("sealgate+embedded, cache on", "[kms_backend.cache]\nembedded = true\n".to_string()),
            ("sealgate+embedded, cache off (default)", String::new()),
        ];
        let mut procs = Vec::new();
        let mut targets = vec![Target {
            name: "direct Garage".into(),
            endpoint: g.endpoint.clone(),
            ak: g.access_key.clone(),
            sk: g.secret_key.clone(),
            region: "garage".into(),
            bucket: "bench-direct".into(),
        }];
        for (i, (name, extra)) in configs.iter().enumerate() {
            let (p, endpoint) = sealgate(dir.path(), &format!("sg{i}"), extra).await;
            procs.push(p);
            targets.push(Target {
                name: name.to_string(),
                endpoint,
                ak: common::CLIENT_AK.into(),
                sk: common::CLIENT_SK.into(),
                region: "us-east-1".into(),
                bucket: format!("bench-sg{i}"),
            });
        }
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        for t in &targets {
            let url = format!("{}/{}", t.endpoint, t.bucket);
            let r = signed(&c, t, "PUT", &url, 0).send().await.unwrap();
            assert!(r.status().is_success() || r.status() == 409, "create bucket: {}", r.status());
        }
        let body = Bytes::from(common::pattern(4096, 7));
        // Warm-up (connections, first KMS keys), then interleaved rounds.
        for t in &targets {
            put_many(&c, t, &body, 999, 100).await;
        }
        let (rounds, n) = (5, 1000);
        let mut ops: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        let mut calls: Vec<u64> = vec![0; targets.len()];
        for round in 0..rounds {
            for (i, t) in targets.iter().enumerate() {
                let before = if i > 0 { kms_calls(&t.endpoint).await } else { 0 };
                ops[i].push(put_many(&c, t, &body, round, n).await);
                if i > 0 {
                    calls[i] += kms_calls(&t.endpoint).await - before;
                }
            }
        }
        let direct = median(ops[0].clone());
        println!("## 4 KiB PUT, {rounds} interleaved rounds of {n}, concurrency 32 (2 cores, loopback)\n");
        println!("| target | ops/s (median) | vs direct | KMS calls per 1000 PUTs |\n|---|---|---|---|");
        for (i, t) in targets.iter().enumerate() {
            let m = median(ops[i].clone());
            let per_1000 = if i == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", calls[i] as f64 * 1000.0 / (rounds * n) as f64)
            };
            println!("| {} | {m:.0} | {:.0}% | {per_1000} |", t.name, m / direct * 100.0);
        }
        drop(procs);
        drop(bao);
    });
}
