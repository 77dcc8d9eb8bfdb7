//! Property-based fuzzing on stable Rust (proptest), run in CI with bounded case counts:
//! every parser that reads bytes an attacker controls (the store's bodies and metadata,
//! clients' upload ids, KMS requests and POST forms, key and POST policies, CORS
//! configurations) is fed random and mutated input.
//!
//! Properties: nothing panics; the decryptor never yields a byte that is not the
//! authenticated plaintext (a prefix of it, then an error); any change to a sealed object
//! is an error; KMS requests never produce an internal error.
//!
//! `SEALGATE_FUZZ_CASES=N` multiplies nothing: it sets the case count of every property
//! (default 256) for longer local runs. Crashing inputs found are kept as named
//! regression tests at the end of this file.

mod kms_support;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use sealgate::auth::{AccessKeys, Principal};
use sealgate::crypto::format::{self, Layout, PartHeader};
use sealgate::crypto::stream::{Decryptor, Dek, Encryptor};
use sealgate::kms::{
    Caller, EncryptionAlgorithm, EncryptionContext, Kms, KmsConfig, RootKey, SystemClock,
};
use sealgate::object::{Alg, Envelope, UploadToken};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("SEALGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- object format

fn dek() -> Dek {
    Dek::from_slice(&[0x42; 32]).unwrap()
}

fn chunked(
    data: Vec<u8>,
    chunk: usize,
) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    let v: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(v).boxed()
}

