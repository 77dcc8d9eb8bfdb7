//! sealgate: an S3-compatible encrypting reverse proxy with an embedded KMS.
//!
//! One entry point, [`run`], serves both the binary and the integration tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod error;
pub mod files;
pub mod hsm;
pub mod key_events;
pub mod keys;
pub mod kms;
pub mod limits;
pub mod metrics;
pub mod object;
pub mod request_id;
pub mod s3;
pub mod server;
#[cfg(test)]
pub(crate) mod test_support;
pub mod unseal;
pub mod upstream;
pub mod xml;

use std::future::Future;

/// Checks every field of `cfg` ([`config::Config::validate`]) and parses its access
/// policies (the S3 layer's grammar); the error names the field.
pub fn check_config(cfg: &mut config::Config) -> Result<(), config::ConfigError> {
    cfg.validate()?;
    s3::authz::Authz::from_config(cfg)
        .map(drop)
        .map_err(|(field, reason)| config::ConfigError { field, reason })
}

/// Checks `cfg` ([`check_config`]), then serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    mut cfg: config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    check_config(&mut cfg).map_err(|e| e.to_string())?;
    let app = server::App::new(&cfg)?;
    app.startup().await?;
    // Logged once the KMS is open and the state bucket was checked, not at bind time: a
    // start that fails before this (a bad root key, a foreign state bucket) never claims
    // to serve.
    tracing::info!(
        addr = %listener.local_addr().map_err(|e| e.to_string())?,
        upstream = %cfg.upstream.endpoint,
        "sealgate listening"
    );
    server::serve(app, listener, shutdown)
        .await
        .map_err(|e| format!("listener: {e}"))
}
