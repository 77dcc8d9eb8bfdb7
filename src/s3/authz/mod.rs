//! Authorization between principals: every S3 request is checked against its access
//! key's IAM-style identity policies before any handler runs.
//!
//! - [`table`]: which actions an operation needs on which ARNs (one row per operation);
//! - [`context`]: the condition keys of a request and their values;
//! - [`policy`]: identity policies, parsed and evaluated by the policy engine of
//!   `crate::kms::policy` (`PolicyKind::Identity`);
//! - [`delete`]: DeleteObjects, authorized key by key.
//!
//! Invariants: a root principal may do everything; any other key has at least one policy
//! (the configuration refuses one without), and a request runs only if every check it
//! needs is allowed by some statement and denied by none; every denial is an S3
//! `AccessDenied` naming the action and the resource in AWS's words and is recorded in
//! the audit log with the principal, action, resource and request id; operations sealgate
//! refuses anyway (`Class::Reject`) are answered NotImplemented without a check (they
//! never reach the store). A key with its own store credential has every store request of
//! its requests signed with it (`crate::upstream::acting`), except those to sealgate's
//! state bucket.

pub mod context;
pub mod delete;
pub mod policy;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use s3s::{Body, S3Response};

use super::Ctx;
use super::classify::{Class, Op};
use super::request::Upload;
use crate::auth::Principal;
use crate::config::Config;
use crate::error::Error;
use crate::kms::policy::ConditionMap;
use crate::object::envelope::Alg;
use crate::upstream::ActingAs;
use crate::upstream::sign::Signer;
use policy::{IdentityPolicy, Verdict};
use table::{Check, Target};

/// What the policies of a key say about one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// No statement allows.
    Implicit,
    /// A statement denies; the name of its policy if it is a named one.
    Explicit(Option<String>),
}

/// One client access key's principal, policies and store credential.
pub struct Identity {
    pub principal: Principal,
    /// `None` for a root principal: everything is allowed.
    policies: Option<Vec<Arc<IdentityPolicy>>>,
    /// The key's own store credential, if it has one.
    store: Option<ActingAs>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("principal", &self.principal)
            .field("policies", &self.policies.as_ref().map(Vec::len))
            .field("own_store_credential", &self.store.is_some())
            .finish()
    }
}

impl Identity {
    pub fn is_root(&self) -> bool {
        self.policies.is_none()
    }

    /// What this key's policies say about `action` on `resource` in context `ctx`.
    pub fn decide(&self, action: &str, resource: &str, ctx: &ConditionMap) -> Outcome {
        let Some(policies) = &self.policies else {
            return Outcome::Allow;
        };
        let mut allowed = false;
        for p in policies {
            match p.evaluate(&self.principal, action, resource, ctx) {
                Verdict::Deny => return Outcome::Explicit(p.name.clone()),
                Verdict::Allow => allowed = true,
                Verdict::NoMatch => {}
            }
        }
        if allowed {
            Outcome::Allow
        } else {
            Outcome::Implicit
        }
    }
}

/// The identities of every configured access key.
#[derive(Debug, Default)]
pub struct Authz {
    keys: HashMap<String, Arc<Identity>>,
}

/// A configuration problem: (field, reason).
type CfgError = (String, String);

