//! The AWS KMS JSON protocol (`POST /`, `X-Amz-Target: TrentService.<Op>`,
//! `application/x-amz-json-1.1`, SigV4 service `kms`).
//!
//! Invariants: every request gets a JSON answer — malformed input becomes
//! Serialization/Validation/UnknownOperation errors, never a panic or a 500; bodies,
//! plaintexts and ciphertexts are never logged; operations that write the database run
//! on the blocking pool so the async runtime never waits on fsync. Every authenticated
//! request writes exactly one audit event (here, not in the core: `Via::Api`), whose
//! `requestParameters` are the request minus blobs and grant tokens and whose
//! `responseElements` are the response minus blobs, tokens and policies.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;
use zeroize::Zeroizing;

use super::access::{CallContext, Via, with_ambient};
use super::asym::{EncryptionAlgorithm, KeySpec, KeyUsageType};
use super::audit::{AuditEvent, Params};
use super::clock::epoch_seconds;
use super::crypto::{self, MAX_BLOB};
use super::grants::{Grant, GrantConstraints, GrantRequest};
use super::model::Op;
use super::{
    CreateKeyOptions, EncryptionContext, Kms, KmsError, MaterialExpiry, Page, ReEncryptParams,
    ReplicaOptions, sigv4,
};

mod asym_api;
use crate::auth::{AccessKeys, Principal};

const TARGET_PREFIX: &str = "TrentService.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Largest request body accepted (the caller is expected to enforce it while reading).
pub const MAX_BODY: usize = 1 << 20;

/// True when the request is addressed to the KMS API.
pub fn is_kms_request(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// Handles one KMS JSON-protocol request (body already read, at most 1 MiB). Verifies
/// SigV4 itself.
pub async fn handle(
    kms: &Kms,
    keys: &AccessKeys,
    req: Request<Bytes>,
    source_ip: Option<IpAddr>,
) -> Response<Bytes> {
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
    };
    let result = serve(kms, keys, &op, req, call)
        .instrument(span.clone())
        .await;
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v.to_string()),
        Err(e) => {
            span.in_scope(|| tracing::info!(error = e.aws_type(), "KMS request failed"));
            (
                e.status(),
                json!({"__type": e.aws_type(), "message": e.to_string()}).to_string(),
            )
        }
    };
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
) -> Result<Value, KmsError> {
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
            if is_mutation(op) || asym_api::is_slow(op) {
                let (kms, op, caller, call) =
                    (kms.clone(), op.to_string(), caller.clone(), call.clone());
                tokio::task::spawn_blocking(move || {
                    with_ambient(call.clone(), || dispatch(&kms, &caller, &call, &op, input))
                })
                .await
                .map_err(|e| KmsError::Internal(format!("KMS worker failed: {e}")))?
            } else {
                with_ambient(call.clone(), || dispatch(kms, &caller, &call, op, input))
            }
        }
    };
    if kms.audit_enabled() {
        let mut resources = result.as_ref().map(response_arns).unwrap_or_default();
        if resources.is_empty() {
            resources = hints;
        }
        kms.record_audit(AuditEvent {
            time_ms,
            name: op.chars().take(128).collect::<String>().into(),
            principal: Some(caller),
            via: Via::Api,
            source_ip: call.source_ip,
            user_agent: call.user_agent,
            request_id: call.request_id,
            params: params.map(Params::Json),
            response: result.as_ref().ok().map(audit_response),
            error: result.as_ref().err().map(|e| (e.aws_type(), e.to_string())),
            resources,
            read_only: is_read_only(op),
            region: Some(region.as_str().into()),
        });
    }
    result
}

fn is_read_only(op: &str) -> bool {
    op.starts_with("Describe")
        || op.starts_with("List")
        || op.starts_with("Get")
        || matches!(op, "GenerateRandom")
}

/// Members never written to the audit log: blobs (plaintexts, keys, ciphertexts) and
/// grant tokens (bearer credentials for a grant).
const SECRET_MEMBERS: &[&str] = &[
    "Plaintext",
    "CiphertextBlob",
    "CiphertextForRecipient",
    "PrivateKeyPlaintext",
    "PrivateKeyCiphertextBlob",
    "Message",
    "Signature",
    "Mac",
    "PublicKey",
    "GrantToken",
    "GrantTokens",
    "ImportToken",
    "EncryptedKeyMaterial",
    "PublicKey",
    "plaintext",
    "ciphertextBlob",
    "grantToken",
    "grantTokens",
];

