//! Key policies (Get/Put/ListKeyPolicies and the lockout safety check), explain / dry
//! run, and the usage counters.

use super::{KeyEntry, Kms};
use crate::kms::access::{Explanation, decide};
use crate::kms::caller::{Caller, Via};
use crate::kms::constraints::{self, PAGE_DEFAULT};
use crate::kms::ops::{Op, check_state};
use crate::kms::policy::{Decision, Policy, RequestFacts};
use crate::kms::usage::UsageReport;
use crate::kms::{EncryptionContext, KmsError};

/// The only key policy name AWS KMS has.
const POLICY_NAME: &str = "default";

fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(POLICY_NAME) => Ok(()),
        Some(n) => Err(KmsError::NotFound(format!(
            "No such policy exists: '{n}' (a KMS key has exactly one policy, named 'default')."
        ))),
    }
}

impl Kms {
    // ------------------------------------------------------------ key policies

    /// Validates a policy for CreateKey/PutKeyPolicy and, unless bypassed, checks that it
    /// still lets `caller` call PutKeyPolicy (the lockout safety check).
    pub(super) fn check_new_policy(
        &self,
        who: Caller<'_>,
        text: &str,
        key_arn: &str,
        bypass: bool,
    ) -> Result<Policy, KmsError> {
        // The model's length and characters, then AWS's 32 KB quota, then the document.
        constraints::length(text.chars().count(), None, "policy", 1, 131_072)?;
        constraints::policy_chars(text)?;
        if text.len() > constraints::MAX_POLICY_BYTES {
            return Err(KmsError::LimitExceeded(format!(
                "The key policy is {} bytes; the limit is {} bytes (32 KB).",
                text.len(),
                constraints::MAX_POLICY_BYTES
            )));
        }
        let policy = Policy::parse(text).map_err(KmsError::MalformedPolicy)?;
        if !bypass {
            let facts = RequestFacts {
                via_service: (who.call.via == Via::S3).then_some(self.inner.via_s3.as_str()),
                source_ip: who.call.source_ip,
                secure_transport: who.call.secure_transport,
                now_ms: Some(self.now_ms()),
                bypass_lockout: Some(false),
                ..RequestFacts::new(who.principal, Op::PutKeyPolicy.action(), key_arn)
            };
            if !matches!(policy.evaluate(&facts), Decision::Allow(_)) {
                return Err(KmsError::MalformedPolicy(format!(
                    "The new key policy will not allow you to update the key policy in the future (it does not allow {} kms:PutKeyPolicy). Set BypassPolicyLockoutSafetyCheck to apply it anyway.",
                    who.principal.arn()
                )));
            }
        }
        Ok(policy)
    }

    /// GetKeyPolicy: the key's policy document.
    pub fn get_key_policy(
        &self,
        who: Caller<'_>,
        key_id: &str,
        policy_name: Option<&str>,
    ) -> Result<String, KmsError> {
        check_policy_name(policy_name)?;
        let e = self.key_for(who, key_id, Op::GetKeyPolicy, false, None, None)?;
        Ok(self.policy_text(&e))
    }

    pub(super) fn policy_text(&self, e: &KeyEntry) -> String {
        e.rec.policy.clone().unwrap_or_else(|| match e.rec.manager {
            crate::kms::model::KeyManager::Aws => crate::kms::policy::service_policy_text(
                &self.inner.account,
                "s3",
                &self.inner.region,
            ),
            crate::kms::model::KeyManager::Customer => {
                crate::kms::policy::default_policy_text(&self.inner.account)
            }
        })
    }

    /// PutKeyPolicy: replaces the key policy (MalformedPolicyDocumentException when it
    /// does not parse, or would lock the caller out and `bypass` is false).
    pub fn put_key_policy(
        &self,
        who: Caller<'_>,
        key_id: &str,
        policy_name: Option<&str>,
        policy: &str,
        bypass_lockout_check: bool,
    ) -> Result<(), KmsError> {
        check_policy_name(policy_name)?;
        self.mutate(who, key_id, Op::PutKeyPolicy, |r, _| {
            let arn = self.key_arn(&r.id);
            self.check_new_policy(who, policy, &arn, bypass_lockout_check)?;
            r.policy = Some(policy.to_string());
            Ok(())
        })
        .map(drop)
    }