async fn collect_until_error(
    mut s: impl futures::Stream<Item = std::io::Result<Bytes>> + Unpin,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        match c {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// A sealed object: (ciphertext, layout, header of part 1 for single-part objects).
async fn seal(parts: &[Vec<u8>], multipart: bool) -> (Vec<u8>, Layout, Option<PartHeader>) {
    let mut cipher = Vec::new();
    let mut layout = Layout {
        headers_in_body: multipart,
        parts: Vec::new(),
        salts: Vec::new(),
    };
    let mut first = None;
    for (i, p) in parts.iter().enumerate() {
        let h = PartHeader {
            part_number: i as u32 + 1,
            salt: [i as u8 + 1; 16],
            plain_len: p.len() as u64,
        };
        first.get_or_insert(h);
        let e = Encryptor::new(chunked(p.clone(), 4096), &dek(), h, multipart);
        let (c, failed) = collect_until_error(e).await;
        assert!(!failed);
        cipher.extend_from_slice(&c);
        layout.parts.push((h.part_number, h.plain_len));
    }
    (cipher, layout, if multipart { None } else { first })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { to: usize },
    Append(Vec<u8>),
    Splice { at: usize, bytes: Vec<u8> },
    Swap { a: usize, b: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(at, bytes)| Mutation::Splice { at, bytes }),
        (any::<usize>(), any::<usize>(), 1usize..70_000).prop_map(|(a, b, len)| Mutation::Swap {
            a,
            b,
            len
        }),
    ]
}

/// Applies `m`; returns whether the bytes changed.
fn apply(c: &mut Vec<u8>, m: &Mutation) -> bool {
    let before = c.clone();
    match m {
        Mutation::Flip { at, xor } if !c.is_empty() => {
            let i = at % c.len();
            c[i] ^= xor;
        }
        Mutation::Truncate { to } if !c.is_empty() => c.truncate(to % c.len()),
        Mutation::Append(b) => c.extend_from_slice(b),
        Mutation::Splice { at, bytes } if !c.is_empty() => {
            let i = at % c.len();
            let end = (i + bytes.len()).min(c.len());
            c[i..end].copy_from_slice(&bytes[..end - i]);
        }
        Mutation::Swap { a, b, len } if c.len() >= 2 => {
            let len = (*len).min(c.len() / 2);
            let a = a % (c.len() - len + 1);
            let b = b % (c.len() - len + 1);
            let (x, y) = (c[a..a + len].to_vec(), c[b..b + len].to_vec());
            if a + len <= b || b + len <= a {
                c[a..a + len].copy_from_slice(&y);
                c[b..b + len].copy_from_slice(&x);
            }
        }
        _ => {}
    }
    *c != before
}

/// Decrypts the whole object (or `[start, end)`) from `cipher` as the GET path does.
async fn read(
    cipher: &[u8],
    layout: &Layout,
    first: Option<PartHeader>,
    start: u64,
    end: u64,
    chunk: usize,
) -> (Vec<u8>, bool) {
    let Some(p) = format::plan(layout, start, end) else {
        return (Vec::new(), false);
    };
    let (from, first) = if layout.headers_in_body && p.first_segment == 0 {
        (p.cipher_start - format::HEADER_LEN, None)
    } else if layout.headers_in_body {
        // A read starting inside a multipart part: the GET path fetches and checks that
        // part's header first; here the real one (the test sealed with known salts).
        let (n, len) = layout.parts[p.first_part];
        (
            p.cipher_start,
            Some(PartHeader {
                part_number: n,
                salt: [p.first_part as u8 + 1; 16],
                plain_len: len,
            }),
        )
    } else {
        (p.cipher_start, first)
    };
    // The store may send fewer or more bytes than asked for (a tampered object).
    let from = (from as usize).min(cipher.len());
    let to = (p.cipher_end as usize).min(cipher.len()).max(from);
    let mut slice = cipher[from..to].to_vec();
    if cipher.len() > p.cipher_end as usize && to == p.cipher_end as usize {
        // Anything past the planned end also arrives (appended bytes).
        slice.extend_from_slice(&cipher[to..]);
    }
    let d = Decryptor::new(chunked(slice, chunk), dek(), layout.clone(), &p, first);
    collect_until_error(d).await
}

fn parts_strategy() -> impl Strategy<Value = (Vec<Vec<u8>>, bool)> {
    (
        proptest::collection::vec(
            prop_oneof![
                Just(0usize),
                1usize..200,
                65_530usize..65_540,
                100_000usize..140_000
            ],
            1..4,
        ),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(sizes, multipart, seed)| {
            let sizes = if multipart {
                sizes
            } else {
                sizes[..1].to_vec()
            };
            let parts = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    (0..*n)
                        .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed ^ i as u8))
                        .collect()
                })
                .collect();
            (parts, multipart)
        })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn decryptor_yields_only_authenticated_plaintext_and_rejects_every_mutation(
        (parts, multipart) in parts_strategy(),
        m in mutation(),
        chunk in prop_oneof![Just(1usize << 20), 1usize..70_000],
    ) {
        rt().block_on(async {
            let plain: Vec<u8> = parts.concat();
            let (mut cipher, layout, first) = seal(&parts, multipart).await;
            let total = plain.len() as u64;
            let (got, failed) = read(&cipher, &layout, first, 0, total, chunk).await;
            prop_assert!(!failed);
            prop_assert!(got == plain);
            let before = cipher.clone();
            let changed = apply(&mut cipher, &m);
            // Bytes the whole-object read covers (leading and trailing empty parts of a
            // multipart object hold no plaintext and are not read; see the regression
            // test below).
            let covered = format::plan(&layout, 0, total).map_or(0..0, |p| {
                let hdr = if multipart { format::HEADER_LEN } else { 0 };
                (p.cipher_start - hdr) as usize..p.cipher_end as usize
            });
            let first_diff = before.iter().zip(&cipher).position(|(a, b)| a != b);
            // (Cutting only unread bytes off the end is caught by the GET path's length
            // check, `get::check_cipher_len`, not by the reader.)
            let inside = cipher.len() < covered.end
                || first_diff.is_some_and(|i| covered.contains(&i));
            let (got, failed) = read(&cipher, &layout, first, 0, total, chunk).await;
            prop_assert!(got.len() <= plain.len() && got[..] == plain[..got.len()],
                "only a prefix of the plaintext may come out");
            // Bytes appended after the last segment are never decrypted or delivered
            // (the reader stops at the planned length); the GET path refuses such an
            // object earlier, by its stored length (`get::check_cipher_len`).
            if matches!(m, Mutation::Append(_)) {
                prop_assert!(failed || got == plain);
            } else if changed && inside && total > 0 {
                prop_assert!(failed, "a mutation ({m:?}) went unnoticed");
            }
            Ok(())
        })?;
    }

    #[test]
    fn ranged_reads_of_mutated_objects_yield_only_authenticated_bytes(
        (parts, multipart) in parts_strategy(),
        m in mutation(),
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        rt().block_on(async {
            let plain: Vec<u8> = parts.concat();
            let (mut cipher, layout, first) = seal(&parts, multipart).await;
            let total = plain.len() as u64;
            if total == 0 {
                return Ok(());
            }
            let (start, end) = { let (x, y) = (a % total, b % total + 1); (x.min(y), x.max(y)) };
            let want = &plain[start as usize..end as usize];
            let (got, failed) = read(&cipher, &layout, first, start, end, 8192).await;
            prop_assert!(!failed && got == want);
            apply(&mut cipher, &m);
            let (got, _) = read(&cipher, &layout, first, start, end, 8192).await;
            prop_assert!(got.len() <= want.len() && got[..] == want[..got.len()]);
            Ok(())
        })?;
    }

    #[test]
    fn format_parsers_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        text in "\\PC{0,80}",
        runs in "[0-9:,]{0,60}",
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        let _ = PartHeader::decode(&bytes);
        for s in [&text, &runs] {
            if let Ok(layout) = Layout::decode_parts(s) {
                // A layout that parses plans every range without panicking.
                let _ = format::plan(&layout, a, b);
                let _ = layout.cipher_len();
                prop_assert_eq!(Layout::decode_parts(&layout.encode_parts()).ok(), Some(layout));
            }
        }
        let _ = format::plain_len_of_part_cipher(a, b % 2 == 0);
        // Sizes are checked against MAX_PLAIN where they enter; within it, planning any
        // range of any size never panics and stays inside the ciphertext.
        let size = a % (format::MAX_PLAIN + 1);
        let layout = Layout::single(size);
        if let Some(p) = format::plan(&layout, b % (size + 1), a) {
            prop_assert!(p.cipher_end <= layout.cipher_len());
        }
    }
}

