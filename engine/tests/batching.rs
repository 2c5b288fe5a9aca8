//! Continuous batching: sequences decoded together give the same tokens as each decoded alone
//! (also when they join a running batch), a cancelled sequence leaves within one step while the
//! others finish unchanged, and seeded sampling is reproducible alone and batched.

mod common;

use std::time::{Duration, Instant};

use zeta_engine::{Engine, EngineOptions, Event, GenerateRequest, Generation, ModelSource, Prompt, SamplingParams};

fn engine(path: std::path::PathBuf) -> Engine {
    Engine::load(ModelSource::detect(&path).unwrap(), EngineOptions::default(), |_, _| {}).unwrap()
}

fn request(prompt: Vec<u32>, sampling: SamplingParams, max_tokens: usize) -> GenerateRequest {
    let mut r = GenerateRequest::new(Prompt::Tokens(prompt));
    r.sampling = sampling;
    r.max_tokens = Some(max_tokens);
    r
}

/// Collects a generation's tokens; `deltas` stops early after that many deltas (returning the
/// stream still open).
fn collect(g: &mut Generation, deltas: Option<usize>) -> Vec<u32> {
    let mut tokens = vec![];
    loop {
        match g.blocking_next().expect("stream ends with Finished") {
            Event::Started { .. } => {}
            Event::Delta { tokens: t, .. } => {
                tokens.extend(t);
                if deltas.is_some_and(|d| tokens.len() >= d) {
                    return tokens;
                }
            }
            Event::Finished { .. } => return tokens,
            Event::Error(e) => panic!("{e}"),
        }
    }
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 42, 99, 3], vec![250, 7, 77], vec![123, 300, 11, 64, 8, 9, 10, 200, 100], vec![1, 2, 3, 4]]
}

#[test]
fn batched_greedy_equals_alone() {
    for name in ["llama-f32", "qwen2-q4", "qwen3-q4"] {
        let e = engine(common::tiny(name));
        let greedy = SamplingParams::greedy();
        let alone: Vec<Vec<u32>> = prompts()
            .into_iter()
            .map(|p| collect(&mut e.submit(request(p, greedy.clone(), 24)).unwrap(), None))
            .collect();
        // All four at once.
        let mut gens: Vec<_> =
            prompts().into_iter().map(|p| e.submit(request(p, greedy.clone(), 24)).unwrap()).collect();
        let together: Vec<_> = gens.iter_mut().map(|g| collect(g, None)).collect();
        assert_eq!(together, alone, "{name}: batched vs alone");
        // Two running, two joining mid-generation.
        let ps = prompts();
        let mut first: Vec<_> =
            ps[..2].iter().map(|p| e.submit(request(p.clone(), greedy.clone(), 24)).unwrap()).collect();
        let head: Vec<_> = first.iter_mut().map(|g| collect(g, Some(3))).collect();
        let mut late: Vec<_> =
            ps[2..].iter().map(|p| e.submit(request(p.clone(), greedy.clone(), 24)).unwrap()).collect();
        let mut joined: Vec<Vec<u32>> = first
            .iter_mut()
            .zip(head)
            .map(|(g, mut h)| {
                h.extend(collect(g, None));
                h
            })
            .collect();
        joined.extend(late.iter_mut().map(|g| collect(g, None)));
        assert_eq!(joined, alone, "{name}: joining a running batch");
    }
}

#[test]
fn seeded_sampling_is_reproducible_alone_and_batched() {
    let e = engine(common::tiny("llama-q4"));
    let seeded = |seed| SamplingParams { temperature: 0.9, top_p: 0.95, seed: Some(seed), ..Default::default() };
    let p = vec![5, 17, 42, 99, 3];
    let alone = collect(&mut e.submit(request(p.clone(), seeded(1234), 24)).unwrap(), None);
    let again = collect(&mut e.submit(request(p.clone(), seeded(1234), 24)).unwrap(), None);
    assert_eq!(alone, again, "same seed, same request");
    let mut gens = [
        e.submit(request(vec![250, 7, 77], seeded(1), 24)).unwrap(),
        e.submit(request(p.clone(), seeded(1234), 24)).unwrap(),
        e.submit(request(vec![1, 2, 3], SamplingParams::default(), 24)).unwrap(),
    ];
    let out: Vec<_> = gens.iter_mut().map(|g| collect(g, None)).collect();
    assert_eq!(out[1], alone, "same seed inside a batch");
    let other = collect(&mut e.submit(request(p, seeded(99), 24)).unwrap(), None);
    assert_ne!(other, alone, "another seed samples differently");
}

