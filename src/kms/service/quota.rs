//! The KMS's key quotas and per-principal generation rate: AWS's resource quota of
//! customer managed keys per account and Region (and optionally per principal), and a
//! rate of RSA key generations per principal weighted by cost (an RSA_4096 generation
//! takes up to a second of CPU; CreateKey, GenerateDataKeyPair and
//! GetParametersForImport generate them). Exceeding a quota is LimitExceededException;
//! exceeding the rate is ThrottlingException, which AWS SDKs retry with backoff.
//!
//! Invariant: the buckets run on the KMS's clock (tests advance it), refill continuously
//! and hold at most their burst; a refused request takes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Principal;
use crate::kms::asym::KeySpec;
use crate::kms::caller::Caller;
use crate::kms::import::WrappingKeySpec;
use crate::kms::model::KeyManager;
use crate::kms::{KmsConfig, KmsError};

/// Cost of generating an RSA key of `bits`, in RSA_2048 generations (roughly their CPU
/// time): 1, 4, 10. Other key kinds cost nothing here.
fn rsa_cost(bits: u32) -> u32 {
    match bits {
        2048 => 1,
        3072 => 4,
        _ => 10,
    }
}

/// The generation cost of a key of `spec`.
pub(super) fn key_cost(spec: KeySpec) -> u32 {
    match spec {
        KeySpec::Rsa2048 => rsa_cost(2048),
        KeySpec::Rsa3072 => rsa_cost(3072),
        KeySpec::Rsa4096 => rsa_cost(4096),
        _ => 0,
    }
}

/// The generation cost of an import wrapping key of `spec`.
pub(super) fn wrapping_cost(spec: WrappingKeySpec) -> u32 {
    match spec {
        WrappingKeySpec::Rsa2048 => rsa_cost(2048),
        WrappingKeySpec::Rsa3072 => rsa_cost(3072),
        WrappingKeySpec::Rsa4096 => rsa_cost(4096),
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    /// Takes `cost` tokens if there are that many after refilling at `rate` per second
    /// up to `burst`.
    fn take(&mut self, now_ms: i64, rate: u32, burst: u32, cost: u32) -> bool {
        let elapsed = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.at_ms = now_ms;
        if self.tokens + 1e-9 >= f64::from(cost) {
            self.tokens -= f64::from(cost);
            true
        } else {
            false
        }
    }
}

/// The limits, from the config, and the per-principal buckets of RSA units.
#[derive(Debug)]
pub(super) struct Limits {
    pub(super) max_keys: usize,
    pub(super) max_keys_per_principal: usize,
    rsa_rate: u32,
    rsa_burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limits {
    pub(super) fn new(cfg: &KmsConfig) -> Self {
        Limits {
            max_keys: cfg.max_keys,
            max_keys_per_principal: cfg.max_keys_per_principal,
            rsa_rate: cfg.rsa_generation_rate,
            rsa_burst: cfg.rsa_generation_burst,
            buckets: Mutex::default(),
        }
    }

    /// Takes `rsa_cost` RSA generation units from `who`'s bucket (nothing if refused).
    pub(super) fn take(&self, who: &Principal, now_ms: i64, rsa_cost: u32) -> Result<(), KmsError> {
        if rsa_cost == 0 {
            return Ok(());
        }
        let mut all = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = all.entry(who.arn()).or_insert(Bucket {
            tokens: f64::from(self.rsa_burst),
            at_ms: now_ms,
        });
        if b.take(now_ms, self.rsa_rate, self.rsa_burst, rsa_cost) {
            Ok(())
        } else {
            Err(KmsError::Throttling(format!(
                "Rate exceeded: {} has used up its rate of RSA key generations ({} RSA_2048 units per second, RSA_4096 = 10); retry later.",
                who.arn(),
                self.rsa_rate
            )))
        }
    }
}

impl super::Kms {
    /// The key quotas (this view's region): LimitExceededException when the account, or
    /// the caller, already has as many customer managed keys as allowed.
    pub(super) fn check_key_quota(&self, who: Caller<'_>) -> Result<(), KmsError> {
        let limits = &self.inner.limits;
        let me = who.principal.arn();
        let (total, mine) = {
            let st = self.state();
            st.keys
                .values()
                .filter(|e| e.rec.manager == KeyManager::Customer)
                .fold((0, 0), |(t, m), e| {
                    (
                        t + 1,
                        m + usize::from(e.rec.created_by.as_deref() == Some(&me)),
                    )
                })
        };
        if total >= limits.max_keys {
            return Err(KmsError::LimitExceeded(format!(
                "The account already has {total} customer managed KMS keys in {}, its quota of {}.",
                self.region, limits.max_keys
            )));
        }
        if mine >= limits.max_keys_per_principal {
            return Err(KmsError::LimitExceeded(format!(
                "{me} already created {mine} KMS keys in {}, the quota of keys per principal ({}).",
                self.region, limits.max_keys_per_principal
            )));
        }
        Ok(())
    }

    /// Charges `who` `rsa_cost` RSA generation units: ThrottlingException when its rate
    /// is exceeded.
    pub(super) fn throttle(&self, who: Caller<'_>, rsa_cost: u32) -> Result<(), KmsError> {
        self.inner
            .limits
            .take(who.principal, self.now_ms(), rsa_cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str) -> Principal {
        Principal {
            name: name.into(),
            account: "000000000000".into(),
            is_root: false,
        }
    }

    #[test]
    fn rsa_units_refill_per_principal_and_refusals_take_nothing() {
        let cfg = KmsConfig {
            rsa_generation_burst: 20,
            ..KmsConfig::default()
        };
        let l = Limits::new(&cfg);
        let (alice, bob) = (who("alice"), who("bob"));
        assert_eq!(key_cost(KeySpec::Rsa4096), 10);
        assert_eq!(key_cost(KeySpec::Rsa3072), 4);
        assert_eq!(key_cost(KeySpec::EccNistP256), 0);
        l.take(&alice, 0, 10).unwrap();
        l.take(&alice, 0, 10).unwrap();
        let e = l.take(&alice, 0, 1).unwrap_err();
        assert_eq!(e.aws_type(), "ThrottlingException");
        l.take(&bob, 0, 10).unwrap(); // his own bucket
        l.take(&alice, 0, 0).unwrap(); // no RSA: no charge
        l.take(&alice, 100, 1).unwrap(); // 10 units per second
        assert!(l.take(&alice, 100, 1).is_err());
        assert!(l.take(&alice, 1000, 10).is_err(), "0.9 s gives 9 units");
        l.take(&alice, 1100, 10).unwrap();
    }
}
