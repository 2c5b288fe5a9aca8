//! The OpenAI Responses API checked with the official `openai` Python client
//! (`tests/conformance/responses_conformance.py`) against the real daemon and gateway: plain,
//! item and streamed responses (the typed event sequence), max_output_tokens, function calls
//! (streamed, sent back as items, forced, hidden), reasoning summaries, `truncation: "auto"`, and
//! refusals that name the field.

use zeta_tests::{Daemon, Gateway, scripted};

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_client_speaks_responses() {
    let config = format!(
        "[models.scripted-tools]\npath = \"{t}\"\ncontext_length = 4096\n[models.scripted-reasoning]\npath = \"{}\"\ncontext_length = 4096\n\
         [models.scripted-short]\npath = \"{t}\"\ncontext_length = 128\n",
        scripted("scripted-reasoning").display(),
        t = scripted("scripted-tools").display(),
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    zeta_tests::conformance("responses_conformance.py", vec![g.base_url()], vec![], &d, &g).await;
}
