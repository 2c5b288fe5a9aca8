//! The model families beyond the llama layout (mixture-of-experts, …), end to end through the
//! engine: greedy decoding of tiny random-weight models, 32 steps, gives mlx-lm's tokens, both
//! when each prompt runs alone and when all of them run in one batch. (Their logits against
//! mlx-lm's, in every weight format and shape policy, are in `logits.rs`.)

mod common;

use serde_json::json;
use zeta_engine::{Engine, EngineOptions, Event, GenerateRequest, Generation, ModelSource, Prompt, SamplingParams};

/// One model per family, in the format each is least covered in elsewhere; `gemma3mm` is the
/// Gemma 3 text model wrapped as the multimodal checkpoint stores it (`model_type` gemma3,
/// `text_config`, `language_model.*` weights, a vision tower to drop).
const FAMILIES: [&str; 6] = ["qwen3_moe-q4", "mixtral-f32", "phi3-q4", "gemma3-q4", "gemma3mm-q4", "gpt_oss-q4"];

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 42, 99, 3, 250, 7, 77], vec![123, 300, 11], vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]]
}

fn request(prompt: Vec<u32>) -> GenerateRequest {
    let mut r = GenerateRequest::new(Prompt::Tokens(prompt));
    r.sampling = SamplingParams::greedy();
    r.max_tokens = Some(32);
    r
}

fn collect(g: &mut Generation) -> Vec<u32> {
    let mut tokens = vec![];
    loop {
        match g.blocking_next().expect("stream ends with Finished") {
            Event::Delta { tokens: t, .. } => tokens.extend(t),
            Event::Finished { .. } => return tokens,
            Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
}

#[test]
fn greedy_tokens_match_mlx_lm_alone_and_batched() {
    let tasks = FAMILIES
        .iter()
        .flat_map(|name| {
            prompts()
                .into_iter()
                .map(move |p| json!({"op": "generate", "model": common::tiny(name), "prompt": p, "max_tokens": 32}))
        })
        .collect();
    let reference = common::reference(tasks);
    for (f, name) in FAMILIES.iter().enumerate() {
        // The engine streams the EOS token it stops on (with no text); mlx-lm leaves it out.
        let expected: Vec<Vec<u32>> = reference[f * prompts().len()..(f + 1) * prompts().len()]
            .iter()
            .map(|r| {
                let mut t = common::ids(&r["tokens"]);
                t.extend(r["eos_token"].as_u64().map(|e| e as u32));
                t
            })
            .collect();
        let e = Engine::load(ModelSource::detect(&common::tiny(name)).unwrap(), EngineOptions::default(), |_, _| {})
            .unwrap();
        assert!(name.starts_with(&e.info().arch), "{name}: architecture {}", e.info().arch);
        let alone: Vec<Vec<u32>> = prompts().into_iter().map(|p| collect(&mut e.submit(request(p)).unwrap())).collect();
        assert_eq!(alone, expected, "{name}: alone vs mlx-lm");
        let mut gens: Vec<_> = prompts().into_iter().map(|p| e.submit(request(p)).unwrap()).collect();
        let together: Vec<Vec<u32>> = gens.iter_mut().map(collect).collect();
        assert_eq!(together, expected, "{name}: batched vs mlx-lm");
        assert!(expected.iter().any(|t| t.len() >= 16), "{name}: the reference decodes long enough to compare");
    }
}

/// Sliding-window layers keep only their most recent keys: four sequences generating 500 tokens
/// each on a tiny Gemma 3 with five sliding layers (a 4-token window) and one global layer reserve
/// far less KV cache than every layer keeping every token would — the global layer's cache grows
/// with the tokens, the sliding layers' stays at a few slots per sequence.
#[test]
fn sliding_window_layers_keep_a_bounded_cache() {
    let opts = EngineOptions { prefix_cache_bytes: 0, ..Default::default() };
    let e = Engine::load(ModelSource::detect(&common::tiny("gemma3_6l-f32")).unwrap(), opts, |_, _| {}).unwrap();
    // One global layer: a token's bytes in one layer.
    let per_layer = e.info().kv_bytes_per_token;
    let eos = e.info().eos_token_ids.clone();
    let mut gens: Vec<_> = (0..4u32)
        .map(|i| {
            let mut r = request((0..8).map(|t| 5 + 10 * i + t).collect());
            r.max_tokens = Some(500);
            r.sampling.logit_bias = eos.iter().map(|&t| (t, -100.0)).collect();
            e.submit(r).unwrap()
        })
        .collect();
    let mut peak = 0;
    let mut lens = vec![0; gens.len()];
    let mut open: Vec<usize> = (0..gens.len()).collect();
    while !open.is_empty() {
        open.retain(|&i| match gens[i].blocking_next().expect("stream ends with Finished") {
            Event::Delta { tokens, .. } => {
                lens[i] += tokens.len();
                true
            }
            Event::Finished { .. } => false,
            Event::Error(err) => panic!("{err}"),
            _ => true,
        });
        peak = peak.max(e.stats().kv_bytes);
    }
    assert_eq!(lens, vec![500; 4]);
    let tokens = 4 * 508;
    assert!(peak >= tokens * per_layer, "the global layer holds every token: peak {peak} B");
    let every_layer = 6 * tokens * per_layer;
    assert!(
        peak < every_layer / 2,
        "peak {peak} B against at least {every_layer} B with every layer keeping every token"
    );
}
