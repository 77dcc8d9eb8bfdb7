//! The AWS KMS JSON protocol (`POST /`, `X-Amz-Target: TrentService.<Op>`,
//! `application/x-amz-json-1.1`, SigV4 service `kms`).
//!
//! Invariants: every request gets a JSON answer — malformed input becomes
//! Serialization/Validation/UnknownOperation errors, never a panic or a 500; bodies,
//! plaintexts and ciphertexts are never logged; operations that write the database run
//! on the blocking pool so the async runtime never waits on fsync. Every authenticated
//! request writes exactly one audit event (here, not in the service: `Via::Api`), whose
//! `requestParameters` are the request minus blobs and grant tokens and whose
//! `responseElements` are the response minus blobs, tokens and policies.
//!
//! Files: this one receives, verifies, runs and audits a request; `request.rs` is the
//! typed request and its parsing; `dispatch.rs` maps each operation to the service and
//! shapes its JSON answer (`asym.rs` for RSA, ECC and HMAC keys); `event.rs` derives the
//! audit event's parameters and resources.

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::Instrument;

use self::event::{audit_params, audit_response, resource_hints, response_arns};
use self::request::Req;
use super::audit::{AuditEvent, EventSource, Params};
use super::caller::{CallContext, Caller, Via};
use super::ops::Op;
use super::{Kms, KmsError, sigv4};
use crate::auth::AccessKeys;

mod asym;
mod dispatch;
mod event;
mod request;

const TARGET_PREFIX: &str = "TrentService.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Largest request body read. KMS-sized: the largest legitimate request, a Recipient's
/// 256 KiB attestation document as base64 (about 342 KiB) with its other members, or a
/// 32 KB key policy escaped as JSON with ten 8 KiB grant tokens, fits well below it.
pub const MAX_BODY: usize = 512 * 1024;

/// True when the request is addressed to the KMS API.
pub fn is_kms_request(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// A change to a key's lifecycle made by a successful request, for the server to react
/// to (typed, so nobody re-reads the JSON answer to find out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// ScheduleKeyDeletion: the key is deleted for good at `deletion_date`.
    DeletionScheduled {
        key_arn: String,
        deletion_date: SystemTime,
    },
    /// CancelKeyDeletion: the key is no longer going to be deleted.
    DeletionCancelled { key_arn: String },
}

/// The outcome of one KMS API request.
#[derive(Debug)]
pub struct Handled {
    /// The JSON answer (an error answer included).
    pub response: Response<Bytes>,
    /// The key-lifecycle change the request made, if it made one.
    pub event: Option<KeyEvent>,
}

/// Serves one KMS JSON-protocol request straight from the connection: authenticates
/// what the headers can prove first (`sigv4::check_head`: credential, access key, scope,
/// date, signed `host` and `x-amz-target`) and only then reads the body, at most
/// `MAX_BODY` bytes (a larger Content-Length is refused unread); then `handle`. An
/// unauthenticated client therefore never makes sealgate read a body. Refusals before
/// authentication are traced, not audited (there is no principal to record).
pub async fn serve_http<B>(
    kms: &Kms,
    keys: &AccessKeys,
    req: Request<B>,
    source_ip: Option<IpAddr>,
    secure_transport: bool,
) -> Handled
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let refuse = |e: KmsError| {
        tracing::info!(error = e.aws_type(), source_ip = ?source_ip, "KMS request refused before its body was read");
        Handled {
            response: error_response(&e),
            event: None,
        }
    };
    if let Err(e) = sigv4::check_head(req.headers(), keys, kms.regions(), SystemTime::now()) {
        return refuse(e);
    }
    let too_large = || {
        KmsError::Validation(format!(
            "The request body is larger than {MAX_BODY} bytes, the largest KMS request sealgate accepts."
        ))
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return refuse(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let limit = e.downcast_ref::<http_body_util::LengthLimitError>();
            return refuse(if limit.is_some() {
                too_large()
            } else {
                KmsError::Validation("The request body could not be read.".into())
            });
        }
    };
    let req = Request::from_parts(parts, body);
    handle_over(kms, keys, req, source_ip, Some(secure_transport)).await
}

/// Handles one KMS JSON-protocol request (body already read, at most `MAX_BODY`).
/// Verifies SigV4 itself.
pub async fn handle(
    kms: &Kms,
    keys: &AccessKeys,
    req: Request<Bytes>,
    source_ip: Option<IpAddr>,
) -> Handled {
    handle_over(kms, keys, req, source_ip, None).await
}

/// `handle`, saying whether the request came over TLS (`aws:SecureTransport`).
pub async fn handle_over(
    kms: &Kms,
    keys: &AccessKeys,
    req: Request<Bytes>,
    source_ip: Option<IpAddr>,
    secure_transport: Option<bool>,
) -> Handled {
    let request_id = uuid::Uuid::new_v4().to_string();
    let op = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_string();
    let span = tracing::info_span!("kms", %request_id, op = %op, source_ip = ?source_ip);
    let call = CallContext {
        via: Via::Api,
        source_ip,
        user_agent: req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        request_id: Some(request_id.clone()),
        grant_tokens: Vec::new(),
        secure_transport,
        dry_run: false,
    };
    let result = serve(kms, keys, &op, req, call)
        .instrument(span.clone())
        .await;
    let (status, body, event) = match result {
        Ok((v, event)) => (StatusCode::OK, v.to_string(), event),
        Err(e) => {
            span.in_scope(|| tracing::info!(error = e.aws_type(), "KMS request failed"));
            (e.status(), error_body(&e), None)
        }
    };
    Handled {
        response: answer(status, body, request_id),
        event,
    }
}

