//! Vault / OpenBao Transit as a backend: `datakey/plaintext`, `decrypt`, `encrypt` and
//! `keys` of a Transit mount, with token auth and an optional namespace.
//!
//! Invariants:
//! - The encryption context (`aws:s3:arn` + the caller's pairs) is Transit's key
//!   derivation `context`: the canonical JSON of the context (keys sorted, no whitespace,
//!   serde_json escaping), base64. Transit only binds a context with `derived = true`
//!   keys, and silently ignores it otherwise, so a key is checked to be derived before its
//!   first use and refused if it is not.
//! - Wrapped keys are Transit ciphertexts (`vault:vN:...`, the version is the key version
//!   that wrapped them); key references are `transit:<mount>/<key>`.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::config::TransitConfig;
use super::remote::Remote;
use super::{BackendError, Caller, Capabilities, GeneratedKey, KeyInfo, KmsBackend};
use crate::kms::{EncryptionContext, KmsError};

pub const REF_PREFIX: &str = "transit:";

pub struct Transit {
    name: String,
    address: String,
    mount: String,
    token: crate::config::Secret,
    namespace: Option<String>,
    default_key: String,
    /// Keys seen to be `derived` (checked once per key).
    derived: Mutex<HashSet<(String, String)>>,
    remote: Remote,
}

