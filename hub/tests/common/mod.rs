//! Shared fixtures for the hub tests: a small fake model folder, a client pointed at a fake hub
//! with a private cache, and helpers to inspect the cache layout.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};

use zeta_hub::testing::FakeHub;
#[allow(unused_imports)] // a re-export; not every test binary lists files
pub use zeta_hub::testing::files_in;
use zeta_hub::{HubClient, HubConfig, Progress};

/// Size of the "large" weights file: several chunks and several progress reports.
pub const LARGE: usize = 3 << 20;

/// Deterministic pseudo-random bytes, so a corrupted or misplaced range never matches by chance.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A safetensors-style model folder, plus files a model does not need.
pub fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"model_type":"llama","hidden_size":8}"#).unwrap();
    std::fs::write(dir.join("tokenizer.json"), br#"{"version":"1.0","model":{}}"#).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), br#"{"bos_token":"<s>"}"#).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes(LARGE, 1)).unwrap();
    std::fs::write(dir.join("README.md"), b"# A model card nobody needs").unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), bytes(4096, 2)).unwrap();
    std::fs::write(dir.join("images/logo.png"), bytes(100, 3)).unwrap();
    dir
}

/// The files of [`model_dir`] a client must fetch.
pub const NEEDED: &[&str] = &["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];

/// A fake hub serving [`model_dir`] as `test-org/tiny`, and a cache folder (not yet created)
/// beside it; the temporary folder lives as long as the fixture's `tmp`.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub hub: FakeHub,
    pub cache: PathBuf,
}

pub fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = model_dir(tmp.path());
    let hub = FakeHub::builder().repo("test-org/tiny", &src).start().unwrap();
    let cache = tmp.path().join("cache");
    Fixture { tmp, src, hub, cache }
}

pub fn config(endpoint: &str, cache: &Path) -> HubConfig {
    HubConfig { endpoint: endpoint.to_string(), token: None, cache_dir: cache.to_path_buf(), offline: false }
}

pub fn client(hub: &FakeHub, cache: &Path) -> HubClient {
    HubClient::with_config(config(&hub.endpoint(), cache)).unwrap()
}

/// Collects progress reports.
pub fn recorder() -> (std::sync::Arc<std::sync::Mutex<Vec<Progress>>>, impl FnMut(Progress) + Send) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |p| sink.lock().unwrap().push(p))
}
