//! Per-key usage counters: how many times each operation succeeded on a key, and when
//! the key was last used (GetKeyLastUsage-style). In memory, counted since the process
//! started (the audit log is the durable record). Lock-free: one atomic per operation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

use super::ops::{OP_COUNT, Op};

#[derive(Debug)]
pub(crate) struct KeyUsage {
    counts: [AtomicU64; OP_COUNT],
    last_ms: AtomicI64,
    last_op: AtomicUsize,
}

impl Default for KeyUsage {
    fn default() -> Self {
        KeyUsage {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            last_ms: AtomicI64::new(i64::MIN),
            last_op: AtomicUsize::new(usize::MAX),
        }
    }
}

impl KeyUsage {
    pub(crate) fn count(&self, op: Op, now_ms: i64) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(now_ms, Ordering::Relaxed);
        self.last_op.store(op as usize, Ordering::Relaxed);
    }

    pub(crate) fn report(&self, key_arn: String) -> UsageReport {
        let calls = Op::ALL
            .iter()
            .filter_map(|op| {
                let n = self.counts[*op as usize].load(Ordering::Relaxed);
                (n > 0).then(|| (op.name().to_string(), n))
            })
            .collect();
        let last_ms = self.last_ms.load(Ordering::Relaxed);
        let last_op = Op::ALL.get(self.last_op.load(Ordering::Relaxed));
        UsageReport {
            key_arn,
            calls,
            last_used_ms: (last_ms != i64::MIN).then_some(last_ms),
            last_operation: last_op.map(|o| o.name().to_string()),
        }
    }
}

/// Usage of one key since sealgate started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageReport {
    pub key_arn: String,
    /// Successful calls by operation name (`GenerateDataKey` → n); zero counts omitted.
    pub calls: BTreeMap<String, u64>,
    pub last_used_ms: Option<i64>,
    pub last_operation: Option<String>,
}
