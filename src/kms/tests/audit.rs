//! Behavioural tests of the audit log through `Kms`: CloudTrail-shaped events, chain
//! verification against each kind of tampering, keyed chains, no secrets.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Fixture, SYM, alice, ctx, fixture, new_key, root_key};
use crate::kms::*;

fn audit_lines(kms: &Kms) -> (std::path::PathBuf, Vec<String>) {
    kms.flush_audit().unwrap();
    let path = kms.audit_log_path().unwrap().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text.lines().map(str::to_string).collect())
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The part of a record before its chain fields (`,"hash"`, and `,"mac"` if keyed).
fn prefix(line: &str) -> &str {
    &line[..line.rfind(",\"hash\":\"").unwrap()]
}

/// A record's `hash` (what the next record's `prevHash` names).
fn chain(line: &str) -> String {
    let at = line.rfind(",\"hash\":\"").unwrap() + 9;
    line[at..at + 64].to_string()
}

/// Re-hashes a line after editing it as an unkeyed (SHA-256) record: what a careful
/// forger without the root key can do.
fn rehash(line: &str) -> String {
    let prefix = prefix(line);
    let h = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        prefix.as_bytes(),
    ));
    format!("{prefix},\"hash\":\"{h}\"}}")
}

/// Rewrites records as unkeyed ones with a consistent SHA-256 chain from `prev` on: a
/// log as sealgate wrote it before the chain was keyed, or a forger's rewrite.
fn rechain(lines: &[String], mut prev: String) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let p = prefix(l);
            let line = rehash(&format!("{}{prev}\",\"hash\":\"\"}}", &p[..p.len() - 65]));
            prev = chain(&line);
            line
        })
        .collect()
}

fn unkey(lines: &[String]) -> Vec<String> {
    rechain(lines, "0".repeat(64))
}

/// A log of 8 unkeyed events (as written before the chain was keyed).
fn legacy_log_with_events() -> (Fixture, std::path::PathBuf, Vec<String>) {
    let (f, path, lines) = log_with_events();
    let lines = unkey(&lines);
    write_lines(&path, &lines);
    (f, path, lines)
}

/// A log of 8 events (key creation via the service, data keys, decrypts).
fn log_with_events() -> (Fixture, std::path::PathBuf, Vec<String>) {
    let f = fixture();
    let id = new_key(&f);
    let c = ctx(&[("aws:s3:arn", "arn:aws:s3:::b/k")]);
    let s3 = CallContext::s3(Some("10.0.0.7".parse().unwrap()), Some("req-1".into()));
    for _ in 0..4 {
        let dk = f
            .kms
            .generate_data_key(Caller::new(alice().principal, &s3), &id, &c, 32)
            .unwrap();
        f.kms
            .decrypt(
                Caller::new(alice().principal, &s3),
                None,
                &dk.ciphertext_blob,
                &c,
                SYM,
            )
            .unwrap();
    }
    let (path, lines) = audit_lines(&f.kms);
    assert_eq!(lines.len(), 8);
    (f, path, lines)
}

#[track_caller]
fn first_problem(path: &Path) -> (usize, TamperKind) {
    let r = verify_audit_log(path).unwrap();
    let p = r
        .problems
        .first()
        .unwrap_or_else(|| panic!("no problem found:\n{r}"));
    (p.line, p.kind)
}

