//! A local HTTP server that behaves like the Hugging Face Hub, for tests of this crate and of the
//! daemon: it serves the files of a folder as a model repository, with the hub's repository-info
//! API, `resolve` URLs, commit and ETag headers, CDN redirects for LFS files and `Range` support,
//! plus switches that record requests, demand a token, cut connections and corrupt data.
//!
//! ```no_run
//! # fn demo(model_dir: &std::path::Path) -> std::io::Result<()> {
//! let hub = zeta_hub::testing::FakeHub::builder().repo("test-org/tiny-model", model_dir).start()?;
//! // Point a client (or a daemon process, through HF_ENDPOINT) at it:
//! let endpoint = hub.endpoint();
//! # let _ = endpoint; Ok(()) }
//! ```
//!
//! Routes, on the hub origin ([`FakeHub::endpoint`]):
//! - `GET /api/models/{org}/{name}[/revision/{rev}]`: JSON with `id`, `sha` and
//!   `siblings: [{rfilename}]`;
//! - `GET /api/models/{org}/{name}/tree/{rev}[/{path}][?recursive=true]`: the file listing
//!   Python's `snapshot_download` uses (one page, `lfs` blocks for LFS files);
//! - `HEAD`/`GET /{org}/{name}/resolve/{rev}/{file}`: `X-Repo-Commit` and `ETag`; a regular file
//!   is served directly, an LFS file (weights by extension, or at least
//!   [`FakeHubBuilder::lfs_threshold`] bytes) answers `302` to the CDN origin with
//!   `X-Linked-Etag` (its sha256) and `X-Linked-Size`.
//!
//! On the CDN origin ([`FakeHub::cdn_endpoint`], another port, so another origin):
//! `HEAD`/`GET /lfs/{org}/{name}/{sha256}`. Unknown repositories get `404` with
//! `X-Error-Code: RepoNotFound`, unknown revisions `RevisionNotFound`, unknown files
//! `EntryNotFound`. Revisions accepted: `main`, the commit, and [`FakeHubBuilder::branch`] names.
//! A regular file's ETag is the first 40 hex digits of its sha256 (shaped like a git blob id).

mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

use wire::{Body, Reply, parse_range, percent_decode};

const LFS_EXTENSIONS: &[&str] = &["safetensors", "gguf", "bin", "pt", "pth", "onnx", "msgpack", "h5", "npz", "ckpt"];

/// Which listener a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The hub itself (API and `resolve` URLs).
    Hub,
    /// The CDN that LFS downloads redirect to.
    Cdn,
}

/// One request the fake hub answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET` or `HEAD`.
    pub method: String,
    /// Path and query as sent (percent-encoded).
    pub path: String,
    /// The listener it reached.
    pub origin: Origin,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// Configures a [`FakeHub`].
#[derive(Debug, Default)]
pub struct FakeHubBuilder {
    repos: Vec<(String, PathBuf, Vec<String>)>,
    token: Option<String>,
    lfs_threshold: Option<u64>,
}

impl FakeHubBuilder {
    /// Serves the files under `dir` (recursively) as model repository `repo_id` (`org/name`).
    pub fn repo(mut self, repo_id: &str, dir: impl Into<PathBuf>) -> Self {
        self.repos.push((repo_id.to_string(), dir.into(), Vec::new()));
        self
    }

    /// Makes the last added repository answer to revision `name` too.
    pub fn branch(mut self, name: &str) -> Self {
        if let Some(last) = self.repos.last_mut() {
            last.2.push(name.to_string());
        }
        self
    }

    /// Requires `Authorization: Bearer {token}` on the hub origin: without it the hub answers
    /// `401`, with another token `403`, both with `X-Error-Code: GatedRepo`.
    pub fn require_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Files at least this large are LFS files even without a weights extension (default 10 MiB).
    pub fn lfs_threshold(mut self, bytes: u64) -> Self {
        self.lfs_threshold = Some(bytes);
        self
    }

