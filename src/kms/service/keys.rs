//! Key management: CreateKey, the service-managed keys, DescribeKey, ListKeys,
//! descriptions, tags, enable/disable and the deletion window.

use std::sync::Arc;

use uuid::Uuid;

use super::{KeyEntry, Kms, Page, key_arn, multi_region, paginate};
use crate::kms::KmsError;
use crate::kms::caller::Caller;
use crate::kms::constraints::{self, PAGE_DEFAULT, PAGE_TAGS};

use crate::kms::asym::{KeySpec, KeyUsageType};
use crate::kms::clock::DAY_MS;
use crate::kms::model::{KeyManager, KeyMetadata, KeyState, display_key_id};
use crate::kms::ops::Op;
use crate::kms::policy::{default_policy_text, service_policy_text};

/// What `CreateKey` accepts beyond defaults.
#[derive(Debug, Clone, Default)]
pub struct CreateKeyOptions {
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// `EXTERNAL` creates a key in PendingImport without material.
    pub external: bool,
    /// Key policy document; `None` = the default policy (account has full access).
    pub policy: Option<String>,
    /// Skip the check that the policy still lets the creator call PutKeyPolicy.
    pub bypass_policy_lockout_safety_check: bool,
    /// SYMMETRIC_DEFAULT (default), RSA, ECC or HMAC.
    pub key_spec: KeySpec,
    /// Must be one `key_spec` supports (ENCRYPT_DECRYPT by default).
    pub key_usage: KeyUsageType,
    /// A multi-Region primary key (`mrk-` id) that ReplicateKey can copy to other regions.
    pub multi_region: bool,
    /// Create the key in this custom key store's token (Origin AWS_CLOUDHSM).
    pub custom_key_store_id: Option<String>,
}

