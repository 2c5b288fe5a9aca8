//! The end-to-end test harness: starts the real `zeta-mlxd` and `zeta-gateway` binaries on a
//! temporary socket and a free port with a temporary config, waits until they answer, hands out
//! gRPC clients and a raw HTTP/1.1 client, and reads their logs. Tests in `e2e/` drive the processes only through their public
//! interfaces, as users and local tools do.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use zeta_proto::v1;

/// A binary of this workspace, built by `make test` before the tests run.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let p = dir.join(name);
    assert!(p.is_file(), "{} is not built: run `make test` (it builds every binary first)", p.display());
    p
}

pub use zeta_fixtures::{python, root, tiny};

/// How to start a daemon.
#[derive(Default)]
pub struct DaemonBuilder {
    config: String,
    env: Vec<(String, String)>,
    socket: Option<PathBuf>,
    wait_ready: bool,
}

impl DaemonBuilder {
    /// TOML config text.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = toml.to_string();
        self
    }

    /// An environment variable for the daemon.
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((k.into(), v.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Use this socket path instead of one in the temporary folder.
    pub fn socket(mut self, p: &Path) -> Self {
        self.socket = Some(p.to_path_buf());
        self
    }

    /// Wait until the default model is loaded, not just until the socket answers.
    pub fn wait_ready(mut self) -> Self {
        self.wait_ready = true;
        self
    }

    /// Starts the daemon and waits until it answers on its socket.
    pub async fn start(self) -> Daemon {
        let dir = tempfile::Builder::new().prefix("zeta-e2e-").tempdir_in("/tmp").expect("temp dir");
        let socket = self.socket.clone().unwrap_or_else(|| dir.path().join("run/zeta.sock"));
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &self.config).unwrap();
        let log = dir.path().join("daemon.log");
        let child = spawn_daemon(&config, &socket, &log, &self.env);
        let mut d = Daemon { child: Some(child), socket, config, log, dir };
        d.wait_answering(Duration::from_secs(60)).await;
        if self.wait_ready {
            d.wait_default_ready(Duration::from_secs(120)).await;
        }
        d
    }
}

