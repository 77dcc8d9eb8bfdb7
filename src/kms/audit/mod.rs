//! The audit log: one CloudTrail-shaped JSON event per KMS call, appended to a
//! hash-chained JSON-lines file by a writer thread with group commit.
//!
//! Record = one line: the CloudTrail event's fields, then `"seq"` (1, 2, ...),
//! `"prevHash"` (the previous record's `hash`, 64 zeros for seq 1), `"hash"` = hex
//! SHA-256 of every byte of the line before `,"hash"`, then `"mac"` = hex HMAC-SHA256 of
//! the same bytes under a key derived from the root key (HKDF, `audit_mac_key`).
//! Editing, removing, reordering or inserting a line breaks the hash chain at that line
//! (checkable by anyone); the MAC makes a consistent rewrite (an edit with every later
//! hash recomputed) detectable too, by whoever holds the root key
//! (`verify_audit_log_with_key`). Logs written before the chain was keyed have no
//! `"mac"`: they still verify (the report counts them as unkeyed), a keyed log continues
//! an unkeyed one, and an unkeyed record after a keyed one is a downgrade (written by
//! someone without the root key).
//!
//! Invariants: events never contain plaintext, data keys, ciphertext blobs or grant
//! tokens (producers only hand over key ids, contexts, sizes and non-secret response
//! fields); the file only grows by whole lines written by one thread; a line is durable
//! once the batch holding it is fsynced (`Kms::flush_audit` waits for that). Callers
//! never wait for the disk: they enqueue into a bounded channel and block only if the
//! writer falls 64 Ki events behind (the log is never silently dropped).
//!
//! Files: this one writes the log; `record.rs` holds a record's MAC keys and parses a
//! line; `read.rs` verifies, queries and tails the log.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use aws_lc_rs::digest::{SHA256, digest};
use serde::Serialize;
use serde_json::Value;

use super::caller::Via;
use super::{EncryptionContext, KmsError};
use crate::auth::Principal;

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Events queued before producers wait for the writer.
const QUEUE_CAPACITY: usize = 64 * 1024;
/// Bytes buffered before a `write` (keeps the buffer cache-resident).
const WRITE_CHUNK: usize = 256 * 1024;

/// The last record of a chain: enough to detect a truncated or rewritten log later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// Request parameters of an event (CloudTrail's `requestParameters`), never secrets.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Params {
    Crypto(CryptoParams),
    Json(Value),
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CryptoParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<EncryptionContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_encryption_context: Option<EncryptionContext>,
    pub encryption_algorithm: &'static str,
}

/// The service an event is about (`eventSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventSource {
    /// A KMS call (directly, or by the S3 front for a user: `invokedBy` S3).
    Kms,
    /// An S3 request sealgate refused itself (authorization between principals): no KMS
    /// call was made.
    S3,
}

/// What a producer hands the writer: cheap to build, formatted on the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct AuditEvent {
    pub source: EventSource,
    pub time_ms: i64,
    pub name: Cow<'static, str>,
    /// None for events the KMS itself initiates (creating a service-managed key).
    pub principal: Option<Principal>,
    pub via: Via,
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub params: Option<Params>,
    pub response: Option<Value>,
    pub error: Option<(&'static str, String)>,
    /// ARNs of the keys involved.
    pub resources: Vec<String>,
    pub read_only: bool,
    /// `awsRegion` when not the home region (calls signed for another KMS region).
    pub region: Option<std::sync::Arc<str>>,
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(SyncSender<Result<(), String>>),
}

/// The queue between producers and the writer: producers push under a mutex (no
/// syscall unless the writer sleeps); the writer swaps the whole vector out per batch.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
}

