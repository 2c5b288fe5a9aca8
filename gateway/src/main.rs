//! `zeta-gateway`: parses flags, connects (lazily) to the daemon's socket and serves the OpenAI
//! HTTP API until SIGTERM or SIGINT.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use zeta_gateway::AppState;
use zeta_gateway::config::GatewayConfig;

/// The zeta-mlx OpenAI-compatible HTTP gateway.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ZETA_GATEWAY_ADDR", default_value = "127.0.0.1:8000")]
    listen: String,
    /// The daemon's socket [env: ZETA_MLX_SOCKET; default: per-user path].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The daemon's config file, to find its socket [env: ZETA_MLX_CONFIG].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Allowed CORS origins (comma-separated); CORS is off unless set, and requests from web
    /// pages of other origins are refused.
    #[arg(long, env = "ZETA_GATEWAY_CORS_ORIGINS", value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// Host names answered besides loopback ones (comma-separated; `*` for any). Checked only
    /// when listening on a loopback address, against DNS rebinding.
    #[arg(long, env = "ZETA_GATEWAY_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_host: Vec<String>,
    /// Accepted API keys (comma-separated); authentication is off unless set.
    #[arg(long, env = "ZETA_GATEWAY_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    api_key: Vec<String>,
    /// Largest request body, in bytes.
    #[arg(long, env = "ZETA_GATEWAY_BODY_LIMIT", default_value_t = 16 << 20)]
    body_limit: usize,
    /// Longest a request may take, in seconds: to its end, or for a stream until it starts.
    #[arg(long, env = "ZETA_GATEWAY_REQUEST_TIMEOUT", default_value_t = 600)]
    request_timeout: u64,
    /// Longest wait for a request's headers, and for the next request on an idle connection,
    /// in seconds.
    #[arg(long, env = "ZETA_GATEWAY_HEADER_TIMEOUT", default_value_t = 10.0)]
    header_timeout: f64,
    /// Longest wait for the next piece of a request body, in seconds (then 408).
    #[arg(long, env = "ZETA_GATEWAY_BODY_TIMEOUT", default_value_t = 30.0)]
    body_timeout: f64,
    /// Most connections open at once; more get a 503.
    #[arg(long, env = "ZETA_GATEWAY_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
    /// Interval of SSE keep-alive comments while a stream has nothing to send (e.g. during a
    /// long prefill), in milliseconds.
    #[arg(long, env = "ZETA_GATEWAY_SSE_KEEP_ALIVE_MS", default_value_t = 5000)]
    sse_keep_alive_ms: u64,
    /// `text` or `json` logs.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Check the flags, say what would be served, and exit (1 with the problem when the gateway
    /// would not start); listens on nothing. `zeta service install` runs this before writing
    /// the service files.
    #[arg(long)]
    check: bool,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("zeta-gateway: {msg}");
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match args.log_format.as_str() {
        "json" => zeta_proto::logging::init(true),
        "text" => zeta_proto::logging::init(false),
        other => fail(format!("--log-format must be text or json, not '{other}'")),
    }
    let (socket, origin) =
        zeta_proto::socket::resolve(args.socket.as_deref(), args.config.as_deref()).unwrap_or_else(|e| fail(e));
    // A year: past it a deadline is no deadline, and far past it the clock's arithmetic fails.
    const MAX_SECONDS: u64 = 365 * 24 * 3600;
    let seconds = |name: &str, v: f64| {
        if !(v.is_finite() && v > 0.0 && v <= MAX_SECONDS as f64) {
            fail(format!("--{name} must be a positive number of seconds, at most {MAX_SECONDS}, not {v}"));
        }
        Duration::from_secs_f64(v)
    };
    let body_timeout = seconds("body-timeout", args.body_timeout);
    let header_timeout = seconds("header-timeout", args.header_timeout);
    for (flag, value) in [
        ("max-connections", args.max_connections as u64),
        ("request-timeout", args.request_timeout),
        ("body-limit", args.body_limit as u64),
        ("sse-keep-alive-ms", args.sse_keep_alive_ms),
    ] {
        if value == 0 {
            fail(format!("--{flag} must be at least 1 (0 would refuse or time out every request)"));
        }
    }
    for (flag, value, max) in [
        ("request-timeout", args.request_timeout, MAX_SECONDS),
        ("sse-keep-alive-ms", args.sse_keep_alive_ms, MAX_SECONDS * 1000),
    ] {
        if value > max {
            fail(format!("--{flag} must be at most {max}, not {value}"));
        }
    }
    // Lists are split at commas; the spaces a person types after them are not part of a value.
    let list = |values: Vec<String>| -> Vec<String> {
        values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).map(String::from).collect()
    };
    let keys_given = !args.api_key.is_empty();
    let api_keys = list(args.api_key);
    if keys_given && api_keys.is_empty() {
        // `--api-key "$KEY"` with KEY unset must not quietly turn authentication off.
        fail("--api-key is empty; leave it out to serve without authentication");
    }
    if args.check {
        // The address is resolved, not bound: the service being replaced may hold the port.
        match tokio::net::lookup_host(&args.listen).await.map(|mut a| a.next()) {
            Ok(Some(addr)) => {
                println!("zeta-gateway: ok: would listen on {addr}; daemon socket {}", socket.display());
                return;
            }
            Ok(None) => fail(format!("cannot listen on {}: the name resolves to no address", args.listen)),
            Err(e) => fail(format!("cannot listen on {}: {e} (give an address like 127.0.0.1:8000)", args.listen)),
        }
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {}: {e}", args.listen)));
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let config = GatewayConfig {
        cors_origins: list(args.cors_origin),
        api_keys,
        check_host: loopback,
        allowed_hosts: list(args.allowed_host),
        body_limit: args.body_limit,
        body_timeout,
        header_timeout,
        max_connections: args.max_connections,
        request_timeout: Duration::from_secs(args.request_timeout),
        keep_alive: Duration::from_millis(args.sse_keep_alive_ms),
        ..GatewayConfig::default()
    };
    if !loopback && config.api_keys.is_empty() {
        tracing::warn!("listening beyond this machine with no API key: anyone who reaches the port can use it");
    }
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(args.listen.clone());
    tracing::info!(listen = %addr, socket = %socket.display(), from = %origin, auth = !config.api_keys.is_empty(),
        cors = ?config.cors_origins, "zeta-gateway serving the OpenAI API at http://{addr}/v1");
    let state = AppState::new(config, socket);
    if let Err(e) = zeta_gateway::run(listener, state, shutdown()).await {
        fail(e);
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).unwrap_or_else(|e| fail(e));
    let mut int = signal(SignalKind::interrupt()).unwrap_or_else(|e| fail(e));
    // A closed terminal (SIGHUP) drains like SIGTERM rather than killing streams mid-answer.
    let mut hup = signal(SignalKind::hangup()).unwrap_or_else(|e| fail(e));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
    tracing::info!("shutting down");
}
