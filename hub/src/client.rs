//! [`HubClient`]: resolves a [`ModelRef`] to a local path, from the cache with no network request
//! when the model is complete there, else by asking the hub (through `hf-hub`) for the commit and
//! file list and downloading only the files the model needs, reporting [`Progress`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::Url;

use crate::cache::{self, RepoCache};
use crate::config::HubConfig;
use crate::download::{self, Chain, FileMeta, Http, Target};
use crate::error::{HubError, Result, error_chain};
use crate::model_ref::{ModelRef, is_safe_component};
use crate::select::{self, Plan};

/// Metadata requests in flight at once; downloads themselves run one file at a time.
const HEAD_CONCURRENCY: usize = 8;
/// Progress is reported at most this often per file, besides each file's start and end.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// One progress report of [`HubClient::ensure_local`].
///
/// Totals count the files being resolved by this call, including those already in the cache.
/// For a sharded model the totals grow once, after its index file has been read. Sizes the hub
/// does not announce count as 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Repository-relative name of the file being fetched.
    pub file: String,
    /// Bytes of this file on disk so far.
    pub file_bytes: u64,
    /// Size of this file.
    pub file_total: u64,
    /// Bytes of all files done so far, including this file's progress.
    pub bytes_done: u64,
    /// Size of all files.
    pub bytes_total: u64,
    /// Files complete so far.
    pub files_done: usize,
    /// Number of files.
    pub files_total: usize,
}

/// Downloads models from a Hugging Face Hub (or a server behaving like it) into the shared cache.
///
/// Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct HubClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HubConfig,
    /// `hf-hub` answers the repository-info API (commit and file list) and classifies its errors.
    api: hf_hub::HFClient,
    /// Our own transfer code: `hf-hub` 1.0 restarts interrupted downloads from zero and does not
    /// verify sizes or hashes (see the crate docs).
    http: Http,
}

