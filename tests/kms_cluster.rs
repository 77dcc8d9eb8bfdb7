//! Several sealgate instances sharing one KMS in PostgreSQL (`kms.store = "postgres"`,
//! issue 21): objects and uploads written through one are readable through the others,
//! a managed key is created once for all, key changes made on one are enforced by all
//! within the staleness bound, concurrent changes behave as on AWS, exactly one
//! instance runs scheduled work, and a database outage gives clean errors and recovers.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use common::{Postgres, Sealgate, Store, kms_client_at, pattern, random_hex, write_private};
use rstest::rstest;
use sealgate::config::Config;

/// The config of one cluster member: the shared database and root key in `dir`, an
/// audit log of its own.
fn member(store: Store, dir: &Path, url_file: &Path, n: usize) -> Config {
    let mut cfg = common::test_config_on(store);
    cfg.kms.store = sealgate::kms::StoreKind::Postgres;
    cfg.kms.postgres.url_file = Some(url_file.to_path_buf());
    cfg.kms.root_key_file = Some(dir.join("root.key"));
    cfg.kms.db_path = dir.join(format!("unused-{n}.redb"));
    cfg.kms.audit_log_path = Some(dir.join(format!("audit-{n}.jsonl")));
    cfg
}

struct Cluster {
    members: Vec<Sealgate>,
    dir: Arc<tempfile::TempDir>,
    url_file: std::path::PathBuf,
}

async fn cluster(store: Store, pg: &Postgres, n: usize) -> Cluster {
    cluster_with(store, pg, n, |_| {}).await
}

async fn cluster_with(
    store: Store,
    pg: &Postgres,
    n: usize,
    edit: impl Fn(&mut Config),
) -> Cluster {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    write_private(&dir.path().join("root.key"), random_hex(32).as_bytes());
    let url_file = pg.url_file(dir.path());
    let mut members = Vec::new();
    for i in 0..n {
        let mut cfg = member(store, dir.path(), &url_file, i);
        edit(&mut cfg);
        members.push(Sealgate::start_in(cfg, dir.clone()).await);
    }
    Cluster {
        members,
        dir,
        url_file,
    }
}

async fn get_bytes(sg: &Sealgate, b: &str, k: &str) -> Vec<u8> {
    common::get(&sg.client, b, k).await.to_vec()
}

/// Runs the sealgate binary: whether it succeeded, and its stdout and stderr.
fn sealgate_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// CreateKey through `sg`'s KMS API; the new key's id.
async fn create_key(sg: &Sealgate) -> String {
    kms_client_at(&sg.endpoint)
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_serve_each_others_objects_and_uploads(
    #[case] store: Store,
) {
    let c = cluster(store, Postgres::shared(), 3).await;
    let [a, b, cc] = &c.members[..] else {
        unreachable!()
    };
    let bucket = a.bucket().await;
    // The first default-encrypted writes, at once through all three: one alias/aws/s3.
    let mut writes = Vec::new();
    for (i, sg) in c.members.iter().enumerate() {
        let client = sg.client.clone();
        let bucket = bucket.clone();
        writes.push(tokio::spawn(async move {
            client
                .put_object()
                .bucket(&bucket)
                .key(format!("first-{i}"))
                .body(ByteStream::from(
                    format!("written through {i}").into_bytes(),
                ))
                .send()
                .await
                .unwrap()
        }));
    }
    for w in writes {
        let out = w.await.unwrap();
        assert_eq!(
            out.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256)
        );
    }
    let aliases = kms_client_at(&b.endpoint)
        .list_aliases()
        .send()
        .await
        .unwrap();
    let managed: Vec<_> = aliases
        .aliases()
        .iter()
        .filter(|a| a.alias_name() == Some("alias/aws/s3"))
        .collect();
    assert_eq!(managed.len(), 1, "{aliases:?}");
    let keys = kms_client_at(&cc.endpoint)
        .list_keys()
        .send()
        .await
        .unwrap();
    assert_eq!(
        keys.keys().len(),
        1,
        "one managed key for the cluster: {keys:?}"
    );
    for i in 0..3 {
        for sg in &c.members {
            assert_eq!(
                get_bytes(sg, &bucket, &format!("first-{i}")).await,
                format!("written through {i}").into_bytes()
            );
        }
    }

    // A customer managed key made through one instance encrypts through another.
    let key = create_key(a).await;
    let body = pattern(1 << 20, 5);
    b.client
        .put_object()
        .bucket(&bucket)
        .key("kms")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(cc, &bucket, "kms").await, body);

    // A multipart upload started on one, continued on another, completed on the third.
    let up = a
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let parts = [pattern(5 << 20, 1), pattern(3 << 20, 2)];
    let mut done = Vec::new();
    for (i, (sg, data)) in [b, cc].into_iter().zip(&parts).enumerate() {
        let n = i as i32 + 1;
        let p = sg
            .client
            .upload_part()
            .bucket(&bucket)
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(p.e_tag().unwrap())
                .build(),
        );
    }
    cc.client
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let whole: Vec<u8> = parts.concat();
    for sg in &c.members {
        assert_eq!(get_bytes(sg, &bucket, "big").await, whole);
    }
    drop(c.dir);
}

