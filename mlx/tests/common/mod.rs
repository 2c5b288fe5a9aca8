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

/// The vector paths narrower than this architecture's widest, which a machine with the widest
/// never picks: [`rerun_narrowed`] runs tests again on each.
pub const NARROWER_ISAS: &[&str] =
    if cfg!(target_arch = "aarch64") { &["neon", "portable"] } else { &["avx2", "portable"] };

/// Runs this test binary again with `ZETA_CPU_ISA=isa` (the vector paths a machine with wider ones
/// never picks) on `args` (test names and flags); asserts it passed and returns its stdout.
///
/// Under an emulator (`scripts/test-arm64.sh` runs the arm64 build in qemu-user, which cannot
/// start a foreign binary by itself) `ZETA_TEST_RUNNER` names the program to start it with.
pub fn rerun_narrowed(isa: &str, args: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("ZETA_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(words).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    let out = command.args(args).args(["--test-threads", "1"]).env("ZETA_CPU_ISA", isa).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{isa}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}
