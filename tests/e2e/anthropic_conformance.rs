//! The Anthropic Messages API checked with the official `anthropic` Python client
//! (`tests/conformance/anthropic_conformance.py`) against the real daemon and gateway: plain and
//! streamed messages, max_tokens, tool use (streamed, sent back, forced, hidden), thinking,
//! count_tokens, errors in Anthropic's envelope, and the `x-api-key` header.

use zeta_tests::{Daemon, Gateway, scripted};

#[tokio::test(flavor = "multi_thread")]
async fn the_official_anthropic_client_conforms() {
    let config = format!(
        "[models.scripted-tools]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-reasoning]\npath = \"{}\"\ncontext_length = 4096\n",
        scripted("scripted-tools").display(),
        scripted("scripted-reasoning").display()
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &["--api-key", "sk-test"]).await;
    let args = vec![format!("http://{}", g.addr), "sk-test".to_string()];
    zeta_tests::conformance("anthropic_conformance.py", args, vec![], &d, &g).await;
}
