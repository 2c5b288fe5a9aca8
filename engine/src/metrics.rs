//! Live figures of one engine, updated by its scheduler thread and read by anyone (the daemon's
//! status and metrics endpoints): queue depth, active sequences, token counters and latency
//! histograms.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// A cumulative histogram of durations, Prometheus style.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A consistent-enough copy of a [`Histogram`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations ≤ bound)`.
    pub buckets: Vec<(f64, u64)>,
    /// All observations.
    pub count: u64,
    /// Sum of observations in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: LATENCY_BUCKETS.iter().zip(&self.buckets).map(|(b, c)| (*b, c.load(Ordering::Relaxed))).collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Counters and gauges of one engine.
#[derive(Default)]
pub struct Stats {
    /// Requests waiting for a batch slot.
    pub queued: AtomicUsize,
    /// Sequences in the running batch.
    pub active: AtomicUsize,
    /// Requests accepted since load.
    pub requests: AtomicU64,
    /// Prompt tokens processed (prefill), excluding cached ones.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Forward passes run.
    pub steps: AtomicU64,
    /// Bytes reserved by KV caches of running sequences and the prefix cache.
    pub kv_bytes: AtomicUsize,
    /// Time to first token (from submission).
    pub ttft: Histogram,
    /// Time between consecutive tokens of a sequence.
    pub inter_token: Histogram,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    /// See [`Stats::queued`].
    pub queued: usize,
    /// See [`Stats::active`].
    pub active: usize,
    /// See [`Stats::requests`].
    pub requests: u64,
    /// See [`Stats::prompt_tokens`].
    pub prompt_tokens: u64,
    /// See [`Stats::cached_tokens`].
    pub cached_tokens: u64,
    /// See [`Stats::generated_tokens`].
    pub generated_tokens: u64,
    /// See [`Stats::steps`].
    pub steps: u64,
    /// See [`Stats::kv_bytes`].
    pub kv_bytes: usize,
    /// See [`Stats::ttft`].
    pub ttft: HistogramSnapshot,
    /// See [`Stats::inter_token`].
    pub inter_token: HistogramSnapshot,
}

impl Stats {
    /// Current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = Ordering::Relaxed;
        StatsSnapshot {
            queued: self.queued.load(r),
            active: self.active.load(r),
            requests: self.requests.load(r),
            prompt_tokens: self.prompt_tokens.load(r),
            cached_tokens: self.cached_tokens.load(r),
            generated_tokens: self.generated_tokens.load(r),
            steps: self.steps.load(r),
            kv_bytes: self.kv_bytes.load(r),
            ttft: self.ttft.snapshot(),
            inter_token: self.inter_token.snapshot(),
        }
    }
}
