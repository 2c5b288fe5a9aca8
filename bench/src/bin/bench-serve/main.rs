//! `bench-serve`: a streaming load generator against `zeta-gateway` (in front of `zeta-mlxd`) and
//! Apple's `mlx_lm.server`, on the same machine and model (the embedded SmolLM2-135M-Instruct,
//! `--model PATH`, or `--shape NAME` for a random-weight model made once with mlx-lm) in one run,
//! printed as Markdown tables and ratios; plus the gateway's own overhead (the same requests
//! through its HTTP/SSE and directly over gRPC to the daemon's socket).
//!
//! Method (the one `../shared/PEER-BASELINE.md` §2 used for mlx_lm.server): streaming chat
//! completions, temperature 0, `max_tokens` 128, `stream_options.include_usage`, 16 fixed prompts
//! each prefixed `Request L.I: ` (L the level, I the request), `max(4, c)` requests per level run
//! by `c` concurrent clients, one warm-up request per server first (its time to first token is
//! reported: the first request on a freshly loaded model). Output tokens come from the
//! server's usage chunk. TTFT is the time to the first chunk with text; per-request decode rate
//! is (tokens − 1) / (time after the first text); latency ends at `data: [DONE]`. Servers run one
//! at a time (the machine's cores are shared), each started here on a temp socket / free port
//! with its default configuration, and stopped before the next one starts.
//!
//! The overhead comparison runs each level twice with the order of the two paths swapped, and the
//! two prompt sets swapped too, so that both paths see the same prompts and neither always runs
//! first (the daemon's prefix cache and any drift hit both alike).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};
use tonic::transport::Channel;
use zeta_bench::{median, percentile};
use zeta_proto::v1;

mod load;
mod report;

use load::{Level, Outcome, Target, run_level, warm_up};
use report::{OverheadLevel, Row, print_overhead, print_ratios, print_rows};

/// The fixed prompts; request I of a level asks prompt (I − 1) mod 16.
const PROMPTS: [&str; 16] = [
    "Explain how a rainbow forms, step by step.",
    "Write a short poem about the ocean at night.",
    "What are three good habits for learning a new language?",
    "Describe the water cycle to a ten-year-old.",
    "Give me a simple recipe for vegetable soup.",
    "Why do cats purr? Explain what scientists know.",
    "List five interesting facts about the planet Mars.",
    "Tell a short story about a robot who wants to become a gardener.",
    "How does a bicycle stay upright while it moves?",
    "What is the difference between weather and climate?",
    "Write a friendly email inviting a neighbor to a picnic.",
    "Explain what a computer's memory does, in plain words.",
    "Suggest a plan for a relaxing weekend in the mountains.",
    "How do bees make honey? Describe the process.",
    "Give advice to someone starting their first job.",
    "Describe a busy market in a small town in the morning.",
];

/// Our daemon's name for the embedded SmolLM2 GGUF.
const ZETA_MODEL: &str = "smollm2-135m";
/// Our daemon's alias for a `--model` / `--shape` model.
const BENCH_MODEL: &str = "bench";
/// mlx_lm.server's name for the model given by `--model`.
const PEER_MODEL: &str = "default_model";