/// A request's `Tags` as AWS checks them: the model's lengths (ValidationException at
/// `tags.N.member.tagKey`), then TagException for AWS's reserved `aws:` prefix and for
/// keys repeated in one request.
pub(super) fn validate_tags(tags: &[(String, String)]) -> Result<(), KmsError> {
    for (i, (k, v)) in tags.iter().enumerate() {
        let at = |m: &str| format!("tags.{}.member.{m}", i + 1);
        constraints::text(k, &at("tagKey"), 1, constraints::MAX_TAG_KEY)?;
        constraints::text(v, &at("tagValue"), 0, constraints::MAX_TAG_VALUE)?;
    }
    if tags
        .iter()
        .any(|(k, _)| k.to_ascii_lowercase().starts_with("aws:"))
    {
        return Err(KmsError::Tag(
            "Tags beginning with aws: are reserved".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if !tags.iter().all(|(k, _)| seen.insert(k.as_str())) {
        return Err(KmsError::Tag("Duplicate tag keys".into()));
    }
    Ok(())
}

/// The tag quota: at most 50 on a key (AWS answers TagException, not LimitExceeded).
pub(super) fn check_tag_count(n: usize) -> Result<(), KmsError> {
    if n > constraints::MAX_TAGS_PER_KEY {
        return Err(KmsError::Tag("Too many tags".into()));
    }
    Ok(())
}

pub(super) fn validate_description(d: &str) -> Result<(), KmsError> {
    constraints::text(d, "description", 0, constraints::MAX_DESCRIPTION)
}

impl Kms {
    pub fn create_key(
        &self,
        who: Caller<'_>,
        opts: &CreateKeyOptions,
    ) -> Result<KeyMetadata, KmsError> {
        self.authorize_account(who, Op::CreateKey)?;
        validate_description(&opts.description)?;
        opts.key_spec.check_usage(opts.key_usage)?;
        if opts.external && !opts.key_spec.is_symmetric() {
            return Err(KmsError::UnsupportedOperation(format!(
                "Origin EXTERNAL is supported only for SYMMETRIC_DEFAULT keys, not {}.",
                opts.key_spec
            )));
        }
        validate_tags(&opts.tags)?;
        check_tag_count(opts.tags.len())?;
        if opts.multi_region && opts.external {
            return Err(KmsError::UnsupportedOperation(
                "Multi-Region keys with imported key material (Origin EXTERNAL) are not supported by sealgate's KMS.".into(),
            ));
        }
        if let Some(store) = &opts.custom_key_store_id {
            self.check_new_key_in_store(store, opts)?;
        }
        let id = if opts.multi_region {
            multi_region::new_mrk_id()?
        } else {
            Uuid::new_v4()
        };
        let mut opts = opts.clone();
        let text = opts
            .policy
            .take()
            .unwrap_or_else(|| default_policy_text(&self.inner.account));
        let key_id = display_key_id(&id, opts.multi_region);
        self.check_new_policy(
            who,
            &text,
            &key_arn(&self.region, &self.inner.account, &key_id),
            opts.bypass_policy_lockout_safety_check,
        )?;
        opts.policy = Some(text);
        self.check_key_quota(who)?;
        self.throttle(who, super::quota::key_cost(opts.key_spec))?;
        let g = self.lock_writer()?;
        let e = self.new_key_locked(
            &g,
            id,
            &opts,
            KeyManager::Customer,
            None,
            Some(who.principal),
        )?;
        Ok(self.metadata(&e))
    }

    /// The ARN of the service-managed key behind `alias` (`alias/aws/s3`), created on
    /// first use.
    pub fn service_managed_key(&self, alias: &str) -> Result<String, KmsError> {
        let service = alias
            .strip_prefix("alias/aws/")
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let Some(service) = service else {
            return Err(KmsError::Validation(format!(
                "'{alias}' is not a service-managed alias (expected alias/aws/<service>)"
            )));
        };
        if let Ok(e) = self.find(alias, true) {
            return Ok(e.arn.clone());
        }
        let g = self.lock_writer()?;
        if let Ok(e) = self.find(alias, true) {
            return Ok(e.arn.clone());
        }
        let opts = CreateKeyOptions {
            description: format!(
                "Default key that protects my {service} data when no other key is defined"
            ),
            policy: Some(service_policy_text(
                &self.inner.account,
                service,
                &self.inner.region,
            )),
            ..Default::default()
        };
        let e = self.new_key_locked(
            &g,
            Uuid::new_v4(),
            &opts,
            KeyManager::Aws,
            Some(alias),
            None,
        )?;
        tracing::info!(key_id = %e.rec.id, alias, "created service-managed KMS key");
        self.audit_service_key_created(&e.arn, alias);
        Ok(e.arn.clone())
    }

    pub fn describe_key(&self, who: Caller<'_>, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let e = self.key_for(who, key_id, Op::DescribeKey, true, None, None)?;
        Ok(self.metadata(&e))
    }

    /// ListKeys: (key id, key ARN) pairs ordered by key id.
    pub fn list_keys(
        &self,
        who: Caller<'_>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<(String, String)>, KmsError> {
        self.authorize_account(who, Op::ListKeys)?;
        let now = self.now_ms();
        let entries: Vec<Arc<KeyEntry>> = self.state().keys.values().cloned().collect();
        let mut keys: Vec<(String, String)> = entries
            .iter()
            .filter(|e| !e.rec.deletion_due(now) || self.waits_for_replicas(&e.rec))
            .map(|e| (e.rec.key_id(), e.arn.clone()))
            .collect();
        keys.sort();
        paginate(
            keys.into_iter().map(|k| (k.0.clone(), k)),
            PAGE_DEFAULT,
            limit,
            marker,
        )
    }

    pub fn update_key_description(
        &self,
        who: Caller<'_>,
        key_id: &str,
        description: &str,
    ) -> Result<(), KmsError> {
        validate_description(description)?;
        self.mutate(who, key_id, Op::UpdateKeyDescription, |r, _| {
            r.description = description.to_string();
            Ok(())
        })
        .map(drop)
    }

    pub fn tag_resource(
        &self,
        who: Caller<'_>,
        key_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), KmsError> {
        validate_tags(tags)?;
        self.mutate(who, key_id, Op::TagResource, |r, _| {
            r.tags.extend(tags.iter().cloned());
            check_tag_count(r.tags.len())
        })
        .map(drop)
    }

    pub fn untag_resource(
        &self,
        who: Caller<'_>,
        key_id: &str,
        tag_keys: &[String],
    ) -> Result<(), KmsError> {
        for (i, k) in tag_keys.iter().enumerate() {
            let at = format!("tagKeys.{}.member", i + 1);
            constraints::text(k, &at, 1, constraints::MAX_TAG_KEY)?;
        }
        self.mutate(who, key_id, Op::UntagResource, |r, _| {
            for k in tag_keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .map(drop)
    }

    pub fn list_resource_tags(
        &self,
        who: Caller<'_>,
        key_id: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<(String, String)>, KmsError> {
        let e = self.key_for(who, key_id, Op::ListResourceTags, false, None, None)?;
        paginate(
            e.rec
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), (k.clone(), v.clone()))),
            PAGE_TAGS,
            limit,
            marker,
        )
    }

    pub fn enable_key(&self, who: Caller<'_>, key_id: &str) -> Result<(), KmsError> {
        self.mutate(who, key_id, Op::EnableKey, |r, _| {
            r.state = KeyState::Enabled;
            Ok(())
        })
        .map(drop)
    }

    pub fn disable_key(&self, who: Caller<'_>, key_id: &str) -> Result<(), KmsError> {
        self.mutate(who, key_id, Op::DisableKey, |r, _| {
            r.state = KeyState::Disabled;
            Ok(())
        })
        .map(drop)
    }

    /// Returns (key ARN, deletion time in ms, window in days).
    pub fn schedule_key_deletion(
        &self,
        who: Caller<'_>,
        key_id: &str,
        pending_window_days: Option<i64>,
    ) -> Result<(String, i64, u32), KmsError> {
        let days = pending_window_days.unwrap_or(30);
        // The model allows 1..365; the documented (and enforced) window is 7..30.
        constraints::range(days, "pendingWindowInDays", 7, 30)?;
        let days = days as u32;
        let e = self.mutate(who, key_id, Op::ScheduleKeyDeletion, |r, now| {
            r.state = KeyState::PendingDeletion;
            r.deletion_ms = Some(now + i64::from(days) * DAY_MS);
            r.pending_window_days = Some(days);
            Ok(())
        })?;
        Ok((e.arn.clone(), e.rec.deletion_ms.unwrap_or_default(), days))
    }

    /// Back to Disabled (or PendingImport for an external key without material).
    pub fn cancel_key_deletion(&self, who: Caller<'_>, key_id: &str) -> Result<String, KmsError> {
        let e = self.mutate(who, key_id, Op::CancelKeyDeletion, |r, _| {
            r.state = if r.versions.is_empty() {
                KeyState::PendingImport
            } else {
                KeyState::Disabled
            };
            r.deletion_ms = None;
            r.pending_window_days = None;
            Ok(())
        })?;
        Ok(e.arn.clone())
    }
}