#[derive(Default)]
struct QueueState {
    msgs: Vec<Msg>,
    closed: bool,
    writer_waiting: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues, waiting while the queue is full. False once closed.
    fn push(&self, m: Msg) -> bool {
        let mut st = self.lock();
        while st.msgs.len() >= QUEUE_CAPACITY && !st.closed {
            st = self.not_full.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.closed {
            return false;
        }
        st.msgs.push(m);
        if st.writer_waiting {
            st.writer_waiting = false;
            self.not_empty.notify_one();
        }
        true
    }

    /// Takes everything queued (waiting for something); None when closed and drained.
    fn take(&self, into: &mut Vec<Msg>) -> bool {
        let mut st = self.lock();
        while st.msgs.is_empty() && !st.closed {
            st.writer_waiting = true;
            st = self.not_empty.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.msgs.is_empty() {
            return false;
        }
        std::mem::swap(&mut st.msgs, into);
        self.not_full.notify_all();
        true
    }

    fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }
}

/// Handle of the writer thread. Dropping it drains the queue, fsyncs and joins.
pub(crate) struct AuditLog {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
    head: Arc<Mutex<AuditHead>>,
    path: PathBuf,
    /// At open, the last record was signed with the previous root key (a rotation).
    tail_under_previous: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

struct Writer {
    file: File,
    /// The chain's MAC key (`audit_mac_key`).
    mac: MacKeys,
    fsync: bool,
    region: String,
    account: String,
    head: Arc<Mutex<AuditHead>>,
    seq: u64,
    prev: String,
    buf: Vec<u8>,
    /// (second, formatted eventTime) — most events share the previous second.
    time_cache: (i64, String),
    /// Random per writer: event ids are (this, seq) as a UUID — unique, no syscall.
    id_prefix: u64,
    /// The seq of the last record synced (the head).
    written_seq: u64,
    write_error: Option<String>,
}

impl AuditLog {
    /// Opens (creating if needed) the log and starts the writer thread. A torn last line
    /// (a crash mid-write, never fsynced) is cut off; a last line that is not a valid
    /// record refuses the open (run `verify_audit_log`).
    pub(crate) fn open(
        path: &Path,
        fsync: bool,
        region: &str,
        account: &str,
        mac: MacKeys,
    ) -> Result<AuditLog, KmsError> {
        let cfg_err = |e: std::io::Error| {
            KmsError::Config(format!("cannot open audit log {}: {e}", path.display()))
        };
        super::create_private(path, "KMS audit log")?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(cfg_err)?;
        let (head, tail_under_previous) =
            recover_head(&mut file, path, &mac).map_err(|e| match e {
                Recover::Io(e) => cfg_err(e),
                Recover::Corrupt(msg) => KmsError::Config(format!(
                    "audit log {}: {msg}; run `sealgate audit verify`",
                    path.display()
                )),
            })?;
        let head = Arc::new(Mutex::new(head));
        let queue = Arc::new(Queue::default());
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&super::crypto::random_bytes(8)?[..]);
        let (seq, prev) = {
            let h = head.lock().unwrap_or_else(|p| p.into_inner());
            (h.seq, h.hash.clone())
        };
        let mut w = Writer {
            file,
            mac,
            fsync,
            region: region.to_string(),
            account: account.to_string(),
            head: head.clone(),
            seq,
            prev,
            buf: Vec::with_capacity(WRITE_CHUNK + 4096),
            time_cache: (i64::MIN, String::new()),
            id_prefix: u64::from_be_bytes(prefix),
            written_seq: seq,
            write_error: None,
        };
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("kms-audit".into())
            .spawn(move || w.run(&q))
            .map_err(|e| KmsError::Config(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog {
            queue,
            thread: Some(thread),
            head,
            path: path.to_path_buf(),
            tail_under_previous,
        })
    }

    /// Whether, at open, the last record was signed with the previous root key.
    pub(crate) fn tail_under_previous(&self) -> bool {
        self.tail_under_previous
    }

    /// Enqueues one event (blocks only while the writer is a full queue behind).
    pub(crate) fn record(&self, ev: AuditEvent) {
        if !self.queue.push(Msg::Event(Box::new(ev))) {
            tracing::error!("KMS audit writer is gone; event lost");
        }
    }

    /// Waits until every event enqueued before this call is written and fsynced.
    pub(crate) fn flush(&self) -> Result<(), KmsError> {
        let (tx, rx) = sync_channel(1);
        let gone = || KmsError::Internal("the audit writer is not running".into());
        if !self.queue.push(Msg::Flush(tx)) {
            return Err(gone());
        }
        rx.recv()
            .map_err(|_| gone())?
            .map_err(|e| KmsError::Internal(format!("audit log write failed: {e}")))
    }

