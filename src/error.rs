//! Errors of the S3 path, tagged by who caused them, and converted to S3 errors in exactly
//! one place ([`From<Error> for S3Error`]).
//!
//! - [`Error::Client`]: the client's request is wrong (4xx, already S3-shaped);
//!   [`Error::Argument`] the same with AWS's `ArgumentName`/`ArgumentValue` elements,
//!   which s3s's error documents do not have (SSE header errors).
//! - [`Error::Store`]: the store could not be reached (503, retryable) or broke the
//!   conversation (502).
//! - [`Error::Tampered`]: the store served data that failed sealgate's authentication
//!   (modified, truncated, swapped or forged); 500 with a message saying so.
//! - [`Error::Kms`]: the KMS refused (the S3 error AWS gives for SSE-KMS: `KMS.*`,
//!   AccessDenied) or could not answer (503).
//! - [`Error::Internal`]: sealgate itself failed; 500 with details only in the log.
//!
//! Frequently used S3 errors have constructors here, so their codes and wording are
//! written once.

use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};

use crate::keys::BackendError;
use crate::kms::KmsError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's request is wrong; already in S3 shape.
    #[error("{0}")]
    Client(S3Error),
    /// The client's request is wrong about one header, named in the answer as AWS does.
    #[error("{}", .0.error)]
    Argument(Box<ArgumentError>),
    /// The store could not be reached or broke the connection.
    #[error(transparent)]
    Store(#[from] UpstreamError),
    /// The store served something that failed authentication.
    #[error("the stored object failed verification: {0}")]
    Tampered(String),
    /// The KMS refused or could not answer.
    #[error("kms: {0}")]
    Kms(BackendError),
    /// sealgate itself failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An S3 error whose document names the offending header (`ArgumentName`) and its value
/// (`ArgumentValue`), as AWS's answers to bad SSE headers do.
#[derive(Debug)]
pub struct ArgumentError {
    pub error: S3Error,
    pub name: &'static str,
    pub value: Option<String>,
}

impl ArgumentError {
    /// The answer: the error document with the argument elements (no body for a HEAD).
    pub fn response(&self, head: bool) -> s3s::S3Response<s3s::Body> {
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        let body = if head {
            s3s::Body::empty()
        } else {
            let mut x = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>",
                esc(self.error.code().as_str())
            );
            if let Some(m) = self.error.message() {
                x.push_str(&format!("<Message>{}</Message>", esc(m)));
            }
            x.push_str(&format!("<ArgumentName>{}</ArgumentName>", esc(self.name)));
            if let Some(v) = &self.value {
                x.push_str(&format!("<ArgumentValue>{}</ArgumentValue>", esc(v)));
            }
            x.push_str("</Error>");
            s3s::Body::from(x)
        };
        let mut out = s3s::S3Response::new(body);
        out.status = Some(self.error.status_code().unwrap_or(StatusCode::BAD_REQUEST));
        out.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
        out
    }
}

impl From<S3Error> for Error {
    fn from(e: S3Error) -> Self {
        Error::Client(e)
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Kms(e)
    }
}

impl From<KmsError> for Error {
    fn from(e: KmsError) -> Self {
        Error::Kms(BackendError::Kms(e))
    }
}

fn with_status(code: S3ErrorCode, msg: impl Into<String>, status: StatusCode) -> S3Error {
    let mut s = S3Error::with_message(code, msg.into());
    s.set_status_code(status);
    s
}

