//! `bench-engine`: prefill and decode tokens/s of our engine against `mlx_lm.benchmark` on the
//! same model and shapes, in one run, printed as ratios.
//!
//! The model is `--model PATH` (a GGUF file, converted for mlx-lm, or an mlx-community folder),
//! `--shape NAME` (a random-weight 4-bit model of that shape made once with mlx-lm), or the
//! embedded SmolLM2-135M-Instruct. Cases mirror mlx-lm's benchmark: random prompt tokens, EOS
//! ignored, one case per `--batch` size (`-b 1 -p P -g G`, larger batches with P/2 and G/2).
//! Each side runs warm-up + N trials; medians are compared. The two sides run one after the
//! other, never together (the machine's cores are shared). Before the trials, the time to the
//! first token of the first request on the freshly loaded model is compared with a warm one's.
//!
//! `--constrained` also runs each case with every sequence under a JSON schema (an open-ended
//! array of objects, so no sequence can end early) and compares its decode rate with the free
//! run's on the same prompts: the cost of constrained decoding.
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use zeta_bench::{median, random_tokens};
use zeta_engine::constraint::Constraint;
use zeta_engine::{Engine, EngineOptions, Event, GenerateRequest, ModelSource, Prompt, SamplingParams};

#[derive(Parser)]
struct Args {
    /// The model: a GGUF file or an mlx-community folder (default: the embedded SmolLM2).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Instead of --model, a random-weight 4-bit model of this shape: llama3-8b, llama3.2-1b, qwen3-0.6b,
    /// smollm2-135m.
    #[arg(long)]
    shape: Option<String>,
    /// Prompt tokens (single-sequence case).
    #[arg(short, long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Generated tokens (single-sequence case).
    #[arg(short, long, default_value_t = 128)]
    generation_tokens: usize,
    /// Batch sizes, comma-separated; above 1 the prompt and generation are halved.
    #[arg(short, long, value_delimiter = ',', default_value = "1,4")]
    batch: Vec<usize>,
    /// Timed trials per case.
    #[arg(short, long, default_value_t = 3)]
    trials: usize,
    /// Only run our side.
    #[arg(long)]
    no_peer: bool,
    /// Also run each case under a JSON schema and report constrained / free decode.
    #[arg(long)]
    constrained: bool,
    /// Quantized weights on the CPU: `auto` (the engine's default), `never` expanded (the CPU
    /// quantized kernel), `always` expanded to float32.
    #[arg(long, default_value = "auto")]
    dense: String,
    /// On the CPU, MLX's own expansions of norms, activations and attention instead of the
    /// engine's fused primitives (to measure what they bring).
    #[arg(long)]
    unfused: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Rates {
    prompt_tps: f64,
    generation_tps: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    anyhow::ensure!(!args.batch.is_empty() && !args.batch.contains(&0), "--batch sizes must be positive");
    let model = zeta_bench::pick_model(args.model.as_deref(), args.shape.as_deref())?;
    let cases: Vec<(usize, usize, usize)> = args
        .batch
        .iter()
        .map(|&b| {
            if b == 1 {
                (1, args.prompt_tokens, args.generation_tokens)
            } else {
                (b, args.prompt_tokens / 2, args.generation_tokens / 2)
            }
        })
        .collect();

    let (ours, first) = {
        let max_batch = args.batch.iter().copied().max().unwrap_or(1).max(16);
        let mut opts =
            EngineOptions { prefix_cache_bytes: 0, max_batch, max_queue: max_batch.max(64), ..Default::default() };
        opts.load.dense = match args.dense.as_str() {
            "auto" => zeta_engine::DenseMode::Auto,
            "never" => zeta_engine::DenseMode::Never,
            "always" => zeta_engine::DenseMode::Always,
            other => anyhow::bail!("--dense {other}: expected auto, never or always"),
        };
        opts.load.fused = !args.unfused;
        let engine = Engine::load(ModelSource::detect(&model)?, opts, |_, _| {})?;
        eprintln!(
            "zeta-mlx: MLX {} on {}, CPU kernels {}, BLAS {}, {} ({}, weights {}, {:.0} MB, loaded in {:.1} s)",
            mlx::version(),
            if mlx::default_device_is_gpu() { "GPU" } else { "CPU" },
            mlx::cpu_kernels(),
            mlx::blas_backend().rsplit('/').next().unwrap_or(""),
            zeta_bench::model_name(&model),
            engine.info().arch,
            if engine.info().dense { "expanded to float32" } else { "as stored" },
            engine.info().weight_bytes as f64 / 1e6,
            engine.info().load_seconds,
        );
        let first = first_request(&engine, args.prompt_tokens)?;
        let rates = cases
            .iter()
            .map(|&(b, p, g)| run_ours(&engine, b, p, g, args.trials))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if args.constrained {
            println!(
                "\nConstrained decoding (a JSON schema), medians of {} interleaved trials (decode tokens/s)",
                args.trials
            );
            println!("| case | free decode | constrained decode | ratio |");
            println!("| --- | ---: | ---: | ---: |");
            for &(b, p, g) in &cases {
                let (free, c) = run_constrained(&engine, b, p, g, args.trials)?;
                println!(
                    "| -b {b} -p {p} -g {g} | {:.1} | {:.1} | {:.2}x |",
                    free.generation_tps,
                    c.generation_tps,
                    c.generation_tps / free.generation_tps
                );
            }
        }
        (rates, first)
    };
    let peer = if args.no_peer {
        vec![None; cases.len()]
    } else {
        let dir = zeta_bench::for_mlx_lm(&model)?;
        cases
            .iter()
            .map(|&(b, p, g)| run_peer(&dir, b, p, g, args.trials).map(Some))
            .collect::<anyhow::Result<Vec<_>>>()?
    };

    println!(
        "\n{}, medians of {} trials (tokens/s; ratio = zeta-mlx / mlx-lm)",
        zeta_bench::model_name(&model),
        args.trials
    );
    println!("| case | zeta-mlx prefill | mlx-lm prefill | ratio | zeta-mlx decode | mlx-lm decode | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    // Without the peer (--no-peer) its columns show a dash, not NaN.
    let cell = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
    for ((&(b, p, g), o), peer) in cases.iter().zip(&ours).zip(&peer) {
        let pp = peer.map(|r| r.prompt_tps);
        let pg = peer.map(|r| r.generation_tps);
        println!(
            "| -b {b} -p {p} -g {g} | {:.1} | {} | {} | {:.1} | {} | {} |",
            o.prompt_tps,
            cell(pp),
            pp.map_or("—".to_string(), |v| format!("{:.2}x", o.prompt_tps / v)),
            o.generation_tps,
            cell(pg),
            pg.map_or("—".to_string(), |v| format!("{:.2}x", o.generation_tps / v)),
        );
    }
    println!(
        "\nFirst request on the freshly loaded model: time to first token {:.3} s; a warm request of the same shape: {:.3} s ({:.2}x)",
        first.0,
        first.1,
        first.0 / first.1
    );
    Ok(())
}

/// The benchmark's constraint: an array of objects with nested arrays, enums, numbers and strings
/// that never closes, so every sequence generates all its tokens under the grammar.
fn constraint_schema() -> Constraint {
    Constraint::JsonSchema(serde_json::json!({
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 16},
                "kind": {"enum": ["alpha", "beta", "gamma"]},
                "score": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4},
            },
            "required": ["name", "kind", "score", "tags"],
        },
        "minItems": 100000,
    }))
}

