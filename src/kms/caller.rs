//! Who calls the KMS and how the call arrived: every operation of `Kms` takes one
//! `Caller` — the principal and its `CallContext` — as its first argument, so key policy
//! conditions (`aws:SourceIp`, `kms:ViaService`), grant tokens and the audit log see the
//! same facts whichever way the call came (in process, the KMS API, the S3 front).

use std::net::IpAddr;

use crate::auth::Principal;

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
    /// Whether the request arrived over TLS (`aws:SecureTransport`); None when the call
    /// has no transport (in process), so conditions on the key see it absent.
    pub secure_transport: Option<bool>,
    /// `DryRun: true`: everything the call would check is checked, nothing it would
    /// change is changed, and uses are not counted.
    pub dry_run: bool,
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
            // AWS services call KMS over TLS: S3's calls on a user's behalf are secure
            // transport whatever the S3 client used (as the key policy sees them on AWS).
            secure_transport: Some(true),
            dry_run: false,
        }
    }
}

/// The context of a direct Rust call with no network facts (`Caller::in_process`).
static IN_PROCESS: CallContext = CallContext {
    via: Via::InProcess,
    source_ip: None,
    user_agent: None,
    request_id: None,
    grant_tokens: Vec::new(),
    secure_transport: None,
    dry_run: false,
};

/// A request's caller: who asks (`principal`, whose permissions decide) and how the
/// call arrived (`call`). Cheap to copy; pass it on as it is.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub call: &'a CallContext,
}

impl<'a> Caller<'a> {
    pub fn new(principal: &'a Principal, call: &'a CallContext) -> Self {
        Caller { principal, call }
    }

    /// A direct Rust call inside sealgate (admin commands, tests): no source address,
    /// no grant tokens, and the KMS writes the audit event itself.
    pub fn in_process(principal: &'a Principal) -> Self {
        Caller {
            principal,
            call: &IN_PROCESS,
        }
    }
}
