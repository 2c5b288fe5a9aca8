//! Continuous batching: sequences decoded together give the same tokens as each decoded alone
//! (also when they join a running batch), a cancelled sequence leaves within one step while the
//! others finish unchanged, and seeded sampling is reproducible alone and batched — each with
//! steps run one after the other (the CPU's default) and overlapped (a GPU's: step N+1 built from
//! step N's tokens still on the device).

mod common;

use std::time::{Duration, Instant};

use zeta_engine::{Engine, EngineOptions, Event, GenerateRequest, Generation, ModelSource, Prompt, SamplingParams};

fn engine(path: std::path::PathBuf) -> Engine {
    Engine::load(ModelSource::detect(&path).unwrap(), EngineOptions::default(), |_, _| {}).unwrap()
}

/// Both scheduling modes, named for assertion messages.
fn modes(path: &std::path::Path) -> Vec<(&'static str, Engine)> {
    [("sequential", false), ("overlapped", true)]
        .into_iter()
        .map(|(name, overlap)| {
            let opts = EngineOptions { overlap: Some(overlap), ..Default::default() };
            (name, Engine::load(ModelSource::detect(path).unwrap(), opts, |_, _| {}).unwrap())
        })
        .collect()
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
            Event::Started { .. } | Event::Embedding(_) => {}
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
    for model in ["llama-f32", "qwen2-q4", "qwen3-q4"] {
        for (mode, e) in modes(&common::tiny(model)) {
            let name = format!("{model} {mode}");
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
}

#[test]
fn seeded_sampling_is_reproducible_alone_and_batched() {
    for (mode, e) in modes(&common::tiny("llama-q4")) {
        let seeded = |seed| SamplingParams { temperature: 0.9, top_p: 0.95, seed: Some(seed), ..Default::default() };
        let p = vec![5, 17, 42, 99, 3];
        let alone = collect(&mut e.submit(request(p.clone(), seeded(1234), 24)).unwrap(), None);
        let again = collect(&mut e.submit(request(p.clone(), seeded(1234), 24)).unwrap(), None);
        assert_eq!(alone, again, "{mode}: same seed, same request");
        let mut gens = [
            e.submit(request(vec![250, 7, 77], seeded(1), 24)).unwrap(),
            e.submit(request(p.clone(), seeded(1234), 24)).unwrap(),
            e.submit(request(vec![1, 2, 3], SamplingParams::default(), 24)).unwrap(),
        ];
        let out: Vec<_> = gens.iter_mut().map(|g| collect(g, None)).collect();
        assert_eq!(out[1], alone, "{mode}: same seed inside a batch");
        let other = collect(&mut e.submit(request(p, seeded(99), 24)).unwrap(), None);
        assert_ne!(other, alone, "{mode}: another seed samples differently");
    }
}

/// A sequence whose grammar can go no further mid-answer ends alone with its own bad-argument
/// error; the sequences sharing its steps finish as they would have alone.
#[test]
fn a_failing_grammar_ends_its_sequence_alone() {
    for (mode, e) in modes(&common::tiny("llama-f32")) {
        let greedy = SamplingParams::greedy();
        let ps = prompts();
        let alone: Vec<_> = ps[..2]
            .iter()
            .map(|p| collect(&mut e.submit(request(p.clone(), greedy.clone(), 24)).unwrap(), None))
            .collect();
        let mut gens: Vec<_> =
            ps[..2].iter().map(|p| e.submit(request(p.clone(), greedy.clone(), 24)).unwrap()).collect();
        // "a", then a rule that only leads back to itself: no mask after the first token.
        let mut bad = request(ps[2].clone(), greedy.clone(), 24);
        bad.constraint = Some(zeta_engine::constraint::Constraint::Lark("start: \"a\" x\nx: x \"b\"".into()));
        let mut bad = e.submit(bad).expect("its first token can be chosen");
        let err = loop {
            match bad.blocking_next().expect("an event") {
                Event::Error(err) => break err,
                Event::Finished { .. } => panic!("{mode}: the grammar cannot finish"),
                _ => {}
            }
        };
        assert!(
            matches!(&err, zeta_engine::EngineError::InvalidArgument { field, .. } if field == "constraint.grammar"),
            "{mode}: {err}"
        );
        let together: Vec<_> = gens.iter_mut().map(|g| collect(g, None)).collect();
        assert_eq!(together, alone, "{mode}: the others finish unchanged");
    }
}

/// On SmolLM2, where a step takes long enough to observe: drop one of three running streams
/// and see the batch shrink no later than one step after, with the other two unchanged.
#[test]
fn cancelled_sequence_leaves_within_one_step() {
    for (mode, e) in modes(&common::smol_gguf()) {
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
            assert!(Instant::now() < deadline, "{mode}: the cancelled sequence never left");
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = e.stats().steps;
        assert!(after <= before + 1, "{mode}: left after {} steps", after - before);
        let rest: Vec<_> = gens
            .iter_mut()
            .zip([&heads[0], &heads[2]])
            .map(|(g, h)| {
                let mut t = h.clone();
                t.extend(collect(g, None));
                t
            })
            .collect();
        assert_eq!(rest, alone, "{mode}: the other sequences finish unchanged");
    }
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
                Event::Embedding(_) => panic!("a generation yields no embedding"),
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

/// Sliding-window models (Gemma 3, gpt-oss) keep only the recent window of their sliding layers,
/// so a cached conversation is reused when a request continues it (its prefix ends within the
/// window of the cached end, as the next turn of a chat does), and the answer is exactly the
/// uncached one; a prefix that ends earlier, where the window is gone, is recomputed.
#[test]
fn sliding_window_models_reuse_a_continued_conversation() {
    for model in ["gemma3-q4", "gpt_oss-q4"] {
        let cached = engine(common::tiny(model));
        let opts = EngineOptions { prefix_cache_bytes: 0, ..Default::default() };
        let uncached = Engine::load(ModelSource::detect(&common::tiny(model)).unwrap(), opts, |_, _| {}).unwrap();
        let first: Vec<u32> = (1..40).collect();
        let (answer, none, _) = run_full(&cached, first.clone(), Some(12));
        assert_eq!(none, 0);
        let next = [first.clone(), answer.clone(), vec![7, 8, 9]].concat();
        let (with_cache, reused, _) = run_full(&cached, next.clone(), Some(12));
        assert!(reused + 1 >= first.len() + answer.len(), "{model}: reused {reused} of the conversation");
        assert_eq!(with_cache, run_full(&uncached, next, Some(12)).0, "{model}: the cache changes nothing");
        // Sharing only the first prompt: its window is no longer held.
        let other = [first.clone(), vec![300, 301]].concat();
        let (tokens, reused, _) = run_full(&cached, other.clone(), Some(12));
        assert!(reused < first.len() - 1, "{model}: a prefix without its window is recomputed ({reused})");
        assert_eq!(tokens, run_full(&uncached, other, Some(12)).0, "{model}: and gives the same answer");
    }
}

/// Runs a request to its end: (tokens, cached prompt tokens, finish reason).
fn run_full(e: &Engine, prompt: Vec<u32>, max_tokens: Option<usize>) -> (Vec<u32>, usize, zeta_engine::FinishReason) {
    let mut r = GenerateRequest::new(Prompt::Tokens(prompt));
    r.sampling = SamplingParams::greedy();
    r.max_tokens = max_tokens;
    finish(&mut e.submit(r).unwrap())
}

fn finish(g: &mut Generation) -> (Vec<u32>, usize, zeta_engine::FinishReason) {
    let mut tokens = vec![];
    loop {
        match g.blocking_next().expect("stream ends with Finished") {
            Event::Started { .. } | Event::Embedding(_) => {}
            Event::Delta { tokens: t, .. } => tokens.extend(t),
            Event::Finished { usage, reason, .. } => return (tokens, usage.cached_tokens, reason),
            Event::Error(e) => panic!("{e}"),
        }
    }
}

/// Two requests sent together with a long common prefix: the second computes only what differs
/// (it shares the first one's KV slots while both run), and both give exactly the tokens they
/// give alone. The prefix cache is off, so the sharing can only come from the running request.
#[test]
fn requests_in_flight_share_a_prefix() {
    let opts = || EngineOptions { prefix_cache_bytes: 0, ..Default::default() };
    let e = Engine::load(ModelSource::detect(&common::tiny("qwen3-q4")).unwrap(), opts(), |_, _| {}).unwrap();
    let shared: Vec<u32> = (10..50).collect();
    let with = |tail: &[u32]| [shared.as_slice(), tail].concat();
    let (a, b) = (with(&[300, 301, 302]), with(&[400, 401]));
    let alone_a = run_full(&e, a.clone(), Some(16));
    let alone_b = run_full(&e, b.clone(), Some(16));
    assert_eq!((alone_a.1, alone_b.1), (0, 0), "nothing is cached between requests");
    let submit = |p: Vec<u32>| {
        let mut r = GenerateRequest::new(Prompt::Tokens(p));
        r.sampling = SamplingParams::greedy();
        r.max_tokens = Some(16);
        e.submit(r).unwrap()
    };
    let (mut ga, mut gb) = (submit(a), submit(b));
    let (ta, tb) = (finish(&mut ga), finish(&mut gb));
    assert_eq!(tb.1, shared.len(), "the second request took the shared prefix from the first");
    assert_eq!((ta.0, tb.0), (alone_a.0, alone_b.0), "sharing changes nothing but the work");
}

/// The prefix cache holds what its byte bound allows, least recently used out first.
#[test]
fn prefix_cache_is_bounded_in_bytes() {
    let path = common::tiny("llama-q4");
    let per_token = engine(path.clone()).info().kv_bytes_per_token;
    // Room for two of the 40-token sequences below (prompt plus output), not three.
    let opts = EngineOptions { prefix_cache_bytes: 100 * per_token, ..Default::default() };
    let e = Engine::load(ModelSource::detect(&path).unwrap(), opts, |_, _| {}).unwrap();
    let prompt = |i: u32| -> Vec<u32> { (0..36).map(|t| 20 + i * 40 + t).collect() };
    for i in 0..4 {
        assert_eq!(run_full(&e, prompt(i), Some(4)).1, 0);
    }
    assert_eq!(run_full(&e, prompt(0), Some(4)).1, 0, "the oldest sequence was evicted");
    let (_, cached, _) = run_full(&e, prompt(3), Some(4));
    assert_eq!(cached, 35, "the newest one is still there (all but the last prompt token)");
}

/// With a KV cache limit, a request that can never fit is refused up front with a clear error,
/// one without max_tokens stops where the cache ends, and the engine keeps serving.
#[test]
fn kv_cache_limit_gives_clear_errors() {
    let path = common::tiny("llama-q4");
    let per_token = engine(path.clone()).info().kv_bytes_per_token;
    let opts = EngineOptions { kv_cache_limit: Some(300 * per_token), ..Default::default() };
    let e = Engine::load(ModelSource::detect(&path).unwrap(), opts, |_, _| {}).unwrap();
    let long: Vec<u32> = (0..320).map(|t| 5 + t % 400).collect();
    let mut r = GenerateRequest::new(Prompt::Tokens(long));
    r.max_tokens = Some(4);
    let err = e.submit(r).err().expect("refused").to_string();
    assert!(err.contains("KV cache is full") && err.contains("324"), "{err}");
    // No max_tokens: generation ends at the cache's end, with `length`.
    let eos = e.info().eos_token_ids.clone();
    let mut r = GenerateRequest::new(Prompt::Tokens((0..250).map(|t| 5 + t).collect()));
    r.sampling = SamplingParams {
        temperature: 0.0,
        logit_bias: eos.iter().map(|&t| (t, -100.0)).collect(),
        ..Default::default()
    };
    let (tokens, _, reason) = finish(&mut e.submit(r).unwrap());
    assert_eq!(reason, zeta_engine::FinishReason::Length);
    assert_eq!(250 + tokens.len(), 299, "prompt plus output fill the 299 usable slots");
    assert!(!run_full(&e, vec![1, 2, 3], Some(3)).0.is_empty(), "still serving");
}