/// Time to the first token of the engine's very first request (`prompt` tokens), then of a
/// second one of the same shape but other tokens.
fn first_request(engine: &Engine, prompt: usize) -> anyhow::Result<(f64, f64)> {
    let vocab = engine.info().vocab_size;
    let ttft = |seed: u64| -> anyhow::Result<f64> {
        let mut r = GenerateRequest::new(Prompt::Tokens(random_tokens(seed, prompt, vocab)));
        r.max_tokens = Some(1);
        r.sampling = SamplingParams::greedy();
        let start = Instant::now();
        let mut g = engine.submit(r)?;
        while let Some(ev) = g.blocking_next() {
            match ev {
                Event::Delta { .. } => return Ok(start.elapsed().as_secs_f64()),
                Event::Error(e) => return Err(e.into()),
                _ => {}
            }
        }
        anyhow::bail!("no token")
    };
    Ok((ttft(9001)?, ttft(9002)?))
}

/// Prefill rate = prompt tokens of all sequences / time to the last first token; decode rate =
/// tokens generated after each sequence's first / time from the last first token to the end.
/// One warm-up, then `trials` timed runs; medians.
fn run_ours(engine: &Engine, batch: usize, prompt: usize, gen_tokens: usize, trials: usize) -> anyhow::Result<Rates> {
    let mut results = Vec::new();
    for trial in 0..=trials {
        let rates = run_trial(engine, batch, prompt, gen_tokens, trial, None)?;
        if trial > 0 {
            eprintln!("  zeta-mlx -b {batch} -p {prompt} -g {gen_tokens} trial {trial}: {rates:?}");
            results.push(rates);
        }
    }
    Ok(medians(&results))
}

