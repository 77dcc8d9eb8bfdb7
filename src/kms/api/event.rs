//! What an API request's audit event records: `requestParameters` and
//! `responseElements` without secrets, and the key ARNs the event names.

use serde_json::Value;

use super::request::Req;
use crate::kms::{Kms, crypto};

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
    "SharedSecret",
    "KeyStorePassword",
    "XksProxyAuthenticationCredential",
    "plaintext",
    "ciphertextBlob",
    "grantToken",
    "grantTokens",
];

/// `requestParameters`: the typed request (so blobs, which are skipped when
/// serialising, can never appear), camelCased, without nulls.
pub(super) fn audit_params(r: &Req) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.retain(|k, x| !x.is_null() && !SECRET_MEMBERS.contains(&k.as_str()));
    }
    v
}

/// `responseElements`: the response with blobs, tokens and policy text removed and
/// top-level member names camelCased, as CloudTrail shows them.
pub(super) fn audit_response(v: &Value) -> Value {
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
pub(super) fn response_arns(v: &Value) -> Vec<String> {
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
pub(super) fn resource_hints(kms: &Kms, r: &Req) -> Vec<String> {
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
