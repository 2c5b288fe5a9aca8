//! What happens when a sequence's next token comes back from the device: statistics, detokenizing,
//! stop strings, end of sequence (or of the grammar it follows) and length limits, and the events on the sequence's channel.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Seq;
use super::Shared;
use crate::error::Result;
use crate::request::{Event, FinishReason, Timings, TokenLogprob, TopLogprob, Usage};
use crate::sampling::Sampled;
use crate::stop::StopResult;

/// Sends `Started` once, when the sequence first runs (its cached tokens are known by then).
pub(super) fn announce(seq: &mut Seq, shared: &Shared) {
    if seq.announced {
        return;
    }
    seq.announced = true;
    seq.cached_tokens = seq.prefilled;
    let stats = &shared.stats;
    stats.cached_tokens.fetch_add(seq.cached_tokens as u64, Ordering::Relaxed);
    let _ = seq.tx.send(Event::Started { prompt_tokens: seq.prompt.len(), cached_tokens: seq.cached_tokens });
    tracing::debug!(request_id = %seq.request_id, prompt_tokens = seq.prompt.len(), cached_tokens = seq.cached_tokens, "running");
}

/// Handles one sampled token; marks the sequence done when it finishes or its client is gone.
pub(super) fn on_token(seq: &mut Seq, s: Sampled, now: Instant, shared: &Shared) -> Result<()> {
    let token = s.token;
    seq.sampler.observe(token)?;
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
    let starts_at = seq.decoded;
    let mut text = if is_eos { String::new() } else { seq.decoder.push(tok, token)? };
    seq.decoded += text.len();
    if let Some(logprob) = s.logprob {
        let top = |id: u32, logprob: f32| {
            let (text, bytes) = tok.piece(id);
            TopLogprob { token: id, text, bytes, logprob }
        };
        let own = top(token, logprob);
        seq.held.push_back((
            starts_at,
            TokenLogprob {
                token,
                text: own.text,
                bytes: own.bytes,
                logprob,
                top: s.top.iter().map(|&(id, lp)| top(id, lp)).collect(),
            },
        ));
    }
    let context_full = seq.prompt.len() + seq.generated.len() >= shared.info.context_length;
    let mut finish = None;
    // The stop string that cut the text, if one did: the tokens after the cut are not part of
    // the answer.
    let mut cut = None;
    match seq.stop.push(&text) {
        StopResult::Stop { text: out, stop } => {
            text = out;
            finish = Some(FinishReason::Stop);
            cut = Some(stop);
        }
        StopResult::Continue(out) => {
            text = out;
            if is_eos || seq.sampler.grammar_finished() {
                finish = Some(FinishReason::Stop);
            } else if seq.generated.len() >= seq.max_tokens || context_full {
                finish = Some(FinishReason::Length);
            }
            if finish.is_some() {
                // Release what the decoder and the stop matcher held back.
                let tail = seq.decoder.flush(tok)?;
                seq.decoded += tail.len();
                match seq.stop.push(&tail) {
                    StopResult::Stop { text: out, stop } => {
                        text.push_str(&out);
                        finish = Some(FinishReason::Stop);
                        cut = Some(stop);
                    }
                    StopResult::Continue(out) => {
                        text.push_str(&out);
                        text.push_str(&seq.stop.flush());
                    }
                }
            }
        }
    }
    seq.sent += text.len();
    let logprobs = release(seq, finish.is_some(), cut.is_some());
    let sent = seq.tx.send(Event::Delta { text, tokens: vec![token], logprobs }).is_ok();
    if let Some(reason) = finish {
        // Counted out before the client hears it is finished, so that a status read after the
        // response never still counts it (the loop stores the exact count after each step).
        let _ = stats.active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let first = seq.first_token.unwrap_or(now);
        let _ = seq.tx.send(Event::Finished {
            reason,
            stop: cut,
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

/// The held log-probabilities whose tokens' text has now been sent (each token's text starts
/// before the end of what was sent); at the end, all of them, except past a stop string's cut.
fn release(seq: &mut Seq, finished: bool, cut: bool) -> Vec<TokenLogprob> {
    let mut out = Vec::new();
    while let Some((starts_at, _)) = seq.held.front() {
        if *starts_at < seq.sent || (finished && !cut) {
            out.extend(seq.held.pop_front().map(|(_, l)| l));
        } else {
            break;
        }
    }
    if finished {
        seq.held.clear();
    }
    out
}

/// Hands an embedding request its pooled vector (normalised as the model says) and finishes it.
pub(super) fn on_embedding(seq: &mut Seq, mut vector: Vec<f32>, now: Instant, shared: &Shared) {
    if shared.info.embedding.is_some_and(|e| e.normalize) {
        crate::embedding::normalize(&mut vector);
    }
    let _ = seq.tx.send(Event::Embedding(vector));
    let _ = seq.tx.send(Event::Finished {
        reason: FinishReason::Stop,
        stop: None,
        usage: Usage { prompt_tokens: seq.prompt.len(), completion_tokens: 0, cached_tokens: seq.cached_tokens },
        timings: Timings {
            queued: seq.admitted - seq.submitted,
            prefill: now - seq.admitted,
            decode: Default::default(),
        },
    });
    seq.done = true;
}
