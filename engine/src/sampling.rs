//! Choosing the next token of every row of a step's logits, on the device: logit bias,
//! repetition / presence / frequency penalties, greedy or temperature sampling with top-k, top-p
//! and min-p, and log-probabilities. Only the chosen tokens (and the log-probabilities asked for)
//! come back to the host, in one read per step.
//!
//! A constrained sequence (see `constraint`) adds its grammar's mask of allowed tokens to its
//! row; the mask needs the previous token on the host, so such a sequence waits for each step
//! to be read before the next is built.
//!
//! Randomness comes from each sequence's own generator on the host: a step draws one uniform
//! number per row and the device inverts that row's cumulative distribution with it, so a request
//! with a seed gets the same tokens whether it runs alone or inside any batch.

use std::collections::{HashMap, HashSet};

use mlx::{Array, Dtype, ops};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::constraint::Guide;
use crate::error::{EngineError, Result};

/// Sampling parameters of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 selects the most likely token (greedy).
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1]; 1 disables it.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: u32,
    /// Drop tokens less likely than `min_p` × the most likely one; 0 disables it.
    pub min_p: f32,
    /// Hugging Face style: logits of tokens already in the context are divided (if positive) or
    /// multiplied (if negative) by this; 1 disables it.
    pub repetition_penalty: f32,
    /// OpenAI style: subtracted once from tokens generated so far.
    pub presence_penalty: f32,
    /// OpenAI style: subtracted per occurrence in the tokens generated so far.
    pub frequency_penalty: f32,
    /// Added to the logits of these tokens.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Return the chosen token's log-probability and this many alternatives (`Some(0)`: only the
    /// chosen token's).
    pub logprobs: Option<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: vec![],
            seed: None,
            logprobs: None,
        }
    }
}

/// Temperatures below this sample greedily, the limit they tend to: dividing logits by one
/// near f32's smallest overflows to infinity and every probability becomes NaN.
const GREEDY_BELOW: f32 = 1e-5;

/// Most alternatives returned per token.
pub const MAX_TOP_LOGPROBS: u32 = 20;

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> SamplingParams {
        SamplingParams { temperature: 0.0, ..Default::default() }
    }

    /// Checks every value; errors name the field, the value and the allowed range.
    pub fn validate(&self, vocab_size: usize) -> Result<()> {
        let finite = |name: &str, v: f32| -> Result<()> {
            if v.is_finite() { Ok(()) } else { Err(EngineError::invalid(name, format!("{v} is not a finite number"))) }
        };
        finite("temperature", self.temperature)?;
        if self.temperature < 0.0 {
            return Err(EngineError::invalid("temperature", format!("{} is below the minimum 0", self.temperature)));
        }
        finite("top_p", self.top_p)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(EngineError::invalid("top_p", format!("{} is outside (0, 1]", self.top_p)));
        }
        finite("min_p", self.min_p)?;
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(EngineError::invalid("min_p", format!("{} is outside [0, 1]", self.min_p)));
        }
        finite("repetition_penalty", self.repetition_penalty)?;
        if self.repetition_penalty <= 0.0 {
            return Err(EngineError::invalid(
                "repetition_penalty",
                format!("{} must be greater than 0", self.repetition_penalty),
            ));
        }
        finite("presence_penalty", self.presence_penalty)?;
        finite("frequency_penalty", self.frequency_penalty)?;
        for (tok, bias) in &self.logit_bias {
            if *tok as usize >= vocab_size {
                return Err(EngineError::invalid(
                    "logit_bias",
                    format!("token id {tok} is outside the vocabulary (size {vocab_size})"),
                ));
            }
            finite("logit_bias", *bias)?;
        }
        if let Some(n) = self.logprobs
            && n > MAX_TOP_LOGPROBS
        {
            return Err(EngineError::invalid("logprobs", format!("{n} is above the maximum {MAX_TOP_LOGPROBS}")));
        }
        Ok(())
    }

    /// Whether a plain argmax over the raw logits gives the same answer (so the logits need not
    /// leave the device).
    pub fn is_plain_greedy(&self) -> bool {
        self.temperature == 0.0
            && self.logit_bias.is_empty()
            && self.repetition_penalty == 1.0
            && self.presence_penalty == 0.0
            && self.frequency_penalty == 0.0
            && self.logprobs.is_none()
    }
}

