//! Choosing a step's work: the next token of every decoding sequence, and prompt chunks within a
//! row budget, after letting each prefilling sequence take over the longest prefix another one
//! already wrote (a finished one in the prefix cache, or one running now); then finding KV slots
//! for all of it.

use std::sync::atomic::Ordering;

use super::Shared;
use super::{Seq, emit};
use crate::error::Result;
use crate::kv_cache::KvPool;
use crate::model::TokenSource;
use crate::prefix_cache::{PrefixCache, common_prefix, local_for};

/// Rows per step never go below this, so a prompt always advances.
const MIN_CHUNK: usize = 8;

/// A chunk of one sequence's prompt.
pub(super) struct Chunk {
    pub seq: usize,
    pub start: usize,
    pub len: usize,
    pub logits: bool,
}

/// One step's work, by index into the running sequences.
#[derive(Default)]
pub(super) struct Plan {
    pub decode: Vec<(usize, TokenSource)>,
    pub prefill: Vec<Chunk>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.decode.is_empty() && self.prefill.is_empty()
    }

    /// Tokens the step runs.
    pub fn tokens(&self) -> usize {
        self.decode.len() + self.prefill.iter().map(|c| c.len).sum::<usize>()
    }
}

/// What the scheduler does next.
pub(super) enum Next {
    Run(Plan),
    /// A sequence needs the token of the step in flight on the host before it can go on.
    Resolve,
}

/// The decode rows: every sequence past its prompt with a token to feed and room to generate.
/// A token sampled by the step in flight is fed from the device.
fn decode_rows(running: &[Seq], shared: &Shared) -> Option<Vec<(usize, TokenSource)>> {
    // An embedding model's sequences end with their prompt: nothing decodes.
    if shared.info.embedding.is_some() {
        return Some(vec![]);
    }
    let context = shared.info.context_length;
    let mut rows = Vec::new();
    for (i, s) in running.iter().enumerate() {
        if s.done || !s.decoding() {
            continue;
        }
        let produced = s.generated.len() + s.pending.is_some() as usize;
        if produced >= s.max_tokens || s.slots.len() >= context {
            continue; // finishes when its last token is read
        }
        let fed = s.slots.len() - s.prompt.len();
        let token = match s.pending {
            Some(_) if s.sampler.needs_history() => return None,
            Some(row) => TokenSource::Device(row),
            None if fed < s.generated.len() => TokenSource::Host(s.generated[fed]),
            None => continue,
        };
        rows.push((i, token));
    }
    Some(rows)
}

/// Plans the next step and allocates its slots.
pub(super) fn plan(
    running: &mut [Seq],
    pool: &mut KvPool,
    prefix: &mut PrefixCache,
    row_cost: Option<f64>,
    shared: &Shared,
) -> Result<Next> {
    let Some(decode) = decode_rows(running, shared) else { return Ok(Next::Resolve) };
    let max_chunk = shared.options.prefill_chunk.max(MIN_CHUNK);
    let mut budget = match row_cost {
        // Keep a step near the target while others wait for their next token.
        Some(cost) if !decode.is_empty() => {
            let rows = shared.options.step_target.as_secs_f64() / cost.max(1e-6);
            (rows as usize).saturating_sub(decode.len()).clamp(MIN_CHUNK, max_chunk)
        }
        _ => max_chunk,
    };
    let mut prefill: Vec<Chunk> = Vec::new();
    for i in 0..running.len() {
        if running[i].done || running[i].decoding() || budget == 0 {
            continue;
        }
        adopt_prefix(i, running, pool, prefix, shared);
        let s = &running[i];
        // A sequence whose next tokens another one is writing in this very step waits a step
        // and then shares them instead of computing them twice.
        let limit = s.prompt.len() - 1;
        let writer_ahead = prefill.iter().any(|c| {
            let other = &running[c.seq].prompt[..c.start + c.len];
            common_prefix(other, &s.prompt).min(limit) > s.prefilled
        });
        if writer_ahead {
            continue;
        }
        let len = (s.prompt.len() - s.prefilled).min(budget);
        budget -= len;
        prefill.push(Chunk { seq: i, start: s.prefilled, len, logits: s.prefilled + len == s.prompt.len() });
    }
    let mut plan = Plan { decode, prefill };
    // Sliding-window slots older than the pool keeps are given back before new ones are taken.
    for s in running.iter_mut() {
        pool.trim_local(&mut s.local);
    }
    make_room(&mut plan, running, pool, prefix)?;
    let alloc = |pool: &mut KvPool, s: &mut Seq, n: usize| {
        assert!(pool.extend(&mut s.slots, &mut s.local, n), "make_room freed a slot per row");
    };
    for &(i, _) in &plan.decode {
        alloc(pool, &mut running[i], 1);
    }
    let stats = &shared.stats;
    for c in &plan.prefill {
        let s = &mut running[c.seq];
        emit::announce(s, shared);
        alloc(pool, s, c.len);
        s.prefilled += c.len;
        stats.prompt_tokens.fetch_add(c.len as u64, Ordering::Relaxed);
    }
    Ok(Next::Run(plan))
}

