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
