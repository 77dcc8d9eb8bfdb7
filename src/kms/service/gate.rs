//! The gate of every key operation: resolving a key reference (id, `mrk-` id, ARN,
//! alias), due maintenance (expired deletion windows, rotations, material expiry), the
//! one policy hook and the state and key-usage checks.

use std::sync::Arc;

use super::{KeyEntry, KeyRef, Kms, WriteGuard, key_arn, parse_key_id, policy_of};
use crate::kms::access::decide;
use crate::kms::caller::{Caller, Via};
use crate::kms::model::{KeyRecord, RotationType, display_key_id};
use crate::kms::ops::{Op, check_state};
use crate::kms::policy::{Policy, RequestFacts};
use crate::kms::{EncryptionContext, KmsError, asym, constraints};

/// Where a dry run stops: after every check, before the first change (or expensive
/// generation). The API turns this into AWS's DryRunOperationException answer.
pub(super) fn stop_if_dry_run(who: Caller<'_>) -> Result<(), KmsError> {
    if who.call.dry_run {
        return Err(KmsError::DryRunOperation(
            "The request would have succeeded, but the DryRun option is set.".into(),
        ));
    }
    Ok(())
}

/// The request's `GrantTokens`: at most 10 of 1..=8192 characters (ValidationException),
/// each one sealgate issued (InvalidGrantTokenException). Grants take effect at once, so
/// a valid token adds nothing beyond being checked.
pub(super) fn check_grant_tokens(who: Caller<'_>) -> Result<(), KmsError> {
    constraints::grant_tokens(&who.call.grant_tokens)?;
    for t in &who.call.grant_tokens {
        crate::kms::grants::parse_token(t)?;
    }
    Ok(())
}

impl Kms {
    /// THE access-control hook: every operation on a key calls this exactly once per key.
    /// The key policy decides (explicit Deny wins, then Allow); with no decision, a grant
    /// on the key may allow; otherwise AccessDeniedException naming principal, action
    /// and key.
    pub fn authorize(
        &self,
        who: Caller<'_>,
        action: &str,
        key: &KeyEntry,
        context: Option<&EncryptionContext>,
    ) -> Result<(), KmsError> {
        let facts = self.facts(who, action, key, context);
        let d = decide(&key.policy, &key.grants, &facts);
        if d.allowed() {
            Ok(())
        } else {
            Err(d.denial(&facts, &key.policy))
        }
    }

