//! Client identities: sealgate's own access keys, each mapped to a named principal.
//!
//! Invariants: secret keys never appear in `Debug` output or logs; lookups compare
//! access key ids only (the secret is used to verify signatures, never compared as text).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// Who is making a request. Every S3 and KMS call acts as exactly one principal.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Short name from the config (`alice`), used in logs and audit events.
    pub name: String,
    /// 12-digit account id the principal belongs to.
    pub account: String,
    /// Whether this principal is the account root/admin (full KMS access under the default key policy).
    pub is_root: bool,
}

impl Principal {
    /// ARN in AWS IAM style: `arn:aws:iam::ACCOUNT:root` or `arn:aws:iam::ACCOUNT:user/NAME`.
    pub fn arn(&self) -> String {
        if self.is_root {
            format!("arn:aws:iam::{}:root", self.account)
        } else {
            format!("arn:aws:iam::{}:user/{}", self.account, self.name)
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.arn())
    }
}

/// One configured access key: the secret plus the principal it authenticates as.
#[derive(Clone)]
pub struct AccessKey {
    pub secret: Arc<Zeroizing<String>>,
    pub principal: Principal,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("secret", &"<redacted>")
            .field("principal", &self.principal)
            .finish()
    }
}

/// The table of access keys sealgate accepts from clients (S3 and KMS API alike).
#[derive(Clone, Default, Debug)]
pub struct AccessKeys {
    keys: Arc<HashMap<String, AccessKey>>,
}

impl AccessKeys {
    pub fn new(keys: HashMap<String, AccessKey>) -> Self {
        Self {
            keys: Arc::new(keys),
        }
    }

    /// The key with this access key id, if configured.
    pub fn get(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.keys.get(access_key_id)
    }

    /// The principal behind an access key id.
    pub fn principal(&self, access_key_id: &str) -> Option<&Principal> {
        self.keys.get(access_key_id).map(|k| &k.principal)
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for AccessKeys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.keys.get(access_key) {
            Some(k) => Ok(s3s::auth::SecretKey::from(k.secret.as_str())),
            None => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let k = AccessKey {
            secret: Arc::new(Zeroizing::new("supersecretvalue".into())),
            principal: Principal {
                name: "alice".into(),
                account: "111122223333".into(),
                is_root: false,
            },
        };
        let keys = AccessKeys::new(HashMap::from([("AKIDALICE".to_string(), k)]));
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains("supersecretvalue"), "{dbg}");
        assert!(dbg.contains("arn:aws:iam::111122223333:user/alice"));
    }
}
