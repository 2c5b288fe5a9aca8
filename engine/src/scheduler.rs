//! The engine thread: continuous batching over one model.
//!
//! Each iteration admits waiting requests into the running batch (up to `max_batch`), drops
//! sequences whose receiver is gone, and runs *one* forward pass holding the next token of every
//! decoding sequence plus a prefill chunk of the sequences still reading their prompt. The chunk
//! is sized from the measured cost of a row so that a long prompt never stalls running streams
//! for much longer than `step_target`. Sampling, detokenizing and stop strings follow per sequence,
//! and events go out on each sequence's channel.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mlx::{ArrayList, ops};
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::Shared;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::model::{Model, Segment};
use crate::prefix_cache::PrefixCache;
use crate::request::{Event, FinishReason, Timings, TokenLogprob, Usage};
use crate::sampling::{Sampler, SamplingParams};
use crate::stop::{StopMatcher, StopResult};
use crate::tokenizer::StreamDecoder;

/// A validated, tokenized request on its way to the engine thread.
pub(crate) struct Pending {
    pub request_id: String,
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub keep_special_tokens: bool,
    pub tx: UnboundedSender<Event>,
    pub submitted: Instant,
}

pub(crate) enum Command {
    Submit(Box<Pending>),
    Shutdown,
}

struct Seq {
    request_id: String,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    cache: KvCache,
    sampler: Sampler,
    decoder: StreamDecoder,
    stop: StopMatcher,
    generated: Vec<u32>,
    max_tokens: usize,
    tx: UnboundedSender<Event>,
    cached_tokens: usize,
    submitted: Instant,
    admitted: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// This step's input.
    step_tokens: Vec<u32>,
    step_logits: bool,
    done: bool,
}

impl Seq {
    fn decoding(&self) -> bool {
        self.prefilled == self.prompt.len()
    }
}

/// Rows per step never go below this, so a prompt always advances.
const MIN_CHUNK: usize = 8;

