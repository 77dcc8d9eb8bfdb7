//! From a parsed request to the service call and its JSON answer, one arm per
//! operation; `DryRun: true` requests are answered by `dry_run`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::request::{Req, ciphertext, create_options, data_key_len, required, tags};
use super::{KeyEvent, asym};
use crate::kms::asym::EncryptionAlgorithm;
use crate::kms::caller::{CallContext, Caller};
use crate::kms::clock::{epoch_seconds, system_time};
use crate::kms::grants::{Grant, GrantRequest};
use crate::kms::ops::{DryRun, Op};
use crate::kms::{
    CustomKeyStoreUpdate, EncryptionContext, Kms, KmsError, MaterialExpiry, NewCustomKeyStore,
    Page, ReEncryptParams, ReplicaOptions, crypto,
};

pub(super) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
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

/// AWS's answer to a dry run that would have succeeded.
const DRY_RUN_OK: &str = "The request would have succeeded, but the DryRun option is set.";

/// The operations that take a `Recipient` (Nitro Enclaves attestation).
const RECIPIENT_OPS: &[Op] = &[
    Op::Decrypt,
    Op::DeriveSharedSecret,
    Op::GenerateDataKey,
    Op::GenerateDataKeyPair,
    Op::GenerateRandom,
];

/// `Recipient` asks KMS to encrypt the secret to an enclave's attested public key
/// instead of returning it. sealgate cannot verify an attestation document (AWS Nitro's
/// PKI), and answering with the plaintext would hand the secret to whoever asked, so a
/// request carrying one is refused whole.
fn refuse_recipient(op: Op, r: &Req) -> Result<(), KmsError> {
    if r.recipient.is_some() && RECIPIENT_OPS.contains(&op) {
        return Err(KmsError::UnsupportedOperation(format!(
            "{} with a Recipient (Nitro Enclaves attestation) is not supported by sealgate's KMS: it cannot verify attestation documents, and it never returns the plaintext instead. Call it without Recipient.",
            op.name()
        )));
    }
    Ok(())
}

/// `DryRunModifiers` holds `IGNORE_CIPHERTEXT` (the only value AWS defines).
fn ignore_ciphertext(r: &Req) -> Result<bool, KmsError> {
    let mut ignore = false;
    for (i, m) in r.dry_run_modifiers.iter().flatten().enumerate() {
        if m != "IGNORE_CIPHERTEXT" {
            return Err(crate::kms::constraints::not_in_enum(
                m,
                &format!("dryRunModifiers.{}.member", i + 1),
                &["IGNORE_CIPHERTEXT"],
            ));
        }
        ignore = true;
    }
    Ok(ignore)
}

/// `DryRun: true`: the call runs with `CallContext::dry_run` set, so it checks its
/// parameters, the permission, the key's state and usage (and, for Decrypt and
/// ReEncrypt, the ciphertext), changes nothing and counts no use; the answer is the
/// error the real call would get, or DryRunOperationException (with sealgate's
/// explanation of what allowed it) when it would have succeeded. With
/// `DryRunModifiers: [IGNORE_CIPHERTEXT]` Decrypt and ReEncrypt check only the
/// permission on the key named by `KeyId` / `SourceKeyId` (and `DestinationKeyId`).
fn dry_run(
    kms: &Kms,
    who: Caller<'_>,
    op: Op,
    r: Req,
    event: &mut Option<KeyEvent>,
) -> Result<Value, KmsError> {
    let empty = EncryptionContext::new();
    if op.row().dry_run == DryRun::No {
        return Err(KmsError::UnsupportedOperation(format!(
            "{} does not take DryRun (AWS defines it only for Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateDataKeyPair*, Sign, Verify, GenerateMac, VerifyMac, DeriveSharedSecret and the grant operations).",
            op.name()
        )));
    }
    if op.row().dry_run == DryRun::WithModifiers && ignore_ciphertext(&r)? {
        let (field, key) = match op {
            Op::Decrypt => ("keyId", r.key_id.as_deref()),
            _ => ("sourceKeyId", r.source_key_id.as_deref()),
        };
        let key = key.ok_or_else(|| crate::kms::constraints::missing(field))?;
        if op == Op::Decrypt {
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            return Err(kms.dry_run(who, Op::Decrypt, key, ctx));
        }
        let src_ctx = r.source_encryption_context.as_ref().unwrap_or(&empty);
        return Err(match kms.dry_run(who, Op::ReEncryptFrom, key, src_ctx) {
            KmsError::DryRunOperation(_) => {
                let dst = required(r.destination_key_id.clone(), "destinationKeyId")?;
                let dst_ctx = r.destination_encryption_context.as_ref().unwrap_or(&empty);
                kms.dry_run(who, Op::ReEncryptTo, &dst, dst_ctx)
            }
            e => e,
        });
    }
    // The key and context an explanation of success names.
    let (key, ctx) = match op {
        Op::Decrypt | Op::ReEncrypt => (
            r.ciphertext_blob
                .as_ref()
                .and_then(|b| crypto::parse_blob(&b.0).ok())
                .map(|p| p.key_id.to_string())
                .or_else(|| r.key_id.clone()),
            r.encryption_context
                .clone()
                .or_else(|| r.source_encryption_context.clone()),
        ),
        _ => (r.key_id.clone(), r.encryption_context.clone()),
    };
    let call = CallContext {
        dry_run: true,
        ..who.call.clone()
    };
    let who = Caller::new(who.principal, &call);
    match run(kms, who, op, r, event) {
        Ok(_) | Err(KmsError::DryRunOperation(_)) => {
            let ctx = ctx.unwrap_or_default();
            let why = key
                .and_then(|k| kms.explain(who, op.action(), &k, &ctx).ok())
                .map(|x| format!(" {x}"))
                .unwrap_or_default();
            Err(KmsError::DryRunOperation(format!("{DRY_RUN_OK}{why}")))
        }
        Err(e) => Err(e),
    }
}

