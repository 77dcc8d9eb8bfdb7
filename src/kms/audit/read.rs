//! Reading the audit log: verifying the chain (with the root key, which checks the MACs
//! of keyed records; against a kept head, to detect truncation), and the filters of
//! `sealgate audit query` / `tail`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::{AuditHead, MacKeys, Parsed, ZERO_HASH, audit_mac_key, format_time, parse_line};
use crate::kms::KmsError;
use crate::kms::clock::millis;
use crate::kms::crypto::RootKey;

/// What kind of damage `verify_audit_log` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TamperKind {
    /// The record's content was changed (or changed and re-hashed).
    Edited,
    /// One or more records are missing before this line.
    Removed,
    /// This record is out of its place in the sequence.
    Reordered,
    /// This record does not belong to the chain (a forgery or a duplicate).
    Inserted,
    /// The line is not a record at all.
    Malformed,
    /// The log ends before (or differs from) the head it was checked against.
    Truncated,
    /// An unkeyed (SHA-256 only) record after keyed ones: sealgate writes keyed records
    /// only, so it was written by someone without the root key.
    Downgraded,
}

/// One finding: 1-based line number, the record's `seq` if readable, what and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditProblem {
    pub line: usize,
    pub seq: Option<u64>,
    pub kind: TamperKind,
    pub detail: String,
}

/// Result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub records: usize,
    /// Records chained with an HMAC under the root key (`mac`).
    pub keyed: usize,
    /// Records chained with plain SHA-256 (`hash`): written before the chain was keyed.
    pub unkeyed: usize,
    /// The seqs of the first and last keyed record.
    pub keyed_seqs: Option<(u64, u64)>,
    /// Keyed records whose MAC was not checked (verified without the root key): the
    /// report then vouches only for their linkage.
    pub unchecked: usize,
    /// The last record's (seq, hash): record it elsewhere to detect later truncation.
    pub head: Option<AuditHead>,
    pub problems: Vec<AuditProblem>,
}

impl VerifyReport {
    /// No problem was found (keyed records unchecked without the root key count as fine).
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// Intact, and every keyed record's MAC was checked.
    pub fn is_authenticated(&self) -> bool {
        self.is_intact() && self.unchecked == 0
    }

    /// Which records are keyed, in words.
    fn keying(&self) -> String {
        let keyed = match self.keyed_seqs {
            Some((a, b)) => format!(
                "{} keyed (HMAC under the root key, seq {a}..={b})",
                self.keyed
            ),
            None => "none keyed".into(),
        };
        let unkeyed = match self.unkeyed {
            0 => String::new(),
            n => format!(
                "; {n} unkeyed (SHA-256 only: written before the chain was keyed; they detect edits but not a consistent rewrite)"
            ),
        };
        let unchecked = match self.unchecked {
            0 => String::new(),
            n => format!(
                "; the MACs of {n} keyed records were NOT checked (no root key given): edits are detected, a consistent rewrite is not"
            ),
        };
        format!("{keyed}{unkeyed}{unchecked}")
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_intact() {
            write!(
                f,
                "{}: {} records, chain intact; {}",
                self.path.display(),
                self.records,
                self.keying()
            )?;
            if let Some(h) = &self.head {
                write!(f, "; head seq {} hash {}", h.seq, h.hash)?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "{}: {} records, {} problem(s); {}:",
            self.path.display(),
            self.records,
            self.problems.len(),
            self.keying()
        )?;
        for p in &self.problems {
            writeln!(f, "  line {}: {:?}: {}", p.line, p.kind, p.detail)?;
        }
        Ok(())
    }
}

fn read_err(path: &Path, e: std::io::Error) -> KmsError {
    KmsError::Config(format!("cannot read audit log {}: {e}", path.display()))
}

/// Reads every line: Ok(record) or Err(()) for a line that is not a record.
fn read_records(path: &Path, mac: Option<&MacKeys>) -> Result<Vec<Result<Parsed, ()>>, KmsError> {
    let f = File::open(path).map_err(|e| read_err(path, e))?;
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| read_err(path, e))?;
        out.push(parse_line(&line, mac).ok_or(()));
    }
    Ok(out)
}

/// Verifies the whole chain of the log at `path` with the root key (`sealgate audit
/// verify`, offline): every keyed record's MAC, every unkeyed record's hash, the links,
/// and (with `head`, a head kept elsewhere, e.g. from `Kms::audit_head`) that the log
/// still contains it. Reports every problem with its line and which records are keyed.
pub fn verify_audit_log_with_key(
    path: &Path,
    root: &RootKey,
    head: Option<&AuditHead>,
) -> Result<VerifyReport, KmsError> {
    verify(path, Some(&audit_mac_key(root)), head)
}

/// Verifies one chain given as its lines (a chain read back from the cluster's
/// database, `sealgate audit verify` with `kms.store = "postgres"`), as
/// [`verify_audit_log_with_key`] verifies a file; `label` names it in the report.
pub fn verify_audit_lines(label: &Path, lines: &[String], root: &RootKey) -> VerifyReport {
    let mac = audit_mac_key(root);
    let parsed: Vec<Result<Parsed, ()>> = lines
        .iter()
        .map(|l| parse_line(l.as_bytes(), Some(&mac)).ok_or(()))
        .collect();
    analyse(label, &parsed)
}

