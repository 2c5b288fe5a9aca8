//! File transfer from the hub's `resolve` URLs into the blob store: the metadata `HEAD` (commit,
//! ETag, size, CDN location, as `huggingface_hub` reads them), redirects that never carry the
//! token to another host, resumable `Range` downloads into `blobs/<etag>.incomplete`, and the
//! size and sha256 checks before a blob is moved into place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::cache::RepoCache;
use crate::error::{HubError, Result, error_chain};
use crate::model_ref::is_safe_component;

/// Attempts per file within one call; each later attempt resumes where the previous one stopped.
const ATTEMPTS: u32 = 3;
/// Redirect hops followed before giving up, as browsers and `huggingface_hub` cap them.
const MAX_REDIRECTS: usize = 10;

/// What the hub says about one file of one commit.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    /// Content address: `X-Linked-Etag` (the sha256 of an LFS file) or `ETag`, unquoted.
    pub etag: String,
    /// `X-Linked-Size` or `Content-Length`, when given.
    pub size: Option<u64>,
    /// Where to `GET` the bytes: the CDN URL of a redirect, or the resolve URL itself.
    pub url: Url,
}

/// Which repository, revision and commit a transfer belongs to, for URLs and error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub commit: &'a str,
}

/// The HTTP side of the crate: one connection pool, the endpoint and the token.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    endpoint: Url,
    token: Option<String>,
}

impl Http {
    pub(crate) fn new(endpoint: Url, token: Option<String>, user_agent: &str) -> reqwest::Result<Self> {
        // Redirects are followed by hand: the metadata HEAD must stop at the CDN redirect to read
        // its X-Linked-* headers, and the token must be attached per hop, by origin.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()?;
        Ok(Http { client, endpoint, token })
    }

    /// `{endpoint}/{org}/{name}/resolve/{revision}/{file}`, each part percent-encoded (a revision
    /// like `refs/pr/1` becomes one segment).
    pub(crate) fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> Url {
        let mut url = self.endpoint.clone();
        {
            let mut segments = url.path_segments_mut().expect("endpoint was checked to be a base URL");
            segments.pop_if_empty().extend(repo.split('/')).push("resolve").push(revision).extend(file.split('/'));
        }
        url
    }

