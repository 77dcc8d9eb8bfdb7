//! Access decisions: the key policy, then grants, combined the AWS way, plus the facts
//! about *how* a call arrived (`CallContext`) and human-readable explanations.
//!
//! Invariants: explicit Deny in the key policy beats every Allow and every grant; with
//! no Allow statement and no applicable grant the answer is Deny. Deciding is
//! allocation-free on the allow path; strings are only built for denials and `explain`.

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;

use super::KmsError;
use super::grants::Grant;
use super::policy::{Decision, Policy, RequestFacts};

/// Who delivered a call to the KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// A direct Rust call inside sealgate (admin commands, tests).
    #[default]
    InProcess,
    /// The AWS KMS JSON API (the API layer writes the audit event itself).
    Api,
    /// The S3 front, on behalf of the S3 caller: `kms:ViaService` is
    /// `s3.<region>.amazonaws.com` and the audit event says `invokedBy: s3.amazonaws.com`.
    S3,
}

/// How a call arrived: what conditions (`aws:SourceIp`, `kms:ViaService`) and the audit
/// log see. `CallContext::default()` is an in-process call with no network facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    pub via: Via,
    /// The client's address (the S3 or KMS API client), for `aws:SourceIp` and the audit.
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Correlates the audit event with the S3/API request (fresh UUID when absent).
    pub request_id: Option<String>,
    /// Grant tokens presented with the request (validated; grants apply at once anyway).
    pub grant_tokens: Vec<String>,
}

impl CallContext {
    /// A call the S3 front makes for the S3 client at `source_ip`.
    pub fn s3(source_ip: Option<IpAddr>, request_id: Option<String>) -> Self {
        CallContext {
            via: Via::S3,
            source_ip,
            user_agent: Some("s3.amazonaws.com".into()),
            request_id,
            grant_tokens: Vec::new(),
        }
    }
}

thread_local! {
    /// The API layer's call facts while it runs one operation on this thread, so that
    /// management methods with simple signatures still see `aws:SourceIp` etc.
    static AMBIENT: RefCell<Option<CallContext>> = const { RefCell::new(None) };
}

/// Runs `f` with `call` as the ambient call context of this thread.
pub(crate) fn with_ambient<R>(call: CallContext, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<CallContext>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let prev = self.0.take();
            AMBIENT.with(|a| *a.borrow_mut() = prev);
        }
    }
    let prev = AMBIENT.with(|a| a.borrow_mut().replace(call));
    let _reset = Reset(prev);
    f()
}

/// The ambient call context (the API's, inside `with_ambient`), else in-process.
pub(crate) fn ambient() -> CallContext {
    AMBIENT.with(|a| a.borrow().clone()).unwrap_or_default()
}

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
