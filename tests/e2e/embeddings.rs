//! `/v1/embeddings` through the real daemon and gateway with a tiny Qwen3 embedding model,
//! checked with the official `openai` client against mlx-lm's hidden states on the same weights
//! (`tests/conformance/embeddings_conformance.py`): cosine ≥ 0.999, base64 and float alike, token
//! ids as their text, Matryoshka `dimensions`, batched inputs as alone, and each kind of model
//! refusing the other kind of request (from its files, without loading it).

use zeta_tests::{Daemon, Gateway, embedding_model, tiny};

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_match_the_reference() {
    let config = format!(
        "[models.tiny-embed]\npath = \"{}\"\ncontext_length = 512\n[models.tiny-gen]\npath = \"{}\"\n",
        embedding_model().display(),
        tiny("qwen3-f32").display()
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let base = tiny("qwen3-f32").display().to_string();
    zeta_tests::conformance("embeddings_conformance.py", vec![g.base_url(), base], vec![], &d, &g).await;
}
