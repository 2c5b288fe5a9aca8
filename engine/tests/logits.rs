//! Our forward pass against mlx-lm's on the same token ids, for tiny random-weight models of
//! every architecture, unquantized and 4-bit, loaded both in their stored format (MLX's quantized
//! kernels, as on a GPU) and expanded to float32 (the CPU fast path).
//!
//! Tolerance: every logit within 2e-3 + 1e-3·|reference| of mlx-lm's (the logits are O(1-10));
//! the residual differences are float32 summation order (OpenBLAS vs MLX's reference BLAS, and a
//! dequantized product vs the quantized kernel). The tiny models of every family are held to
//! 2e-4 + 2e-5·|reference| (measured worst 2.8e-5): random weights amplify small errors layer after
//! layer, so this is what catches a kernel that lost precision (the CPU kernel's 15-bit
//! activations were at 2.3e-3 here, while every single product passed its own bound).
//!
//! Our pass is run the way the scheduler runs it — a chunk from an empty cache, a chunk at an
//! offset, then single tokens as decode rows batched with another sequence of a different length
//! — under both shape policies (exact, as on the CPU, and the GPU's padded buckets), so the
//! causal mask at an offset, the KV pool's gathers and masks, and padding rows are covered too.

mod common;

use serde_json::json;
use zeta_engine::model::Shapes;
use zeta_engine::{DenseMode, LoadOptions, ModelSource, load_local};

const TOKENS: [u32; 12] = [5, 17, 42, 99, 3, 250, 7, 77, 123, 300, 11, 64];
/// Positions whose logits our chunked run produces: ends of the two chunks, then each decode.
const POSITIONS: [usize; 6] = [3, 7, 8, 9, 10, 11];

fn ours(name: &str, dense: DenseMode, shapes: Shapes) -> Vec<Vec<f32>> {
    ours_from(&ModelSource::detect(&common::tiny(name)).unwrap(), dense, shapes)
}

fn ours_from(source: &ModelSource, dense: DenseMode, shapes: Shapes) -> Vec<Vec<f32>> {
    let opts = LoadOptions { dense, ..Default::default() };
    let m = load_local(source, &opts, |_, _| {}).unwrap();
    let mut pool = m.model.new_pool(None);
    let (mut slots, mut other, mut third) =
        (common::Slots::default(), common::Slots::default(), common::Slots::default());
    let mut rows = Vec::new();
    let first = common::step(&m.model, &mut pool, &shapes, &mut [(&mut slots, &TOKENS[0..4], false)]);
    rows.extend(first);
    // The second chunk continues the sequence while another one starts.
    let both = common::step(
        &m.model,
        &mut pool,
        &shapes,
        &mut [(&mut other, &TOKENS[3..6], false), (&mut slots, &TOKENS[4..8], false)],
    );
    rows.push(both[1].clone());
    for t in 8..12 {
        let mut seqs = vec![(&mut other, &TOKENS[t..t + 1], true), (&mut slots, &TOKENS[t..t + 1], true)];
        // One step also prefills a third sequence: decode rows and a prompt chunk together (on
        // the CPU, the decode rows' fused attention beside the chunk's batched one).
        if t == 9 {
            seqs.push((&mut third, &TOKENS[0..3], false));
        }
        let both = common::step(&m.model, &mut pool, &shapes, &mut seqs);
        rows.push(both[1].clone());
    }
    rows
}

/// mlx-lm's logits of [`TOKENS`] for each tiny model: (vocabulary size, row-major logits).
fn reference_logits(names: &[&str]) -> Vec<(usize, Vec<f32>)> {
    let dir = tempfile::tempdir().unwrap();
    let tasks = names
        .iter()
        .map(|name| {
            let out = dir.path().join(format!("{name}.f32"));
            json!({"op": "logits", "model": common::tiny(name), "tokens": TOKENS, "out": out})
        })
        .collect();
    let results = common::reference(tasks);
    names
        .iter()
        .zip(&results)
        .map(|(name, res)| {
            (res["shape"][1].as_u64().unwrap() as usize, common::read_f32(&dir.path().join(format!("{name}.f32"))))
        })
        .collect()
}

