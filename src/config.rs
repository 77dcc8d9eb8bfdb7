//! Configuration: a TOML file, overridden by `SEALGATE_*` environment variables, overridden
//! by command-line flags (applied in `main.rs`).
//!
//! Invariants: every field has its default here and only here (`#[serde(default)]`);
//! `validate()` names the offending field and says why; secrets are loaded from the file,
//! from an environment variable or from a `*_file` path, and never appear in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::auth::{AccessKey, AccessKeys, Principal};

/// A configuration problem, naming the field and the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in `{field}`: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn cfg_err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A secret value that redacts itself and is zeroized on drop.
#[derive(Clone, Default)]
pub struct Secret(Arc<Zeroizing<String>>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(s.into())))
    }
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Top-level configuration for `sealgate serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the S3 (and KMS API) listener binds to.
    pub listen: SocketAddr,
    /// When set, `BUCKET.<domain>` Host headers are parsed as virtual-hosted-style requests.
    pub virtual_host_domain: Option<String>,
    /// Optional TLS for the listener (PEM files).
    pub tls: Option<TlsConfig>,
    /// The object store sealgate forwards to.
    pub upstream: UpstreamConfig,
    /// Access keys clients use to talk to sealgate, each mapped to a principal.
    pub access_keys: Vec<AccessKeyConfig>,
    /// Named identity policies (IAM JSON), defined once and attached to access keys by
    /// name (`access_keys[].policies`): `[policies.NAME]` with `document` or `file`.
    pub policies: std::collections::BTreeMap<String, PolicyConfig>,
    /// Account id the principals belong to (12 digits).
    pub account: String,
    /// Largest request body (bytes) sealgate reads into memory for non-streaming
    /// operations (XML bodies of bucket configuration calls, KMS JSON requests).
    pub max_buffered_body: usize,
    /// Bucket in the store where sealgate keeps its own settings (bucket default
    /// encryption); created on first use, hidden from and refused to clients.
    pub state_bucket: String,
    /// The embedded KMS (its `account` is always this config's `account`).
    pub kms: crate::kms::KmsConfig,
    /// What happens to objects that do not ask for encryption, and to unencrypted objects.
    pub encryption: EncryptionConfig,
    /// Where data keys come from: the embedded KMS or remote backends, caching, outages.
    pub kms_backend: crate::keys::KmsBackendConfig,
    /// The KMS root key as a sealed file that a PKCS#11 token, Vault/OpenBao Transit or
    /// an AWS-KMS-API endpoint opens at startup, instead of `kms.root_key_file`
    /// (`crate::unseal`).
    pub kms_unseal: Option<crate::unseal::UnsealConfig>,
    /// Timeouts and limits on client connections (`crate::limits`).
    pub limits: crate::limits::LimitsConfig,
    /// Accept AWS Signature Version 2 (deprecated; aws-cli v1 presigns with it unless
    /// configured for `s3v4`). Off by default: s3s verifies V2 signatures with a
    /// variable-time comparison (see `docs/operations.md`).
    pub allow_signature_v2: bool,
    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`); without
    /// one, `/metrics` is open to anyone who can reach the listener. Also from
    /// `metrics_token_file` or `SEALGATE_METRICS_TOKEN`.
    pub metrics_token: Option<Secret>,
    /// Read `metrics_token` from this file (trailing newline trimmed).
    pub metrics_token_file: Option<PathBuf>,
    /// Threads serving requests (tokio workers). None = one per CPU core. Caps the cores
    /// sealgate competes for on a host it shares with the store or clients. (On this
    /// project's 2-core test machine, 1 and 2 workers measured the same throughput
    /// within noise; 1 worker halved the context switches: docs/performance.md.)
    pub worker_threads: Option<usize>,
}

