//! Bad model files and bad requests give clear errors naming what is wrong — never a panic, an
//! abort, or an engine that stops serving.

mod common;

use std::path::{Path, PathBuf};

use zeta_engine::{
    Engine, EngineError, EngineOptions, Event, GenerateRequest, LoadOptions, ModelSource, Prompt, SamplingParams,
    load_local,
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load(path: &Path) -> EngineError {
    match ModelSource::detect(path).and_then(|s| load_local(&s, &LoadOptions::default(), |_, _| {})) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn bad_model_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = |name: &str, from: &str| -> PathBuf {
        let d = tmp.path().join(name);
        copy_dir(&common::tiny(from), &d);
        d
    };

    let e = load(&tmp.path().join("nowhere"));
    assert!(matches!(e, EngineError::NotFound { .. }), "{e}");

    let d = fresh("no-config", "llama-f32");
    std::fs::remove_file(d.join("config.json")).unwrap();
    assert!(load(&d).to_string().contains("config.json"), "{}", load(&d));

    let d = fresh("bad-json", "llama-f32");
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    assert!(load(&d).to_string().contains("not valid JSON"), "{}", load(&d));

    let d = fresh("gpt2", "llama-f32");
    edit_config(&d, |v| v["model_type"] = "gpt2".into());
    assert_eq!(
        load(&d).to_string(),
        "unsupported model architecture 'gpt2'; supported: gemma3, gemma3_text, gpt_oss, llama, mistral, mixtral, phi3, qwen2, qwen3, qwen3_moe"
    );

    let d = fresh("no-weights", "llama-f32");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    assert!(load(&d).to_string().contains("safetensors"), "{}", load(&d));

    let d = fresh("missing-shard", "llama3-f32");
    std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    let e = load(&d);
    assert!(e.to_string().contains("model-00002-of-00002.safetensors"), "{e}");

    let d = fresh("truncated", "llama-f32");
    let len = std::fs::metadata(d.join("model.safetensors")).unwrap().len();
    truncate(&d.join("model.safetensors"), len / 2);
    let e = load(&d);
    assert!(matches!(e, EngineError::BadModel { .. }), "{e}");

    let d = fresh("shapes", "llama-f32");
    edit_config(&d, |v| v["intermediate_size"] = 96.into());
    let e = load(&d);
    assert!(e.to_string().contains("has shape [128, 64], expected [96, 64]"), "{e}");

    let d = fresh("heads", "qwen3-q4");
    edit_config(&d, |v| v["head_dim"] = 16.into());
    let e = load(&d);
    assert!(e.to_string().contains("expected"), "{e}");

    let d = fresh("missing-tensor", "qwen2-f32");
    edit_config(&d, |v| v["num_hidden_layers"] = 3.into());
    let e = load(&d);
    assert!(e.to_string().contains("'model.layers.2.self_attn.q_proj.weight' is missing"), "{e}");

    let d = fresh("small-vocab", "llama-f32");
    edit_config(&d, |v| v["vocab_size"] = 100.into());
    let e = load(&d);
    assert!(e.to_string().contains("tokenizer has 480 tokens"), "{e}");

    // The newer families' own hyper-parameters.
    let d = fresh("top-k", "qwen3_moe-q4");
    edit_config(&d, |v| v["num_experts_per_tok"] = 5.into());
    let e = load(&d);
    assert!(e.to_string().contains("num_experts_per_tok 5 must be between 1 and the 4 experts"), "{e}");

    let d = fresh("experts", "mixtral-f32");
    edit_config(&d, |v| v["num_local_experts"] = 3.into());
    let e = load(&d);
    assert!(e.to_string().contains("mlp.gate.weight' has shape [4, 64], expected [3, 64]"), "{e}");

    let d = fresh("long-factor", "phi3-f32");
    edit_config(&d, |v| v["rope_scaling"]["long_factor"] = serde_json::json!([1.0, 2.0]));
    let e = load(&d);
    assert!(e.to_string().contains("long_factor has 2 values; 8 rotated features need 4"), "{e}");

    let d = fresh("layer-types", "gemma3-f32");
    edit_config(&d, |v| v["layer_types"] = serde_json::json!(["sliding_attention"]));
    let e = load(&d);
    assert!(e.to_string().contains("layer_types lists 1 layers; the model has 2"), "{e}");
}

#[test]
fn truncated_gguf_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = common::smol_gguf();
    for (name, len) in [("half.gguf", 50_000_000u64), ("header.gguf", 1000), ("empty.gguf", 0)] {
        let p = tmp.path().join(name);
        std::fs::copy(&src, &p).unwrap();
        truncate(&p, len);
        let e = load(&p);
        assert!(matches!(e, EngineError::BadModel { .. }), "{name}: {e}");
        eprintln!("{name}: {e}");
    }
}

#[test]
fn bad_requests_are_clear_errors_and_the_engine_keeps_serving() {
    let opts = EngineOptions { context_length: Some(64), ..Default::default() };
    let e = Engine::load(ModelSource::detect(&common::tiny("llama-f32")).unwrap(), opts, |_, _| {}).unwrap();
    let submit = |prompt: Prompt, max: Option<usize>, sampling: SamplingParams| {
        let mut r = GenerateRequest::new(prompt);
        r.max_tokens = max;
        r.sampling = sampling;
        e.submit(r)
    };
    let err = |r: Result<zeta_engine::Generation, EngineError>| r.err().expect("should be refused").to_string();
    let ok = SamplingParams::greedy();

    assert_eq!(
        err(submit(Prompt::Tokens(vec![5; 80]), None, ok.clone())),
        "the prompt has 80 tokens; the context of model 'model' holds 64"
    );
    assert_eq!(
        err(submit(Prompt::Tokens(vec![5; 40]), Some(30), ok.clone())),
        "the prompt (40 tokens) plus max_tokens (30) is 70, over the context length 64 of model 'model'"
    );
    assert_eq!(err(submit(Prompt::Tokens(vec![]), None, ok.clone())), "invalid prompt_tokens: is empty");
    assert_eq!(
        err(submit(Prompt::Tokens(vec![5]), Some(0), ok.clone())),
        "invalid max_tokens: 0 is below the minimum 1"
    );
    assert_eq!(
        err(submit(Prompt::Tokens(vec![5, 9999]), None, ok.clone())),
        "invalid prompt[1]: token id 9999 is outside the vocabulary (size 480)"
    );
    let nan = SamplingParams { temperature: f32::NAN, ..Default::default() };
    assert_eq!(err(submit(Prompt::Tokens(vec![5]), None, nan)), "invalid temperature: NaN is not a finite number");
    let chat = Prompt::Chat {
        messages: vec![],
        tools: None,
        add_generation_prompt: true,
        continue_final_message: false,
        extra: None,
    };
    assert_eq!(err(submit(chat, None, ok.clone())), "invalid messages: must hold at least one message");

    // Still serving, and a prompt that fills the context ends with `length`.
    let mut g = submit(Prompt::Tokens(vec![5; 60]), None, ok).unwrap();
    let mut n = 0;
    loop {
        match g.blocking_next().unwrap() {
            Event::Delta { .. } => n += 1,
            Event::Finished { reason, usage, .. } => {
                assert!(usage.prompt_tokens + usage.completion_tokens <= 64);
                if reason == zeta_engine::FinishReason::Length {
                    assert_eq!(n, 4);
                }
                break;
            }
            Event::Started { .. } | Event::Embedding(_) => {}
            Event::Error(e) => panic!("{e}"),
        }
    }
}
