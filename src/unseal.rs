//! Where the KMS root key comes from: a file or environment variable (`[kms]`), or a
//! sealed file that an unsealer opens at startup (`[kms_unseal]`): a PKCS#11 token
//! (`crate::hsm`), Vault/OpenBao Transit, or any AWS-KMS-API endpoint (auto-unseal, as
//! Vault does). A peer of `crate::kms` and `crate::keys`: it uses the Transit and AWS
//! clients of the data-key backends. docs/design/key-stores.md.
//!
//! Invariants:
//! - The sealed file names its unsealer and key; a file sealed by another method or key
//!   is refused with both named, never tried blindly.
//! - The unsealed key must match the check value recorded beside the ciphertext, and the
//!   ciphertext is bound to its purpose (AES-GCM AAD in the token, the encryption
//!   context of Transit and AWS KMS): a data key of the same KMS key cannot pass for a
//!   root key.
//! - Any failure (unreachable unsealer, refused credentials, wrong key, changed file) is
//!   a startup error that says which; sealgate never falls back to another root key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::hsm::{Pkcs11Config, Token};
use crate::keys::config::{AwsKmsConfig, BackendConfig, TransitConfig};
use crate::keys::{BackendError, KmsBackend};
use crate::kms::{EncryptionContext, RootKey};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// What the sealed file says it is.
const FORMAT: &str = "sealgate-sealed-root-key";
/// AES-GCM additional data of a root key sealed in a PKCS#11 token.
const PKCS11_AAD: &[u8] = b"sealgate:kms-root-key:v1";
/// The encryption context a root key is sealed under by Transit or AWS KMS.
const CONTEXT_KEY: &str = "sealgate:purpose";
const CONTEXT_VALUE: &str = "kms-root-key";

/// `[kms_unseal]`: the root key is a sealed file, opened at startup by one unsealer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsealConfig {
    /// The sealed root key (`sealgate kms seal-root` writes it).
    pub sealed_root_key_file: PathBuf,
    /// During a root-key rotation: the sealed key the database was sealed under before
    /// (opened by the same unsealer). `kms.previous_root_key_file` may name a plain one
    /// instead (moving from a root key file to a sealed root key).
    pub previous_sealed_root_key_file: Option<PathBuf>,
    /// The unsealer's key: the PKCS#11 key's label, the Transit key's name (a derived
    /// key, `derived=true`), or the AWS KMS key id, ARN or alias.
    pub key: String,
    /// A PKCS#11 token (an HSM).
    pub pkcs11: Option<Pkcs11Config>,
    /// Vault/OpenBao Transit, with the fields of a `type = "transit"` backend.
    pub transit: Option<TransitConfig>,
    /// An AWS-KMS-API endpoint (AWS KMS, another sealgate), with the fields of a
    /// `type = "aws"` backend.
    pub aws: Option<AwsKmsConfig>,
}

/// Which unsealer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Pkcs11,
    Transit,
    AwsKms,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Pkcs11 => "pkcs11",
            Method::Transit => "transit",
            Method::AwsKms => "aws-kms",
        }
    }
}

impl UnsealConfig {
    /// The configured unsealer (validated: exactly one).
    pub fn method(&self) -> Method {
        if self.pkcs11.is_some() {
            Method::Pkcs11
        } else if self.transit.is_some() {
            Method::Transit
        } else {
            Method::AwsKms
        }
    }

