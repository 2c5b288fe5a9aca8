//! The KV pool's per-step write happens in place: a step that writes a few rows into a large
//! pool must not copy the pool (MLX copies a buffer it cannot donate). Measured with MLX's own
//! peak-memory counter, which is process-wide: this file holds one test so nothing else runs in
//! its process.

use mlx::{Array, ArrayList, Dtype};
use zeta_engine::kv_cache::KvPool;

#[test]
fn writes_do_not_copy_the_pool() {
    let (heads, dim, slots) = (8, 128, 4096);
    let mut pool = KvPool::new(2, heads, dim, Dtype::F32, None);
    pool.grow(slots).unwrap();
    ArrayList::of(pool.arrays()).eval().unwrap();
    let buffer = slots * heads * dim * 4;
    let mut held = Vec::new();
    for step in 0..4 {
        let rows = pool.alloc(4).unwrap();
        let idx = Array::from_u32(&rows, &[4]).unwrap();
        let kv = Array::full(&[4, heads as i32, 1, dim as i32], step as f32, Dtype::F32).unwrap();
        mlx::reset_peak_memory();
        let before = mlx::active_memory();
        for layer in 0..2 {
            pool.write(layer, &idx, &kv, &kv).unwrap();
        }
        let (k, _) = pool.gather(1, &idx, 1, 4).unwrap();
        let mut list = ArrayList::of(pool.arrays());
        list.push(&k);
        list.eval().unwrap();
        let grew = mlx::peak_memory().saturating_sub(before);
        assert!(grew < buffer / 4, "step {step}: peak memory grew by {grew} bytes; a pool buffer is {buffer}");
        assert_eq!(k.to_f32().unwrap()[0], step as f32, "the rows were written");
        held.push(rows);
    }
}
