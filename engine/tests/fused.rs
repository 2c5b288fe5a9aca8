//! The CPU's fused layers (`mlx::fused`) on SmolLM2: a decode step is a few hundred MLX nodes
//! instead of thousands, gives the logits MLX's own expansions give, and writes the KV cache in
//! place (the attention node never copies a layer's buffers). And the default load keeps the
//! packed weights beside the float32 expansion: steps of up to 32 rows take the CPU quantized
//! kernel, longer prompt chunks the expansion; there, a decode step runs each layer as three
//! nodes that give the separate nodes' bits. One test: the counters it reads are process-wide.

mod common;

use zeta_engine::model::Shapes;
use zeta_engine::{DenseMode, LoadOptions, ModelSource, load_local};

/// Greedy decode of `steps` tokens after `prompt`: per step, the logits and the graph's node
/// count; and the quantized kernel's products in the prefill and in the decode steps.
fn decode(fused: bool, dense: DenseMode, prompt: &[u32], steps: usize) -> (Vec<(Vec<f32>, usize)>, u64, u64) {
    decode_with(fused, dense, true, prompt, steps)
}

/// [`decode`], with the whole-layer nodes of decode steps on or off.
fn decode_with(
    fused: bool,
    dense: DenseMode,
    layer_nodes: bool,
    prompt: &[u32],
    steps: usize,
) -> (Vec<(Vec<f32>, usize)>, u64, u64) {
    let opts = LoadOptions { fused, dense, ..Default::default() };
    let pinned = mlx::pinned_bytes();
    let mut m = load_local(&ModelSource::Gguf(common::smol_gguf()), &opts, |_, _| {}).unwrap();
    assert_eq!(m.model.fused, fused);
    // The packed weights the CPU kernel streams (98 MB: the 4-bit layers and the 8-bit tied
    // embedding) are moved into 2 MB pages at load; the float32 expansion is not.
    if dense == DenseMode::Auto && !mlx::gpu_available() {
        let moved = mlx::pinned_bytes() - pinned;
        assert!(moved > 90_000_000, "{moved} bytes of packed weights in 2 MB pages");
    }
    m.model.layer_nodes = layer_nodes;
    let mut pool = m.model.new_pool(None);
    let mut slots = common::Slots::default();
    let shapes = Shapes::for_device();
    let calls = mlx::ops::cpu_qmm_calls();
    let mut logits = common::step(&m.model, &mut pool, &shapes, &mut [(&mut slots, prompt, false)]).remove(0);
    let prefill_calls = mlx::ops::cpu_qmm_calls() - calls;
    let calls = mlx::ops::cpu_qmm_calls();
    let mut out = Vec::new();
    for _ in 0..steps {
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        let (mut rows, nodes) =
            common::step_counted(&m.model, &mut pool, &shapes, &mut [(&mut slots, &[next][..], true)]);
        logits = rows.remove(0);
        out.push((logits.clone(), nodes));
    }
    (out, prefill_calls, mlx::ops::cpu_qmm_calls() - calls)
}

#[test]
fn fused_decode_is_small_exact_and_in_place() {
    let prompt: Vec<u32> = (0..24).map(|i| 100 + 37 * i).collect();
    let copies = mlx::fused::attention_buffer_copies();
    // The fused layers against MLX's expansions, both on float32 weights: the quantized
    // kernel's integer activations would add their own rounding (checked against mlx-lm by the
    // SmolLM2 test).
    let (fused, _, _) = decode(true, DenseMode::Always, &prompt, 6);
    assert_eq!(mlx::fused::attention_buffer_copies(), copies, "a decode step copied a KV buffer");
    let (unfused, _, _) = decode(false, DenseMode::Always, &prompt, 6);
    let (small, large) = (fused[0].1, unfused[0].1);
    eprintln!("SmolLM2 decode step: {small} MLX nodes fused, {large} with MLX's expansions");
    // Nine per layer (two norms, four products, the gated activation, the KV write, attention),
    // the embedding (two), the final norm and the output projection.
    assert!(small <= 9 * 30 + 4, "a fused decode step is {small} nodes");
    assert!(large > 3 * small, "MLX's expansions gave only {large} nodes: is the count counting?");
    for (i, ((a, _), (b, _))) in fused.iter().zip(&unfused).enumerate() {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!("step {i}: max |Δlogit| fused vs MLX's expansions {worst:.2e}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-3 + 1e-4 * y.abs(), "step {i}: fused {x} vs {y}");
        }
    }

    // The default load keeps both weight forms.
    let (both, prefill_calls, decode_calls) = decode(true, DenseMode::Auto, &prompt, 6);
    // Per layer the q/k/v, output, gate/up and down products, and the tied output projection.
    let per_step = 4 * 30 + 1;
    // Up to 32 rows every product reads the packed weights: a 24-token chunk too.
    assert_eq!(prefill_calls, per_step, "a 24-token chunk's products");
    assert_eq!(decode_calls, 6 * per_step, "every product of a decode step reads packed weights");
    // A 40-token chunk multiplies the expansion; only the output projection of its last row, the
    // one whose logits are wanted, reads packed weights.
    let long: Vec<u32> = (0..40).map(|i| 100 + 37 * i).collect();
    let (_, long_calls, _) = decode(true, DenseMode::Auto, &long, 1);
    assert_eq!(long_calls, 1, "a 40-token chunk's products");
    assert!(both[0].1 <= small, "the packed products add nodes");

    // On packed weights a decode step runs each layer as three nodes (norm + q/k/v product, the
    // cache write, the rest of the layer), computing what the separate nodes compute: the same
    // bits, the same products, no buffer copied.
    let (separate, _, separate_calls) = decode_with(true, DenseMode::Auto, false, &prompt, 6);
    assert_eq!(separate_calls, decode_calls, "the separate nodes' products");
    let (whole, nodes) = (both[0].1, separate[0].1);
    eprintln!("SmolLM2 decode step on packed weights: {whole} MLX nodes in whole layers, {nodes} separate");
    // Three per layer, the embedding, and the final norm with the output projection.
    assert!(whole <= 3 * 30 + 8, "a whole-layer decode step is {whole} nodes");
    assert!(nodes > 2 * whole, "the separate nodes gave only {nodes} nodes: did the whole-layer path run?");
    for (i, ((a, _), (b, _))) in both.iter().zip(&separate).enumerate() {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "step {i}: whole layers changed the logits");
    }
    let worst = both.iter().zip(&fused).flat_map(|(a, b)| a.0.iter().zip(&b.0)).map(|(x, y)| (x - y).abs());
    eprintln!("packed against expanded weights: max |Δlogit| {:.2e}", worst.fold(0f32, f32::max));
    assert_eq!(mlx::fused::attention_buffer_copies(), copies, "a decode step copied a KV buffer");
    // Every model above is dropped: their pages went back with them.
    assert_eq!(mlx::pinned_bytes(), 0, "pinned weights outlived their model");
}