#[test]
fn audit_events_are_cloudtrail_shaped_and_chain_verifies() {
    let (f, path, lines) = log_with_events();
    let r = verify_audit_log(&path).unwrap();
    assert!(r.is_intact(), "{r}");
    assert_eq!(r.records, 8);
    let ev: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(ev["eventSource"], "kms.amazonaws.com");
    assert_eq!(ev["eventName"], "GenerateDataKey");
    assert_eq!(ev["eventVersion"], "1.08");
    assert_eq!(ev["awsRegion"], "us-east-1");
    assert_eq!(ev["userIdentity"]["type"], "IAMUser");
    assert_eq!(
        ev["userIdentity"]["arn"],
        "arn:aws:iam::000000000000:user/alice"
    );
    assert_eq!(ev["userIdentity"]["userName"], "alice");
    assert_eq!(ev["userIdentity"]["invokedBy"], "s3.amazonaws.com");
    assert_eq!(ev["sourceIPAddress"], "10.0.0.7");
    assert_eq!(ev["requestID"], "req-1");
    assert_eq!(
        ev["requestParameters"]["encryptionContext"]["aws:s3:arn"],
        "arn:aws:s3:::b/k"
    );
    assert_eq!(ev["resources"][0]["type"], "AWS::KMS::Key");
    assert_eq!(ev["seq"], 1);
    assert_eq!(ev["eventType"], "AwsApiCall");
    assert!(ev["eventTime"].as_str().unwrap().ends_with('Z'));
    // The head the KMS reports matches the file, and the chain continues after reopen.
    let head = f.kms.audit_head().unwrap();
    assert_eq!(Some(head.clone()), r.head);
    let f = f.reopen();
    f.kms
        .create_key(alice(), &CreateKeyOptions::default())
        .unwrap();
    f.kms
        .generate_data_key(alice(), "alias/none", &ctx(&[]), 32)
        .unwrap_err();
    f.kms.flush_audit().unwrap();
    let r = verify_audit_log_against(&path, &head).unwrap();
    assert!(r.is_intact(), "{r}");
    assert_eq!(r.records, 9);
    let failed = &query_audit_log(&path, &AuditFilter::default(), Some(1)).unwrap()[0];
    assert_eq!(failed.event["errorCode"], "NotFoundException");
    // Query by key, principal and name.
    let q = AuditFilter {
        event_name: Some("Decrypt".into()),
        principal: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(query_audit_log(&path, &q, None).unwrap().len(), 4);
    assert_eq!(tail_audit_log(&path, 3).unwrap().len(), 3);
}

#[test]
fn audit_verify_finds_an_edited_record() {
    let (_f, path, mut lines) = legacy_log_with_events();
    lines[2] = lines[2]
        .replace("\"Decrypt\"", "\"Encrypt\"")
        .replace("GenerateDataKey\"", "Encrypt\"");
    write_lines(&path, &lines);
    assert_eq!(first_problem(&path), (3, TamperKind::Edited));
}

#[test]
fn audit_verify_finds_an_edited_and_rehashed_record() {
    let (_f, path, mut lines) = legacy_log_with_events();
    lines[4] = rehash(&lines[4].replace("10.0.0.7", "10.9.9.9"));
    write_lines(&path, &lines);
    assert_eq!(first_problem(&path), (5, TamperKind::Edited));
}

#[test]
fn audit_verify_finds_a_removed_record() {
    let (_f, path, mut lines) = legacy_log_with_events();
    lines.remove(3);
    write_lines(&path, &lines);
    let r = verify_audit_log(&path).unwrap();
    assert_eq!(
        (r.problems[0].line, r.problems[0].kind),
        (4, TamperKind::Removed),
        "{r}"
    );
    assert!(r.problems[0].detail.contains("seq 4..=4"), "{r}");
}

#[test]
fn audit_verify_finds_reordered_records() {
    let (_f, path, mut lines) = legacy_log_with_events();
    lines.swap(5, 6);
    write_lines(&path, &lines);
    let r = verify_audit_log(&path).unwrap();
    assert_eq!(r.problems.len(), 1, "{r}");
    assert_eq!(
        (r.problems[0].line, r.problems[0].kind),
        (6, TamperKind::Reordered)
    );
}

#[test]
fn audit_verify_finds_inserted_records() {
    // A verbatim copy of an earlier record.
    let (_f, path, lines) = legacy_log_with_events();
    let mut copy = lines.clone();
    copy.insert(5, lines[1].clone());
    write_lines(&path, &copy);
    assert_eq!(first_problem(&path), (6, TamperKind::Inserted));
    // A forged record that links to its predecessor and hashes correctly.
    let mut forged = lines.clone();
    let fake = rehash(&lines[2].replace("alice", "mallory"));
    forged.insert(2, fake);
    write_lines(&path, &forged);
    let r = verify_audit_log(&path).unwrap();
    assert_eq!(
        (r.problems[0].line, r.problems[0].kind),
        (3, TamperKind::Inserted),
        "{r}"
    );
    assert_eq!(r.problems.len(), 1, "{r}");
}

#[test]
fn audit_verify_against_a_head_finds_truncation() {
    let (f, path, mut lines) = legacy_log_with_events();
    let head = f.kms.audit_head().unwrap();
    lines.truncate(6);
    write_lines(&path, &lines);
    assert!(verify_audit_log(&path).unwrap().is_intact());
    let r = verify_audit_log_against(&path, &head).unwrap();
    assert_eq!(r.problems[0].kind, TamperKind::Truncated, "{r}");
}

/// Issue 19: with a plain hash chain, whoever could write the log could rewrite any
/// suffix consistently (edit a record, recompute every later hash) and the log verified
/// intact. The chain is now keyed: without the root key a rewrite cannot verify.
#[test]
fn keyed_audit_chain_refuses_a_consistent_rewrite_of_a_suffix() {
    let (_f, path, lines) = log_with_events();
    let root = root_key(7);
    let r = verify_audit_log_with_key(&path, &root, None).unwrap();
    assert!(r.is_authenticated(), "{r}");
    assert_eq!((r.keyed, r.unkeyed, r.keyed_seqs), (8, 0, Some((1, 8))));
    assert!(r.to_string().contains("8 keyed"), "{r}");
    // The old attack: edit record 5, re-chain 5..8 with SHA-256. Legacy (unkeyed)
    // verification cannot tell; keyed verification can.
    let tail: Vec<String> = lines[4..]
        .iter()
        .map(|l| l.replace("10.0.0.7", "10.6.6.6"))
        .collect();
    let mut forged = lines[..4].to_vec();
    forged.extend(rechain(&tail, chain(&lines[3])));
    write_lines(&path, &forged);
    let r = verify_audit_log_with_key(&path, &root, None).unwrap();
    assert!(!r.is_intact(), "{r}");
    assert_eq!(
        (r.problems[0].line, r.problems[0].kind),
        (5, TamperKind::Downgraded),
        "{r}"
    );
    // A forger who keeps the records keyed, with correct hashes and a MAC key of his own
    // (the next record's prevHash relinked too): the MACs do not verify.
    let mallory = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"mallory");
    let keyed = |p: String| {
        let h = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            p.as_bytes(),
        ));
        let m = hex::encode(aws_lc_rs::hmac::sign(&mallory, p.as_bytes()).as_ref());
        format!("{p},\"hash\":\"{h}\",\"mac\":\"{m}\"}}")
    };
    let mut forged = lines.clone();
    forged[6] = keyed(prefix(&lines[6]).replace("10.0.0.7", "10.6.6.6"));
    let p7 = prefix(&lines[7]);
    forged[7] = keyed(format!("{}{}\"", &p7[..p7.len() - 65], chain(&forged[6])));
    write_lines(&path, &forged);
    let r = verify_audit_log_with_key(&path, &root, None).unwrap();
    assert_eq!(
        (r.problems[0].line, r.problems[0].kind),
        (7, TamperKind::Edited),
        "{r}"
    );
    assert!(r.problems[0].detail.contains("root key"), "{r}");
    // Without the root key that rewrite passes the hash chain: only the key catches it.
    let r = verify_audit_log(&path).unwrap();
    assert!(r.is_intact() && !r.is_authenticated(), "{r}");
    // Without the root key the MACs go unchecked, and the report says so.
    write_lines(&path, &lines);
    let r = verify_audit_log(&path).unwrap();
    assert!(r.is_intact() && !r.is_authenticated(), "{r}");
    assert_eq!(r.unchecked, 8);
    // The wrong root key: nothing authenticates.
    let r = verify_audit_log_with_key(&path, &root_key(8), None).unwrap();
    assert!(!r.is_intact(), "{r}");
}