// ---------------------------------------------------------------- S3 front

fn token_strategy() -> impl Strategy<Value = UploadToken> {
    (
        "[ -~]{1,80}",
        proptest::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,120}",
        proptest::collection::btree_map("[a-z:]{1,10}", "[ -~]{0,20}", 0..3),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of("[a-z][a-z0-9_-]{0,15}"),
        proptest::option::of(any::<[u8; 16]>()),
        proptest::option::of((
            any::<[u8; 16]>(),
            any::<bool>(),
            any::<bool>(),
            any::<[u8; 16]>(),
        )),
    )
        .prop_map(
            |(up, dek, arn, ctx, kms, bk, backend, bk_salt, v3)| UploadToken {
                upstream_id: up,
                v3: v3.map(
                    |(uid, md5, full_object, mac)| sealgate::object::upload::UploadV3 {
                        uid,
                        md5,
                        full_object,
                        algo: None,
                        mac,
                        upload_key: None,
                    },
                ),
                envelope: Envelope {
                    alg: if kms { Alg::Kms } else { Alg::S3 },
                    key_ref: arn,
                    wrapped: dek,
                    backend,
                    bk_salt,
                    context: ctx,
                    bucket_key: bk,
                    customer: None,
                },
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn upload_tokens_round_trip_and_garbage_never_panics(
        t in token_strategy(),
        junk in "\\PC{0,200}",
        b64 in "[A-Za-z0-9_-]{0,300}",
        m in mutation(),
    ) {
        prop_assert_eq!(UploadToken::decode(&t.encode()).unwrap(), Some(t.clone()));
        let _ = UploadToken::decode(&junk);
        let _ = UploadToken::decode(&format!("sg1.{b64}"));
        let _ = UploadToken::decode(&format!("sg3.{b64}"));
        let mut raw = t.encode().into_bytes();
        apply(&mut raw, &m);
        if let Ok(s) = String::from_utf8(raw) {
            let _ = UploadToken::decode(&s);
        }
    }

    #[test]
    fn xml_rewriter_never_panics_and_keeps_what_it_does_not_edit(
        junk in proptest::collection::vec(any::<u8>(), 0..400),
        keys in proptest::collection::vec("\\PC{1,40}", 0..8),
        m in mutation(),
    ) {
        use sealgate::xml::{Edit, rewrite_text, texts};
        let _ = rewrite_text(&junk, |_, _| Edit::Replace("1".into()));
        let _ = texts(&junk, &["Contents", "Key"]);
        // A listing the store could send: rewriting sizes changes only the sizes.
        let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>"#);
        for k in &keys {
            let esc = k.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            xml.push_str(&format!("<Contents><Key>{esc}</Key><ETag>&quot;e&quot;</ETag><Size>100</Size></Contents>"));
        }
        xml.push_str("</ListBucketResult>");
        let out = rewrite_text(xml.as_bytes(), |p, _| {
            if p.last().map(String::as_str) == Some("Size") {
                Edit::Replace("7".into())
            } else {
                Edit::Keep
            }
        }).unwrap();
        let got_keys = texts(&out, &["Contents", "Key"]).unwrap();
        let want_keys: Vec<String> = keys.iter().map(|k| k.replace('\r', "\n")).collect();
        prop_assert_eq!(got_keys.len(), want_keys.len());
        prop_assert!(texts(&out, &["Contents", "Size"]).unwrap().iter().all(|s| s == "7"));
        let mut bad = xml.into_bytes();
        apply(&mut bad, &m);
        let _ = rewrite_text(&bad, |_, t| Edit::Replace(format!("{t}x")));
    }
}

// ---------------------------------------------------------------- browser uploads

const FORM_BOUNDARY: &str = "fuzzBoundary123";

/// A form as browsers build it: `fields`, the file part, the closing delimiter and CRLF.
fn form_body(fields: &[(String, String)], file: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!(
                "--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            )
            .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!("--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n")
            .as_bytes(),
    );
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{FORM_BOUNDARY}--\r\n").as_bytes());
    b
}

/// File contents rich in CRLFs, dashes and the boundary, so delimiters straddle chunks.
fn file_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"--".to_vec()),
            Just(FORM_BOUNDARY.as_bytes().to_vec()),
            Just(FORM_BOUNDARY.as_bytes()[..7].to_vec()),
            proptest::collection::vec(any::<u8>(), 0..300),
        ],
        0..60,
    )
    .prop_map(|v| v.concat())
}

