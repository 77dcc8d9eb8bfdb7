//! One audit record's chain fields: the keys of its MAC (`audit_mac_key`) and parsing a
//! line back into its event, checking its hash and MAC.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use serde_json::Value;

use crate::kms::crypto::RootKey;

/// `,"hash":"` + 64 hex + `"` (then `}` for unkeyed records, `,"mac"...` for keyed ones).
const HASH_FIELD_LEN: usize = 9 + 64 + 1;
/// `,"mac":"` + 64 hex + `"}` (keyed records).
const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;
/// HKDF `info` of the audit chain's MAC key.
const MAC_KEY_INFO: &[u8] = b"sealgate-kms-audit-chain-mac-v1";

/// The audit chain's MAC key: HKDF-SHA256 of the root key (never stored), so whoever
/// can write the log file but has no root key cannot forge or rewrite records. During a
/// root-key rotation, records the previous root key signed still verify.
pub fn audit_mac_key(root: &RootKey) -> MacKeys {
    MacKeys {
        current: root.hkdf_hmac_key(MAC_KEY_INFO),
        previous: root.previous().map(|p| p.hkdf_hmac_key(MAC_KEY_INFO)),
        sign_previous: root.seal_previous_flag(),
    }
}

/// The keys of the chain's MACs: new records are signed with the key the KMS database
/// is sealed under (the previous root key until a rotation has run).
pub struct MacKeys {
    current: hmac::Key,
    pub(super) previous: Option<hmac::Key>,
    sign_previous: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl MacKeys {
    pub(super) fn current_only(&self) -> MacKeys {
        MacKeys {
            current: self.current.clone(),
            previous: None,
            sign_previous: Default::default(),
        }
    }

    pub(super) fn sign(&self, body: &[u8]) -> hmac::Tag {
        match &self.previous {
            Some(p) if self.sign_previous.load(std::sync::atomic::Ordering::SeqCst) => {
                hmac::sign(p, body)
            }
            _ => hmac::sign(&self.current, body),
        }
    }

    pub(super) fn verify(&self, body: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.current, body, tag).is_ok()
            || self
                .previous
                .as_ref()
                .is_some_and(|p| hmac::verify(p, body, tag).is_ok())
    }
}

/// One record as read back: its chain fields and the event.
pub(super) struct Parsed {
    pub(super) seq: u64,
    pub(super) prev: String,
    /// The record's `hash` (what the next record's `prevHash` names).
    pub(super) hash: String,
    /// Keyed (carries a `mac`) rather than unkeyed.
    pub(super) keyed: bool,
    /// Whether a keyed record's MAC was checked (the key was at hand); true for unkeyed.
    pub(super) checked: bool,
    /// The line's content matches its hash, and its MAC when checked.
    pub(super) self_ok: bool,
    pub(super) event: Value,
}

/// Parses a record; `mac` checks keyed records' MACs (without it only their hash).
pub(super) fn parse_line(line: &[u8], mac: Option<&MacKeys>) -> Option<Parsed> {
    let hex64 = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .filter(|s| s.len() == 64)
            .map(str::to_string)
    };
    // `...,"hash":"H"}` (unkeyed) or `...,"hash":"H","mac":"M"}` (keyed).
    let (body_end, claimed_mac) = match line.len().checked_sub(MAC_SUFFIX_LEN) {
        Some(cut) if line[cut..].starts_with(b",\"mac\":\"") && line.ends_with(b"\"}") => {
            (cut, Some(hex64(&line[cut + 8..line.len() - 2])?))
        }
        _ => (line.len().checked_sub(1)?, None),
    };
    if !line.ends_with(b"}") {
        return None;
    }
    let hash_at = body_end.checked_sub(HASH_FIELD_LEN)?;
    let field = &line[hash_at..body_end];
    if !field.starts_with(b",\"hash\":\"") || !field.ends_with(b"\"") {
        return None;
    }
    let claimed = hex64(&field[9..9 + 64])?;
    let prefix = &line[..hash_at];
    let mut event: Value = serde_json::from_slice(line).ok()?;
    let obj = event.as_object_mut()?;
    let seq = obj.remove("seq")?.as_u64()?;
    let prev = obj.remove("prevHash")?.as_str()?.to_string();
    obj.remove("hash");
    obj.remove("mac");
    let hash_ok = hex::encode(digest(&SHA256, prefix).as_ref()) == claimed;
    let (checked, mac_ok) = match (&claimed_mac, mac) {
        (None, _) => (true, true),
        (Some(m), Some(k)) => {
            let ok = hex::decode(m).is_ok_and(|tag| k.verify(prefix, &tag));
            (true, ok)
        }
        (Some(_), None) => (false, true),
    };
    Some(Parsed {
        seq,
        prev,
        hash: claimed,
        keyed: claimed_mac.is_some(),
        checked,
        self_ok: hash_ok && mac_ok,
        event,
    })
}