#[test]
fn a_keyed_chain_continues_an_unkeyed_log_and_the_report_says_which_is_which() {
    let (f, path, _) = legacy_log_with_events();
    let r = verify_audit_log_with_key(&path, &root_key(7), None).unwrap();
    assert!(r.is_authenticated(), "{r}");
    assert_eq!((r.keyed, r.unkeyed), (0, 8));
    let f = f.reopen();
    let id = new_key(&f);
    f.kms
        .generate_data_key(alice(), &id, &ctx(&[]), 32)
        .unwrap();
    f.kms.flush_audit().unwrap();
    let r = verify_audit_log_with_key(&path, &root_key(7), None).unwrap();
    assert!(r.is_authenticated(), "{r}");
    assert_eq!((r.keyed, r.unkeyed, r.keyed_seqs), (1, 8, Some((9, 9))));
    let text = r.to_string();
    assert!(
        text.contains("8 unkeyed") && text.contains("seq 9..=9"),
        "{text}"
    );
}

#[test]
fn audit_log_never_contains_plaintexts_keys_or_ciphertexts() {
    let f = fixture();
    let id = new_key(&f);
    let c = ctx(&[("purpose", "audit-test")]);
    let secret = b"the-plaintext-that-must-not-leak";
    let (blob, _) = f.kms.encrypt(alice(), &id, secret, &c, SYM).unwrap();
    f.kms.decrypt(alice(), None, &blob, &c, SYM).unwrap();
    let s3 = CallContext::s3(None, None);
    let dk = f
        .kms
        .generate_data_key(Caller::new(alice().principal, &s3), &id, &c, 32)
        .unwrap();
    f.kms
        .decrypt(
            Caller::new(alice().principal, &s3),
            Some(&id),
            &dk.ciphertext_blob,
            &c,
            SYM,
        )
        .unwrap();
    let (re, _, _) = f
        .kms
        .re_encrypt(
            alice(),
            &ReEncryptParams {
                ciphertext: &blob,
                source_key_id: None,
                source_context: &c,
                source_algorithm: SYM,
                destination_key_id: &id,
                destination_context: &c,
                destination_algorithm: SYM,
            },
        )
        .unwrap();
    let (path, lines) = audit_lines(&f.kms);
    assert!(lines.len() >= 5);
    let log = std::fs::read_to_string(path).unwrap();
    let mut needles = vec![String::from_utf8_lossy(secret).to_string()];
    for bytes in [
        &secret[..],
        &dk.plaintext[..],
        &dk.ciphertext_blob[..],
        &blob[..],
        &re[..],
    ] {
        needles.push(hex::encode(bytes));
        needles.push(hex::encode_upper(bytes));
        needles.push(B64.encode(bytes));
        // Any 12-byte window of the base64 (catches re-chunked encodings).
        let b = B64.encode(bytes);
        needles.push(b[b.len() / 2 - 6..b.len() / 2 + 6].to_string());
    }
    for n in needles {
        assert!(!log.contains(&n), "audit log contains a secret: {n}");
    }
}
