//! The cache without the network: `HF_HUB_OFFLINE`, and caches written by Python's
//! `huggingface_hub` (built by hand here in its exact layout) found with zero requests.

mod common;

use std::path::Path;

use common::*;
use zeta_hub::testing::FakeHub;
use zeta_hub::{ErrorKind, HubClient, HubConfig, HubError, ModelRef};

#[tokio::test]
async fn offline_serves_the_cache_and_never_touches_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = FakeHub::builder().repo("test-org/tiny", model_dir(tmp.path())).start().unwrap();
    let cache = tmp.path().join("cache");
    let model = ModelRef::parse("test-org/tiny").unwrap();
    let online = client(&hub, &cache).ensure_local(&model, |_| {}).await.unwrap();
    hub.clear_requests();

    let offline = HubClient::with_config(HubConfig { offline: true, ..config(&hub.endpoint(), &cache) }).unwrap();
    assert_eq!(offline.ensure_local(&model, |_| {}).await.unwrap(), online);

    let missing = ModelRef::parse("test-org/not-downloaded").unwrap();
    let err = offline.ensure_local(&missing, |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::OfflineNotCached { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let text = err.to_string();
    assert!(
        text.contains("test-org/not-downloaded@main") && text.contains("not in the cache and HF_HUB_OFFLINE is set"),
        "{text}"
    );
    assert!(text.contains(&cache.display().to_string()), "{text}");
    // A revision that was never downloaded is not served from another one.
    let err = offline.ensure_local(&ModelRef::parse("test-org/tiny@v2").unwrap(), |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::OfflineNotCached { .. }), "{err}");
    assert_eq!(hub.request_count(), 0, "{:?}", hub.requests());
}

#[test]
fn offline_is_read_from_the_environment_like_huggingface_hub() {
    let vars = [("HF_HUB_OFFLINE", "1"), ("HF_HUB_CACHE", "/tmp/x"), ("HF_ENDPOINT", "http://127.0.0.1:1")];
    let config = HubConfig::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()));
    assert!(config.offline);
    assert_eq!(config.endpoint, "http://127.0.0.1:1");
}

/// Writes a snapshot the way `huggingface_hub` lays it out: content in `blobs/<etag>`, relative
/// symlinks in `snapshots/<commit>/`, the commit in `refs/<revision>` (no trailing newline).
fn python_layout(cache: &Path, repo_folder: &str, commit: &str, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let repo = cache.join(repo_folder);
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    for (i, (name, content)) in files.iter().enumerate() {
        let etag = format!("{:064x}", i + 1);
        std::fs::write(repo.join("blobs").join(&etag), content).unwrap();
        let link = snapshot.join(name);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = name.split('/').count() + 1;
        let target = format!("{}blobs/{etag}", "../".repeat(depth));
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    snapshot
}

#[tokio::test]
async fn a_cache_written_by_huggingface_hub_is_found_without_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    // The hub knows nothing about these repositories: any request would fail the test.
    let hub = FakeHub::builder().start().unwrap();
    let cache = tmp.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = python_layout(
        &cache,
        "models--mlx-community--Tiny-4bit",
        commit,
        &[("config.json", b"{}"), ("model.safetensors", b"weights"), ("tokenizer.json", b"{}"), ("README.md", b"card")],
    );
    let gguf_commit = "89abcdef0123456789abcdef0123456789abcdef";
    let gguf_snapshot = python_layout(
        &cache,
        "models--someone--Tiny-GGUF",
        gguf_commit,
        &[("tiny.Q8_0.gguf", b"gguf8"), ("tiny.Q4_K_M.gguf", b"gguf4")],
    );
    let client = client(&hub, &cache);

    let model = ModelRef::parse("mlx-community/Tiny-4bit").unwrap();
    assert_eq!(client.resolve_cached(&model).await, Some(snapshot.clone()));
    assert_eq!(client.ensure_local(&model, |_| {}).await.unwrap(), snapshot);
    let pinned = ModelRef::parse(&format!("mlx-community/Tiny-4bit@{commit}")).unwrap();
    assert_eq!(client.ensure_local(&pinned, |_| {}).await.unwrap(), snapshot);

    let gguf = ModelRef::parse("someone/Tiny-GGUF").unwrap();
    assert_eq!(client.ensure_local(&gguf, |_| {}).await.unwrap(), gguf_snapshot.join("tiny.Q4_K_M.gguf"));
    let named = ModelRef::parse("someone/Tiny-GGUF:tiny.Q8_0.gguf").unwrap();
    assert_eq!(client.ensure_local(&named, |_| {}).await.unwrap(), gguf_snapshot.join("tiny.Q8_0.gguf"));
    assert_eq!(std::fs::read(gguf_snapshot.join("tiny.Q8_0.gguf")).unwrap(), b"gguf8");
    assert_eq!(hub.request_count(), 0, "{:?}", hub.requests());
}

#[tokio::test]
async fn an_incomplete_python_cache_is_not_mistaken_for_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    // Sharded weights with one shard missing, as after an interrupted `hf download`.
    let index = br#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    python_layout(
        &cache,
        "models--org--sharded",
        commit,
        &[
            ("config.json", b"{}"),
            ("model.safetensors.index.json", index),
            ("model-00001-of-00002.safetensors", b"one"),
        ],
    );
    // Weights pointer whose blob is gone.
    let snapshot =
        python_layout(&cache, "models--org--dangling", commit, &[("config.json", b"{}"), ("model.safetensors", b"w")]);
    let blob = std::fs::canonicalize(snapshot.join("model.safetensors")).unwrap();
    std::fs::remove_file(blob).unwrap();
    // config.json alone.
    python_layout(&cache, "models--org--config-only", commit, &[("config.json", b"{}")]);

    let offline = HubClient::with_config(HubConfig { offline: true, ..config("http://127.0.0.1:9", &cache) }).unwrap();
    for id in ["org/sharded", "org/dangling", "org/config-only"] {
        let model = ModelRef::parse(id).unwrap();
        assert_eq!(offline.resolve_cached(&model).await, None, "{id}");
        let err = offline.ensure_local(&model, |_| {}).await.unwrap_err();
        assert!(matches!(err, HubError::OfflineNotCached { .. }), "{id}: {err}");
    }
}
