//! The Anthropic Messages API checked with the official `anthropic` Python client
//! (`tests/conformance/anthropic_conformance.py`) against the real daemon and gateway: plain and
//! streamed messages, max_tokens, tool use (streamed, sent back, forced, hidden), thinking,
//! count_tokens, errors in Anthropic's envelope, and the `x-api-key` header.

use std::process::Command;

use zeta_tests::{Daemon, Gateway, python, root, scripted};

#[tokio::test(flavor = "multi_thread")]
async fn the_official_anthropic_client_conforms() {
    let config = format!(
        "[models.scripted-tools]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-reasoning]\npath = \"{}\"\ncontext_length = 4096\n",
        scripted("scripted-tools").display(),
        scripted("scripted-reasoning").display()
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &["--api-key", "sk-test"]).await;
    let base = format!("http://{}", g.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(root().join("tests/conformance/anthropic_conformance.py"))
            .arg(base)
            .arg("sk-test")
            .env("HF_HUB_OFFLINE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("run the conformance suite")
    })
    .await
    .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "conformance failures:\n{report}\n--- gateway log ---\n{}\n--- daemon log tail ---\n{}",
        g.logs(),
        d.logs().lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(report.contains("checks passed"));
}
