//! A backend for anything that speaks the AWS KMS JSON protocol (AWS KMS, moto, another
//! sealgate): `POST /` with `X-Amz-Target: TrentService.<Op>`, `application/x-amz-json-1.1`,
//! SigV4 (service `kms`) with the credentials from the config.
//!
//! Invariants: the encryption context is sent as the KMS `EncryptionContext`; wrapped keys
//! are the KMS ciphertext blobs as returned; `__type` of error answers maps to the same
//! [`KmsError`] the embedded KMS would return, so the S3 path reports both alike.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::config::AwsKmsConfig;
use super::remote::Remote;
use super::{BackendError, Caller, Capabilities, GeneratedKey, KeyInfo, KmsBackend};
use crate::kms::{EncryptionContext, KmsError};

pub struct AwsKms {
    name: String,
    url: reqwest::Url,
    host: String,
    region: String,
    identity: aws_smithy_runtime_api::client::identity::Identity,
    default_key: String,
    remote: Remote,
}

impl AwsKms {
    pub fn new(name: &str, cfg: &AwsKmsConfig, remote: Remote) -> Result<AwsKms, String> {
        let url = reqwest::Url::parse(&cfg.endpoint)
            .map_err(|e| format!("kms backend {name}: endpoint: {e}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(format!("kms backend {name}: endpoint has no host")),
        };
        let creds = aws_credential_types::Credentials::new(
            &cfg.access_key_id,
            cfg.secret_access_key.expose(),
            cfg.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "sealgate-config",
        );
        Ok(AwsKms {
            name: name.to_string(),
            url,
            host,
            region: cfg.region.clone(),
            identity: creds.into(),
            default_key: cfg.default_key.clone().unwrap_or_default(),
            remote,
        })
    }

    fn request(&self, op: &str, body: &[u8]) -> Result<reqwest::RequestBuilder, BackendError> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let target = format!("TrentService.{op}");
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let internal = |e: String| BackendError::Kms(KmsError::Internal(e));
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("kms")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| internal(format!("signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| internal(format!("signable request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| internal(format!("signing: {e}")))?
            .into_parts();
        let mut rb = self
            .remote
            .client()
            .post(self.url.clone())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target.as_str())
            .body(body.to_vec());
        for (n, v) in instructions.headers() {
            rb = rb.header(n, v);
        }
        Ok(rb)
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, BackendError> {
        let body = serde_json::to_vec(&body)
            .map_err(|e| BackendError::Kms(KmsError::Internal(e.to_string())))?;
        let reply = self
            .remote
            .send(
                || self.request(op, &body),
                |status, b| status.as_u16() == 400 && is_throttling(b),
            )
            .await?;
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status.is_success() {
            return Ok(v);
        }
        Err(error_from(&self.name, reply.status, &v))
    }
}

fn is_throttling(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_owned))
        .is_some_and(|t| {
            t.ends_with("ThrottlingException") || t.ends_with("LimitExceededException")
        })
}

/// Maps a KMS error answer to the error the embedded KMS would give.
fn error_from(backend: &str, status: http::StatusCode, v: &Value) -> BackendError {
    let ty = v.get("__type").and_then(Value::as_str).unwrap_or("");
    // `__type` may carry a namespace prefix (`com.amazonaws.kms#NotFoundException`).
    let ty = ty.rsplit('#').next().unwrap_or(ty);
    let msg = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let msg = format!("{msg} (KMS backend '{backend}')");
    let e = match ty {
        "NotFoundException" => KmsError::NotFound(msg),
        "DisabledException" => KmsError::Disabled(msg),
        "KMSInvalidStateException" => KmsError::InvalidState(msg),
        "InvalidCiphertextException" => KmsError::InvalidCiphertext(msg),
        "IncorrectKeyException" => KmsError::IncorrectKey(msg),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => KmsError::AccessDenied(msg),
        "InvalidKeyUsageException" => KmsError::InvalidKeyUsage(msg),
        "ValidationException" => KmsError::Validation(msg),
        "KMSInternalException" | "DependencyTimeoutException" | "KeyUnavailableException" => {
            return BackendError::Unavailable(msg);
        }
        _ if status.is_server_error() => return BackendError::Unavailable(msg),
        _ => KmsError::Validation(format!("{ty}: {msg}")),
    };
    BackendError::Kms(e)
}

fn b64_field(v: &Value, name: &str) -> Result<Vec<u8>, BackendError> {
    v.get(name)
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| {
            BackendError::Kms(KmsError::Internal(format!(
                "the KMS answer has no valid {name}"
            )))
        })
}

fn str_field(v: &Value, name: &str) -> Result<String, BackendError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            BackendError::Kms(KmsError::Internal(format!("the KMS answer has no {name}")))
        })
}

#[async_trait::async_trait]
impl KmsBackend for AwsKms {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            encryption_context: true,
            rotation: true,
            // Blobs name their backing key inside; not visible to sealgate.
            key_versions: false,
            per_caller_authorization: false,
        }
    }

    async fn default_key(&self) -> Result<String, BackendError> {
        Ok(self.default_key.clone())
    }

    async fn generate_data_key(
        &self,
        _who: Caller<'_>,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<GeneratedKey, BackendError> {
        let v = self
            .call(
                "GenerateDataKey",
                json!({"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": ctx}),
            )
            .await?;
        Ok(GeneratedKey {
            plaintext: Zeroizing::new(b64_field(&v, "Plaintext")?),
            wrapped: b64_field(&v, "CiphertextBlob")?,
            key_ref: str_field(&v, "KeyId")?,
        })
    }

    async fn decrypt_data_key(
        &self,
        _who: Caller<'_>,
        key_ref: &str,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let v = self
            .call(
                "Decrypt",
                json!({"KeyId": key_ref, "CiphertextBlob": B64.encode(wrapped), "EncryptionContext": ctx}),
            )
            .await?;
        Ok(Zeroizing::new(b64_field(&v, "Plaintext")?))
    }

    async fn wrap_data_key(
        &self,
        _who: Caller<'_>,
        key_id: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), BackendError> {
        let v = self
            .call(
                "Encrypt",
                json!({"KeyId": key_id, "Plaintext": B64.encode(plaintext), "EncryptionContext": ctx}),
            )
            .await?;
        Ok((b64_field(&v, "CiphertextBlob")?, str_field(&v, "KeyId")?))
    }

    async fn describe_key(&self, _who: Caller<'_>, key_id: &str) -> Result<KeyInfo, BackendError> {
        let v = self.call("DescribeKey", json!({"KeyId": key_id})).await?;
        let m = v.get("KeyMetadata").cloned().unwrap_or(Value::Null);
        Ok(KeyInfo {
            key_ref: str_field(&m, "Arn")?,
            enabled: m.get("Enabled").and_then(Value::as_bool).unwrap_or(false),
            latest_version: None,
            derived: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_error_answers_map_to_the_embedded_kms_errors() {
        let e = |ty: &str, status: u16| {
            error_from(
                "x",
                http::StatusCode::from_u16(status).unwrap(),
                &json!({"__type": ty, "message": "m"}),
            )
        };
        assert!(matches!(
            e("com.amazonaws.kms#DisabledException", 400),
            BackendError::Kms(KmsError::Disabled(_))
        ));
        assert!(matches!(
            e("InvalidCiphertextException", 400),
            BackendError::Kms(KmsError::InvalidCiphertext(_))
        ));
        assert!(matches!(
            e("KMSInternalException", 500),
            BackendError::Unavailable(_)
        ));
        assert!(is_throttling(br#"{"__type":"ThrottlingException"}"#));
    }
}