/// `requestParameters`: the typed request (so blobs, which are skipped when
/// serialising, can never appear), camelCased, without nulls.
fn audit_params(r: &Req) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.retain(|k, x| !x.is_null() && !SECRET_MEMBERS.contains(&k.as_str()));
    }
    v
}

/// `responseElements`: the response with blobs, tokens and policy text removed and
/// top-level member names camelCased, as CloudTrail shows them.
fn audit_response(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return Value::Null;
    };
    let out: serde_json::Map<String, Value> = m
        .iter()
        .filter(|(k, _)| {
            !SECRET_MEMBERS.contains(&k.as_str())
                && !matches!(k.as_str(), "Policy" | "ReplicaPolicy")
        })
        .map(|(k, x)| (camel(k), x.clone()))
        .collect();
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

fn camel(k: &str) -> String {
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Key ARNs named by a successful response.
fn response_arns(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for arn in [
        &v["KeyMetadata"]["Arn"],
        &v["ReplicaKeyMetadata"]["Arn"],
        &v["SourceKeyId"],
        &v["KeyId"],
    ] {
        if let Some(a) = arn.as_str().filter(|a| a.starts_with("arn:aws:kms:")) {
            out.push(a.to_string());
        }
    }
    out
}

/// Key ARNs a request refers to (for events of failed requests).
fn resource_hints(kms: &Kms, r: &Req) -> Vec<String> {
    let blob_key = r
        .ciphertext_blob
        .as_ref()
        .and_then(|b| crypto::parse_blob(&b.0).ok())
        .map(|p| kms.key_arn(&p.key_id));
    [
        r.key_id.as_deref(),
        r.target_key_id.as_deref(),
        r.destination_key_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|k| kms.resolve_arn(k))
    .chain(blob_key)
    .collect()
}

fn is_mutation(op: &str) -> bool {
    matches!(
        op,
        "CreateKey"
            | "UpdateKeyDescription"
            | "TagResource"
            | "UntagResource"
            | "EnableKey"
            | "DisableKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "EnableKeyRotation"
            | "DisableKeyRotation"
            | "RotateKeyOnDemand"
            | "CreateAlias"
            | "UpdateAlias"
            | "DeleteAlias"
            | "PutKeyPolicy"
            | "CreateGrant"
            | "RetireGrant"
            | "RevokeGrant"
            | "ImportKeyMaterial"
            | "DeleteImportedKeyMaterial"
            | "ReplicateKey"
            | "UpdatePrimaryRegion"
            // Writes nothing, but generating an RSA key takes long enough to block.
            | "GetParametersForImport"
    )
}

/// AWS KMS operations sealgate knows of but does not implement yet.
const NOT_YET: &[&str] = &[
    "DeriveSharedSecret",
    "CreateCustomKeyStore",
    "DescribeCustomKeyStores",
    "ConnectCustomKeyStore",
    "DisconnectCustomKeyStore",
    "DeleteCustomKeyStore",
    "UpdateCustomKeyStore",
];

/// Base64 blob from JSON; zeroized on drop (it may be a plaintext).
#[derive(Default)]
struct Blob(Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        B64.decode(s.as_bytes())
            .map(|v| Blob(Zeroizing::new(v)))
            .map_err(|_| serde::de::Error::custom("blob is not valid base64"))
    }
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all(deserialize = "PascalCase", serialize = "camelCase"))]
struct TagJson {
    tag_key: String,
    tag_value: String,
}

