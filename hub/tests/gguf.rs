//! GGUF-only repositories: exactly one `.gguf` is downloaded, the named one or the default choice.

mod common;

use common::*;
use zeta_hub::testing::FakeHub;
use zeta_hub::{ErrorKind, HubError, ModelRef};

fn gguf_repo(root: &std::path::Path, names: &[&str]) -> std::path::PathBuf {
    let dir = root.join("gguf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README.md"), b"card").unwrap();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(dir.join(name), bytes(2000 + i * 100, 10 + i as u64)).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_default_quantisation_is_the_only_file_downloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["tiny.Q2_K.gguf", "tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf", "mmproj-tiny-f16.gguf"];
    let src = gguf_repo(tmp.path(), &names);
    let hub = FakeHub::builder().repo("test-org/tiny-GGUF", &src).start().unwrap();
    let cache = tmp.path().join("cache");
    let client = client(&hub, &cache);
    let model = ModelRef::parse("test-org/tiny-GGUF").unwrap();

    let path = client.ensure_local(&model, |_| {}).await.unwrap();
    let commit = hub.commit("test-org/tiny-GGUF").unwrap();
    let snapshot = cache.join("models--test-org--tiny-GGUF/snapshots").join(&commit);
    assert_eq!(path, snapshot.join("tiny.Q4_K_M.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(src.join("tiny.Q4_K_M.gguf")).unwrap());
    assert_eq!(files_in(&snapshot), ["tiny.Q4_K_M.gguf"]);

    // A named file is fetched next to it; each reference then resolves with no request.
    let named = ModelRef::parse("test-org/tiny-GGUF:tiny.Q8_0.gguf").unwrap();
    let q8 = client.ensure_local(&named, |_| {}).await.unwrap();
    assert_eq!(q8, snapshot.join("tiny.Q8_0.gguf"));
    assert_eq!(files_in(&snapshot), ["tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf"]);
    hub.clear_requests();
    assert_eq!(client.ensure_local(&model, |_| {}).await.unwrap(), path);
    assert_eq!(client.ensure_local(&named, |_| {}).await.unwrap(), q8);
    assert_eq!(hub.request_count(), 0, "{:?}", hub.requests());
}

#[tokio::test]
async fn without_a_default_the_error_lists_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let hub =
        FakeHub::builder().repo("test-org/odd", gguf_repo(tmp.path(), &["odd-a.gguf", "odd-b.gguf"])).start().unwrap();
    let client = client(&hub, &tmp.path().join("cache"));
    let err = client.ensure_local(&ModelRef::parse("test-org/odd").unwrap(), |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::AmbiguousGguf { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let text = err.to_string();
    assert!(text.contains("odd-a.gguf, odd-b.gguf") && text.contains("test-org/odd:<file>"), "{text}");
    let path = client.ensure_local(&ModelRef::parse("test-org/odd:odd-b.gguf").unwrap(), |_| {}).await.unwrap();
    assert!(path.ends_with("odd-b.gguf"));
}

#[tokio::test]
async fn a_repository_with_nothing_loadable_says_what_it_has() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"pt").unwrap();
    let hub = FakeHub::builder().repo("test-org/pt-only", &dir).start().unwrap();
    let err = client(&hub, &tmp.path().join("cache"))
        .ensure_local(&ModelRef::parse("test-org/pt-only").unwrap(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::NoModelFiles { .. }), "{err}");
    assert!(err.to_string().contains("pytorch_model.bin"), "{err}");
}
