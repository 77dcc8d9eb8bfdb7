//! Soak: N clients doing mixed PUT / GET / ranged GET / HEAD / multipart / copy / delete
//! through a `sealgate` process (loopback, real Garage) for M minutes, verifying every
//! byte read against a model of what each client wrote. Stops by itself.
//!
//! `scripts/soak.sh [MINUTES] [CLIENTS]`, or
//! `cargo bench --profile dev --bench soak -- --minutes 3 --clients 8`.
//!
//! Passes when there were no errors and no mismatches and sealgate's RSS stayed flat
//! (the last fifth of the run's samples peak at most 32 MiB above the peak of the second fifth,
//! after warm-up). Prints counts, throughput and RSS samples; exits 1 on failure.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

#[derive(Default)]
struct Stats {
    ops: [AtomicU64; 8],
    errors: AtomicU64,
    mismatches: AtomicU64,
    bytes: AtomicU64,
}

const NAMES: [&str; 8] = [
    "put",
    "get",
    "range",
    "head",
    "multipart",
    "copy",
    "delete",
    "list",
];

/// A small xorshift generator (the bench needs no crypto-quality randomness).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn body(r: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Result<Vec<u8>, String> {
    r.body
        .collect()
        .await
        .map(|b| b.into_bytes().to_vec())
        .map_err(|e| e.to_string())
}