    pub(crate) fn head(&self) -> AuditHead {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Recover {
    Io(std::io::Error),
    Corrupt(String),
}

/// Reads the last complete record (cutting a torn tail) to continue the chain; and
/// whether it is signed with the previous root key.
fn recover_head(file: &mut File, path: &Path, mac: &MacKeys) -> Result<(AuditHead, bool), Recover> {
    let len = file.metadata().map_err(Recover::Io)?.len();
    if len == 0 {
        return Ok((
            AuditHead {
                seq: 0,
                hash: ZERO_HASH.into(),
            },
            false,
        ));
    }
    let window = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - window))
        .map_err(Recover::Io)?;
    let mut tail = Vec::with_capacity(window as usize);
    file.read_to_end(&mut tail).map_err(Recover::Io)?;
    let mut end = tail.len();
    if tail.last() != Some(&b'\n') {
        // A torn write: cut back to the last complete line.
        let keep = tail.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if keep == 0 && window < len {
            return Err(Recover::Corrupt(
                "the last line is longer than 1 MiB".into(),
            ));
        }
        let new_len = len - window + keep as u64;
        tracing::warn!(path = %path.display(), cut = len - new_len, "cutting a torn audit record");
        file.set_len(new_len).map_err(Recover::Io)?;
        end = keep;
        if new_len == 0 {
            return Ok((
                AuditHead {
                    seq: 0,
                    hash: ZERO_HASH.into(),
                },
                false,
            ));
        }
    }
    let body = &tail[..end - 1];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if start == 0 && window < len {
        return Err(Recover::Corrupt(
            "the last line is longer than 1 MiB".into(),
        ));
    }
    let p = parse_line(&body[start..], Some(mac))
        .ok_or_else(|| Recover::Corrupt("the last line is not a valid audit record".into()))?;
    if !p.self_ok {
        return Err(Recover::Corrupt(if p.keyed {
            "the last record does not authenticate under this root key".into()
        } else {
            "the last record does not match its hash".into()
        }));
    }
    let under_previous = p.keyed
        && mac.previous.is_some()
        && parse_line(&body[start..], Some(&mac.current_only())).is_some_and(|q| !q.self_ok);
    Ok((
        AuditHead {
            seq: p.seq,
            hash: p.hash,
        },
        under_previous,
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    principal_id: Cow<'a, str>,
    arn: Cow<'a, str>,
    account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<&'static str>,
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "accountId")]
    account_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ARN")]
    arn: &'a str,
}

/// The CloudTrail record (field names as CloudTrail spells them).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrail<'a> {
    event_version: &'static str,
    user_identity: Identity<'a>,
    event_time: &'a str,
    event_source: &'static str,
    event_name: &'a str,
    aws_region: &'a str,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Cow<'a, str>,
    user_agent: &'a str,
    request_parameters: Option<&'a Params>,
    response_elements: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_event_data: Option<Value>,
    #[serde(rename = "requestID")]
    request_id: Cow<'a, str>,
    #[serde(rename = "eventID")]
    event_id: String,
    read_only: bool,
    resources: Vec<Resource<'a>>,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: &'a str,
    event_category: &'static str,
}

/// `2024-05-01T12:00:00Z` (CloudTrail's format; sorts lexicographically).
pub(crate) fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".into(),
    }
}

