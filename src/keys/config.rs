//! Configuration of the KMS backends (`[kms_backend]` in sealgate's TOML).
//!
//! Invariants: every field has its default here; secrets (AWS secret keys, Transit tokens)
//! come from the file, a `*_file` path or an environment variable, are resolved once by
//! `validate()`, and never appear in `Debug`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Secret;

/// Name of the in-process KMS backend (always present; objects without a recorded
/// backend were written by it).
pub const EMBEDDED: &str = "embedded";

/// `[kms_backend]`: which backend writes use, the remote backends, caching and outages.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KmsBackendConfig {
    /// Backend new objects are written with: `embedded` or a name from `backends`.
    pub default: String,
    /// Per-bucket override of `default` for writes (reads always use the backend recorded
    /// in the object's metadata).
    pub buckets: BTreeMap<String, String>,
    /// Remote backends by name. A backend that wrote objects must stay configured under
    /// the same name for those objects to be readable.
    pub backends: BTreeMap<String, BackendConfig>,
    pub cache: CacheConfig,
    pub resilience: ResilienceConfig,
}

impl Default for KmsBackendConfig {
    fn default() -> Self {
        Self {
            default: EMBEDDED.into(),
            buckets: BTreeMap::new(),
            backends: BTreeMap::new(),
            cache: CacheConfig::default(),
            resilience: ResilienceConfig::default(),
        }
    }
}

/// One remote backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// Anything that speaks the AWS KMS JSON protocol (AWS KMS, moto, another sealgate).
    Aws(AwsKmsConfig),
    /// HashiCorp Vault / OpenBao Transit secrets engine.
    Transit(TransitConfig),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsKmsConfig {
    /// Base URL; empty = `https://kms.<region>.amazonaws.com`.
    pub endpoint: String,
    /// Region used in the SigV4 credential scope.
    pub region: String,
    /// Empty = the `AWS_ACCESS_KEY_ID` environment variable.
    pub access_key_id: String,
    /// Empty (and no `_file`/`_env`) = the `AWS_SECRET_ACCESS_KEY` environment variable.
    pub secret_access_key: Secret,
    pub secret_access_key_file: Option<PathBuf>,
    pub secret_access_key_env: Option<String>,
    /// Optional session token (temporary credentials); `AWS_SESSION_TOKEN` if unset.
    pub session_token: Option<Secret>,
    /// Key for writes that name none (SSE-S3, or aws:kms without a key id).
    pub default_key: Option<String>,
    /// Accept a plain `http://` endpoint. Off by default: the data keys of every object
    /// (and the credentials' signatures) would cross the network in clear text.
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransitConfig {
    /// Vault/OpenBao address, e.g. `https://vault.example:8200`.
    pub address: String,
    /// Mount path of the Transit engine.
    pub mount: String,
    /// Token (else `token_file`, `token_env`, then `BAO_TOKEN` / `VAULT_TOKEN`).
    pub token: Secret,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// Enterprise/OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// Transit key for writes that name none. Keys must be `derived = true` (the
    /// encryption context is the derivation context).
    pub default_key: Option<String>,
    /// Accept a plain `http://` address. Off by default: the token and every data key
    /// would cross the network in clear text.
    pub allow_insecure_http: bool,
}

impl Default for TransitConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            mount: "transit".into(),
            token: Secret::default(),
            token_file: None,
            token_env: None,
            namespace: None,
            default_key: None,
            allow_insecure_http: false,
        }
    }
}

