//! What the bridge's kernel tests share: a small deterministic generator, a lock for tests that
//! read the bridge's process-wide counters, and reruns of a test binary on a narrower vector path.

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

/// Whether this process is a rerun narrowed by [`rerun_narrowed`] (which must not rerun again).
pub fn narrowed() -> bool {
    std::env::var_os("ZETA_CPU_ISA").is_some()
}

/// Runs this test binary again with `ZETA_CPU_ISA=isa` (the vector paths a machine with wider ones
/// never picks) on `args` (test names and flags); asserts it passed and returns its stdout.
pub fn rerun_narrowed(isa: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .args(["--test-threads", "1"])
        .env("ZETA_CPU_ISA", isa)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{isa}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}