/// Every input member of the implemented operations (unknown members are ignored, as the
/// AWS JSON protocol allows). Serialising it (camelCase) gives the audit event's
/// `requestParameters`; blob members and grant tokens are never serialised.
#[derive(Deserialize, Serialize, Default)]
#[serde(
    rename_all(deserialize = "PascalCase", serialize = "camelCase"),
    default
)]
struct Req {
    key_id: Option<String>,
    description: Option<String>,
    tags: Option<Vec<TagJson>>,
    tag_keys: Option<Vec<String>>,
    origin: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    key_usage: Option<String>,
    multi_region: Option<bool>,
    limit: Option<i64>,
    marker: Option<String>,
    #[serde(skip_serializing)]
    plaintext: Option<Blob>,
    #[serde(skip_serializing)]
    ciphertext_blob: Option<Blob>,
    encryption_context: Option<EncryptionContext>,
    encryption_algorithm: Option<String>,
    source_key_id: Option<String>,
    source_encryption_context: Option<EncryptionContext>,
    source_encryption_algorithm: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<EncryptionContext>,
    destination_encryption_algorithm: Option<String>,
    number_of_bytes: Option<i64>,
    pending_window_in_days: Option<i64>,
    rotation_period_in_days: Option<i64>,
    alias_name: Option<String>,
    target_key_id: Option<String>,
    dry_run: Option<bool>,
    policy: Option<String>,
    policy_name: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    grantee_principal: Option<String>,
    retiring_principal: Option<String>,
    operations: Option<Vec<String>>,
    constraints: Option<GrantConstraints>,
    #[serde(skip_serializing)]
    grant_tokens: Option<Vec<String>>,
    name: Option<String>,
    grant_id: Option<String>,
    #[serde(skip_serializing)]
    grant_token: Option<String>,
    #[serde(skip_serializing)]
    message: Option<Blob>,
    message_type: Option<String>,
    #[serde(skip_serializing)]
    signature: Option<Blob>,
    signing_algorithm: Option<String>,
    #[serde(skip_serializing)]
    mac: Option<Blob>,
    mac_algorithm: Option<String>,
    key_pair_spec: Option<String>,
    wrapping_algorithm: Option<String>,
    wrapping_key_spec: Option<String>,
    #[serde(skip_serializing)]
    import_token: Option<Blob>,
    #[serde(skip_serializing)]
    encrypted_key_material: Option<Blob>,
    /// Epoch seconds, as the AWS JSON protocol sends timestamps.
    valid_to: Option<f64>,
    expiration_model: Option<String>,
    replica_region: Option<String>,
    primary_region: Option<String>,
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, KmsError> {
    v.ok_or_else(|| KmsError::constraint("null", field, "Member must not be null"))
}

fn ciphertext(b: Option<Blob>) -> Result<Blob, KmsError> {
    let b = required(b, "ciphertextBlob")?;
    if b.0.is_empty() || b.0.len() > MAX_BLOB {
        return Err(KmsError::constraint(
            format!("<{} bytes>", b.0.len()),
            "ciphertextBlob",
            "Member must have length between 1 and 6144",
        ));
    }
    Ok(b)
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn data_key_len(key_spec: Option<&str>, n: Option<i64>) -> Result<usize, KmsError> {
    match (key_spec, n) {
        (Some(_), Some(_)) => Err(KmsError::Validation(
            "Specify either KeySpec or NumberOfBytes, not both.".into(),
        )),
        (None, None) => Err(KmsError::Validation(
            "Please specify either number of bytes or key spec.".into(),
        )),
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(s), None) => Err(KmsError::constraint(
            s,
            "keySpec",
            "Member must satisfy enum value set: [AES_256, AES_128]",
        )),
        (None, Some(n)) if (1..=1024).contains(&n) => Ok(n as usize),
        (None, Some(n)) => Err(KmsError::constraint(
            n,
            "numberOfBytes",
            "Member must have value between 1 and 1024",
        )),
    }
}

fn page_json<T>(page: Page<T>, field: &str, item: impl Fn(T) -> Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(
        field.into(),
        Value::Array(page.items.into_iter().map(item).collect()),
    );
    out.insert("Truncated".into(), Value::Bool(page.next_marker.is_some()));
    if let Some(m) = page.next_marker {
        out.insert("NextMarker".into(), Value::String(m));
    }
    Value::Object(out)
}

fn create_options(r: &mut Req) -> Result<CreateKeyOptions, KmsError> {
    let key_spec = match (&r.key_spec, &r.customer_master_key_spec) {
        (Some(_), Some(_)) => {
            return Err(KmsError::Validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.".into(),
            ));
        }
        (Some(s), None) => KeySpec::parse(s, "keySpec")?,
        (None, Some(s)) => KeySpec::parse(s, "customerMasterKeySpec")?,
        (None, None) => KeySpec::SymmetricDefault,
    };
    let key_usage = match &r.key_usage {
        Some(u) => KeyUsageType::parse(u)?,
        None => KeyUsageType::EncryptDecrypt,
    };
    let external = match r.origin.as_deref() {
        None | Some("AWS_KMS") => false,
        Some("EXTERNAL") => true,
        Some(o @ ("AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE")) => {
            return Err(KmsError::UnsupportedOperation(format!(
                "Origin {o} (custom key stores) is not supported."
            )));
        }
        Some(o) => {
            return Err(KmsError::constraint(
                o,
                "origin",
                "Member must satisfy enum value set: [EXTERNAL, AWS_CLOUDHSM, AWS_KMS, EXTERNAL_KEY_STORE]",
            ));
        }
    };
    if external && key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::UnsupportedOperation(format!(
            "sealgate imports key material for SYMMETRIC_DEFAULT keys only, not {}.",
            key_spec.as_str()
        )));
    }
    Ok(CreateKeyOptions {
        description: r.description.take().unwrap_or_default(),
        tags: tags(r.tags.take().unwrap_or_default()),
        external,
        policy: r.policy.take(),
        bypass_policy_lockout_safety_check: r.bypass_policy_lockout_safety_check == Some(true),
        key_spec,
        key_usage,
        multi_region: r.multi_region == Some(true),
    })
}