/// Data-key caching (S3 Bucket Key style) and the unwrapped-key cache for reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache for remote backends (bucket keys for writes, unwrapped keys for reads).
    pub enabled: bool,
    /// Also cache with the embedded KMS. Off by default: in process a KMS call costs
    /// microseconds, and without caching every S3 request is its own policy decision
    /// and audit event.
    pub embedded: bool,
    /// How long one bucket key is used for new objects.
    pub bucket_key_max_age_secs: u64,
    /// How many objects one bucket key is used for.
    pub bucket_key_max_objects: u64,
    /// How long an unwrapped key stays usable for reads (also while the backend is down).
    pub decrypt_ttl_secs: u64,
    /// Most unwrapped keys held (the oldest go first).
    pub decrypt_max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            embedded: false,
            bucket_key_max_age_secs: 300,
            bucket_key_max_objects: 1000,
            decrypt_ttl_secs: 300,
            decrypt_max_entries: 10_000,
        }
    }
}

/// Timeouts, retries and the circuit breaker of remote backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceConfig {
    pub connect_timeout_ms: u64,
    /// Per attempt.
    pub request_timeout_ms: u64,
    /// Extra attempts after a failure that may be transient (transport, 5xx, throttling).
    pub retries: u32,
    /// First backoff; doubles per retry (with jitter).
    pub backoff_ms: u64,
    /// Consecutive failed calls that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit fails fast before one trial call is let through.
    pub breaker_cooldown_ms: u64,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 1000,
            request_timeout_ms: 3000,
            retries: 2,
            backoff_ms: 50,
            breaker_failures: 5,
            breaker_cooldown_ms: 5000,
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn secret_from(
    field: &str,
    inline: &Secret,
    file: &Option<PathBuf>,
    env: &Option<String>,
    fallback_env: &[&str],
    get_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, (String, String)> {
    if let Some(p) = file {
        let s = std::fs::read_to_string(p).map_err(|e| {
            (
                field.to_string(),
                format!("cannot read {}: {e}", p.display()),
            )
        })?;
        return Ok(Secret::new(s.trim_end_matches(['\n', '\r'])));
    }
    if let Some(var) = env {
        return get_env(var).map(Secret::new).ok_or_else(|| {
            (
                field.to_string(),
                format!("environment variable {var} is not set"),
            )
        });
    }
    if !inline.is_empty() {
        return Ok(inline.clone());
    }
    for var in fallback_env {
        if let Some(v) = get_env(var) {
            return Ok(Secret::new(v));
        }
    }
    Err((
        field.to_string(),
        format!(
            "required (inline, a _file, an _env variable, or {})",
            fallback_env.join(" / ")
        ),
    ))
}

impl BackendConfig {
    /// Checks one backend's URL and resolves its secrets; `field` names it in errors
    /// (`kms_backend.backends.NAME`). `need_default_key`: writes may use it (the root-key
    /// unsealer, `crate::unseal`, names its key itself).
    pub fn validate(
        &mut self,
        field: &str,
        get_env: &dyn Fn(&str) -> Option<String>,
        need_default_key: bool,
    ) -> Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
        let f = |x: &str| format!("{field}.{x}");
        match self {
            BackendConfig::Aws(a) => {
                if a.region.is_empty() {
                    return err(&f("region"), "required");
                }
                if a.endpoint.is_empty() {
                    a.endpoint = format!("https://kms.{}.amazonaws.com", a.region);
                }
                check_url(&f("endpoint"), &a.endpoint, a.allow_insecure_http)?;
                if a.access_key_id.is_empty() {
                    a.access_key_id = get_env("AWS_ACCESS_KEY_ID").ok_or_else(|| {
                        (f("access_key_id"), "required (or AWS_ACCESS_KEY_ID)".into())
                    })?;
                }
                a.secret_access_key = secret_from(
                    &f("secret_access_key"),
                    &a.secret_access_key,
                    &a.secret_access_key_file,
                    &a.secret_access_key_env,
                    &["AWS_SECRET_ACCESS_KEY"],
                    get_env,
                )?;
                if a.session_token.is_none() {
                    a.session_token = get_env("AWS_SESSION_TOKEN").map(Secret::new);
                }
                if need_default_key && a.default_key.as_deref().is_none_or(str::is_empty) {
                    return err(
                        &f("default_key"),
                        "required: the key for objects whose request names none (SSE-S3)",
                    );
                }
            }
            BackendConfig::Transit(t) => {
                check_url(&f("address"), &t.address, t.allow_insecure_http)?;
                let mount = t.mount.trim_matches('/').to_string();
                if mount.is_empty()
                    || !mount
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b))
                {
                    return err(&f("mount"), "a path of [A-Za-z0-9-_./]");
                }
                t.mount = mount;
                t.token = secret_from(
                    &f("token"),
                    &t.token,
                    &t.token_file,
                    &t.token_env,
                    &["BAO_TOKEN", "VAULT_TOKEN"],
                    get_env,
                )?;
                if need_default_key && t.default_key.as_deref().is_none_or(str::is_empty) {
                    return err(
                        &f("default_key"),
                        "required: the key for objects whose request names none (SSE-S3)",
                    );
                }
            }
        }
        Ok(())
    }
}