#[test]
fn tiny_models_match_mlx_lm() {
    let mut report = Vec::new();
    for (name, (vocab, reference)) in common::TINY.iter().zip(reference_logits(&common::TINY)) {
        for (mode, shapes) in [
            (DenseMode::Never, Shapes::exact()),
            (DenseMode::Always, Shapes::exact()),
            (DenseMode::Never, Shapes::buckets()),
        ] {
            let rows = ours(name, mode, shapes);
            let mut worst = 0f32;
            for (row, &pos) in rows.iter().zip(&POSITIONS) {
                assert_eq!(row.len(), vocab, "{name}: vocabulary size");
                let r = &reference[pos * vocab..(pos + 1) * vocab];
                for (a, b) in row.iter().zip(r) {
                    let err = (a - b).abs();
                    assert!(
                        err <= 2e-4 + 2e-5 * b.abs(),
                        "{name} {mode:?} {shapes:?} position {pos}: {a} vs mlx-lm {b}"
                    );
                    worst = worst.max(err);
                }
                let argmax = |xs: &[f32]| zeta_engine::sampling::argmax(xs);
                assert_eq!(argmax(row), argmax(r), "{name} {mode:?} {shapes:?} position {pos}: argmax");
            }
            report.push(format!("{name} {mode:?} {shapes:?}: max |Δ| {worst:.2e}"));
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// The newer families as llama.cpp lays them out in GGUF (Mixtral as a llama with experts and
/// permuted q/k rows, Qwen3-MoE as `qwen3moe`, Phi-3 with fused tensors and LongRoPE factors as
/// tensors, Gemma 3 with its norms shifted by 1 and six layers, so every sixth is global as
/// llama.cpp assumes, gpt-oss with its experts, attention and embeddings as ggml's MXFP4 blocks),
/// written from the tiny models by `tests/reference/mlx_to_gguf.py`: the same logits as mlx-lm on
/// the folder, and the same tokenizer and chat template.
#[test]
fn gguf_of_newer_families_matches_mlx_lm() {
    let dir = tempfile::tempdir().unwrap();
    let families = ["mixtral-f32", "qwen3_moe-f32", "phi3-f32", "gemma3_6l-f32", "gpt_oss-mxfp4"];
    for (name, (vocab, reference)) in families.iter().zip(reference_logits(&families)) {
        let gguf = dir.path().join(format!("{name}.gguf"));
        common::run_script("mlx_to_gguf.py", &[&common::tiny(name), &gguf]);
        let rows = ours_from(&ModelSource::Gguf(gguf.clone()), DenseMode::Never, Shapes::exact());
        for (row, &pos) in rows.iter().zip(&POSITIONS) {
            let r = &reference[pos * vocab..(pos + 1) * vocab];
            for (a, b) in row.iter().zip(r) {
                assert!((a - b).abs() <= 2e-3 + 1e-3 * b.abs(), "{name} GGUF position {pos}: {a} vs mlx-lm {b}");
            }
        }
        let from_gguf = load_local(&ModelSource::Gguf(gguf), &LoadOptions::default(), |_, _| {}).unwrap();
        let from_dir =
            load_local(&ModelSource::detect(&common::tiny(name)).unwrap(), &LoadOptions::default(), |_, _| {}).unwrap();
        assert_eq!(from_gguf.model.cfg.arch, from_dir.model.cfg.arch, "{name}: architecture");
        assert_eq!(from_gguf.model.cfg.moe, from_dir.model.cfg.moe, "{name}: experts");
        assert_eq!(from_gguf.model.cfg.rotary_dim, from_dir.model.cfg.rotary_dim, "{name}: rotary features");
        assert_eq!(from_gguf.model.cfg.sliding_window, from_dir.model.cfg.sliding_window, "{name}: sliding layers");
        assert_eq!(from_gguf.model.cfg.rope_scaling, from_dir.model.cfg.rope_scaling, "{name}: rope scaling");
        let text = "The capital of France is Paris. 你好 <|im_start|>";
        assert_eq!(
            from_gguf.tokenizer.encode(text, false).unwrap(),
            from_dir.tokenizer.encode(text, false).unwrap(),
            "{name}: tokenizer"
        );
        assert!(from_gguf.template.is_some(), "{name}: chat template");
    }
}
