//! Choosing the next token from a row of logits: logit bias, repetition / presence / frequency
//! penalties, greedy or temperature sampling with top-k, top-p and min-p, and log-probabilities.
//!
//! Sampling runs on the host, per sequence, with the sequence's own seeded generator: a request
//! with a seed gets the same tokens whether it runs alone or inside any batch.

use std::collections::{HashMap, HashSet};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
            return Err(EngineError::invalid("top_logprobs", format!("{n} is above the maximum {MAX_TOP_LOGPROBS}")));
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

/// Per-sequence sampling state.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Tokens of prompt and output, for the repetition penalty.
    seen: HashSet<u32>,
    /// Output token counts, for presence and frequency penalties.
    counts: HashMap<u32, u32>,
}

impl Sampler {
    /// A sampler for a sequence whose prompt is `prompt`.
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Sampler {
        let rng = match params.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        let seen = if params.repetition_penalty != 1.0 { prompt.iter().copied().collect() } else { HashSet::new() };
        Sampler { params, rng, seen, counts: HashMap::new() }
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Records a chosen token (done by [`Sampler::sample`]; public for tokens chosen on device).
    pub fn observe(&mut self, token: u32) {
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(token);
        }
        if self.params.presence_penalty != 0.0 || self.params.frequency_penalty != 0.0 {
            *self.counts.entry(token).or_default() += 1;
        }
    }

    /// Picks the next token from `logits` (modified in place).
    pub fn sample(&mut self, logits: &mut [f32]) -> Sampled {
        let (logprob_of, top) = match self.params.logprobs {
            Some(n) => log_probs(logits, n as usize),
            None => (None, vec![]),
        };
        let p = &self.params;
        for &(tok, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(tok as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            for &tok in &self.seen {
                if let Some(l) = logits.get_mut(tok as usize) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&tok, &n) in &self.counts {
                if let Some(l) = logits.get_mut(tok as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
        }
        let token = if p.temperature == 0.0 { argmax(logits) } else { self.draw(logits) };
        self.observe(token);
        let logprob = logprob_of.map(|f| f(token));
        Sampled { token, logprob, top }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let inv_t = 1.0 / p.temperature;
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l * inv_t)).collect();
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && (p.top_k as usize) < cand.len() {
            cand.select_nth_unstable_by(p.top_k as usize - 1, by_logit);
            cand.truncate(p.top_k as usize);
        }
        cand.sort_unstable_by(by_logit);
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            let floor = p.min_p * probs[0];
            keep = keep.min(probs.iter().position(|&x| x < floor).unwrap_or(keep).max(1));
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, &x) in probs.iter().enumerate().take(keep) {
                acc += x;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mass: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f32>() * mass;
        for (i, &x) in probs[..keep].iter().enumerate() {
            r -= x;
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
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

type LogprobOf = Box<dyn Fn(u32) -> f32>;

/// Log-softmax of the raw logits: a lookup for the chosen token and the `n` best alternatives.
fn log_probs(logits: &[f32], n: usize) -> (Option<LogprobOf>, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    let mut top = Vec::new();
    if n > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        if n < idx.len() {
            idx.select_nth_unstable_by(n - 1, by);
            idx.truncate(n);
        }
        idx.sort_unstable_by(by);
        top = idx.into_iter().map(|i| (i, logits[i as usize] - lse)).collect();
    }
    let raw = logits.to_vec();
    (Some(Box::new(move |t| raw[t as usize] - lse)), top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![0.1, 3.0, 2.5, -1.0, 2.9, 0.0]
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]);
        assert_eq!(s.sample(&mut logits()).token, 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = SamplingParams { temperature: 1.0, seed: Some(7), ..Default::default() };
        let run = || {
            let mut s = Sampler::new(p.clone(), &[]);
            (0..50).map(|_| s.sample(&mut logits()).token).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(run().iter().collect::<HashSet<_>>().len() > 1, "sampling at T=1 should vary");
    }

    #[test]
    fn top_k_one_is_greedy() {
        let p = SamplingParams { temperature: 5.0, top_k: 1, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits()).token, 1);
        }
    }

    #[test]
    fn top_p_and_min_p_restrict_the_candidates() {
        let p = SamplingParams { temperature: 1.0, top_p: 0.5, seed: Some(3), ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            let t = s.sample(&mut logits()).token;
            assert!(t == 1 || t == 4, "{t}");
        }
        let p = SamplingParams { temperature: 1.0, min_p: 0.5, seed: Some(3), ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            assert!([1, 2, 4].contains(&s.sample(&mut logits()).token));
        }
    }

    #[test]
    fn penalties_and_bias_move_the_choice() {
        let p = SamplingParams { temperature: 0.0, logit_bias: vec![(5, 10.0)], ..Default::default() };
        assert_eq!(Sampler::new(p, &[]).sample(&mut logits()).token, 5);
        let p = SamplingParams { temperature: 0.0, repetition_penalty: 2.0, ..Default::default() };
        assert_eq!(Sampler::new(p, &[1]).sample(&mut logits()).token, 4);
        let p = SamplingParams { temperature: 0.0, frequency_penalty: 1.0, ..Default::default() };
        let mut s = Sampler::new(p, &[]);
        assert_eq!(s.sample(&mut logits()).token, 1);
        assert_eq!(s.sample(&mut logits()).token, 4);
    }

    #[test]
    fn logprobs_are_normalized_and_sorted() {
        let p = SamplingParams { temperature: 0.0, logprobs: Some(3), ..Default::default() };
        let out = Sampler::new(p, &[]).sample(&mut logits());
        let total: f32 = logits().iter().map(|&l| l.exp()).sum();
        assert!((out.logprob.unwrap() - (3.0f32.exp() / total).ln()).abs() < 1e-5);
        assert_eq!(out.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 4, 2]);
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