    /// Checks the fields and resolves the unsealer's secrets. Errors are (field, reason).
    pub fn validate(
        &mut self,
        get_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), (String, String)> {
        let n = [
            self.pkcs11.is_some(),
            self.transit.is_some(),
            self.aws.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            return Err((
                "kms_unseal".into(),
                "configure exactly one unsealer: [kms_unseal.pkcs11], [kms_unseal.transit] or [kms_unseal.aws]".into(),
            ));
        }
        if self.sealed_root_key_file.as_os_str().is_empty() {
            return Err((
                "kms_unseal.sealed_root_key_file".into(),
                "required: the file `sealgate kms seal-root` wrote".into(),
            ));
        }
        if self.key.is_empty() {
            return Err((
                "kms_unseal.key".into(),
                "required: the unsealer's key (PKCS#11 key label, Transit key name, or AWS KMS key id)".into(),
            ));
        }
        if let Some(p) = &self.pkcs11 {
            p.validate("kms_unseal.pkcs11")?;
        }
        // The remote unsealers take a backend's fields and checks (URL, secrets).
        if let Some(t) = self.transit.take() {
            self.transit = Some(
                match remote_checked(BackendConfig::Transit(t), "transit", get_env)? {
                    BackendConfig::Transit(t) => t,
                    BackendConfig::Aws(_) => unreachable!("validation keeps the kind"),
                },
            );
        }
        if let Some(a) = self.aws.take() {
            self.aws = Some(
                match remote_checked(BackendConfig::Aws(a), "aws", get_env)? {
                    BackendConfig::Aws(a) => a,
                    BackendConfig::Transit(_) => unreachable!("validation keeps the kind"),
                },
            );
        }
        Ok(())
    }
}

fn remote_checked(
    mut b: BackendConfig,
    table: &str,
    get_env: &dyn Fn(&str) -> Option<String>,
) -> Result<BackendConfig, (String, String)> {
    b.validate(&format!("kms_unseal.{table}"), get_env, false)?;
    Ok(b)
}

/// The sealed root key file (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct SealedFile {
    format: String,
    version: u32,
    method: Method,
    key: String,
    /// base64 of what the unsealer returned (PKCS#11: IV ‖ ciphertext ‖ tag; Transit:
    /// its `vault:vN:` string; AWS: the CiphertextBlob).
    ciphertext: String,
    /// hex of the root key's check value, to recognise it after unsealing and to compare
    /// with the database's without unsealing.
    check_value: String,
}

/// The root key the config names: unsealed from `[kms_unseal]`, else from `[kms]`'s file
/// or environment; with the previous one during a rotation.
pub fn root_key(cfg: &Config) -> Result<RootKey, String> {
    let Some(u) = &cfg.kms_unseal else {
        return cfg.kms.load_root_key().map_err(|e| e.to_string());
    };
    let root = open_file(u, &u.sealed_root_key_file)?;
    let previous = match cfg
        .kms
        .load_previous_root_key()
        .map_err(|e| e.to_string())?
    {
        Some(p) => Some(p),
        None => match &u.previous_sealed_root_key_file {
            Some(f) => Some(open_file(u, f)?),
            None => None,
        },
    };
    match previous {
        Some(p) => root.with_previous(p).map_err(|e| e.to_string()),
        None => Ok(root),
    }
}

