//! The audit plumbing of `Kms`: flushing and locating the log, and the events of
//! in-process and via-S3 calls (the API layer records its own).

use std::borrow::Cow;
use std::path::Path;

use super::Kms;
use crate::kms::audit::{AuditEvent, AuditHead, CryptoParams, EventSource, Params};
use crate::kms::caller::{Caller, Via};
use crate::kms::ops::Op;
use crate::kms::{EncryptionContext, KmsError};

impl Kms {
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

    /// The audit event of an in-process or via-S3 call (the API layer records its own):
    /// it names the key the result names, or the key `key_ref` resolves to when the call
    /// failed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_call<T>(
        &self,
        who: Caller<'_>,
        op: Op,
        key_ref: Option<&str>,
        params: Params,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        if who.call.via == Via::Api || self.inner.audit.is_none() {
            return;
        }
        let resources = match r {
            Ok(v) => vec![arn(v).clone()],
            Err(_) => key_ref
                .and_then(|k| self.resolve_arn(k))
                .into_iter()
                .collect(),
        };
        let err = r.as_ref().err();
        self.audit_event(who, op, params, err, resources);
    }

    /// `audit_call` of a symmetric Encrypt/Decrypt/GenerateDataKey call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_crypto<T>(
        &self,
        who: Caller<'_>,
        op: Op,
        key_ref: Option<&str>,
        ctx: &EncryptionContext,
        bytes: Option<usize>,
        r: &Result<T, KmsError>,
        arn: impl Fn(&T) -> &String,
    ) {
        let params = Params::Crypto(CryptoParams {
            key_id: key_ref.map(str::to_string),
            encryption_context: Some(ctx.clone()),
            number_of_bytes: bytes,
            encryption_algorithm: "SYMMETRIC_DEFAULT",
            ..Default::default()
        });
        self.audit_call(who, op, key_ref, params, r, arn);
    }

    pub(super) fn audit_event(
        &self,
        who: Caller<'_>,
        op: Op,
        params: Params,
        err: Option<&KmsError>,
        resources: Vec<String>,
    ) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        log.record(AuditEvent {
            source: EventSource::Kms,
            time_ms: self.now_ms(),
            name: Cow::Borrowed(op.event()),
            principal: Some(who.principal.clone()),
            via: who.call.via,
            source_ip: who.call.source_ip,
            user_agent: who.call.user_agent.clone(),
            request_id: who.call.request_id.clone(),
            params: Some(params),
            response: None,
            error: err.map(|e| (e.aws_type(), e.to_string())),
            resources,
            read_only: false,
            region: Some(self.region.clone()),
        });
    }

    /// After a root-key rotation, the first record of this instance's audit chain signed
    /// with the new root key (`note_root_key_rotation`): the chain then verifies with the
    /// new key alone from here on, and an instance restarted without the previous key
    /// finds its last record under the new one.
    pub(super) fn audit_root_key_rotated(&self) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        log.record(AuditEvent {
            source: EventSource::Kms,
            time_ms: self.now_ms(),
            name: Cow::Borrowed("RotateRootKey"),
            principal: None,
            via: Via::InProcess,
            source_ip: None,
            user_agent: Some("sealgate".into()),
            request_id: None,
            params: Some(Params::Json(serde_json::json!({
                "note": "the KMS database is sealed under a new root key; this chain is signed with it from here on"
            }))),
            response: None,
            error: None,
            resources: Vec::new(),
            read_only: false,
            region: None,
        });
    }

    /// AWS logs the creation of a service-managed key as the service's own CreateKey.
    pub(super) fn audit_service_key_created(&self, arn: &str, alias: &str) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        log.record(AuditEvent {
            source: EventSource::Kms,
            time_ms: self.now_ms(),
            name: Cow::Borrowed(Op::CreateKey.event()),
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