/// Also with the embedded KMS's data keys cached (`cache.embedded`): a change of the
/// KMS's state empties the cache.
#[rstest]
#[case::uncached(false)]
#[case::cached(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_disabled_through_one_instance_is_refused_by_the_others_within_a_second(
    #[case] cached: bool,
) {
    let c = cluster_with(Store::Garage, Postgres::shared(), 3, |cfg| {
        cfg.kms_backend.cache.embedded = cached;
    })
    .await;
    let (a, b, cc) = (&c.members[0], &c.members[1], &c.members[2]);
    let bucket = a.bucket().await;
    let key = create_key(a).await;
    b.client
        .put_object()
        .bucket(&bucket)
        .key("secret")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(ByteStream::from_static(b"classified"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(cc, &bucket, "secret").await, b"classified");

    kms_client_at(&a.endpoint)
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let disabled_at = Instant::now();
    let refused = |sg: &Sealgate| {
        let kms = kms_client_at(&sg.endpoint);
        let s3 = sg.client.clone();
        let (key, bucket) = (key.clone(), bucket.clone());
        async move {
            loop {
                let gen_refused = match kms
                    .generate_data_key()
                    .key_id(&key)
                    .key_spec(DataKeySpec::Aes256)
                    .send()
                    .await
                {
                    Err(e) => {
                        let code = e.as_service_error().and_then(|s| s.meta().code());
                        assert_eq!(code, Some("DisabledException"), "{e:?}");
                        true
                    }
                    Ok(_) => false,
                };
                let get_refused = s3
                    .get_object()
                    .bucket(&bucket)
                    .key("secret")
                    .send()
                    .await
                    .is_err();
                if gen_refused && get_refused {
                    return Instant::now();
                }
                assert!(
                    disabled_at.elapsed() < Duration::from_secs(5),
                    "still served 5 s after DisableKey elsewhere"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (tb, tc) = tokio::join!(refused(b), refused(cc));
    for t in [tb, tc] {
        let lag = t.duration_since(disabled_at);
        assert!(lag <= Duration::from_secs(1), "refused only after {lag:?}");
    }
    // And enabled again everywhere.
    kms_client_at(&cc.endpoint)
        .enable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let ok = a
            .client
            .get_object()
            .bucket(&bucket)
            .key("secret")
            .send()
            .await
            .is_ok();
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "not enabled again within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_through_two_instances_resolve_as_on_aws() {
    let c = cluster(Store::Garage, Postgres::shared(), 2).await;
    let (a, b) = (
        kms_client_at(&c.members[0].endpoint),
        kms_client_at(&c.members[1].endpoint),
    );
    let key = create_key(&c.members[0]).await;
    for round in 0..10 {
        let name = format!("alias/race-{round}");
        let (ra, rb) = tokio::join!(
            a.create_alias()
                .alias_name(&name)
                .target_key_id(&key)
                .send(),
            b.create_alias()
                .alias_name(&name)
                .target_key_id(&key)
                .send(),
        );
        let errors: Vec<String> = [ra.err(), rb.err()]
            .into_iter()
            .flatten()
            .map(|e| {
                e.as_service_error()
                    .and_then(|s| s.meta().code())
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        assert_eq!(errors, ["AlreadyExistsException"], "round {round}");
    }
    // Grants made at once through both are both kept.
    let (ga, gb) = tokio::join!(
        a.create_grant()
            .key_id(&key)
            .grantee_principal("arn:aws:iam::000000000000:user/one")
            .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
            .send(),
        b.create_grant()
            .key_id(&key)
            .grantee_principal("arn:aws:iam::000000000000:user/two")
            .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
            .send(),
    );
    ga.unwrap();
    gb.unwrap();
    // Listing through one instance shows the other's within the staleness bound.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let grants = a.list_grants().key_id(&key).send().await.unwrap();
        if grants.grants().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{grants:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_instance_runs_scheduled_work_and_another_takes_over() {
    let pg = Postgres::shared();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("root.key"), random_hex(32).as_bytes());
    let url_file = pg.url_file(dir.path());
    let open = |n: usize| {
        let cfg = member(Store::Garage, dir.path(), &url_file, n).kms;
        sealgate::kms::Kms::open(&cfg).unwrap()
    };
    let mut members: Vec<_> = (0..3).map(open).collect();
    // The watchers take the lease within a round (a quarter of the 1 s bound).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let holders: Vec<usize> = (0..members.len())
        .filter(|i| members[*i].runs_maintenance())
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    // The holder goes away (its session ends): another takes the lease.
    members.remove(holders[0]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = members.iter().filter(|k| k.runs_maintenance()).count();
        if n == 1 {
            break;
        }
        assert!(n <= 1, "two holders");
        assert!(Instant::now() < deadline, "nobody took the lease over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_clean_errors_and_recovers_by_itself() {
    let pg = Postgres::start();
    let c = cluster(Store::Garage, &pg, 1).await;
    let sg = &c.members[0];
    let bucket = sg.bucket().await;
    sg.client
        .put_object()
        .bucket(&bucket)
        .key("before")
        .body(ByteStream::from_static(b"written before the outage"))
        .send()
        .await
        .unwrap();
    pg.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Writes need a data key: 503, and nothing is stored.
    let e = sg
        .client
        .put_object()
        .bucket(&bucket)
        .key("during")
        .body(ByteStream::from_static(b"not stored"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{e:?}"
    );
    let stored = sg
        .direct
        .head_object()
        .bucket(&bucket)
        .key("during")
        .send()
        .await;
    assert!(stored.is_err(), "a refused write left an object");
    // The KMS API: a retryable dependency error, never an answer from stale state.
    let list = kms_client_at(&sg.endpoint)
        .list_aliases()
        .send()
        .await
        .unwrap_err();
    let code = list.as_service_error().and_then(|s| s.meta().code());
    assert_eq!(code, Some("DependencyTimeoutException"), "{list:?}");
    let generate = kms_client_at(&sg.endpoint)
        .generate_data_key()
        .key_id("alias/aws/s3")
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    let code = generate.as_service_error().and_then(|s| s.meta().code());
    assert_eq!(code, Some("DependencyTimeoutException"), "{generate:?}");
    let ready = reqwest::get(format!("{}/ready", sg.endpoint))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = sg
            .client
            .put_object()
            .bucket(&bucket)
            .key("after")
            .body(ByteStream::from_static(b"written after"))
            .send()
            .await;
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 10 s of the database's return: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get_bytes(sg, &bucket, "before").await,
        b"written before the outage"
    );
    let ready = reqwest::get(format!("{}/ready", sg.endpoint))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(c.url_file);
}

/// `sealgate kms migrate-store`: a single instance's redb KMS moves into PostgreSQL (and
/// back into a new redb file); everything written before is readable after, with the
/// same keys, aliases, grants and bucket rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_redb_kms_into_postgres_and_back() {
    let g = Store::Garage.shared();
    let dir = tempfile::tempdir().unwrap();
    let url_file = Postgres::shared().url_file(dir.path());
    let store = (
        g.endpoint.as_str(),
        g.access_key.as_str(),
        g.secret_key.as_str(),
        g.region.as_str(),
    );
    let pg_lines = |on: bool| {
        format!(
            "{}postgres.url_file = \"{}\"\n",
            if on { "store = \"postgres\"\n" } else { "" },
            url_file.display()
        )
    };
    let mut before =
        common::SealgateProcess::start_full(dir.path(), store, "info", "", &pg_lines(false)).await;
    let (s3, kms) = (before.client(), before.kms_client());
    let bucket = format!("migrate-{}", random_hex(4));
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    common::put(&s3, &bucket, "default", b"under alias/aws/s3").await;
    let key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    kms.create_alias()
        .alias_name("alias/app")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    kms.create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::000000000000:user/reader")
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("cmk")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/app")
        .body(ByteStream::from_static(b"under a customer managed key"))
        .send()
        .await
        .unwrap();
    before.kill();

    let config = dir.path().join("sealgate.toml");
    let sealgate = |args: &[&str]| {
        let mut all = vec!["kms", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        sealgate_cli(&all)
    };
    let (ok, out) = sealgate(&["migrate-store", "--to", "postgres"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("copied and verified: 2 keys (2 material versions), 2 aliases, 1 grants"),
        "{out}"
    );
    // A second copy into the same (now full) database is refused.
    let (ok, out) = sealgate(&["migrate-store", "--to", "postgres"]);
    assert!(!ok && out.contains("not empty"), "{out}");

    let after =
        common::SealgateProcess::start_full(dir.path(), store, "info", "", &pg_lines(true)).await;
    let s3 = after.client();
    assert_eq!(
        common::get(&s3, &bucket, "default").await,
        &b"under alias/aws/s3"[..]
    );
    assert_eq!(
        common::get(&s3, &bucket, "cmk").await,
        &b"under a customer managed key"[..]
    );
    let grants = after
        .kms_client()
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(grants.grants().len(), 1);
    drop(after);

    // And back, into a new redb file.
    let back = dir.path().join("back.redb");
    let (ok, out) = sealgate(&[
        "migrate-store",
        "--to",
        "redb",
        "--db",
        back.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("2 keys"), "{out}");
    assert!(back.exists());
}

/// Two sealgate processes on one database: one is SIGKILLed while a client writes
/// through it; every write it acknowledged is readable through the other, which keeps
/// serving.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_instance_mid_load_loses_no_acknowledged_write(#[case] store: Store) {
    let g = store.shared();
    let base = tempfile::tempdir().unwrap();
    let url_file = Postgres::shared().url_file(base.path());
    let root = random_hex(32);
    let lines = format!(
        "store = \"postgres\"\npostgres.url_file = \"{}\"\n",
        url_file.display()
    );
    let upstream = (
        g.endpoint.as_str(),
        g.access_key.as_str(),
        g.secret_key.as_str(),
        g.region.as_str(),
    );
    let mut procs = Vec::new();
    for i in 0..2 {
        let dir = base.path().join(format!("member-{i}"));
        std::fs::create_dir(&dir).unwrap();
        write_private(&dir.join("root.key"), root.as_bytes());
        procs.push(common::SealgateProcess::start_full(&dir, upstream, "info", "", &lines).await);
    }
    let bucket = format!("kill-{}", random_hex(4));
    let first = procs[0].client();
    first.create_bucket().bucket(&bucket).send().await.unwrap();
    // A first write, so the store's per-bucket setup (SeaweedFS allocates a volume on a
    // bucket's first write) is not part of the load.
    common::put(&first, &bucket, "warm-up", b"first").await;
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, bucket, killed, done) =
            (first.clone(), bucket.clone(), killed.clone(), done.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let body = pattern(64 << 10, i);
                let r = client
                    .put_object()
                    .bucket(&bucket)
                    .key(format!("k{i}"))
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await;
                match r {
                    Ok(_) => {
                        acknowledged.push((format!("k{i}"), body));
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    // Failures are expected only once the instance is gone.
                    Err(_) if killed.load(std::sync::atomic::Ordering::SeqCst) => break,
                    Err(e) => panic!("PUT k{i} failed before the kill: {e:?}"),
                }
            }
            acknowledged
        })
    };
    // Killed mid-load: after some writes were acknowledged, while others are in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        assert!(Instant::now() < deadline, "fewer than 10 writes in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    procs[0].kill();
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() >= 5,
        "only {} writes",
        acknowledged.len()
    );
    let other = procs[1].client();
    for (k, body) in &acknowledged {
        assert_eq!(&common::get(&other, &bucket, k).await[..], &body[..], "{k}");
    }
    common::put(&other, &bucket, "after", b"the survivor still writes").await;
    assert_eq!(
        &common::get(&other, &bucket, "after").await[..],
        b"the survivor still writes"
    );
}

/// The backup docs/operations.md describes: `pg_dump` while sealgate runs, `pg_restore`
/// into an empty database, a sealgate with the same root key on the restored copy reads
/// what was written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_taken_while_running_restores_into_a_working_kms() {
    let pg = Postgres::shared();
    let c = cluster(Store::Garage, pg, 1).await;
    let sg = &c.members[0];
    let bucket = sg.bucket().await;
    let key = create_key(sg).await;
    sg.client
        .put_object()
        .bucket(&bucket)
        .key("kept")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(ByteStream::from_static(b"survives a restore"))
        .send()
        .await
        .unwrap();
    let url = std::fs::read_to_string(&c.url_file).unwrap();
    let dump = c.dir.path().join("kms.dump");
    pg.dump(&url, &dump);
    let restored = c.dir.path().join("restored-url");
    write_private(&restored, pg.restore(&dump).as_bytes());
    let mut cfg = member(Store::Garage, c.dir.path(), &restored, 9);
    cfg.kms.postgres.url_file = Some(restored);
    let other = Sealgate::start_in(cfg, c.dir.clone()).await;
    assert_eq!(
        get_bytes(&other, &bucket, "kept").await,
        b"survives a restore"
    );
}

/// A key created through one instance is usable at once through another, by many
/// requests at the same moment (each waits for the one reload, none answers
/// NotFoundException).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_key_is_usable_at_once_through_another_instance_under_concurrency() {
    let c = cluster(Store::Garage, Postgres::shared(), 2).await;
    for _ in 0..5 {
        let key = create_key(&c.members[0]).await;
        let other = kms_client_at(&c.members[1].endpoint);
        let calls = (0..16).map(|_| {
            let (other, key) = (other.clone(), key.clone());
            tokio::spawn(async move {
                other
                    .generate_data_key()
                    .key_id(key)
                    .key_spec(DataKeySpec::Aes256)
                    .send()
                    .await
            })
        });
        for call in futures::future::join_all(calls).await {
            call.unwrap().unwrap();
        }
    }
}

/// `sslmode=require` in the URL: the KMS reaches its database over TLS, trusting the
/// server's certificate through `kms.postgres.ca_file`; without it, the certificate does
/// not verify and the KMS does not open (nothing falls back to plaintext).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_database_is_reached_over_tls_verified_by_ca_file() {
    let pg = Postgres::start_tls();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("root.key"), random_hex(32).as_bytes());
    let url_file = dir.path().join("pg-url");
    write_private(&url_file, pg.url_tls(&pg.new_database()).as_bytes());
    let mut cfg = member(Store::Garage, dir.path(), &url_file, 0).kms;
    cfg.audit_enabled = false;
    let refused =
        sealgate::kms::Kms::open(&cfg).expect_err("opened without trusting the certificate");
    assert_eq!(refused.aws_type(), "KMSInternalException", "{refused}");
    cfg.postgres.ca_file = pg.ca_file.clone();
    let kms = sealgate::kms::Kms::open(&cfg).unwrap();
    let alice = sealgate::auth::Principal {
        name: "alice".into(),
        account: "000000000000".into(),
        is_root: true,
    };
    let caller = sealgate::kms::Caller::in_process(&alice);
    let key = kms
        .create_key(caller, &sealgate::kms::CreateKeyOptions::default())
        .unwrap();
    assert!(!key.key_id.is_empty());
}

/// One audit trail for the cluster: each instance's hash-chained log is shipped into the
/// database; `sealgate audit verify` checks every instance's chain there, `sealgate audit
/// export` prints the whole trail as JSON lines in time order, and a record changed in
/// the database fails verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_keeps_one_audit_trail_that_verifies_and_exports() {
    let pg = Postgres::shared();
    let c = cluster(Store::Garage, pg, 2).await;
    let (a, b) = (&c.members[0], &c.members[1]);
    let key = create_key(a).await;
    for sg in [a, b] {
        kms_client_at(&sg.endpoint)
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .unwrap();
    }
    let g = Store::Garage.shared();
    let config = c.dir.path().join("audit.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[kms]\nstore = \"postgres\"\nroot_key_file = \"{}\"\npostgres.url_file = \"{}\"\n",
            g.endpoint,
            g.access_key,
            g.secret_key,
            c.dir.path().join("root.key").display(),
            c.url_file.display()
        ),
    )
    .unwrap();
    let audit = |cmd: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["audit", "--config"])
            .arg(&config)
            .args(cmd.split(' '))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Shipping runs every half second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let exported = loop {
        let (ok, out) = audit("export");
        assert!(ok, "{out}");
        let generate = out.matches("\"eventName\":\"GenerateDataKey\"").count();
        if generate >= 2 {
            break out;
        }
        assert!(Instant::now() < deadline, "not shipped within 5 s:\n{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let times: Vec<String> = exported
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["eventTime"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order");
    assert!(exported.contains("\"eventName\":\"CreateKey\""));
    let (ok, out) = audit("verify");
    assert!(ok, "{out}");
    assert!(
        out.contains("2 chains in the cluster's audit trail"),
        "{out}"
    );
    // Query and tail read the cluster's trail too.
    let (ok, out) = audit("query --event GenerateDataKey");
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out) = audit("tail -n 1");
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(out.trim(), newest_event(&exported), "the newest event");

    // Someone who can write the database edits a record: verification fails.
    let url = std::fs::read_to_string(&c.url_file).unwrap();
    let changed = pg.execute(
        &url,
        "UPDATE kms_audit SET line = replace(line, '\"eventName\":\"GenerateDataKey\"', '\"eventName\":\"DescribeKey\"') \
         WHERE seq = (SELECT max(seq) FROM kms_audit WHERE line LIKE '%GenerateDataKey%') \
         AND line LIKE '%GenerateDataKey%'",
    );
    assert!(changed >= 1);
    let (ok, out) = audit("verify");
    assert!(!ok, "an edited record verified:\n{out}");
}

/// The CloudTrail event (without the chain fields) of the newest exported record.
fn newest_event(exported: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(exported.lines().last().unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    for f in ["seq", "prevHash", "hash", "mac"] {
        o.remove(f);
    }
    v.to_string()
}

/// Root-key rotation without downtime (docs/design/root-key-rotation.md): the instances
/// are restarted one at a time with the new root key and the previous one, keep serving
/// (and see each other's KMS changes) throughout, and `sealgate kms rotate-root` re-seals
/// the shared database while writes and reads go on through both. Afterwards the new key
/// alone opens the database, the old key alone is refused, and the cluster's audit trail
/// verifies with both keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_root_key_rotates_while_the_instances_serve() {
    let c = cluster(Store::Garage, Postgres::shared(), 2).await;
    let Cluster {
        members,
        dir,
        url_file,
    } = c;
    let [a, b]: [Sealgate; 2] = members.try_into().ok().unwrap();
    let bucket = a.bucket().await;
    let key = create_key(&a).await;
    let put_kms = |sg: &Sealgate, k: &str, key: &str, body: Vec<u8>| {
        let (s3, bucket, k, key) = (
            sg.client.clone(),
            bucket.clone(),
            k.to_string(),
            key.to_string(),
        );
        async move {
            s3.put_object()
                .bucket(&bucket)
                .key(&k)
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
        }
    };
    put_kms(&a, "before", &key, b"sealed before".to_vec())
        .await
        .unwrap();

    let (old, new) = (dir.path().join("root.key"), dir.path().join("new.key"));
    write_private(&new, random_hex(32).as_bytes());
    let with_both = |sg: &Sealgate| {
        let mut cfg = sg.cfg.clone();
        cfg.kms.root_key_file = Some(new.clone());
        cfg.kms.previous_root_key_file = Some(old.clone());
        cfg
    };
    // Rolling restart. While `b` still has the old key alone, a key created through the
    // restarted `a` is usable through `b`.
    let cfg = with_both(&a);
    a.stop().await.unwrap();
    let a = Sealgate::start_in(cfg, dir.clone()).await;
    let mid_key = create_key(&a).await;
    put_kms(&b, "mid", &mid_key, b"sealed mid-restart".to_vec())
        .await
        .unwrap();
    assert_eq!(get_bytes(&a, &bucket, "mid").await, b"sealed mid-restart");
    let cfg = with_both(&b);
    b.stop().await.unwrap();
    let b = Sealgate::start_in(cfg, dir.clone()).await;
    // An instance someone forgot: it keeps the old key alone through the rotation.
    let mut cfg = a.cfg.clone();
    cfg.kms.root_key_file = Some(old.clone());
    cfg.kms.previous_root_key_file = None;
    cfg.kms.audit_log_path = Some(dir.path().join("audit-forgotten.jsonl"));
    let forgotten = Sealgate::start_in(cfg, dir.clone()).await;
    assert_eq!(
        get_bytes(&forgotten, &bucket, "mid").await,
        b"sealed mid-restart"
    );

    // Load through both instances while the rotation runs: every request succeeds.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (a, b, stop) = (a.client.clone(), b.client.clone(), stop.clone());
        let (bucket, key) = (bucket.clone(), key.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || n < 10 {
                let (w, r) = if n.is_multiple_of(2) {
                    (&a, &b)
                } else {
                    (&b, &a)
                };
                let body = pattern(64 << 10, u64::from(n));
                w.put_object()
                    .bucket(&bucket)
                    .key(format!("load-{n}"))
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(&key)
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("PUT load-{n}: {e:?}"));
                let got = common::get(r, &bucket, &format!("load-{n}")).await;
                assert_eq!(got.to_vec(), body, "load-{n}");
                n += 1;
            }
            n
        })
    };
    let g = Store::Garage.shared();
    let config = dir.path().join("rotate.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[kms]\nstore = \"postgres\"\nroot_key_file = \"{}\"\nprevious_root_key_file = \"{}\"\npostgres.url_file = \"{}\"\n",
            g.endpoint,
            g.access_key,
            g.secret_key,
            new.display(),
            old.display(),
            url_file.display()
        ),
    )
    .unwrap();
    let sealgate = sealgate_cli;
    let config_arg = config.to_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, out) =
        tokio::task::block_in_place(|| sealgate(&["kms", "--config", config_arg, "rotate-root"]));
    assert!(ok, "{out}");
    assert!(
        out.contains("re-sealed and verified under the new root key: 2 keys (2 material versions)"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = load.await.unwrap();
    assert!(served >= 10, "{served}");

    // The forgotten instance cannot read the rotated database: within the staleness
    // bound its key operations fail as a dependency outage and it is not ready; it
    // serves nothing from state it can no longer authenticate.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let generate = kms_client_at(&forgotten.endpoint)
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await;
        let ready = reqwest::get(format!("{}/ready", forgotten.endpoint))
            .await
            .unwrap()
            .status();
        if let Err(e) = &generate {
            let code = e.as_service_error().and_then(|s| s.meta().code());
            assert_eq!(code, Some("DependencyTimeoutException"), "{e:?}");
            if ready == 503 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "an instance without the new root key still served 5 s after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(forgotten);

    // Both instances serve what was sealed before, during and after, and a KMS change
    // through one is enforced by the other.
    for sg in [&a, &b] {
        assert_eq!(get_bytes(sg, &bucket, "before").await, b"sealed before");
        assert_eq!(get_bytes(sg, &bucket, "mid").await, b"sealed mid-restart");
    }
    let after_key = create_key(&b).await;
    put_kms(&a, "after", &after_key, b"sealed after".to_vec())
        .await
        .unwrap();
    assert_eq!(get_bytes(&b, &bucket, "after").await, b"sealed after");

    // The old key alone no longer opens the database; the new key alone does.
    let mut old_only = a.cfg.kms.clone();
    old_only.root_key_file = Some(old.clone());
    old_only.previous_root_key_file = None;
    let Err(err) = tokio::task::block_in_place(|| sealgate::kms::Kms::open(&old_only)) else {
        panic!("the old root key opened a rotated database");
    };
    assert!(err.to_string().contains("root key does not match"), "{err}");
    let mut cfg = a.cfg.clone();
    cfg.kms.previous_root_key_file = None;
    cfg.kms.audit_log_path = Some(dir.path().join("audit-new.jsonl"));
    let c3 = Sealgate::start_in(cfg, dir.clone()).await;
    assert_eq!(get_bytes(&c3, &bucket, "before").await, b"sealed before");
    assert_eq!(get_bytes(&c3, &bucket, "after").await, b"sealed after");

    // The trail (records signed with either key) verifies with both keys configured.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (ok, out) = sealgate(&["audit", "--config", config_arg, "verify"]);
        // a, b, the third instance and (once it shipped) the forgotten one.
        let chains = out
            .lines()
            .find_map(|l| l.strip_suffix(" chains in the cluster's audit trail"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if ok && chains >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((a, b, c3));
}