/// Constructors of the S3 errors several handlers answer.
impl Error {
    pub fn client(code: S3ErrorCode, msg: impl Into<String>) -> Error {
        Error::Client(S3Error::with_message(code, msg.into()))
    }
    pub fn invalid_argument(msg: impl Into<String>) -> Error {
        Self::client(S3ErrorCode::InvalidArgument, msg)
    }
    /// An error about the header `name` (sent with `value`), named in the answer.
    pub fn argument(
        code: S3ErrorCode,
        msg: impl Into<String>,
        name: &'static str,
        value: Option<&str>,
    ) -> Error {
        Error::Argument(Box::new(ArgumentError {
            error: S3Error::with_message(code, msg.into()),
            name,
            value: value.map(str::to_owned),
        }))
    }
    pub fn invalid_request(msg: impl Into<String>) -> Error {
        Self::client(S3ErrorCode::InvalidRequest, msg)
    }
    pub fn not_implemented(msg: impl Into<String>) -> Error {
        Self::client(S3ErrorCode::NotImplemented, msg)
    }
    pub fn access_denied(msg: impl Into<String>) -> Error {
        Self::client(S3ErrorCode::AccessDenied, msg)
    }
    pub fn no_such_upload() -> Error {
        Self::client(
            S3ErrorCode::NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
    }
    pub fn no_such_key() -> Error {
        Self::client(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
    }
    pub fn malformed_xml(detail: impl std::fmt::Display) -> Error {
        Self::client(
            S3ErrorCode::MalformedXML,
            format!(
                "The XML you provided was not well-formed or did not validate against our published schema: {detail}"
            ),
        )
    }
    pub fn missing_content_length() -> Error {
        Self::client(
            S3ErrorCode::MissingContentLength,
            "You must provide the Content-Length HTTP header.",
        )
    }
    pub fn invalid_part_number() -> Error {
        Self::invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
    }
    pub fn precondition_failed() -> Error {
        Self::client(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
    }
    /// 416 with `Content-Range: bytes */SIZE`.
    pub fn invalid_range(size: u64) -> Error {
        let mut e = with_status(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
            StatusCode::RANGE_NOT_SATISFIABLE,
        );
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
            h.insert(http::header::CONTENT_RANGE, v);
        }
        e.set_headers(h);
        Error::Client(e)
    }
    pub fn invalid_part_number_range() -> Error {
        Error::Client(with_status(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
            StatusCode::RANGE_NOT_SATISFIABLE,
        ))
    }
    /// 503 SlowDown: the object changed while sealgate read it in several requests.
    pub fn changed_while_reading() -> Error {
        Error::Client(with_status(
            S3ErrorCode::Custom("SlowDown".into()),
            "The object changed while it was being read; retry.",
            StatusCode::SERVICE_UNAVAILABLE,
        ))
    }
    pub fn tampered(detail: impl std::fmt::Display) -> Error {
        Error::Tampered(detail.to_string())
    }
    /// A store response body could not be read.
    pub fn store_body(e: impl std::fmt::Display) -> Error {
        Error::Store(UpstreamError::Transport(e.to_string()))
    }
}

/// The S3 error AWS gives when SSE-KMS's KMS call fails.
fn kms_to_s3(e: BackendError) -> S3Error {
    match e {
        BackendError::Unavailable(m) => {
            tracing::warn!(error = %m, "KMS backend unavailable");
            kms_unavailable(m)
        }
        BackendError::Kms(k) => {
            let status = k.status();
            let ty = k.aws_type();
            let msg = k.to_string();
            if ty == "AccessDeniedException" {
                return S3Error::with_message(S3ErrorCode::AccessDenied, msg);
            }
            if status.is_server_error() {
                return kms_unavailable(msg);
            }
            with_status(
                S3ErrorCode::Custom(format!("KMS.{ty}").into()),
                msg,
                StatusCode::BAD_REQUEST,
            )
        }
    }
}

fn kms_unavailable(msg: impl std::fmt::Display) -> S3Error {
    with_status(
        S3ErrorCode::Custom("ServiceUnavailable".into()),
        format!("The KMS could not answer: {msg}"),
        StatusCode::SERVICE_UNAVAILABLE,
    )
}

/// An S3 XML error answered outside s3s (the listener, preflights, POST uploads):
/// `<Error>` with code, message, any `extras` elements and the request id.
pub fn xml_response(
    status: StatusCode,
    code: &str,
    message: &str,
    extras: &[(&str, &str)],
    request_id: &str,
) -> http::Response<s3s::Body> {
    let esc = |s: &str| quick_xml::escape::partial_escape(s).into_owned();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>",
        esc(code),
        esc(message)
    );
    for (k, v) in extras {
        xml.push_str(&format!("<{k}>{}</{k}>", esc(v)));
    }
    xml.push_str(&format!(
        "<RequestId>{}</RequestId></Error>",
        esc(request_id)
    ));
    let mut r = http::Response::new(s3s::Body::from(xml));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

impl From<Error> for S3Error {
    fn from(e: Error) -> S3Error {
        match e {
            Error::Client(e) => e,
            Error::Argument(a) => a.error,
            Error::Store(u) => {
                tracing::warn!(error = %u, "object store unavailable");
                // The transport's own text (addresses, TLS names) stays in the log.
                let (code, status, msg) = match u {
                    UpstreamError::Connect(_) => (
                        "ServiceUnavailable",
                        StatusCode::SERVICE_UNAVAILABLE,
                        "sealgate cannot connect to the object store; retry, or see sealgate's log.",
                    ),
                    // Which certificate and why stays in the log; that it is the
                    // certificate is what the operator needs to hear (docs/operations.md,
                    // "Upstream TLS"). The transport classifies TLS failures so.
                    UpstreamError::Certificate(_) => (
                        "ServiceUnavailable",
                        StatusCode::SERVICE_UNAVAILABLE,
                        "sealgate does not trust the object store's TLS certificate; see sealgate's log (upstream.ca_file adds a CA).",
                    ),
                    UpstreamError::Timeout(_) => (
                        "ServiceUnavailable",
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The object store did not answer sealgate in time; retry, or see sealgate's log.",
                    ),
                    UpstreamError::Transport(_) => (
                        "BadGateway",
                        StatusCode::BAD_GATEWAY,
                        "sealgate's connection to the object store failed; retry, or see sealgate's log.",
                    ),
                    UpstreamError::Build(_) => (
                        "InternalError",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "sealgate could not build the request for the object store; see its log.",
                    ),
                };
                with_status(S3ErrorCode::Custom(code.into()), msg, status)
            }
            Error::Tampered(detail) => {
                tracing::error!(detail = %detail, "the store served data that failed authentication");
                S3Error::with_message(
                    S3ErrorCode::InternalError,
                    format!(
                        "sealgate: the stored object failed verification (it was modified in the store): {detail}"
                    ),
                )
            }
            Error::Kms(k) => kms_to_s3(k),
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                S3Error::with_message(
                    S3ErrorCode::InternalError,
                    "sealgate encountered an internal error; see its log.",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_store_is_a_503_and_a_broken_one_a_502() {
        let e: S3Error = Error::Store(UpstreamError::Connect("refused".into())).into();
        assert_eq!(e.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(e.code().as_str(), "ServiceUnavailable");
        let e: S3Error = Error::Store(UpstreamError::Transport("reset".into())).into();
        assert_eq!(e.status_code(), Some(StatusCode::BAD_GATEWAY));
        let e: S3Error = Error::Store(UpstreamError::Certificate(
            "invalid peer certificate: UnknownIssuer for store.lan".into(),
        ))
        .into();
        assert_eq!(e.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
        let m = e.message().unwrap();
        assert!(m.contains("certificate") && !m.contains("store.lan"), "{m}");
    }

    #[test]
    fn kms_errors_map_to_sse_kms_s3_errors() {
        let s: S3Error = Error::from(KmsError::Disabled("key is disabled".into())).into();
        assert_eq!(s.code().as_str(), "KMS.DisabledException");
        assert_eq!(s.status_code(), Some(StatusCode::BAD_REQUEST));
        let s: S3Error = Error::from(KmsError::AccessDenied("no".into())).into();
        assert_eq!(s.code().as_str(), "AccessDenied");
        let s: S3Error = Error::from(KmsError::Internal("db".into())).into();
        assert_eq!(s.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
        let s: S3Error = Error::Kms(BackendError::Unavailable("down".into())).into();
        assert_eq!(s.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(s.code().as_str(), "ServiceUnavailable");
    }

    #[test]
    fn argument_errors_name_the_header_and_value() {
        let e = Error::argument(
            S3ErrorCode::InvalidEncryptionAlgorithmError,
            "The Encryption request you specified is not valid. Supported value: AES256.",
            "x-amz-server-side-encryption",
            Some("AES<128>"),
        );
        let Error::Argument(a) = &e else { panic!() };
        let r = a.response(false);
        assert_eq!(r.status, Some(StatusCode::BAD_REQUEST));
        let body = format!("{:?}", r.output);
        for part in [
            "<Code>InvalidEncryptionAlgorithmError</Code>",
            "<ArgumentName>x-amz-server-side-encryption</ArgumentName>",
            "<ArgumentValue>AES&lt;128&gt;</ArgumentValue>",
        ] {
            assert!(body.contains(part), "{body}");
        }
        let s: S3Error = e.into();
        assert_eq!(s.code().as_str(), "InvalidEncryptionAlgorithmError");
    }

    #[test]
    fn tampering_is_reported_as_a_verification_failure() {
        let s: S3Error = Error::tampered("metadata authentication failed").into();
        assert_eq!(s.code().as_str(), "InternalError");
        assert!(s.message().unwrap().contains("failed verification"));
    }
}