fn tags(t: Vec<TagJson>) -> Vec<(String, String)> {
    t.into_iter().map(|t| (t.tag_key, t.tag_value)).collect()
}

fn grant_json(g: Grant, kms: &Kms) -> Value {
    let mut v = json!({
        "KeyId": kms.key_arn(&g.key_id),
        "GrantId": g.grant_id,
        "CreationDate": epoch_seconds(g.created_ms),
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": g.issuing_account,
        "Operations": g.operations,
    });
    if let Some(n) = g.name {
        v["Name"] = json!(n);
    }
    if let Some(r) = g.retiring_principal {
        v["RetiringPrincipal"] = json!(r);
    }
    if let Some(c) = g.constraints {
        v["Constraints"] = json!(c);
    }
    v
}

/// `DryRun: true` on the operations that accept it: the outcome without the effect.
fn dry_run(
    kms: &Kms,
    caller: &Principal,
    call: &CallContext,
    op: &str,
    r: &Req,
) -> Result<Value, KmsError> {
    let empty = EncryptionContext::new();
    let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
    let blob_key = || -> Result<String, KmsError> {
        let b = r.ciphertext_blob.as_ref().ok_or_else(|| {
            KmsError::constraint("null", "ciphertextBlob", "Member must not be null")
        })?;
        Ok(crypto::parse_blob(&b.0)?.key_id.to_string())
    };
    let key = || required(r.key_id.clone(), "keyId");
    let err = match op {
        "Encrypt" => kms.dry_run(caller, call, Op::Encrypt, &key()?, ctx),
        "GenerateDataKey" => kms.dry_run(caller, call, Op::GenerateDataKey, &key()?, ctx),
        "GenerateDataKeyWithoutPlaintext" => kms.dry_run(
            caller,
            call,
            Op::GenerateDataKeyWithoutPlaintext,
            &key()?,
            ctx,
        ),
        "Decrypt" => kms.dry_run(caller, call, Op::Decrypt, &blob_key()?, ctx),
        "ReEncrypt" => {
            let src_ctx = r.source_encryption_context.as_ref().unwrap_or(&empty);
            match kms.dry_run(caller, call, Op::ReEncryptFrom, &blob_key()?, src_ctx) {
                KmsError::DryRunOperation(_) => {
                    let dst = required(r.destination_key_id.clone(), "destinationKeyId")?;
                    let dst_ctx = r.destination_encryption_context.as_ref().unwrap_or(&empty);
                    kms.dry_run(caller, call, Op::ReEncryptTo, &dst, dst_ctx)
                }
                e => e,
            }
        }
        "CreateGrant" => kms.dry_run(caller, call, Op::CreateGrant, &key()?, &empty),
        "RevokeGrant" => kms.dry_run(caller, call, Op::RevokeGrant, &key()?, &empty),
        op => match asym_api::dry_run_op(op) {
            Some(op) => kms.dry_run(caller, call, op, &key()?, ctx),
            None => KmsError::UnsupportedOperation(format!(
                "DryRun is not supported for {op} by sealgate's KMS."
            )),
        },
    };
    Err(err)
}