/// On SmolLM2, where a step takes long enough to observe: drop one of three running streams
/// and see the batch shrink no later than one step after, with the other two unchanged.
#[test]
fn cancelled_sequence_leaves_within_one_step() {
    let e = engine(common::smol_gguf());
    let eos = e.info().eos_token_ids.clone();
    // Never end early on EOS, so all three are still running when one is cancelled.
    let sampling = SamplingParams {
        temperature: 0.0,
        logit_bias: eos.iter().map(|&t| (t, -100.0)).collect(),
        ..Default::default()
    };
    let ps: Vec<Vec<u32>> = ["Tell me about the moon.", "Name some colors.", "Count to twenty."]
        .iter()
        .map(|t| e.tokenizer().encode(t, true).unwrap())
        .collect();
    let alone: Vec<_> = [&ps[0], &ps[2]]
        .iter()
        .map(|p| collect(&mut e.submit(request((*p).clone(), sampling.clone(), 30)).unwrap(), None))
        .collect();
    let mut gens: Vec<_> = ps.iter().map(|p| e.submit(request(p.clone(), sampling.clone(), 30)).unwrap()).collect();
    let heads: Vec<_> = gens.iter_mut().map(|g| collect(g, Some(4))).collect();
    assert_eq!(e.stats().active, 3);
    let victim = gens.remove(1);
    let before = e.stats().steps;
    drop(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    while e.stats().active == 3 {
        assert!(Instant::now() < deadline, "the cancelled sequence never left");
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = e.stats().steps;
    assert!(after <= before + 1, "left after {} steps", after - before);
    let rest: Vec<_> = gens
        .iter_mut()
        .zip([&heads[0], &heads[2]])
        .map(|(g, h)| {
            let mut t = h.clone();
            t.extend(collect(g, None));
            t
        })
        .collect();
    assert_eq!(rest, alone, "the other sequences finish unchanged");
}

/// A second request sharing a prompt prefix reuses the first one's KV cache: it reports the
/// cached tokens and produces exactly the tokens it produces without the cache.
#[test]
fn prefix_cache_reuse_is_reported_and_exact() {
    let cached = engine(common::tiny("qwen3-q4"));
    let opts = EngineOptions { prefix_cache_bytes: 0, ..Default::default() };
    let uncached = Engine::load(ModelSource::detect(&common::tiny("qwen3-q4")).unwrap(), opts, |_, _| {}).unwrap();
    let first: Vec<u32> = (1..40).collect();
    let mut second = first.clone();
    second.extend([7, 8, 9]);
    let run = |e: &Engine, p: Vec<u32>| {
        let mut g = e.submit(request(p, SamplingParams::greedy(), 12)).unwrap();
        let (mut tokens, mut cached_tokens) = (vec![], None);
        loop {
            match g.blocking_next().unwrap() {
                Event::Started { cached_tokens: c, .. } => cached_tokens = Some(c),
                Event::Delta { tokens: t, .. } => tokens.extend(t),
                Event::Finished { usage, .. } => {
                    assert_eq!(Some(usage.cached_tokens), cached_tokens);
                    return (tokens, usage.cached_tokens);
                }
                Event::Error(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(run(&cached, first.clone()).1, 0);
    let (with_cache, reused) = run(&cached, second.clone());
    assert!(reused >= first.len() - 1, "reused {reused} of the {} shared tokens", first.len());
    let (without, none) = run(&uncached, second);
    assert_eq!(none, 0);
    assert_eq!(with_cache, without, "the cache changes nothing but the work");
}
