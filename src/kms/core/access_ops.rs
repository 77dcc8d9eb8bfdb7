//! Key policies, grants, explain / dry run, usage counters and audit plumbing of `Kms`.
//! (A child of `core` so it shares the in-memory state and the writer lock.)

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use super::{KeyEntry, Kms, Page, WriteGuard, paginate};
use crate::auth::Principal;
use crate::kms::access::{CallContext, Decided, Explanation, Via, ambient, decide};
use crate::kms::audit::{AuditEvent, AuditHead, CryptoParams, Params};
use crate::kms::grants::{self, Grant, GrantRequest, MAX_GRANTS_PER_KEY};
use crate::kms::model::{Op, check_state};
use crate::kms::policy::{Decision, GrantFacts, Policy, RequestFacts};
use crate::kms::store::Mutation;
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

/// `kms:Decrypt` from `Decrypt` or `kms:decrypt`.
fn normalise_action(action: &str) -> String {
    let bare = action
        .split_once(':')
        .map_or(action, |(_, rest)| rest)
        .to_string();
    Op::ALL
        .iter()
        .map(|o| o.action())
        .find(|a| a[4..].eq_ignore_ascii_case(&bare))
        .map_or_else(|| format!("kms:{bare}"), str::to_string)
}

impl Kms {
    // ------------------------------------------------------------ key policies

    /// Validates a policy for CreateKey/PutKeyPolicy and, unless bypassed, checks that it
    /// still lets `caller` call PutKeyPolicy (the lockout safety check).
    pub(super) fn check_new_policy(
        &self,
        caller: &Principal,
        call: &CallContext,
        text: &str,
        key_arn: &str,
        bypass: bool,
    ) -> Result<Policy, KmsError> {
        let policy = Policy::parse(text).map_err(KmsError::MalformedPolicy)?;
        if !bypass {
            let facts = RequestFacts {
                via_service: (call.via == Via::S3).then_some(self.inner.via_s3.as_str()),
                source_ip: call.source_ip,
                bypass_lockout: Some(false),
                ..RequestFacts::new(caller, "kms:PutKeyPolicy", key_arn)
            };
            if !matches!(policy.evaluate(&facts), Decision::Allow(_)) {
                return Err(KmsError::MalformedPolicy(format!(
                    "The new key policy will not allow you to update the key policy in the future (it does not allow {} kms:PutKeyPolicy). Set BypassPolicyLockoutSafetyCheck to apply it anyway.",
                    caller.arn()
                )));
            }
        }
        Ok(policy)
    }