/// Seals `root` (32 bytes) with the configured unsealer into `out` (created private,
/// never overwritten). With `create_key`, a PKCS#11 key that does not exist yet is
/// created in the token (non-extractable AES-256). Returns the check value (hex).
pub fn seal_root_key(
    u: &UnsealConfig,
    root: &[u8],
    out: &Path,
    create_key: bool,
) -> Result<String, String> {
    let key = RootKey::from_bytes(root).map_err(|e| e.to_string())?;
    let method = u.method();
    let ciphertext = match method {
        Method::Pkcs11 => {
            let token =
                Token::open(u.pkcs11.as_ref().expect("validated")).map_err(|e| e.to_string())?;
            if !token.has_key(&u.key).map_err(|e| e.to_string())? {
                if !create_key {
                    return Err(format!(
                        "the token has no key labelled '{}': pass --create-key to create it (a non-extractable AES-256 key)",
                        u.key
                    ));
                }
                token.create_aes_key(&u.key).map_err(|e| e.to_string())?;
            }
            token
                .seal(&u.key, PKCS11_AAD, root)
                .map_err(|e| e.to_string())?
        }
        Method::Transit | Method::AwsKms => {
            let backend = remote(u)?;
            on_own_runtime(async {
                let principal = unsealer_principal();
                let who = crate::keys::Caller::in_process(&principal);
                backend
                    .wrap_data_key(who, &u.key, root, &context())
                    .await
                    .map(|(wrapped, _)| wrapped)
            })?
            .map_err(|e| unsealer_error(method, &u.key, e))?
        }
    };
    let file = SealedFile {
        format: FORMAT.into(),
        version: 1,
        method,
        key: u.key.clone(),
        ciphertext: B64.encode(&ciphertext),
        check_value: hex::encode(key.check_value()),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    text.push('\n');
    write_private_new(out, text.as_bytes())?;
    // Read back through the unsealer: a file that cannot be opened is not left behind.
    match open_file(u, out) {
        Ok(k) if k.check_value() == key.check_value() => Ok(file.check_value),
        Ok(_) => {
            let _ = std::fs::remove_file(out);
            Err("the sealed root key did not open to the same key; nothing written".into())
        }
        Err(e) => {
            let _ = std::fs::remove_file(out);
            Err(format!(
                "the sealed root key could not be opened again ({e}); nothing written"
            ))
        }
    }
}

/// Opens the sealed root key in `path` with the unsealer `u` configures.
fn open_file(u: &UnsealConfig, path: &Path) -> Result<RootKey, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the sealed root key {shown}: {e}"))?;
    let file: SealedFile = serde_json::from_str(&text).map_err(|e| {
        format!("{shown} is not a sealed root key (as `sealgate kms seal-root` writes): {e}")
    })?;
    if file.format != FORMAT || file.version != 1 {
        return Err(format!(
            "{shown} is not a sealed root key of a version this sealgate reads (format '{}', version {})",
            file.format, file.version
        ));
    }
    let method = u.method();
    if file.method != method {
        return Err(format!(
            "{shown} was sealed by {} but [kms_unseal] configures {}",
            file.method.name(),
            method.name()
        ));
    }
    if file.key != u.key {
        return Err(format!(
            "{shown} was sealed under key '{}' but kms_unseal.key is '{}'",
            file.key, u.key
        ));
    }
    let ciphertext = B64
        .decode(file.ciphertext.as_bytes())
        .map_err(|_| format!("{shown}: the ciphertext is not base64"))?;
    let plain: Zeroizing<Vec<u8>> = match method {
        Method::Pkcs11 => {
            let token = Token::open(u.pkcs11.as_ref().expect("validated"))
                .map_err(|e| format!("cannot unseal {shown}: {e}"))?;
            token
                .open_sealed(&u.key, PKCS11_AAD, &ciphertext)
                .map_err(|e| format!("cannot unseal {shown}: {e}"))?
        }
        Method::Transit | Method::AwsKms => {
            let backend = remote(u)?;
            on_own_runtime(async {
                let principal = unsealer_principal();
                let who = crate::keys::Caller::in_process(&principal);
                backend
                    .decrypt_data_key(who, &u.key, &ciphertext, &context())
                    .await
            })?
            .map_err(|e| {
                format!(
                    "cannot unseal {shown}: {}",
                    unsealer_error(method, &u.key, e)
                )
            })?
        }
    };
    let key = RootKey::from_bytes(&plain).map_err(|e| format!("cannot unseal {shown}: {e}"))?;
    if hex::encode(key.check_value()) != file.check_value {
        return Err(format!(
            "{shown}: the unsealed key does not match the file's check value (the file was changed)"
        ));
    }
    Ok(key)
}

fn context() -> EncryptionContext {
    EncryptionContext::from([(CONTEXT_KEY.to_string(), CONTEXT_VALUE.to_string())])
}

/// The caller a remote unsealer sees (it authenticates sealgate's own credentials; the
/// principal is not sent).
fn unsealer_principal() -> crate::auth::Principal {
    crate::auth::Principal {
        name: "sealgate-unseal".into(),
        account: String::new(),
        is_root: false,
    }
}