/// Starts `zeta-mlxd` with this config and socket, logging to `log`.
pub fn spawn_daemon(config: &Path, socket: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(bin("zeta-mlxd"));
    cmd.arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .env("RUST_LOG", "info,zeta_engine=debug")
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("ZETA_MLX_SOCKET")
        .stdout(Stdio::null())
        .stderr(log_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start zeta-mlxd")
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    /// Its socket.
    pub socket: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file (standard error).
    pub log: PathBuf,
    /// The temporary folder holding all of it.
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// A builder with an empty config (the embedded default model).
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        zeta_proto::socket::connect(&self.socket).await.expect("connect to the daemon")
    }

    /// A `Generation` client.
    pub async fn generation(&self) -> v1::generation_client::GenerationClient<Channel> {
        v1::generation_client::GenerationClient::new(self.channel().await)
    }

    /// A `Models` client.
    pub async fn models(&self) -> v1::models_client::ModelsClient<Channel> {
        v1::models_client::ModelsClient::new(self.channel().await)
    }

    /// A `Daemon` client.
    pub async fn status_client(&self) -> v1::daemon_client::DaemonClient<Channel> {
        v1::daemon_client::DaemonClient::new(self.channel().await)
    }

    /// The daemon's status.
    pub async fn status(&self) -> v1::DaemonStatus {
        self.status_client().await.get_status(v1::GetStatusRequest {}).await.expect("GetStatus").into_inner()
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_answering(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(ch) = zeta_proto::socket::connect(&self.socket).await
                && v1::daemon_client::DaemonClient::new(ch).get_status(v1::GetStatusRequest {}).await.is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("zeta-mlxd exited with {status} before answering:\n{}", self.logs());
            }
            assert!(start.elapsed() < limit, "zeta-mlxd did not answer within {limit:?}:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the default model is loaded.
    pub async fn wait_default_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let s = self.status().await;
            if s.ready {
                return;
            }
            assert!(start.elapsed() < limit, "default model not ready: {}\n{}", s.not_ready_reason, self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        signal_child(self.child.as_ref(), sig);
    }

    /// Waits for the process to exit (up to `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }
}

fn signal_child(child: Option<&Child>, sig: i32) {
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(child.expect("running").id() as i32, sig) };
}

/// Waits up to `limit` for the child to exit; once it has, it is no longer ours to kill.
fn wait_child(child: &mut Option<Child>, limit: Duration) -> Option<ExitStatus> {
    let c = child.as_mut()?;
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = c.try_wait() {
            *child = None;
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A chat request with one user message.
pub fn chat(model: &str, text: &str, max_tokens: u32) -> v1::GenerateRequest {
    v1::GenerateRequest {
        model: model.into(),
        input: Some(v1::generate_request::Input::Chat(v1::Chat {
            messages: vec![v1::Message { role: "user".into(), content: Some(text.into()), ..Default::default() }],
            continue_final_message: false,
        })),
        sampling: Some(v1::SamplingParams { temperature: Some(0.0), ..Default::default() }),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

/// A raw token prompt.
pub fn tokens(model: &str, ids: Vec<u32>, max_tokens: u32) -> v1::GenerateRequest {
    v1::GenerateRequest {
        model: model.into(),
        input: Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids })),
        sampling: Some(v1::SamplingParams { temperature: Some(0.0), ..Default::default() }),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

/// What one generation produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// The `started` event.
    pub started: Option<v1::Started>,
    /// All text.
    pub text: String,
    /// All token ids.
    pub tokens: Vec<u32>,
    /// The `finished` event.
    pub finished: Option<v1::Finished>,
}

impl Outcome {
    /// Takes in one event of the stream.
    pub fn add(&mut self, ev: v1::GenerateEvent) {
        match ev.event {
            Some(v1::generate_event::Event::Started(s)) => self.started = Some(s),
            Some(v1::generate_event::Event::Delta(d)) => {
                self.text.push_str(&d.text);
                self.tokens.extend(d.token_ids);
            }
            Some(v1::generate_event::Event::Finished(f)) => self.finished = Some(f),
            None => {}
        }
    }
}

/// Runs a generation to its end.
pub async fn generate(
    client: &mut v1::generation_client::GenerationClient<Channel>,
    req: v1::GenerateRequest,
) -> Result<Outcome, tonic::Status> {
    collect(client.generate(req).await?.into_inner(), Outcome::default()).await
}

/// Reads the rest of a generation's stream into `out`.
pub async fn collect(
    mut stream: tonic::Streaming<v1::GenerateEvent>,
    mut out: Outcome,
) -> Result<Outcome, tonic::Status> {
    while let Some(ev) = stream.message().await? {
        out.add(ev);
    }
    Ok(out)
}

/// A config naming tiny models by alias.
pub fn tiny_config(extra: &str, models: &[(&str, &str)]) -> String {
    let mut s = extra.to_string();
    s.push('\n');
    for (alias, name) in models {
        s.push_str(&format!("[models.{alias}]\npath = \"{}\"\n", tiny(name).display()));
    }
    s
}

/// Runs one of the reference builders of `tests/reference/` (`script BASE OUT`), which make a
/// model from a tiny one once and reuse it after.
fn build_from(script: &str, base: &Path, out: &Path) {
    let status = Command::new(python())
        .arg(root().join("tests/reference").join(script))
        .arg(base)
        .arg(out)
        .env("HF_HUB_OFFLINE", "1")
        .status()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(status.success(), "{script} failed");
}

/// The tiny Qwen3 embedding model (see `tests/reference/make_embedding_model.py`), made from
/// `tiny("qwen3-f32")`.
pub fn embedding_model() -> PathBuf {
    let dir = root().join("target/tmp/models/embedding");
    build_from("make_embedding_model.py", &tiny("qwen3-f32"), &dir);
    dir.join("tiny-qwen3-embedding")
}

/// The scripted models (see `tests/reference/make_scripted_models.py`): tiny models whose greedy
/// answer is a fixed tool call (`scripted-tools`) or a fixed `<think>` reasoning plus answer
/// (`scripted-reasoning`).
pub fn scripted(name: &str) -> PathBuf {
    let dir = root().join("target/tmp/models/scripted");
    build_from("make_scripted_models.py", &tiny("qwen2-f32"), &dir);
    dir.join(name)
}

/// A running `zeta-gateway` on an ephemeral port; killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Its log file.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway in front of `socket` with extra flags, and waits until it answers.
    pub async fn start(socket: &Path, flags: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gateway.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin("zeta-gateway"))
            .arg("--listen")
            .arg(&addr)
            .arg("--socket")
            .arg(socket)
            .args(flags)
            .env("RUST_LOG", "info")
            .env_remove("ZETA_GATEWAY_API_KEYS")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start zeta-gateway");
        let g = Gateway { child: Some(child), addr, log, _dir: dir };
        let start = Instant::now();
        while http(&g.addr, "GET", "/health", &[], b"").await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "gateway did not answer:\n{}", g.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        g
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Everything it logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request; see [`http`].
    pub async fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http(&self.addr, method, path, &[("content-type", "application/json")], body).await.expect("HTTP request")
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        signal_child(self.child.as_ref(), sig);
    }

    /// Waits for the process to exit (up to `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Lower-cased header names and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 client (`Connection: close`), enough to send exactly the bytes a test
/// wants (invalid UTF-8, broken JSON, huge bodies) and read SSE streams raw.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    parse_response(&raw)
}

/// Parses the raw bytes of one HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// Runs a conformance script of `tests/conformance/` (an official client's checks) with the
/// project's Python against a running gateway; panics with its report, the gateway's log and the
/// daemon's log tail unless every check passed.
pub async fn conformance(script: &str, args: Vec<String>, env: Vec<(&'static str, String)>, d: &Daemon, g: &Gateway) {
    let (passed, report) = run_checks(script, args, env).await;
    assert!(
        passed,
        "conformance failures:\n{report}\n--- gateway log ---\n{}\n--- daemon log tail ---\n{}",
        g.logs(),
        log_tail(d)
    );
}

/// [`conformance`] for a script that talks gRPC to the daemon's socket itself (no gateway).
pub async fn grpc_conformance(script: &str, args: Vec<String>, d: &Daemon) {
    let (passed, report) = run_checks(script, args, vec![]).await;
    assert!(passed, "conformance failures:\n{report}\n--- daemon log tail ---\n{}", log_tail(d));
}

fn log_tail(d: &Daemon) -> String {
    d.logs().lines().rev().take(40).collect::<Vec<_>>().join("\n")
}

/// Runs a script of `tests/conformance/`: whether every check passed, and its report.
async fn run_checks(script: &str, args: Vec<String>, env: Vec<(&'static str, String)>) -> (bool, String) {
    let script = root().join("tests/conformance").join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&script)
            .args(&args)
            .envs(env)
            .env("HF_HUB_OFFLINE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("run the conformance suite")
    })
    .await
    .expect("the conformance suite's thread");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    (out.status.success() && report.contains("checks passed"), report)
}