/// Lets sequence `i` hold the longest prefix of its prompt that is already in the pool, from the
/// prefix cache or another running sequence, when that is more than it has written itself.
fn adopt_prefix(i: usize, running: &mut [Seq], pool: &mut KvPool, prefix: &mut PrefixCache, shared: &Shared) {
    let s = &running[i];
    let limit = s.prompt.len() - 1;
    // With a split pool a prefix is usable only while its sliding window is still held.
    let window = pool.window();
    let mut best: Option<(usize, Vec<u32>, Vec<u32>)> =
        prefix.lookup(&s.prompt, limit, window).map(|(n, slots, local)| (n, slots.to_vec(), local.to_vec()));
    for (j, o) in running.iter().enumerate() {
        if j == i || o.done {
            continue;
        }
        let n = common_prefix(&o.prompt[..o.prefilled], &s.prompt).min(limit);
        let local = match window {
            Some(w) => local_for(&o.local, o.slots.len(), n, w),
            None => Some(&[][..]),
        };
        if let Some(local) = local
            && n > best.as_ref().map_or(0, |b| b.0)
        {
            best = Some((n, o.slots[..n].to_vec(), local.to_vec()));
        }
    }
    let Some((n, slots, local)) = best else { return };
    let s = &mut running[i];
    if n <= s.prefilled {
        return;
    }
    pool.retain_with_local(&slots, &local);
    pool.release_with_local(&s.slots, &s.local);
    s.local = local;
    if s.announced {
        shared.stats.cached_tokens.fetch_add((n - s.prefilled) as u64, Ordering::Relaxed);
        s.cached_tokens += n - s.prefilled;
    }
    s.slots = slots;
    s.prefilled = n;
}

/// Frees or grows the pool until the plan's slots fit: prefix-cache entries go first, then the
/// pool grows (within its limit); past that, prompt chunks wait and, last, decoding sequences
/// fail with [`crate::EngineError::KvCacheFull`].
fn make_room(plan: &mut Plan, running: &mut [Seq], pool: &mut KvPool, prefix: &mut PrefixCache) -> Result<()> {
    loop {
        let need = plan.tokens();
        while pool.free_slots_all() < need && prefix.evict_one(pool) {}
        let err = match pool.grow_all(need) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some(c) = plan.prefill.pop() {
            if plan.is_empty() {
                // Even alone this chunk does not fit: nothing that finishes will make room.
                let s = &mut running[c.seq];
                let _ = s.tx.send(crate::request::Event::Error(err));
                s.done = true;
                return Ok(());
            }
            continue;
        }
        let Some((i, _)) = plan.decode.pop() else { return Err(err) };
        let s = &mut running[i];
        tracing::warn!(request_id = %s.request_id, error = %err, "no KV room to go on");
        let _ = s.tx.send(crate::request::Event::Error(err));
        s.done = true;
        if plan.is_empty() {
            return Ok(());
        }
    }
}