impl KmsBackendConfig {
    /// Checks names and URLs and resolves secrets. Errors are (field, reason).
    pub fn validate(
        &mut self,
        get_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
        for name in self.backends.keys() {
            if name == EMBEDDED || !valid_name(name) {
                return err(
                    &format!("kms_backend.backends.{name}"),
                    "names are 1-32 characters of [a-z0-9_-] and not \"embedded\"",
                );
            }
        }
        let known = |n: &str| n == EMBEDDED || self.backends.contains_key(n);
        if !known(&self.default) {
            return err("kms_backend.default", "names no configured backend");
        }
        for (b, n) in &self.buckets {
            if !known(n) {
                return err(
                    &format!("kms_backend.buckets.{b}"),
                    "names no configured backend",
                );
            }
        }
        for (name, b) in self.backends.iter_mut() {
            b.validate(&format!("kms_backend.backends.{name}"), get_env, true)?;
        }
        let c = &self.cache;
        if c.bucket_key_max_age_secs == 0 || c.bucket_key_max_age_secs > 3600 {
            return err(
                "kms_backend.cache.bucket_key_max_age_secs",
                "between 1 and 3600",
            );
        }
        if c.bucket_key_max_objects == 0 || c.bucket_key_max_objects > 1_000_000 {
            return err(
                "kms_backend.cache.bucket_key_max_objects",
                "between 1 and 1000000",
            );
        }
        if c.decrypt_ttl_secs > 86_400 {
            return err("kms_backend.cache.decrypt_ttl_secs", "at most 86400");
        }
        let r = &self.resilience;
        if r.request_timeout_ms == 0 || r.connect_timeout_ms == 0 {
            return err("kms_backend.resilience", "timeouts must be positive");
        }
        if r.retries > 10 || r.breaker_failures == 0 {
            return err(
                "kms_backend.resilience",
                "retries at most 10, breaker_failures at least 1",
            );
        }
        Ok(())
    }
}

