//! `bench-engine`: prefill and decode tokens/s of our engine against `mlx_lm.benchmark` on the
//! same model (SmolLM2-135M-Instruct) and shapes, in one run, printed as ratios.
//!
//! Cases mirror mlx-lm's benchmark: random prompt tokens, EOS ignored, one sequence (`-p P -g G`)
//! and a batch (`-b B`). Each side runs warm-up + N trials; medians are compared. The two sides
//! run one after the other, never together (the machine's cores are shared).
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use zeta_bench::{median, random_tokens};
use zeta_engine::{Engine, EngineOptions, Event, GenerateRequest, ModelSource, Prompt, SamplingParams};

#[derive(Parser)]
struct Args {
    /// Prompt tokens (single-sequence case).
    #[arg(short, long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Generated tokens (single-sequence case).
    #[arg(short, long, default_value_t = 128)]
    generation_tokens: usize,
    /// Sequences in the batched case (prompt and generation halved); 0 skips it.
    #[arg(short, long, default_value_t = 4)]
    batch: usize,
    /// Timed trials per case.
    #[arg(short, long, default_value_t = 3)]
    trials: usize,
    /// Only run our side.
    #[arg(long)]
    no_peer: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Rates {
    prompt_tps: f64,
    generation_tps: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let gguf = zeta_engine::default_model_path().context("SmolLM2 GGUF not installed; run `make setup`")?;
    let cases: Vec<(usize, usize, usize)> = std::iter::once((1, args.prompt_tokens, args.generation_tokens))
        .chain((args.batch > 1).then_some((args.batch, args.prompt_tokens / 2, args.generation_tokens / 2)))
        .collect();

    let ours = {
        let opts = EngineOptions { prefix_cache_bytes: 0, ..Default::default() };
        let engine = Engine::load(ModelSource::Gguf(gguf), opts, |_, _| {})?;
        eprintln!(
            "zeta-mlx: MLX {} on {}, BLAS {}, weights {} ({:.0} MB)",
            mlx::version(),
            if mlx::default_device_is_gpu() { "GPU" } else { "CPU" },
            mlx::blas_backend().rsplit('/').next().unwrap_or(""),
            if engine.info().dense { "expanded to float32" } else { "as stored" },
            engine.info().weight_bytes as f64 / 1e6
        );
        cases.iter().map(|&(b, p, g)| run_ours(&engine, b, p, g, args.trials)).collect::<anyhow::Result<Vec<_>>>()?
    };
    let peer = if args.no_peer {
        vec![None; cases.len()]
    } else {
        let dir = zeta_bench::smollm2_for_mlx_lm()?;
        cases
            .iter()
            .map(|&(b, p, g)| run_peer(&dir, b, p, g, args.trials).map(Some))
            .collect::<anyhow::Result<Vec<_>>>()?
    };

    println!("\nSmolLM2-135M-Instruct, medians of {} trials (tokens/s; ratio = zeta-mlx / mlx-lm)", args.trials);
    println!("| case | zeta-mlx prefill | mlx-lm prefill | ratio | zeta-mlx decode | mlx-lm decode | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((&(b, p, g), o), peer) in cases.iter().zip(&ours).zip(&peer) {
        let (pp, pg) = peer.map(|r| (r.prompt_tps, r.generation_tps)).unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| -b {b} -p {p} -g {g} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.1} | {:.2}x |",
            o.prompt_tps,
            pp,
            o.prompt_tps / pp,
            o.generation_tps,
            pg,
            o.generation_tps / pg
        );
    }
    Ok(())
}

/// Prefill rate = prompt tokens of all sequences / time to the last first token; decode rate =
/// tokens generated after each sequence's first / time from the last first token to the end.
fn run_ours(engine: &Engine, batch: usize, prompt: usize, gen_tokens: usize, trials: usize) -> anyhow::Result<Rates> {
    let vocab = engine.info().vocab_size;
    let no_eos: Vec<(u32, f32)> = engine.info().eos_token_ids.iter().map(|&t| (t, -1e9)).collect();
    let mut results = Vec::new();
    for trial in 0..=trials {
        let start = Instant::now();
        let mut streams = (0..batch)
            .map(|i| {
                let mut r =
                    GenerateRequest::new(Prompt::Tokens(random_tokens((trial * 100 + i) as u64, prompt, vocab)));
                r.max_tokens = Some(gen_tokens);
                r.sampling = SamplingParams { temperature: 0.0, logit_bias: no_eos.clone(), ..Default::default() };
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
                                Event::Started { .. } => {}
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
        let prefilled = *first.iter().max().unwrap();
        let rates = Rates {
            prompt_tps: (batch * prompt) as f64 / (prefilled - start).as_secs_f64(),
            generation_tps: (generated - batch) as f64 / (last - prefilled).as_secs_f64(),
        };
        if trial > 0 {
            eprintln!("  zeta-mlx -b {batch} -p {prompt} -g {gen_tokens} trial {trial}: {rates:?}");
            results.push(rates);
        }
    }
    Ok(Rates {
        prompt_tps: median(&results.iter().map(|r| r.prompt_tps).collect::<Vec<_>>()),
        generation_tps: median(&results.iter().map(|r| r.generation_tps).collect::<Vec<_>>()),
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