    /// A request with the token attached only when `url` is on the hub's own origin, so a signed
    /// CDN URL (another host) never sees it.
    fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        // Sizes must be the stored bytes, not a compressed transfer.
        let mut req = self.client.request(method, url.clone()).header(header::ACCEPT_ENCODING, "identity");
        if let Some(token) = &self.token
            && url.origin() == self.endpoint.origin()
        {
            req = req.bearer_auth(token);
        }
        req
    }

    fn token_sent_to(&self, url: &Url) -> bool {
        self.token.is_some() && url.origin() == self.endpoint.origin()
    }

    /// The metadata `HEAD` of `huggingface_hub.get_hf_file_metadata`: relative redirects (a
    /// renamed repository) are followed, an absolute one (the CDN) is not, because its own
    /// headers carry the linked ETag and size.
    pub(crate) async fn head_file(&self, t: Target<'_>, file: &str) -> Result<FileMeta> {
        let mut url = self.resolve_url(t.repo, t.commit, file);
        for _ in 0..=MAX_REDIRECTS {
            let resp =
                self.request(Method::HEAD, &url).send().await.map_err(|e| network(t, Some(file), &url, &Chain(&e)))?;
            let status = resp.status();
            if status.is_redirection() {
                let location = location(resp.headers())
                    .ok_or_else(|| protocol(t, Some(file), format!("HTTP {status} without a Location from {url}")))?;
                let next = url
                    .join(&location)
                    .map_err(|e| protocol(t, Some(file), format!("bad Location {location:?}: {e}")))?;
                if Url::parse(&location).is_err() && !location.starts_with("//") {
                    url = next;
                    continue;
                }
                return self.meta_from(t, file, resp.headers(), next);
            }
            if !status.is_success() {
                return Err(self.status_error(t, Some(file), &url, status, resp.headers(), String::new()));
            }
            return self.meta_from(t, file, resp.headers(), url);
        }
        Err(protocol(t, Some(file), format!("more than {MAX_REDIRECTS} redirects from {url}")))
    }

    fn meta_from(&self, t: Target<'_>, file: &str, headers: &HeaderMap, url: Url) -> Result<FileMeta> {
        let etag = header_str(headers, "x-linked-etag")
            .or_else(|| header_str(headers, header::ETAG.as_str()))
            .map(normalize_etag)
            .ok_or_else(|| protocol(t, Some(file), format!("no ETag in the answer for {url}")))?;
        // The ETag becomes a file name under blobs/; a hostile or broken server must not be able
        // to write elsewhere.
        if !is_safe_component(&etag) {
            return Err(protocol(t, Some(file), format!("unusable ETag {etag:?}")));
        }
        if let Some(commit) = header_str(headers, "x-repo-commit")
            && commit != t.commit
        {
            return Err(protocol(
                t,
                Some(file),
                format!("asked for commit {} but the hub answered for {commit}", t.commit),
            ));
        }
        let size = header_str(headers, "x-linked-size")
            .or_else(|| header_str(headers, header::CONTENT_LENGTH.as_str()))
            .and_then(|s| s.trim().parse().ok());
        Ok(FileMeta { etag, size, url })
    }

    /// Maps an HTTP error answer the way `huggingface_hub.hf_raise_for_status` does: the hub's
    /// `X-Error-Code` first, the status code second.
    pub(crate) fn status_error(
        &self,
        t: Target<'_>,
        file: Option<&str>,
        url: &Url,
        status: StatusCode,
        headers: &HeaderMap,
        body: String,
    ) -> HubError {
        let code = header_str(headers, "x-error-code").unwrap_or_default();
        let (repo, revision) = (t.repo.to_string(), t.revision.to_string());
        let unauthorized = |gated| HubError::Unauthorized {
            repo: repo.clone(),
            revision: revision.clone(),
            file: file.map(str::to_string),
            status: status.as_u16(),
            gated,
            token_sent: self.token_sent_to(url),
        };
        match (code.as_str(), status.as_u16()) {
            ("RepoNotFound", _) => HubError::RepoNotFound { repo, endpoint: self.endpoint.to_string() },
            ("RevisionNotFound", _) => HubError::RevisionNotFound { repo, revision },
            ("GatedRepo", _) => unauthorized(true),
            (_, 401 | 403) => unauthorized(false),
            ("EntryNotFound", _) | (_, 404) if file.is_some() => {
                HubError::FileNotFound { repo, revision, file: file.unwrap_or_default().to_string() }
            }
            (_, 404) => HubError::RepoNotFound { repo, endpoint: self.endpoint.to_string() },
            _ => HubError::Http {
                repo,
                revision,
                file: file.map(str::to_string),
                url: url.to_string(),
                status: status.as_u16(),
                message: header_str(headers, "x-error-message").unwrap_or(body),
            },
        }
    }

    /// Makes `blobs/<etag>` hold the complete, verified file, resuming a partial
    /// `blobs/<etag>.incomplete` left by an earlier attempt (ours or Python's).
    /// `progress` gets the file's bytes on disk so far.
    pub(crate) async fn download_blob(
        &self,
        t: Target<'_>,
        file: &str,
        meta: &FileMeta,
        cache: &RepoCache,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<()> {
        let blob = cache.blob_path(&meta.etag);
        let partial = cache.incomplete_path(&meta.etag);
        let blobs_dir = blob.parent().expect("blob has a parent").to_path_buf();
        tokio::fs::create_dir_all(&blobs_dir).await.map_err(|e| HubError::io(&blobs_dir, e))?;
        let _lock = lock(cache.lock_path(&meta.etag)).await?;
        // Another process may have finished this blob while we waited for the lock.
        if blob_complete(&blob, meta.size) {
            return Ok(());
        }

        let mut hash = HashState::new(&meta.etag);
        let mut attempt = 1;
        loop {
            match self.transfer(t, file, meta, &partial, &mut hash, progress).await {
                Ok(()) => break,
                Err(err) if err.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(repo = t.repo, file, attempt, error = %err, "download interrupted; resuming");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }

        let on_disk = tokio::fs::metadata(&partial).await.map_err(|e| HubError::io(&partial, e))?.len();
        let corrupt = |detail: String| HubError::Integrity {
            repo: t.repo.to_string(),
            revision: t.commit.to_string(),
            file: file.to_string(),
            detail,
        };
        if let Some(size) = meta.size
            && on_disk != size
        {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(corrupt(format!("expected {size} bytes, got {on_disk}")));
        }
        if let Some(actual) = hash.finish(&partial, on_disk).await?
            && actual != meta.etag
        {
            // A resumed file that hashes wrong cannot be repaired by resuming again.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(corrupt(format!("sha256 is {actual}, the hub announced {}", meta.etag)));
        }
        tokio::fs::rename(&partial, &blob).await.map_err(|e| HubError::io(&blob, e))?;
        Ok(())
    }

    /// One `GET` of whatever is still missing, appended to the partial file.
    async fn transfer(
        &self,
        t: Target<'_>,
        file: &str,
        meta: &FileMeta,
        partial: &Path,
        hash: &mut HashState,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<()> {
        let io = |e| HubError::io(partial, e);
        let mut have = match tokio::fs::metadata(partial).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
        };
        if meta.size.is_some_and(|size| have > size) {
            truncate(partial).await?;
            have = 0;
        }
        if have > 0 && meta.size == Some(have) {
            return Ok(());
        }

        let (resp, url) = self.get_following(t, file, &meta.url, have).await?;
        let status = resp.status();
        match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let start = header_str(resp.headers(), header::CONTENT_RANGE.as_str()).and_then(|r| range_start(&r));
                if start != Some(have) {
                    truncate(partial).await?;
                    return Err(network(
                        t,
                        Some(file),
                        &url,
                        &format!("asked for bytes {have}- but got {start:?}; restarting"),
                    ));
                }
                tracing::info!(repo = t.repo, file, from = have, "resuming download");
            }
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                if have > 0 {
                    // The server ignored the Range header and sends the whole file.
                    truncate(partial).await?;
                    have = 0;
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                truncate(partial).await?;
                return Err(network(t, Some(file), &url, &"the partial file is longer than the hub's; restarting"));
            }
            _ => {
                let headers = resp.headers().clone();
                let body = resp.text().await.unwrap_or_default();
                return Err(self.status_error(t, Some(file), &url, status, &headers, body.chars().take(300).collect()));
            }
        }

        hash.catch_up(partial, have).await?;
        let out = tokio::fs::OpenOptions::new().create(true).append(true).open(partial).await.map_err(io)?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
        progress(have);
        let mut resp = resp;
        let result = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    out.write_all(&chunk).await.map_err(io)?;
                    hash.update(&chunk);
                    have += chunk.len() as u64;
                    progress(have);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(network(t, Some(file), &url, &Chain(&e))),
            }
        };
        // Flush even after a network error, so the bytes already hashed are the bytes on disk
        // and the next attempt resumes after them.
        out.flush().await.map_err(io)?;
        out.get_ref().sync_data().await.map_err(io)?;
        result
    }

    /// `GET` that follows every redirect (the CDN may redirect again), re-deciding per hop
    /// whether the token may be sent.
    async fn get_following(
        &self,
        t: Target<'_>,
        file: &str,
        start: &Url,
        from: u64,
    ) -> Result<(reqwest::Response, Url)> {
        let mut url = start.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.request(Method::GET, &url);
            if from > 0 {
                req = req.header(header::RANGE, format!("bytes={from}-"));
            }
            let resp = req.send().await.map_err(|e| network(t, Some(file), &url, &Chain(&e)))?;
            if resp.status().is_redirection()
                && let Some(location) = location(resp.headers())
            {
                url = url
                    .join(&location)
                    .map_err(|e| protocol(t, Some(file), format!("bad Location {location:?}: {e}")))?;
                continue;
            }
            return Ok((resp, url));
        }
        Err(protocol(t, Some(file), format!("more than {MAX_REDIRECTS} redirects from {start}")))
    }
}