    /// Reads the folders, binds two loopback ports and serves on a background thread until the
    /// [`FakeHub`] is dropped.
    pub fn start(self) -> std::io::Result<FakeHub> {
        let threshold = self.lfs_threshold.unwrap_or(10 << 20);
        let mut repos = HashMap::new();
        for (id, dir, branches) in self.repos {
            repos.insert(id.clone(), load_repo(&id, &dir, branches, threshold)?);
        }
        let hub = std::net::TcpListener::bind("127.0.0.1:0")?;
        let cdn = std::net::TcpListener::bind("127.0.0.1:0")?;
        hub.set_nonblocking(true)?;
        cdn.set_nonblocking(true)?;
        let endpoint = format!("http://{}", hub.local_addr()?);
        let cdn_endpoint = format!("http://{}", cdn.local_addr()?);
        let state = Arc::new(State {
            repos,
            token: self.token,
            cdn: cdn_endpoint.clone(),
            log: Mutex::default(),
            cuts: Mutex::default(),
            corrupt: Mutex::default(),
            held: tokio::sync::watch::Sender::new(false),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new().name("fake-hub".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("fake hub runtime");
            runtime.block_on(serve(hub, cdn, thread_state, stop_rx));
        })?;
        Ok(FakeHub { endpoint, cdn_endpoint, state, stop: Some(stop_tx), thread: Some(thread) })
    }
}

/// A running fake hub; stops when dropped.
#[derive(Debug)]
pub struct FakeHub {
    endpoint: String,
    cdn_endpoint: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHub {
    /// A builder with no repositories.
    pub fn builder() -> FakeHubBuilder {
        FakeHubBuilder::default()
    }

    /// The hub's base URL (`http://127.0.0.1:PORT`), the value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The CDN origin's base URL.
    pub fn cdn_endpoint(&self) -> String {
        self.cdn_endpoint.clone()
    }

    /// The commit a repository is served at (derived from its file contents).
    pub fn commit(&self, repo_id: &str) -> Option<String> {
        self.state.repos.get(repo_id).map(|r| r.commit.clone())
    }

    /// The ETag a file is served with (its sha256 for LFS files).
    pub fn etag(&self, repo_id: &str, file: &str) -> Option<String> {
        self.state.repos.get(repo_id)?.files.get(file).map(|f| f.etag.clone())
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.lock().expect("log lock").clone()
    }

    /// How many requests were answered so far.
    pub fn request_count(&self) -> usize {
        self.state.log.lock().expect("log lock").len()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.log.lock().expect("log lock").clear();
    }

    /// The next `times` responses carrying the body of `file` (repository-relative) send only
    /// `bytes` bytes of it and then close the connection.
    pub fn cut_after(&self, file: &str, bytes: u64, times: usize) {
        self.state.cuts.lock().expect("cuts lock").insert(file.to_string(), (bytes, times));
    }

    /// Removes every connection-cutting rule.
    pub fn clear_cuts(&self) {
        self.state.cuts.lock().expect("cuts lock").clear();
    }

    /// Holds every answer (requests are read, then wait) until [`FakeHub::release`]: a download
    /// that stays in progress for as long as a test needs.
    pub fn hold(&self) {
        self.state.held.send_replace(true);
    }

    /// Lets held answers go.
    pub fn release(&self) {
        self.state.held.send_replace(false);
    }

    /// Serves `file` with its first byte flipped (sizes and headers unchanged) until cleared.
    pub fn set_corrupt(&self, file: &str, corrupt: bool) {
        let mut set = self.state.corrupt.lock().expect("corrupt lock");
        if corrupt {
            set.insert(file.to_string());
        } else {
            set.remove(file);
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
struct State {
    repos: HashMap<String, Repo>,
    token: Option<String>,
    cdn: String,
    log: Mutex<Vec<RecordedRequest>>,
    cuts: Mutex<HashMap<String, (u64, usize)>>,
    corrupt: Mutex<HashSet<String>>,
    /// While true, requests are read and their answers wait.
    held: tokio::sync::watch::Sender<bool>,
}

/// What a hub-origin URL asks for.
enum Want {
    Info,
    Tree(String),
    File(String),
}

#[derive(Debug)]
struct Repo {
    commit: String,
    revisions: Vec<String>,
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    size: u64,
    etag: String,
    lfs: bool,
}

fn load_repo(id: &str, dir: &Path, branches: Vec<String>, threshold: u64) -> std::io::Result<Repo> {
    let mut files = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), rel));
                continue;
            }
            let path = entry.path();
            let sha = sha256_file(&path)?;
            let size = std::fs::metadata(&path)?.len();
            let ext = rel.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            let lfs = LFS_EXTENSIONS.contains(&ext.as_str()) || size >= threshold;
            let etag = if lfs { sha } else { sha[..40].to_string() };
            files.insert(rel, Entry { path, size, etag, lfs });
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(id.as_bytes());
    for (name, entry) in &files {
        hasher.update(name.as_bytes());
        hasher.update(entry.etag.as_bytes());
    }
    let commit = hex(&hasher.finalize())[..40].to_string();
    let mut revisions = vec!["main".to_string(), commit.clone()];
    revisions.extend(branches);
    Ok(Repo { commit, revisions, files })
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve(
    hub: std::net::TcpListener,
    cdn: std::net::TcpListener,
    state: Arc<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let (Ok(hub), Ok(cdn)) = (TcpListener::from_std(hub), TcpListener::from_std(cdn)) else { return };
    loop {
        let (stream, origin) = tokio::select! {
            _ = &mut stop => return,
            Ok((s, _)) = hub.accept() => (s, Origin::Hub),
            Ok((s, _)) = cdn.accept() => (s, Origin::Cdn),
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, origin, &state).await {
                tracing::debug!(error = %err, "fake hub connection ended");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, origin: Origin, state: &State) -> std::io::Result<()> {
    let Some(request) = wire::read_request(&mut stream).await? else { return Ok(()) };
    let _ = state.held.subscribe().wait_for(|held| !*held).await;
    let reply = route(state, origin, &request.method, &request.target, &request.headers);
    state.log.lock().expect("log lock").push(RecordedRequest {
        method: request.method.clone(),
        path: request.target.clone(),
        origin,
        authorization: request.headers.get("authorization").cloned(),
        range: request.headers.get("range").cloned(),
        status: reply.status,
    });
    let head_only = request.method == "HEAD";
    let (limit, flip) = match &reply.body {
        Body::File { repo_file, start, .. } if !head_only => {
            (take_cut(state, repo_file), *start == 0 && state.corrupt.lock().expect("corrupt lock").contains(repo_file))
        }
        _ => (None, false),
    };
    wire::write_reply(&mut stream, head_only, reply, limit, flip).await
}

fn take_cut(state: &State, repo_file: &str) -> Option<u64> {
    let mut cuts = state.cuts.lock().expect("cuts lock");
    let (bytes, times) = cuts.get_mut(repo_file)?;
    if *times == 0 {
        return None;
    }
    *times -= 1;
    Some(*bytes)
}

fn route(state: &State, origin: Origin, method: &str, target: &str, headers: &HashMap<String, String>) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::new(405, "method not allowed");
    }
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();

    if origin == Origin::Cdn {
        return match seg.as_slice() {
            ["lfs", org, name, etag] => match state
                .repos
                .get(&format!("{org}/{name}"))
                .and_then(|r| r.files.iter().find(|(_, e)| e.lfs && e.etag == *etag))
            {
                Some((file, entry)) => serve_file(file, entry, headers).header("ETag", format!("\"{}\"", entry.etag)),
                None => Reply::new(404, "no such object"),
            },
            _ => Reply::new(404, "not found"),
        };
    }

    let (repo_id, revision, want) = match seg.as_slice() {
        ["api", "models", org, name] => (format!("{org}/{name}"), "main", Want::Info),
        ["api", "models", org, name, "revision", rev] => (format!("{org}/{name}"), *rev, Want::Info),
        ["api", "models", org, name, "tree", rev, rest @ ..] => {
            (format!("{org}/{name}"), *rev, Want::Tree(rest.join("/")))
        }
        [org, name, "resolve", rev, rest @ ..] if !rest.is_empty() => {
            (format!("{org}/{name}"), *rev, Want::File(rest.join("/")))
        }
        _ => return Reply::error(404, "EntryNotFound", "not found"),
    };
    let Some(repo) = state.repos.get(&repo_id) else {
        return Reply::error(404, "RepoNotFound", "Repository not found");
    };
    if let Some(token) = &state.token {
        let expected = format!("Bearer {token}");
        let message = format!(
            "Access to model {repo_id} is restricted. You must have access to it and be authenticated \
             to access it. Please log in."
        );
        match headers.get("authorization") {
            None => return Reply::error(401, "GatedRepo", &message),
            Some(given) if *given != expected => return Reply::error(403, "GatedRepo", &message),
            Some(_) => {}
        }
    }
    if !repo.revisions.iter().any(|r| r == revision) {
        return Reply::error(404, "RevisionNotFound", &format!("Invalid rev id: {revision}"));
    }
    let file = match want {
        Want::File(file) => file,
        Want::Tree(prefix) => return tree(repo, &prefix, target.contains("recursive=true")),
        Want::Info => return info(state, repo, &repo_id),
    };
    let Some(entry) = repo.files.get(&file) else {
        return Reply::error(404, "EntryNotFound", &format!("{file} does not exist on \"{revision}\""))
            .header("X-Repo-Commit", repo.commit.clone());
    };
    if entry.lfs {
        let location = format!("{}/lfs/{repo_id}/{}?expires=9999999999&signature=fake", state.cdn, entry.etag);
        let body = format!("Found. Redirecting to {location}");
        // The pointer file's own ETag differs from the content's, as on the hub: clients must
        // prefer X-Linked-Etag.
        return Reply::new(302, body)
            .header("Location", location)
            .header("X-Repo-Commit", repo.commit.clone())
            .header("X-Linked-Etag", format!("\"{}\"", entry.etag))
            .header("X-Linked-Size", entry.size.to_string())
            .header("ETag", format!("\"{}\"", &entry.etag[..40]));
    }
    serve_file(&file, entry, headers)
        .header("X-Repo-Commit", repo.commit.clone())
        .header("ETag", format!("\"{}\"", entry.etag))
}

/// `GET /api/models/{repo}/revision/{rev}`: the fields clients read (`sha`, `siblings`) and
/// enough of the rest for strict deserializers.
fn info(state: &State, repo: &Repo, repo_id: &str) -> Reply {
    let siblings: Vec<_> = repo.files.keys().map(|f| serde_json::json!({ "rfilename": f })).collect();
    let body = serde_json::json!({
        "_id": format!("fake-{}", &repo.commit[..12]),
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split('/').next(),
        "sha": repo.commit,
        "private": false,
        "gated": if state.token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
        "disabled": false,
        "tags": [],
        "lastModified": "2025-01-01T00:00:00.000Z",
        "siblings": siblings,
    });
    Reply::new(200, body.to_string()).header("Content-Type", "application/json")
}

/// `GET /api/models/{repo}/tree/{rev}[/{path}][?recursive=true]`, which `huggingface_hub`'s
/// `snapshot_download` lists files with: one page, files with their `lfs` block, and folders.
fn tree(repo: &Repo, prefix: &str, recursive: bool) -> Reply {
    let under = |path: &str| prefix.is_empty() || path.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'));
    let depth_ok = |path: &str| {
        let rest = if prefix.is_empty() { path } else { &path[prefix.len() + 1..] };
        recursive || !rest.contains('/')
    };
    let mut folders = std::collections::BTreeSet::new();
    let mut entries = Vec::new();
    for (path, entry) in repo.files.iter().filter(|(p, _)| under(p)) {
        let mut parent = path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            if under(dir) && depth_ok(dir) {
                folders.insert(dir.to_string());
            }
            parent = dir;
        }
        if !depth_ok(path) {
            continue;
        }
        let mut item = serde_json::json!({
            "type": "file", "oid": &entry.etag[..40], "size": entry.size, "path": path,
        });
        if entry.lfs {
            item["lfs"] = serde_json::json!({ "oid": entry.etag, "size": entry.size, "pointerSize": 134 });
        }
        entries.push(item);
    }
    for dir in folders {
        entries.push(serde_json::json!({ "type": "directory", "oid": "0".repeat(40), "size": 0, "path": dir }));
    }
    Reply::new(200, serde_json::Value::Array(entries).to_string()).header("Content-Type", "application/json")
}

/// `200` with the whole file, or `206`/`416` for a `Range` request.
fn serve_file(repo_file: &str, entry: &Entry, headers: &HashMap<String, String>) -> Reply {
    let whole = |status, start, len| Reply {
        status,
        headers: vec![
            ("Accept-Ranges".into(), "bytes".into()),
            ("Content-Type".into(), "application/octet-stream".into()),
        ],
        body: Body::File { repo_file: repo_file.to_string(), path: entry.path.clone(), start, len },
    };
    let Some(range) = headers.get("range") else {
        return whole(200, 0, entry.size);
    };
    match parse_range(range, entry.size) {
        Some((start, end)) => {
            whole(206, start, end - start + 1).header("Content-Range", format!("bytes {start}-{end}/{}", entry.size))
        }
        None => Reply::new(416, "range not satisfiable").header("Content-Range", format!("bytes */{}", entry.size)),
    }
}

/// The files under `dir` (symlinks listed, not followed) as sorted paths relative to it: what
/// tests compare when they check the shape of a cache or an installation.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let p = e.expect("a directory entry").path();
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("below dir").to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
