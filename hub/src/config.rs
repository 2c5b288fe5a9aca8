//! [`HubConfig`]: where the hub is, which token to send, where the cache lives and whether the
//! network may be used, read from the same environment variables and files as Python's
//! `huggingface_hub`, so both tools share one cache and one login.

use std::fmt;
use std::path::{Path, PathBuf};

/// The public Hugging Face Hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the hub and where to keep what it serves.
///
/// Build it with [`HubConfig::from_env`] (what the daemon does) or as a literal (what tests do).
#[derive(Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Base URL of the hub, without a trailing slash (`HF_ENDPOINT`).
    pub endpoint: String,
    /// Bearer token sent to the hub's own host, never to the CDN hosts it redirects to.
    /// `None` sends no token.
    pub token: Option<String>,
    /// The hub cache folder holding `models--{org}--{name}` folders (`HF_HUB_CACHE`).
    pub cache_dir: PathBuf,
    /// Never touch the network: serve from the cache or fail (`HF_HUB_OFFLINE`).
    pub offline: bool,
}

// The token must never reach a log line through `{:?}`.
impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubConfig {
    /// Reads the configuration from the process environment, as `huggingface_hub` does:
    ///
    /// - endpoint: `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`];
    /// - token: `HF_TOKEN` (or the legacy `HUGGING_FACE_HUB_TOKEN`), else the file named by
    ///   `HF_TOKEN_PATH`, else `$HF_HOME/token` (written by `hf auth login`); none at all when
    ///   `HF_HUB_DISABLE_IMPLICIT_TOKEN` is true;
    /// - cache: `HF_HUB_CACHE` (or the legacy `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, where
    ///   `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
    /// - offline: `HF_HUB_OFFLINE` set to `1`, `ON`, `YES` or `TRUE` (any case).
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Same as [`HubConfig::from_env`], reading variables through `lookup`, so callers and tests
    /// can resolve a configuration without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let home = get("HOME").map(PathBuf::from).or_else(home_dir);
        let expand = |value: String| expand_user(&value, home.as_deref());

        let hf_home = get("HF_HOME").map(expand).unwrap_or_else(|| {
            let xdg = get("XDG_CACHE_HOME")
                .map(expand)
                .or_else(|| home.as_ref().map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            xdg.join("huggingface")
        });
        let cache_dir = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .unwrap_or_else(|| hf_home.join("hub"));

        let token = if get("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some_and(|v| is_true(&v)) {
            None
        } else {
            get("HF_TOKEN").or_else(|| get("HUGGING_FACE_HUB_TOKEN")).map(|t| t.trim().to_string()).or_else(|| {
                let path = get("HF_TOKEN_PATH").map(expand).unwrap_or_else(|| hf_home.join("token"));
                read_token_file(&path)
            })
        };

        let endpoint = get("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());

        HubConfig { endpoint, token, cache_dir, offline: get("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)) }
    }
}

/// `huggingface_hub`'s notion of a true environment value.
fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

fn read_token_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Python expands `~` in these variables (`os.path.expanduser`), so `HF_HOME=~/hf` works there
/// and must work here.
fn expand_user(value: &str, home: Option<&Path>) -> PathBuf {
    match (value.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(value),
    }
}

fn home_dir() -> Option<PathBuf> {
    #[allow(deprecated)] // Un-deprecated in newer toolchains; correct on the Unix targets we ship.
    std::env::home_dir()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> HubConfig {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HubConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_home() {
        let c = config(&[("HOME", "/home/u")]);
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(!c.offline);
    }

    #[test]
    fn cache_precedence() {
        let c = config(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(c.cache_dir, PathBuf::from("/x/huggingface/hub"));
        let c = config(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "~/hf")]);
        assert_eq!(c.cache_dir, PathBuf::from("/h/hf/hub"));
        let c = config(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/cache")]);
        assert_eq!(c.cache_dir, PathBuf::from("/cache"));
    }

    #[test]
    fn endpoint_and_offline() {
        let c = config(&[("HF_ENDPOINT", "http://127.0.0.1:9/"), ("HF_HUB_OFFLINE", "yes")]);
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert!(c.offline);
        assert!(!config(&[("HF_HUB_OFFLINE", "0")]).offline);
    }

    #[test]
    fn token_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-home\n").unwrap();
        std::fs::write(dir.path().join("other"), "  from-path ").unwrap();
        let home = dir.path().to_str().unwrap();
        let other = dir.path().join("other");
        let other = other.to_str().unwrap();

        assert_eq!(config(&[("HF_HOME", home)]).token.as_deref(), Some("from-home"));
        assert_eq!(config(&[("HF_HOME", home), ("HF_TOKEN_PATH", other)]).token.as_deref(), Some("from-path"));
        let c = config(&[("HF_HOME", home), ("HF_TOKEN_PATH", other), ("HF_TOKEN", "from-env")]);
        assert_eq!(c.token.as_deref(), Some("from-env"));
        assert!(!format!("{c:?}").contains("from-env"), "Debug must redact the token");
        let c = config(&[("HF_HOME", home), ("HF_TOKEN", "x"), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")]);
        assert_eq!(c.token, None);
    }
}
