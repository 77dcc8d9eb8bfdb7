//! Browser uploads end to end, on Garage and on SeaweedFS: POST Object forms signed by
//! boto3's `generate_presigned_post` and posted by Python `requests` (success, AWS's
//! errors, a 50 MiB upload in bounded memory), hand-built forms for the framing errors,
//! CORS preflights and response headers at the HTTP level, and a real browser
//! (headless Chromium from Debian's packages) on another origin uploading with a
//! presigned PUT and a presigned POST, then downloading with fetch().

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Sealgate, Store, pattern, sha256};
use rstest::rstest;
use serde_json::{Value, json};

/// Python with boto3 and requests (scripts/setup.sh's `.venv`).
fn python() -> PathBuf {
    common::venv_tool("SEALGATE_TEST_PYTHON", "python")
}

/// boto3 and requests, driven by a JSON argument:
/// - `presign`: `generate_presigned_post` (and presigned PUT/GET URLs) → JSON;
/// - `post`: a multipart POST of ordered fields and a file with `requests` → status,
///   headers and body.
const HELPER: &str = r#"
import sys, json, boto3, requests
from botocore.config import Config
cmd, a = sys.argv[1], json.loads(sys.argv[2])
if cmd == "presign":
    s3 = boto3.client("s3", endpoint_url=a["endpoint"], aws_access_key_id=a["ak"],
                      aws_secret_access_key=a["sk"], region_name="us-east-1",
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    out = {"post": s3.generate_presigned_post(a["bucket"], a["key"], Fields=a.get("fields"),
                                                Conditions=a.get("conditions"),
                                                ExpiresIn=a.get("expires", 3600))}
    if a.get("put_key"):
        out["put"] = s3.generate_presigned_url("put_object", ExpiresIn=600,
                                               Params={"Bucket": a["bucket"], "Key": a["put_key"]})
    out["get"] = {k: s3.generate_presigned_url("get_object", ExpiresIn=600,
                                               Params={"Bucket": a["bucket"], "Key": k})
                  for k in a.get("get_keys", [])}
    print(json.dumps(out))
elif cmd == "post":
    with open(a["path"], "rb") as f:
        files = {"file": (a["filename"], f, "application/octet-stream")}
        r = requests.post(a["url"], data=[tuple(x) for x in a["fields"]], files=files,
                          allow_redirects=False, timeout=300)
    print(json.dumps({"status": r.status_code, "headers": dict(r.headers), "body": r.text}))
"#;

fn py(cmd: &str, arg: Value) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(HELPER)
        .arg(cmd)
        .arg(arg.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {cmd} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// `generate_presigned_post` for `key` on `endpoint`.
fn presign(
    endpoint: &str,
    bucket: &str,
    key: &str,
    fields: Value,
    conditions: Value,
    expires: i64,
) -> Value {
    py(
        "presign",
        json!({"endpoint": endpoint, "ak": common::CLIENT_AK, "sk": common::CLIENT_SK,
               "bucket": bucket, "key": key, "fields": fields, "conditions": conditions,
               "expires": expires}),
    )["post"]
        .clone()
}

/// The presigned form's fields in boto3's order, as `[name, value]` pairs.
fn ordered_fields(post: &Value) -> Vec<(String, String)> {
    post["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// What `requests` got back for a POST.
struct Posted {
    status: u16,
    headers: serde_json::Map<String, Value>,
    body: String,
}

impl Posted {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }

    /// The error `code` and `message` of an XML error body.
    fn error(&self) -> (String, String) {
        let get = |tag: &str| {
            sealgate::xml::texts(self.body.as_bytes(), &["Error", tag])
                .ok()
                .and_then(|v| v.into_iter().next())
                .unwrap_or_default()
        };
        (get("Code"), get("Message"))
    }

    fn element(&self, tag: &str) -> String {
        sealgate::xml::texts(self.body.as_bytes(), &["Error", tag])
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default()
    }
}

/// POSTs `fields` and a file of `data` named `filename` with Python `requests`.
fn post_form(url: &str, fields: &[(String, String)], data_path: &Path, filename: &str) -> Posted {
    let v = py(
        "post",
        json!({"url": url, "fields": fields, "path": data_path, "filename": filename}),
    );
    Posted {
        status: v["status"].as_u64().unwrap() as u16,
        headers: v["headers"].as_object().unwrap().clone(),
        body: v["body"].as_str().unwrap().to_string(),
    }
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn md5_hex(d: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(d))
}

/// Whether the store's object `bucket/key` exists (asked of the store itself).
async fn stored(sg: &Sealgate, bucket: &str, key: &str) -> bool {
    sg.direct
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// The store holds ciphertext with sealgate's metadata: never a 64-byte run of `plain`.
async fn assert_encrypted_in_store(sg: &Sealgate, bucket: &str, key: &str, plain: &[u8]) {
    let o = sg
        .direct
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let meta = o.metadata().cloned().unwrap_or_default();
    assert!(meta.contains_key("sealgate-dek"), "{meta:?}");
    let body = o.body.collect().await.unwrap().into_bytes();
    assert!(body.len() > plain.len());
    let probe = &plain[plain.len() / 2..plain.len() / 2 + 64];
    assert!(
        !body.windows(64).any(|w| w == probe),
        "plaintext in the store"
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boto3_presigned_post_stores_an_encrypted_object_as_a_put_would(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 7);
    let path = write_file(dir.path(), "notes.txt", &data);

    // SSE-S3 (the default), 201 with the PostResponse document, `${filename}`, content
    // type, metadata and a size range.
    let post = presign(
        &sg.endpoint,
        &b,
        "uploads/${filename}",
        json!({"success_action_status": "201", "Content-Type": "text/plain", "x-amz-meta-color": "blue"}),
        json!([{"success_action_status": "201"}, ["starts-with", "$Content-Type", "text/"],
               {"x-amz-meta-color": "blue"}, ["content-length-range", 1, 10485760]]),
        3600,
    );
    let url = post["url"].as_str().unwrap();
    assert_eq!(url, format!("{}/{b}", sg.endpoint));
    let r = post_form(
        url,
        &ordered_fields(&post),
        &path,
        "C:\\Users\\me\\notes.txt",
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let etag = format!("\"{}\"", md5_hex(&data));
    assert_eq!(
        r.header("etag"),
        Some(etag.as_str()),
        "SSE-S3 objects have AWS's MD5 ETag"
    );
    assert_eq!(r.header("x-amz-server-side-encryption"), Some("AES256"));
    let location = format!("{}/{b}/uploads%2Fnotes.txt", sg.endpoint);
    assert_eq!(r.header("location"), Some(location.as_str()));
    let texts = |tag: &str| {
        sealgate::xml::texts(r.body.as_bytes(), &["PostResponse", tag])
            .unwrap()
            .join("")
    };
    assert_eq!(texts("Key"), "uploads/notes.txt");
    assert_eq!(texts("Bucket"), b);
    assert_eq!(texts("ETag"), etag);
    assert_eq!(texts("Location"), location);

    assert_eq!(common::get(&sg.client, &b, "uploads/notes.txt").await, data);
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("uploads/notes.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(
        head.metadata().unwrap().get("color").map(String::as_str),
        Some("blue")
    );
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_encrypted_in_store(&sg, &b, "uploads/notes.txt", &data).await;

    // SSE-KMS from a form field; the default 204; no Content-Type field gives AWS's
    // binary/octet-stream.
    let post = presign(
        &sg.endpoint,
        &b,
        "kms.bin",
        json!({"x-amz-server-side-encryption": "aws:kms"}),
        json!([{"x-amz-server-side-encryption": "aws:kms"}]),
        3600,
    );
    let r = post_form(url, &ordered_fields(&post), &path, "kms.bin");
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-amz-server-side-encryption"), Some("aws:kms"));
    assert!(
        r.header("x-amz-server-side-encryption-aws-kms-key-id")
            .is_some()
    );
    let head = sg
        .client
        .head_object()
        .bucket(&b)
        .key("kms.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.content_type(), Some("binary/octet-stream"));
    assert_eq!(common::get(&sg.client, &b, "kms.bin").await, data);
    assert_encrypted_in_store(&sg, &b, "kms.bin", &data).await;

    // success_action_redirect: 303 to the URL with bucket, key and etag.
    let post = presign(
        &sg.endpoint,
        &b,
        "small.txt",
        json!({"success_action_redirect": "http://app.example/done"}),
        json!([[
            "starts-with",
            "$success_action_redirect",
            "http://app.example/"
        ]]),
        3600,
    );
    let small = write_file(dir.path(), "small.txt", b"hello");
    let r = post_form(url, &ordered_fields(&post), &small, "small.txt");
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.header("location").unwrap();
    assert_eq!(
        to,
        format!(
            "http://app.example/done?bucket={b}&key=small.txt&etag=%22{}%22",
            md5_hex(b"hello")
        )
    );
    assert_eq!(
        common::get(&sg.client, &b, "small.txt").await,
        b"hello".to_vec()
    );
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_posts_that_break_their_policy_get_aws_errors_and_store_nothing(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let big = write_file(dir.path(), "big.bin", &pattern(5000, 1));
    let url = format!("{}/{b}", sg.endpoint);

    // Over content-length-range: refused before any of the file reaches the store.
    let post = presign(
        &sg.endpoint,
        &b,
        "big.bin",
        json!({}),
        json!([["content-length-range", 1, 1000]]),
        3600,
    );
    let r = post_form(&url, &ordered_fields(&post), &big, "big.bin");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.error(),
        (
            "EntityTooLarge".into(),
            "Your proposed upload exceeds the maximum allowed size".into()
        )
    );
    assert_eq!(r.element("ProposedSize"), "5000");
    assert_eq!(r.element("MaxSizeAllowed"), "1000");
    assert!(!stored(&sg, &b, "big.bin").await);
    // Under the minimum.
    let post = presign(
        &sg.endpoint,
        &b,
        "big.bin",
        json!({}),
        json!([["content-length-range", 6000, 9000]]),
        3600,
    );
    let r = post_form(&url, &ordered_fields(&post), &big, "big.bin");
    assert_eq!(r.error().0, "EntityTooSmall", "{}", r.body);
    assert!(!stored(&sg, &b, "big.bin").await);

    // An expired policy.
    let post = presign(&sg.endpoint, &b, "late.bin", json!({}), json!([]), -60);
    let r = post_form(&url, &ordered_fields(&post), &big, "late.bin");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.error(),
        (
            "AccessDenied".into(),
            "Invalid according to Policy: Policy expired.".into()
        )
    );

    // A bad signature, and a policy changed after signing.
    let post = presign(&sg.endpoint, &b, "sig.bin", json!({}), json!([]), 3600);
    let mut fields = ordered_fields(&post);
    for (k, v) in fields.iter_mut() {
        if k == "x-amz-signature" {
            *v = "0".repeat(64);
        }
    }
    let r = post_form(&url, &fields, &big, "sig.bin");
    assert_eq!(r.status, 403, "{}", r.body);
    let (code, message) = r.error();
    assert_eq!(code, "SignatureDoesNotMatch");
    assert_eq!(
        message,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    );
    assert_eq!(r.element("AWSAccessKeyId"), common::CLIENT_AK);
    let policy = post["fields"]["policy"].as_str().unwrap();
    assert_eq!(r.element("StringToSign"), policy);
    let other = presign(&sg.endpoint, &b, "other.bin", json!({}), json!([]), 3600);
    let mut fields = ordered_fields(&post);
    for (k, v) in fields.iter_mut() {
        if k == "policy" {
            *v = other["fields"]["policy"].as_str().unwrap().to_string();
        }
    }
    assert_eq!(
        post_form(&url, &fields, &big, "sig.bin").error().0,
        "SignatureDoesNotMatch"
    );
    assert!(!stored(&sg, &b, "sig.bin").await && !stored(&sg, &b, "other.bin").await);

    // A field the policy does not cover.
    let post = presign(&sg.endpoint, &b, "extra.bin", json!({}), json!([]), 3600);
    let mut fields = ordered_fields(&post);
    fields.insert(0, ("x-amz-meta-extra".into(), "1".into()));
    let r = post_form(&url, &fields, &big, "extra.bin");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.error(),
        (
            "AccessDenied".into(),
            "Invalid according to Policy: Extra input fields: x-amz-meta-extra".into()
        )
    );
    assert!(!stored(&sg, &b, "extra.bin").await);

    // A key outside the policy's starts-with.
    let post = presign(
        &sg.endpoint,
        &b,
        "uploads/${filename}",
        json!({}),
        json!([]),
        3600,
    );
    let mut fields = ordered_fields(&post);
    for (k, v) in fields.iter_mut() {
        if k == "key" {
            *v = "private/x.bin".into();
        }
    }
    let r = post_form(&url, &fields, &big, "x.bin");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.error(),
        (
            "AccessDenied".into(),
            r#"Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "uploads/"]"#.into()
        )
    );
    assert!(!stored(&sg, &b, "private/x.bin").await);

    // An access key sealgate does not know.
    let stranger = py(
        "presign",
        json!({"endpoint": sg.endpoint, "ak": "AKIDNOBODY", "sk": "x", "bucket": b, "key": "k",
               "fields": {}, "conditions": [], "expires": 3600}),
    )["post"]
        .clone();
    let r = post_form(&url, &ordered_fields(&stranger), &big, "k");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error().0, "InvalidAccessKeyId");
    assert_eq!(r.element("AWSAccessKeyId"), "AKIDNOBODY");
}

/// A form as a browser builds it, by hand: `fields`, then (if any) a file part named
/// `file_name` holding `data`, then `tail` (the closing delimiter in browsers).
fn hand_form(
    boundary: &str,
    fields: &[(String, String)],
    file: Option<&[u8]>,
    tail: &str,
) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some(data) = file {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(tail.as_bytes());
    b
}

async fn raw_post(url: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn code_of(body: &str) -> String {
    sealgate::xml::error_code(body).unwrap_or_default()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forms_are_refused_with_aws_codes_and_store_nothing(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let url = format!("{}/{b}", sg.endpoint);
    let post = presign(&sg.endpoint, &b, "hand.bin", json!({}), json!([]), 3600);
    let fields = ordered_fields(&post);
    let ct = "multipart/form-data; boundary=sealgateBoundary";
    let data = pattern(200_000, 3);

    // A well-formed hand-built form is stored.
    let close = "--sealgateBoundary--\r\n";
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form("sealgateBoundary", &fields, Some(&data), close),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(common::get(&sg.client, &b, "hand.bin").await, data);
    sg.client
        .delete_object()
        .bucket(&b)
        .key("hand.bin")
        .send()
        .await
        .unwrap();

    // Not multipart/form-data.
    let (status, body) = raw_post(&url, "text/plain", b"key=x".to_vec()).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (412, "PreconditionFailed"),
        "{body}"
    );
    assert!(body.contains("Bucket POST must be of the enclosure-type multipart/form-data"));
    // No boundary.
    let (status, body) = raw_post(&url, "multipart/form-data", b"x".to_vec()).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "MalformedPOSTRequest"),
        "{body}"
    );
    // No file.
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form("sealgateBoundary", &fields, None, close),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "InvalidArgument"),
        "{body}"
    );
    assert!(
        body.contains("POST requires exactly one file upload per request."),
        "{body}"
    );
    // More than 20 KiB of fields before the file.
    let mut long = fields.clone();
    long.insert(0, ("x-ignore-padding".into(), "p".repeat(21 * 1024)));
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form("sealgateBoundary", &long, Some(&data), close),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "MaxPostPreDataLengthExceeded"),
        "{body}"
    );
    assert!(
        body.contains("<MaxPostPreDataLengthBytes>20480</MaxPostPreDataLengthBytes>"),
        "{body}"
    );
    // A signing field missing.
    let unsigned: Vec<_> = fields
        .iter()
        .filter(|(k, _)| k != "x-amz-signature")
        .cloned()
        .collect();
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form("sealgateBoundary", &unsigned, Some(&data), close),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "InvalidArgument"),
        "{body}"
    );
    assert!(
        body.contains("Bucket POST must contain a field named 'X-Amz-Signature'.  If it is specified, please check the order of the fields."),
        "{body}"
    );
    // No signing fields at all: anonymous, which sealgate never allows.
    let anonymous = vec![("key".to_string(), "hand.bin".to_string())];
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form("sealgateBoundary", &anonymous, Some(&data), close),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (403, "AccessDenied"),
        "{body}"
    );
    // A field after the file (AWS ignores it): the file's length is not what the body's
    // implies, so sealgate refuses it, and the store keeps nothing.
    let after = format!(
        "--sealgateBoundary\r\nContent-Disposition: form-data; name=\"x-ignore-late\"\r\n\r\nv\r\n{close}"
    );
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form("sealgateBoundary", &fields, Some(&data), &after),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "MalformedPOSTRequest"),
        "{body}"
    );
    // No CRLF after the closing delimiter.
    let (status, body) = raw_post(
        &url,
        ct,
        hand_form(
            "sealgateBoundary",
            &fields,
            Some(&data),
            "--sealgateBoundary--",
        ),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "MalformedPOSTRequest"),
        "{body}"
    );
    assert!(!stored(&sg, &b, "hand.bin").await);
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifty_mib_post_streams_through_in_bounded_memory(#[case] store: Store) {
    let s = store.shared();
    let dir = tempfile::tempdir().unwrap();
    let sg = common::SealgateProcess::start_with(
        dir.path(),
        (&s.endpoint, &s.access_key, &s.secret_key, &s.region),
        "warn",
        "",
    )
    .await;
    let client = sg.client();
    let b = format!("t-{}", common::random_hex(8));
    client.create_bucket().bucket(&b).send().await.unwrap();
    let url = format!("{}/{b}", sg.endpoint);
    let post = presign(
        &sg.endpoint,
        &b,
        "${filename}",
        json!({}),
        json!([["content-length-range", 0, 104857600]]),
        3600,
    );
    let fields = ordered_fields(&post);
    // Warm up (first connections, KMS key creation) before the baseline.
    let warm = write_file(dir.path(), "warm.bin", &pattern(2 << 20, 9));
    assert_eq!(post_form(&url, &fields, &warm, "warm.bin").status, 204);
    let pid = sg.pid().unwrap();
    let before = peak_rss_mib(pid);
    let data = pattern(50 << 20, 5);
    let big = write_file(dir.path(), "big.bin", &data);
    let r = post_form(&url, &fields, &big, "big.bin");
    assert_eq!(r.status, 204, "{}", r.body);
    let after = peak_rss_mib(pid);
    eprintln!("sealgate peak RSS: {before:.1} MiB before, {after:.1} MiB after a 50 MiB POST");
    assert!(
        after - before < 20.0,
        "sealgate's peak RSS grew from {before:.1} MiB to {after:.1} MiB during a 50 MiB POST"
    );
    let back = common::get(&client, &b, "big.bin").await;
    assert_eq!(sha256(&back), sha256(&data));
}