fn remote(u: &UnsealConfig) -> Result<Arc<dyn KmsBackend>, String> {
    // One attempt, no circuit breaker: startup fails at once with the reason.
    let resilience = crate::keys::ResilienceConfig {
        retries: 0,
        ..Default::default()
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let r = crate::keys::remote::Remote::new("unseal", &resilience, metrics)?;
    Ok(match (&u.transit, &u.aws) {
        (Some(t), _) => Arc::new(crate::keys::transit::Transit::new("unseal", t, r)?),
        (None, Some(a)) => Arc::new(crate::keys::aws::AwsKms::new("unseal", a, r)?),
        (None, None) => return Err("kms_unseal configures no remote unsealer".into()),
    })
}

fn unsealer_error(method: Method, key: &str, e: BackendError) -> String {
    match e {
        BackendError::Unavailable(m) => {
            format!("the {} unsealer cannot be reached: {m}", method.name())
        }
        BackendError::Kms(k) => format!(
            "the {} unsealer refused key '{key}': {} ({})",
            method.name(),
            k,
            k.aws_type()
        ),
    }
}

/// Runs `fut` on a runtime of its own, in a thread of its own: the callers are
/// synchronous (startup, CLI commands), some inside another runtime.
fn on_own_runtime<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(fut))
                .map_err(|e| format!("cannot start a runtime for the unsealer: {e}"))
        })
        .join()
        .map_err(|_| "the unsealer panicked".to_string())?
    })
}

fn write_private_new(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = crate::files::create_new_private(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkcs11() -> Pkcs11Config {
        Pkcs11Config {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "t".into(),
            pin_file: Some("/etc/pin".into()),
            ..Default::default()
        }
    }

    fn base() -> UnsealConfig {
        UnsealConfig {
            sealed_root_key_file: "/var/lib/sealgate/root.sealed".into(),
            key: "k".into(),
            pkcs11: Some(pkcs11()),
            ..Default::default()
        }
    }

    #[test]
    fn exactly_one_unsealer_is_configured() {
        let none = |_: &str| None;
        assert!(base().validate(&none).is_ok());
        let mut two = base();
        two.transit = Some(TransitConfig {
            address: "https://vault:8200".into(),
            token: crate::config::Secret::new("t"),
            ..Default::default()
        });
        let (field, reason) = two.validate(&none).unwrap_err();
        assert_eq!(field, "kms_unseal");
        assert!(reason.contains("exactly one"), "{reason}");
        let mut zero = base();
        zero.pkcs11 = None;
        assert_eq!(zero.validate(&none).unwrap_err().0, "kms_unseal");
    }

    #[test]
    fn missing_fields_are_named() {
        let none = |_: &str| None;
        let mut u = base();
        u.key.clear();
        assert_eq!(u.validate(&none).unwrap_err().0, "kms_unseal.key");
        let mut u = base();
        u.sealed_root_key_file = PathBuf::new();
        assert_eq!(
            u.validate(&none).unwrap_err().0,
            "kms_unseal.sealed_root_key_file"
        );
        let mut u = base();
        u.pkcs11.as_mut().unwrap().token_label.clear();
        assert_eq!(
            u.validate(&none).unwrap_err().0,
            "kms_unseal.pkcs11.token_label"
        );
        // A Transit unsealer over plain http must say so explicitly, as a backend must.
        let mut u = base();
        u.pkcs11 = None;
        u.transit = Some(TransitConfig {
            address: "http://vault:8200".into(),
            token: crate::config::Secret::new("t"),
            ..Default::default()
        });
        assert_eq!(
            u.validate(&none).unwrap_err().0,
            "kms_unseal.transit.address"
        );
    }

    #[test]
    fn a_file_that_is_not_a_sealed_root_key_is_refused_before_any_unsealer_call() {
        let dir = tempfile::tempdir().unwrap();
        let u = base();
        let p = dir.path().join("f");
        std::fs::write(
            &p,
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let err = open_file(&u, &p).unwrap_err();
        assert!(err.contains("is not a sealed root key"), "{err}");
        let file = SealedFile {
            format: FORMAT.into(),
            version: 1,
            method: Method::AwsKms,
            key: "k".into(),
            ciphertext: String::new(),
            check_value: String::new(),
        };
        std::fs::write(&p, serde_json::to_string(&file).unwrap()).unwrap();
        let err = open_file(&u, &p).unwrap_err();
        assert!(
            err.contains("was sealed by aws-kms but [kms_unseal] configures pkcs11"),
            "{err}"
        );
    }
}
