//! The float32 products of the BLAS shim (`mlx/cpp/cblas_shim.c`) as MLX reaches them through
//! `matmul(x, w.T)`: up to 16 rows they run the shim's own kernel, whose loops take four, two or
//! one input row at a time. Every output must be the same bits whatever the number of rows, since
//! the engine promises a sequence the same logits alone or in any batch; and the products must
//! agree with a plain sum (bound: 1e-5 · Σ|w·x|, float32 rounding over K ≤ 600).

mod common;

use common::Rng;
use mlx::ops;

#[test]
fn each_row_is_the_same_bits_for_any_row_count() {
    let mut rng = Rng(0x5EED_CB1A);
    // Inner sizes below, at and past the 16 lanes, with a tail; weight rows with a block tail.
    for &(k, n) in &[(7, 5), (16, 8), (100, 13), (576, 64)] {
        let w = rng.fill((n * k) as usize);
        let wa = mlx::Array::from_f32(&w, &[n, k]).unwrap();
        let wt = ops::transpose(&wa, &[1, 0]).unwrap();
        let rows = rng.fill((16 * k) as usize);
        let alone: Vec<Vec<f32>> = (0..16)
            .map(|i| {
                let x = mlx::Array::from_f32(&rows[i * k as usize..(i + 1) * k as usize], &[1, k]).unwrap();
                ops::matmul(&x, &wt).unwrap().to_f32().unwrap()
            })
            .collect();
        for m in 1..=16usize {
            let x = mlx::Array::from_f32(&rows[..m * k as usize], &[m as i32, k]).unwrap();
            let out = ops::matmul(&x, &wt).unwrap().to_f32().unwrap();
            for (i, single) in alone.iter().enumerate().take(m) {
                let got = &out[i * n as usize..(i + 1) * n as usize];
                let same = got.iter().zip(single).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "k={k} n={n}: row {i} of {m} differs from the row alone: {got:?} vs {single:?}");
                for (j, &o) in got.iter().enumerate() {
                    let terms = (0..k as usize).map(|t| w[j * k as usize + t] * rows[i * k as usize + t]);
                    let (sum, mag) = terms.fold((0.0f64, 0.0f64), |(s, a), v| (s + v as f64, a + v.abs() as f64));
                    let err = (o as f64 - sum).abs();
                    assert!(err <= 1e-5 * mag + 1e-7, "k={k} n={n} m={m}: output ({i}, {j}) {o} vs {sum}");
                }
            }
        }
    }
}
