//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use super::{Kms, Page, WriteGuard, paginate};
use crate::kms::KmsError;
use crate::kms::caller::Caller;
use crate::kms::constraints::PAGE_ALIASES_GRANTS;

use crate::kms::model::AliasRecord;
use crate::kms::ops::Op;

#[derive(Debug, Clone, PartialEq)]
pub struct AliasEntry {
    pub name: String,
    pub arn: String,
    pub target: Option<String>,
    pub created_ms: Option<i64>,
    pub updated_ms: Option<i64>,
}

fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    let rest = name.strip_prefix("alias/").ok_or_else(|| {
        KmsError::Validation(format!(
            "Alias must start with the prefix \"alias/\": {name}"
        ))
    })?;
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
    {
        return Err(KmsError::constraint(
            name,
            "aliasName",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::NotAuthorized(format!(
            "The alias prefix alias/aws/ is reserved for AWS managed keys: {name}"
        )));
    }
    Ok(())
}

impl Kms {
    pub fn create_alias(
        &self,
        who: Caller<'_>,
        alias: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        self.set_alias(who, alias, target_key_id, Op::CreateAlias)
    }

    pub fn update_alias(
        &self,
        who: Caller<'_>,
        alias: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        self.set_alias(who, alias, target_key_id, Op::UpdateAlias)
    }

    /// CreateAlias (the alias must not exist) or UpdateAlias (it must).
    pub(super) fn set_alias(
        &self,
        who: Caller<'_>,
        alias: &str,
        target_key_id: &str,
        op: Op,
    ) -> Result<(), KmsError> {
        validate_alias_name(alias)?;
        let g = self.lock_writer();
        let existing = {
            let st = self.state();
            st.aliases.get(alias).cloned()
        };
        let created_ms = match (op, existing) {
            (Op::CreateAlias, Some(_)) => {
                return Err(KmsError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    self.alias_arn(alias)
                )));
            }
            (Op::CreateAlias, None) => None,
            (_, Some(old)) => Some(old.created_ms),
            (_, None) => {
                return Err(KmsError::NotFound(format!(
                    "Alias {} is not found.",
                    self.alias_arn(alias)
                )));
            }
        };
        let e = self.key_for(who, target_key_id, op, false, None, Some(&g))?;
        let now = self.now_ms();
        let rec = AliasRecord {
            target: e.rec.id,
            created_ms: created_ms.unwrap_or(now),
            updated_ms: now,
        };
        self.put_alias_locked(&g, alias, rec)
    }

    pub(super) fn put_alias_locked(
        &self,
        _g: &WriteGuard<'_>,
        alias: &str,
        rec: AliasRecord,
    ) -> Result<(), KmsError> {
        self.inner
            .store
            .apply(&[self.put_alias_mutation(alias, &rec)])?;
        let mut st = self.state_mut();
        st.aliases.insert(alias.to_string(), rec);
        Ok(())
    }

    pub fn delete_alias(&self, who: Caller<'_>, alias: &str) -> Result<(), KmsError> {
        validate_alias_name(alias)?;
        let g = self.lock_writer();
        let e = self.key_for(who, alias, Op::DeleteAlias, true, None, Some(&g))?;
        drop(e);
        self.inner
            .store
            .apply(&[self.delete_alias_mutation(alias)])?;
        drop(g);
        let mut st = self.state_mut();
        st.aliases.remove(alias);
        Ok(())
    }

    /// ListAliases, optionally only those pointing at `key_id`. Service aliases that
    /// exist are listed like AWS lists its `alias/aws/...` aliases.
    pub fn list_aliases(
        &self,
        who: Caller<'_>,
        key_id: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        self.authorize_account(who, Op::ListAliases)?;
        let filter = match key_id {
            Some(k) => Some(self.find(k, false)?.rec.id),
            None => None,
        };
        let items: Vec<(String, AliasEntry)> = {
            let st = self.state();
            st.aliases
                .iter()
                .filter(|(_, a)| filter.is_none_or(|f| f == a.target))
                .map(|(n, a)| {
                    (
                        n.clone(),
                        AliasEntry {
                            name: n.clone(),
                            arn: self.alias_arn(n),
                            target: Some(a.target.to_string()),
                            created_ms: Some(a.created_ms),
                            updated_ms: Some(a.updated_ms),
                        },
                    )
                })
                .collect()
        };
        paginate(items.into_iter(), PAGE_ALIASES_GRANTS, limit, marker)
    }
}
