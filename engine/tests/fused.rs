//! The CPU's fused layers (`mlx::fused`) on SmolLM2: a decode step is a few hundred MLX nodes
//! instead of thousands, gives the logits MLX's own expansions give, and writes the KV cache in
//! place (the attention node never copies a layer's buffers).

mod common;

use zeta_engine::model::Shapes;
use zeta_engine::{LoadOptions, ModelSource, load_local};

/// Greedy decode of `steps` tokens after `prompt`: per step, the logits and the graph's node count.
fn decode(fused: bool, prompt: &[u32], steps: usize) -> Vec<(Vec<f32>, usize)> {
    let opts = LoadOptions { fused, ..Default::default() };
    let m = load_local(&ModelSource::Gguf(common::smol_gguf()), &opts, |_, _| {}).unwrap();
    assert_eq!(m.model.fused, fused);
    let mut pool = m.model.new_pool(None);
    let mut slots = common::Slots::default();
    let shapes = Shapes::for_device();
    let mut logits = common::step(&m.model, &mut pool, &shapes, &mut [(&mut slots, prompt, false)]).remove(0);
    let mut out = Vec::new();
    for _ in 0..steps {
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        let (mut rows, nodes) =
            common::step_counted(&m.model, &mut pool, &shapes, &mut [(&mut slots, &[next][..], true)]);
        logits = rows.remove(0);
        out.push((logits.clone(), nodes));
    }
    out
}

#[test]
fn fused_decode_is_small_exact_and_in_place() {
    let prompt: Vec<u32> = (0..24).map(|i| 100 + 37 * i).collect();
    let copies = mlx::fused::attention_buffer_copies();
    let fused = decode(true, &prompt, 6);
    assert_eq!(mlx::fused::attention_buffer_copies(), copies, "a decode step copied a KV buffer");
    let unfused = decode(false, &prompt, 6);
    let (small, large) = (fused[0].1, unfused[0].1);
    eprintln!("SmolLM2 decode step: {small} MLX nodes fused, {large} with MLX's expansions");
    // Ten per layer (two norms, four products, the gated activation, two KV writes, attention),
    // the embedding (two), the final norm and the output projection.
    assert!(small <= 10 * 30 + 4, "a fused decode step is {small} nodes");
    assert!(large > 3 * small, "MLX's expansions gave only {large} nodes: is the count counting?");
    for (i, ((a, _), (b, _))) in fused.iter().zip(&unfused).enumerate() {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!("step {i}: max |Δlogit| fused vs MLX's expansions {worst:.2e}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-3 + 1e-4 * y.abs(), "step {i}: fused {x} vs {y}");
        }
    }
}
