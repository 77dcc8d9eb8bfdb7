//! The AWS KMS JSON protocol (`POST /`, `X-Amz-Target: TrentService.<Op>`,
//! `application/x-amz-json-1.1`, SigV4 service `kms`).
//!
//! Invariants: every request gets a JSON answer — malformed input becomes
//! Serialization/Validation/UnknownOperation errors, never a panic or a 500; bodies,
//! plaintexts and ciphertexts are never logged; operations that write the database run
//! on the blocking pool so the async runtime never waits on fsync.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tracing::Instrument;
use zeroize::Zeroizing;

use super::clock::epoch_seconds;
use super::crypto::MAX_BLOB;
use super::{CreateKeyOptions, EncryptionContext, Kms, KmsError, Page, sigv4};
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
    let result = serve(kms, keys, &op, req).instrument(span.clone()).await;
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
    let caller = sigv4::verify(&req, keys, kms.region(), std::time::SystemTime::now())?;
    let input: Req = if req.body().iter().all(u8::is_ascii_whitespace) {
        Req::default()
    } else {
        serde_json::from_slice(req.body()).map_err(|e| {
            KmsError::Serialization(format!("The request body is not valid KMS JSON: {e}"))
        })?
    };
    if input.dry_run == Some(true) {
        return Err(KmsError::UnsupportedOperation(
            "DryRun is not supported by sealgate's KMS.".into(),
        ));
    }
    if is_mutation(op) {
        let (kms, op) = (kms.clone(), op.to_string());
        tokio::task::spawn_blocking(move || dispatch(&kms, &caller, &op, input))
            .await
            .map_err(|e| KmsError::Internal(format!("KMS worker failed: {e}")))?
    } else {
        dispatch(kms, &caller, op, input)
    }
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
    )
}

/// AWS KMS operations sealgate knows of but does not implement yet.
const NOT_YET: &[&str] = &[
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ListKeyPolicies",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "GetPublicKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
    "ReplicateKey",
    "UpdatePrimaryRegion",
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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagJson {
    tag_key: String,
    tag_value: String,
}

/// Every input member of the implemented operations (unknown members are ignored, as the
/// AWS JSON protocol allows).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
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
    plaintext: Option<Blob>,
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
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, KmsError> {
    v.ok_or_else(|| KmsError::constraint("null", field, "Member must not be null"))
}

fn check_algorithm(a: Option<&str>) -> Result<(), KmsError> {
    match a {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(a @ ("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE")) => {
            Err(KmsError::InvalidKeyUsage(format!(
                "{a} is not valid for a symmetric key; use SYMMETRIC_DEFAULT."
            )))
        }
        Some(a) => Err(KmsError::constraint(
            a,
            "encryptionAlgorithm",
            "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
        )),
    }
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
    let spec = r
        .key_spec
        .as_deref()
        .or(r.customer_master_key_spec.as_deref());
    if spec.is_some_and(|s| s != "SYMMETRIC_DEFAULT") {
        return Err(KmsError::UnsupportedOperation(format!(
            "KeySpec {} is not supported yet; sealgate's KMS creates SYMMETRIC_DEFAULT keys.",
            spec.unwrap_or_default()
        )));
    }
    if r.key_usage
        .as_deref()
        .is_some_and(|u| u != "ENCRYPT_DECRYPT")
    {
        return Err(KmsError::UnsupportedOperation(
            "Only KeyUsage ENCRYPT_DECRYPT is supported for SYMMETRIC_DEFAULT keys.".into(),
        ));
    }
    if r.multi_region == Some(true) {
        return Err(KmsError::UnsupportedOperation(
            "Multi-Region keys are not supported yet.".into(),
        ));
    }
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
    Ok(CreateKeyOptions {
        description: r.description.take().unwrap_or_default(),
        tags: tags(r.tags.take().unwrap_or_default()),
        external,
    })
}

fn tags(t: Vec<TagJson>) -> Vec<(String, String)> {
    t.into_iter().map(|t| (t.tag_key, t.tag_value)).collect()
}

fn dispatch(kms: &Kms, caller: &Principal, op: &str, mut r: Req) -> Result<Value, KmsError> {
    let empty = EncryptionContext::new();
    let key_id = |r: &Req| required(r.key_id.clone(), "keyId");
    let ok = || Ok(json!({}));
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
            check_algorithm(r.encryption_algorithm.as_deref())?;
            let pt = required(r.plaintext.take(), "plaintext")?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let (blob, arn) = kms.encrypt(caller, &key_id(&r)?, &pt.0, ctx)?;
            Ok(json!({
                "CiphertextBlob": b64(&blob),
                "KeyId": arn,
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        "Decrypt" => {
            check_algorithm(r.encryption_algorithm.as_deref())?;
            let blob = ciphertext(r.ciphertext_blob.take())?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let d = kms.decrypt(caller, r.key_id.as_deref(), &blob.0, ctx)?;
            Ok(json!({
                "KeyId": d.key_arn,
                "Plaintext": b64(&d.plaintext),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        "ReEncrypt" => {
            check_algorithm(r.source_encryption_algorithm.as_deref())?;
            check_algorithm(r.destination_encryption_algorithm.as_deref())?;
            let blob = ciphertext(r.ciphertext_blob.take())?;
            let dst = required(r.destination_key_id.clone(), "destinationKeyId")?;
            let (new, src_arn, dst_arn) = kms.re_encrypt(
                caller,
                &blob.0,
                r.source_encryption_context.as_ref().unwrap_or(&empty),
                r.source_key_id.as_deref(),
                &dst,
                r.destination_encryption_context.as_ref().unwrap_or(&empty),
            )?;
            Ok(json!({
                "CiphertextBlob": b64(&new),
                "SourceKeyId": src_arn,
                "KeyId": dst_arn,
                "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            let n = data_key_len(r.key_spec.as_deref(), r.number_of_bytes)?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let id = key_id(&r)?;
            if op == "GenerateDataKey" {
                let dk = kms.generate_data_key(caller, &id, ctx, n)?;
                Ok(json!({
                    "CiphertextBlob": b64(&dk.ciphertext_blob),
                    "Plaintext": b64(&dk.plaintext),
                    "KeyId": dk.key_arn,
                }))
            } else {
                let (blob, arn) = kms.generate_data_key_without_plaintext(caller, &id, ctx, n)?;
                Ok(json!({"CiphertextBlob": b64(&blob), "KeyId": arn}))
            }
        }
        "GenerateRandom" => {
            let n = required(r.number_of_bytes, "numberOfBytes")?;
            Ok(json!({"Plaintext": b64(&kms.generate_random(caller, n)?)}))
        }
        op if NOT_YET.contains(&op) => Err(KmsError::UnsupportedOperation(format!(
            "{op} is not implemented by sealgate's KMS yet."
        ))),
        op => Err(KmsError::UnknownOperation(format!(
            "Unknown operation TrentService.{op}"
        ))),
    }
}