/// Runs operation `name` (`op` when the table knows it); a key-lifecycle change it makes
/// goes to `event`.
pub(super) fn dispatch(
    kms: &Kms,
    who: Caller<'_>,
    name: &str,
    op: Option<Op>,
    r: Req,
    event: &mut Option<KeyEvent>,
) -> Result<Value, KmsError> {
    let op = match op {
        Some(op) if op.implemented() => op,
        Some(_) => {
            return Err(KmsError::UnsupportedOperation(format!(
                "{name} is not implemented by sealgate's KMS yet."
            )));
        }
        None => return Err(unknown(name)),
    };
    refuse_recipient(op, &r)?;
    // Nothing is answered from state older than the shared store's staleness bound.
    kms.check_fresh()?;
    if r.dry_run == Some(true) {
        return dry_run(kms, who, op, r, event);
    }
    run(kms, who, op, r, event)
}

/// The operation itself: the service call and its JSON answer.
fn run(
    kms: &Kms,
    who: Caller<'_>,
    op: Op,
    mut r: Req,
    event: &mut Option<KeyEvent>,
) -> Result<Value, KmsError> {
    let empty = EncryptionContext::new();
    let key_id = |r: &Req| required(r.key_id.clone(), "keyId");
    let ok = || Ok(json!({}));
    match op {
        Op::CreateKey => {
            let opts = create_options(&mut r)?;
            Ok(json!({"KeyMetadata": kms.create_key(who, &opts)?}))
        }
        Op::DescribeKey => Ok(json!({"KeyMetadata": kms.describe_key(who, &key_id(&r)?)?})),
        Op::ListKeys => {
            let page = kms.list_keys(who, r.limit, r.marker.as_deref())?;
            Ok(page_json(
                page,
                "Keys",
                |(id, arn)| json!({"KeyId": id, "KeyArn": arn}),
            ))
        }
        Op::UpdateKeyDescription => {
            let d = required(r.description.clone(), "description")?;
            kms.update_key_description(who, &key_id(&r)?, &d)?;
            ok()
        }
        Op::TagResource => {
            let t = tags(required(r.tags.take(), "tags")?);
            kms.tag_resource(who, &key_id(&r)?, &t)?;
            ok()
        }
        Op::UntagResource => {
            let t = required(r.tag_keys.take(), "tagKeys")?;
            kms.untag_resource(who, &key_id(&r)?, &t)?;
            ok()
        }
        Op::ListResourceTags => {
            let page = kms.list_resource_tags(who, &key_id(&r)?, r.limit, r.marker.as_deref())?;
            Ok(page_json(
                page,
                "Tags",
                |(k, v)| json!({"TagKey": k, "TagValue": v}),
            ))
        }
        Op::EnableKey => kms.enable_key(who, &key_id(&r)?).and_then(|_| ok()),
        Op::DisableKey => kms.disable_key(who, &key_id(&r)?).and_then(|_| ok()),
        Op::ScheduleKeyDeletion => {
            let (arn, when, days) =
                kms.schedule_key_deletion(who, &key_id(&r)?, r.pending_window_in_days)?;
            *event = Some(KeyEvent::DeletionScheduled {
                key_arn: arn.clone(),
                deletion_date: system_time(when),
            });
            Ok(json!({
                "KeyId": arn,
                "DeletionDate": epoch_seconds(when),
                "KeyState": "PendingDeletion",
                "PendingWindowInDays": days,
            }))
        }
        Op::CancelKeyDeletion => {
            let arn = kms.cancel_key_deletion(who, &key_id(&r)?)?;
            *event = Some(KeyEvent::DeletionCancelled {
                key_arn: arn.clone(),
            });
            Ok(json!({"KeyId": arn}))
        }
        Op::EnableKeyRotation => {
            kms.enable_key_rotation(who, &key_id(&r)?, r.rotation_period_in_days)?;
            ok()
        }
        Op::DisableKeyRotation => kms
            .disable_key_rotation(who, &key_id(&r)?)
            .and_then(|_| ok()),
        Op::GetKeyRotationStatus => {
            let s = kms.get_key_rotation_status(who, &key_id(&r)?)?;
            let mut v = json!({"KeyRotationEnabled": s.enabled, "KeyId": s.key_arn});
            if let (Some(p), Some(n)) = (s.period_days, s.next_rotation_ms) {
                v["RotationPeriodInDays"] = json!(p);
                v["NextRotationDate"] = json!(epoch_seconds(n));
            }
            Ok(v)
        }
        Op::RotateKeyOnDemand => Ok(json!({"KeyId": kms.rotate_key_on_demand(who, &key_id(&r)?)?})),
        Op::ListKeyRotations => {
            let page = kms.list_key_rotations(who, &key_id(&r)?, r.limit, r.marker.as_deref())?;
            Ok(page_json(page, "Rotations", |e| {
                json!({
                    "KeyId": e.key_id,
                    "RotationDate": epoch_seconds(e.rotation_ms),
                    "RotationType": if e.on_demand { "ON_DEMAND" } else { "AUTOMATIC" },
                })
            }))
        }
        Op::CreateAlias | Op::UpdateAlias => {
            let name = required(r.alias_name.clone(), "aliasName")?;
            let target = required(r.target_key_id.clone(), "targetKeyId")?;
            if op == Op::CreateAlias {
                kms.create_alias(who, &name, &target)?;
            } else {
                kms.update_alias(who, &name, &target)?;
            }
            ok()
        }
        Op::DeleteAlias => {
            let name = required(r.alias_name.clone(), "aliasName")?;
            kms.delete_alias(who, &name)?;
            ok()
        }
        Op::ListAliases => {
            let page = kms.list_aliases(who, r.key_id.as_deref(), r.limit, r.marker.as_deref())?;
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
        Op::Encrypt => {
            let alg = EncryptionAlgorithm::parse(
                r.encryption_algorithm.as_deref(),
                "encryptionAlgorithm",
            )?;
            let pt = required(r.plaintext.take(), "plaintext")?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let (blob, arn) = kms.encrypt(who, &key_id(&r)?, &pt.0, ctx, alg)?;
            Ok(json!({
                "CiphertextBlob": b64(&blob),
                "KeyId": arn,
                "EncryptionAlgorithm": alg,
            }))
        }
        Op::Decrypt => {
            let alg = EncryptionAlgorithm::parse(
                r.encryption_algorithm.as_deref(),
                "encryptionAlgorithm",
            )?;
            let blob = ciphertext(r.ciphertext_blob.take())?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let d = kms.decrypt(who, r.key_id.as_deref(), &blob.0, ctx, alg)?;
            Ok(json!({
                "KeyId": d.key_arn,
                "Plaintext": b64(&d.plaintext),
                "EncryptionAlgorithm": alg,
            }))
        }
        Op::ReEncrypt => {
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
            let (new, src_arn, dst_arn) = kms.re_encrypt(who, &p)?;
            Ok(json!({
                "CiphertextBlob": b64(&new),
                "SourceKeyId": src_arn,
                "KeyId": dst_arn,
                "SourceEncryptionAlgorithm": src_alg,
                "DestinationEncryptionAlgorithm": dst_alg,
            }))
        }
        Op::GenerateDataKey | Op::GenerateDataKeyWithoutPlaintext => {
            let n = data_key_len(r.key_spec.as_deref(), r.number_of_bytes)?;
            let ctx = r.encryption_context.as_ref().unwrap_or(&empty);
            let id = key_id(&r)?;
            if op == Op::GenerateDataKey {
                let dk = kms.generate_data_key(who, &id, ctx, n)?;
                Ok(json!({
                    "CiphertextBlob": b64(&dk.ciphertext_blob),
                    "Plaintext": b64(&dk.plaintext),
                    "KeyId": dk.key_arn,
                }))
            } else {
                let (blob, arn) = kms.generate_data_key_without_plaintext(who, &id, ctx, n)?;
                Ok(json!({"CiphertextBlob": b64(&blob), "KeyId": arn}))
            }
        }
        Op::GetKeyPolicy => {
            let p = kms.get_key_policy(who, &key_id(&r)?, r.policy_name.as_deref())?;
            Ok(json!({"Policy": p, "PolicyName": "default"}))
        }
        Op::PutKeyPolicy => {
            let p = required(r.policy.clone(), "policy")?;
            let bypass = r.bypass_policy_lockout_safety_check == Some(true);
            kms.put_key_policy(who, &key_id(&r)?, r.policy_name.as_deref(), &p, bypass)?;
            ok()
        }
        Op::ListKeyPolicies => {
            let names = kms.list_key_policies(who, &key_id(&r)?, r.limit, r.marker.as_deref())?;
            Ok(json!({"PolicyNames": names, "Truncated": false}))
        }
        Op::CreateGrant => {
            if r.grantee_service_principal.is_some() || r.retiring_service_principal.is_some() {
                return Err(KmsError::UnsupportedOperation(
                    "GranteeServicePrincipal and RetiringServicePrincipal are not supported by sealgate's KMS (it has no AWS service principals).".into(),
                ));
            }
            let req = GrantRequest {
                grantee_principal: required(r.grantee_principal.take(), "granteePrincipal")?,
                retiring_principal: r.retiring_principal.take(),
                operations: required(r.operations.take(), "operations")?,
                constraints: r.constraints.take(),
                name: r.name.take(),
            };
            let (id, token) = kms.create_grant(who, &key_id(&r)?, &req)?;
            Ok(json!({"GrantId": id, "GrantToken": token}))
        }
        Op::ListGrants => {
            if r.grantee_principal.is_some() && r.grantee_service_principal.is_some() {
                return Err(KmsError::Validation(
                    "Specify GranteePrincipal or GranteeServicePrincipal, not both.".into(),
                ));
            }
            if r.grantee_service_principal.is_some() {
                // No grant of sealgate's has a service grantee.
                kms.list_grants(who, &key_id(&r)?, None, None, r.limit, r.marker.as_deref())?;
                return Ok(json!({"Grants": [], "Truncated": false}));
            }
            let page = kms.list_grants(
                who,
                &key_id(&r)?,
                r.grant_id.as_deref(),
                r.grantee_principal.as_deref(),
                r.limit,
                r.marker.as_deref(),
            )?;
            Ok(page_json(page, "Grants", |g| grant_json(g, kms)))
        }
        Op::ListRetirableGrants => {
            match (&r.retiring_principal, &r.retiring_service_principal) {
                (Some(_), Some(_)) => {
                    return Err(KmsError::Validation(
                        "Specify RetiringPrincipal or RetiringServicePrincipal, not both.".into(),
                    ));
                }
                (None, Some(_)) => return Ok(json!({"Grants": [], "Truncated": false})),
                _ => {}
            }
            let retiring = required(r.retiring_principal.clone(), "retiringPrincipal")?;
            let page = kms.list_retirable_grants(who, &retiring, r.limit, r.marker.as_deref())?;
            Ok(page_json(page, "Grants", |g| grant_json(g, kms)))
        }
        Op::RetireGrant => {
            kms.retire_grant(
                who,
                r.grant_token.as_deref(),
                r.key_id.as_deref(),
                r.grant_id.as_deref(),
            )?;
            ok()
        }
        Op::RevokeGrant => {
            let id = required(r.grant_id.clone(), "grantId")?;
            kms.revoke_grant(who, &key_id(&r)?, &id)?;
            ok()
        }
        Op::GetParametersForImport => {
            let alg = required(r.wrapping_algorithm.clone(), "wrappingAlgorithm")?;
            let spec = r.wrapping_key_spec.as_deref();
            let (arn, p) = kms.get_parameters_for_import(who, &key_id(&r)?, &alg, spec)?;
            Ok(json!({
                "KeyId": arn,
                "ImportToken": b64(&p.import_token),
                "PublicKey": b64(&p.public_key),
                "ParametersValidTo": epoch_seconds(p.valid_to_ms),
            }))
        }
        Op::ImportKeyMaterial => {
            let token = required(r.import_token.take(), "importToken")?;
            let material = required(r.encrypted_key_material.take(), "encryptedKeyMaterial")?;
            let valid_to_ms = r.valid_to.map(|t| (t * 1000.0) as i64);
            let expiry = MaterialExpiry::parse(r.expiration_model.as_deref(), valid_to_ms)?;
            let arn = kms.import_key_material(who, &key_id(&r)?, &token.0, &material.0, expiry)?;
            Ok(json!({"KeyId": arn}))
        }
        Op::DeleteImportedKeyMaterial => {
            Ok(json!({"KeyId": kms.delete_imported_key_material(who, &key_id(&r)?)?}))
        }
        Op::ReplicateKey => {
            let region = required(r.replica_region.clone(), "replicaRegion")?;
            let opts = ReplicaOptions {
                description: r.description.take().unwrap_or_default(),
                tags: tags(r.tags.take().unwrap_or_default()),
                policy: r.policy.take(),
                bypass_policy_lockout_safety_check: r.bypass_policy_lockout_safety_check
                    == Some(true),
            };
            let rep = kms.replicate_key(who, &key_id(&r)?, &region, &opts)?;
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
        Op::UpdatePrimaryRegion => {
            let region = required(r.primary_region.clone(), "primaryRegion")?;
            kms.update_primary_region(who, &key_id(&r)?, &region)?;
            ok()
        }
        Op::GenerateRandom => {
            // The model does not mark it required; AWS answers this recorded message.
            let n = r
                .number_of_bytes
                .ok_or_else(|| KmsError::Validation("NumberOfBytes is required.".into()))?;
            let store = r.custom_key_store_id.as_deref();
            Ok(json!({"Plaintext": b64(&kms.generate_random(who, n, store)?)}))
        }
        Op::CreateCustomKeyStore => {
            let id = kms.create_custom_key_store(
                who,
                &NewCustomKeyStore {
                    name: r.custom_key_store_name.as_deref(),
                    store_type: r.custom_key_store_type.as_deref(),
                    cluster_id: r.cloud_hsm_cluster_id.as_deref(),
                    trust_anchor: r.trust_anchor_certificate.as_deref(),
                    password: r.key_store_password.as_ref().map(|p| p.0.as_str()),
                    xks: r.has_xks(),
                },
            )?;
            Ok(json!({"CustomKeyStoreId": id}))
        }
        Op::DescribeCustomKeyStores => {
            let page = kms.describe_custom_key_stores(
                who,
                r.custom_key_store_id.as_deref(),
                r.custom_key_store_name.as_deref(),
                r.limit,
                r.marker.as_deref(),
            )?;
            Ok(page_json(page, "CustomKeyStores", |s| {
                let mut v = json!({
                    "CustomKeyStoreId": s.id,
                    "CustomKeyStoreName": s.name,
                    "CustomKeyStoreType": "AWS_CLOUDHSM",
                    "CloudHsmClusterId": s.cluster_id,
                    "TrustAnchorCertificate": s.trust_anchor,
                    "ConnectionState": s.state,
                    "CreationDate": epoch_seconds(s.created_ms),
                });
                if let Some(c) = s.error_code {
                    v["ConnectionErrorCode"] = json!(c);
                }
                v
            }))
        }
        Op::ConnectCustomKeyStore => {
            kms.connect_custom_key_store(who, &store_id(&r)?)?;
            ok()
        }
        Op::DisconnectCustomKeyStore => {
            kms.disconnect_custom_key_store(who, &store_id(&r)?)?;
            ok()
        }
        Op::DeleteCustomKeyStore => {
            kms.delete_custom_key_store(who, &store_id(&r)?)?;
            ok()
        }
        Op::UpdateCustomKeyStore => {
            let update = CustomKeyStoreUpdate {
                new_name: r.new_custom_key_store_name.as_deref(),
                password: r.key_store_password.as_ref().map(|p| p.0.as_str()),
                cluster_id: r.cloud_hsm_cluster_id.as_deref(),
                xks: r.has_xks(),
            };
            kms.update_custom_key_store(who, &store_id(&r)?, &update)?;
            ok()
        }
        Op::Sign
        | Op::Verify
        | Op::GetPublicKey
        | Op::GenerateMac
        | Op::VerifyMac
        | Op::DeriveSharedSecret
        | Op::GenerateDataKeyPair
        | Op::GenerateDataKeyPairWithoutPlaintext => asym::dispatch(kms, who, op, r),
        // Never reached: permissions are no API operation, and the operations not
        // implemented yet were answered above.
        Op::ReEncryptFrom | Op::ReEncryptTo | Op::GetKeyLastUsage => Err(unknown(op.name())),
    }
}

fn store_id(r: &Req) -> Result<String, KmsError> {
    required(r.custom_key_store_id.clone(), "customKeyStoreId")
}

pub(super) fn unknown(name: &str) -> KmsError {
    KmsError::UnknownOperation(format!("Unknown operation TrentService.{name}"))
}
