//! sealgate: an S3-compatible encrypting reverse proxy with an embedded KMS.
//!
//! One entry point, [`run`], serves both the binary and the integration tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod error;
pub mod key_events;
pub mod keys;
pub mod kms;
pub mod limits;
pub mod metrics;
pub mod object;
pub mod request_id;
pub mod s3;
pub mod server;
pub mod upstream;
pub mod xml;

use std::future::Future;

/// Validates `cfg`, then serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    mut cfg: config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    cfg.validate().map_err(|e| e.to_string())?;
    let app = server::App::new(&cfg)?;
    app.startup().await?;
    server::serve(app, listener, shutdown)
        .await
        .map_err(|e| format!("listener: {e}"))
}