    /// ListKeyPolicies: `["default"]`, the only policy a key has. `Limit` is checked as
    /// the model says; a `Marker` (never issued: one page holds the only name) pages past
    /// it (AWS models no InvalidMarkerException for this operation).
    pub fn list_key_policies(
        &self,
        who: Caller<'_>,
        key_id: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Vec<String>, KmsError> {
        PAGE_DEFAULT.size(limit)?;
        if let Some(m) = marker {
            constraints::text(m, "marker", 1, 1024)?;
        }
        self.key_for(who, key_id, Op::ListKeyPolicies, false, None, None)?;
        Ok(match marker {
            None => vec![POLICY_NAME.to_string()],
            Some(_) => Vec::new(),
        })
    }

    // ------------------------------------------------------------ explain / dry run

    /// Why `caller` may or may not perform `action` (`kms:Decrypt` or `Decrypt`) on a key
    /// with encryption context `ctx`, arriving as `call`: names the deciding key policy
    /// statement (index and Sid) or grant. Also reports a key state that would refuse
    /// the operation. Reads only; not audited, not counted.
    pub fn explain(
        &self,
        who: Caller<'_>,
        action: &str,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<Explanation, KmsError> {
        // `kms:Decrypt` from `Decrypt` or `kms:decrypt`.
        let op = Op::from_action(action);
        let action = match op {
            Some(op) => op.action().to_string(),
            None => format!("kms:{}", action.split_once(':').map_or(action, |(_, a)| a)),
        };
        let e = self.maintain(self.find(key_id, true)?, None)?;
        let facts = self.facts(who, &action, &e, Some(ctx));
        let d = decide(&e.policy, &e.grants, &facts);
        let state_error = op
            .and_then(|op| check_state(&e.rec, &e.arn, op).err())
            .map(|err| err.to_string());
        Ok(Explanation {
            allowed: d.allowed(),
            principal_arn: who.principal.arn(),
            action,
            key_arn: e.arn.clone(),
            reason: d.reason(&e.policy, &e.grants),
            state_error,
        })
    }

    /// The outcome of a `DryRun: true` request for `op`: DryRunOperationException (with
    /// the explanation) if it would have been allowed in the key's state; otherwise the
    /// error the real call would get.
    pub fn dry_run(
        &self,
        who: Caller<'_>,
        op: Op,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> KmsError {
        let e = match self.find(key_id, true).and_then(|e| self.maintain(e, None)) {
            Ok(e) => e,
            Err(err) => return err,
        };
        if let Err(err) = super::gate::check_grant_tokens(who) {
            return err;
        }
        let facts = self.facts(who, op.action(), &e, Some(ctx));
        let d = decide(&e.policy, &e.grants, &facts);
        let x = Explanation {
            allowed: d.allowed(),
            principal_arn: who.principal.arn(),
            action: op.action().to_string(),
            key_arn: e.arn.clone(),
            reason: d.reason(&e.policy, &e.grants),
            state_error: None,
        };
        if !d.allowed() {
            return KmsError::AccessDenied(format!("{} ({x})", d.denial(&facts, &e.policy)));
        }
        if let Err(err) = check_state(&e.rec, &e.arn, op) {
            return err;
        }
        if let Err(err) = crate::kms::asym::check_usage(e.rec.key_spec, e.rec.key_usage, &e.arn, op)
        {
            return err;
        }
        KmsError::DryRunOperation(format!(
            "The request would have succeeded, but the DryRun option is set. {x}"
        ))
    }

    // ------------------------------------------------------------ usage

    /// Per-key usage since sealgate started: successful calls by operation and the last
    /// use (a GetKeyLastUsage-style view; needs kms:DescribeKey).
    pub fn key_usage(&self, who: Caller<'_>, key_id: &str) -> Result<UsageReport, KmsError> {
        let e = self.find(key_id, true)?;
        self.authorize(who, Op::DescribeKey.action(), &e, None)?;
        Ok(e.usage.report(e.arn.clone()))
    }
}
