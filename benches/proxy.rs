//! sealgate vs direct Garage: throughput, small-object ops, range reads, memory and CPU.
//!
//! `cargo bench --bench proxy` (add `-- --full` for the 5 GiB memory run and 1 GiB objects,
//! `-- --pin` to give Garage its own CPU).
//! Starts a real Garage and the release `sealgate` binary as a separate process (so its
//! RSS and CPU time can be read from /proc), runs each workload against the store directly,
//! through a plain TCP relay process and through sealgate in the same run, interleaved,
//! and prints medians and ratios to direct.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

#[derive(Clone)]
struct Target {
    name: &'static str,
    endpoint: String,
    ak: String,
    sk: String,
    region: String,
    bucket: String,
}

fn sign(t: &Target, method: &str, url: &str, headers: &mut http::HeaderMap) {
    common::sign_s3(
        method,
        url,
        headers,
        (&t.ak, &t.sk, &t.region),
        "UNSIGNED-PAYLOAD",
    );
}

fn request(
    c: &reqwest::Client,
    t: &Target,
    method: &str,
    key: &str,
    extra: &[(&str, String)],
) -> reqwest::RequestBuilder {
    request_q(c, t, method, key, "", extra)
}

/// Everything but unreserved characters is percent-encoded in query values.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A signed request with a query string (`query` already encoded, without `?`).
fn request_q(
    c: &reqwest::Client,
    t: &Target,
    method: &str,
    key: &str,
    query: &str,
    extra: &[(&str, String)],
) -> reqwest::RequestBuilder {
    let mut url = format!("{}/{}/{}", t.endpoint, t.bucket, key);
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let mut h = http::HeaderMap::new();
    h.insert("host", url.split('/').nth(2).unwrap().parse().unwrap());
    for (k, v) in extra {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    sign(t, method, &url, &mut h);
    c.request(method.parse().unwrap(), &url).headers(h)
}

/// PUT of a (streamed) body; the error names the target, the key and what went wrong.
async fn put(
    c: &reqwest::Client,
    t: &Target,
    key: &str,
    body: reqwest::Body,
    len: u64,
) -> Result<(), String> {
    let r = request(c, t, "PUT", key, &[("content-length", len.to_string())])
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{} PUT {key}: {e:?}", t.name))?;
    let status = r.status();
    let _ = r.bytes().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{} PUT {key}: {status}", t.name))
    }
}

/// PUT of an in-memory body, retried on 503 as SDKs do (Garage sheds load with 503 on
/// this 2-core machine when the CPU is saturated); the time includes the retries.
async fn put_retry(c: &reqwest::Client, t: &Target, key: &str, body: Bytes) -> Duration {
    let start = Instant::now();
    let _ = put_bytes(c, t, key, "", body).await.bytes().await;
    start.elapsed()
}

