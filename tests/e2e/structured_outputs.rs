//! Structured outputs (constrained decoding) through the real daemon and gateway, checked with
//! the official `openai` client and `jsonschema` (`tests/conformance/structured_conformance.py`):
//! `response_format` json_schema / json_object on chat (plain and streamed), `text.format` on the
//! Responses API (and the SDK's `parse`), the `grammar` extension on chat and completions, 100
//! seeded temperature-1 samples of a random model under a nested schema that all validate while
//! a free request shares their batches, and bad schemas refused naming the field.

use zeta_tests::{Daemon, Gateway, tiny};

#[tokio::test(flavor = "multi_thread")]
async fn constrained_output_always_validates() {
    let config = format!("[models.tiny-qwen]\npath = \"{}\"\ncontext_length = 4096\n", tiny("qwen2-f32").display());
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    zeta_tests::conformance("structured_conformance.py", vec![g.base_url()], vec![], &d, &g).await;
}