/// Object encryption policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Encryption for a PUT that names none and whose bucket has no default:
    /// `AES256` (SSE-S3 under sealgate's managed key; the default, like AWS), `aws:kms`
    /// (with `default_kms_key`), or `none` (store such objects unencrypted).
    pub default: String,
    /// KMS key for `default = "aws:kms"` (id, ARN or alias); none = the managed key.
    pub default_kms_key: Option<String>,
    /// Where objects sealgate did not encrypt (existing data, during a migration) may be
    /// read as they are: entries `bucket` or `bucket/prefix`, or `*` for everywhere.
    /// Everywhere else such an object is refused (403), so a store that strips an
    /// object's sealgate metadata cannot make sealgate serve what it holds.
    pub plaintext_reads: Vec<String>,
    /// Older spelling of `plaintext_reads = ["*"]` (default false).
    pub allow_plaintext_reads: bool,
    /// SSE-S3 objects get AWS's ETags: the plaintext MD5 (multipart: the MD5 of the
    /// parts' MD5s, `-N`), which rclone, s3cmd and other sync tools compare with their
    /// own MD5s. Computing MD5 costs CPU on every SSE-S3 write (docs/performance.md);
    /// `false` gives every object the store's ETag instead.
    pub md5_etags: bool,
    /// Accept SSE-C (customer-provided keys) on requests that reach sealgate over plain
    /// HTTP. AWS refuses them (the key would cross the network in the clear), and so does
    /// sealgate by default; set this only when TLS ends in front of sealgate (a load
    /// balancer or sidecar on the same host or private network).
    pub allow_ssec_over_http: bool,
}

impl EncryptionConfig {
    /// Whether an object sealgate did not encrypt may be served at `bucket/key`.
    pub fn plaintext_allowed(&self, bucket: &str, key: &str) -> bool {
        self.allow_plaintext_reads
            || self
                .plaintext_reads
                .iter()
                .any(|e| match e.split_once('/') {
                    _ if e == "*" => true,
                    None => e == bucket,
                    Some((b, prefix)) => b == bucket && key.starts_with(prefix),
                })
    }
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            default: "AES256".into(),
            default_kms_key: None,
            plaintext_reads: Vec::new(),
            allow_plaintext_reads: false,
            md5_etags: true,
            allow_ssec_over_http: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8014)),
            virtual_host_domain: None,
            tls: None,
            upstream: UpstreamConfig::default(),
            access_keys: Vec::new(),
            policies: Default::default(),
            account: "000000000000".into(),
            max_buffered_body: 1024 * 1024,
            state_bucket: "sealgate-state".into(),
            kms: crate::kms::KmsConfig::default(),
            encryption: EncryptionConfig::default(),
            kms_backend: Default::default(),
            kms_unseal: None,
            limits: crate::limits::LimitsConfig::default(),
            allow_signature_v2: false,
            metrics_token: None,
            metrics_token_file: None,
            worker_threads: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the store, e.g. `http://127.0.0.1:3900`.
    pub endpoint: String,
    /// Region used when signing requests to the store.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Read the secret from this file instead (trailing newline trimmed).
    pub secret_access_key_file: Option<PathBuf>,
    /// Seconds to wait for a TCP/TLS connection to the store.
    pub connect_timeout_secs: u64,
    /// Extra PEM CA bundle to trust for an `https://` store (system roots are always trusted).
    pub ca_file: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            secret_access_key_file: None,
            connect_timeout_secs: 5,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub secret_access_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the secret.
    pub secret_access_key_env: Option<String>,
    /// Principal name (`alice`); the ARN is `arn:aws:iam::ACCOUNT:user/alice`.
    pub principal: String,
    /// The account root/admin principal: may do everything (no policy is consulted).
    pub root: bool,
    /// Named policies (`[policies.NAME]`) attached to this key.
    pub policies: Vec<String>,
    /// An inline identity policy (IAM JSON) of this key.
    pub policy: Option<String>,
    /// Read the inline policy from this file instead.
    pub policy_file: Option<PathBuf>,
    /// This key's own credential for the store: its requests are signed with it (except
    /// those to sealgate's state bucket), so the store enforces its own permissions.
    pub store_access_key_id: Option<String>,
    pub store_secret_access_key: Secret,
    pub store_secret_access_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the store secret.
    pub store_secret_access_key_env: Option<String>,
}