impl Authz {
    /// Parses every policy and builds each key's identity. The configuration's files
    /// must already be read (`Config::validate` does that, then calls this to check).
    pub fn from_config(cfg: &Config) -> Result<Authz, CfgError> {
        // Every named policy parses, attached or not (a typo is found now, not when it
        // is attached).
        let mut named: BTreeMap<&str, Arc<IdentityPolicy>> = BTreeMap::new();
        for (name, p) in &cfg.policies {
            let text = p.document.as_deref().unwrap_or_default();
            let policy = IdentityPolicy::parse(Some(name), text)
                .map_err(|e| (format!("policies.{name}"), e))?;
            named.insert(name, Arc::new(policy));
        }
        let mut signers: HashMap<(String, String), Arc<Signer>> = HashMap::new();
        let mut keys = HashMap::new();
        for (i, k) in cfg.access_keys.iter().enumerate() {
            let field = |n: &str| format!("access_keys[{i}].{n}");
            let principal = Principal {
                name: k.principal.clone(),
                account: cfg.account.clone(),
                is_root: k.root,
            };
            let mut policies = Vec::new();
            for (j, name) in k.policies.iter().enumerate() {
                let policy = named.get(name.as_str()).ok_or_else(|| {
                    (
                        field(&format!("policies[{j}]")),
                        format!(
                            "no policy named `{name}` in [policies] (defined: {})",
                            named.keys().copied().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                policies.push(policy.clone());
            }
            if let Some(text) = &k.policy {
                let policy = IdentityPolicy::parse(None, text).map_err(|e| (field("policy"), e))?;
                policies.push(Arc::new(policy));
            }
            if !k.root && policies.is_empty() {
                return Err((
                    format!("access_keys[{i}]"),
                    format!(
                        "access key {} (principal {}) is not root and has no identity policy, so \
                         it could do nothing: attach policies (`policies = [\"NAME\"]`, `policy` \
                         or `policy_file`), or set `root = true` to let it do everything",
                        k.access_key_id, k.principal
                    ),
                ));
            }
            let store = match (&k.store_access_key_id, k.store_secret_access_key.expose()) {
                (None, "") => None,
                (Some(id), secret) if !id.is_empty() && !secret.is_empty() => {
                    let signer = signers
                        .entry((id.clone(), secret.to_string()))
                        .or_insert_with(|| Arc::new(Signer::new(id, secret, &cfg.upstream.region)))
                        .clone();
                    Some(ActingAs::new(signer, &cfg.state_bucket))
                }
                _ => {
                    return Err((
                        field("store_access_key_id"),
                        format!(
                            "access key {}: a store credential needs both store_access_key_id and \
                             its secret (store_secret_access_key, _file or _env)",
                            k.access_key_id
                        ),
                    ));
                }
            };
            let identity = Identity {
                principal,
                policies: (!k.root).then_some(policies),
                store,
            };
            keys.insert(k.access_key_id.clone(), Arc::new(identity));
        }
        Ok(Authz { keys })
    }

    /// The identity of an access key id.
    pub fn identity(&self, access_key_id: &str) -> Option<Arc<Identity>> {
        self.keys.get(access_key_id).cloned()
    }
}

/// `User: ARN is not authorized to perform: ACTION on resource: "ARN" because ...`, as AWS
/// words it (no resource for ListAllMyBuckets).
pub fn denial_message(
    principal: &Principal,
    action: &str,
    resource: Option<&str>,
    outcome: &Outcome,
) -> String {
    let on = resource.map_or(String::new(), |r| format!(" on resource: \"{r}\""));
    let why = match outcome {
        Outcome::Explicit(Some(name)) => format!(
            " with an explicit deny in an identity-based policy: arn:aws:iam::{}:policy/{name}",
            principal.account
        ),
        Outcome::Explicit(None) => " with an explicit deny in an identity-based policy".into(),
        Outcome::Implicit | Outcome::Allow => {
            format!(" because no identity-based policy allows the {action} action")
        }
    };
    format!(
        "User: {} is not authorized to perform: {action}{on}{why}",
        principal.arn()
    )
}

/// The request facts condition keys see.
fn request_context(ctx: &Ctx, secure: bool) -> context::Context {
    let kms_key_arn = ctx
        .headers
        .get(super::sse::H_KEY_ID)
        .and_then(|v| v.to_str().ok())
        .map(|k| {
            let k = k.trim();
            ctx.state
                .kms
                .resolve_arn(k)
                .unwrap_or_else(|| k.to_string())
        });
    let copy_source = ctx
        .req
        .copy_source
        .as_ref()
        .map(|s| format!("{}/{}", s.bucket, s.key));
    // The requests of an upload after CreateMultipartUpload carry no SSE header: their
    // SSE keys are the upload's (its id is a token holding the envelope; a forged one
    // is refused by the handler before anything reaches the store).
    let upload_sse = match (&ctx.req.op, &ctx.req.upload) {
        (
            Op::UploadPart | Op::UploadPartCopy | Op::CompleteMultipartUpload,
            Some(Upload::Token(t)),
        ) => {
            let alg = t.envelope.alg;
            Some((
                alg.as_str(),
                (alg == Alg::Kms).then(|| t.envelope.key_ref.clone()),
            ))
        }
        _ => None,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    context::Context::new(&context::RequestView {
        principal: &ctx.principal,
        headers: &ctx.headers,
        query: &ctx.req.query,
        source_ip: ctx.call.source_ip,
        secure_transport: secure,
        kms_key_arn,
        upload_sse,
        copy_source,
        now_ms,
    })
}

/// A denied check: the action and resource, and why.
struct Denial {
    action: &'static str,
    resource: String,
    /// False for ListAllMyBuckets (the message names no resource).
    has_resource: bool,
    outcome: Outcome,
}

/// The first denial of `checks` (an explicit deny before any implicit one), if any.
fn first_denial(
    identity: &Identity,
    checks: &[Check],
    cx: &context::Context,
    bucket: Option<&str>,
    key: Option<&str>,
) -> Option<Denial> {
    let mut implicit = None;
    for c in checks {
        let resource = c.resource(bucket, key);
        match identity.decide(c.action, &resource, &cx.for_check(c)) {
            Outcome::Allow => {}
            outcome => {
                let d = Denial {
                    action: c.action,
                    has_resource: c.target != Target::Service,
                    resource,
                    outcome,
                };
                if matches!(d.outcome, Outcome::Explicit(_)) {
                    return Some(d);
                }
                implicit.get_or_insert(d);
            }
        }
    }
    implicit
}

/// Records a denied request (or DeleteObjects entry) in the audit log.
fn audit_denial(ctx: &Ctx, action: &str, resource: &str, key: Option<&str>, message: &str) {
    let kms = &ctx.state.kms;
    let read_only = action
        .strip_prefix("s3:")
        .is_some_and(|a| a.starts_with("Get") || a.starts_with("List"));
    let mut params = serde_json::json!({
        "action": action,
        "resource": resource,
    });
    if let Some(b) = &ctx.req.bucket {
        params["bucketName"] = b.as_str().into();
    }
    if let Some(k) = key.or(ctx.req.key.as_deref()) {
        params["key"] = k.into();
    }
    kms.record_audit(crate::kms::audit::AuditEvent {
        source: crate::kms::audit::EventSource::S3,
        time_ms: kms.clock_ms(),
        name: std::borrow::Cow::Borrowed(ctx.req.op.name()),
        principal: Some(ctx.principal.clone()),
        via: crate::kms::Via::S3,
        source_ip: ctx.call.source_ip,
        user_agent: ctx
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        request_id: ctx.call.request_id.clone(),
        params: Some(crate::kms::audit::Params::Json(params)),
        response: None,
        error: Some(("AccessDenied", message.to_string())),
        resources: Vec::new(),
        read_only,
        region: None,
    });
    tracing::info!(principal = %ctx.principal.arn(), action, resource, "access denied");
}

/// Authorizes `ctx` for `identity`, then runs `handler` with the key's store credential
/// in force. `secure`: the client connection is TLS (`aws:SecureTransport`).
pub async fn run<F, Fut>(
    identity: &Identity,
    mut ctx: Ctx,
    secure: bool,
    handler: F,
) -> Result<S3Response<Body>, Error>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<S3Response<Body>, Error>>,
{
    let mut partial = None;
    if !identity.is_root() && ctx.req.op.class() != Class::Reject {
        let cx = request_context(&ctx, secure);
        let checks = table::checks(&ctx.req, &ctx.headers)?;
        let (bucket, key) = (ctx.req.bucket.as_deref(), ctx.req.key.as_deref());
        if let Some(d) = first_denial(identity, &checks, &cx, bucket, key) {
            let message = denial_message(
                &ctx.principal,
                d.action,
                d.has_resource.then_some(d.resource.as_str()),
                &d.outcome,
            );
            audit_denial(&ctx, d.action, &d.resource, None, &message);
            return Err(Error::access_denied(message));
        }
        if ctx.req.op == Op::DeleteObjects {
            match delete::authorize(identity, &mut ctx, &cx).await? {
                delete::Authorized::All => {}
                delete::Authorized::Some(denied) => partial = Some(denied),
                delete::Authorized::None(answer) => return Ok(answer),
            }
        }
    }
    let resp = match &identity.store {
        None => handler(ctx).await?,
        Some(acting) => {
            let mut resp = acting.run(handler(ctx)).await?;
            // A body still to stream keeps the credential (one in memory needs none).
            if resp.output.bytes().is_none() {
                let body = std::mem::take(&mut resp.output);
                resp.output = Body::http_body_unsync(acting.body(body));
            }
            resp
        }
    };
    match partial {
        Some(denied) => delete::merge(resp, denied).await,
        None => Ok(resp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_messages_are_awss() {
        let bob = Principal {
            name: "bob".into(),
            account: "111122223333".into(),
            is_root: false,
        };
        assert_eq!(
            denial_message(
                &bob,
                "s3:GetObject",
                Some("arn:aws:s3:::b/k"),
                &Outcome::Implicit
            ),
            "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: s3:GetObject on resource: \"arn:aws:s3:::b/k\" because no identity-based policy allows the s3:GetObject action"
        );
        assert_eq!(
            denial_message(
                &bob,
                "s3:DeleteObject",
                Some("arn:aws:s3:::b/k"),
                &Outcome::Explicit(None)
            ),
            "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: s3:DeleteObject on resource: \"arn:aws:s3:::b/k\" with an explicit deny in an identity-based policy"
        );
        assert_eq!(
            denial_message(
                &bob,
                "s3:PutObject",
                Some("arn:aws:s3:::b/k"),
                &Outcome::Explicit(Some("no-plaintext".into()))
            ),
            "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::b/k\" with an explicit deny in an identity-based policy: arn:aws:iam::111122223333:policy/no-plaintext"
        );
        assert_eq!(
            denial_message(&bob, "s3:ListAllMyBuckets", None, &Outcome::Implicit),
            "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: s3:ListAllMyBuckets because no identity-based policy allows the s3:ListAllMyBuckets action"
        );
    }
}