/// A chosen token with its log-probability information.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// The token.
    pub token: u32,
    /// Its log-probability under the model, when asked for.
    pub logprob: Option<f32>,
    /// The most likely alternatives `(token, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Per-sequence sampling state kept on the host: the parameters, the request's own random
/// stream, and the token history the penalties need.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Tokens of prompt and output, for the repetition penalty.
    seen: HashSet<u32>,
    /// Output token counts, for presence and frequency penalties.
    counts: HashMap<u32, u32>,
    /// The grammar the output must follow, if any.
    guide: Option<Guide>,
    /// Why its grammar could not give this step's mask: the sequence fails alone (its row was
    /// sampled unmasked and its token is dropped), never the batch it shares a step with.
    failed: Option<EngineError>,
}

impl Sampler {
    /// A sampler for a sequence whose prompt is `prompt`.
    pub fn new(mut params: SamplingParams, prompt: &[u32]) -> Sampler {
        if params.temperature < GREEDY_BELOW {
            params.temperature = 0.0;
        }
        let rng = match params.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        let seen = if params.repetition_penalty != 1.0 { prompt.iter().copied().collect() } else { HashSet::new() };
        Sampler { params, rng, seen, counts: HashMap::new(), guide: None, failed: None }
    }

    /// The same sampler, its choices kept within `guide`'s grammar.
    pub fn guided(mut self, guide: Option<Guide>) -> Sampler {
        self.guide = guide;
        self
    }

    /// Why the last step's mask could not be made, once: the sequence must end with this error.
    pub fn take_failure(&mut self) -> Option<EngineError> {
        self.failed.take()
    }

    /// Whether the grammar it follows is complete and admits nothing more.
    pub fn grammar_finished(&self) -> bool {
        self.guide.as_ref().is_some_and(Guide::finished)
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether choosing the next token needs the previous one on the host (the penalties count
    /// the tokens so far), so a step cannot be built before the last one is read.
    pub fn needs_history(&self) -> bool {
        let p = &self.params;
        p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 || self.guide.is_some()
    }

    /// Records a chosen token (a grammar that cannot follow it is an error).
    pub fn observe(&mut self, token: u32) -> Result<()> {
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(token);
        }
        if self.params.presence_penalty != 0.0 || self.params.frequency_penalty != 0.0 {
            *self.counts.entry(token).or_default() += 1;
        }
        match &mut self.guide {
            Some(g) => g.consume(token),
            None => Ok(()),
        }
    }

    /// The next uniform number in (0, 1] of this sequence's stream.
    fn uniform(&mut self) -> f32 {
        1.0 - self.rng.random::<f32>()
    }
}

/// The tokens a step chose, still on the device until [`Choice::read`].
pub struct Choice {
    /// `[rows]` `u32`.
    pub tokens: Array,
    /// `[rows]` log-probability of each chosen token, when any row asked.
    logprob: Option<Array>,
    /// `[rows, n]` ids and log-probabilities of the most likely tokens, when any row asked for
    /// alternatives.
    top: Option<(Array, Array)>,
    /// Per row: `None`, or the number of alternatives it asked for.
    wanted: Vec<Option<u32>>,
}

impl Choice {
    /// The arrays to evaluate.
    pub fn arrays(&self) -> Vec<&Array> {
        let mut out = vec![&self.tokens];
        out.extend(self.logprob.iter());
        if let Some((ids, lps)) = &self.top {
            out.extend([ids, lps]);
        }
        out
    }