/// The KMS JSON answer to a request that failed before it reached `handle` (e.g. its
/// body could not be read).
pub fn error_response(e: &KmsError) -> Response<Bytes> {
    answer(e.status(), error_body(e), uuid::Uuid::new_v4().to_string())
}

/// THE place a `KmsError` becomes the AWS KMS JSON error shape (its status is
/// `KmsError::status`).
fn error_body(e: &KmsError) -> String {
    json!({"__type": e.aws_type(), "message": e.to_string()}).to_string()
}

fn answer(status: StatusCode, body: String, request_id: String) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amzn-RequestId", request_id)
        .body(Bytes::from(body))
        .unwrap_or_else(|_| Response::new(Bytes::new()))
}

async fn serve(
    kms: &Kms,
    keys: &AccessKeys,
    op: &str,
    req: Request<Bytes>,
    mut call: CallContext,
) -> Result<(Value, Option<KeyEvent>), KmsError> {
    if req.method() != http::Method::POST || op.is_empty() {
        return Err(KmsError::UnknownOperation(
            "KMS requests are POST / with an X-Amz-Target: TrentService.<Operation> header.".into(),
        ));
    }
    if req.body().len() > MAX_BODY {
        return Err(KmsError::Validation(format!(
            "Request body exceeds {MAX_BODY} bytes."
        )));
    }
    // Signature freshness is about the client's clock versus the wall clock, so it uses
    // real time even when the KMS runs on an injected (test) clock.
    let (caller, region) =
        sigv4::verify_in(&req, keys, kms.regions(), std::time::SystemTime::now())?;
    // Keys, aliases and ARNs are per region: act in the region the request was signed for.
    let kms = &kms.in_region(&region)?;
    let time_ms = kms.clock_ms();
    let known = Op::from_api_name(op);
    let input: Result<Req, KmsError> = if req.body().iter().all(u8::is_ascii_whitespace) {
        Ok(Req::default())
    } else {
        serde_json::from_slice(req.body()).map_err(|e| {
            KmsError::Serialization(format!("The request body is not valid KMS JSON: {e}"))
        })
    };
    let (params, hints) = match (&input, kms.audit_enabled()) {
        (Ok(r), true) => (Some(audit_params(r)), resource_hints(kms, r)),
        _ => (None, Vec::new()),
    };
    let result = match input {
        Err(e) => Err(e),
        Ok(input) => {
            call.grant_tokens = input.grant_tokens.clone().unwrap_or_default();
            // With custom key stores, cryptography may wait on an HSM: off the runtime.
            let hsm = |o: Op| kms.uses_hsm() && o.row().kind != crate::kms::ops::Kind::Write;
            if known.is_some_and(|o| o.blocking() || hsm(o)) {
                let (kms, name, caller, call) =
                    (kms.clone(), op.to_string(), caller.clone(), call.clone());
                tokio::task::spawn_blocking(move || {
                    let mut event = None;
                    let who = Caller::new(&caller, &call);
                    let r = dispatch::dispatch(&kms, who, &name, known, input, &mut event);
                    r.map(|v| (v, event))
                })
                .await
                .map_err(|e| KmsError::Internal(format!("KMS worker failed: {e}")))?
            } else {
                let mut event = None;
                let who = Caller::new(&caller, &call);
                dispatch::dispatch(kms, who, op, known, input, &mut event).map(|v| (v, event))
            }
        }
    };
    if kms.audit_enabled() {
        let mut resources = result
            .as_ref()
            .map(|(v, _)| response_arns(v))
            .unwrap_or_default();
        if resources.is_empty() {
            resources = hints;
        }
        kms.record_audit(AuditEvent {
            source: EventSource::Kms,
            time_ms,
            name: op.chars().take(128).collect::<String>().into(),
            principal: Some(caller),
            via: Via::Api,
            source_ip: call.source_ip,
            user_agent: call.user_agent,
            request_id: call.request_id,
            params: params.map(Params::Json),
            response: result.as_ref().ok().map(|(v, _)| audit_response(v)),
            error: result.as_ref().err().map(|e| (e.aws_type(), e.to_string())),
            resources,
            read_only: known.is_some_and(Op::read_only),
            region: Some(region.as_str().into()),
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_answer_in_the_kms_json_shape() {
        let r = error_response(&KmsError::Validation("too big".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], CONTENT_TYPE);
        assert!(r.headers().contains_key("x-amzn-RequestId"));
        let v: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            v,
            json!({"__type": "ValidationException", "message": "too big"})
        );
        let r = error_response(&KmsError::Internal("disk".into()));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            serde_json::from_slice::<Value>(r.body()).unwrap()["__type"],
            "KMSInternalException"
        );
    }
}
