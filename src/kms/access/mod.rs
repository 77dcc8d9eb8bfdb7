//! Access decisions: the key policy, then grants, combined the AWS way, and
//! human-readable explanations of them. (How a call arrived is `kms::caller`.)
//!
//! Invariants: explicit Deny in the key policy beats every Allow and every grant; with
//! no Allow statement and no applicable grant the answer is Deny. Deciding is
//! allocation-free on the allow path; strings are only built for denials and `explain`.

use std::fmt;

use super::KmsError;
use super::grants::Grant;
use super::policy::{Decision, Policy, RequestFacts};

/// What decided an access question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An Allow statement of the key policy (index, Sid).
    PolicyAllow {
        statement: usize,
        sid: Option<String>,
    },
    /// An explicit Deny statement of the key policy.
    PolicyDeny {
        statement: usize,
        sid: Option<String>,
    },
    /// A grant on the key.
    Grant {
        grant_id: String,
        name: Option<String>,
    },
    /// Nothing allowed it (implicit deny).
    NoMatch,
}

/// The answer of `Kms::explain`: why a principal may or may not do something to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    pub principal_arn: String,
    pub action: String,
    pub key_arn: String,
    pub reason: Reason,
    /// Set when the key's state would refuse the operation even though access is allowed.
    pub state_error: Option<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "ALLOWED" } else { "DENIED" };
        write!(
            f,
            "{verdict}: {} {} on {}: ",
            self.principal_arn, self.action, self.key_arn
        )?;
        let stmt = |i: &usize, sid: &Option<String>| match sid {
            Some(s) => format!("Statement[{i}] (Sid \"{s}\")"),
            None => format!("Statement[{i}]"),
        };
        match &self.reason {
            Reason::PolicyAllow { statement, sid } => {
                write!(f, "allowed by key policy {}", stmt(statement, sid))?
            }
            Reason::PolicyDeny { statement, sid } => write!(
                f,
                "explicitly denied by key policy {}",
                stmt(statement, sid)
            )?,
            Reason::Grant { grant_id, name } => {
                write!(f, "allowed by grant {grant_id}")?;
                if let Some(n) = name {
                    write!(f, " (Name \"{n}\")")?;
                }
            }
            Reason::NoMatch => write!(
                f,
                "no key policy statement and no grant allows it (implicit deny)"
            )?,
        }
        if let Some(e) = &self.state_error {
            write!(f, "; but the key state refuses it: {e}")?;
        }
        Ok(())
    }
}

/// The cheap outcome of `decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decided {
    Policy(Decision),
    Grant(usize),
}

impl Decided {
    pub(crate) fn allowed(self) -> bool {
        matches!(
            self,
            Decided::Policy(Decision::Allow(_)) | Decided::Grant(_)
        )
    }

    pub(crate) fn reason(self, policy: &Policy, grants: &[Grant]) -> Reason {
        match self {
            Decided::Policy(Decision::Allow(i)) => Reason::PolicyAllow {
                statement: i,
                sid: policy.sid(i).map(str::to_string),
            },
            Decided::Policy(Decision::Deny(i)) => Reason::PolicyDeny {
                statement: i,
                sid: policy.sid(i).map(str::to_string),
            },
            Decided::Policy(Decision::NoMatch) => Reason::NoMatch,
            Decided::Grant(g) => Reason::Grant {
                grant_id: grants[g].grant_id.clone(),
                name: grants[g].name.clone(),
            },
        }
    }

    /// The AccessDeniedException for a refusal (AWS's wording).
    pub(crate) fn denial(self, facts: &RequestFacts<'_>, policy: &Policy) -> KmsError {
        let (who, action, key) = (facts.principal.arn(), facts.action, facts.resource);
        match self {
            Decided::Policy(Decision::Deny(i)) => KmsError::AccessDenied(format!(
                "User: {who} is not authorized to perform: {action} on resource: {key} with an explicit deny in a resource-based policy (key policy {})",
                policy.describe_statement(i)
            )),
            _ => KmsError::AccessDenied(format!(
                "User: {who} is not authorized to perform: {action} on resource: {key} because no resource-based policy allows the {action} action"
            )),
        }
    }
}

/// Key policy first (explicit Deny wins, then Allow), then the key's grants.
pub(crate) fn decide(policy: &Policy, grants: &[Grant], facts: &RequestFacts<'_>) -> Decided {
    match policy.evaluate(facts) {
        Decision::NoMatch => grants
            .iter()
            .position(|g| g.allows(facts.principal, facts.action, facts.encryption_context))
            .map_or(Decided::Policy(Decision::NoMatch), Decided::Grant),
        d => Decided::Policy(d),
    }
}

#[cfg(test)]
mod tests;