/// A backend URL: `https://`, or `http://` only where `allow_insecure_http` says so.
fn check_url(field: &str, u: &str, allow_http: bool) -> Result<(), (String, String)> {
    let url = reqwest::Url::parse(u).map_err(|e| (field.to_string(), format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err((
            field.to_string(),
            "must be an http:// or https:// URL with a host".into(),
        ));
    }
    if url.scheme() == "http" && !allow_http {
        return Err((
            field.to_string(),
            "plain http:// would send data keys and credentials in clear text: use https://, \
             or set allow_insecure_http = true on this backend (e.g. for a peer on loopback)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        kms_backend: KmsBackendConfig,
    }

    const EXAMPLE: &str = r#"
        [kms_backend]
        default = "corp"
        buckets = { logs = "bao" }
        [kms_backend.backends.corp]
        type = "aws"
        endpoint = "http://127.0.0.1:4566"
        region = "eu-west-1"
        access_key_id = "AKIDCORP"
        secret_access_key_env = "CORP_SECRET"
        default_key = "alias/sealgate"
        allow_insecure_http = true
        [kms_backend.backends.bao]
        type = "transit"
        address = "http://127.0.0.1:8200"
        mount = "/transit/"
        token_file = "/nonexistent"
        default_key = "sealgate"
        allow_insecure_http = true
        [kms_backend.cache]
        bucket_key_max_objects = 500
    "#;

    #[test]
    fn backends_parse_and_secrets_resolve_from_env_and_files() {
        let mut c = toml::from_str::<Wrap>(EXAMPLE).unwrap().kms_backend;
        let env = |k: &str| (k == "CORP_SECRET").then(|| "s3cr3t".to_string());
        // The token file does not exist: the error names the field.
        let (f, _) = c.validate(&env).unwrap_err();
        assert_eq!(f, "kms_backend.backends.bao.token");
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("tok");
        std::fs::write(&tf, "root-token\n").unwrap();
        let mut c = toml::from_str::<Wrap>(&EXAMPLE.replace("/nonexistent", tf.to_str().unwrap()))
            .unwrap()
            .kms_backend;
        c.validate(&env).unwrap();
        let BackendConfig::Transit(t) = &c.backends["bao"] else {
            panic!()
        };
        assert_eq!(
            (t.mount.as_str(), t.token.expose()),
            ("transit", "root-token")
        );
        let BackendConfig::Aws(a) = &c.backends["corp"] else {
            panic!()
        };
        assert_eq!(a.secret_access_key.expose(), "s3cr3t");
        assert_eq!(c.cache.bucket_key_max_objects, 500);
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_remote_backend_over_plain_http_is_refused_unless_allowed() {
        let env = |k: &str| (k == "CORP_SECRET").then(|| "s3cr3t".to_string());
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("tok");
        std::fs::write(&tf, "root-token\n").unwrap();
        let example = EXAMPLE.replace("/nonexistent", tf.to_str().unwrap());
        let parse = |t: &str| toml::from_str::<Wrap>(t).unwrap().kms_backend;
        // Without the opt-in, each http:// backend is refused, naming its field.
        let aws_http = example.replacen("allow_insecure_http = true\n", "", 1);
        let (f, r) = parse(&aws_http).validate(&env).unwrap_err();
        assert_eq!(f, "kms_backend.backends.corp.endpoint");
        assert!(r.contains("allow_insecure_http"), "{r}");
        let transit_http = example.replace(
            "default_key = \"sealgate\"\n        allow_insecure_http = true\n",
            "default_key = \"sealgate\"\n",
        );
        let (f, _) = parse(&transit_http).validate(&env).unwrap_err();
        assert_eq!(f, "kms_backend.backends.bao.address");
        // https:// needs no opt-in.
        let https = example
            .replace("allow_insecure_http = true\n", "")
            .replace("http://", "https://");
        parse(&https).validate(&env).unwrap();
        // The AWS default endpoint (empty) is https.
        let mut c = parse(&https.replace("endpoint = \"https://127.0.0.1:4566\"", ""));
        c.validate(&env).unwrap();
        let BackendConfig::Aws(a) = &c.backends["corp"] else {
            panic!()
        };
        assert_eq!(a.endpoint, "https://kms.eu-west-1.amazonaws.com");
    }

    #[test]
    fn unknown_backend_names_and_fields_are_refused() {
        let mut c = KmsBackendConfig {
            default: "nope".into(),
            ..Default::default()
        };
        assert_eq!(c.validate(&|_| None).unwrap_err().0, "kms_backend.default");
        assert!(
            toml::from_str::<Wrap>("[kms_backend.backends.x]\ntype = \"aws\"\nbogus = 1\n")
                .is_err()
        );
        assert!(toml::from_str::<Wrap>("[kms_backend.backends.x]\ntype = \"gcp\"\n").is_err());
    }
}
