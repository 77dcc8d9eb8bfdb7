//! Errors of the S3 path, tagged by who caused them, converted to S3 errors in one place.
//!
//! Client errors keep their S3 code (4xx); a store that cannot be reached is 503 (retryable)
//! and a store that broke mid-conversation is 502; sealgate's own failures are 500 with a
//! generic message (details go to the log, never secrets).

use s3s::{S3Error, S3ErrorCode};

use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's request is wrong; already in S3 shape.
    #[error("{0}")]
    Client(S3Error),
    /// The store could not be reached or broke the connection.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// sealgate itself failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<S3Error> for Error {
    fn from(e: S3Error) -> Self {
        Error::Client(e)
    }
}

impl From<Error> for S3Error {
    fn from(e: Error) -> S3Error {
        match e {
            Error::Client(e) => e,
            Error::Upstream(u) => {
                tracing::warn!(error = %u, "object store unavailable");
                let (code, status) = match u {
                    UpstreamError::Connect(_) | UpstreamError::Timeout(_) => {
                        ("ServiceUnavailable", http::StatusCode::SERVICE_UNAVAILABLE)
                    }
                    UpstreamError::Transport(_) => ("BadGateway", http::StatusCode::BAD_GATEWAY),
                    UpstreamError::Build(_) => {
                        ("InternalError", http::StatusCode::INTERNAL_SERVER_ERROR)
                    }
                };
                let mut s = S3Error::with_message(
                    S3ErrorCode::Custom(code.into()),
                    format!("sealgate: {u}"),
                );
                s.set_status_code(status);
                s
            }
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
        let e: S3Error = Error::Upstream(UpstreamError::Connect("refused".into())).into();
        assert_eq!(e.status_code(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(e.code().as_str(), "ServiceUnavailable");
        let e: S3Error = Error::Upstream(UpstreamError::Transport("reset".into())).into();
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_GATEWAY));
    }
}
