//! PKCS#11 tokens (hardware security modules, SoftHSM2 in the tests) through the
//! `cryptoki` crate: finding a token by label, logging in with a PIN from a file or the
//! environment, creating AES-256 keys that never leave the token, and AES-GCM inside it.
//! A leaf module: it knows nothing of the KMS that uses it (root-key unseal,
//! `crate::unseal`; docs/design/key-stores.md).
//!
//! Invariants:
//! - Keys created here are `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` and not
//!   `CKA_EXTRACTABLE`: their value cannot be read or wrapped out of the token.
//! - Every call runs in the token (C_Encrypt/C_Decrypt); only IVs, ciphertexts and the
//!   plaintexts the caller passes cross the module boundary.
//! - A PKCS#11 module is loaded and C_Initialize'd once per process and path (the
//!   standard forbids initializing twice); one `Token` per module and token label holds
//!   the login, and its sessions are pooled.
//! - The PIN is zeroized when dropped and never appears in errors or Debug output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Bytes of the AES-GCM IV sealgate generates in the token for each seal.
pub const IV_LEN: usize = 12;
/// Bytes of the AES-GCM tag.
const TAG_LEN: usize = 16;

/// Where a token is and how to log in to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (as `softhsm2-util --show-slots` or `pkcs11-tool -L` print it).
    pub token_label: String,
    /// File holding the user PIN (trailing newline trimmed; must be private, mode 600).
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN when no file is given.
    pub pin_env: String,
}

impl Default for Pkcs11Config {
    fn default() -> Self {
        Self {
            module: PathBuf::new(),
            token_label: String::new(),
            pin_file: None,
            pin_env: "SEALGATE_PKCS11_PIN".into(),
        }
    }
}

impl Pkcs11Config {
    /// Checks the fields; `field` prefixes the names in the error.
    pub fn validate(&self, field: &str) -> Result<(), (String, String)> {
        if self.module.as_os_str().is_empty() {
            return Err((
                format!("{field}.module"),
                "required: the PKCS#11 module's path, e.g. /usr/lib/softhsm/libsofthsm2.so".into(),
            ));
        }
        if self.token_label.is_empty() || self.token_label.len() > 32 {
            return Err((
                format!("{field}.token_label"),
                "required: the token's label (1-32 characters)".into(),
            ));
        }
        if self.pin_file.is_none() && self.pin_env.is_empty() {
            return Err((
                format!("{field}.pin_file"),
                "set pin_file or pin_env (the token's user PIN)".into(),
            ));
        }
        Ok(())
    }

    fn pin(&self) -> Result<Zeroizing<String>, HsmError> {
        let raw = match &self.pin_file {
            Some(p) => {
                crate::files::check_private(p, "PIN file").map_err(HsmError::Config)?;
                Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
                    HsmError::Config(format!("cannot read the PIN file {}: {e}", p.display()))
                })?)
            }
            None => Zeroizing::new(std::env::var(&self.pin_env).map_err(|_| {
                HsmError::Config(format!(
                    "no PKCS#11 PIN: set pin_file or the environment variable {}",
                    self.pin_env
                ))
            })?),
        };
        let pin = raw.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(HsmError::Config("the PKCS#11 PIN is empty".into()));
        }
        Ok(Zeroizing::new(pin.to_string()))
    }
}

/// SHA-256 of a PIN: what a second opener's PIN is compared with.
fn pin_digest(pin: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(pin.as_bytes()).into()
}

fn refused(label: &str) -> HsmError {
    HsmError::Login(format!("the PIN for token '{label}' was refused"))
}

/// What went wrong, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HsmError {
    /// Settings: a missing PIN, an unreadable file.
    #[error("{0}")]
    Config(String),
    /// The module could not be loaded or initialized, or no token has the label.
    #[error("{0}")]
    Unavailable(String),
    /// The PIN was refused (or is locked).
    #[error("{0}")]
    Login(String),
    /// No key with the label in the token.
    #[error("{0}")]
    KeyNotFound(String),
    /// The token could not decrypt: wrong key, or the ciphertext was changed.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// Anything else the token reported.
    #[error("{0}")]
    Token(String),
}

fn modules() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The module at `path`, loaded and initialized once per process.
fn module(path: &Path) -> Result<Pkcs11, HsmError> {
    let mut all = modules().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = all.get(path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|e| {
        HsmError::Unavailable(format!(
            "cannot load the PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(HsmError::Unavailable(format!(
                "the PKCS#11 module {} failed to initialize: {e}",
                path.display()
            )));
        }
    }
    all.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

