//! Both directions with the real `huggingface_hub` (pinned in `.venv` by `make test`): Python
//! downloads from the fake hub and we reuse its cache with no request; we download and Python
//! reads our cache offline. This also checks that the fake hub behaves like the hub for the
//! reference client.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use zeta_hub::ModelRef;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(p.is_file(), "{} is missing: run `make test` (it sets up .venv with huggingface_hub)", p.display());
    p
}

/// Runs `script` with an environment that points `huggingface_hub` at `endpoint` and `cache`
/// and at nothing else (no ambient token, no telemetry, plain HTTP instead of Xet).
fn run_python(script: &str, endpoint: &str, cache: &Path, offline: bool) -> String {
    let home = cache.parent().unwrap().join("py-home");
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", if offline { "1" } else { "0" })
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
        .env("HF_HUB_DISABLE_XET", "1")
        .env_remove("HF_TOKEN")
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.trim().to_string()
}

#[tokio::test]
async fn python_downloads_from_the_fake_hub_and_we_reuse_its_cache() {
    let Fixture { tmp: _tmp, src: _, hub, cache } = fixture();
    let script = r#"
from huggingface_hub import snapshot_download
print(snapshot_download("test-org/tiny", allow_patterns=["config.json", "*.safetensors", "tokenizer*.json"]))
"#;
    let py_path = PathBuf::from(run_python(script, &hub.endpoint(), &cache, false));
    assert_eq!(files_in(&py_path), NEEDED);

    hub.clear_requests();
    let ours = client(&hub, &cache).ensure_local(&ModelRef::parse("test-org/tiny").unwrap(), |_| {}).await.unwrap();
    assert_eq!(ours, py_path);
    assert_eq!(hub.request_count(), 0, "{:?}", hub.requests());
}

#[tokio::test]
async fn python_reads_our_cache_offline() {
    let Fixture { tmp: _tmp, src: _, hub, cache } = fixture();
    let ours = client(&hub, &cache).ensure_local(&ModelRef::parse("test-org/tiny").unwrap(), |_| {}).await.unwrap();

    let script = r#"
import hashlib
from huggingface_hub import hf_hub_download, snapshot_download
print(snapshot_download("test-org/tiny"))
path = hf_hub_download("test-org/tiny", "model.safetensors")
print(hashlib.sha256(open(path, "rb").read()).hexdigest())
"#;
    let out = run_python(script, &hub.endpoint(), &cache, true);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], ours.to_str().unwrap(), "{out}");
    assert_eq!(lines[1], hub.etag("test-org/tiny", "model.safetensors").unwrap(), "{out}");
}