    /// GetKeyPolicy: the key's policy document.
    pub fn get_key_policy(
        &self,
        caller: &Principal,
        key_id: &str,
        policy_name: Option<&str>,
    ) -> Result<String, KmsError> {
        check_policy_name(policy_name)?;
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::GetKeyPolicy,
            false,
            None,
            None,
        )?;
        Ok(self.policy_text(&e))
    }

    fn policy_text(&self, e: &KeyEntry) -> String {
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
        caller: &Principal,
        key_id: &str,
        policy_name: Option<&str>,
        policy: &str,
        bypass_lockout_check: bool,
    ) -> Result<(), KmsError> {
        check_policy_name(policy_name)?;
        let call = ambient();
        self.mutate(caller, key_id, Op::PutKeyPolicy, |r, _| {
            let arn = self.key_arn(&r.id);
            self.check_new_policy(caller, &call, policy, &arn, bypass_lockout_check)?;
            r.policy = Some(policy.to_string());
            Ok(())
        })
        .map(drop)
    }

    /// ListKeyPolicies: always `["default"]`.
    pub fn list_key_policies(
        &self,
        caller: &Principal,
        key_id: &str,
    ) -> Result<Vec<String>, KmsError> {
        self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::ListKeyPolicies,
            false,
            None,
            None,
        )?;
        Ok(vec![POLICY_NAME.to_string()])
    }

    // ------------------------------------------------------------ grants

    /// CreateGrant: returns (grant id, grant token). A second request with the same Name
    /// and the same parameters returns the existing grant.
    pub fn create_grant(
        &self,
        caller: &Principal,
        key_id: &str,
        req: &GrantRequest,
    ) -> Result<(String, String), KmsError> {
        let call = ambient();
        grants::validate(req)?;
        for t in &call.grant_tokens {
            grants::parse_token(t)?;
        }
        let g = self.lock_writer();
        let e = self.maintain(self.find(key_id, false)?, Some(&g))?;
        let facts = RequestFacts {
            grant: Some(GrantFacts {
                operations: &req.operations,
                grantee: &req.grantee_principal,
                retiring: req.retiring_principal.as_deref(),
            }),
            ..self.facts(caller, "kms:CreateGrant", &e, None, &call)
        };
        let d = decide(&e.policy, &e.grants, &facts);
        if !d.allowed() {
            return Err(d.denial(&facts, &e.policy));
        }
        if let Decided::Grant(i) = d {
            // A grant with CreateGrant can only pass on what it has, as strictly.
            let parent = &e.grants[i];
            let subset = req.operations.iter().all(|o| parent.operations.contains(o));
            let strict = parent.constraints.is_none() || parent.constraints == req.constraints;
            if !subset || !strict {
                return Err(KmsError::AccessDenied(format!(
                    "User: {} is not authorized to perform: kms:CreateGrant on resource: {}: grant {} only permits creating grants for a subset of its operations with the same constraints",
                    caller.arn(),
                    e.arn,
                    parent.grant_id
                )));
            }
        }
        check_state(&e.rec, &e.arn, Op::CreateGrant)?;
        e.usage.count(Op::CreateGrant, self.now_ms());
        if let Some(name) = &req.name
            && let Some(old) = e
                .grants
                .iter()
                .find(|x| x.name.as_deref() == Some(name) && x.same_request(req))
        {
            return Ok((old.grant_id.clone(), old.token()));
        }
        if e.grants.len() >= MAX_GRANTS_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "{} already has {MAX_GRANTS_PER_KEY} grants.",
                e.arn
            )));
        }
        let grant = Grant {
            grant_id: grants::new_grant_id()?,
            key_id: e.rec.id,
            name: req.name.clone(),
            grantee_principal: req.grantee_principal.clone(),
            retiring_principal: req.retiring_principal.clone(),
            issuing_account: format!("arn:aws:iam::{}:root", caller.account),
            operations: req.operations.clone(),
            constraints: req.constraints.clone(),
            created_ms: self.now_ms(),
            region: self.other_region().map(str::to_string),
        };
        self.inner.store.apply(&[Mutation::PutGrant(&grant)])?;
        let out = (grant.grant_id.clone(), grant.token());
        let mut list = (*e.grants).clone();
        list.push(grant);
        self.install(e.with_grants(list));
        Ok(out)
    }

    /// ListGrants of one key, optionally filtered by grant id or grantee.
    pub fn list_grants(
        &self,
        caller: &Principal,
        key_id: &str,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<Grant>, KmsError> {
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::ListGrants,
            false,
            None,
            None,
        )?;
        let items = e
            .grants
            .iter()
            .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
            .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
            .map(|g| (g.grant_id.clone(), g.clone()));
        paginate(items, limit, marker)
    }

    /// ListRetirableGrants: grants (on any key) whose retiring principal is `retiring`.
    pub fn list_retirable_grants(
        &self,
        caller: &Principal,
        retiring: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<Grant>, KmsError> {
        self.authorize_account(caller, "kms:ListRetirableGrants")?;
        let mut all: Vec<Grant> = {
            let st = self.state();
            st.keys
                .values()
                .flat_map(|e| e.grants.iter())
                .filter(|g| g.retiring_principal.as_deref() == Some(retiring))
                .cloned()
                .collect()
        };
        all.sort_by(|a, b| (a.key_id, &a.grant_id).cmp(&(b.key_id, &b.grant_id)));
        paginate(
            all.into_iter().map(|g| (g.grant_id.clone(), g)),
            limit,
            marker,
        )
    }

    /// Finds a grant by token, or by key + grant id.
    fn grant_ref(
        &self,
        token: Option<&str>,
        key_id: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<(Arc<KeyEntry>, Grant), KmsError> {
        let (key, id) = match (token, key_id, grant_id) {
            (Some(t), _, _) => {
                let (k, id) = grants::parse_token(t)?;
                (k.to_string(), id)
            }
            (None, Some(k), Some(id)) => (k.to_string(), id.to_string()),
            _ => {
                return Err(KmsError::Validation(
                    "Specify GrantToken, or both KeyId and GrantId.".into(),
                ));
            }
        };
        let e = self.find(&key, false)?;
        let g = e
            .grants
            .iter()
            .find(|g| g.grant_id == id)
            .cloned()
            .ok_or_else(|| {
                KmsError::NotFound(format!("Grant ID {id} not found for key {}.", e.arn))
            })?;
        Ok((e, g))
    }

    fn remove_grant_locked(
        &self,
        _g: &WriteGuard<'_>,
        key: Uuid,
        grant_id: &str,
    ) -> Result<(), KmsError> {
        let e = self.find(&key.to_string(), false)?;
        self.inner
            .store
            .apply(&[Mutation::DeleteGrant(key, grant_id)])?;
        let list = e
            .grants
            .iter()
            .filter(|g| g.grant_id != grant_id)
            .cloned()
            .collect();
        self.install(e.with_grants(list));
        Ok(())
    }

    /// RetireGrant: by the retiring principal, the grantee (if the grant includes
    /// RetireGrant), or the root of the account that created the grant.
    pub fn retire_grant(
        &self,
        caller: &Principal,
        grant_token: Option<&str>,
        key_id: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<(), KmsError> {
        let g = self.lock_writer();
        let (e, grant) = self.grant_ref(grant_token, key_id, grant_id)?;
        let issuer = caller.is_root
            && grant.issuing_account == format!("arn:aws:iam::{}:root", caller.account);
        if !grant.retirable_by(caller) && !issuer {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: kms:RetireGrant on resource: {} (grant {}): only its retiring principal, its grantee (with RetireGrant) or the issuing account may retire it",
                caller.arn(),
                e.arn,
                grant.grant_id
            )));
        }
        check_state(&e.rec, &e.arn, Op::RetireGrant)?;
        self.remove_grant_locked(&g, e.rec.id, &grant.grant_id)
    }

    /// RevokeGrant: needs kms:RevokeGrant on the key (key policy).
    pub fn revoke_grant(
        &self,
        caller: &Principal,
        key_id: &str,
        grant_id: &str,
    ) -> Result<(), KmsError> {
        let g = self.lock_writer();
        let e = self.key_for(
            caller,
            &ambient(),
            key_id,
            Op::RevokeGrant,
            false,
            None,
            Some(&g),
        )?;
        let (_, grant) = self.grant_ref(None, Some(&e.rec.id.to_string()), Some(grant_id))?;
        self.remove_grant_locked(&g, e.rec.id, &grant.grant_id)
    }

    // ------------------------------------------------------------ explain / dry run

    /// Why `caller` may or may not perform `action` (`kms:Decrypt` or `Decrypt`) on a key
    /// with encryption context `ctx`, arriving as `call`: names the deciding key policy
    /// statement (index and Sid) or grant. Also reports a key state that would refuse
    /// the operation. Reads only; not audited, not counted.
    pub fn explain(
        &self,
        caller: &Principal,
        action: &str,
        key_id: &str,
        ctx: &EncryptionContext,
        call: &CallContext,
    ) -> Result<Explanation, KmsError> {
        let action = normalise_action(action);
        let e = self.maintain(self.find(key_id, true)?, None)?;
        let facts = self.facts(caller, &action, &e, Some(ctx), call);
        let d = decide(&e.policy, &e.grants, &facts);
        let state_error = Op::ALL
            .iter()
            .find(|o| o.action() == action)
            .and_then(|op| check_state(&e.rec, &e.arn, *op).err())
            .map(|err| err.to_string());
        Ok(Explanation {
            allowed: d.allowed(),
            principal_arn: caller.arn(),
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
        caller: &Principal,
        call: &CallContext,
        op: Op,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> KmsError {
        let e = match self.find(key_id, true).and_then(|e| self.maintain(e, None)) {
            Ok(e) => e,
            Err(err) => return err,
        };
        for t in &call.grant_tokens {
            if let Err(err) = grants::parse_token(t) {
                return err;
            }
        }
        let facts = self.facts(caller, op.action(), &e, Some(ctx), call);
        let d = decide(&e.policy, &e.grants, &facts);
        let x = Explanation {
            allowed: d.allowed(),
            principal_arn: caller.arn(),
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
        if let Err(err) = crate::kms::asym::check_usage(&e.rec, &e.arn, op) {
            return err;
        }
        KmsError::DryRunOperation(format!(
            "The request would have succeeded, but the DryRun option is set. {x}"
        ))
    }

    // ------------------------------------------------------------ usage

    /// Per-key usage since sealgate started: successful calls by operation and the last
    /// use (a GetKeyLastUsage-style view; needs kms:DescribeKey).
    pub fn key_usage(&self, caller: &Principal, key_id: &str) -> Result<UsageReport, KmsError> {
        let e = self.find(key_id, true)?;
        self.authorize(caller, "kms:DescribeKey", &e, None, &ambient())?;
        Ok(e.usage.report(e.arn.clone()))
    }

    // ------------------------------------------------------------ audit

    /// Waits until every audit event recorded so far is written and fsynced.
    pub fn flush_audit(&self) -> Result<(), KmsError> {
        match &self.inner.audit {
            Some(a) => a.flush(),
            None => Ok(()),
        }
    }

    /// The last durable record of the audit chain (seq, hash); keep it elsewhere and
    /// pass it to `verify_audit_log_against` to detect truncation or rewrites.
    pub fn audit_head(&self) -> Option<AuditHead> {
        self.inner.audit.as_ref().map(|a| a.head())
    }

    /// Where the audit log is written (None when auditing is disabled).
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.inner.audit.as_ref().map(|a| a.path())
    }

    /// Current time from the injected clock, in ms (for the API layer's events).
    pub(crate) fn clock_ms(&self) -> i64 {
        self.now_ms()
    }

    /// Enqueues a fully built event (the API layer's).
    pub(crate) fn record_audit(&self, ev: AuditEvent) {
        if let Some(a) = &self.inner.audit {
            a.record(ev);
        }
    }

    /// The ARN of a key reference (id, ARN, alias) if it resolves; no access check.
    pub(crate) fn resolve_arn(&self, key_ref: &str) -> Option<String> {
        self.find(key_ref, true).ok().map(|e| e.arn.clone())
    }

    pub(crate) fn audit_enabled(&self) -> bool {
        self.inner.audit.is_some()
    }

    /// The audit event of an in-process or via-S3 cryptographic call (the API layer
    /// records its own).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_crypto<T>(
        &self,
        caller: &Principal,
        call: &CallContext,
        name: &'static str,
        key_ref: Option<&str>,
        ctx: &EncryptionContext,
        bytes: Option<usize>,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        if call.via == Via::Api || self.inner.audit.is_none() {
            return;
        }
        let resources = match r {
            Ok(v) => vec![arn(v).clone()],
            Err(_) => key_ref
                .and_then(|k| self.find(k, true).ok())
                .map(|e| e.arn.clone())
                .into_iter()
                .collect(),
        };
        let params = CryptoParams {
            key_id: key_ref.map(str::to_string),
            encryption_context: Some(ctx.clone()),
            number_of_bytes: bytes,
            encryption_algorithm: "SYMMETRIC_DEFAULT",
            ..Default::default()
        };
        let err = r.as_ref().err();
        self.audit_event(caller, call, name, Params::Crypto(params), err, resources);
    }

    pub(super) fn audit_event(
        &self,
        caller: &Principal,
        call: &CallContext,
        name: &'static str,
        params: Params,
        err: Option<&KmsError>,
        resources: Vec<String>,
    ) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        log.record(AuditEvent {
            time_ms: self.now_ms(),
            name: Cow::Borrowed(name),
            principal: Some(caller.clone()),
            via: call.via,
            source_ip: call.source_ip,
            user_agent: call.user_agent.clone(),
            request_id: call.request_id.clone(),
            params: Some(params),
            response: None,
            error: err.map(|e| (e.aws_type(), e.to_string())),
            resources,
            read_only: false,
            region: Some(self.region.clone()),
        });
    }

    /// AWS logs the creation of a service-managed key as the service's own CreateKey.
    pub(super) fn audit_service_key_created(&self, arn: &str, alias: &str) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        log.record(AuditEvent {
            time_ms: self.now_ms(),
            name: Cow::Borrowed("CreateKey"),
            principal: None,
            via: Via::InProcess,
            source_ip: None,
            user_agent: Some("kms.amazonaws.com".into()),
            request_id: None,
            params: Some(Params::Json(serde_json::json!({"alias": alias}))),
            response: Some(serde_json::json!({"keyMetadata": {"arn": arn, "keyManager": "AWS"}})),
            error: None,
            resources: vec![arn.to_string()],
            read_only: false,
            region: None,
        });
    }
}