/// PUT of `body` to `key?query`, sent again after a 503 (up to 5 times); the successful
/// response.
async fn put_bytes(
    c: &reqwest::Client,
    t: &Target,
    key: &str,
    query: &str,
    body: Bytes,
) -> reqwest::Response {
    for attempt in 0..6 {
        let r = request_q(
            c,
            t,
            "PUT",
            key,
            query,
            &[("content-length", body.len().to_string())],
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
        let status = r.status();
        if status.is_success() {
            return r;
        }
        let _ = r.bytes().await;
        assert!(
            status == 503 && attempt < 5,
            "{} PUT {key}?{query}: {status}",
            t.name
        );
        RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
    }
    unreachable!()
}

/// PUT of `body` framed as sealgate frames its writes to the store: aws-chunked with a
/// CRC32C trailer the store verifies (`sealgate::upstream::checked`), sent in 64 KiB
/// pieces. Measures what that checksum costs the store, apart from sealgate.
async fn put_chunked(c: &reqwest::Client, t: &Target, key: &str, body: Bytes) -> Duration {
    use sealgate::upstream::checked;
    let start = Instant::now();
    let len = body.len() as u64;
    let url = format!("{}/{}/{}", t.endpoint, t.bucket, key);
    let mut h = http::HeaderMap::new();
    h.insert("host", url.split('/').nth(2).unwrap().parse().unwrap());
    for (k, v) in [
        ("content-encoding", "aws-chunked".to_string()),
        ("x-amz-decoded-content-length", len.to_string()),
        ("x-amz-trailer", checked::TRAILER.to_string()),
        ("content-length", checked::encoded_len(len).to_string()),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    common::sign_s3(
        "PUT",
        &url,
        &mut h,
        (&t.ak, &t.sk, &t.region),
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    );
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
        .step_by(64 << 10)
        .map(|i| Ok(body.slice(i..(i + (64 << 10)).min(body.len()))))
        .collect();
    let framed = checked::Chunked::new(Box::pin(futures::stream::iter(pieces)), len);
    let r = c
        .put(&url)
        .headers(h)
        .body(reqwest::Body::wrap_stream(framed))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let _ = r.bytes().await;
    assert!(
        status.is_success(),
        "{} aws-chunked PUT {key}: {status}",
        t.name
    );
    start.elapsed()
}

/// A multipart upload of `data` in `part`-byte parts, `inflight` parts at a time (as
/// aws-cli and the SDK transfer managers do).
async fn put_multipart(
    c: &reqwest::Client,
    t: &Target,
    key: &str,
    data: &Bytes,
    part: usize,
    inflight: usize,
) -> Duration {
    let start = Instant::now();
    let r = request_q(c, t, "POST", key, "uploads=", &[])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{} create upload: {}",
        t.name,
        r.status()
    );
    let xml = r.text().await.unwrap();
    let id = xml
        .split("<UploadId>")
        .nth(1)
        .and_then(|x| x.split("</UploadId>").next())
        .unwrap()
        .to_string();
    let id_q = percent_encoding::utf8_percent_encode(&id, QUERY_VALUE).to_string();
    let chunks: Vec<Bytes> = (0..data.len())
        .step_by(part)
        .map(|o| data.slice(o..(o + part).min(data.len())))
        .collect();
    let etags: Vec<String> = futures::stream::iter(chunks.into_iter().enumerate())
        .map(|(i, body)| {
            let q = format!("partNumber={}&uploadId={id_q}", i + 1);
            async move {
                let r = put_bytes(c, t, key, &q, body).await;
                r.headers()["etag"].to_str().unwrap().to_string()
            }
        })
        .buffered(inflight)
        .collect()
        .await;
    let mut body = String::from("<CompleteMultipartUpload>");
    for (i, e) in etags.iter().enumerate() {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
            i + 1
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    let r = request_q(
        c,
        t,
        "POST",
        key,
        &format!("uploadId={id_q}"),
        &[("content-length", body.len().to_string())],
    )
    .body(body)
    .send()
    .await
    .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(
        status.is_success() && !text.contains("<Error>"),
        "{} complete: {status} {text}",
        t.name
    );
    start.elapsed()
}

/// `data` with `tag` written at the start of every 1 MiB (Garage's block size). Garage
/// deduplicates identical blocks, so re-uploading the same bytes directly would skip the
/// block writes that sealgate's always-fresh ciphertext needs: every timed upload gets
/// data the store has not seen.
fn fresh(data: &[u8], tag: u64) -> Bytes {
    let mut v = data.to_vec();
    for block in v.chunks_mut(1 << 20) {
        let n = block.len().min(8);
        block[..n].copy_from_slice(&tag.to_le_bytes()[..n]);
    }
    Bytes::from(v)
}

static TAGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_tag() -> u64 {
    TAGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A plain TCP relay in front of `upstream` (no HTTP, no crypto), like socat: the cost of
/// any extra network hop on this machine, as the floor to compare sealgate's overhead with.
/// It runs as a process of its own (this bench binary, re-run with `--relay`), as sealgate
/// does, so that both compete for the cores in the same way; the relay is pinned with
/// sealgate in the `--pin` layout.
fn start_relay(upstream: std::net::SocketAddr) -> (Proc, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--relay", &upstream.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the relay process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().parse().expect("relay address");
    (Proc::new(child), addr)
}

/// The relay process: prints its address, then relays every connection to `upstream`
/// with 256 KiB copy buffers on one thread until it is killed.
fn relay_main(upstream: std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", l.local_addr().unwrap());
        loop {
            let (mut a, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = (a.set_nodelay(true), b.set_nodelay(true));
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut a,
                        &mut b,
                        256 << 10,
                        256 << 10,
                    )
                    .await;
                }
            });
        }
    });
}

static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// GET (optionally ranged): (time to headers, total time, bytes).
async fn get(
    c: &reqwest::Client,
    t: &Target,
    key: &str,
    range: Option<String>,
) -> (Duration, Duration, u64) {
    let start = Instant::now();
    let extra: Vec<(&str, String)> = range.map(|r| vec![("range", r)]).unwrap_or_default();
    let r = request(c, t, "GET", key, &extra).send().await.unwrap();
    let ttfb = start.elapsed();
    assert!(
        r.status().is_success(),
        "{} GET {key}: {}",
        t.name,
        r.status()
    );
    let mut n = 0u64;
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        n += chunk.unwrap().len() as u64;
    }
    (ttfb, start.elapsed(), n)
}