impl HubClient {
    /// A client configured from the environment ([`HubConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::with_config(HubConfig::from_env())
    }

    /// A client with an explicit configuration.
    ///
    /// `token: None` behaves like `huggingface_hub`'s `token=None`: the ambient login
    /// (`HF_TOKEN`, `HF_TOKEN_PATH`, `$HF_HOME/token`) is used if there is one, because `hf-hub`
    /// falls back to it for the API request and our downloads must authenticate the same way.
    pub fn with_config(mut config: HubConfig) -> Result<Self> {
        config.endpoint = config.endpoint.trim().trim_end_matches('/').to_string();
        let endpoint = Url::parse(&config.endpoint).map_err(|e| HubError::Config {
            message: format!("HF_ENDPOINT {:?} is not a URL: {e}", config.endpoint),
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.cannot_be_a_base() || endpoint.host().is_none() {
            return Err(HubError::Config {
                message: format!("HF_ENDPOINT {:?} must be an http:// or https:// URL", config.endpoint),
            });
        }
        if config.token.is_none() {
            config.token = HubConfig::from_env().token;
        }
        let user_agent = format!("zeta-hub/{}", env!("CARGO_PKG_VERSION"));
        let mut api = hf_hub::HFClient::builder()
            .endpoint(config.endpoint.clone())
            .cache_dir(config.cache_dir.clone())
            .user_agent(user_agent.clone())
            .retry_max_attempts(2);
        if let Some(token) = &config.token {
            api = api.token(token.clone());
        }
        let api = api.build().map_err(|e| HubError::Config { message: format!("cannot build the hub client: {e}") })?;
        let http = Http::new(endpoint, config.token.clone(), &user_agent)
            .map_err(|e| HubError::Config { message: format!("cannot build the HTTP client: {}", error_chain(&e)) })?;
        Ok(HubClient { inner: Arc::new(Inner { config, api, http }) })
    }

    /// The configuration in use (the token is redacted in its `Debug` output).
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The local path of `model` if the cache holds it completely, with no network request: the
    /// snapshot folder of a safetensors model, or the `.gguf` file of a GGUF model.
    ///
    /// Works on caches written by Python's `huggingface_hub` (mlx-lm, `hf download`) as well as
    /// by this crate. A cached model is served as is: a branch that moved on the hub is not
    /// noticed until the reference names the new commit or the cache entry is removed.
    pub async fn resolve_cached(&self, model: &ModelRef) -> Option<PathBuf> {
        let cache_dir = self.inner.config.cache_dir.clone();
        let model = model.clone();
        tokio::task::spawn_blocking(move || cache::find_complete(&cache_dir, &model)).await.ok().flatten()
    }

    /// The local path of `model`, downloading what is missing: the snapshot folder
    /// (`.../snapshots/<commit>`) of a safetensors model, or the path of its `.gguf` file.
    ///
    /// A model complete in the cache is returned without any network request. Otherwise, unless
    /// offline, the hub is asked for the revision's commit and file list, the needed files (see
    /// [`crate::MODEL_METADATA_FILES`] and [`crate::choose_gguf`]) are fetched one at a time into
    /// the shared cache, resuming partial files, and `refs/<revision>` is written last.
    #[tracing::instrument(name = "hub_ensure_local", skip_all, fields(model = %model))]
    pub async fn ensure_local(&self, model: &ModelRef, mut progress: impl FnMut(Progress) + Send) -> Result<PathBuf> {
        if let Some(path) = self.resolve_cached(model).await {
            tracing::debug!(model = %model, path = %path.display(), "model found in the hub cache");
            return Ok(path);
        }
        let revision = model.revision();
        if self.inner.config.offline {
            return Err(HubError::OfflineNotCached {
                repo: model.repo_id.clone(),
                revision: revision.to_string(),
                file: model.file.clone(),
                cache_dir: self.inner.config.cache_dir.clone(),
            });
        }

        let (commit, siblings) = self.repo_info(model).await?;
        tracing::info!(model = %model, commit = %commit, files = siblings.len(), "downloading from the hub");
        let cache = RepoCache::new(&self.inner.config.cache_dir, model);
        let target = Target { repo: &model.repo_id, revision, commit: &commit };
        let mut job = Job { http: &self.inner.http, cache: &cache, target, report: Reporter::new(&mut progress) };

        let path = match select::plan(&model.repo_id, revision, &siblings, model.file.as_deref())? {
            Plan::Gguf { file } => {
                job.fetch(std::slice::from_ref(&file)).await?;
                cache.snapshot_dir(&commit).join(&file)
            }
            Plan::Safetensors { mut metadata, index, weights } => {
                let shards = match index {
                    Some(index) => {
                        metadata.push(index.clone());
                        job.fetch(&metadata).await?;
                        let index_path = cache.snapshot_dir(&commit).join(&index);
                        let bytes = tokio::fs::read(&index_path).await.map_err(|e| HubError::io(&index_path, e))?;
                        let shards = select::shards_from_index(&bytes)
                            .map_err(|detail| download::protocol(target, Some(&index), detail))?;
                        if let Some(missing) = shards.iter().find(|s| !siblings.contains(s)) {
                            return Err(HubError::FileNotFound {
                                repo: model.repo_id.clone(),
                                revision: revision.to_string(),
                                file: missing.clone(),
                            });
                        }
                        shards
                    }
                    None => {
                        job.fetch(&metadata).await?;
                        weights
                    }
                };
                job.fetch(&shards).await?;
                cache.snapshot_dir(&commit)
            }
        };
        if revision != commit {
            cache.write_ref(revision, &commit).map_err(|e| HubError::io(cache.ref_path(revision), e))?;
        }
        tracing::info!(model = %model, path = %path.display(), "model downloaded");
        Ok(path)
    }

    /// The revision's commit and file list, from `GET /api/models/{repo}/revision/{revision}`.
    async fn repo_info(&self, model: &ModelRef) -> Result<(String, Vec<String>)> {
        let (owner, name) = model.repo_id.split_once('/').expect("ModelRef holds org/name");
        let info = self
            .inner
            .api
            .model(owner, name)
            .info()
            .revision(model.revision().to_string())
            .send()
            .await
            .map_err(|e| self.api_error(model, e))?;
        let protocol = |detail: &str| HubError::Protocol {
            repo: model.repo_id.clone(),
            revision: model.revision().to_string(),
            file: None,
            detail: detail.to_string(),
        };
        let commit = info.sha.ok_or_else(|| protocol("the repository info has no commit sha"))?;
        // The commit names a folder under snapshots/.
        if !is_safe_component(&commit) {
            return Err(protocol(&format!("unusable commit sha {commit:?}")));
        }
        let files = info.siblings.unwrap_or_default().into_iter().map(|s| s.rfilename).collect();
        Ok((commit, files))
    }

    /// Maps `hf-hub`'s error for the info request, trusting the hub's `X-Error-Code` over the
    /// status (the hub answers 401 for a repository that does not exist when no token is sent).
    fn api_error(&self, model: &ModelRef, err: hf_hub::HFError) -> HubError {
        use hf_hub::HFError as E;
        let (repo, revision) = (model.repo_id.clone(), model.revision().to_string());
        let (status, code, message) = match &err {
            E::Http { context }
            | E::AuthRequired { context }
            | E::Forbidden { context }
            | E::Conflict { context }
            | E::RateLimited { context, .. } => {
                (Some(context.status.as_u16()), context.error_code.clone(), context.server_message.clone())
            }
            E::RepoNotFound { context, .. }
            | E::RevisionNotFound { context, .. }
            | E::EntryNotFound { context, .. } => match context {
                Some(c) => (Some(c.status.as_u16()), c.error_code.clone(), c.server_message.clone()),
                None => (None, None, None),
            },
            _ => (None, None, None),
        };
        let unauthorized = |gated| HubError::Unauthorized {
            repo: repo.clone(),
            revision: revision.clone(),
            file: None,
            status: status.unwrap_or(401),
            gated,
            token_sent: self.inner.config.token.is_some(),
        };
        match (code.as_deref(), &err) {
            (Some("RepoNotFound"), _) | (_, E::RepoNotFound { .. }) => {
                HubError::RepoNotFound { repo, endpoint: self.inner.config.endpoint.clone() }
            }
            (Some("RevisionNotFound"), _) | (_, E::RevisionNotFound { .. }) => {
                HubError::RevisionNotFound { repo, revision }
            }
            (Some("GatedRepo"), _) => unauthorized(true),
            (_, E::AuthRequired { .. } | E::Forbidden { .. }) => unauthorized(false),
            (_, E::Request { source, url }) => HubError::Network {
                repo,
                revision,
                file: None,
                url: url.clone().unwrap_or_else(|| self.inner.config.endpoint.clone()),
                detail: Chain(source).to_string(),
            },
            (_, E::Http { context } | E::RateLimited { context, .. } | E::Conflict { context }) => HubError::Http {
                repo,
                revision,
                file: None,
                url: context.url.clone(),
                status: status.unwrap_or_default(),
                message: message.unwrap_or_default(),
            },
            _ => HubError::Protocol { repo, revision, file: None, detail: error_chain(&err) },
        }
    }
}

/// One `ensure_local` call's downloads, with its running progress totals.
struct Job<'a, 'p> {
    http: &'a Http,
    cache: &'a RepoCache,
    target: Target<'a>,
    report: Reporter<'p>,
}

impl Job<'_, '_> {
    /// Makes every file of `files` present in the snapshot, in order.
    async fn fetch(&mut self, files: &[String]) -> Result<()> {
        let snapshot = self.cache.snapshot_dir(self.target.commit);
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for file in files {
            match std::fs::metadata(snapshot.join(file)) {
                Ok(m) if m.is_file() => present.push((file.clone(), m.len())),
                _ => missing.push(file.clone()),
            }
        }
        let (http, target) = (self.http, self.target);
        let metas: Vec<(String, FileMeta)> = stream::iter(missing)
            .map(|file| async move { http.head_file(target, &file).await.map(|meta| (file, meta)) })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;

        self.report.files_total += files.len();
        self.report.bytes_total += present.iter().map(|(_, len)| len).sum::<u64>();
        self.report.bytes_total += metas.iter().filter_map(|(_, m)| m.size).sum::<u64>();
        for (file, len) in present {
            self.report.file_done(&file, len);
        }
        for (file, meta) in metas {
            let total = meta.size.unwrap_or(0);
            if download::blob_present(self.cache, &meta) {
                tracing::debug!(file = %file, etag = %meta.etag, "blob already cached");
            } else {
                self.report.start_file(&file, total);
                let report = &mut self.report;
                let mut on_bytes = |done: u64| report.file_bytes(&file, done, total);
                self.http.download_blob(self.target, &file, &meta, self.cache, &mut on_bytes).await?;
            }
            self.cache
                .link(self.target.commit, &file, &meta.etag)
                .map_err(|e| HubError::io(self.cache.snapshot_dir(self.target.commit).join(&file), e))?;
            self.report.file_done(&file, total);
        }
        Ok(())
    }
}

/// Turns per-file byte counts into throttled [`Progress`] reports.
struct Reporter<'p> {
    sink: &'p mut (dyn FnMut(Progress) + Send),
    files_done: usize,
    files_total: usize,
    /// Bytes of the files already complete.
    bytes_before: u64,
    bytes_total: u64,
    last: Instant,
}

impl<'p> Reporter<'p> {
    fn new(sink: &'p mut (dyn FnMut(Progress) + Send)) -> Self {
        Reporter { sink, files_done: 0, files_total: 0, bytes_before: 0, bytes_total: 0, last: Instant::now() }
    }

    fn emit(&mut self, file: &str, file_bytes: u64, file_total: u64) {
        self.last = Instant::now();
        (self.sink)(Progress {
            file: file.to_string(),
            file_bytes,
            file_total,
            bytes_done: self.bytes_before + file_bytes,
            bytes_total: self.bytes_total,
            files_done: self.files_done,
            files_total: self.files_total,
        });
    }

    fn start_file(&mut self, file: &str, total: u64) {
        self.emit(file, 0, total);
    }

    fn file_bytes(&mut self, file: &str, done: u64, total: u64) {
        if self.last.elapsed() >= PROGRESS_INTERVAL {
            self.emit(file, done, total);
        }
    }

    fn file_done(&mut self, file: &str, len: u64) {
        self.files_done += 1;
        self.emit(file, len, len);
        self.bytes_before += len;
    }
}