fn dispatch(
    kms: &Kms,
    caller: &Principal,
    call: &CallContext,
    op: &str,
    mut r: Req,
) -> Result<Value, KmsError> {
    let empty = EncryptionContext::new();
    let key_id = |r: &Req| required(r.key_id.clone(), "keyId");
    let ok = || Ok(json!({}));
    if r.dry_run == Some(true) {
        return dry_run(kms, caller, call, op, &r);
    }
    match op {
        "CreateKey" => {
            let opts = create_options(&mut r)?;
            Ok(json!({"KeyMetadata": kms.create_key(caller, &opts)?}))
        }
        "DescribeKey" => Ok(json!({"KeyMetadata": kms.describe_key(caller, &key_id(&r)?)?})),
        "ListKeys" => {
            let page = kms.list_keys(caller, r.limit, r.marker.as_deref())?;
            Ok(page_json(
                page,
                "Keys",
                |(id, arn)| json!({"KeyId": id, "KeyArn": arn}),
            ))
        }
        "UpdateKeyDescription" => {
            let d = required(r.description.clone(), "description")?;
            kms.update_key_description(caller, &key_id(&r)?, &d)?;
            ok()
        }
        "TagResource" => {
            let t = tags(required(r.tags.take(), "tags")?);
            kms.tag_resource(caller, &key_id(&r)?, &t)?;
            ok()
        }
        "UntagResource" => {
            let t = required(r.tag_keys.take(), "tagKeys")?;
            kms.untag_resource(caller, &key_id(&r)?, &t)?;
            ok()
        }
        "ListResourceTags" => {
            let page =
                kms.list_resource_tags(caller, &key_id(&r)?, r.limit, r.marker.as_deref())?;
            Ok(page_json(
                page,
                "Tags",
                |(k, v)| json!({"TagKey": k, "TagValue": v}),
            ))
        }
        "EnableKey" => kms.enable_key(caller, &key_id(&r)?).and_then(|_| ok()),
        "DisableKey" => kms.disable_key(caller, &key_id(&r)?).and_then(|_| ok()),
        "ScheduleKeyDeletion" => {
            let (arn, when, days) =
                kms.schedule_key_deletion(caller, &key_id(&r)?, r.pending_window_in_days)?;
            Ok(json!({
                "KeyId": arn,
                "DeletionDate": epoch_seconds(when),
                "KeyState": "PendingDeletion",
                "PendingWindowInDays": days,
            }))
        }
        "CancelKeyDeletion" => Ok(json!({"KeyId": kms.cancel_key_deletion(caller, &key_id(&r)?)?})),
        "EnableKeyRotation" => {
            kms.enable_key_rotation(caller, &key_id(&r)?, r.rotation_period_in_days)?;
            ok()
        }
        "DisableKeyRotation" => kms
            .disable_key_rotation(caller, &key_id(&r)?)
            .and_then(|_| ok()),
        "GetKeyRotationStatus" => {
            let s = kms.get_key_rotation_status(caller, &key_id(&r)?)?;
            let mut v = json!({"KeyRotationEnabled": s.enabled, "KeyId": s.key_arn});
            if let (Some(p), Some(n)) = (s.period_days, s.next_rotation_ms) {
                v["RotationPeriodInDays"] = json!(p);
                v["NextRotationDate"] = json!(epoch_seconds(n));
            }
            Ok(v)
        }
        "RotateKeyOnDemand" => {
            Ok(json!({"KeyId": kms.rotate_key_on_demand(caller, &key_id(&r)?)?}))
        }
        "ListKeyRotations" => {
            let page =
                kms.list_key_rotations(caller, &key_id(&r)?, r.limit, r.marker.as_deref())?;
            Ok(page_json(page, "Rotations", |e| {
                json!({
                    "KeyId": e.key_id,
                    "RotationDate": epoch_seconds(e.rotation_ms),
                    "RotationType": if e.on_demand { "ON_DEMAND" } else { "AUTOMATIC" },
                })
            }))
        }
        "CreateAlias" | "UpdateAlias" => {
            let name = required(r.alias_name.clone(), "aliasName")?;
            let target = required(r.target_key_id.clone(), "targetKeyId")?;
            if op == "CreateAlias" {
                kms.create_alias(caller, &name, &target)?;
            } else {
                kms.update_alias(caller, &name, &target)?;
            }
            ok()
        }
        "DeleteAlias" => {
            let name = required(r.alias_name.clone(), "aliasName")?;
            kms.delete_alias(caller, &name)?;
            ok()
        }
        "ListAliases" => {
            let page =
                kms.list_aliases(caller, r.key_id.as_deref(), r.limit, r.marker.as_deref())?;
            Ok(page_json(page, "Aliases", |a| {
                json!({
                    "AliasName": a.name,
                    "AliasArn": a.arn,
                    "TargetKeyId": a.target,
                    "CreationDate": a.created_ms.map(epoch_seconds),
                    "LastUpdatedDate": a.updated_ms.map(epoch_seconds),
                })
            }))
        }
        "Encrypt" => {
            let alg = EncryptionAlgorithm::parse(
                r.encryption_algorithm.as_deref(),
                "encryptionAlgorithm",
            )?;
            let pt = required(r.plaintext.take(), "plaintext")?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let (blob, arn) = kms.encrypt_with(caller, call, &key_id(&r)?, &pt.0, ctx, alg)?;
            Ok(json!({
                "CiphertextBlob": b64(&blob),
                "KeyId": arn,
                "EncryptionAlgorithm": alg,
            }))
        }
        "Decrypt" => {
            let alg = EncryptionAlgorithm::parse(
                r.encryption_algorithm.as_deref(),
                "encryptionAlgorithm",
            )?;
            let blob = ciphertext(r.ciphertext_blob.take())?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let d = kms.decrypt_with(caller, call, r.key_id.as_deref(), &blob.0, ctx, alg)?;
            Ok(json!({
                "KeyId": d.key_arn,
                "Plaintext": b64(&d.plaintext),
                "EncryptionAlgorithm": alg,
            }))
        }
        "ReEncrypt" => {
            let src_alg = EncryptionAlgorithm::parse(
                r.source_encryption_algorithm.as_deref(),
                "sourceEncryptionAlgorithm",
            )?;
            let dst_alg = EncryptionAlgorithm::parse(
                r.destination_encryption_algorithm.as_deref(),
                "destinationEncryptionAlgorithm",
            )?;
            let blob = ciphertext(r.ciphertext_blob.take())?;
            let dst = required(r.destination_key_id.clone(), "destinationKeyId")?;
            let p = ReEncryptParams {
                ciphertext: &blob.0,
                source_key_id: r.source_key_id.as_deref(),
                source_context: r.source_encryption_context.as_ref().unwrap_or(&empty),
                source_algorithm: src_alg,
                destination_key_id: &dst,
                destination_context: r.destination_encryption_context.as_ref().unwrap_or(&empty),
                destination_algorithm: dst_alg,
            };
            let (new, src_arn, dst_arn) = kms.re_encrypt_with(caller, call, &p)?;
            Ok(json!({
                "CiphertextBlob": b64(&new),
                "SourceKeyId": src_arn,
                "KeyId": dst_arn,
                "SourceEncryptionAlgorithm": src_alg,
                "DestinationEncryptionAlgorithm": dst_alg,
            }))
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            let n = data_key_len(r.key_spec.as_deref(), r.number_of_bytes)?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let id = key_id(&r)?;
            if op == "GenerateDataKey" {
                let dk = kms.generate_data_key_via(caller, call, &id, ctx, n)?;
                Ok(json!({
                    "CiphertextBlob": b64(&dk.ciphertext_blob),
                    "Plaintext": b64(&dk.plaintext),
                    "KeyId": dk.key_arn,
                }))
            } else {
                let (blob, arn) =
                    kms.generate_data_key_without_plaintext_via(caller, call, &id, ctx, n)?;
                Ok(json!({"CiphertextBlob": b64(&blob), "KeyId": arn}))
            }
        }
        "GetKeyPolicy" => {
            let p = kms.get_key_policy(caller, &key_id(&r)?, r.policy_name.as_deref())?;
            Ok(json!({"Policy": p, "PolicyName": "default"}))
        }
        "PutKeyPolicy" => {
            let p = required(r.policy.clone(), "policy")?;
            let bypass = r.bypass_policy_lockout_safety_check == Some(true);
            kms.put_key_policy(caller, &key_id(&r)?, r.policy_name.as_deref(), &p, bypass)?;
            ok()
        }
        "ListKeyPolicies" => {
            let names = kms.list_key_policies(caller, &key_id(&r)?)?;
            Ok(json!({"PolicyNames": names, "Truncated": false}))
        }
        "CreateGrant" => {
            let req = GrantRequest {
                grantee_principal: required(r.grantee_principal.take(), "granteePrincipal")?,
                retiring_principal: r.retiring_principal.take(),
                operations: required(r.operations.take(), "operations")?,
                constraints: r.constraints.take(),
                name: r.name.take(),
            };
            let (id, token) = kms.create_grant(caller, &key_id(&r)?, &req)?;
            Ok(json!({"GrantId": id, "GrantToken": token}))
        }
        "ListGrants" => {
            let page = kms.list_grants(
                caller,
                &key_id(&r)?,
                r.grant_id.as_deref(),
                r.grantee_principal.as_deref(),
                r.limit,
                r.marker.as_deref(),
            )?;
            Ok(page_json(page, "Grants", |g| grant_json(g, kms)))
        }
        "ListRetirableGrants" => {
            let who = required(r.retiring_principal.clone(), "retiringPrincipal")?;
            let page = kms.list_retirable_grants(caller, &who, r.limit, r.marker.as_deref())?;
            Ok(page_json(page, "Grants", |g| grant_json(g, kms)))
        }
        "RetireGrant" => {
            kms.retire_grant(
                caller,
                r.grant_token.as_deref(),
                r.key_id.as_deref(),
                r.grant_id.as_deref(),
            )?;
            ok()
        }
        "RevokeGrant" => {
            let id = required(r.grant_id.clone(), "grantId")?;
            kms.revoke_grant(caller, &key_id(&r)?, &id)?;
            ok()
        }
        "GetParametersForImport" => {
            let alg = required(r.wrapping_algorithm.clone(), "wrappingAlgorithm")?;
            let spec = r.wrapping_key_spec.as_deref();
            let (arn, p) = kms.get_parameters_for_import(caller, &key_id(&r)?, &alg, spec)?;
            Ok(json!({
                "KeyId": arn,
                "ImportToken": b64(&p.import_token),
                "PublicKey": b64(&p.public_key),
                "ParametersValidTo": epoch_seconds(p.valid_to_ms),
            }))
        }
        "ImportKeyMaterial" => {
            let token = required(r.import_token.take(), "importToken")?;
            let material = required(r.encrypted_key_material.take(), "encryptedKeyMaterial")?;
            let valid_to_ms = r.valid_to.map(|t| (t * 1000.0) as i64);
            let expiry = MaterialExpiry::parse(r.expiration_model.as_deref(), valid_to_ms)?;
            let arn =
                kms.import_key_material(caller, &key_id(&r)?, &token.0, &material.0, expiry)?;
            Ok(json!({"KeyId": arn}))
        }
        "DeleteImportedKeyMaterial" => {
            Ok(json!({"KeyId": kms.delete_imported_key_material(caller, &key_id(&r)?)?}))
        }
        "ReplicateKey" => {
            let region = required(r.replica_region.clone(), "replicaRegion")?;
            let opts = ReplicaOptions {
                description: r.description.take().unwrap_or_default(),
                tags: tags(r.tags.take().unwrap_or_default()),
                policy: r.policy.take(),
                bypass_policy_lockout_safety_check: r.bypass_policy_lockout_safety_check
                    == Some(true),
            };
            let rep = kms.replicate_key(caller, &key_id(&r)?, &region, &opts)?;
            let tags: Vec<Value> = rep
                .tags
                .into_iter()
                .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
                .collect();
            Ok(json!({
                "ReplicaKeyMetadata": rep.metadata,
                "ReplicaPolicy": rep.policy,
                "ReplicaTags": tags,
            }))
        }
        "UpdatePrimaryRegion" => {
            let region = required(r.primary_region.clone(), "primaryRegion")?;
            kms.update_primary_region(caller, &key_id(&r)?, &region)?;
            ok()
        }
        "GenerateRandom" => {
            let n = required(r.number_of_bytes, "numberOfBytes")?;
            Ok(json!({"Plaintext": b64(&kms.generate_random(caller, n)?)}))
        }
        op if asym_api::handles(op) => asym_api::dispatch(kms, caller, call, op, r),
        op if NOT_YET.contains(&op) => Err(KmsError::UnsupportedOperation(format!(
            "{op} is not implemented by sealgate's KMS yet."
        ))),
        op => Err(KmsError::UnknownOperation(format!(
            "Unknown operation TrentService.{op}"
        ))),
    }
}
