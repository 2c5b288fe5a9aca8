//! What the bridge's kernel tests share: a small deterministic generator, and a lock for tests
//! that read the bridge's process-wide counters.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

use mlx::Array;

/// Tests that read a process-wide counter take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift: values uniform in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values.
    pub fn fill(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }

    /// A float32 array of `shape` filled with values.
    pub fn array(&mut self, shape: &[i32]) -> Array {
        let n = shape.iter().product::<i32>() as usize;
        Array::from_f32(&self.fill(n), shape).unwrap()
    }
}