impl Writer {
    fn run(&mut self, queue: &Queue) {
        let mut flushers: Vec<SyncSender<Result<(), String>>> = Vec::new();
        let mut batch = Vec::new();
        while queue.take(&mut batch) {
            for m in batch.drain(..) {
                match m {
                    Msg::Event(ev) => self.append(&ev),
                    Msg::Flush(tx) => flushers.push(tx),
                }
                // Write in cache-sized pieces; the batch is synced once at the end.
                if self.buf.len() >= WRITE_CHUNK {
                    self.write_out();
                }
            }
            let res = self.commit();
            if let Err(e) = &res {
                tracing::error!(error = %e, "KMS audit log write failed");
            }
            for f in flushers.drain(..) {
                let _ = f.send(res.clone());
            }
        }
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "KMS audit log final write failed");
        }
    }

    /// Writes what is buffered (no sync); a failure is kept for `commit` to report.
    fn write_out(&mut self) {
        if let Err(e) = self.file.write_all(&self.buf) {
            self.write_error.get_or_insert(e.to_string());
        }
        self.buf.clear();
    }

    /// Writes the rest of the batch and (if configured) fsyncs it; then publishes the
    /// new head.
    fn commit(&mut self) -> Result<(), String> {
        if self.buf.is_empty() && self.written_seq == self.seq {
            return Ok(());
        }
        self.write_out();
        if let Some(e) = self.write_error.take() {
            return Err(e);
        }
        if self.fsync {
            self.file.sync_data().map_err(|e| e.to_string())?;
        }
        self.written_seq = self.seq;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = AuditHead {
            seq: self.seq,
            hash: self.prev.clone(),
        };
        Ok(())
    }

    fn append(&mut self, ev: &AuditEvent) {
        let secs = ev.time_ms.div_euclid(1000);
        if self.time_cache.0 != secs {
            self.time_cache = (secs, format_time(ev.time_ms));
        }
        let (kind, principal_id, arn, account, user_name) = match &ev.principal {
            Some(p) if p.is_root => (
                "Root",
                Cow::Borrowed(p.account.as_str()),
                Cow::Owned(p.arn()),
                p.account.as_str(),
                None,
            ),
            Some(p) => (
                "IAMUser",
                Cow::Owned(format!("{}:{}", p.account, p.name)),
                Cow::Owned(p.arn()),
                p.account.as_str(),
                Some(p.name.as_str()),
            ),
            None => (
                "AWSService",
                Cow::Borrowed("kms.amazonaws.com"),
                Cow::Borrowed(""),
                self.account.as_str(),
                None,
            ),
        };
        // A KMS call the S3 front made for the user (not an S3 event of its own).
        let via_s3 = ev.via == Via::S3 && ev.source == EventSource::Kms;
        let source_ip = match ev.source_ip {
            Some(ip) => Cow::Owned(ip.to_string()),
            None if ev.principal.is_none() => Cow::Borrowed("kms.amazonaws.com"),
            None => Cow::Borrowed("sealgate-internal"),
        };
        let event_id = uuid::Uuid::from_u64_pair(self.id_prefix, self.seq + 1).to_string();
        let request_id = match &ev.request_id {
            Some(r) => Cow::Borrowed(r.as_str()),
            None => Cow::Owned(event_id.clone()),
        };
        let rec = CloudTrail {
            event_version: "1.08",
            user_identity: Identity {
                kind,
                principal_id,
                arn,
                account_id: account,
                user_name,
                invoked_by: via_s3.then_some("s3.amazonaws.com"),
            },
            event_time: &self.time_cache.1,
            event_source: match ev.source {
                EventSource::Kms => "kms.amazonaws.com",
                EventSource::S3 => "s3.amazonaws.com",
            },
            event_name: &ev.name,
            aws_region: ev.region.as_deref().unwrap_or(&self.region),
            source_ip_address: source_ip,
            user_agent: ev.user_agent.as_deref().unwrap_or(match ev.via {
                Via::S3 => "s3.amazonaws.com",
                _ => "sealgate",
            }),
            request_parameters: ev.params.as_ref(),
            response_elements: ev.response.as_ref(),
            error_code: ev.error.as_ref().map(|e| e.0),
            error_message: ev.error.as_ref().map(|e| e.1.as_str()),
            additional_event_data: via_s3.then(
                || serde_json::json!({"viaService": format!("s3.{}.amazonaws.com", self.region)}),
            ),
            request_id,
            event_id,
            read_only: ev.read_only,
            resources: ev
                .resources
                .iter()
                .map(|a| Resource {
                    account_id: &self.account,
                    kind: "AWS::KMS::Key",
                    arn: a,
                })
                .collect(),
            event_type: "AwsApiCall",
            management_event: true,
            recipient_account_id: &self.account,
            event_category: "Management",
        };
        let start = self.buf.len();
        if serde_json::to_writer(&mut self.buf, &rec).is_err() {
            self.buf.truncate(start);
            tracing::error!(event = %ev.name, "cannot serialise an audit event");
            return;
        }
        self.buf.pop(); // the closing brace
        self.seq += 1;
        let _ = write!(
            self.buf,
            ",\"seq\":{},\"prevHash\":\"{}\"",
            self.seq, self.prev
        );
        let body = &self.buf[start..];
        let hash = hex::encode(digest(&SHA256, body).as_ref());
        let tag = hex::encode(self.mac.sign(body).as_ref());
        let _ = writeln!(self.buf, ",\"hash\":\"{hash}\",\"mac\":\"{tag}\"}}");
        self.prev = hash;
    }
}

mod read;
mod record;

pub use record::{MacKeys, audit_mac_key};
use record::{Parsed, parse_line};

pub use read::{
    AuditFilter, AuditProblem, AuditRecord, TamperKind, VerifyReport, query_audit_lines,
    query_audit_log, tail_audit_log, verify_audit_lines, verify_audit_log,
    verify_audit_log_against, verify_audit_log_with_key,
};