    /// Reads the choices back (waiting for the step), one per row.
    pub fn read(&self) -> Result<Vec<Sampled>> {
        let tokens = self.tokens.to_u32()?;
        let logprob = self.logprob.as_ref().map(|a| a.to_f32()).transpose()?;
        let top = match &self.top {
            Some((ids, lps)) => Some((ids.dim(1) as usize, ids.to_u32()?, lps.to_f32()?)),
            None => None,
        };
        Ok(tokens
            .iter()
            .enumerate()
            .map(|(i, &token)| {
                let want = self.wanted[i];
                Sampled {
                    token,
                    logprob: want.and(logprob.as_ref().map(|l| l[i])),
                    top: match (want, &top) {
                        (Some(n), Some((w, ids, lps))) => {
                            (0..n as usize).map(|j| (ids[i * w + j], lps[i * w + j])).collect()
                        }
                        _ => vec![],
                    },
                }
            })
            .collect())
    }
}

/// Chooses one token per row of `logits` `[rows, vocab]` (float32), row `i` by `samplers[i]`.
/// Draws one number from the random stream of each row that samples.
pub fn choose(logits: &Array, samplers: &mut [&mut Sampler]) -> Result<Choice> {
    let wanted: Vec<Option<u32>> = samplers.iter().map(|s| s.params.logprobs).collect();
    let tokens = if samplers.iter().all(|s| s.guide.is_none() && argmax_suffices(&s.params)) {
        row_argmax(logits)?
    } else {
        draw(logits, samplers)?
    };
    if wanted.iter().all(Option::is_none) {
        return Ok(Choice { tokens, logprob: None, top: None, wanted });
    }
    // Log-probabilities of the raw logits (before bias and penalties: "under the model").
    let lp = ops::subtract(logits, &ops::logsumexp(logits, -1, true)?)?;
    let chosen = ops::take_along_axis(&lp, &ops::expand_dims(&tokens, 1)?, -1)?;
    let logprob = Some(ops::squeeze(&chosen, 1)?);
    let n = wanted.iter().flatten().copied().max().unwrap_or(0) as i32;
    let top = if n > 0 {
        let order = ops::slice_axis(&ops::argsort(&ops::negative(logits)?, -1)?, 1, 0, n)?;
        let vals = ops::take_along_axis(&lp, &order, -1)?;
        Some((order, vals))
    } else {
        None
    };
    Ok(Choice { tokens, logprob, top, wanted })
}

/// The argmax of each row (uint32): on the CPU the bridge's node, which shares the rows over the
/// thread pool and reads them with vectors (MLX's compares one logit at a time on one thread: 4%
/// of a SmolLM2 batch-16 step), with MLX's answer; on a GPU, MLX's own.
fn row_argmax(x: &Array) -> Result<Array> {
    if x.dtype() == Dtype::F32 && !mlx::default_device_is_gpu() {
        return Ok(mlx::fused::argmax(x)?);
    }
    Ok(ops::argmax(x, -1, false)?)
}

/// Whether the plain argmax of the raw logits is the answer.
fn argmax_suffices(p: &SamplingParams) -> bool {
    SamplingParams { logprobs: None, ..p.clone() }.is_plain_greedy()
}

/// Tokens after bias and penalties: greedy rows take the argmax, the others sample.
fn draw(logits: &Array, samplers: &mut [&mut Sampler]) -> Result<Array> {
    let vocab = logits.dim(1);
    let r = samplers.len() as i32;
    let x = adjust(logits, samplers, vocab)?;
    let greedy = row_argmax(&x)?;
    if samplers.iter().all(|s| s.params.temperature == 0.0) {
        return Ok(greedy);
    }
    let column = |v: Vec<f32>| Array::from_f32(&v, &[r, 1]);
    let t: Vec<f32> = samplers.iter().map(|s| s.params.temperature).collect();
    let temps = column(t.iter().map(|&t| if t > 0.0 { t } else { 1.0 }).collect())?;
    let u = column(samplers.iter_mut().map(|s| if s.params.temperature > 0.0 { s.uniform() } else { 1.0 }).collect())?;
    let x = ops::divide(&x, &temps)?;
    let truncates = samplers.iter().any(|s| s.params.top_k > 0 || s.params.top_p < 1.0 || s.params.min_p > 0.0);
    let sampled = if truncates {
        // Most likely first; keep a prefix of that order (top-k, top-p's nucleus, min-p's floor)
        // and invert the kept mass's cumulative distribution.
        let order = ops::argsort(&ops::negative(&x)?, -1)?;
        let probs = ops::softmax(&ops::take_along_axis(&x, &order, -1)?, -1, true)?;
        let cols = ops::reshape(&Array::arange(0, vocab)?, &[1, vocab])?;
        let k: Vec<i32> =
            samplers.iter().map(|s| if s.params.top_k == 0 { vocab } else { s.params.top_k as i32 }).collect();
        let mut keep = ops::less(&cols, &Array::from_i32(&k, &[r, 1])?)?;
        let before = ops::subtract(&ops::cumsum(&probs, -1, false, true)?, &probs)?;
        let top_p = column(samplers.iter().map(|s| s.params.top_p).collect())?;
        keep = ops::logical_and(&keep, &ops::less(&before, &top_p)?)?;
        let min_p = column(samplers.iter().map(|s| s.params.min_p).collect())?;
        let floor = ops::multiply(&ops::slice_axis(&probs, 1, 0, 1)?, &min_p)?;
        keep = ops::logical_and(&keep, &ops::greater_equal(&probs, &floor)?)?;
        let kept = ops::where_(&keep, &probs, &Array::scalar_f32(0.0)?)?;
        let pick = ops::expand_dims(&invert_cdf(&kept, &u, vocab)?, 1)?;
        ops::squeeze(&ops::take_along_axis(&order, &pick, -1)?, 1)?
    } else {
        invert_cdf(&ops::softmax(&x, -1, true)?, &u, vocab)?
    };
    let is_greedy = ops::less_equal(&Array::from_f32(&t, &[r])?, &Array::scalar_f32(0.0)?)?;
    Ok(ops::where_(&is_greedy, &greedy, &ops::astype(&sampled, Dtype::U32)?)?)
}

/// The logits with each guided row's grammar mask added (0 where allowed, negative infinity
/// elsewhere); unguided rows unchanged.
fn guide(logits: &Array, samplers: &mut [&mut Sampler], vocab: i32) -> Result<Array> {
    if samplers.iter().all(|s| s.guide.is_none()) {
        return Ok(logits.clone());
    }
    let v = vocab as usize;
    let mut mask = vec![0.0f32; samplers.len() * v];
    for (row, s) in samplers.iter_mut().enumerate() {
        if let Some(g) = &mut s.guide {
            let row = &mut mask[row * v..(row + 1) * v];
            if let Err(e) = g.fill(row) {
                row.fill(0.0);
                s.failed = Some(e);
            }
        }
    }
    Ok(ops::add(logits, &Array::from_f32(&mask, &[samplers.len() as i32, vocab])?)?)
}

/// Index of the first column whose cumulative mass reaches `u` × the row's total mass.
fn invert_cdf(probs: &Array, u: &Array, vocab: i32) -> Result<Array> {
    let cdf = ops::cumsum(probs, -1, false, true)?;
    let total = ops::slice_axis(&cdf, 1, vocab - 1, vocab)?;
    let below = ops::less(&cdf, &ops::multiply(u, &total)?)?;
    let idx = ops::sum(&ops::astype(&below, Dtype::I32)?, -1, false)?;
    Ok(ops::minimum(&idx, &Array::scalar_i32(vocab - 1)?)?)
}

/// The logits after bias and penalties, as [`Sampler`]s ask (the host version's order: bias,
/// then repetition, then presence and frequency).
fn adjust(logits: &Array, samplers: &mut [&mut Sampler], vocab: i32) -> Result<Array> {
    let logits = &guide(logits, samplers, vocab)?;
    let mut bias = (Vec::new(), Vec::new());
    let mut rep = (Vec::new(), Vec::new());
    let mut pen = (Vec::new(), Vec::new());
    for (row, s) in samplers.iter().enumerate() {
        let base = row as u32 * vocab as u32;
        let p = &s.params;
        for &(tok, b) in &p.logit_bias {
            bias.0.push(base + tok);
            bias.1.push(b);
        }
        if p.repetition_penalty != 1.0 {
            for &tok in &s.seen {
                rep.0.push(base + tok);
                rep.1.push(p.repetition_penalty);
            }
        }
        for (&tok, &n) in &s.counts {
            pen.0.push(base + tok);
            pen.1.push(-(p.presence_penalty + p.frequency_penalty * n as f32));
        }
    }
    if bias.0.is_empty() && rep.0.is_empty() && pen.0.is_empty() {
        return Ok(logits.clone());
    }
    let rows = logits.dim(0);
    let mut flat = ops::reshape(logits, &[rows * vocab])?;
    let sparse = |(idx, vals): &(Vec<u32>, Vec<f32>)| -> Result<(Array, Array)> {
        let n = idx.len() as i32;
        Ok((Array::from_u32(idx, &[n])?, Array::from_f32(vals, &[n, 1])?))
    };
    if !bias.0.is_empty() {
        let (idx, vals) = sparse(&bias)?;
        flat = ops::scatter_add(&flat, &idx, &vals, 0)?;
    }
    if !rep.0.is_empty() {
        let (idx, penalty) = sparse(&rep)?;
        let cur = ops::reshape(&ops::take(&flat, &idx, 0)?, &[idx.dim(0), 1])?;
        let zero = Array::scalar_f32(0.0)?;
        let new =
            ops::where_(&ops::greater(&cur, &zero)?, &ops::divide(&cur, &penalty)?, &ops::multiply(&cur, &penalty)?)?;
        flat = ops::scatter(&flat, &idx, &new, 0)?;
    }
    if !pen.0.is_empty() {
        let (idx, vals) = sparse(&pen)?;
        flat = ops::scatter_add(&flat, &idx, &vals, 0)?;
    }
    Ok(ops::reshape(&flat, &[rows, vocab])?)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![0.1, 3.0, 2.5, -1.0, 2.9, 0.0]
    }