#[derive(Parser)]
#[command(about = "Streaming load benchmark: zeta-gateway + zeta-mlxd vs mlx_lm.server, and the gateway's overhead")]
struct Args {
    /// The model: a GGUF file or an mlx-community folder (default: the embedded SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Instead of --model, a random-weight 4-bit model of this shape: llama3-8b, llama3.2-1b, qwen3-0.6b,
    /// smollm2-135m.
    #[arg(long)]
    shape: Option<String>,
    /// Concurrency levels, comma-separated.
    #[arg(short, long, value_delimiter = ',', default_value = "1,4,8,16")]
    concurrency: Vec<usize>,
    /// Requests per level; 0 means max(4, concurrency).
    #[arg(short, long, default_value_t = 0)]
    requests: usize,
    /// `max_tokens` of every measured request.
    #[arg(short, long, default_value_t = 128)]
    max_tokens: u32,
    /// Skip mlx_lm.server's levels above this concurrency (it runs ~5 tok/s in aggregate here).
    #[arg(long)]
    peer_max_concurrency: Option<usize>,
    /// Concurrency levels of the gateway-overhead comparison, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    overhead_concurrency: Vec<usize>,
    /// Overhead comparison: requests per path, level and round (two rounds, order swapped).
    #[arg(long, default_value_t = 4)]
    overhead_requests: usize,
    /// Skip the gateway-overhead comparison.
    #[arg(long)]
    no_overhead: bool,
    /// Only run our side.
    #[arg(long)]
    no_peer: bool,
    /// Only run mlx_lm.server.
    #[arg(long)]
    no_zeta: bool,
    /// Smoke test: concurrency 1 and 4, 4 requests, max_tokens 32, the peer capped at c=8
    /// (overrides those flags).
    #[arg(long)]
    quick: bool,
    /// Give up on one request after this many seconds.
    #[arg(long, default_value_t = 1800)]
    request_timeout: u64,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.concurrency = vec![1, 4];
        args.requests = 4;
        args.max_tokens = 32;
        args.peer_max_concurrency = Some(8);
    }
    ensure!(!args.concurrency.is_empty() && !args.concurrency.contains(&0), "--concurrency must be positive");
    ensure!(!args.overhead_concurrency.contains(&0), "--overhead-concurrency must be positive");
    ensure!(args.max_tokens >= 2, "--max-tokens must be at least 2 (decode rates need two tokens)");
    // One thread is plenty for a few dozen streams and keeps the client's own CPU use small on a
    // machine whose cores the servers need.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeout = Duration::from_secs(args.request_timeout);
    let plan: Vec<(usize, usize)> =
        args.concurrency.iter().map(|&c| (c, if args.requests == 0 { c.max(4) } else { args.requests })).collect();

    let custom = args.model.is_some() || args.shape.is_some();
    let model = if custom { Some(zeta_bench::pick_model(args.model.as_deref(), args.shape.as_deref())?) } else { None };
    let mut header = vec![format!(
        "{}, streaming chat, temperature 0, max_tokens {}, {} CPU threads available",
        model.as_deref().map_or("SmolLM2-135M-Instruct".into(), zeta_bench::model_name),
        args.max_tokens,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )];

    let (ours, overhead) = if args.no_zeta {
        (Vec::new(), Vec::new())
    } else {
        let (rows, overhead, info) = run_zeta(&args, model.as_deref(), &plan, timeout).await?;
        header.push(info);
        (rows, overhead)
    };
    let peer = if args.no_peer {
        Vec::new()
    } else {
        let peer_plan: Vec<_> =
            plan.iter().copied().filter(|&(c, _)| args.peer_max_concurrency.is_none_or(|m| c <= m)).collect();
        let (rows, info) = run_peer(&args, model.as_deref(), &peer_plan, timeout).await?;
        header.push(info);
        rows
    };

    println!();
    for h in &header {
        println!("{h}  ");
    }
    if !ours.is_empty() {
        println!("\n### zeta-gateway + zeta-mlxd\n");
        print_rows(&ours);
    }
    if !peer.is_empty() {
        println!("\n### mlx_lm.server\n");
        print_rows(&peer);
    }
    if !ours.is_empty() && !peer.is_empty() {
        println!("\n### Ratios zeta-mlx / mlx_lm.server (TTFT: lower is better)\n");
        print_ratios(&ours, &peer);
    }
    if !overhead.is_empty() {
        println!("\n### Gateway overhead: HTTP/SSE through zeta-gateway vs gRPC straight to zeta-mlxd\n");
        print_overhead(&overhead);
    }
    eprintln!("bench-serve: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Servers

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        eprintln!("bench-serve: started {name} (pid {}), log {}", child.id(), log.display());
        Ok(Proc { name, child: Some(child), log })
    }

    /// Errors, with the end of its log, if it has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("{} exited with {status}:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                eprintln!("bench-serve: stopped {}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench-serve: {} ignored SIGTERM for 15 s; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where the release binaries are: next to this one, else the workspace's `target/release`.
fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name)));
    let there = zeta_bench::root().join("target/release").join(name);
    here.filter(|p| p.is_file()).or_else(|| there.is_file().then_some(there)).with_context(|| {
        format!("{name} is not built; run `cargo build --release -p zeta-mlxd -p zeta-gateway -p zeta-bench`")
    })
}

/// Waits until `GET url` answers 200, while every process in `procs` is still running.
async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    procs: &mut [&mut Proc],
    limit: Duration,
) -> anyhow::Result<Value> {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(5)).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            let body = r.text().await.unwrap_or_default();
            return Ok(serde_json::from_str(&body).unwrap_or(Value::Null));
        }
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if start.elapsed() > limit {
            let logs: Vec<String> = procs.iter().map(|p| format!("--- {}:\n{}", p.name, p.log_tail())).collect();
            bail!("{url} did not answer 200 within {limit:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `zeta-mlxd` (default config, temp socket) and `zeta-gateway` (free port), and runs the
/// levels through the gateway, then the overhead comparison.
async fn run_zeta(
    args: &Args,
    model: Option<&std::path::Path>,
    plan: &[(usize, usize)],
    timeout: Duration,
) -> anyhow::Result<(Vec<Row>, Vec<OverheadLevel>, String)> {
    // Under /tmp: socket paths are capped at 103 bytes, and $TMPDIR can be long (macOS).
    let dir = tempfile::Builder::new().prefix("zeta-bench-").tempdir_in("/tmp")?;
    let socket = dir.path().join("zeta.sock");
    let config = dir.path().join("config.toml");
    let name = if model.is_some() { BENCH_MODEL } else { ZETA_MODEL };
    match model {
        Some(p) => std::fs::write(
            &config,
            format!(
                "# bench-serve: the daemon's defaults but the model\ndefault_model = \"{BENCH_MODEL}\"\n[models.{BENCH_MODEL}]\npath = {:?}\n",
                p.display().to_string()
            ),
        )?,
        None => std::fs::write(&config, "# bench-serve: the daemon's defaults\n")?,
    }
    let port = free_port()?;

    let mut daemon = Proc::spawn(
        "zeta-mlxd",
        Command::new(release_bin("zeta-mlxd")?)
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("ZETA_MLX_SOCKET")
            .env_remove("ZETA_MLX_CONFIG"),
        dir.path().join("zeta-mlxd.log"),
    )?;
    let mut gateway = Proc::spawn(
        "zeta-gateway",
        Command::new(release_bin("zeta-gateway")?)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .env_remove("ZETA_GATEWAY_API_KEYS")
            .env_remove("ZETA_GATEWAY_ADDR")
            .env_remove("ZETA_MLX_CONFIG"),
        dir.path().join("zeta-gateway.log"),
    )?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://127.0.0.1:{port}");
    let health =
        wait_healthy(&http, &format!("{base}/health"), &mut [&mut daemon, &mut gateway], Duration::from_secs(300))
            .await?;
    let d = &health["daemon"];
    let info = format!(
        "zeta-mlx {} (MLX {}, {}), model `{name}` ({}), default config",
        d["version"].as_str().unwrap_or("?"),
        d["mlx_version"].as_str().unwrap_or("?"),
        d["device"].as_str().unwrap_or("?"),
        model.map_or("embedded GGUF".into(), |p| p.display().to_string()),
    );
    eprintln!("bench-serve: {info}");

    let target = Target::Http { client: http.clone(), url: format!("{base}/v1/chat/completions"), model: name.into() };
    let mut rows = Vec::new();
    let info = format!("{info}; {}", warm_up(&target, "zeta-mlx", timeout).await?);
    for &(c, n) in plan {
        let level = run_level(&target, "zeta-mlx", &c.to_string(), c, n, args.max_tokens, timeout).await;
        daemon.check_alive()?;
        gateway.check_alive()?;
        rows.push(Row::new(c, &level));
    }

    let mut overhead = Vec::new();
    if !args.no_overhead && !args.overhead_concurrency.is_empty() {
        let channel = zeta_proto::socket::connect(&socket).await.context("connecting to the daemon's socket")?;
        let grpc = Target::Grpc { client: v1::generation_client::GenerationClient::new(channel), model: name.into() };
        warm_up(&grpc, "gRPC", timeout).await?;
        for &c in &args.overhead_concurrency {
            // Two prompt sets with labels of the same number of digits (SmolLM2's tokenizer splits
            // digits), so the prompts of both sets have the same length.
            let (a, b) = (format!("9{c}1"), format!("9{c}2"));
            let n = args.overhead_requests.max(1);
            let mt = args.max_tokens;
            let mut http_out = Vec::new();
            let mut grpc_out = Vec::new();
            http_out.extend(run_level(&target, "overhead HTTP", &a, c, n, mt, timeout).await.outcomes);
            grpc_out.extend(run_level(&grpc, "overhead gRPC", &b, c, n, mt, timeout).await.outcomes);
            grpc_out.extend(run_level(&grpc, "overhead gRPC", &a, c, n, mt, timeout).await.outcomes);
            http_out.extend(run_level(&target, "overhead HTTP", &b, c, n, mt, timeout).await.outcomes);
            daemon.check_alive()?;
            gateway.check_alive()?;
            overhead.push(OverheadLevel { concurrency: c, http: http_out, grpc: grpc_out });
        }
    }
    gateway.stop();
    daemon.stop();
    Ok((rows, overhead, info))
}

/// Converts the GGUF for mlx-lm, starts `mlx_lm.server` on a free port and runs the levels.
async fn run_peer(
    args: &Args,
    model: Option<&std::path::Path>,
    plan: &[(usize, usize)],
    timeout: Duration,
) -> anyhow::Result<(Vec<Row>, String)> {
    let python = zeta_bench::python()?;
    let model_dir = match model {
        Some(p) => zeta_bench::for_mlx_lm(p)?,
        None => zeta_bench::smollm2_for_mlx_lm()?,
    };
    let version = Command::new(&python)
        .args(["-c", "import importlib.metadata as m; print(m.version('mlx-lm'), m.version('mlx'))"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut vs = version.split_whitespace();
    let info = format!(
        "mlx_lm.server {} (MLX {}), the same weights converted to {}, default flags",
        vs.next().unwrap_or("?"),
        vs.next().unwrap_or("?"),
        model_dir.display()
    );
    let dir = tempfile::Builder::new().prefix("zeta-bench-peer-").tempdir()?;
    let port = free_port()?;
    let mut server = Proc::spawn(
        "mlx_lm.server",
        Command::new(&python)
            .args(["-m", "mlx_lm.server", "--model"])
            .arg(&model_dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("HF_HUB_OFFLINE", "1")
            .env("PYTHONUNBUFFERED", "1"),
        dir.path().join("mlx_lm.server.log"),
    )?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&http, &format!("{base}/health"), &mut [&mut server], Duration::from_secs(300)).await?;
    eprintln!("bench-serve: {info}");
    let target = Target::Http { client: http, url: format!("{base}/v1/chat/completions"), model: PEER_MODEL.into() };
    let info = format!("{info}; {}", warm_up(&target, "mlx_lm", timeout).await?);
    let mut rows = Vec::new();
    for &(c, n) in plan {
        let level = run_level(&target, "mlx_lm", &c.to_string(), c, n, args.max_tokens, timeout).await;
        server.check_alive()?;
        rows.push(Row::new(c, &level));
    }
    server.stop();
    Ok((rows, info))
}

// ---------------------------------------------------------------------------------------------
// Requests