/// Reads a form; the file's bytes, or `None` when the form or its file stream failed.
async fn read_form(
    body: Vec<u8>,
    len: u64,
    chunk: usize,
) -> Option<(sealgate::s3::post::form::Prefix, Vec<u8>)> {
    let (prefix, file) = sealgate::s3::post::form::read(chunked(body, chunk), FORM_BOUNDARY, len)
        .await
        .ok()?;
    let mut out = Vec::new();
    if let Some(f) = file {
        let mut s = f.into_stream();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.ok()?);
        }
    }
    Some((prefix, out))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn post_forms_stream_back_exactly_or_fail_and_garbage_never_panics(
        fields in proptest::collection::vec(("[A-Za-z0-9_-]{1,16}", "[ -~]{0,40}"), 0..5),
        file in file_strategy(),
        chunk in 1usize..2000,
        junk in proptest::collection::vec(any::<u8>(), 0..1500),
        m in mutation(),
    ) {
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("file"))
            .collect();
        let body = form_body(&fields, &file);
        let len = body.len() as u64;
        // A form is ambiguous when its content holds the delimiter: it must then fail.
        let delimiter = format!("\r\n--{FORM_BOUNDARY}");
        let mut tail = file.clone();
        tail.extend_from_slice(delimiter.as_bytes());
        let first = tail.windows(delimiter.len()).position(|w| w == delimiter.as_bytes());
        let ambiguous = first != Some(file.len());
        rt().block_on(async {
            match (ambiguous, read_form(body.clone(), len, chunk).await) {
                (false, Some((prefix, got))) => {
                    let names: Vec<(String, String)> =
                        prefix.fields.iter().map(|f| (f.name.clone(), f.value.clone())).collect();
                    prop_assert_eq!(&names, &fields);
                    prop_assert_eq!(prefix.file.map(|f| f.len), Some(file.len() as u64));
                    prop_assert_eq!(got, file.clone());
                }
                (false, None) => prop_assert!(false, "a well-formed form failed"),
                (true, Some(_)) => prop_assert!(false, "a form holding its delimiter was accepted"),
                (true, None) => {}
            }
            // Garbage and mutated forms: no panic, and a file stream that ends cleanly
            // yielded exactly the length it announced.
            let _ = read_form(junk.clone(), junk.len() as u64, chunk).await;
            let mut bad = body;
            apply(&mut bad, &m);
            let bad_len = bad.len() as u64;
            if let Ok((prefix, Some(f))) =
                sealgate::s3::post::form::read(chunked(bad, chunk), FORM_BOUNDARY, bad_len).await
            {
                let mut s = f.into_stream();
                let mut n = 0u64;
                let mut clean = true;
                while let Some(c) = s.next().await {
                    match c {
                        Ok(c) => n += c.len() as u64,
                        Err(_) => {
                            clean = false;
                            break;
                        }
                    }
                }
                if clean {
                    prop_assert_eq!(Some(n), prefix.file.map(|f| f.len));
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn post_policies_and_cors_configurations_never_panic(
        junk in "\\PC{0,400}",
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        field in "[a-z$-]{0,12}",
        value in "\\PC{0,20}",
        size in any::<u64>(),
    ) {
        use base64::Engine as _;
        use sealgate::s3::post::policy::{FormView, Policy, check_fields, check_size};
        let _ = Policy::decode(&junk);
        let doc = format!(
            r#"{{"expiration": "2030-01-01T00:00:00Z", "conditions": [["starts-with", "{field}", "{value}"], {{"{field}": "{value}"}}, ["content-length-range", 0, "{value}"], {junk}]}}"#,
            field = field.replace('"', ""), value = value.replace(['"', '\\'], ""),
        );
        for d in [doc.as_str(), junk.as_str()] {
            if let Ok(p) = Policy::decode(&base64::engine::general_purpose::STANDARD.encode(d)) {
                let fields = vec![(field.clone(), value.clone()), ("key".to_string(), junk.clone())];
                let _ = check_fields(&p, &FormView { fields: &fields, bucket: "b" });
                let _ = check_size(&p, size);
            }
        }
        let _ = sealgate::s3::cors::rules::Config::from_xml(&bytes);
        let _ = sealgate::s3::cors::rules::Config::from_xml(junk.as_bytes());
    }
}

// ---------------------------------------------------------------- KMS

struct KmsFixture {
    kms: Kms,
    keys: AccessKeys,
    key_id: String,
    blob: Vec<u8>,
    _dir: tempfile::TempDir,
}

const SYM: EncryptionAlgorithm = EncryptionAlgorithm::SymmetricDefault;

/// The account user the in-process KMS calls are made as.
fn root() -> Caller<'static> {
    static ALICE: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(kms_support::alice);
    Caller::in_process(&ALICE)
}

/// The KMS the blob properties decrypt with (nothing else touches its key).
fn kms_fixture() -> &'static KmsFixture {
    static F: std::sync::OnceLock<KmsFixture> = std::sync::OnceLock::new();
    F.get_or_init(new_fixture)
}

/// The KMS the API properties send random requests to (they may disable its key).
fn kms_api_fixture() -> &'static KmsFixture {
    static F: std::sync::OnceLock<KmsFixture> = std::sync::OnceLock::new();
    F.get_or_init(new_fixture)
}

