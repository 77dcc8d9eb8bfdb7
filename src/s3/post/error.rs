//! The errors of POST Object: S3 errors with the extra elements AWS adds to some of
//! them (`ArgumentName`, `ProposedSize`, `StringToSign`, ...), research spec §3.7.

use http::{Response, StatusCode};
use s3s::Body;

use super::form::{self, FormError};

/// An S3 error with the extra elements some POST errors carry.
#[derive(Debug, Clone)]
pub struct PostError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra `<Name>value</Name>` elements after the message.
    pub extras: Vec<(&'static str, String)>,
}

impl PostError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> PostError {
        PostError {
            status,
            code: code.to_string(),
            message: message.into(),
            extras: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: String) -> PostError {
        self.extras.push((name, value));
        self
    }

    /// The XML error response.
    pub fn response(&self, request_id: &str) -> Response<Body> {
        let extras: Vec<(&str, &str)> = self.extras.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::error::xml_response(self.status, &self.code, &self.message, &extras, request_id)
    }

    pub(super) fn bad_request(code: &str, message: impl Into<String>) -> PostError {
        PostError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// P3: a required field is missing (or came after the file).
    pub(super) fn missing(name: &str) -> PostError {
        PostError::bad_request(
            "InvalidArgument",
            format!(
                "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
            ),
        )
        .with("ArgumentName", name.to_string())
        .with("ArgumentValue", String::new())
    }

    pub(super) fn access_denied(message: impl Into<String>) -> PostError {
        PostError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }
}

pub(super) const MALFORMED: &str =
    "The body of your POST request is not well-formed multipart/form-data.";

impl From<FormError> for PostError {
    fn from(e: FormError) -> PostError {
        match e {
            FormError::Malformed(detail) => {
                tracing::info!(detail, "malformed POST form");
                PostError::bad_request("MalformedPOSTRequest", MALFORMED)
            }
            FormError::Layout => PostError::bad_request(
                "MalformedPOSTRequest",
                format!(
                    "{MALFORMED} (sealgate needs the file to be the last part of the form, followed only by the closing boundary and CRLF.)"
                ),
            ),
            FormError::PreDataTooLong => PostError::bad_request(
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceeding the upload file was too large.",
            )
            .with("MaxPostPreDataLengthBytes", form::MAX_PRE_DATA.to_string()),
            FormError::Body { stalled: true } => PostError::bad_request(
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period.",
            ),
            FormError::Body { stalled: false } => PostError::bad_request(
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            ),
        }
    }
}