/// Incremental sha256 of an LFS file (whose ETag is its sha256), kept across resumed attempts.
struct HashState {
    hasher: Option<Sha256>,
    len: u64,
}

impl HashState {
    fn new(etag: &str) -> Self {
        let is_sha256 = etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit());
        HashState { hasher: is_sha256.then(Sha256::new), len: 0 }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
            self.len += bytes.len() as u64;
        }
    }

    /// Hashes the first `upto` bytes of `path` again when they were written by someone else (an
    /// earlier process) or the file was restarted.
    async fn catch_up(&mut self, path: &Path, upto: u64) -> Result<()> {
        if self.hasher.is_none() || self.len == upto {
            return Ok(());
        }
        let path_buf = path.to_path_buf();
        let hasher = tokio::task::spawn_blocking(move || hash_prefix(&path_buf, upto))
            .await
            .expect("hashing task does not panic")
            .map_err(|e| HubError::io(path, e))?;
        self.hasher = Some(hasher);
        self.len = upto;
        Ok(())
    }

    async fn finish(mut self, path: &Path, len: u64) -> Result<Option<String>> {
        self.catch_up(path, len).await?;
        Ok(self.hasher.map(|h| hex(&h.finalize())))
    }
}

fn hash_prefix(path: &Path, upto: u64) -> std::io::Result<Sha256> {
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut reader = std::fs::File::open(path)?.take(upto);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blob_complete(blob: &Path, size: Option<u64>) -> bool {
    std::fs::metadata(blob).is_ok_and(|m| m.is_file() && size.is_none_or(|s| s == m.len()))
}

pub(crate) fn blob_present(cache: &RepoCache, meta: &FileMeta) -> bool {
    blob_complete(&cache.blob_path(&meta.etag), meta.size)
}

async fn truncate(path: &Path) -> Result<()> {
    match tokio::fs::OpenOptions::new().write(true).truncate(true).open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HubError::io(path, e)),
    }
}

