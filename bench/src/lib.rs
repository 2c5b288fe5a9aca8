//! Benchmarks of zeta-mlx against Apple's mlx-lm, run on the same machine, model and shapes in one
//! run and reported as ratios. Timing goals live here, never in tests. Helpers shared by the
//! benchmark binaries: the project's Python environment, the reference model folder, statistics.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use zeta_fixtures::root;

/// The project's Python (`.venv`), which holds mlx-lm.
pub fn python() -> anyhow::Result<PathBuf> {
    zeta_fixtures::try_python().map_err(anyhow::Error::msg)
}

/// The embedded SmolLM2 GGUF converted to an mlx-lm folder (by the test suite's independent
/// converter), so mlx-lm runs exactly the weights we run.
pub fn smollm2_for_mlx_lm() -> anyhow::Result<PathBuf> {
    let gguf = zeta_engine::default_model_path().ok_or_else(|| anyhow::anyhow!("SmolLM2 GGUF not installed"))?;
    for_mlx_lm(&gguf)
}

/// The folder mlx-lm loads for the model at `path`: the folder itself, or for a GGUF file its
/// conversion (Q4_0, Q4_1 and Q8_0 map exactly onto MLX's affine formats).
pub fn for_mlx_lm(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let out = root().join("target/bench-models").join(format!("{stem}-mlx"));
    let status = Command::new(python()?)
        .arg(root().join("tests/reference/gguf_to_mlx.py"))
        .arg(path)
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .status()?;
    anyhow::ensure!(status.success(), "gguf_to_mlx.py failed on {}", path.display());
    Ok(out)
}

/// Shapes `tests/reference/make_bench_model.py` can build.
pub const SHAPES: [&str; 4] = ["llama3-8b", "llama3.2-1b", "qwen3-0.6b", "smollm2-135m"];

/// A random-weight 4-bit model of a named shape (see `tests/reference/make_bench_model.py`), made once with
/// mlx-lm under `target/bench-models`: benchmarks at any size with no download.
pub fn random_model(shape: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(SHAPES.contains(&shape), "unknown shape '{shape}'; known: {}", SHAPES.join(", "));
    let base = smollm2_for_mlx_lm()?;
    let out = root().join("target/bench-models").join(format!("{shape}-random-4bit"));
    eprintln!("making (once) the random-weight {shape} model in {} ...", out.display());
    let status = Command::new(python()?)
        .arg(root().join("tests/reference/make_bench_model.py"))
        .arg(shape)
        .arg(&base)
        .arg(&out)
        .status()?;
    anyhow::ensure!(status.success(), "make_bench_model.py failed for {shape}");
    Ok(out)
}

/// The model a benchmark runs: `--model PATH`, else `--shape NAME`, else the embedded SmolLM2.
pub fn pick_model(model: Option<&Path>, shape: Option<&str>) -> anyhow::Result<PathBuf> {
    match (model, shape) {
        (Some(_), Some(_)) => anyhow::bail!("give --model or --shape, not both"),
        (Some(p), None) => {
            anyhow::ensure!(p.exists(), "--model {} does not exist", p.display());
            Ok(p.to_path_buf())
        }
        (None, Some(s)) => random_model(s),
        (None, None) => zeta_engine::default_model_path()
            .ok_or_else(|| anyhow::anyhow!("SmolLM2 GGUF not installed; run `make setup`")),
    }
}

/// A short name for a model path in reports.
pub fn model_name(path: &Path) -> String {
    path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// The median of some measurements.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `q`-th percentile (0 to 100) of some measurements, interpolating linearly between the
/// closest ranks (numpy's default), so `percentile(xs, 50.0) == median(xs)`.
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n => {
            let pos = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        }
    }
}

/// Deterministic pseudo-random token ids in `[0, vocab)`.
pub fn random_tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as u32
        })
        .collect()
}