/// (target, op) -> (ops/s of each round, every request's latency in seconds).
type RoundSamples = std::collections::HashMap<(&'static str, &'static str), (Vec<f64>, Vec<f64>)>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Proc {
    child: Child,
    /// Kills `child` when this process goes away without running destructors (SIGINT,
    /// SIGTERM): its stdin is a pipe only we hold.
    _watchdog: Child,
}

impl Proc {
    fn new(child: Child) -> Proc {
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!("cat > /dev/null; kill {} 2> /dev/null", child.id()))
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn the watchdog shell");
        Proc {
            child,
            _watchdog: watchdog,
        }
    }
}

impl Proc {
    fn status_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| {
                l.strip_prefix(field)
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
            .unwrap_or(0)
    }
    fn cpu_secs(&self) -> f64 {
        cpu_secs(self.child.id())
    }
    /// Resets the peak-RSS watermark (VmHWM) so the next workload's peak can be read.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU seconds a process has used (from /proc/PID/stat, in ticks of
/// 10 ms).
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A body of `len` bytes made from a repeated 1 MiB buffer (no whole-object buffer).
fn streamed_body(len: u64) -> reqwest::Body {
    let chunk = Bytes::from(common::pattern(1 << 20, 77));
    let n = len.div_ceil(1 << 20);
    let s = futures::stream::iter((0..n).map(move |i| {
        let take = (len - i * (1 << 20)).min(1 << 20) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..take))
    }));
    reqwest::Body::wrap_stream(s)
}

/// CPU seconds this thread has used (user + system, from /proc/thread-self/stat).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name (which is in parentheses): utime is the 14th field,
    // stime the 15th, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn micro_pipeline() {
    use sealgate::crypto::format::PartHeader;
    use sealgate::crypto::stream::{Decryptor, Dek, Encryptor};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let len: u64 = 1 << 30;
    let dek = Dek::from_slice(&[9u8; 32]).unwrap();
    let header = PartHeader {
        part_number: 1,
        salt: [1; 16],
        plain_len: len,
    };
    let chunk = Bytes::from(common::pattern(1 << 20, 5));
    let input = move || {
        futures::stream::iter((0..1024).map({
            let c = chunk.clone();
            move |_| Ok::<_, std::io::Error>(c.clone())
        }))
        .boxed()
    };
    // Timed run: output chunks are dropped as a network write would release them.
    let enc_secs = rt.block_on(async {
        let start = Instant::now();
        let mut e = Encryptor::new(input(), &dek, header, false);
        let mut n = 0u64;
        while let Some(c) = e.next().await {
            n += c.unwrap().len() as u64;
        }
        assert!(n > len);
        start.elapsed().as_secs_f64()
    });
    let cipher = rt.block_on(async {
        let mut e = Encryptor::new(input(), &dek, header, false);
        let mut out = Vec::with_capacity(16_400);
        while let Some(c) = e.next().await {
            out.push(c.unwrap());
        }
        out
    });
    let dec_secs = rt.block_on(async {
        let layout = sealgate::crypto::format::Layout::single(len);
        let plan = sealgate::crypto::format::plan(&layout, 0, len).unwrap();
        let start = Instant::now();
        let s = futures::stream::iter(cipher.into_iter().map(Ok::<_, std::io::Error>)).boxed();
        let mut d = Decryptor::new(s, dek.clone(), layout, &plan, Some(header));
        let mut n = 0u64;
        while let Some(c) = d.next().await {
            n += c.unwrap().len() as u64;
        }
        assert_eq!(n, len);
        start.elapsed().as_secs_f64()
    });
    println!(
        "| stream pipeline, 1 thread | encrypt {:.2} GB/s | decrypt {:.2} GB/s | target ≥ 5 GB/s |",
        len as f64 / enc_secs / 1e9,
        len as f64 / dec_secs / 1e9
    );
    // What the data path's hashes cost on their own, per GiB of object data: the MD5 of
    // the plaintext (AWS's ETag of SSE-S3 objects, `encryption.md5_etags`) and the
    // CRC32C of what is sent to the store (always).
    // Timed in this thread's CPU time (/proc), so other load on the machine does not
    // inflate them; 4 GiB each so the 10 ms tick is below 1 %.
    let block = common::pattern(1 << 20, 6);
    let md5_secs = {
        use md5::Digest as _;
        let start = thread_cpu_secs();
        let mut h = md5::Md5::new();
        for _ in 0..4096 {
            h.update(&block);
        }
        std::hint::black_box(h.finalize());
        (thread_cpu_secs() - start) / 4.0
    };
    let crc_secs = {
        use s3s::crypto::Checksum as _;
        let start = thread_cpu_secs();
        let mut h = s3s::crypto::Crc32c::new();
        for _ in 0..4096 {
            h.update(&block);
        }
        std::hint::black_box(h.finalize());
        (thread_cpu_secs() - start) / 4.0
    };
    println!(
        "| hashes, 1 thread, CPU s per GiB | MD5 (SSE-S3 ETag) {md5_secs:.3} s ({:.2} GB/s) | CRC32C (to the store) {crc_secs:.3} s ({:.2} GB/s) | |",
        (1u64 << 30) as f64 / md5_secs / 1e9,
        (1u64 << 30) as f64 / crc_secs / 1e9,
    );
    // A client's `x-amz-checksum-*`: verified on every PUT and part that carries one, and
    // computed while a copy streams when the source has one (or the copy asks for one).
    // Keeping it (sealed in the metadata or a 20-48-byte trailer) costs no pass over the
    // data.
    use sealgate::object::checksum::{Algo, Hasher};
    let costs: Vec<String> = Algo::CHECKSUMS
        .into_iter()
        .map(|algo| {
            let start = thread_cpu_secs();
            let mut h = Hasher::new(algo);
            for _ in 0..4096 {
                h.update(&block);
            }
            std::hint::black_box(h.finalize());
            let secs = (thread_cpu_secs() - start) / 4.0;
            format!(
                "{} {secs:.3} s ({:.2} GB/s)",
                algo.display(),
                (1u64 << 30) as f64 / secs / 1e9
            )
        })
        .collect();
    println!(
        "| client checksums, 1 thread, CPU s per GiB | {} |",
        costs.join(" | ")
    );
}