/// Verifies without the root key: the links and unkeyed records' hashes only; keyed
/// records' MACs are left unchecked (`VerifyReport::unchecked`).
pub fn verify_audit_log(path: &Path) -> Result<VerifyReport, KmsError> {
    verify(path, None, None)
}

/// `verify_audit_log`, plus a check that the log still contains `head`: catches
/// truncation and wholesale rewrites.
pub fn verify_audit_log_against(path: &Path, head: &AuditHead) -> Result<VerifyReport, KmsError> {
    verify(path, None, Some(head))
}

fn verify(
    path: &Path,
    mac: Option<&MacKeys>,
    head: Option<&AuditHead>,
) -> Result<VerifyReport, KmsError> {
    let lines = read_records(path, mac)?;
    let mut report = analyse(path, &lines);
    let Some(head) = head else {
        return Ok(report);
    };
    let found = lines
        .iter()
        .position(|l| l.as_ref().is_ok_and(|p| p.seq == head.seq));
    match found {
        Some(i) if lines[i].as_ref().is_ok_and(|p| p.hash == head.hash) => {}
        Some(i) => report.problems.push(AuditProblem {
            line: i + 1,
            seq: Some(head.seq),
            kind: TamperKind::Edited,
            detail: format!(
                "record seq {} does not have the expected head hash {} (the log was rewritten)",
                head.seq, head.hash
            ),
        }),
        None => report.problems.push(AuditProblem {
            line: lines.len() + 1,
            seq: Some(head.seq),
            kind: TamperKind::Truncated,
            detail: format!(
                "the log ends before seq {} (records were cut off the end)",
                head.seq
            ),
        }),
    }
    Ok(report)
}

fn analyse(path: &Path, lines: &[Result<Parsed, ()>]) -> VerifyReport {
    let recs: Vec<(usize, &Parsed)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref().ok().map(|p| (i + 1, p)))
        .collect();
    let mut by_seq: HashMap<u64, Vec<&Parsed>> = HashMap::new();
    for (_, p) in &recs {
        by_seq.entry(p.seq).or_default().push(p);
    }
    let count = |s: u64| by_seq.get(&s).map_or(0, Vec::len);
    let links_back = |p: &Parsed| {
        if p.seq == 1 {
            return p.prev == ZERO_HASH;
        }
        by_seq
            .get(&(p.seq - 1))
            .is_none_or(|qs| qs.iter().any(|q| q.hash == p.prev))
    };
    let next_prev = |p: &Parsed| -> Option<&str> {
        by_seq
            .get(&(p.seq + 1))
            .and_then(|qs| qs.first())
            .map(|q| q.prev.as_str())
    };
    let mut problems = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.is_err() {
            problems.push(AuditProblem {
                line: i + 1,
                seq: None,
                kind: TamperKind::Malformed,
                detail: "not an audit record (bad JSON or no trailing hash)".into(),
            });
        }
    }
    let (mut prev_seq, mut prev_hash) = (0u64, ZERO_HASH.to_string());
    let mut reorder_reported = false;
    let mut seen_keyed = false;
    for &(line, r) in &recs {
        if r.keyed {
            seen_keyed = true;
        } else if seen_keyed {
            problems.push(AuditProblem {
                line,
                seq: Some(r.seq),
                kind: TamperKind::Downgraded,
                detail: format!(
                    "record seq {} is unkeyed after keyed records: sealgate writes only keyed records, so someone without the root key wrote it",
                    r.seq
                ),
            });
        }
    }
    for (line, r) in recs.iter().copied() {
        let expected = prev_seq + 1;
        let fits = r.seq == expected && r.prev == prev_hash;
        let mut report = |kind, detail: String| {
            problems.push(AuditProblem {
                line,
                seq: Some(r.seq),
                kind,
                detail,
            })
        };
        if !r.self_ok {
            if fits || count(r.seq) == 1 {
                let what = if r.keyed && r.checked {
                    "does not match its hash or does not authenticate under the root key (edited, forged, or the wrong root key)"
                } else {
                    "does not match its hash (edited)"
                };
                report(TamperKind::Edited, format!("record seq {} {what}", r.seq));
                (prev_seq, prev_hash) = (r.seq, r.hash.clone());
            } else {
                report(
                    TamperKind::Inserted,
                    format!("record seq {} does not belong to the chain", r.seq),
                );
            }
            continue;
        }
        let forward_ok = next_prev(r).is_none_or(|np| np == r.hash);
        if !forward_ok || !links_back(r) {
            if count(r.seq) > 1 || !links_back(r) {
                report(
                    TamperKind::Inserted,
                    format!(
                        "record seq {} does not belong to the chain (neighbours do not link to it)",
                        r.seq
                    ),
                );
            } else {
                report(
                    TamperKind::Edited,
                    format!(
                        "record seq {} was altered and re-hashed: the next record does not link to it",
                        r.seq
                    ),
                );
                prev_seq = r.seq;
                prev_hash = next_prev(r).unwrap_or_default().to_string();
            }
            continue;
        }
        if count(r.seq) > 1 && !fits {
            report(
                TamperKind::Inserted,
                format!("record seq {} is a duplicate", r.seq),
            );
            continue;
        }
        if fits {
            (prev_seq, prev_hash) = (r.seq, r.hash.clone());
            continue;
        }
        if r.seq > expected {
            if count(expected) > 0 {
                report(
                    TamperKind::Reordered,
                    format!("record seq {} comes before seq {expected}", r.seq),
                );
                reorder_reported = true;
            } else {
                report(
                    TamperKind::Removed,
                    format!(
                        "records seq {expected}..={} are missing before this line",
                        r.seq - 1
                    ),
                );
            }
            (prev_seq, prev_hash) = (r.seq, r.hash.clone());
        } else if !reorder_reported {
            // A record from earlier in the chain, found later.
            report(
                TamperKind::Reordered,
                format!("record seq {} comes after seq {prev_seq}", r.seq),
            );
            reorder_reported = true;
        }
    }
    problems.sort_by_key(|p| p.line);
    let head = lines
        .iter()
        .rev()
        .find_map(|l| l.as_ref().ok())
        .map(|p| AuditHead {
            seq: p.seq,
            hash: p.hash.clone(),
        });
    let keyed: Vec<u64> = recs
        .iter()
        .filter(|(_, p)| p.keyed)
        .map(|(_, p)| p.seq)
        .collect();
    VerifyReport {
        path: path.to_path_buf(),
        records: lines.len(),
        keyed: keyed.len(),
        unkeyed: recs.len() - keyed.len(),
        keyed_seqs: keyed.first().zip(keyed.last()).map(|(a, b)| (*a, *b)),
        unchecked: recs.iter().filter(|(_, p)| !p.checked).count(),
        head,
        problems,
    }
}

