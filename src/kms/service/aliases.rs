//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use super::{Kms, Page, WriteGuard, paginate};
use crate::kms::KmsError;
use crate::kms::asym::{KeySpec, KeyUsageType};
use crate::kms::caller::Caller;
use crate::kms::constraints::{self, PAGE_ALIASES_GRANTS};

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
    constraints::text(name, "aliasName", 1, 256)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'))
    {
        return Err(constraints::pattern(
            name,
            "aliasName",
            "^[a-zA-Z0-9:/_-]+$",
        ));
    }
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::Validation(
            "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html".into(),
        ));
    };
    // The model's pattern admits ':', the Developer Guide's alias rules do not.
    if rest.is_empty() || rest.contains(':') {
        return Err(KmsError::InvalidAliasName(format!(
            "{name} is not a valid alias name: after alias/ it may contain only letters, digits, '/', '_' and '-'."
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::NotAuthorized(format!(
            "The alias prefix alias/aws/ is reserved for AWS managed keys: {name}"
        )));
    }
    Ok(())
}

/// Which kind of key an alias may be moved between (UpdateAlias): symmetric encryption,
/// HMAC, or asymmetric, with the same key usage.
fn alias_class(spec: KeySpec, usage: KeyUsageType) -> (u8, KeyUsageType) {
    let class = if spec.is_symmetric() {
        0
    } else if spec.is_hmac() {
        1
    } else {
        2
    };
    (class, usage)
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
        let g = self.lock_writer()?;
        let existing = {
            let st = self.state();
            st.aliases.get(alias).cloned()
        };
        let created_ms = match (op, &existing) {
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
        if let Some(old) = &existing {
            // UpdateAlias needs kms:UpdateAlias on the alias's current key as well (in any
            // state: a current key pending deletion is fine), and the new key must be of
            // the same kind and key usage.
            let current = self.state().keys.get(&old.target).cloned();
            if let Some(current) = current {
                self.authorize(who, op.action(), &current, None)?;
                let (from, to) = (&current.rec, &e.rec);
                if alias_class(from.key_spec, from.key_usage)
                    != alias_class(to.key_spec, to.key_usage)
                {
                    return Err(KmsError::Validation(format!(
                        "{alias} refers to a {} key with KeyUsage {}; it can only be moved to a key of the same type and key usage, not to {} ({} / {}).",
                        from.key_spec, from.key_usage, e.arn, to.key_spec, to.key_usage
                    )));
                }
            }
        }
        let others = self
            .state()
            .aliases
            .iter()
            .filter(|(n, a)| a.target == e.rec.id && n.as_str() != alias)
            .count();
        if others >= constraints::MAX_ALIASES_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "{} already has {} aliases, the quota of aliases per KMS key.",
                e.arn,
                constraints::MAX_ALIASES_PER_KEY
            )));
        }
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
        let g = self.lock_writer()?;
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