    /// Runs `choose` on one row per sampler, every row holding [`logits`].
    fn pick(samplers: &mut [&mut Sampler]) -> Vec<Sampled> {
        let rows: Vec<f32> = samplers.iter().flat_map(|_| logits()).collect();
        let x = Array::from_f32(&rows, &[samplers.len() as i32, 6]).unwrap();
        let c = choose(&x, samplers).unwrap();
        let out = c.read().unwrap();
        for (s, o) in samplers.iter_mut().zip(&out) {
            s.observe(o.token).unwrap();
        }
        out
    }

    fn one(s: &mut Sampler) -> Sampled {
        pick(&mut [s]).remove(0)
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]);
        assert_eq!(one(&mut s).token, 1);
    }

    #[test]
    fn a_vanishing_temperature_is_greedy() {
        for t in [1e-38, 1e-30, 1e-6] {
            let p = SamplingParams { temperature: t, logprobs: Some(1), seed: Some(1), ..Default::default() };
            let got = one(&mut Sampler::new(p, &[]));
            assert_eq!(got.token, 1, "T={t}");
            assert!(got.logprob.is_some_and(f32::is_finite) && got.top.len() == 1, "T={t}: {got:?}");
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = SamplingParams { temperature: 1.0, seed: Some(7), ..Default::default() };
        let run = || {
            let mut s = Sampler::new(p.clone(), &[]);
            (0..40).map(|_| one(&mut s).token).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(run().iter().collect::<HashSet<_>>().len() > 1, "sampling at T=1 should vary");
    }

    #[test]
    fn each_row_samples_as_if_alone() {
        let seeded = |seed| SamplingParams { temperature: 0.8, top_p: 0.9, seed: Some(seed), ..Default::default() };
        let alone: Vec<u32> = {
            let mut s = Sampler::new(seeded(3), &[]);
            (0..20).map(|_| one(&mut s).token).collect()
        };
        let mut a = Sampler::new(SamplingParams::greedy(), &[]);
        let mut b = Sampler::new(seeded(3), &[]);
        let mut c = Sampler::new(SamplingParams { temperature: 2.0, top_k: 2, ..Default::default() }, &[]);
        let mut together = vec![];
        for _ in 0..20 {
            let out = pick(&mut [&mut a, &mut b, &mut c]);
            assert_eq!(out[0].token, 1, "the greedy row stays greedy");
            assert!([1, 4].contains(&out[2].token), "top-k 2 keeps the two best");
            together.push(out[1].token);
        }
        assert_eq!(together, alone);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let p = SamplingParams { temperature: 5.0, top_k: 1, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..20 {
            assert_eq!(one(&mut s).token, 1);
        }
    }

    #[test]
    fn top_p_and_min_p_restrict_the_candidates() {
        let p = SamplingParams { temperature: 1.0, top_p: 0.5, seed: Some(3), ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        let seen: HashSet<u32> = (0..50).map(|_| one(&mut s).token).collect();
        assert!(seen.iter().all(|t| *t == 1 || *t == 4), "{seen:?}");
        assert_eq!(seen.len(), 2, "both nucleus tokens are drawn");
        let p = SamplingParams { temperature: 1.0, min_p: 0.5, seed: Some(3), ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            assert!([1, 2, 4].contains(&one(&mut s).token));
        }
    }

    #[test]
    fn penalties_and_bias_move_the_choice() {
        let p = SamplingParams { temperature: 0.0, logit_bias: vec![(5, 10.0)], ..Default::default() };
        assert_eq!(one(&mut Sampler::new(p, &[])).token, 5);
        let p = SamplingParams { temperature: 0.0, repetition_penalty: 2.0, ..Default::default() };
        assert_eq!(one(&mut Sampler::new(p, &[1])).token, 4);
        let p = SamplingParams { temperature: 0.0, frequency_penalty: 1.0, ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        assert!(s.needs_history());
        assert_eq!(one(&mut s).token, 1);
        assert_eq!(one(&mut s).token, 4);
    }

    #[test]
    fn logprobs_are_normalized_and_sorted() {
        let p = SamplingParams { temperature: 0.0, logprobs: Some(3), ..Default::default() };
        let mut plain = Sampler::new(SamplingParams::greedy(), &[]);
        let mut asking = Sampler::new(p, &[]);
        let out = pick(&mut [&mut plain, &mut asking]);
        assert_eq!((out[0].logprob, out[0].top.len()), (None, 0), "only the row that asked gets them");
        let total: f32 = logits().iter().map(|&l| l.exp()).sum();
        assert!((out[1].logprob.unwrap() - (3.0f32.exp() / total).ln()).abs() < 1e-5);
        assert_eq!(out[1].top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 4, 2]);
    }

    #[test]
    fn validation_names_field_value_and_limit() {
        let e = SamplingParams { temperature: -1.0, ..Default::default() }.validate(10).unwrap_err();
        assert_eq!(e.to_string(), "invalid temperature: -1 is below the minimum 0");
        let e = SamplingParams { top_p: f32::NAN, ..Default::default() }.validate(10).unwrap_err();
        assert!(e.to_string().contains("top_p"));
        let e = SamplingParams { logit_bias: vec![(10, 1.0)], ..Default::default() }.validate(10).unwrap_err();
        assert!(e.to_string().contains("token id 10"));
    }
}