/// Processes whose command line names a file under `dir` (the harness's Garage).
fn garage_pids(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.split('\0').next().is_some_and(|a| a.ends_with("garage"))
                        && c.contains(&needle)
                })
                .unwrap_or(false)
        })
        .collect();
    assert!(!pids.is_empty(), "no Garage process found for {needle}");
    pids
}

/// Binds every thread of the processes to one CPU (`taskset`, from util-linux); threads
/// started later inherit it.
fn pin_to_cpu(pids: &[u32], cpu: u32) {
    for pid in pids {
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "taskset could not pin process {pid} to CPU {cpu}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--relay") {
        let upstream = args.get(i + 1).and_then(|a| a.parse().ok());
        return relay_main(upstream.expect("--relay <upstream address>"));
    }
    let flag = |f: &str| args.iter().any(|a| a == f);
    if !flag("--bench") {
        println!(
            "proxy benchmark: run it with `cargo bench --bench proxy` (`-- --full` for the long runs)"
        );
        return;
    }
    let full = flag("--full");
    // `-- --only=large,small` runs some phases: pipeline, large, small, list, range, memory.
    let only: Option<Vec<String>> = args.iter().find_map(|a| {
        a.strip_prefix("--only=")
            .map(|v| v.split(',').map(str::to_string).collect())
    });
    let phase = move |p: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == p));
    // `-- --pin`: Garage on CPU 0, sealgate, the relay and this client on CPU 1, for
    // direct, relay and sealgate runs alike, so the store has the same CPU in all and the
    // ratio shows what sealgate costs its clients rather than how much CPU it takes from a
    // store sharing its cores (docs/performance.md).
    let pin = flag("--pin");
    // `-- --no-md5`: sealgate with `encryption.md5_etags = false`, to measure what AWS's
    // MD5 ETags of SSE-S3 objects cost (one MD5 of the plaintext per write).
    let md5 = !flag("--no-md5");
    println!(
        "## sealgate benchmark (2 cores; Garage on loopback; medians of interleaved runs; data-key cache on{}{})\n",
        if pin {
            "; pinned: Garage on CPU 0, client, relay and sealgate on CPU 1"
        } else {
            ""
        },
        if md5 { "" } else { "; MD5 ETags off" }
    );
    println!("| workload | direct | sealgate | ratio |\n|---|---|---|---|");
    if phase("pipeline") {
        micro_pipeline();
    }

    let g = common::garage();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    common::write_private(&dir.path().join("root.key"), "ab".repeat(32).as_bytes());
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n[upstream]\nendpoint = \"{}\"\nregion = \"garage\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[[access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprincipal = \"bench\"\npolicy = '{}'\n[kms]\ndb_path = \"{}\"\nroot_key_file = \"{}\"\n[kms_backend.cache]\nembedded = true\n[encryption]\nmd5_etags = {md5}\n",
        g.endpoint,
        g.access_key,
        g.secret_key,
        common::CLIENT_AK,
        common::CLIENT_SK,
        common::S3_FULL_POLICY,
        dir.path().join("kms.redb").display(),
        dir.path().join("root.key").display()
    );
    std::fs::write(dir.path().join("sealgate.toml"), cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealgate"));
    cmd.args(["--log-level", "warn", "serve", "--config"])
        .arg(dir.path().join("sealgate.toml"))
        .stdout(Stdio::null());
    // SEALGATE_BENCH_THREADS=N: sealgate's `worker_threads` (default: one per core).
    if let Ok(n) = std::env::var("SEALGATE_BENCH_THREADS") {
        cmd.env("SEALGATE_WORKER_THREADS", n);
    }
    let child = cmd.spawn().unwrap();
    if pin {
        pin_to_cpu(&garage_pids(&g.dir), 0);
        pin_to_cpu(&[child.id(), std::process::id()], 1);
    }
    let sg_proc = Proc::new(child);
    let sg_endpoint = format!("http://127.0.0.1:{port}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..100 {
            if reqwest::get(format!("{sg_endpoint}/health")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let c = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let direct = Target { name: "direct", endpoint: g.endpoint.clone(), ak: g.access_key.clone(), sk: g.secret_key.clone(), region: "garage".into(), bucket: "bench-direct".into() };
        let sg = Target { name: "sealgate", endpoint: sg_endpoint.clone(), ak: common::CLIENT_AK.into(), sk: common::CLIENT_SK.into(), region: "us-east-1".into(), bucket: "bench-sg".into() };
        for t in [&direct, &sg] {
            let url = format!("{}/{}", t.endpoint, t.bucket);
            let mut h = http::HeaderMap::new();
            h.insert("host", url.split('/').nth(2).unwrap().parse().unwrap());
            sign(t, "PUT", &url, &mut h);
            let r = c.put(&url).headers(h).send().await.unwrap();
            assert!(r.status().is_success() || r.status() == 409, "create bucket: {}", r.status());
        }

        // A plain TCP relay in front of Garage: the floor for any extra hop.
        let (relay_proc, relay_addr) = start_relay(g.endpoint.trim_start_matches("http://").parse().unwrap());
        if pin {
            pin_to_cpu(&[relay_proc.child.id()], 1);
        }
        let relay = Target { name: "relay", endpoint: format!("http://{relay_addr}"), ..direct.clone() };
        let big: u64 = if full { 1 << 30 } else { 256 << 20 };
        let data = Bytes::from(common::pattern(big as usize, 1));
        if phase("large") {
        // Large objects: single PUT, multipart PUT (8 MiB parts, 4 in flight), 8 objects
        // in parallel; GET of each. Each run does direct then sealgate per workload.
        let streams = 8usize;
        let each = (big as usize) / streams;
        let names = ["PUT, 1 stream", "GET, 1 stream", "PUT multipart 8 MiB parts", "GET of the multipart object", "PUT, 8 streams", "GET, 8 streams"];
        let mut rates: Vec<[Vec<f64>; 3]> = names.iter().map(|_| [vec![], vec![], vec![]]).collect();
        let cpu0 = sg_proc.cpu_secs();
        let relay_cpu0 = relay_proc.cpu_secs();
        let mut moved = 0u64;
        for _ in 0..3 {
            for (w, _) in names.iter().enumerate() {
                for (ti, t) in [&direct, &relay, &sg].into_iter().enumerate() {
                    let data = if w % 2 == 0 { fresh(&data, next_tag()) } else { Bytes::new() };
                    let secs = match w {
                        0 => put_retry(&c, t, "big", data.clone()).await.as_secs_f64(),
                        1 => get(&c, t, "big", None).await.1.as_secs_f64(),
                        2 => put_multipart(&c, t, "big-mp", &data, 8 << 20, 4).await.as_secs_f64(),
                        3 => get(&c, t, "big-mp", None).await.1.as_secs_f64(),
                        4 => {
                            let start = Instant::now();
                            futures::future::join_all((0..streams).map(|i| {
                                let body = data.slice(i * each..(i + 1) * each);
                                let key = format!("par{i}");
                                let c = &c;
                                async move { put_retry(c, t, &key, body).await }
                            }))
                            .await;
                            start.elapsed().as_secs_f64()
                        }
                        _ => {
                            let start = Instant::now();
                            futures::future::join_all((0..streams).map(|i| {
                                let key = format!("par{i}");
                                let c = &c;
                                async move { get(c, t, &key, None).await }
                            }))
                            .await;
                            start.elapsed().as_secs_f64()
                        }
                    };
                    if ti == 2 {
                        moved += big;
                    }
                    rates[w][ti].push(big as f64 / secs / 1e6);
                }
            }
        }
        let cpu = sg_proc.cpu_secs() - cpu0;
        let relay_cpu = relay_proc.cpu_secs() - relay_cpu0;
        println!("\n| large objects, {} MiB | direct | plain TCP relay (reference) | sealgate | relay/direct | sealgate/direct |\n|---|---|---|---|---|---|", big >> 20);
        for (w, name) in names.iter().enumerate() {
            let [d, r, s] = [0, 1, 2].map(|i| median(rates[w][i].clone()));
            println!("| {name} | {d:.0} MB/s | {r:.0} MB/s | {s:.0} MB/s | {:.2} | {:.2} |", r / d, s / d);
        }
        // What the store's checksum costs the store: the same single PUT, direct, framed as
        // sealgate frames it (aws-chunked, CRC32C trailer), against the plain direct PUT.
        let (mut plain, mut framed) = (vec![], vec![]);
        for _ in 0..3 {
            let body = fresh(&data, next_tag());
            plain.push(big as f64 / put_retry(&c, &direct, "big-plain", body.clone()).await.as_secs_f64() / 1e6);
            framed.push(big as f64 / put_chunked(&c, &direct, "big-framed", body).await.as_secs_f64() / 1e6);
        }
        let (p, f) = (median(plain), median(framed));
        println!("\n| direct PUT, 1 stream | plain | aws-chunked + CRC32C trailer (as sealgate writes) | ratio |\n|---|---|---|---|");
        println!("| {} MiB | {p:.0} MB/s | {f:.0} MB/s | {:.2} |", big >> 20, f / p);
        println!("\n| workload | direct | sealgate | ratio |\n|---|---|---|---|");
        let gib = moved as f64 / (1u64 << 30) as f64;
        println!("| sealgate CPU per GiB moved | | {:.2} s/GiB | (AEAD alone ≈ 0.1 s/GiB; the plain TCP relay {:.2} s/GiB) |", cpu / gib, relay_cpu / gib);

        }

        if phase("small") {
        let garage = garage_pids(&g.dir);
        // Small objects: three interleaved rounds at concurrency 32 (median ops/s;
        // latency percentiles over all rounds), then one request at a time, where the
        // latency sealgate adds is not queueing behind other requests.
        for size in [4096usize, 65_536] {
            let body = Bytes::from(common::pattern(size, 2));
            let n = 2000;
            // (target, op) -> (ops/s per round, all latencies)
            let mut results: RoundSamples = Default::default();
            // (target, op) -> CPU seconds of [Garage, sealgate, relay, this client] over the rounds.
            let mut cpu: std::collections::HashMap<(&str, &str), [f64; 4]> = Default::default();
            let cpu_now = || [garage.iter().map(|p| cpu_secs(*p)).sum(), sg_proc.cpu_secs(), relay_proc.cpu_secs(), cpu_secs(std::process::id())];
            for round in 0..3 {
                for t in [&direct, &relay, &sg] {
                    for op in ["PUT", "GET"] {
                        let cpu0 = cpu_now();
                        let start = Instant::now();
                        let lat: Vec<f64> = futures::stream::iter(0..n)
                            .map(|i| {
                                let (c, body) = (c.clone(), fresh(&body, next_tag()));
                                let key = format!("small-{size}-{round}-{i}");
                                async move {
                                    if op == "PUT" {
                                        put_retry(&c, t, &key, body).await.as_secs_f64()
                                    } else {
                                        get(&c, t, &key, None).await.1.as_secs_f64()
                                    }
                                }
                            })
                            .buffer_unordered(32)
                            .collect()
                            .await;
                        let e = results.entry((t.name, op)).or_default();
                        e.0.push(n as f64 / start.elapsed().as_secs_f64());
                        e.1.extend(lat);
                        let c = cpu.entry((t.name, op)).or_default();
                        for (acc, (now, before)) in c.iter_mut().zip(cpu_now().into_iter().zip(cpu0)) {
                            *acc += now - before;
                        }
                    }
                }
            }
            println!("\n| small objects, concurrency 32 | direct | plain TCP relay (reference) | sealgate | relay/direct | sealgate/direct |\n|---|---|---|---|---|---|");
            for op in ["PUT", "GET"] {
                let [d, r, s] = ["direct", "relay", "sealgate"].map(|t| {
                    let (ops, lat) = results[&(t, op)].clone();
                    (median(ops), pct(lat.clone(), 0.5) * 1e3, pct(lat, 0.99) * 1e3)
                });
                println!(
                    "| {op} {} KiB × {n} × 3 rounds | {:.0} ops/s (p50 {:.1} ms, p99 {:.1} ms) | {:.0} ops/s (p50 {:.1} ms, p99 {:.1} ms) | {:.0} ops/s (p50 {:.1} ms, p99 {:.1} ms) | {:.2}; p99 added {:+.1} ms | {:.2}; p99 added {:+.1} ms |",
                    size / 1024, d.0, d.1, d.2, r.0, r.1, r.2, s.0, s.1, s.2, r.0 / d.0, r.2 - d.2, s.0 / d.0, s.2 - d.2
                );
            }
            // CPU milliseconds per request of each process (ticks of 10 ms over 6,000
            // requests: ±0.005 ms).
            for op in ["PUT", "GET"] {
                let [d, r, s] = ["direct", "relay", "sealgate"].map(|t| cpu[&(t, op)].map(|c| c * 1e3 / (3 * n) as f64));
                println!(
                    "| CPU per {op} {} KiB | Garage {:.3} ms, client {:.3} ms | Garage {:.3} ms, relay {:.3} ms, client {:.3} ms | Garage {:.3} ms, sealgate {:.3} ms, client {:.3} ms | | |",
                    size / 1024, d[0], d[3], r[0], r[2], r[3], s[0], s[1], s[3]
                );
            }
            println!("\n| workload | direct | sealgate | ratio |\n|---|---|---|---|");
            // One at a time, interleaved request by request, first all PUTs, then all GETs,
            // in alternating order. A request that follows an idle gap (direct 4 KiB GETs
            // stall ~40 ms on the store's Nagle) takes ~2 ms longer on this machine, so
            // which target goes after which must not be fixed.
            let mut lat: std::collections::HashMap<(&str, &str), Vec<f64>> = Default::default();
            for op in ["PUT", "GET"] {
                for i in 0..300 {
                    let order = if i % 2 == 0 { [&direct, &sg] } else { [&sg, &direct] };
                    for t in order {
                        let key = format!("seq-{size}-{i}");
                        let d = if op == "PUT" {
                            put_retry(&c, t, &key, fresh(&body, next_tag())).await
                        } else {
                            get(&c, t, &key, None).await.1
                        };
                        lat.entry((t.name, op)).or_default().push(d.as_secs_f64());
                    }
                }
            }
            for op in ["PUT", "GET"] {
                let [d, s] = ["direct", "sealgate"].map(|t| {
                    let l = lat[&(t, op)].clone();
                    (pct(l.clone(), 0.5) * 1e3, pct(l, 0.99) * 1e3)
                });
                println!(
                    "| {op} {} KiB × 300, one at a time | p50 {:.2} ms, p99 {:.2} ms | p50 {:.2} ms, p99 {:.2} ms | added p50 {:+.2} ms, p99 {:+.2} ms |",
                    size / 1024, d.0, d.1, s.0, s.1, s.0 - d.0, s.1 - d.1
                );
            }
        }

        }

        if phase("list") {
        // Listing: ListObjectsV2 over every object of the bucket, 1000 keys a page
        // (sealgate rewrites each page: sizes and ETags in plaintext terms, from the
        // listing alone). At least 2,000 objects; more when the small phase ran.
        for t in [&direct, &sg] {
            futures::stream::iter(0..2000)
                .map(|i| {
                    let c = c.clone();
                    async move { put_retry(&c, t, &format!("list-{i:05}"), Bytes::from_static(b"listed")).await }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
        }
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut listed = [0u64; 3];
        for _ in 0..3 {
            for (ti, t) in [&direct, &relay, &sg].into_iter().enumerate() {
                let start = Instant::now();
                let (mut n, mut token) = (0u64, None::<String>);
                loop {
                    let mut q = "list-type=2&max-keys=1000".to_string();
                    if let Some(tk) = &token {
                        q.push_str(&format!("&continuation-token={}", percent_encoding::utf8_percent_encode(tk, QUERY_VALUE)));
                    }
                    let r = request_q(&c, t, "GET", "", &q, &[]).send().await.unwrap();
                    assert!(r.status().is_success(), "{} list: {}", t.name, r.status());
                    let page = r.text().await.unwrap();
                    n += page.matches("<Key>").count() as u64;
                    token = page
                        .split_once("<NextContinuationToken>")
                        .and_then(|(_, rest)| rest.split_once("</NextContinuationToken>"))
                        .map(|(tk, _)| tk.replace("&amp;", "&"));
                    if token.is_none() {
                        break;
                    }
                }
                listed[ti] = n;
                rates[ti].push(n as f64 / start.elapsed().as_secs_f64());
            }
        }
        let [d, r, s] = [0, 1, 2].map(|i| median(rates[i].clone()));
        println!("\n| listing | direct | plain TCP relay (reference) | sealgate | relay/direct | sealgate/direct |\n|---|---|---|---|---|---|");
        println!(
            "| ListObjectsV2, 1000 keys a page ({} / {} objects) | {d:.0} objects/s | {r:.0} objects/s | {s:.0} objects/s | {:.2} | {:.2} |",
            listed[0], listed[2], r / d, s / d
        );
        }

        if phase("range") {
        if !phase("large") {
            for t in [&direct, &sg] {
                put(&c, t, "big", reqwest::Body::from(data.clone()), big).await.unwrap();
            }
        }
        // Random 1 KiB ranges of the big object: time to first byte and bytes read.
        let (mut td, mut ts) = (vec![], vec![]);
        let before = common::metric(&sg_endpoint, "sealgate_upstream_read_bytes_total").await;
        let n = 200u64;
        let mut x: u64 = 12345;
        for _ in 0..n {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = x % (big - 1024);
            let r = format!("bytes={}-{}", at, at + 1023);
            td.push(get(&c, &direct, "big", Some(r.clone())).await.0.as_secs_f64() * 1e3);
            let (ttfb, _, got) = get(&c, &sg, "big", Some(r)).await;
            assert_eq!(got, 1024);
            ts.push(ttfb.as_secs_f64() * 1e3);
        }
        let read = common::metric(&sg_endpoint, "sealgate_upstream_read_bytes_total").await - before;
        println!("| 1 KiB random range GET, TTFB p50 | {:.2} ms | {:.2} ms | +{:.2} ms |", median(td.clone()), median(ts.clone()), median(ts) - median(td));
        println!("| store bytes read per 1 KiB range | | {} (≤ 2 segments + tags = 131,104) | |", read / n);

        }

        if phase("memory") {
        // Memory while streaming one large object through sealgate.
        let stream_len: u64 = if full { 5 << 30 } else { 1 << 30 };
        sg_proc.reset_peak();
        let rss0 = sg_proc.status_kb("VmRSS:");
        put(&c, &sg, "stream", streamed_body(stream_len), stream_len).await.unwrap();
        let (_, _, n) = get(&c, &sg, "stream", None).await;
        assert_eq!(n, stream_len);
        println!(
            "| sealgate peak RSS streaming {} GiB up and down | | {} MiB (idle {} MiB) | target ≤ 64 MiB |",
            stream_len >> 30,
            sg_proc.status_kb("VmHWM:") / 1024,
            rss0 / 1024
        );
        // Many concurrent uploads.
        let (k, each): (usize, u64) = if full { (64, 256 << 20) } else { (64, 16 << 20) };
        sg_proc.reset_peak();
        let futs = (0..k).map(|i| {
            let c = c.clone();
            let key = format!("conc{i}");
            let sg = &sg;
            // A failure is reported with the figure rather than ending the run.
            async move { put(&c, sg, &key, streamed_body(each), each).await.err() }
        });
        let failed: Vec<String> = futures::future::join_all(futs).await.into_iter().flatten().collect();
        let note = match failed.first() {
            None => String::new(),
            Some(first) => format!(" ({} of {k} uploads failed; first: {first})", failed.len()),
        };
        println!("| sealgate peak RSS, {k} concurrent {} MiB uploads | | {} MiB{note} | target ≤ 256 MiB |", each >> 20, sg_proc.status_kb("VmHWM:") / 1024);
        }
        println!("\n(PUTs retried after a 503 from the store: {})", RETRIES.load(std::sync::atomic::Ordering::Relaxed));
    });
}
