//! The engine thread: continuous batching over one model.
//!
//! Each iteration takes in new requests, drops sequences whose client is gone, plans one step
//! (`plan.rs`: every decoding sequence's next token plus prompt chunks within a time budget),
//! runs it as one batched graph with sampling on the device, and reads back only the chosen
//! tokens (`emit.rs` turns them into events). With overlap on, step N+1 is built and started from
//! step N's tokens still on the device before step N is read, so the host's work hides behind the
//! device's.
//!
//! Overlap is on by default on a GPU and off on the CPU. MLX keeps the buffers an op reads alive
//! until that op has run and copies a buffer it cannot donate, so a step encoded while the last
//! one still runs rewrites the whole KV pool instead of one row per token: cheap on a GPU's
//! bandwidth, where the host's per-step work dominates, and a loss on a CPU, where the host's
//! share of a step is small.

mod emit;
mod plan;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use mlx::ArrayList;
use tokio::sync::mpsc::UnboundedSender;

use crate::chat_template::ChatTemplate;
use crate::constraint::{Grammars, Guide};
use crate::error::{EngineError, Result};
use crate::kv_cache::KvPool;
use crate::metrics::Stats;
use crate::model::{DecodeRow, Model, PrefillRow, Shapes, StepInput, TokenSource};
use crate::options::{EngineOptions, ModelInfo};
use crate::prefix_cache::PrefixCache;
use crate::request::Event;
use crate::sampling::{self, Choice, Sampler, SamplingParams};
use crate::stop::StopMatcher;
use crate::tokenizer::StreamDecoder;
use crate::tokenizer::Tokenizer;
use plan::{Next, Plan};

/// What the engine handle and its thread both read: the model's tokenizer, template and facts,
/// the options, the live figures.
pub(crate) struct Shared {
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub eos_token_ids: Vec<u32>,
    pub info: ModelInfo,
    pub options: EngineOptions,
    pub stats: Stats,
    pub grammars: Grammars,
}

/// A validated, tokenized request on its way to the engine thread.
pub(crate) struct Pending {
    pub request_id: String,
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub keep_special_tokens: bool,
    pub guide: Option<Guide>,
    pub tx: UnboundedSender<Event>,
    pub submitted: Instant,
}

pub(crate) enum Command {
    Submit(Box<Pending>),
    Shutdown,
}

/// A running sequence.
struct Seq {
    id: u64,
    request_id: String,
    prompt: Vec<u32>,
    /// Prompt tokens whose keys and values are written (or being written by a step started).
    prefilled: usize,
    /// KV slots of the tokens run so far: the prompt's, then each fed output token's.
    slots: Vec<u32>,
    /// Sliding-window slots of the most recent of those tokens (when the pool is split): they
    /// end where `slots` ends.
    local: Vec<u32>,
    sampler: Sampler,
    decoder: StreamDecoder,
    stop: StopMatcher,
    generated: Vec<u32>,
    /// Bytes of text the decoder has produced so far, and of them the bytes sent (the stop
    /// matcher holds some back and cuts a stop string off).
    decoded: usize,
    sent: usize,
    /// Log-probabilities whose tokens' text is not sent yet, each with where that text starts
    /// among the decoded bytes: they go out with their text, and those of a stop string never.
    held: std::collections::VecDeque<(usize, crate::request::TokenLogprob)>,
    max_tokens: usize,
    tx: UnboundedSender<Event>,
    cached_tokens: usize,
    /// Whether `Started` was sent.
    announced: bool,
    submitted: Instant,
    admitted: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// The row of the step in flight that samples this sequence's next token.
    pending: Option<u32>,
    /// The step `pending` belongs to.
    pending_step: u64,
    done: bool,
}

impl Seq {
    fn decoding(&self) -> bool {
        self.prefilled == self.prompt.len()
    }
}

/// A started step whose tokens have not been read yet.
struct InFlight {
    id: u64,
    choice: Option<Choice>,
    /// Sequence id per row of `choice`.
    rows: Vec<u64>,
    /// Tokens it runs (for the prefill budget's cost per row).
    tokens: usize,
    /// Something small that is ready when the step is, for steps without tokens to read.
    marker: Option<mlx::Array>,
    /// An embedding model's pooled rows `[rows, hidden]` (float32), in place of `choice`.
    hidden: Option<mlx::Array>,
    started: Instant,
}

