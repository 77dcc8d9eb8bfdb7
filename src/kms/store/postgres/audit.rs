//! One audit trail for the cluster: each instance ships its hash-chained audit file into
//! `kms_audit` (one chain per instance, named by the hash of its first record), so the
//! whole cluster's trail is in one place, verifiable chain by chain
//! (`sealgate audit verify`) and exportable as JSON lines (`sealgate audit export`).
//!
//! The local file stays the record of truth (written and fsynced first, by the audit
//! writer); the shipper reads what it holds, at most `SHIP_CHUNK` bytes a round, and
//! inserts complete lines after the last one the database has for this chain. A
//! database outage only delays shipping: the next round catches up from the file.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Conn, Params, unavailable};
use crate::kms::KmsError;

/// Bytes of the audit file read per round at most.
const SHIP_CHUNK: usize = 4 << 20;
/// How often the shipper looks for new records.
const SHIP_EVERY: Duration = Duration::from_millis(500);

/// Where shipping stands.
#[derive(Default)]
struct Shipping {
    /// The chain's id: the hash of its first record.
    chain: Option<String>,
    /// The last seq the database holds for the chain (None: not asked yet).
    shipped: Option<i64>,
    /// File offset of the first line not yet looked at.
    offset: u64,
}

/// Starts the shipper thread for the audit file at `path`; it ends when `alive` says
/// the KMS is gone.
pub(super) fn ship(params: Arc<Params>, path: PathBuf, alive: impl Fn() -> bool + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("sealgate-audit-ship".into())
        .spawn(move || {
            let mut conn = Conn::new(params);
            let mut st = Shipping::default();
            let mut failing = false;
            while alive() {
                match ship_round(&mut conn, &path, &mut st) {
                    Ok(more) => {
                        failing = false;
                        if more {
                            continue;
                        }
                    }
                    Err(e) => {
                        conn.client = None;
                        st.shipped = None;
                        if !failing {
                            tracing::warn!(error = %e, "cannot ship the audit log to PostgreSQL; it stays in the local file and is shipped when the database answers");
                            failing = true;
                        }
                    }
                }
                std::thread::sleep(SHIP_EVERY);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the audit shipper");
    }
}

/// Ships what the file holds after `st.offset`; whether a full chunk was read (more may
/// follow at once).
fn ship_round(conn: &mut Conn, path: &PathBuf, st: &mut Shipping) -> Result<bool, KmsError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| KmsError::Internal(format!("audit log {}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(st.offset))
        .map_err(|e| KmsError::Internal(format!("audit log {}: {e}", path.display())))?;
    let mut buf = Vec::with_capacity(64 * 1024);
    f.take(SHIP_CHUNK as u64)
        .read_to_end(&mut buf)
        .map_err(|e| KmsError::Internal(format!("audit log {}: {e}", path.display())))?;
    let full = buf.len() == SHIP_CHUNK;
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok(false);
    };
    let mut rows = Vec::new();
    for line in buf[..end].split(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line).into_owned();
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
            KmsError::Internal(format!(
                "audit log {}: a line is not a record",
                path.display()
            ))
        })?;
        let seq = v["seq"].as_i64().unwrap_or(0);
        if seq == 1 {
            st.chain = v["hash"].as_str().map(str::to_string);
        }
        let time = v["eventTime"].as_str().unwrap_or_default().to_string();
        rows.push((seq, time, text));
    }
    let Some(chain) = st.chain.clone() else {
        return Err(KmsError::Internal(format!(
            "audit log {} does not start with record 1",
            path.display()
        )));
    };
    let client = conn.client()?;
    let shipped = match st.shipped {
        Some(s) => s,
        None => client
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM kms_audit WHERE chain = $1",
                &[&chain],
            )
            .map_err(unavailable)?
            .get(0),
    };
    let mut tx = client.transaction().map_err(unavailable)?;
    let mut last = shipped;
    for (seq, time, line) in rows.iter().filter(|(seq, _, _)| *seq > shipped) {
        tx.execute(
            "INSERT INTO kms_audit (chain, seq, event_time, line) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&chain, seq, time, line],
        )
        .map_err(unavailable)?;
        last = *seq;
    }
    tx.commit().map_err(unavailable)?;
    st.shipped = Some(last);
    st.offset += end as u64 + 1;
    Ok(full)
}

/// Every chain in the database: (chain id, its lines in seq order).
pub(super) fn chains(conn: &mut Conn) -> Result<Vec<(String, Vec<String>)>, KmsError> {
    let rows = conn
        .client()?
        .query("SELECT chain, line FROM kms_audit ORDER BY chain, seq", &[])
        .map_err(unavailable)?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in rows {
        let (chain, line): (String, String) = (r.get(0), r.get(1));
        match out.last_mut() {
            Some((c, lines)) if *c == chain => lines.push(line),
            _ => out.push((chain, vec![line])),
        }
    }
    Ok(out)
}

/// The whole trail in time order (ties: by chain, then seq), from the `event_time`
/// column the shipper filled.
pub(super) fn trail(conn: &mut Conn) -> Result<Vec<String>, KmsError> {
    Ok(conn
        .client()?
        .query(
            "SELECT line FROM kms_audit ORDER BY event_time, chain, seq",
            &[],
        )
        .map_err(unavailable)?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}