/// Which events `query_audit_log` returns (all set fields must match).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Key id or key ARN (matches `resources[].ARN` and `requestParameters.keyId`).
    pub key: Option<String>,
    /// Principal ARN or user name.
    pub principal: Option<String>,
    /// `GenerateDataKey`, `Decrypt`, ...
    pub event_name: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// One event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub line: usize,
    pub seq: u64,
    /// The CloudTrail event (without the chain fields).
    pub event: Value,
}

impl AuditFilter {
    fn matches(&self, ev: &Value) -> bool {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        if let Some(k) = &self.key {
            let hit = |arn: &str| arn == k || arn.ends_with(&format!("/{k}"));
            let in_resources = ev["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| hit(&s(&r["ARN"]))));
            if !in_resources && !hit(&s(&ev["requestParameters"]["keyId"])) {
                return false;
            }
        }
        if let Some(p) = &self.principal {
            let id = &ev["userIdentity"];
            if s(&id["arn"]) != *p && s(&id["userName"]) != *p {
                return false;
            }
        }
        if self
            .event_name
            .as_ref()
            .is_some_and(|n| s(&ev["eventName"]) != *n)
        {
            return false;
        }
        let t = s(&ev["eventTime"]);
        if self.since.is_some_and(|x| t < format_time(millis(x))) {
            return false;
        }
        if self.until.is_some_and(|x| t > format_time(millis(x))) {
            return false;
        }
        true
    }
}

/// Events matching `filter`, oldest first, at most `limit` (the newest `limit`).
pub fn query_audit_log(
    path: &Path,
    filter: &AuditFilter,
    limit: Option<usize>,
) -> Result<Vec<AuditRecord>, KmsError> {
    let f = File::open(path).map_err(|e| read_err(path, e))?;
    // Streamed: only the `limit` newest matches are held.
    let mut failed = None;
    let lines = BufReader::new(f)
        .split(b'\n')
        .map_while(|l| l.map_err(|e| failed = Some(e)).ok());
    let out = query_audit_lines(lines, filter, limit);
    match failed {
        Some(e) => Err(read_err(path, e)),
        None => Ok(out),
    }
}

/// [`query_audit_log`] over records given as lines (the cluster's trail read back from
/// its database, in time order): `AuditRecord::line` is the position in `lines`.
pub fn query_audit_lines<L: AsRef<[u8]>>(
    lines: impl IntoIterator<Item = L>,
    filter: &AuditFilter,
    limit: Option<usize>,
) -> Vec<AuditRecord> {
    let mut out = VecDeque::new();
    for (i, line) in lines.into_iter().enumerate() {
        let Some(p) = parse_line(line.as_ref(), None) else {
            continue;
        };
        if filter.matches(&p.event) {
            out.push_back(AuditRecord {
                line: i + 1,
                seq: p.seq,
                event: p.event,
            });
            if limit.is_some_and(|l| out.len() > l) {
                out.pop_front();
            }
        }
    }
    out.into()
}

/// The last `n` events of the log.
pub fn tail_audit_log(path: &Path, n: usize) -> Result<Vec<AuditRecord>, KmsError> {
    query_audit_log(path, &AuditFilter::default(), Some(n))
}