/// Transit's derivation context for an encryption context: base64 of its canonical JSON.
pub fn context_b64(ctx: &EncryptionContext) -> String {
    // A BTreeMap serialises with sorted keys; serde_json never fails on string maps.
    B64.encode(serde_json::to_vec(ctx).unwrap_or_default())
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Transit {
    pub fn new(name: &str, cfg: &TransitConfig, remote: Remote) -> Result<Transit, String> {
        Ok(Transit {
            name: name.to_string(),
            address: cfg.address.trim_end_matches('/').to_string(),
            mount: cfg.mount.clone(),
            token: cfg.token.clone(),
            namespace: cfg.namespace.clone(),
            default_key: cfg.default_key.clone().unwrap_or_default(),
            derived: Mutex::new(HashSet::new()),
            remote,
        })
    }

    /// (mount, key) of a key id: `name`, or `transit:<mount>/<name>`.
    fn parse_ref(&self, key_id: &str) -> Result<(String, String), BackendError> {
        let (mount, key) = match key_id.strip_prefix(REF_PREFIX) {
            Some(r) => match r.rsplit_once('/') {
                Some((m, k)) => (m.to_string(), k.to_string()),
                None => (self.mount.clone(), r.to_string()),
            },
            None => (self.mount.clone(), key_id.to_string()),
        };
        if !valid_segment(&key) || !mount.split('/').all(valid_segment) {
            return Err(BackendError::Kms(KmsError::NotFound(format!(
                "'{key_id}' is not a Transit key name (KMS backend '{}')",
                self.name
            ))));
        }
        Ok((mount, key))
    }

    fn key_ref(mount: &str, key: &str) -> String {
        format!("{REF_PREFIX}{mount}/{key}")
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        let url = format!("{}/v1/{path}", self.address);
        let body = body.map(|b| b.to_string());
        let reply = self
            .remote
            .send(
                || {
                    let mut rb = self
                        .remote
                        .client()
                        .request(method.clone(), &url)
                        .header("X-Vault-Token", self.token.expose())
                        .header("X-Vault-Request", "true");
                    if let Some(ns) = &self.namespace {
                        rb = rb.header("X-Vault-Namespace", ns);
                    }
                    if let Some(b) = &body {
                        rb = rb
                            .header("content-type", "application/json")
                            .body(b.clone());
                    }
                    Ok(rb)
                },
                |_, _| false,
            )
            .await?;
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status.is_success() {
            return Ok(v);
        }
        Err(self.error_from(reply.status, &v))
    }

    fn error_from(&self, status: http::StatusCode, v: &Value) -> BackendError {
        let msg = v
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let lower = msg.to_ascii_lowercase();
        let msg = format!("{msg} (Transit backend '{}')", self.name);
        BackendError::Kms(match status.as_u16() {
            401 | 403 => KmsError::AccessDenied(msg),
            404 => KmsError::NotFound(msg),
            _ if lower.contains("not found") => KmsError::NotFound(msg),
            _ if lower.contains("decrypt")
                || lower.contains("authentication failed")
                || lower.contains("invalid ciphertext")
                || lower.contains("ciphertext") =>
            {
                KmsError::InvalidCiphertext(msg)
            }
            _ if lower.contains("disabled") || lower.contains("min_decryption_version") => {
                KmsError::Disabled(msg)
            }
            _ => KmsError::Validation(msg),
        })
    }

    /// Refuses keys that would ignore the context (not `derived`).
    async fn require_derived(&self, mount: &str, key: &str) -> Result<(), BackendError> {
        let id = (mount.to_string(), key.to_string());
        if self
            .derived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
        {
            return Ok(());
        }
        let info = self.read_key(mount, key).await?;
        if info.derived != Some(true) {
            return Err(BackendError::Kms(KmsError::InvalidKeyUsage(format!(
                "Transit key {mount}/{key} is not a derived key, so it cannot bind the encryption context; create it with derived=true (KMS backend '{}')",
                self.name
            ))));
        }
        self.derived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        Ok(())
    }

    async fn read_key(&self, mount: &str, key: &str) -> Result<KeyInfo, BackendError> {
        let v = self
            .call(http::Method::GET, &format!("{mount}/keys/{key}"), None)
            .await?;
        let d = v.get("data").cloned().unwrap_or(Value::Null);
        Ok(KeyInfo {
            key_ref: Self::key_ref(mount, key),
            enabled: true,
            latest_version: d.get("latest_version").and_then(Value::as_u64),
            derived: d.get("derived").and_then(Value::as_bool),
        })
    }
}

fn data_str(v: &Value, name: &str) -> Result<String, BackendError> {
    v.pointer(&format!("/data/{name}"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            BackendError::Kms(KmsError::Internal(format!(
                "the Transit answer has no {name}"
            )))
        })
}

fn data_b64(v: &Value, name: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let s = Zeroizing::new(data_str(v, name)?);
    B64.decode(s.as_bytes()).map(Zeroizing::new).map_err(|_| {
        BackendError::Kms(KmsError::Internal(format!(
            "the Transit answer's {name} is not base64"
        )))
    })
}

/// The key version a Transit ciphertext names (`vault:v3:...` → 3).
pub fn ciphertext_version(wrapped: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(wrapped).ok()?;
    let mut it = s.splitn(3, ':');
    let _prefix = it.next()?;
    it.next()?.strip_prefix('v')?.parse().ok()
}

#[async_trait::async_trait]
impl KmsBackend for Transit {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            encryption_context: true,
            rotation: true,
            key_versions: true,
            per_caller_authorization: false,
        }
    }

    async fn default_key(&self) -> Result<String, BackendError> {
        Ok(self.default_key.clone())
    }

    async fn generate_data_key(
        &self,
        _who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<GeneratedKey, BackendError> {
        let (mount, key) = self.parse_ref(key_id)?;
        self.require_derived(&mount, &key).await?;
        let v = self
            .call(
                http::Method::POST,
                &format!("{mount}/datakey/plaintext/{key}"),
                Some(json!({"context": context_b64(ctx), "bits": 256})),
            )
            .await?;
        Ok(GeneratedKey {
            plaintext: data_b64(&v, "plaintext")?,
            wrapped: data_str(&v, "ciphertext")?.into_bytes(),
            key_ref: Self::key_ref(&mount, &key),
        })
    }

    async fn decrypt_data_key(
        &self,
        _who: Caller<'_>,
        key_ref: &str,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let (mount, key) = self.parse_ref(key_ref)?;
        let ciphertext = std::str::from_utf8(wrapped).map_err(|_| {
            BackendError::Kms(KmsError::InvalidCiphertext(
                "the wrapped key is not a Transit ciphertext".into(),
            ))
        })?;
        let v = self
            .call(
                http::Method::POST,
                &format!("{mount}/decrypt/{key}"),
                Some(json!({"ciphertext": ciphertext, "context": context_b64(ctx)})),
            )
            .await?;
        data_b64(&v, "plaintext")
    }

    async fn wrap_data_key(
        &self,
        _who: Caller<'_>,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), BackendError> {
        let (mount, key) = self.parse_ref(key_id)?;
        self.require_derived(&mount, &key).await?;
        let v = self
            .call(
                http::Method::POST,
                &format!("{mount}/encrypt/{key}"),
                Some(json!({"plaintext": B64.encode(plaintext), "context": context_b64(ctx)})),
            )
            .await?;
        Ok((
            data_str(&v, "ciphertext")?.into_bytes(),
            Self::key_ref(&mount, &key),
        ))
    }

    async fn describe_key(&self, _who: Caller<'_>, key_id: &str) -> Result<KeyInfo, BackendError> {
        let (mount, key) = self.parse_ref(key_id)?;
        self.read_key(&mount, &key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_canonical_json_in_base64_and_versions_parse() {
        let ctx: EncryptionContext = [("z", "1"), ("aws:s3:arn", "arn:aws:s3:::b/k")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let json = B64.decode(context_b64(&ctx)).unwrap();
        assert_eq!(json, br#"{"aws:s3:arn":"arn:aws:s3:::b/k","z":"1"}"#);
        assert_eq!(ciphertext_version(b"vault:v12:abcd"), Some(12));
        assert_eq!(ciphertext_version(b"garbage"), None);
    }
}
