//! sealgate: an S3-compatible encrypting reverse proxy with an embedded KMS.
#![forbid(unsafe_code)]

pub mod auth;
pub mod kms;
