//! The conformance suite with the official `openai` Python client
//! (`tests/conformance/openai_conformance.py`) against the real daemon and gateway: models,
//! chat, streaming, include_usage (null usage on every chunk but the last), stop (log-probabilities
//! covering the answer only), length, errors 400/404, n > 1 refused, logprobs (bytes that rebuild
//! characters split across tokens), tool-call history rendered through the template (also a
//! template that adds `content` to strings), completions under `response_format`, tool calls (plain, streamed, forced,
//! hidden), reasoning_content, gpt-oss's harmony channels and calls, Phi-4-mini's calls.

use zeta_tests::{Daemon, Gateway, scripted, tiny};

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_client_conforms() {
    let config = format!(
        "[models.tiny-qwen]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-tools]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-reasoning]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-harmony]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-harmony-tools]\npath = \"{}\"\ncontext_length = 4096\n[models.scripted-phi4-tools]\npath = \"{}\"\ncontext_length = 4096\n",
        tiny("qwen2-f32").display(),
        scripted("scripted-tools").display(),
        scripted("scripted-reasoning").display(),
        scripted("scripted-harmony").display(),
        scripted("scripted-harmony-tools").display(),
        scripted("scripted-phi4-tools").display()
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let env = vec![("TINY_QWEN_DIR", tiny("qwen2-f32").display().to_string())];
    zeta_tests::conformance("openai_conformance.py", vec![g.base_url()], env, &d, &g).await;
}