fn new_fixture() -> KmsFixture {
    {
        let dir = tempfile::tempdir().unwrap();
        let cfg = KmsConfig {
            db_path: dir.path().join("kms.redb"),
            audit_enabled: false,
            ..KmsConfig::default()
        };
        let kms = Kms::open_with_root_key(
            &cfg,
            Arc::new(SystemClock),
            RootKey::from_bytes(&[5; 32]).unwrap(),
        )
        .unwrap();
        let key_id = kms
            .create_key(root(), &Default::default())
            .unwrap()
            .key_id
            .clone();
        let ctx: EncryptionContext = [("k".to_string(), "v".to_string())].into();
        let (blob, _) = kms
            .encrypt(root(), &key_id, b"fuzz plaintext", &ctx, SYM)
            .unwrap();
        let keys = kms_support::access_keys();
        KmsFixture {
            kms,
            keys,
            key_id,
            blob,
            _dir: dir,
        }
    }
}

/// A KMS API request signed like the AWS SDKs sign it.
fn kms_request(target: &str, body: Vec<u8>) -> http::Request<Bytes> {
    kms_support::signed_request("127.0.0.1:1", &format!("TrentService.{target}"), &body)
}

const OPS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "DescribeKey",
    "ListKeys",
    "CreateAlias",
    "ListAliases",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "CreateGrant",
    "ListGrants",
    "RetireGrant",
    "RevokeGrant",
    "TagResource",
    "ListResourceTags",
    "EnableKeyRotation",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "UpdateKeyDescription",
    "Bogus",
];

