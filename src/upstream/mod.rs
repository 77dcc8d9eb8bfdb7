//! The forwarder: sends re-signed requests to the S3 store and hands back streaming responses.

pub mod client;
pub mod sign;

pub use client::{UpBody, UpRequest, Upstream, UpstreamError};
