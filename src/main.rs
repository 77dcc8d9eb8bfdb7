//! The `sealgate` binary: parse the command line, load the config, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
    about = "S3-compatible encrypting reverse proxy with an embedded KMS"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "SEALGATE_LOG", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "SEALGATE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Serve {
        /// TOML config file (environment variables SEALGATE_* override it; flags override both).
        #[arg(long, short, env = "SEALGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8014.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Store endpoint URL, e.g. http://127.0.0.1:3900.
        #[arg(long)]
        upstream_endpoint: Option<String>,
        /// Check the configuration and exit.
        #[arg(long)]
        check: bool,
    },
}

fn init_logging(level: &str, format: &str) {
    // s3s logs whole requests (headers included) at debug: keep it at warn unless asked.
    let filter = tracing_subscriber::EnvFilter::try_new(format!("s3s=warn,{level}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level, &cli.log_format);
    match cli.cmd {
        Cmd::Serve {
            config,
            listen,
            upstream_endpoint,
            check,
        } => {
            let mut cfg = match sealgate::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(u) = upstream_endpoint {
                cfg.upstream.endpoint = u;
            }
            if let Err(e) = cfg.validate() {
                eprintln!("sealgate: {e}");
                return std::process::ExitCode::from(2);
            }
            if check {
                println!("configuration OK");
                return std::process::ExitCode::SUCCESS;
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sealgate: cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
                tracing::info!(addr = %listener.local_addr().map_err(|e| e.to_string())?, upstream = %cfg.upstream.endpoint, "sealgate listening");
                sealgate::run(listener, cfg, shutdown_signal()).await
            });
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