/// A logged-in token. One session stays open for the token's lifetime (PKCS#11 login
/// state lasts while the application has a session); others are pooled, and key handles
/// are cached by label (looked up again when the token no longer knows one).
///
/// PKCS#11 login is per application and token: two `Token`s of one token in a process
/// would share one login, and the second's PIN would never be checked. So a process
/// holds one `Token` per module and token label (`open_with_pin` hands out the live one
/// to a caller with the same PIN, compared in constant time, and refuses another PIN).
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    module: PathBuf,
    pin: AuthPin,
    pin_digest: [u8; 32],
    /// The session that holds the login (kept open, never used; in a Mutex because a
    /// `Session` is not `Sync`).
    login: Mutex<Option<Session>>,
    pool: Mutex<Vec<Session>>,
    handles: Mutex<HashMap<String, ObjectHandle>>,
    /// Failures so far: a session in use when one happened is not pooled again.
    failures: AtomicU64,
    /// A failure that ends the token's sessions (device removed, session or login gone):
    /// the token must be opened again.
    broken: AtomicBool,
    /// SoftHSM2 reports a GCM tag that does not verify as CKR_GENERAL_ERROR.
    general_error_is_bad_tag: bool,
}

/// Sessions kept open for reuse.
const POOL_MAX: usize = 16;

/// Live tokens by (module, token label).
type OpenTokens = Mutex<HashMap<(PathBuf, String), Weak<Token>>>;

/// The live tokens of this process, by module and token label.
fn open_tokens() -> &'static OpenTokens {
    static OPEN: OnceLock<OpenTokens> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A pooled session, back in the pool when dropped unless the token failed meanwhile.
struct Pooled<'a> {
    token: &'a Token,
    session: Option<Session>,
    failures: u64,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(s) = self.session.take() else {
            return;
        };
        let t = self.token;
        if t.failures.load(Ordering::SeqCst) != self.failures || t.is_broken() {
            return;
        }
        let mut pool = t.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(s);
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("label", &self.label).finish()
    }
}

impl Token {
    /// Loads the module, finds the token by label and logs in (checking the PIN).
    pub fn open(cfg: &Pkcs11Config) -> Result<Arc<Token>, HsmError> {
        Self::open_with_pin(&cfg.module, &cfg.token_label, &cfg.pin()?)
    }

    /// As [`Token::open`], with the PIN given (a custom key store keeps its own). The
    /// process's live token of that module and label is shared if the PIN is its PIN.
    pub fn open_with_pin(
        module_path: &Path,
        token_label: &str,
        pin: &str,
    ) -> Result<Arc<Token>, HsmError> {
        let digest = pin_digest(pin);
        let key = (module_path.to_path_buf(), token_label.to_string());
        let mut open = open_tokens().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = open
            .get(&key)
            .and_then(Weak::upgrade)
            .filter(|t| !t.is_broken())
        {
            return if aws_lc_rs::constant_time::verify_slices_are_equal(&live.pin_digest, &digest)
                .is_ok()
            {
                Ok(live)
            } else {
                Err(refused(token_label))
            };
        }
        let pin = AuthPin::from(pin.to_string());
        let token = Arc::new(Self::open_new(module_path, token_label, pin, digest)?);
        open.insert(key, Arc::downgrade(&token));
        Ok(token)
    }