    /// The request facts policy conditions see.
    pub(super) fn facts<'a>(
        &'a self,
        who: Caller<'a>,
        action: &'a str,
        key: &'a KeyEntry,
        context: Option<&'a EncryptionContext>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            encryption_context: context,
            via_service: (who.call.via == Via::S3).then_some(self.inner.via_s3.as_str()),
            source_ip: who.call.source_ip,
            secure_transport: who.call.secure_transport,
            now_ms: Some(self.now_ms()),
            tags: Some(&key.rec.tags),
            ..RequestFacts::new(who.principal, action, &key.arn)
        }
    }

    /// Account-level check for operations without a key (CreateKey, ListKeys, ...).
    pub(super) fn authorize_account(&self, who: Caller<'_>, op: Op) -> Result<(), KmsError> {
        if who.principal.account != self.inner.account {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {} in account {}",
                who.principal.arn(),
                op.action(),
                self.inner.account
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- resolution

    pub(super) fn parse_key_ref(&self, s: &str, allow_alias: bool) -> Result<KeyRef, KmsError> {
        constraints::text(s, "keyId", 1, 2048)?;
        let not_found = || KmsError::NotFound(format!("Invalid keyId '{s}'"));
        let alias = |name: &str| {
            if allow_alias {
                Ok(KeyRef::Alias(name.to_string()))
            } else {
                Err(KmsError::NotFound(format!(
                    "'{s}' is an alias; this operation needs a key id or key ARN."
                )))
            }
        };
        if s.starts_with("alias/") {
            return alias(s);
        }
        if let Some(rest) = s.strip_prefix("arn:aws:kms:") {
            let mut parts = rest.splitn(3, ':');
            let (region, account, resource) = match (parts.next(), parts.next(), parts.next()) {
                (Some(r), Some(a), Some(res)) => (r, a, res),
                _ => return Err(not_found()),
            };
            if region != &*self.region || account != self.inner.account {
                return Err(KmsError::NotFound(format!(
                    "Key '{s}' does not exist in region {} account {}.",
                    self.region, self.inner.account
                )));
            }
            if resource.starts_with("alias/") {
                return alias(resource);
            }
            let id = resource.strip_prefix("key/").ok_or_else(not_found)?;
            return parse_key_id(id).ok_or_else(not_found);
        }
        parse_key_id(s).ok_or_else(not_found)
    }

    /// Finds a key (no maintenance, no checks). With a shared store, a key or alias not
    /// in memory is looked for again after reading the store's latest changes: a key
    /// created through another instance is usable at once (read-your-writes through a
    /// load balancer), not only after the watcher's next round.
    pub(super) fn find(&self, s: &str, allow_alias: bool) -> Result<Arc<KeyEntry>, KmsError> {
        self.check_fresh()?;
        match self.find_in_memory(s, allow_alias) {
            Err(KmsError::NotFound(_)) if self.refresh_unless_writing()? => {
                self.find_in_memory(s, allow_alias)
            }
            found => found,
        }
    }

    fn find_in_memory(&self, s: &str, allow_alias: bool) -> Result<Arc<KeyEntry>, KmsError> {
        let r = self.parse_key_ref(s, allow_alias)?;
        let st = self.state();
        let (id, mrk) = match r {
            KeyRef::Id(id) => (id, false),
            KeyRef::Mrk(id) => (id, true),
            KeyRef::Alias(name) => (
                st.aliases
                    .get(&name)
                    .ok_or_else(|| {
                        KmsError::NotFound(format!("Alias {} is not found.", self.alias_arn(&name)))
                    })?
                    .target,
                false,
            ),
        };
        // An `mrk-` reference names only a multi-Region key (the UUID spelling of the
        // same 128 bits is what blobs and grant tokens carry, so it finds both).
        st.keys
            .get(&id)
            .filter(|e| !mrk || e.rec.multi_region.is_some())
            .cloned()
            .ok_or_else(|| {
                let arn = key_arn(&self.region, &self.inner.account, &display_key_id(&id, mrk));
                KmsError::NotFound(format!("Key '{arn}' does not exist"))
            })
    }

    /// Applies due maintenance to a key found by `find`: an expired PendingDeletion key is
    /// destroyed (and reported NotFound); a key due for automatic rotation is rotated.
    pub(super) fn maintain(
        &self,
        e: Arc<KeyEntry>,
        held: Option<&WriteGuard<'_>>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        if !e.rec.deletion_due(now) && !e.rec.rotation_due(now) && !e.rec.material_expiry_due(now) {
            return Ok(e);
        }
        let own;
        let guard = match held {
            Some(g) => g,
            None => {
                own = self.lock_writer()?;
                &own
            }
        };
        // Re-read under the writer lock: another thread may have done it already.
        let e = self.find(&e.rec.id.to_string(), false)?;
        if e.rec.deletion_due(now) && !self.waits_for_replicas(&e.rec) {
            self.destroy_locked(guard, e.rec.id)?;
            return Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                e.arn
            )));
        }
        if e.rec.material_expiry_due(now) {
            return self.drop_material_locked(guard, &e);
        }
        if e.rec.rotation_due(now) {
            return self.rotate_locked(guard, &e, RotationType::Automatic);
        }
        Ok(e)
    }

    /// Resolve + policy hook + state table: the gate of every key operation. Counts the
    /// use when it passes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn key_for(
        &self,
        who: Caller<'_>,
        key_id: &str,
        op: Op,
        allow_alias: bool,
        ctx: Option<&EncryptionContext>,
        held: Option<&WriteGuard<'_>>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        check_grant_tokens(who)?;
        let e = self.maintain(self.find(key_id, allow_alias)?, held)?;
        self.authorize(who, op.action(), &e, ctx)?;
        // A key whose custom key store is not connected is Unavailable, whatever its
        // stored state.
        self.check_custom_key_store(&e, op)?;
        check_state(&e.rec, &e.arn, op)?;
        asym::check_usage(e.rec.key_spec, e.rec.key_usage, &e.arn, op)?;
        if !who.call.dry_run {
            e.usage.count(op, self.now_ms());
        }
        Ok(e)
    }

    /// The parsed policy for a record (its own, or the default for old records).
    pub(super) fn policy_for(&self, rec: &KeyRecord) -> Result<Arc<Policy>, KmsError> {
        policy_of(
            rec,
            &self.inner.account,
            &self.inner.region,
            &self.inner.default_policy,
        )
    }

    /// A new snapshot of `e` with record `rec` (re-parsing the policy only if it changed).
    pub(super) fn rebuild(&self, e: &KeyEntry, rec: KeyRecord) -> Result<Arc<KeyEntry>, KmsError> {
        let policy = if rec.policy == e.rec.policy {
            e.policy.clone()
        } else {
            self.policy_for(&rec)?
        };
        Ok(e.with_record(rec, policy))
    }
}