struct Core {
    model: Model,
    shared: Arc<Shared>,
    pool: KvPool,
    prefix: PrefixCache,
    shapes: Shapes,
    overlap: bool,
    waiting: VecDeque<Box<Pending>>,
    running: Vec<Seq>,
    inflight: Option<InFlight>,
    /// Seconds per token of a step, measured.
    row_cost: Option<f64>,
    last_read: Instant,
    next_id: u64,
}

/// Runs the engine thread: warms the model up, calls `ready` (which says whether anyone still
/// waits for the engine), then serves commands until shutdown.
pub(crate) fn run(model: Model, shared: Arc<Shared>, rx: Receiver<Command>, ready: impl FnOnce() -> bool) {
    let mut core = Core::new(model, shared);
    if let Err(e) = core.warm_up() {
        tracing::warn!(error = %e, "warm-up failed");
        core.reset();
    }
    if !ready() {
        return;
    }
    loop {
        let idle = core.waiting.is_empty() && core.running.is_empty() && core.inflight.is_none();
        if idle {
            core.tidy();
        }
        let mut shutdown = false;
        if idle {
            match rx.recv() {
                Ok(Command::Submit(p)) => core.waiting.push_back(p),
                Ok(Command::Shutdown) | Err(_) => shutdown = true,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(Command::Submit(p)) => core.waiting.push_back(p),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => shutdown = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        if shutdown {
            core.shutdown();
            break;
        }
        core.iterate();
    }
    tracing::info!(model = %core.shared.info.name, "engine stopped");
}

impl Core {
    fn new(model: Model, shared: Arc<Shared>) -> Core {
        let pool = model.new_pool(shared.options.kv_cache_limit);
        let prefix = PrefixCache::new(shared.options.prefix_cache_bytes / model.kv_bytes_per_token().max(1));
        let gpu = mlx::default_device_is_gpu();
        let overlap = shared.options.overlap.unwrap_or(gpu);
        tracing::debug!(overlap, "scheduler ready");
        Core {
            model,
            shared,
            pool,
            prefix,
            shapes: Shapes::for_device(),
            overlap,
            waiting: VecDeque::new(),
            running: Vec::new(),
            inflight: None,
            row_cost: None,
            last_read: Instant::now(),
            next_id: 0,
        }
    }

    /// One round: drop what was cancelled, admit, run a step.
    fn iterate(&mut self) {
        let shared = self.shared.clone();
        let stats = &shared.stats;
        // Requests whose client went away leave now, queued or running.
        let before = self.waiting.len();
        self.waiting.retain(|p| !p.tx.is_closed());
        stats.queued.fetch_sub(before - self.waiting.len(), Ordering::Relaxed);
        for s in self.running.iter_mut().filter(|s| !s.done && s.tx.is_closed()) {
            tracing::debug!(request_id = %s.request_id, "cancelled by the client");
            s.done = true;
        }
        self.retire();
        while self.running.len() < self.shared.options.max_batch {
            let Some(p) = self.waiting.pop_front() else { break };
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            let seq = self.admit(*p);
            self.running.push(seq);
        }
        stats.active.store(self.running.len(), Ordering::Relaxed);
        self.step();
        self.retire();
        stats.active.store(self.running.len(), Ordering::Relaxed);
        stats.kv_bytes.store(self.pool.reserved_bytes(), Ordering::Relaxed);
    }

    fn admit(&mut self, p: Pending) -> Seq {
        self.next_id += 1;
        tracing::debug!(request_id = %p.request_id, prompt_tokens = p.prompt.len(), "admitted");
        Seq {
            id: self.next_id,
            request_id: p.request_id,
            sampler: Sampler::new(p.sampling, &p.prompt).guided(p.guide),
            prefilled: 0,
            slots: Vec::new(),
            local: Vec::new(),
            prompt: p.prompt,
            decoder: StreamDecoder::new().keep_special(p.keep_special_tokens),
            stop: StopMatcher::new(p.stop),
            generated: Vec::new(),
            decoded: 0,
            sent: 0,
            held: Default::default(),
            max_tokens: p.max_tokens,
            tx: p.tx,
            cached_tokens: 0,
            announced: false,
            submitted: p.submitted,
            admitted: Instant::now(),
            first_token: None,
            last_token: None,
            pending: None,
            pending_step: 0,
            done: false,
        }
    }

    fn step(&mut self) {
        if self.running.is_empty() {
            self.read_inflight();
            return;
        }
        let next = plan::plan(&mut self.running, &mut self.pool, &mut self.prefix, self.row_cost, &self.shared);
        match next {
            Ok(Next::Resolve) => self.read_inflight(),
            Ok(Next::Run(p)) if p.is_empty() => {
                if self.inflight.is_some() {
                    self.read_inflight();
                } else if self.running.iter().any(|s| !s.done) {
                    // Nothing can run and nothing is coming: never spin; say why instead.
                    let e = EngineError::bad_model(&self.shared.info.path, "the scheduler found no work it could run");
                    self.fail_all(e);
                }
            }
            Ok(Next::Run(p)) => match self.start(&p) {
                Ok(step) => {
                    self.shared.stats.steps.fetch_add(1, Ordering::Relaxed);
                    let prev = self.inflight.replace(step);
                    if let Some(prev) = prev {
                        self.read(prev);
                    }
                    if !self.overlap {
                        self.read_inflight();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "building a step failed; failing its sequences");
                    self.fail_all(e);
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "planning a step failed");
                self.fail_all(e);
            }
        }
    }

    /// Builds the planned step and starts it on the device.
    fn start(&mut self, plan: &Plan) -> Result<InFlight> {
        self.next_id += 1;
        let id = self.next_id;
        let prev = self.inflight.as_ref().and_then(|f| f.choice.as_ref()).map(|c| &c.tokens);
        let input = {
            let running = &self.running;
            let decode: Vec<DecodeRow<'_>> = plan
                .decode
                .iter()
                .map(|&(i, token)| DecodeRow { slots: &running[i].slots, local: &running[i].local, token })
                .collect();
            let prefill: Vec<PrefillRow<'_>> = plan
                .prefill
                .iter()
                .map(|c| {
                    let s = &running[c.seq];
                    PrefillRow {
                        slots: &s.slots,
                        local: &s.local,
                        tokens: &s.prompt[c.start..c.start + c.len],
                        logits: c.logits,
                    }
                })
                .collect();
            StepInput::build(&decode, &prefill, prev, &self.shapes)?
        };
        let embedding = self.shared.info.embedding.is_some();
        let logits = if embedding {
            match self.model.hidden(&mut self.pool, &input)? {
                Some(h) => Some(crate::model::layers::cast(h, mlx::Dtype::F32)?),
                None => None,
            }
        } else {
            self.model.forward(&mut self.pool, &input)?
        };
        let sampled: Vec<usize> =
            plan.decode.iter().map(|d| d.0).chain(plan.prefill.iter().filter(|c| c.logits).map(|c| c.seq)).collect();
        let mut eval = ArrayList::of(self.pool.arrays());
        let (choice, marker, hidden) = match logits {
            Some(h) if embedding => {
                eval.push(&h);
                (None, None, Some(h))
            }
            Some(logits) => {
                let mut slots: Vec<Option<&mut Sampler>> =
                    self.running.iter_mut().map(|s| Some(&mut s.sampler)).collect();
                let mut samplers: Vec<&mut Sampler> =
                    sampled.iter().map(|&i| slots[i].take().expect("a sequence samples once per step")).collect();
                let choice = sampling::choose(&logits, &mut samplers)?;
                for &i in &sampled {
                    let s = &mut self.running[i];
                    if let Some(e) = s.sampler.take_failure() {
                        tracing::warn!(request_id = %s.request_id, error = %e, "its constraint failed; ending it alone");
                        let _ = s.tx.send(Event::Error(e));
                        s.done = true;
                    }
                }
                for a in choice.arrays() {
                    eval.push(a);
                }
                (Some(choice), None, None)
            }
            None => {
                let marker = self.pool.marker()?;
                eval.push(&marker);
                (None, Some(marker), None)
            }
        };
        eval.async_eval()?;
        let mut rows = Vec::with_capacity(sampled.len());
        for (r, &i) in sampled.iter().enumerate() {
            let s = &mut self.running[i];
            s.pending = Some(r as u32);
            s.pending_step = id;
            rows.push(s.id);
        }
        Ok(InFlight { id, choice, rows, tokens: plan.tokens(), marker, hidden, started: Instant::now() })
    }

    fn read_inflight(&mut self) {
        if let Some(f) = self.inflight.take() {
            self.read(f);
        }
    }

    /// Waits for a started step and hands its tokens to their sequences.
    fn read(&mut self, f: InFlight) {
        if let Some(h) = &f.hidden {
            return self.read_hidden(&f, h);
        }
        let read = match (&f.choice, &f.marker) {
            (Some(c), _) => c.read().map(Some),
            (None, Some(m)) => m.eval().map(|_| None).map_err(EngineError::from),
            (None, None) => Ok(None),
        };
        let now = Instant::now();
        tracing::trace!(step = f.id, tokens = f.tokens, waited_ms = (now - f.started).as_secs_f64() * 1e3, "step read");
        let took = now - f.started.max(self.last_read);
        self.last_read = now;
        let cost = took.as_secs_f64() / f.tokens.max(1) as f64;
        self.row_cost = Some(self.row_cost.map_or(cost, |c| 0.7 * c + 0.3 * cost));
        let sampled = match read {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "a step failed on the device; failing every sequence");
                self.fail_all(e);
                return;
            }
        };
        for (row, s) in sampled.into_iter().enumerate() {
            let id = f.rows[row];
            let Some(seq) = self.running.iter_mut().find(|q| q.id == id) else { continue };
            if seq.pending_step == f.id {
                seq.pending = None;
            }
            if seq.done {
                continue;
            }
            if let Err(e) = emit::on_token(seq, s, now, &self.shared) {
                let _ = seq.tx.send(Event::Error(e));
                seq.done = true;
            }
        }
    }

    /// Waits for an embedding step and hands each row's pooled vector to its sequence.
    fn read_hidden(&mut self, f: &InFlight, h: &mlx::Array) {
        let values = match h.to_f32() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "a step failed on the device; failing every sequence");
                self.fail_all(e.into());
                return;
            }
        };
        let now = Instant::now();
        self.last_read = now;
        let dim = h.dim(1) as usize;
        for (row, id) in f.rows.iter().enumerate() {
            let Some(seq) = self.running.iter_mut().find(|q| q.id == *id) else { continue };
            seq.pending = None;
            if !seq.done {
                emit::on_embedding(seq, values[row * dim..(row + 1) * dim].to_vec(), now, &self.shared);
            }
        }
    }

    /// Fails every running sequence and starts over with an empty pool: after a failed step the
    /// pool's contents cannot be trusted.
    fn fail_all(&mut self, e: EngineError) {
        self.inflight = None;
        for s in self.running.iter_mut().filter(|s| !s.done) {
            let _ = s.tx.send(Event::Error(e.clone()));
            s.done = true;
        }
        self.running.clear();
        self.reset();
    }

    fn reset(&mut self) {
        self.prefix = PrefixCache::new(self.shared.options.prefix_cache_bytes / self.model.kv_bytes_per_token().max(1));
        self.pool = self.model.new_pool(self.shared.options.kv_cache_limit);
        self.row_cost = None;
    }

    /// Removes finished and cancelled sequences, leaving what they wrote to the prefix cache.
    /// Admission order is kept: earlier sequences get the prefill budget first.
    fn retire(&mut self) {
        if self.running.iter().all(|s| !s.done) {
            return;
        }
        let mut kept = Vec::with_capacity(self.running.len());
        for mut s in self.running.drain(..) {
            if !s.done {
                kept.push(s);
                continue;
            }
            // Slots of tokens not known on the host (sampled by a step still in flight) hold
            // nothing reusable.
            let n = s.slots.len().min(s.prompt.len() + s.generated.len());
            let cut = s.slots.len() - n;
            let tail = s.slots.split_off(n);
            let local_tail = s.local.split_off(s.local.len().saturating_sub(cut));
            self.pool.release_with_local(&tail, &local_tail);
            let mut tokens = s.prompt;
            tokens.extend_from_slice(&s.generated);
            tokens.truncate(n);
            self.prefix.insert(tokens, s.slots, s.local, &mut self.pool);
        }
        self.running = kept;
    }

    /// When nothing runs: give memory back that only a past burst needed.
    fn tidy(&mut self) {
        let held = self.prefix.held_slots();
        if held == 0 {
            self.pool.release_memory_if_unused();
        } else if self.pool.capacity() > 2 * held + 512
            && let Err(e) = self.pool.compact(self.prefix.slot_lists())
        {
            tracing::warn!(error = %e, "compacting the KV pool failed; starting over");
            self.reset();
        }
        self.shared.stats.kv_bytes.store(self.pool.reserved_bytes(), Ordering::Relaxed);
    }

    fn shutdown(&mut self) {
        let err = || Event::Error(EngineError::ShuttingDown { model: self.shared.info.name.clone() });
        for p in self.waiting.drain(..) {
            let _ = p.tx.send(err());
        }
        for s in self.running.drain(..) {
            let _ = s.tx.send(err());
        }
        self.inflight = None;
        let stats = &self.shared.stats;
        stats.queued.store(0, Ordering::Relaxed);
        stats.active.store(0, Ordering::Relaxed);
    }

    /// Runs the shapes a fresh model meets first, so the first request does not pay for
    /// planning kernels (on a GPU every bucket of decode rows and of prompt chunks).
    fn warm_up(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let max_rows = self.shapes.rows(self.shared.options.max_batch);
        let chunk = self.shapes.chunk(self.shared.options.prefill_chunk.max(8));
        let mut cases: Vec<(usize, usize, usize)> = vec![]; // (decode rows, chunks, chunk length)
        if self.shapes.pow2 {
            let mut b = 1;
            while b <= max_rows {
                cases.push((b, 0, 0));
                b *= 2;
            }
            let mut p = 1;
            while p <= max_rows.min(8) {
                let mut l = self.shapes.chunk(1);
                while l <= chunk {
                    cases.push((0, p, l));
                    l *= 2;
                }
                p *= 2;
            }
            cases.push((1, 1, self.shapes.chunk(1)));
        } else {
            // Exact shapes cost nothing to plan on the CPU, but a first product of many rows
            // starts OpenBLAS's threads and a first one of few rows the shim's (mlx/cpp).
            cases.push((0, 1, 64));
            cases.push((1, 0, 0));
        }
        for &(b, p, l) in &cases {
            self.warm_step(b, p, l)?;
        }
        tracing::debug!(steps = cases.len(), seconds = t0.elapsed().as_secs_f64(), "warmed up");
        Ok(())
    }

    /// Piece `i` of `n` slots of `all` (empty when `all` is: no local pool).
    fn part(all: &[u32], i: usize, n: usize) -> &[u32] {
        if all.is_empty() { all } else { &all[i * n..(i + 1) * n] }
    }

    /// One throwaway step of `b` decode rows and `p` fresh chunks of `l` tokens, with every
    /// kind of sampling the batch can need.
    fn warm_step(&mut self, b: usize, p: usize, l: usize) -> Result<()> {
        let need = b * 2 + p * l;
        self.pool.grow_all(need)?;
        let (mut slots, mut local) = (vec![], vec![]);
        assert!(self.pool.extend(&mut slots, &mut local, need), "grown");
        let (dec, rest) = slots.split_at(b * 2);
        let (ldec, lrest) = if local.is_empty() { (&local[..], &local[..]) } else { local.split_at(b * 2) };
        let tokens = vec![1u32; l];
        let decode: Vec<DecodeRow<'_>> = (0..b)
            .map(|i| DecodeRow {
                slots: Self::part(dec, i, 2),
                local: Self::part(ldec, i, 2),
                token: TokenSource::Host(1),
            })
            .collect();
        let prefill: Vec<PrefillRow<'_>> = (0..p)
            .map(|i| PrefillRow {
                slots: Self::part(rest, i, l),
                local: Self::part(lrest, i, l),
                tokens: &tokens,
                logits: true,
            })
            .collect();
        let input = StepInput::build(&decode, &prefill, None, &self.shapes)?;
        let logits = self.model.forward(&mut self.pool, &input)?;
        let mut eval = ArrayList::of(self.pool.arrays());
        let mut choices = vec![];
        if let Some(logits) = logits {
            let n = b + p;
            let greedy = SamplingParams::greedy();
            let sampled = SamplingParams { temperature: 0.7, top_p: 0.9, seed: Some(0), ..Default::default() };
            for params in [greedy, sampled] {
                let mut s: Vec<Sampler> = (0..n).map(|_| Sampler::new(params.clone(), &[])).collect();
                let mut refs: Vec<&mut Sampler> = s.iter_mut().collect();
                choices.push(sampling::choose(&logits, &mut refs)?);
            }
        }
        for c in &choices {
            for a in c.arrays() {
                eval.push(a);
            }
        }
        eval.eval()?;
        self.pool.release_with_local(&slots, &local);
        Ok(())
    }
}