/// One client: owns keys `c{id}/k{0..16}` and a model of their contents (length, seed).
async fn client(id: u64, c: aws_sdk_s3::Client, deadline: Instant, stats: Arc<Stats>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut model: HashMap<String, (usize, u64)> = HashMap::new();
    let b = "soak";
    while Instant::now() < deadline {
        let key = format!("c{id}/k{}", rng.below(16));
        let op = rng.below(100);
        let label = key.clone();
        let result: Result<(usize, bool), String> = async {
            let kind = match op {
                0..=24 => 0,
                25..=49 => 1,
                50..=64 => 2,
                65..=71 => 3,
                72..=77 => 4,
                78..=85 => 5,
                86..=93 => 6,
                _ => 7,
            };
            stats.ops[kind].fetch_add(1, Ordering::Relaxed);
            match kind {
                0 => {
                    let len = match rng.below(4) {
                        0 => rng.below(100) as usize,
                        1 => rng.below(200_000) as usize,
                        _ => rng.below(3 << 20) as usize,
                    };
                    let seed = rng.next();
                    c.put_object()
                        .bucket(b)
                        .key(&key)
                        .body(ByteStream::from(common::pattern(len, seed)))
                        .send()
                        .await
                        .map_err(|e| format!("put: {e:?}"))?;
                    model.insert(key, (len, seed));
                    Ok((len, true))
                }
                1..=3 => {
                    let Some(&(len, seed)) = model.get(&key) else {
                        return Ok((0, true));
                    };
                    if kind == 3 {
                        let h = c
                            .head_object()
                            .bucket(b)
                            .key(&key)
                            .send()
                            .await
                            .map_err(|e| format!("head: {e:?}"))?;
                        return Ok((0, h.content_length() == Some(len as i64)));
                    }
                    let want = common::pattern(len, seed);
                    if kind == 1 || len == 0 {
                        let r = c
                            .get_object()
                            .bucket(b)
                            .key(&key)
                            .send()
                            .await
                            .map_err(|e| format!("get: {e:?}"))?;
                        let got = body(r).await?;
                        return Ok((got.len(), got == want));
                    }
                    let start = rng.below(len as u64) as usize;
                    let end = (start + 1 + rng.below(300_000) as usize).min(len);
                    let r = c
                        .get_object()
                        .bucket(b)
                        .key(&key)
                        .range(format!("bytes={start}-{}", end - 1))
                        .send()
                        .await
                        .map_err(|e| format!("range: {e:?}"))?;
                    let got = body(r).await?;
                    Ok((got.len(), got[..] == want[start..end]))
                }
                4 => {
                    let seed = rng.next();
                    let sizes = [5usize << 20, rng.below(1 << 20) as usize + 1];
                    let full = common::pattern(sizes[0] + sizes[1], seed);
                    let up = c
                        .create_multipart_upload()
                        .bucket(b)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| format!("create: {e:?}"))?;
                    let uid = up.upload_id().unwrap_or_default().to_string();
                    let mut parts = Vec::new();
                    let mut off = 0;
                    // Upload part 2 first: parts may arrive in any order.
                    let mut order = vec![(1, 0, sizes[0]), (2, sizes[0], sizes[1])];
                    order.reverse();
                    for (n, at, len) in order {
                        let p = c
                            .upload_part()
                            .bucket(b)
                            .key(&key)
                            .upload_id(&uid)
                            .part_number(n)
                            .body(ByteStream::from(full[at..at + len].to_vec()))
                            .send()
                            .await
                            .map_err(|e| format!("part: {e:?}"))?;
                        parts.push(
                            CompletedPart::builder()
                                .part_number(n)
                                .e_tag(p.e_tag().unwrap_or_default())
                                .build(),
                        );
                        off += len;
                    }
                    parts.sort_by_key(|p| p.part_number());
                    c.complete_multipart_upload()
                        .bucket(b)
                        .key(&key)
                        .upload_id(&uid)
                        .multipart_upload(
                            CompletedMultipartUpload::builder()
                                .set_parts(Some(parts))
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| format!("complete: {e:?}"))?;
                    model.insert(key, (off, seed));
                    Ok((off, true))
                }
                5 => {
                    let Some(&entry) = model.get(&key) else {
                        return Ok((0, true));
                    };
                    let dst = format!("c{id}/k{}", rng.below(16));
                    if dst == key {
                        return Ok((0, true));
                    }
                    c.copy_object()
                        .bucket(b)
                        .key(&dst)
                        .copy_source(format!("{b}/{key}"))
                        .send()
                        .await
                        .map_err(|e| format!("copy: {e:?}"))?;
                    model.insert(dst, entry);
                    Ok((0, true))
                }
                6 => {
                    c.delete_object()
                        .bucket(b)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| format!("delete: {e:?}"))?;
                    model.remove(&key);
                    let gone = c.head_object().bucket(b).key(&key).send().await.is_err();
                    Ok((0, gone))
                }
                _ => {
                    let l = c
                        .list_objects_v2()
                        .bucket(b)
                        .prefix(format!("c{id}/"))
                        .send()
                        .await
                        .map_err(|e| format!("list: {e:?}"))?;
                    let listed: HashMap<String, i64> = l
                        .contents()
                        .iter()
                        .map(|o| {
                            (
                                o.key().unwrap_or_default().to_string(),
                                o.size().unwrap_or(-1),
                            )
                        })
                        .collect();
                    let same = listed.len() == model.len()
                        && model
                            .iter()
                            .all(|(k, (len, _))| listed.get(k) == Some(&(*len as i64)));
                    Ok((0, same))
                }
            }
        }
        .await;
        match result {
            Ok((n, true)) => {
                stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok((_, false)) => {
                stats.mismatches.fetch_add(1, Ordering::Relaxed);
                eprintln!("client {id}: MISMATCH on {label} (op {op})");
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("client {id}: ERROR on {label}: {e}");
                // The model may be stale for this key now; forget it.
                model.remove(&label);
            }
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: run it with scripts/soak.sh or `cargo bench --profile dev --bench soak`");
        return;
    }
    let minutes = arg("--minutes", 3);
    let clients = arg("--clients", 8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(async move {
        let g = common::garage();
        let dir = tempfile::tempdir().unwrap();
        let sg = common::SealgateProcess::start(
            dir.path(),
            &g.endpoint,
            &g.access_key,
            &g.secret_key,
            &g.region,
        )
        .await;
        let pid = sg.pid().unwrap();
        let c = sg.client();
        c.create_bucket().bucket("soak").send().await.unwrap();
        let stats = Arc::new(Stats::default());
        let start = Instant::now();
        let deadline = start + Duration::from_secs(minutes * 60);
        let tasks: Vec<_> = (0..clients)
            .map(|i| tokio::spawn(client(i, c.clone(), deadline, stats.clone())))
            .collect();
        let mut samples = Vec::new();
        while Instant::now() < deadline {
            samples.push((start.elapsed().as_secs(), rss_kb(pid)));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        samples.push((start.elapsed().as_secs(), rss_kb(pid)));
        let secs = start.elapsed().as_secs_f64();
        let total: u64 = stats.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum();
        println!("## soak: {clients} clients, {secs:.0} s, sealgate pid {pid}\n");
        for (n, o) in NAMES.iter().zip(&stats.ops) {
            println!("{n:>10}: {}", o.load(Ordering::Relaxed));
        }
        let (errors, mismatches) = (
            stats.errors.load(Ordering::Relaxed),
            stats.mismatches.load(Ordering::Relaxed),
        );
        println!(
            "{:>10}: {total} ({:.1} ops/s), {:.0} MiB verified",
            "total",
            total as f64 / secs,
            stats.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
        );
        println!(
            "{:>10}: {errors}\n{:>10}: {mismatches}",
            "errors", "mismatches"
        );
        let mib = |kb: u64| kb as f64 / 1024.0;
        println!(
            "RSS (MiB) every 5 s: {}",
            samples
                .iter()
                .map(|(_, kb)| format!("{:.0}", mib(*kb)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let fifth = (samples.len() / 5).max(1);
        let warm = samples[fifth..2 * fifth]
            .iter()
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        let last = samples[samples.len() - fifth..]
            .iter()
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        let flat = last <= warm + 32 * 1024;
        println!(
            "RSS peak after warm-up {:.0} MiB, in the last fifth {:.0} MiB: {}",
            mib(warm),
            mib(last),
            if flat { "flat" } else { "GROWING" }
        );
        drop(sg);
        errors == 0 && mismatches == 0 && flat && total > 0
    });
    std::process::exit(if ok { 0 } else { 1 });
}