pub(crate) fn run(model: Model, shared: Arc<Shared>, rx: Receiver<Command>) {
    let mut waiting: VecDeque<Box<Pending>> = VecDeque::new();
    let mut running: Vec<Seq> = Vec::new();
    let mut prefix = PrefixCache::new(shared.options.prefix_cache_entries);
    // Seconds per row of a forward pass, measured.
    let mut row_cost: Option<f64> = None;
    let stats = &shared.stats;
    loop {
        let mut shutdown = false;
        if waiting.is_empty() && running.is_empty() {
            match rx.recv() {
                Ok(Command::Submit(p)) => waiting.push_back(p),
                Ok(Command::Shutdown) | Err(_) => shutdown = true,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(Command::Submit(p)) => waiting.push_back(p),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => shutdown = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        if shutdown {
            let err = || Event::Error(EngineError::ShuttingDown { model: shared.info.name.clone() });
            for p in waiting.drain(..) {
                let _ = p.tx.send(err());
            }
            for s in running.drain(..) {
                let _ = s.tx.send(err());
            }
            stats.queued.store(0, Ordering::Relaxed);
            stats.active.store(0, Ordering::Relaxed);
            break;
        }

        // Requests whose client went away leave now, queued or running.
        let before = waiting.len();
        waiting.retain(|p| !p.tx.is_closed());
        stats.queued.fetch_sub(before - waiting.len(), Ordering::Relaxed);
        for s in running.iter_mut().filter(|s| s.tx.is_closed()) {
            tracing::debug!(request_id = %s.request_id, "cancelled by the client");
            s.done = true;
        }
        retire(&mut running, &mut prefix);

        while running.len() < shared.options.max_batch {
            let Some(p) = waiting.pop_front() else { break };
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            running.push(admit(*p, &model, &mut prefix, &shared));
        }
        stats.active.store(running.len(), Ordering::Relaxed);
        if running.is_empty() {
            continue;
        }

        let t0 = Instant::now();
        let rows = plan(&mut running, row_cost, &shared);
        match step(&model, &mut running, &shared) {
            Ok(()) => {
                let cost = t0.elapsed().as_secs_f64() / rows as f64;
                row_cost = Some(row_cost.map_or(cost, |c| 0.7 * c + 0.3 * cost));
            }
            Err(e) => {
                tracing::error!(error = %e, "forward pass failed; failing the sequences in it");
                for s in running.iter_mut().filter(|s| !s.step_tokens.is_empty()) {
                    let _ = s.tx.send(Event::Error(e.clone()));
                    s.done = true;
                }
            }
        }
        stats.steps.fetch_add(1, Ordering::Relaxed);
        retire(&mut running, &mut prefix);
        stats.active.store(running.len(), Ordering::Relaxed);
        let kv: usize = running.iter().map(|s| s.cache.reserved_bytes()).sum::<usize>() + prefix.reserved_bytes();
        stats.kv_bytes.store(kv, Ordering::Relaxed);
    }
    prefix.clear();
    tracing::info!(model = %shared.info.name, "engine stopped");
}

fn admit(p: Pending, model: &Model, prefix: &mut PrefixCache, shared: &Shared) -> Seq {
    let cache = prefix.lookup(&p.prompt).unwrap_or_else(|| model.new_cache());
    let cached_tokens = cache.len();
    let stats = &shared.stats;
    stats.cached_tokens.fetch_add(cached_tokens as u64, Ordering::Relaxed);
    stats.prompt_tokens.fetch_add((p.prompt.len() - cached_tokens) as u64, Ordering::Relaxed);
    let _ = p.tx.send(Event::Started { prompt_tokens: p.prompt.len(), cached_tokens });
    tracing::debug!(request_id = %p.request_id, prompt_tokens = p.prompt.len(), cached_tokens, "admitted");
    Seq {
        request_id: p.request_id,
        sampler: Sampler::new(p.sampling, &p.prompt),
        prefilled: cached_tokens,
        prompt: p.prompt,
        cache,
        decoder: StreamDecoder::new().keep_special(p.keep_special_tokens),
        stop: StopMatcher::new(p.stop),
        generated: Vec::new(),
        max_tokens: p.max_tokens,
        tx: p.tx,
        cached_tokens,
        submitted: p.submitted,
        admitted: Instant::now(),
        first_token: None,
        last_token: None,
        step_tokens: Vec::new(),
        step_logits: false,
        done: false,
    }
}

/// Chooses each sequence's input for this step; returns the number of rows.
fn plan(running: &mut [Seq], row_cost: Option<f64>, shared: &Shared) -> usize {
    let decoders = running.iter().filter(|s| s.decoding()).count();
    let max_chunk = shared.options.prefill_chunk.max(MIN_CHUNK);
    let mut budget = match row_cost {
        // Keep a step near the target while others wait for their next token.
        Some(cost) if decoders > 0 => {
            let rows = shared.options.step_target.as_secs_f64() / cost.max(1e-6);
            (rows as usize).saturating_sub(decoders).clamp(MIN_CHUNK, max_chunk)
        }
        _ => max_chunk,
    };
    let mut rows = 0;
    for s in running.iter_mut() {
        s.step_tokens.clear();
        s.step_logits = false;
        if s.decoding() {
            let last = *s.generated.last().expect("a decoding sequence has sampled a token");
            s.step_tokens.push(last);
            s.step_logits = true;
        } else if budget > 0 {
            let n = (s.prompt.len() - s.prefilled).min(budget);
            s.step_tokens.extend_from_slice(&s.prompt[s.prefilled..s.prefilled + n]);
            s.step_logits = s.prefilled + n == s.prompt.len();
            budget -= n;
        }
        rows += s.step_tokens.len();
    }
    rows
}

fn step(model: &Model, running: &mut [Seq], shared: &Shared) -> Result<()> {
    let mut segments: Vec<Segment<'_>> = running
        .iter_mut()
        .filter(|s| !s.step_tokens.is_empty())
        .map(|s| Segment { cache: &mut s.cache, tokens: &s.step_tokens, logits: s.step_logits })
        .collect();
    let logits = model.forward(&mut segments)?;
    // Chunks that produce no logits still have to be computed into their caches.
    let mut pending = ArrayList::new();
    for seg in segments.iter().filter(|s| !s.logits) {
        for a in seg.cache.arrays() {
            pending.push(a);
        }
    }
    drop(segments);
    let sampling: Vec<usize> = (0..running.len()).filter(|&i| running[i].step_logits).collect();
    let Some(logits) = logits else {
        pending.eval()?;
        advance_prefill(running);
        return Ok(());
    };
    pending.push(&logits);
    let greedy = sampling.iter().all(|&i| running[i].sampler.params().is_plain_greedy());
    let chosen: Vec<(u32, Option<crate::sampling::Sampled>)> = if greedy {
        let ids = ops::argmax(&logits, -1, false)?;
        pending.push(&ids);
        pending.eval()?;
        ids.to_u32()?.into_iter().map(|t| (t, None)).collect()
    } else {
        pending.eval()?;
        let vocab = logits.dim(-1) as usize;
        let mut all = logits.to_f32()?;
        sampling
            .iter()
            .zip(all.chunks_mut(vocab))
            .map(|(&i, row)| {
                let s = running[i].sampler.sample(row);
                (s.token, Some(s))
            })
            .collect()
    };
    advance_prefill(running);
    let now = Instant::now();
    for (&i, (token, sampled)) in sampling.iter().zip(chosen) {
        let seq = &mut running[i];
        if sampled.is_none() {
            seq.sampler.observe(token);
        }
        on_token(seq, token, sampled, now, shared)?;
    }
    Ok(())
}

fn advance_prefill(running: &mut [Seq]) {
    for s in running.iter_mut() {
        if !s.decoding() {
            s.prefilled += s.step_tokens.len();
        }
    }
}

fn on_token(
    seq: &mut Seq,
    token: u32,
    sampled: Option<crate::sampling::Sampled>,
    now: Instant,
    shared: &Shared,
) -> Result<()> {
    let stats = &shared.stats;
    stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
    match seq.last_token {
        None => {
            seq.first_token = Some(now);
            stats.ttft.observe(now - seq.submitted);
        }
        Some(prev) => stats.inter_token.observe(now - prev),
    }
    seq.last_token = Some(now);
    seq.generated.push(token);
    let tok = &shared.tokenizer;
    let is_eos = shared.eos_token_ids.contains(&token);
    let mut text = if is_eos { String::new() } else { seq.decoder.push(tok, token)? };
    let logprobs = match sampled {
        Some(s) if s.logprob.is_some() => {
            let piece = |id: u32| tok.decode_with_special(&[id]).unwrap_or_default();
            vec![TokenLogprob {
                token,
                text: piece(token),
                logprob: s.logprob.unwrap_or(0.0),
                top: s.top.iter().map(|&(id, lp)| (id, piece(id), lp)).collect(),
            }]
        }
        _ => vec![],
    };
    let context_full = seq.cache.len() + 1 >= shared.info.context_length;
    let mut finish = None;
    match seq.stop.push(&text) {
        StopResult::Stop(out) => {
            text = out;
            finish = Some(FinishReason::Stop);
        }
        StopResult::Continue(out) => {
            text = out;
            if is_eos {
                finish = Some(FinishReason::Stop);
            } else if seq.generated.len() >= seq.max_tokens || context_full {
                finish = Some(FinishReason::Length);
            }
            if finish.is_some() {
                // Release what the decoder and the stop matcher held back.
                let tail = seq.decoder.flush(tok)?;
                match seq.stop.push(&tail) {
                    StopResult::Stop(out) => {
                        text.push_str(&out);
                        finish = Some(FinishReason::Stop);
                    }
                    StopResult::Continue(out) => {
                        text.push_str(&out);
                        text.push_str(&seq.stop.flush());
                    }
                }
            }
        }
    }
    let sent = seq.tx.send(Event::Delta { text, tokens: vec![token], logprobs }).is_ok();
    if let Some(reason) = finish {
        let first = seq.first_token.unwrap_or(now);
        let _ = seq.tx.send(Event::Finished {
            reason,
            usage: Usage {
                prompt_tokens: seq.prompt.len(),
                completion_tokens: seq.generated.len(),
                cached_tokens: seq.cached_tokens,
            },
            timings: Timings {
                queued: seq.admitted - seq.submitted,
                prefill: first - seq.admitted,
                decode: now - first,
            },
        });
        seq.done = true;
    } else if !sent {
        seq.done = true;
    }
    Ok(())
}

/// Removes finished and cancelled sequences, keeping their caches for prefix reuse.
/// Admission order is kept: earlier sequences get the prefill budget first.
fn retire(running: &mut Vec<Seq>, prefix: &mut PrefixCache) {
    if running.iter().all(|s| !s.done) {
        return;
    }
    let mut kept = Vec::with_capacity(running.len());
    for s in running.drain(..) {
        if s.done {
            let fed = s.cache.len();
            let mut tokens = s.prompt;
            tokens.extend_from_slice(&s.generated);
            tokens.truncate(fed);
            prefix.insert(tokens, s.cache);
        } else {
            kept.push(s);
        }
    }
    *running = kept;
}

/// How long a step may take while sequences are decoding, by default.
pub(crate) const DEFAULT_STEP_TARGET: Duration = Duration::from_millis(500);