/// Free and constrained decode of the same prompts, their trials interleaved (and which goes
/// first alternating) so that the machine's noise and any cost of going first fall on both
/// alike: (free, constrained) medians.
fn run_constrained(
    engine: &Engine,
    batch: usize,
    prompt: usize,
    gen_tokens: usize,
    trials: usize,
) -> anyhow::Result<(Rates, Rates)> {
    let schema = constraint_schema();
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    for trial in 0..=trials {
        let (f, c) = if trial % 2 == 0 {
            let f = run_trial(engine, batch, prompt, gen_tokens, trial, None)?;
            (f, run_trial(engine, batch, prompt, gen_tokens, trial, Some(&schema))?)
        } else {
            let c = run_trial(engine, batch, prompt, gen_tokens, trial, Some(&schema))?;
            (run_trial(engine, batch, prompt, gen_tokens, trial, None)?, c)
        };
        if trial > 0 {
            eprintln!("  zeta-mlx -b {batch} -p {prompt} -g {gen_tokens} trial {trial}: free {f:?}, constrained {c:?}");
            free.push(f);
            constrained.push(c);
        }
    }
    Ok((medians(&free), medians(&constrained)))
}

fn medians(results: &[Rates]) -> Rates {
    Rates {
        prompt_tps: median(&results.iter().map(|r| r.prompt_tps).collect::<Vec<_>>()),
        generation_tps: median(&results.iter().map(|r| r.generation_tps).collect::<Vec<_>>()),
    }
}

/// One timed run of `batch` sequences (prompts seeded by `trial`), each under `constraint` if
/// given.
fn run_trial(
    engine: &Engine,
    batch: usize,
    prompt: usize,
    gen_tokens: usize,
    trial: usize,
    constraint: Option<&Constraint>,
) -> anyhow::Result<Rates> {
    let vocab = engine.info().vocab_size;
    let no_eos: Vec<(u32, f32)> = engine.info().eos_token_ids.iter().map(|&t| (t, -1e9)).collect();
    let start = Instant::now();
    let mut streams = (0..batch)
        .map(|i| {
            let mut r = GenerateRequest::new(Prompt::Tokens(random_tokens((trial * 100 + i) as u64, prompt, vocab)));
            r.max_tokens = Some(gen_tokens);
            r.sampling = SamplingParams { temperature: 0.0, logit_bias: no_eos.clone(), ..Default::default() };
            r.constraint = constraint.cloned();
            engine.submit(r)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Each stream is read on its own thread, so every first token is seen when it comes.
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .iter_mut()
            .map(|s| {
                scope.spawn(move || -> anyhow::Result<(Instant, Instant, usize)> {
                    let (mut first, mut n) = (None, 0);
                    while let Some(ev) = s.blocking_next() {
                        match ev {
                            Event::Delta { tokens, .. } => {
                                first.get_or_insert_with(Instant::now);
                                n += tokens.len();
                            }
                            Event::Finished { .. } => break,
                            Event::Error(e) => return Err(e.into()),
                            Event::Started { .. } | Event::Embedding(_) => {}
                        }
                    }
                    Ok((first.context("no token")?, Instant::now(), n))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reader thread")).collect::<anyhow::Result<Vec<_>>>()
    })?;
    let first: Vec<Instant> = outcomes.iter().map(|o| o.0).collect();
    let last = outcomes.iter().map(|o| o.1).max().unwrap();
    let generated: usize = outcomes.iter().map(|o| o.2).sum();
    anyhow::ensure!(generated == batch * gen_tokens, "{generated} tokens generated, {} expected", batch * gen_tokens);
    let prefilled = *first.iter().max().unwrap();
    Ok(Rates {
        prompt_tps: (batch * prompt) as f64 / (prefilled - start).as_secs_f64(),
        generation_tps: (generated - batch) as f64 / (last - prefilled).as_secs_f64(),
    })
}

fn run_peer(
    dir: &std::path::Path,
    batch: usize,
    prompt: usize,
    gen_tokens: usize,
    trials: usize,
) -> anyhow::Result<Rates> {
    eprintln!("  mlx_lm.benchmark -b {batch} -p {prompt} -g {gen_tokens} -n {trials} (slow: MLX's CPU kernels) ...");
    let out = Command::new(zeta_bench::python()?)
        .args(["-m", "mlx_lm.benchmark", "--model"])
        .arg(dir)
        .args([
            "-p",
            &prompt.to_string(),
            "-g",
            &gen_tokens.to_string(),
            "-b",
            &batch.to_string(),
            "-n",
            &trials.to_string(),
        ])
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "mlx_lm.benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split(", ").find_map(|kv| kv.trim().strip_prefix(&format!("{key}="))?.parse().ok())
    };
    let (mut p, mut g) = (vec![], vec![]);
    for line in text.lines().filter(|l| l.starts_with("Trial")) {
        eprintln!("  mlx-lm {line}");
        let body = line.split_once(':').map(|x| x.1).unwrap_or("");
        p.extend(field(body, "prompt_tps"));
        g.extend(field(body, "generation_tps"));
    }
    anyhow::ensure!(!p.is_empty(), "no trials in mlx_lm.benchmark's output:\n{text}");
    Ok(Rates { prompt_tps: median(&p), generation_tps: median(&g) })
}