/// Holds `huggingface_hub`'s per-blob file lock, so our process and Python never write the same
/// `.incomplete` file at once.
async fn lock(path: PathBuf) -> Result<std::fs::File> {
    let dir = path.parent().expect("lock has a parent").to_path_buf();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| HubError::io(&dir, e))?;
    let for_task = path.clone();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&for_task)?;
        if file.try_lock().is_err() {
            tracing::info!(lock = %for_task.display(), "waiting for another download of the same file");
            file.lock()?;
        }
        Ok(file)
    })
    .await
    .expect("lock task does not panic")
    .map_err(|e| HubError::io(&path, e))
}

/// `W/"abc"` and `"abc"` both mean `abc`, as in `huggingface_hub._normalize_etag`.
fn normalize_etag(raw: String) -> String {
    let raw = raw.trim();
    raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"').to_string()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

fn location(headers: &HeaderMap) -> Option<String> {
    header_str(headers, header::LOCATION.as_str())
}

/// The first byte of `bytes START-END/TOTAL`.
fn range_start(content_range: &str) -> Option<u64> {
    let spec = content_range.trim().strip_prefix("bytes")?.trim_start();
    spec.split('-').next()?.trim().parse().ok()
}

pub(crate) fn network(t: Target<'_>, file: Option<&str>, url: &Url, err: &dyn std::fmt::Display) -> HubError {
    HubError::Network {
        repo: t.repo.to_string(),
        revision: t.revision.to_string(),
        file: file.map(str::to_string),
        url: url.to_string(),
        detail: err.to_string(),
    }
}

pub(crate) fn protocol(t: Target<'_>, file: Option<&str>, detail: String) -> HubError {
    HubError::Protocol {
        repo: t.repo.to_string(),
        revision: t.revision.to_string(),
        file: file.map(str::to_string),
        detail,
    }
}

/// `reqwest::Error`'s own message hides the cause; show the whole chain.
pub(crate) struct Chain<'a>(pub &'a reqwest::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_chain(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_ranges() {
        assert_eq!(normalize_etag("W/\"abc\"".into()), "abc");
        assert_eq!(normalize_etag("\"abc\"".into()), "abc");
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes */200"), None);
    }

    #[test]
    fn resolve_urls_are_encoded() {
        let http = Http::new(Url::parse("http://h:1/mirror/").unwrap(), None, "t").unwrap();
        let url = http.resolve_url("org/name", "refs/pr/1", "sub dir/a#b.json");
        assert_eq!(url.as_str(), "http://h:1/mirror/org/name/resolve/refs%2Fpr%2F1/sub%20dir/a%23b.json");
    }
}
