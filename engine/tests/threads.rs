//! An engine leaves no thread behind: loading and dropping models (what unloading and eviction
//! do in a long-lived daemon) keeps the process's thread count flat. Alone in its test binary,
//! so no other test's threads come and go while it counts.

mod common;

use zeta_engine::{Engine, EngineOptions, GenerateRequest, ModelSource, Prompt};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Loads the model, answers one request (so its thread evaluates on the device), drops it.
fn cycle(path: &std::path::Path) {
    let e = Engine::load(ModelSource::detect(path).unwrap(), EngineOptions::default(), |_, _| {}).unwrap();
    let mut r = GenerateRequest::new(Prompt::Tokens(vec![5, 17, 42]));
    r.max_tokens = Some(4);
    let mut g = e.submit(r).unwrap();
    while let Some(ev) = g.blocking_next() {
        if let zeta_engine::Event::Error(err) = ev {
            panic!("{err}");
        }
    }
    drop(e);
}

#[test]
fn dropped_engines_leave_no_threads() {
    if !cfg!(target_os = "linux") {
        return; // counted from /proc
    }
    let path = common::tiny("llama-f32");
    // The first one starts what MLX keeps for the process (its CPU pools).
    cycle(&path);
    let before = threads();
    for _ in 0..4 {
        cycle(&path);
    }
    // No more than before (a leak grew one per engine); a pool thread of the test harness or
    // the first cycle may finish meanwhile, which is no leak.
    let after = threads();
    assert!(after <= before, "threads after four more engines came and went: {after}, before: {before}");
}