    fn open_new(
        module_path: &Path,
        token_label: &str,
        pin: AuthPin,
        pin_digest: [u8; 32],
    ) -> Result<Token, HsmError> {
        let ctx = module(module_path)?;
        let slots = ctx.get_slots_with_token().map_err(|e| {
            HsmError::Unavailable(format!("PKCS#11 module {}: {e}", module_path.display()))
        })?;
        let mut labels = Vec::new();
        let mut found = None;
        for slot in slots {
            let Ok(info) = ctx.get_token_info(slot) else {
                continue;
            };
            if !info.token_initialized() {
                continue;
            }
            let label = info.label().trim_end().to_string();
            if label == token_label {
                found = Some(slot);
                break;
            }
            labels.push(label);
        }
        let slot = found.ok_or_else(|| {
            HsmError::Unavailable(format!(
                "no token labelled '{}' in the PKCS#11 module {} (tokens: {})",
                token_label,
                module_path.display(),
                if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels.join(", ")
                }
            ))
        })?;
        let general_error_is_bad_tag = ctx
            .get_library_info()
            .is_ok_and(|i| i.manufacturer_id().contains("SoftHSM"));
        let token = Token {
            ctx,
            slot,
            label: token_label.to_string(),
            module: module_path.to_path_buf(),
            pin,
            pin_digest,
            login: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
            handles: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            general_error_is_bad_tag,
        };
        let login = token.login_session()?;
        *token.login.lock().unwrap_or_else(|p| p.into_inner()) = Some(login);
        Ok(token)
    }

    /// Whether a failure ended this token's sessions: open it again.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// A session from the pool, or a new one.
    fn session(&self) -> Result<Pooled<'_>, HsmError> {
        let failures = self.failures.load(Ordering::SeqCst);
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => self
                .ctx
                .open_rw_session(self.slot)
                .map_err(|e| self.token_err("open a session", e))?,
        };
        Ok(Pooled {
            token: self,
            session: Some(session),
            failures,
        })
    }

    /// The session that holds the login, the PIN checked. No other live `Token` of this
    /// token exists in the process (`open_with_pin`), so a login already in place is a
    /// leftover of one being dropped: it is ended and this PIN checked anew.
    fn login_session(&self) -> Result<Session, HsmError> {
        let s = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| self.token_err("open a session", e))?;
        let mut r = s.login(UserType::User, Some(&self.pin));
        if let Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) = r {
            let _ = s.logout();
            r = s.login(UserType::User, Some(&self.pin));
        }
        match r {
            Ok(()) => Ok(s),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(refused(&self.label)),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::Login(format!(
                "the user PIN of token '{}' is locked (too many wrong PINs); its security officer must reset it",
                self.label
            ))),
            Err(e) => Err(self.token_err("log in", e)),
        }
    }

    /// A failure: sessions in use are not pooled again, and one that ends the token's
    /// sessions marks it broken.
    fn token_err(&self, what: &str, e: CkError) -> HsmError {
        self.failures.fetch_add(1, Ordering::SeqCst);
        if let CkError::Pkcs11(rv, _) = &e
            && matches!(
                rv,
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::TokenNotPresent
                    | RvError::TokenNotRecognized
                    | RvError::UserNotLoggedIn
                    | RvError::CryptokiNotInitialized
            )
        {
            self.broken.store(true, Ordering::SeqCst);
            self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        HsmError::Token(format!(
            "token '{}' ({}): cannot {what}: {e}",
            self.label,
            self.module.display()
        ))
    }

    fn find_key(&self, s: &Session, key_label: &str) -> Result<Option<ObjectHandle>, HsmError> {
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| self.token_err("search keys", e))?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found[0])),
            n => Err(HsmError::Token(format!(
                "token '{}' has {n} secret keys labelled '{key_label}'; labels must be unique",
                self.label
            ))),
        }
    }

    fn key(&self, s: &Session, key_label: &str) -> Result<ObjectHandle, HsmError> {
        if let Some(h) = self.cached_handle(key_label) {
            return Ok(h);
        }
        let h = self.find_key(s, key_label)?.ok_or_else(|| {
            HsmError::KeyNotFound(format!(
                "token '{}' has no secret key labelled '{key_label}'",
                self.label
            ))
        })?;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_label.to_string(), h);
        Ok(h)
    }

    fn cached_handle(&self, key_label: &str) -> Option<ObjectHandle> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_label)
            .copied()
    }

    fn forget_handle(&self, key_label: &str) {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_label);
    }

    /// Runs `f` with the key's handle; a handle the token no longer knows (the object
    /// was replaced) is looked up again once.
    fn with_key<T>(
        &self,
        s: &Session,
        key_label: &str,
        f: impl Fn(ObjectHandle) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, HsmError> {
        let h = self.key(s, key_label)?;
        match f(h) {
            Err(CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)) => {
                self.forget_handle(key_label);
                let h = self.key(s, key_label)?;
                Ok(f(h))
            }
            r => Ok(r),
        }
    }

    /// Whether a secret key with this label exists.
    pub fn has_key(&self, key_label: &str) -> Result<bool, HsmError> {
        let s = self.session()?;
        Ok(self.find_key(&s, key_label)?.is_some())
    }

    /// Creates a non-extractable AES-256 key in the token (AlreadyExists-like error if
    /// one has the label).
    pub fn create_aes_key(&self, key_label: &str) -> Result<(), HsmError> {
        let s = self.session()?;
        if self.find_key(&s, key_label)?.is_some() {
            return Err(HsmError::Token(format!(
                "token '{}' already has a key labelled '{key_label}'",
                self.label
            )));
        }
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Label(key_label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
            ],
        )
        .map_err(|e| self.token_err("create an AES key", e))?;
        Ok(())
    }

    /// AES-256-GCM under the token's key `key_label`, with `aad`: IV ‖ ciphertext ‖ tag.
    /// The IV comes from the token's random generator.
    pub fn seal(&self, key_label: &str, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let iv: [u8; IV_LEN] = self
            .random(IV_LEN)?
            .as_slice()
            .try_into()
            .expect("IV_LEN bytes");
        let ct = self.encrypt_gcm(key_label, &iv, aad, plaintext)?;
        let mut out = Vec::with_capacity(IV_LEN + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`Token::seal`] produced under the same key and `aad`.
    pub fn open_sealed(
        &self,
        key_label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < IV_LEN + TAG_LEN {
            return Err(HsmError::InvalidCiphertext(
                "the sealed value is too short to be an AES-GCM ciphertext".into(),
            ));
        }
        let iv: [u8; IV_LEN] = sealed[..IV_LEN].try_into().expect("IV_LEN bytes");
        self.decrypt_gcm(key_label, &iv, aad, &sealed[IV_LEN..])
    }

    /// AES-256-GCM encryption in the token: ciphertext ‖ 16-byte tag.
    pub fn encrypt_gcm(
        &self,
        key_label: &str,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let s = self.session()?;
        let (ct, used) = self
            .with_key(&s, key_label, |key| {
                let mut used = *iv;
                let params = GcmParams::new(&mut used, aad, ((TAG_LEN * 8) as u64).into())?;
                let ct = s.encrypt(&Mechanism::AesGcm(params), key, plaintext)?;
                Ok((ct, used))
            })?
            .map_err(|e| self.token_err("encrypt", e))?;
        // A token that picks its own IV (some do in FIPS mode) would make a ciphertext
        // the blob's nonce cannot open.
        if used != *iv {
            return Err(HsmError::Token(format!(
                "token '{}' replaced the AES-GCM IV sealgate gave it (a token that generates its own IVs is not supported)",
                self.label
            )));
        }
        Ok(ct)
    }

    /// AES-256-GCM decryption in the token of ciphertext ‖ tag; a tag that does not
    /// verify is [`HsmError::InvalidCiphertext`].
    pub fn decrypt_gcm(
        &self,
        key_label: &str,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < TAG_LEN {
            return Err(HsmError::InvalidCiphertext(
                "the ciphertext is shorter than an AES-GCM tag".into(),
            ));
        }
        let s = self.session()?;
        let r = self.with_key(&s, key_label, |key| {
            let mut iv = *iv;
            let params = GcmParams::new(&mut iv, aad, ((TAG_LEN * 8) as u64).into())?;
            s.decrypt(&Mechanism::AesGcm(params), key, sealed)
        })?;
        let bad_tag = |rv: &RvError| match rv {
            RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => true,
            RvError::GeneralError => self.general_error_is_bad_tag,
            _ => false,
        };
        match r {
            Ok(pt) => Ok(Zeroizing::new(pt)),
            Err(CkError::Pkcs11(rv, _)) if bad_tag(&rv) => {
                Err(HsmError::InvalidCiphertext(format!(
                    "token '{}' could not authenticate the ciphertext under key '{key_label}' ({rv:?}): it was sealed under another key or changed",
                    self.label
                )))
            }
            Err(e) => Err(self.token_err("decrypt", e)),
        }
    }

    /// `n` random bytes from the token's generator.
    pub fn random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let s = self.session()?;
        let mut out = Zeroizing::new(vec![0u8; n]);
        s.generate_random_slice(&mut out)
            .map_err(|e| self.token_err("generate random bytes", e))?;
        Ok(out)
    }

    /// Destroys the secret key labelled `key_label` (whether it existed).
    pub fn destroy_key(&self, key_label: &str) -> Result<bool, HsmError> {
        let s = self.session()?;
        self.forget_handle(key_label);
        match self.find_key(&s, key_label)? {
            Some(h) => {
                s.destroy_object(h)
                    .map_err(|e| self.token_err("destroy a key", e))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