/// JSON values shaped like KMS requests: known field names with values of any type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)),
        "\\PC{0,40}".prop_map(serde_json::Value::from),
        "[A-Za-z0-9+/]{0,40}={0,2}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "KeyId",
            "Plaintext",
            "CiphertextBlob",
            "EncryptionContext",
            "KeySpec",
            "NumberOfBytes",
            "GrantTokens",
            "DestinationKeyId",
            "AliasName",
            "TargetKeyId",
            "Policy",
            "PolicyName",
            "GranteePrincipal",
            "Operations",
            "Constraints",
            "GrantId",
            "GrantToken",
            "Tags",
            "TagKey",
            "TagValue",
            "Limit",
            "Marker",
            "PendingWindowInDays",
            "RotationPeriodInDays",
            "Description",
            "DryRun",
            "EncryptionAlgorithm",
            "SourceKeyId",
            "SourceEncryptionContext",
            "DestinationEncryptionContext",
            "KeyUsage",
            "MultiRegion",
            "Origin",
        ])
        .prop_map(str::to_string),
        "[A-Za-z]{1,12}",
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn kms_api_answers_any_request_body_without_panicking_or_internal_errors(
        op in prop::sample::select(OPS),
        body in prop_oneof![
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            proptest::collection::vec(any::<u8>(), 0..200),
            json_value().prop_map(|v| {
                // Aim at the test key so deeper code paths run.
                let mut v = v;
                if let Some(o) = v.as_object_mut() {
                    o.insert("KeyId".into(), kms_api_fixture().key_id.clone().into());
                }
                serde_json::to_vec(&v).unwrap()
            }),
        ],
    ) {
        let f = kms_api_fixture();
        let resp = rt().block_on(sealgate::kms::api::handle(
            &f.kms,
            &f.keys,
            kms_request(op, body.clone()),
            None,
        )).response;
        let status = resp.status();
        let text = String::from_utf8_lossy(resp.body()).into_owned();
        prop_assert!(status != 500, "{op} {}: {status} {text}", String::from_utf8_lossy(&body));
        prop_assert!(serde_json::from_slice::<serde_json::Value>(resp.body()).is_ok(), "{text}");
    }

    #[test]
    fn kms_ciphertext_blobs_parse_without_panicking_and_never_decrypt_when_changed(
        junk in proptest::collection::vec(any::<u8>(), 0..200),
        m in mutation(),
    ) {
        let f = kms_fixture();
        let ctx: EncryptionContext = [("k".to_string(), "v".to_string())].into();
        let _ = sealgate::kms::crypto::parse_blob(&junk);
        prop_assert!(f.kms.decrypt(root(), None, &junk, &ctx, SYM).is_err());
        let mut blob = f.blob.clone();
        if apply(&mut blob, &m) {
            let _ = sealgate::kms::crypto::parse_blob(&blob);
            prop_assert!(f.kms.decrypt(root(), None, &blob, &ctx, SYM).is_err(),
                "a changed blob ({m:?}) decrypted");
        } else {
            let d = f.kms.decrypt(root(), None, &blob, &ctx, SYM).unwrap();
            prop_assert_eq!(&d.plaintext[..], b"fuzz plaintext");
        }
    }

    #[test]
    fn key_policies_parse_and_evaluate_without_panicking(
        doc in json_value(),
        statements in proptest::collection::vec(
            proptest::collection::btree_map(
                prop::sample::select(vec!["Sid", "Effect", "Principal", "NotPrincipal", "Action",
                    "NotAction", "Resource", "NotResource", "Condition"]).prop_map(str::to_string),
                json_value(), 0..7),
            0..4),
        action in "(kms:)?[A-Za-z*?]{0,16}",
        resource in "[a-z:*?/0-9-]{0,40}",
        junk in "\\PC{0,200}",
        ctx in proptest::collection::btree_map("[a-z:]{0,8}", "\\PC{0,8}", 0..3),
    ) {
        use sealgate::kms::policy::{Policy, RequestFacts};
        let _ = Policy::parse(&junk);
        let _ = Policy::parse(&doc.to_string());
        let shaped = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
        if let Ok(p) = Policy::parse(&shaped.to_string()) {
            let mut facts = RequestFacts::new(root().principal, &action, &resource);
            facts.encryption_context = Some(&ctx);
            let _ = p.evaluate(&facts);
            for i in 0..statements.len() {
                let _ = p.describe_statement(i);
            }
        }
    }

    #[test]
    fn policy_globs_never_panic_and_match_themselves(
        pat in "[a-z*?]{0,20}",
        s in "[a-z]{0,20}",
        ci in any::<bool>(),
    ) {
        use sealgate::kms::policy::glob;
        let _ = glob(pat.as_bytes(), s.as_bytes(), ci);
        prop_assert!(glob(b"*", s.as_bytes(), ci));
        prop_assert!(glob(s.as_bytes(), s.as_bytes(), ci));
    }
}

