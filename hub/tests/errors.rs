//! Errors the daemon maps to gRPC statuses, with messages naming repository, revision and file;
//! and the token: sent as Bearer to the hub, never to the CDN host a download redirects to.

mod common;

use common::*;
use zeta_hub::testing::{FakeHub, Origin};
use zeta_hub::{ErrorKind, HubClient, HubConfig, HubError, ModelRef};

#[tokio::test]
async fn unknown_repository_revision_and_file_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = FakeHub::builder().repo("test-org/tiny", model_dir(tmp.path())).start().unwrap();
    let client = client(&hub, &tmp.path().join("cache"));

    let err = client.ensure_local(&ModelRef::parse("test-org/nope").unwrap(), |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("test-org/nope") && err.to_string().contains(&hub.endpoint()), "{err}");

    let err = client.ensure_local(&ModelRef::parse("test-org/tiny@v9").unwrap(), |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"v9\"") && err.to_string().contains("test-org/tiny"), "{err}");

    let err =
        client.ensure_local(&ModelRef::parse("test-org/tiny:missing.Q4_0.gguf").unwrap(), |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::FileNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("missing.Q4_0.gguf") && err.to_string().contains("test-org/tiny@main"), "{err}");
    // Nothing was written for failed lookups.
    assert!(!tmp.path().join("cache/models--test-org--nope").exists());
}

#[tokio::test]
async fn token_goes_to_the_hub_as_bearer_and_never_to_the_cdn() {
    let tmp = tempfile::tempdir().unwrap();
    let hub =
        FakeHub::builder().repo("test-org/gated", model_dir(tmp.path())).require_token("hf_secret").start().unwrap();
    let config = HubConfig { token: Some("hf_secret".into()), ..config(&hub.endpoint(), &tmp.path().join("cache")) };
    let client = HubClient::with_config(config).unwrap();

    client.ensure_local(&ModelRef::parse("test-org/gated").unwrap(), |_| {}).await.unwrap();
    let requests = hub.requests();
    let (to_hub, to_cdn): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.origin == Origin::Hub);
    assert!(!to_hub.is_empty() && !to_cdn.is_empty(), "{requests:?}");
    for r in &to_hub {
        assert_eq!(r.authorization.as_deref(), Some("Bearer hf_secret"), "{r:?}");
    }
    for r in &to_cdn {
        assert_eq!(r.authorization, None, "token leaked to the CDN: {r:?}");
    }
    assert!(!format!("{:?}", client.config()).contains("hf_secret"), "Debug must not print the token");
}

#[tokio::test]
async fn a_gated_repository_without_the_right_token_is_permission_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let hub =
        FakeHub::builder().repo("test-org/gated", model_dir(tmp.path())).require_token("hf_secret").start().unwrap();
    let model = ModelRef::parse("test-org/gated").unwrap();

    let wrong = HubConfig { token: Some("hf_wrong".into()), ..config(&hub.endpoint(), &tmp.path().join("cache")) };
    let err = HubClient::with_config(wrong).unwrap().ensure_local(&model, |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { status: 403, gated: true, token_sent: true, .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("test-org/gated@main"), "{err}");

    // No token of our own (an ambient login, if the machine has one, is not this token either).
    let err = client(&hub, &tmp.path().join("cache")).ensure_local(&model, |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { gated: true, .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_hub_is_a_network_error() {
    let tmp = tempfile::tempdir().unwrap();
    // Bind then drop a listener: nothing answers on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = HubClient::with_config(config(&format!("http://127.0.0.1:{port}"), tmp.path())).unwrap();
    let err = client.ensure_local(&ModelRef::parse("test-org/tiny").unwrap(), |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_transient());
    assert!(err.to_string().contains("test-org/tiny@main"), "{err}");
}

#[test]
fn bad_endpoints_and_references_are_invalid_arguments() {
    let err = HubClient::with_config(config("not a url", std::path::Path::new("/tmp"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("not a url"), "{err}");
    let err = HubClient::with_config(config("ftp://h/x", std::path::Path::new("/tmp"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = ModelRef::parse("./models/qwen").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("./models/qwen"), "{err}");
}
