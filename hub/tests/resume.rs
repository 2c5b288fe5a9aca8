//! Interrupted downloads: partial data kept as `blobs/<etag>.incomplete`, continued with a `Range`
//! request (within one call and across calls), and blobs moved into place only when verified.

mod common;

use common::*;
use zeta_hub::testing::{FakeHub, Origin};
use zeta_hub::{ErrorKind, HubError, ModelRef};

const FILE: &str = "model.safetensors";

fn weight_gets(hub: &FakeHub) -> Vec<zeta_hub::testing::RecordedRequest> {
    hub.requests().into_iter().filter(|r| r.origin == Origin::Cdn && r.method == "GET").collect()
}

#[tokio::test]
async fn a_cut_connection_is_resumed_with_a_range_request_in_the_same_call() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    hub.cut_after(FILE, 1 << 20, 1);

    let path = client(&hub, &cache).ensure_local(&ModelRef::parse("test-org/tiny").unwrap(), |_| {}).await.unwrap();

    assert_eq!(std::fs::read(path.join(FILE)).unwrap(), std::fs::read(src.join(FILE)).unwrap());
    let gets = weight_gets(&hub);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1048576-"));
    assert_eq!(gets[1].status, 206);
}

#[tokio::test]
async fn a_failed_call_leaves_a_partial_file_that_the_next_call_continues() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    let model = ModelRef::parse("test-org/tiny").unwrap();
    let etag = hub.etag("test-org/tiny", FILE).unwrap();
    let blobs = cache.join("models--test-org--tiny/blobs");
    // Every attempt of the first call breaks after 300 KiB.
    hub.cut_after(FILE, 300 << 10, usize::MAX);

    let err = client(&hub, &cache).ensure_local(&model, |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("test-org/tiny") && err.to_string().contains(FILE), "{err}");
    let partial = blobs.join(format!("{etag}.incomplete"));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < LARGE as u64, "partial file of {kept} bytes");
    assert!(!blobs.join(&etag).exists(), "an incomplete blob must not be moved into place");
    assert!(!cache.join("models--test-org--tiny/refs/main").exists());
    assert_eq!(client(&hub, &cache).resolve_cached(&model).await, None);

    // The "next process": the connection holds now, and only the rest is asked for.
    hub.clear_cuts();
    hub.clear_requests();
    let path = client(&hub, &cache).ensure_local(&model, |_| {}).await.unwrap();
    assert_eq!(std::fs::read(path.join(FILE)).unwrap(), std::fs::read(src.join(FILE)).unwrap());
    let gets = weight_gets(&hub);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some(format!("bytes={kept}-").as_str()));
    assert!(!partial.exists());
}

#[tokio::test]
async fn a_partial_file_written_by_another_process_is_continued_and_verified() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    let etag = hub.etag("test-org/tiny", FILE).unwrap();
    let blobs = cache.join("models--test-org--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let content = std::fs::read(src.join(FILE)).unwrap();
    std::fs::write(blobs.join(format!("{etag}.incomplete")), &content[..12345]).unwrap();

    let path = client(&hub, &cache).ensure_local(&ModelRef::parse("test-org/tiny").unwrap(), |_| {}).await.unwrap();
    assert_eq!(std::fs::read(path.join(FILE)).unwrap(), content);
    assert_eq!(weight_gets(&hub)[0].range.as_deref(), Some("bytes=12345-"));
}

#[tokio::test]
async fn corrupt_data_is_never_moved_into_place() {
    let Fixture { tmp: _tmp, src, hub, cache } = fixture();
    let model = ModelRef::parse("test-org/tiny").unwrap();
    let etag = hub.etag("test-org/tiny", FILE).unwrap();
    hub.set_corrupt(FILE, true);

    let err = client(&hub, &cache).ensure_local(&model, |_| {}).await.unwrap_err();
    assert!(matches!(&err, HubError::Integrity { file, .. } if file == FILE), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    let blobs = cache.join("models--test-org--tiny/blobs");
    assert!(!blobs.join(&etag).exists() && !blobs.join(format!("{etag}.incomplete")).exists());

    hub.set_corrupt(FILE, false);
    let path = client(&hub, &cache).ensure_local(&model, |_| {}).await.unwrap();
    assert_eq!(std::fs::read(path.join(FILE)).unwrap(), std::fs::read(src.join(FILE)).unwrap());
}