// ---------------------------------------------------------------- regressions
// Inputs that once crashed or misbehaved, kept as named tests.

/// A multipart object whose first or last part is empty: the whole-object read plans
/// only the bytes that hold plaintext, so a change inside such an empty part is not read
/// — and cannot change what the client gets (found by
/// `decryptor_yields_only_authenticated_plaintext_and_rejects_every_mutation`).
#[test]
fn a_changed_empty_first_or_last_part_changes_no_plaintext() {
    rt().block_on(async {
        let parts = vec![(0u8..14).collect::<Vec<u8>>(), Vec::new()];
        let (mut cipher, layout, first) = seal(&parts, true).await;
        assert_eq!(cipher.len(), 110);
        cipher[62] ^= 1;
        let (got, failed) = read(&cipher, &layout, first, 0, 14, 1 << 20).await;
        assert!(!failed);
        assert_eq!(got, parts[0]);
    });
}

/// The API property above is only meaningful if its requests get past SigV4.
#[test]
fn fuzzed_kms_requests_are_signed_well_enough_to_reach_the_decoder() {
    let f = kms_api_fixture();
    let body = serde_json::to_vec(&serde_json::json!({"KeyId": f.key_id})).unwrap();
    let resp = rt()
        .block_on(sealgate::kms::api::handle(
            &f.kms,
            &f.keys,
            kms_request("DescribeKey", body),
            None,
        ))
        .response;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let resp = rt()
        .block_on(sealgate::kms::api::handle(
            &f.kms,
            &f.keys,
            kms_request("Encrypt", b"{\"KeyId\": 5".to_vec()),
            None,
        ))
        .response;
    assert_eq!(
        resp.status(),
        400,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
}

/// Found by `format_parsers_never_panic` (5000 cases): planning a read of an object
/// claiming ~2^64 bytes overflowed. Sizes are now bounded by `MAX_PLAIN` where they
/// enter: part lists, store part sizes and metadata sizes beyond it are refused.
#[test]
fn sizes_beyond_five_tib_are_refused_where_they_enter() {
    assert!(Layout::decode_parts("1:2:9223372036854775808").is_err());
    assert!(Layout::decode_parts("1:10000:600000000000").is_err());
    assert!(Layout::decode_parts("1:2:1099511627776").is_ok());
    assert_eq!(
        format::plain_len_of_part_cipher(18_442_241_573_325_438_960, true),
        None
    );
    let max = Layout::single(format::MAX_PLAIN);
    let p = format::plan(&max, format::MAX_PLAIN - 1, format::MAX_PLAIN).unwrap();
    assert_eq!(p.cipher_end, max.cipher_len());
}
