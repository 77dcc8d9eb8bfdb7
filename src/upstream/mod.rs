//! The forwarder: sends re-signed requests to the S3 store and hands back streaming responses.

pub mod acting;
pub mod checked;
pub mod client;
pub mod conn;
pub mod sign;

pub use acting::ActingAs;
pub(crate) use client::tls_config;
pub use client::{UpBody, UpRequest, UpResponse, Upstream, UpstreamError};
