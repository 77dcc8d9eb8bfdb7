//! Grants: CreateGrant (with the rules for grants that pass on a grant's operations),
//! ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.

use std::sync::Arc;

use uuid::Uuid;

use super::gate::stop_if_dry_run;
use super::{KeyEntry, Kms, Page, WriteGuard, paginate};
use crate::kms::KmsError;
use crate::kms::access::{Decided, decide};
use crate::kms::caller::Caller;
use crate::kms::constraints::PAGE_ALIASES_GRANTS;
use crate::kms::grants::{self, Grant, GrantRequest, MAX_GRANTS_PER_KEY};
use crate::kms::ops::{Op, check_state};
use crate::kms::policy::{GrantFacts, RequestFacts};
use crate::kms::store::Mutation;

impl Kms {
    /// CreateGrant: returns (grant id, grant token). A second request with the same Name
    /// and the same parameters returns the existing grant.
    pub fn create_grant(
        &self,
        who: Caller<'_>,
        key_id: &str,
        req: &GrantRequest,
    ) -> Result<(String, String), KmsError> {
        grants::validate(req)?;
        super::gate::check_grant_tokens(who)?;
        let g = self.lock_writer()?;
        let e = self.maintain(self.find(key_id, false)?, Some(&g))?;
        let facts = RequestFacts {
            grant: Some(GrantFacts {
                operations: &req.operations,
                grantee: &req.grantee_principal,
                retiring: req.retiring_principal.as_deref(),
            }),
            ..self.facts(who, Op::CreateGrant.action(), &e, None)
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
                    who.principal.arn(),
                    e.arn,
                    parent.grant_id
                )));
            }
        }
        check_state(&e.rec, &e.arn, Op::CreateGrant)?;
        grants::check_for_key(req, &e.rec, &e.arn)?;
        stop_if_dry_run(who)?;
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
            issuing_account: format!("arn:aws:iam::{}:root", who.principal.account),
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
        who: Caller<'_>,
        key_id: &str,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<Grant>, KmsError> {
        let e = self.key_for(who, key_id, Op::ListGrants, false, None, None)?;
        let items = e
            .grants
            .iter()
            .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
            .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
            // Creation order (the order AWS lists them in), stable across pages.
            .map(|g| {
                (
                    format!("{:020}:{}", g.created_ms.max(0), g.grant_id),
                    g.clone(),
                )
            });
        let mut items: Vec<_> = items.collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        paginate(items.into_iter(), PAGE_ALIASES_GRANTS, limit, marker)
    }

    /// ListRetirableGrants: grants (on any key) whose retiring principal is `retiring`.
    pub fn list_retirable_grants(
        &self,
        who: Caller<'_>,
        retiring: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<Grant>, KmsError> {
        self.authorize_account(who, Op::ListRetirableGrants)?;
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
            all.into_iter()
                .map(|g| (format!("{}:{}", g.key_id, g.grant_id), g)),
            PAGE_ALIASES_GRANTS,
            limit,
            marker,
        )
    }

    /// Finds a grant by token, or by key + grant id.
    pub(super) fn grant_ref(
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

    pub(super) fn remove_grant_locked(
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
        who: Caller<'_>,
        grant_token: Option<&str>,
        key_id: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<(), KmsError> {
        let g = self.lock_writer()?;
        let (e, grant) = self.grant_ref(grant_token, key_id, grant_id)?;
        let issuer = who.principal.is_root
            && grant.issuing_account == format!("arn:aws:iam::{}:root", who.principal.account);
        if !grant.retirable_by(who.principal) && !issuer {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: kms:RetireGrant on resource: {} (grant {}): only its retiring principal, its grantee (with RetireGrant) or the issuing account may retire it",
                who.principal.arn(),
                e.arn,
                grant.grant_id
            )));
        }
        check_state(&e.rec, &e.arn, Op::RetireGrant)?;
        stop_if_dry_run(who)?;
        self.remove_grant_locked(&g, e.rec.id, &grant.grant_id)
    }

    /// RevokeGrant: needs kms:RevokeGrant on the key (key policy).
    pub fn revoke_grant(
        &self,
        who: Caller<'_>,
        key_id: &str,
        grant_id: &str,
    ) -> Result<(), KmsError> {
        let g = self.lock_writer()?;
        let e = self.key_for(who, key_id, Op::RevokeGrant, false, None, Some(&g))?;
        let (_, grant) = self.grant_ref(None, Some(&e.rec.id.to_string()), Some(grant_id))?;
        stop_if_dry_run(who)?;
        self.remove_grant_locked(&g, e.rec.id, &grant.grant_id)
    }
}