/// A named identity policy: its JSON document, inline or in a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub document: Option<String>,
    pub file: Option<PathBuf>,
}

/// Shortest client secret accepted. A SigV4 signature is an offline oracle for its
/// secret (anyone who sees one signed request can test guesses), so a secret must be
/// long enough not to be guessed; AWS's own are 40 characters.
pub const MIN_SECRET_CHARS: usize = 16;

fn read_secret_file(field: &str, path: &Path) -> Result<Secret, ConfigError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| cfg_err(field, format!("cannot read {}: {e}", path.display())))?;
    Ok(Secret::new(s.trim_end_matches(['\n', '\r'])))
}

fn read_text_file(field: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| cfg_err(field, format!("cannot read {}: {e}", path.display())))
}

impl Config {
    /// Reads a TOML file (if given), then applies `SEALGATE_*` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    cfg_err("--config", format!("cannot read {}: {e}", p.display()))
                })?;
                Self::from_toml(&text)?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_else(|| "file".into());
            cfg_err(field, e.message().to_string())
        })
    }

    /// Environment overrides; `get` is injectable for tests.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("SEALGATE_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e| cfg_err("SEALGATE_LISTEN", format!("not a socket address: {e}")))?;
        }
        if let Some(v) = get("SEALGATE_UPSTREAM_ENDPOINT") {
            self.upstream.endpoint = v;
        }
        if let Some(v) = get("SEALGATE_UPSTREAM_REGION") {
            self.upstream.region = v;
        }
        if let Some(v) = get("SEALGATE_UPSTREAM_ACCESS_KEY_ID") {
            self.upstream.access_key_id = v;
        }
        if let Some(v) = get("SEALGATE_UPSTREAM_SECRET_ACCESS_KEY") {
            self.upstream.secret_access_key = Secret::new(v);
        }
        if let Some(v) = get("SEALGATE_UPSTREAM_SECRET_ACCESS_KEY_FILE") {
            self.upstream.secret_access_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("SEALGATE_KMS_STORE") {
            self.kms.store = match v.as_str() {
                "redb" => crate::kms::StoreKind::Redb,
                "postgres" => crate::kms::StoreKind::Postgres,
                _ => {
                    return Err(cfg_err("SEALGATE_KMS_STORE", "must be redb or postgres"));
                }
            };
        }
        if let Some(v) = get("SEALGATE_KMS_DB") {
            self.kms.db_path = PathBuf::from(v);
        }
        if let Some(v) = get("SEALGATE_KMS_ROOT_KEY_FILE") {
            self.kms.root_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("SEALGATE_KMS_PREVIOUS_ROOT_KEY_FILE") {
            self.kms.previous_root_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("SEALGATE_KMS_REGIONS") {
            self.kms.regions = v
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = get("SEALGATE_KMS_BACKEND") {
            self.kms_backend.default = v;
        }
        if let Some(v) = get("SEALGATE_WORKER_THREADS") {
            self.worker_threads = Some(v.parse().map_err(|_| {
                cfg_err(
                    "SEALGATE_WORKER_THREADS",
                    "must be a whole number of threads",
                )
            })?);
        }
        if let Some(v) = get("SEALGATE_METRICS_TOKEN") {
            self.metrics_token = Some(Secret::new(v));
        }
        if let Some(v) = get("SEALGATE_VIRTUAL_HOST_DOMAIN") {
            self.virtual_host_domain = Some(v);
        }
        for (i, k) in self.access_keys.iter_mut().enumerate() {
            if let Some(var) = &k.secret_access_key_env {
                match get(var) {
                    Some(v) => k.secret_access_key = Secret::new(v),
                    None => {
                        return Err(cfg_err(
                            format!("access_keys[{i}].secret_access_key_env"),
                            format!("environment variable {var} is not set"),
                        ));
                    }
                }
            }
            if let Some(var) = &k.store_secret_access_key_env {
                match get(var) {
                    Some(v) => k.store_secret_access_key = Secret::new(v),
                    None => {
                        return Err(cfg_err(
                            format!("access_keys[{i}].store_secret_access_key_env"),
                            format!("environment variable {var} is not set"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `*_file` secrets and checks every field; the error names the field.
    /// Access policies are parsed by the S3 layer: [`crate::check_config`] runs both.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let up = &mut self.upstream;
        if up.endpoint.is_empty() {
            return Err(cfg_err(
                "upstream.endpoint",
                "required: the URL of the S3 store (e.g. http://127.0.0.1:3900)",
            ));
        }
        let url = reqwest::Url::parse(&up.endpoint)
            .map_err(|e| cfg_err("upstream.endpoint", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(cfg_err(
                "upstream.endpoint",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(cfg_err(
                "upstream.endpoint",
                "must not have a path or query (buckets are addressed path-style)",
            ));
        }
        if up.region.is_empty() {
            return Err(cfg_err("upstream.region", "must not be empty"));
        }
        if up.access_key_id.is_empty() {
            return Err(cfg_err(
                "upstream.access_key_id",
                "required (or set SEALGATE_UPSTREAM_ACCESS_KEY_ID)",
            ));
        }
        if let Some(p) = &up.secret_access_key_file {
            up.secret_access_key = read_secret_file("upstream.secret_access_key_file", p)?;
        }
        if up.secret_access_key.is_empty() {
            return Err(cfg_err(
                "upstream.secret_access_key",
                "required (or secret_access_key_file, or SEALGATE_UPSTREAM_SECRET_ACCESS_KEY)",
            ));
        }
        if self.access_keys.is_empty() {
            return Err(cfg_err(
                "access_keys",
                "at least one client access key is required",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, k) in self.access_keys.iter_mut().enumerate() {
            let f = |n: &str| format!("access_keys[{i}].{n}");
            if k.access_key_id.len() < 3
                || !k
                    .access_key_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(cfg_err(
                    f("access_key_id"),
                    "must be at least 3 characters of [A-Za-z0-9._-]",
                ));
            }
            if !seen.insert(k.access_key_id.clone()) {
                return Err(cfg_err(
                    f("access_key_id"),
                    format!("duplicate access key id {}", k.access_key_id),
                ));
            }
            if let Some(p) = &k.secret_access_key_file {
                k.secret_access_key = read_secret_file(&f("secret_access_key_file"), p)?;
            }
            if k.secret_access_key.expose().chars().count() < MIN_SECRET_CHARS {
                return Err(cfg_err(
                    f("secret_access_key"),
                    format!(
                        "the secret of access key {} is required and must be at least {MIN_SECRET_CHARS} characters",
                        k.access_key_id
                    ),
                ));
            }
            if let Some(p) = &k.store_secret_access_key_file {
                k.store_secret_access_key =
                    read_secret_file(&f("store_secret_access_key_file"), p)?;
            }
            if let Some(p) = &k.policy_file {
                if k.policy.is_some() {
                    return Err(cfg_err(
                        f("policy_file"),
                        "give the inline policy either as `policy` or as `policy_file`, not both",
                    ));
                }
                k.policy = Some(read_text_file(&f("policy_file"), p)?);
            }
            if k.principal.is_empty()
                || !k
                    .principal
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
            {
                return Err(cfg_err(
                    f("principal"),
                    "required, characters [A-Za-z0-9+=,.@_-]",
                ));
            }
        }
        if self.account.len() != 12 || !self.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(cfg_err("account", "must be a 12-digit account id"));
        }
        for (name, p) in self.policies.iter_mut() {
            let field = format!("policies.{name}");
            match (&p.document, &p.file) {
                (Some(_), None) => {}
                (None, Some(path)) => p.document = Some(read_text_file(&field, path)?),
                _ => {
                    return Err(cfg_err(
                        field,
                        "give the policy document either as `document` or as `file`",
                    ));
                }
            }
        }
        if let Some(d) = &self.virtual_host_domain
            && s3s::host::SingleDomain::new(d).is_err()
        {
            return Err(cfg_err("virtual_host_domain", "not a valid domain name"));
        }
        if let Some(t) = &self.tls {
            for (n, p) in [
                ("tls.cert_file", &t.cert_file),
                ("tls.key_file", &t.key_file),
            ] {
                if !p.is_file() {
                    return Err(cfg_err(n, format!("{} does not exist", p.display())));
                }
            }
        }
        if let Some(p) = &self.metrics_token_file {
            self.metrics_token = Some(read_secret_file("metrics_token_file", p)?);
        }
        if let Some(t) = &self.metrics_token
            && (t.expose().chars().count() < MIN_SECRET_CHARS
                || !t.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(cfg_err(
                "metrics_token",
                format!("must be at least {MIN_SECRET_CHARS} printable characters without spaces"),
            ));
        }
        if self.worker_threads.is_some_and(|n| n == 0 || n > 1024) {
            return Err(cfg_err("worker_threads", "must be between 1 and 1024"));
        }
        if self.max_buffered_body < 64 * 1024 {
            return Err(cfg_err("max_buffered_body", "must be at least 65536"));
        }
        if !matches!(
            self.encryption.default.as_str(),
            "AES256" | "aws:kms" | "none"
        ) {
            return Err(cfg_err(
                "encryption.default",
                "must be \"AES256\", \"aws:kms\" or \"none\"",
            ));
        }
        if self.encryption.default_kms_key.is_some() && self.encryption.default != "aws:kms" {
            return Err(cfg_err(
                "encryption.default_kms_key",
                "only applies with encryption.default = \"aws:kms\"",
            ));
        }
        for e in &self.encryption.plaintext_reads {
            let bucket = e.split('/').next().unwrap_or_default();
            if e != "*" && (bucket.is_empty() || bucket == "*") {
                return Err(cfg_err(
                    "encryption.plaintext_reads",
                    format!("entries are \"bucket\", \"bucket/prefix\" or \"*\", got {e:?}"),
                ));
            }
        }
        self.limits
            .validate()
            .map_err(|(field, reason)| cfg_err(field, reason))?;
        self.kms.account = self.account.clone();
        self.kms.validate().map_err(|e| cfg_err("kms", e))?;
        self.kms_backend
            .validate(&|k| std::env::var(k).ok())
            .map_err(|(f, r)| cfg_err(f, r))?;
        if let Some(u) = &mut self.kms_unseal {
            u.validate(&|k| std::env::var(k).ok())
                .map_err(|(f, r)| cfg_err(f, r))?;
            if self.kms.root_key_file.is_some() {
                return Err(cfg_err(
                    "kms.root_key_file",
                    "set either kms.root_key_file or [kms_unseal], not both (during a move to a sealed root key, name the old file in kms.previous_root_key_file)",
                ));
            }
        }
        Ok(())
    }

    /// The access-key table clients authenticate against.
    pub fn access_key_table(&self) -> AccessKeys {
        let map: HashMap<String, AccessKey> = self
            .access_keys
            .iter()
            .map(|k| {
                let ak = AccessKey {
                    secret: Arc::new(Zeroizing::new(k.secret_access_key.expose().to_string())),
                    principal: Principal {
                        name: k.principal.clone(),
                        account: self.account.clone(),
                        is_root: k.root,
                    },
                };
                (k.access_key_id.clone(), ak)
            })
            .collect();
        AccessKeys::new(map)
    }
}

#[cfg(test)]
mod tests;