fn cors_rule(origin: &str, methods: &[&str]) -> aws_sdk_s3::types::CorsRule {
    let mut r = aws_sdk_s3::types::CorsRule::builder()
        .allowed_origins(origin)
        .allowed_headers("*")
        .expose_headers("ETag")
        .expose_headers("x-amz-server-side-encryption")
        .max_age_seconds(600);
    for m in methods {
        r = r.allowed_methods(*m);
    }
    r.build().unwrap()
}

async fn put_cors(sg: &Sealgate, bucket: &str, rules: Vec<aws_sdk_s3::types::CorsRule>) {
    let cfg = aws_sdk_s3::types::CorsConfiguration::builder()
        .set_cors_rules(Some(rules))
        .build()
        .unwrap();
    sg.client
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(cfg)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutBucketCors: {e:?}"));
}

async fn options(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().request(reqwest::Method::OPTIONS, url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_and_response_headers_follow_the_bucket_rules(#[case] store: Store) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    common::put(&sg.client, &b, "obj", b"cors body").await;
    let obj = format!("{}/{b}/obj", sg.endpoint);
    let app = "http://app.example:8080";

    // No Origin; no configuration yet (checked before the method).
    let r = options(&obj, &[]).await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Insufficient information. Origin request header needed.")
    );
    let r = options(
        &obj,
        &[("origin", app), ("access-control-request-method", "PUT")],
    )
    .await;
    assert_eq!(r.status(), 403);
    let t = r.text().await.unwrap();
    assert!(
        t.contains("<Code>AccessForbidden</Code>")
            && t.contains("CORSResponse: CORS is not enabled for this bucket."),
        "{t}"
    );
    assert!(
        t.contains("<Method>PUT</Method><ResourceType>BUCKET</ResourceType>"),
        "{t}"
    );
    let r = options(
        &format!("{}/no-such-bucket-{}/k", sg.endpoint, common::random_hex(4)),
        &[("origin", app), ("access-control-request-method", "GET")],
    )
    .await;
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("CORSResponse: Bucket not found")
    );

    put_cors(
        &sg,
        &b,
        vec![
            cors_rule(app, &["GET", "PUT", "POST", "HEAD"]),
            cors_rule("*", &["GET"]),
        ],
    )
    .await;
    let got = sg.client.get_bucket_cors().bucket(&b).send().await.unwrap();
    assert_eq!(
        got.cors_rules().len(),
        2,
        "the store keeps the configuration"
    );

    // A matching preflight: 200, no body, the rule's headers.
    let r = options(
        &obj,
        &[
            ("origin", app),
            ("access-control-request-method", "PUT"),
            (
                "access-control-request-headers",
                "Content-Type, X-Amz-Meta-A",
            ),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["access-control-allow-origin"], app);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT, POST, HEAD");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, x-amz-meta-a"
    );
    assert_eq!(
        h["access-control-expose-headers"],
        "ETag, x-amz-server-side-encryption"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert!(h.get("content-type").is_none());
    assert!(r.bytes().await.unwrap().is_empty());
    // Another origin gets the catch-all GET rule only.
    let r = options(
        &obj,
        &[
            ("origin", "http://elsewhere"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = options(
        &obj,
        &[
            ("origin", "http://elsewhere"),
            ("access-control-request-method", "PUT"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    let t = r.text().await.unwrap();
    assert!(
        t.contains("CORSResponse: This CORS request is not allowed."),
        "{t}"
    );
    assert!(
        t.contains("<Method>PUT</Method><ResourceType>OBJECT</ResourceType>"),
        "{t}"
    );
    let r = options(
        &obj,
        &[("origin", app), ("access-control-request-method", "PATCH")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Invalid Access-Control-Request-Method: PATCH")
    );

    // Actual requests: a signed GET with a matching Origin gets the headers; without an
    // Origin, or from an origin no rule allows for the method, none.
    let get = |origin: Option<&'static str>, method: &'static str| {
        let url = obj.clone();
        async move {
            let mut extra = Vec::new();
            if let Some(o) = origin {
                extra.push(("origin", o.to_string()));
            }
            let h = common::signed_headers(method, &url, &extra);
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            reqwest::Client::new()
                .request(m, &url)
                .headers(h)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get(Some(app), "GET").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], app);
    assert_eq!(
        r.headers()["access-control-expose-headers"],
        "ETag, x-amz-server-side-encryption"
    );
    assert_eq!(r.bytes().await.unwrap(), &b"cors body"[..]);
    let r = get(None, "GET").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = get(Some("http://elsewhere"), "HEAD").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "HEAD is not allowed for that origin"
    );

    // OPTIONS is not a way around authentication: a preflight with presigned-looking
    // parameters answers headers only, and an unsigned GET from an allowed origin is still
    // refused (with the CORS headers, so the page can read why).
    let r = options(
        &format!("{obj}?X-Amz-Signature=00&X-Amz-Credential=x"),
        &[("origin", app), ("access-control-request-method", "GET")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = reqwest::Client::new()
        .get(&obj)
        .header("origin", app)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["access-control-allow-origin"], app);
    assert!(!r.text().await.unwrap().contains("cors body"));

    // DeleteBucketCors through sealgate is seen at once.
    sg.client
        .delete_bucket_cors()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let r = options(
        &obj,
        &[("origin", app), ("access-control-request-method", "GET")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("CORS is not enabled for this bucket.")
    );
}

/// The Chromium binary: `SEALGATE_TEST_CHROMIUM`, else Debian's `chromium-headless-shell`
/// or `chromium` (scripts/setup.sh installs the first). Fails when absent.
fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("SEALGATE_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium-headless-shell", "chromium"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .unwrap();
        if out.status.success() {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "Chromium not found: run scripts/setup.sh (apt chromium-headless-shell) or set SEALGATE_TEST_CHROMIUM"
    );
}

/// Serves `html` to every request on a loopback port of its own (the page's origin).
async fn serve_page(html: String) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = if head.starts_with(b"GET /page") {
                    ("200 OK", html)
                } else {
                    ("404 Not Found", String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, task)
}

/// The page: a presigned PUT (fetch), a presigned POST (FormData), then fetch() GETs of
/// both objects; the results go into the DOM as base64 JSON for `--dump-dom`.
const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>sealgate browser test</title></head>
<body><pre id="result">pending</pre><script>
const cfg = __CONFIG__;
async function step(f) { try { return await f(); } catch (e) { return {error: String(e)}; } }
(async () => {
  const out = {};
  out.put = await step(async () => {
    const r = await fetch(cfg.put, {method: 'PUT', body: cfg.putBody});
    return {status: r.status, etag: r.headers.get('ETag')};
  });
  out.post = await step(async () => {
    const fd = new FormData();
    for (const [k, v] of Object.entries(cfg.post.fields)) fd.append(k, v);
    fd.append('file', new Blob([cfg.postBody], {type: 'text/plain'}), 'browser.txt');
    const r = await fetch(cfg.post.url, {method: 'POST', body: fd});
    return {status: r.status, etag: r.headers.get('ETag')};
  });
  out.getPut = await step(async () => {
    const r = await fetch(cfg.getPut);
    return {status: r.status, body: await r.text()};
  });
  out.getPost = await step(async () => {
    const r = await fetch(cfg.getPost);
    return {status: r.status, body: await r.text()};
  });
  document.getElementById('result').textContent = btoa(JSON.stringify(out));
})();
</script></body></html>"#;

/// Opens `url` in headless Chromium and returns what the page wrote into `#result`.
async fn run_page(url: &str) -> Value {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=60000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("Chromium finished within 2 minutes")
        .expect("run Chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let text = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|t| t.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "no result in the page:\n{dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    use base64::Engine as _;
    let json = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_else(|_| {
            panic!(
                "the page did not finish: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_slice(&json).unwrap()
}

#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_another_origin_uploads_with_presigned_put_and_post_then_downloads(
    #[case] store: Store,
) {
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let put_body = "browser-put-".repeat(20_000);
    let post_body = "browser-post-".repeat(20_000);
    let page_for = |put_key: &str, post_key: &str| {
        let posted = post_key.replace("${filename}", "browser.txt");
        let v = py(
            "presign",
            json!({"endpoint": sg.endpoint, "ak": common::CLIENT_AK, "sk": common::CLIENT_SK,
                   "bucket": b, "key": post_key, "fields": {}, "conditions": [], "expires": 600,
                   "put_key": put_key, "get_keys": [put_key, &posted]}),
        );
        let cfg = json!({
            "put": v["put"], "putBody": put_body, "post": v["post"], "postBody": post_body,
            "getPut": v["get"][put_key], "getPost": v["get"][&posted],
        });
        PAGE.replace("__CONFIG__", &cfg.to_string())
    };

    // The allowed origin: the page's own server.
    let (port, page_server) = serve_page(page_for("browser/put.txt", "browser/${filename}")).await;
    let origin = format!("http://127.0.0.1:{port}");
    put_cors(
        &sg,
        &b,
        vec![cors_rule(&origin, &["GET", "PUT", "POST", "HEAD"])],
    )
    .await;
    let out = run_page(&format!("{origin}/page.html")).await;
    page_server.abort();
    assert_eq!(out["put"]["status"], 200, "{out}");
    assert!(
        out["put"]["etag"]
            .as_str()
            .is_some_and(|e| e.starts_with('"')),
        "ETag exposed: {out}"
    );
    assert_eq!(out["post"]["status"], 204, "{out}");
    assert!(out["post"]["etag"].as_str().is_some(), "{out}");
    assert_eq!(out["getPut"]["status"], 200, "{out}");
    assert_eq!(out["getPut"]["body"].as_str(), Some(put_body.as_str()));
    assert_eq!(out["getPost"]["body"].as_str(), Some(post_body.as_str()));
    assert_eq!(
        common::get(&sg.client, &b, "browser/put.txt").await,
        put_body.as_bytes()
    );
    assert_eq!(
        common::get(&sg.client, &b, "browser/browser.txt").await,
        post_body.as_bytes()
    );
    assert_encrypted_in_store(&sg, &b, "browser/browser.txt", post_body.as_bytes()).await;

    // An origin the rules do not allow: the browser refuses every response, and the PUT,
    // whose preflight failed, never happened. (The form POST is a "simple" request that
    // needs no preflight: it is stored, as on AWS, but the page cannot read the answer.
    // CORS protects the page's readers, not the bucket; the policy protects the bucket.)
    let (port, page_server) = serve_page(page_for("denied/put.txt", "denied/${filename}")).await;
    let out = run_page(&format!("http://127.0.0.1:{port}/page.html")).await;
    page_server.abort();
    for step in ["put", "post", "getPut", "getPost"] {
        let err = out[step]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{step} succeeded: {out}"));
        assert!(err.contains("Failed to fetch"), "{step}: {err}");
    }
    assert!(!stored(&sg, &b, "denied/put.txt").await);
}

/// A form signed with Signature Version 2 (`AWSAccessKeyId`, `Signature` = base64
/// HMAC-SHA1 of the policy: what older SDKs and s3-tests send) is refused by default, and
/// with `allow_signature_v2` verified and stored like a SigV4 form.
#[rstest]
#[case::garage(Store::Garage)]
#[case::seaweedfs(Store::SeaweedFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_v2_forms_are_stored_only_where_allowed(#[case] store: Store) {
    use base64::Engine as _;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let data = pattern(100_000, 21);
    let form = |bucket: &str, secret: &str| {
        let policy = b64(json!({
            "expiration": expiry,
            "conditions": [{"bucket": bucket}, ["starts-with", "$key", "v2/"]],
        })
        .to_string()
        .as_bytes());
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            secret.as_bytes(),
        );
        let signature = b64(aws_lc_rs::hmac::sign(&key, policy.as_bytes()).as_ref());
        let fields: Vec<(String, String)> = [
            ("key", "v2/obj".to_string()),
            ("AWSAccessKeyId", common::CLIENT_AK.to_string()),
            ("policy", policy),
            ("signature", signature),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        hand_form(
            "sealgateBoundary",
            &fields,
            Some(&data),
            "--sealgateBoundary--\r\n",
        )
    };
    let ct = "multipart/form-data; boundary=sealgateBoundary";
    // Default: refused.
    let sg = Sealgate::start_on(store).await;
    let b = sg.bucket().await;
    let url = format!("{}/{b}", sg.endpoint);
    let (status, body) = raw_post(&url, ct, form(&b, common::CLIENT_SK)).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "InvalidRequest"),
        "{body}"
    );
    assert!(!stored(&sg, &b, "v2/obj").await);
    drop(sg);
    // Allowed: a right signature stores the object encrypted, a wrong one is refused.
    let mut cfg = common::test_config_on(store);
    cfg.allow_signature_v2 = true;
    let sg = Sealgate::start_with(cfg).await;
    let b = sg.bucket().await;
    let url = format!("{}/{b}", sg.endpoint);
    let (status, body) = raw_post(&url, ct, form(&b, "not the secret")).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    assert!(!stored(&sg, &b, "v2/obj").await);
    let (status, body) = raw_post(&url, ct, form(&b, common::CLIENT_SK)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(common::get(&sg.client, &b, "v2/obj").await, data);
    assert_encrypted_in_store(&sg, &b, "v2/obj", &data).await;
}
