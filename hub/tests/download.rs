//! Full downloads from the fake hub: the cache layout huggingface_hub uses, only the files a model
//! needs, progress, sharded models, and a second call that makes no request at all.

mod common;

use common::*;
use zeta_hub::testing::{FakeHub, Origin};
use zeta_hub::{HubError, ModelRef};

#[tokio::test]
async fn full_download_builds_the_shared_cache_layout() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    let client = client(&hub, &cache);
    let model = ModelRef::parse("test-org/tiny").unwrap();
    let commit = hub.commit("test-org/tiny").unwrap();

    let (seen, progress) = recorder();
    let path = client.ensure_local(&model, progress).await.unwrap();

    let repo = cache.join("models--test-org--tiny");
    assert_eq!(path, repo.join("snapshots").join(&commit));
    // Only the needed files, as relative symlinks into blobs/ named by ETag.
    assert_eq!(files_in(&path), NEEDED);
    for file in NEEDED {
        let etag = hub.etag("test-org/tiny", file).unwrap();
        let link = std::fs::read_link(path.join(file)).unwrap();
        assert_eq!(link, std::path::Path::new("../../blobs").join(&etag), "{file}");
        assert_eq!(std::fs::read(path.join(file)).unwrap(), std::fs::read(src.join(file)).unwrap(), "{file}");
    }
    // The LFS file's blob is named by its sha256 (X-Linked-Etag), not the pointer's ETag.
    assert_eq!(hub.etag("test-org/tiny", "model.safetensors").unwrap().len(), 64);
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), commit);
    let blobs = files_in(&repo.join("blobs"));
    assert_eq!(blobs.len(), NEEDED.len(), "no .incomplete left: {blobs:?}");

    // Nothing unneeded was asked for.
    let asked: Vec<String> = hub.requests().iter().map(|r| r.path.clone()).collect();
    for unwanted in ["README.md", "pytorch_model.bin", "logo.png"] {
        assert!(!asked.iter().any(|p| p.contains(unwanted)), "{unwanted} was requested: {asked:?}");
    }
    // The weights came from the CDN origin after the hub's redirect.
    assert!(hub.requests().iter().any(|r| r.origin == Origin::Cdn && r.method == "GET"));

    // Progress: every file finished, totals consistent.
    let seen = seen.lock().unwrap().clone();
    let last = seen.last().unwrap();
    let total: u64 = NEEDED.iter().map(|f| std::fs::metadata(src.join(f)).unwrap().len()).sum();
    assert_eq!((last.files_done, last.files_total), (NEEDED.len(), NEEDED.len()));
    assert_eq!((last.bytes_done, last.bytes_total), (total, total));
    assert!(seen.iter().any(|p| p.file == "model.safetensors" && p.file_total == LARGE as u64));
    assert!(seen.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done), "progress goes backwards");

    // A second call, and a fresh client, find it without a single request.
    hub.clear_requests();
    assert_eq!(client.ensure_local(&model, |_| {}).await.unwrap(), path);
    let fresh = common::client(&hub, &cache);
    assert_eq!(fresh.resolve_cached(&model).await, Some(path.clone()));
    assert_eq!(fresh.ensure_local(&model, |_| panic!("no progress expected")).await.unwrap(), path);
    let by_commit = ModelRef::parse(&format!("test-org/tiny@{commit}")).unwrap();
    assert_eq!(fresh.ensure_local(&by_commit, |_| {}).await.unwrap(), path);
    assert_eq!(hub.request_count(), 0, "cache hits must not touch the network: {:?}", hub.requests());
}

#[tokio::test]
async fn lost_weights_are_fetched_again_but_present_blobs_are_not() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    let client = client(&hub, &cache);
    let model = ModelRef::parse("test-org/tiny").unwrap();
    let path = client.ensure_local(&model, |_| {}).await.unwrap();

    // A snapshot whose weights pointer dangles is not complete.
    let etag = hub.etag("test-org/tiny", "model.safetensors").unwrap();
    std::fs::remove_file(cache.join("models--test-org--tiny/blobs").join(&etag)).unwrap();
    assert_eq!(client.resolve_cached(&model).await, None);
    hub.clear_requests();
    assert_eq!(client.ensure_local(&model, |_| {}).await.unwrap(), path);
    assert_eq!(
        std::fs::read(path.join("model.safetensors")).unwrap(),
        std::fs::read(src.join("model.safetensors")).unwrap()
    );
    let gets: Vec<_> = hub.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains("resolve")).collect();
    assert!(gets.is_empty(), "files still in the snapshot must not be downloaded again: {gets:?}");
}

#[tokio::test]
async fn sharded_model_fetches_only_the_shards_its_index_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sharded");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), bytes(5000, 4)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), bytes(3000, 5)).unwrap();
    std::fs::write(dir.join("consolidated.safetensors"), bytes(8000, 6)).unwrap();
    let index = r#"{"metadata":{"total_size":8000},
        "weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    let hub = FakeHub::builder().repo("test-org/sharded", &dir).start().unwrap();
    let cache = tmp.path().join("cache");
    let client = client(&hub, &cache);
    let model = ModelRef::parse("test-org/sharded").unwrap();

    let (seen, progress) = recorder();
    let path = client.ensure_local(&model, progress).await.unwrap();
    assert_eq!(
        files_in(&path),
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
        ]
    );
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.files_done, last.files_total), (4, 4));
    hub.clear_requests();
    assert_eq!(client.ensure_local(&model, |_| {}).await.unwrap(), path);
    assert_eq!(hub.request_count(), 0);

    // An index naming a shard the repository lacks is an error naming that file.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let broken = FakeHub::builder().repo("test-org/sharded", &dir).start().unwrap();
    let err = common::client(&broken, &tmp.path().join("cache2")).ensure_local(&model, |_| {}).await.unwrap_err();
    assert!(matches!(&err, HubError::FileNotFound { file, .. } if file == "model-00002-of-00002.safetensors"), "{err}");
}

#[tokio::test]
async fn branch_revisions_get_their_own_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let src = model_dir(tmp.path());
    let hub = FakeHub::builder().repo("test-org/tiny", &src).branch("refs/pr/1").start().unwrap();
    let cache = tmp.path().join("cache");
    let model = ModelRef::parse("test-org/tiny@refs/pr/1").unwrap();
    let path = client(&hub, &cache).ensure_local(&model, |_| {}).await.unwrap();
    let commit = hub.commit("test-org/tiny").unwrap();
    assert!(path.ends_with(&commit));
    let ref_file = cache.join("models--test-org--tiny/refs/refs/pr/1");
    assert_eq!(std::fs::read_to_string(ref_file).unwrap(), commit);
    // The revision travelled percent-encoded as one path segment.
    assert!(hub.requests().iter().any(|r| r.path.contains("/revision/refs%2Fpr%2F1")), "{:?}", hub.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_download_per_file() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    let model = ModelRef::parse("test-org/tiny").unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (client, model) = (client(&hub, &cache), model.clone());
            tokio::spawn(async move { client.ensure_local(&model, |_| {}).await })
        })
        .collect();
    let mut paths = Vec::new();
    for call in calls {
        paths.push(call.await.unwrap().unwrap());
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
    assert_eq!(
        std::fs::read(paths[0].join("model.safetensors")).unwrap(),
        std::fs::read(src.join("model.safetensors")).unwrap()
    );
    // The blob lock makes every caller but one find the weights already downloaded.
    let weight_gets = hub.requests().iter().filter(|r| r.origin == Origin::Cdn && r.method == "GET").count();
    assert_eq!(weight_gets, 1, "{:?}", hub.requests());
}
