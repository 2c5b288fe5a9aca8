//! The conformance suite with the official `openai` Python client
//! (`tests/conformance/openai_conformance.py`) against the real daemon and gateway: models,
//! chat, streaming, include_usage, stop, length, errors 400/404, n > 1 refused, logprobs,
//! tool-call history rendered through the template, tool calls (plain, streamed, forced,
//! hidden), reasoning_content.

use std::process::Command;

use zeta_tests::{Daemon, Gateway, python, root, scripted, tiny};

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_client_conforms() {
    let config = format!(
        "[models.tiny-qwen]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-tools]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-reasoning]\npath = \"{}\"\ncontext_length = 4096\n",
        tiny("qwen2-f32").display(),
        scripted("scripted-tools").display(),
        scripted("scripted-reasoning").display()
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let base = g.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(root().join("tests/conformance/openai_conformance.py"))
            .arg(base)
            .env("TINY_QWEN_DIR", tiny("qwen2-f32"))
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
