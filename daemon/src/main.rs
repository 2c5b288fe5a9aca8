//! `zeta-mlxd`: reads the config, sets up logging and the socket, and serves until SIGTERM, SIGINT or
//! SIGHUP (a second one cuts the drain short). See the library for what it does.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use zeta_mlxd::config::{Config, LogFormat};
use zeta_mlxd::registry::Registry;

/// The zeta-mlx daemon: holds MLX models and serves the zeta.mlx.v1 gRPC API on a Unix socket.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML, or YAML by extension) [env: ZETA_MLX_CONFIG; default: per-user path].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Socket path [env: ZETA_MLX_SOCKET; default: per-user path].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Log format (overrides the config's `log_format`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Check the config and the socket path, say what would be served, and exit (1 with the
    /// problem when the daemon would not start); binds and loads nothing. `zeta service install`
    /// runs this before writing the service files.
    #[arg(long)]
    check: bool,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("zeta-mlxd: {msg}");
    std::process::exit(1);
}

fn main() {
    let args = Args::parse();
    let explicit = zeta_proto::socket::config_asked_by(args.config.as_deref()).is_some();
    let config_path = zeta_proto::socket::config_path(args.config.as_deref());
    let config = Config::load_or_default(config_path.as_deref(), explicit).unwrap_or_else(|e| fail(e));
    let (socket, origin) =
        zeta_proto::socket::resolve(args.socket.as_deref(), args.config.as_deref()).unwrap_or_else(|e| fail(e));
    if args.check {
        zeta_mlxd::socket::check_path(&socket).unwrap_or_else(|e| fail(e));
        let file = match &config_path {
            Some(p) if p.exists() => p.display().to_string(),
            _ => "none (the defaults)".into(),
        };
        println!(
            "zeta-mlxd: ok: config {file}; socket {} (from {origin}); models {}; default {}",
            socket.display(),
            config.aliases().join(", "),
            config.default_model
        );
        return;
    }
    zeta_mlxd::logging::init(args.log_format.unwrap_or(config.log_format));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| fail(e));
    let result = runtime.block_on(async move {
        let (listener, guard) = zeta_mlxd::socket::bind(&socket).unwrap_or_else(|e| fail(e));
        let hub = match zeta_hub::HubClient::from_env() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "hub downloads disabled");
                None
            }
        };
        tracing::info!(socket = %socket.display(), from = %origin, config = %config_path.as_deref().map_or("(none)".into(), |p| p.display().to_string()), version = env!("CARGO_PKG_VERSION"),
            mlx = %mlx::version(), device = if mlx::default_device_is_gpu() { "gpu" } else { "cpu" },
            cpu_kernels = %mlx::cpu_kernels(), blas = %mlx::blas_backend(), "zeta-mlxd listening");
        let registry = Registry::new(Arc::new(config), hub);
        let signals = signals();
        let (mut first, mut second) = (signals.clone(), signals);
        let shutdown = async move {
            let _ = first.wait_for(|n| *n >= 1).await;
        };
        let cut_short = async move {
            let _ = second.wait_for(|n| *n >= 2).await;
        };
        let r = zeta_mlxd::run(listener, registry, shutdown, cut_short).await;
        drop(guard);
        r
    });
    if let Err(e) = result {
        fail(e);
    }
}

/// Counts SIGTERM, SIGINT and SIGHUP (a closed terminal: drain rather than die mid-answer). The
/// first starts the drain; a second (Ctrl-C pressed again) cuts it short.
fn signals() -> tokio::sync::watch::Receiver<u32> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).unwrap_or_else(|e| fail(e));
    let mut int = signal(SignalKind::interrupt()).unwrap_or_else(|e| fail(e));
    let mut hup = signal(SignalKind::hangup()).unwrap_or_else(|e| fail(e));
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => "SIGHUP",
            };
            tx.send_modify(|n| *n += 1);
            if *tx.borrow() == 1 {
                tracing::info!(signal = name, "stopping (a second signal stops at once)");
            } else {
                tracing::info!(signal = name, "stopping at once");
            }
        }
    });
    rx
}
