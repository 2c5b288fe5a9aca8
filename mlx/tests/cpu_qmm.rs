//! The bridge's CPU quantized kernel against MLX: `ops::quantized_matmul` (which routes small
//! float32 products on the CPU to the kernel) against MLX's own `quantized_matmul` and against
//! `dequantize` + `matmul`, on random shapes with odd sizes, every group size, 4 and 8 bits,
//! float32, float16 and bfloat16 scales, and rows that are not contiguous.
//!
//! Error bound: float32 sums of K products in a different order differ by at most about
//! K · 2⁻²⁴ · Σ|w·x|; the test allows 1e-4 · Σ|w·x| + 1e-6 per output, well above that for
//! K ≤ 640 and far below any real error (a wrong code or scale moves an output by a whole
//! |scale · x| term). 4-bit products with K a multiple of 64 quantize the activations to about
//! 23 bits (an int8 code and two int8 residuals per block of 32) for integer multiply-adds:
//! measured worst 0.004 of the bound, as on the float path (with one residual, 15 bits, it was
//! 0.14, and whole-model logits showed it: engine/tests/logits.rs).

mod common;

use common::{Rng, serial};

use mlx::{Array, Dtype, ops};

/// One product checked three ways; returns the worst error relative to the bound.
#[allow(clippy::too_many_arguments)]
fn check(rng: &mut Rng, m: i32, k: i32, n: i32, gs: i32, bits: i32, scale_dtype: Dtype, transposed_x: bool) -> f32 {
    let w = Array::from_f32(&rng.fill((n * k) as usize), &[n, k]).unwrap();
    let (q, s, b) = ops::quantize(&w, gs, bits).unwrap();
    let (s, b) = (ops::astype(&s, scale_dtype).unwrap(), ops::astype(&b, scale_dtype).unwrap());
    let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: gs, bits, mode: "affine" };
    let x = if transposed_x {
        let xt = Array::from_f32(&rng.fill((m * k) as usize), &[k, m]).unwrap();
        ops::transpose(&xt, &[1, 0]).unwrap()
    } else {
        Array::from_f32(&rng.fill((m * k) as usize), &[m, k]).unwrap()
    };
    let before = ops::cpu_qmm_calls();
    let ours = ops::quantized_matmul(&x, &q, &spec, true).unwrap();
    assert_eq!(ours.shape(), vec![m, n]);
    let ours = ours.to_f32().unwrap();
    // Up to 32 rows the kernel took the product (checked by its own count, since a fallback to
    // MLX would give the same values); past that, the dequantized GEMM did.
    assert_eq!(ops::cpu_qmm_calls() - before, u64::from(m <= 32), "m={m}: routed to the kernel");
    let mlx = ops::mlx_quantized_matmul(&x, &q, &spec).unwrap().to_f32().unwrap();
    // MLX dequantizes in the scales' type; the kernels compute in float32, so the dense
    // reference takes float32 scales.
    let (s32, b32) = (ops::astype(&s, Dtype::F32).unwrap(), ops::astype(&b, Dtype::F32).unwrap());
    let spec32 = ops::Quantization { scales: &s32, biases: Some(&b32), ..spec };
    let wd = ops::dequantize(&q, &spec32, Dtype::F32).unwrap();
    let dense = ops::matmul(&x, &ops::transpose(&wd, &[1, 0]).unwrap()).unwrap().to_f32().unwrap();
    let xs = x.to_f32().unwrap();
    let wv = wd.to_f32().unwrap();
    let mut worst = 0.0f32;
    for i in 0..m as usize {
        for j in 0..n as usize {
            let mag: f32 = (0..k as usize).map(|t| (wv[j * k as usize + t] * xs[i * k as usize + t]).abs()).sum();
            let bound = 1e-4 * mag + 1e-6;
            let o = ours[i * n as usize + j];
            for (name, r) in [
                ("MLX's quantized_matmul", mlx[i * n as usize + j]),
                ("dequantize + matmul", dense[i * n as usize + j]),
            ] {
                let err = (o - r).abs();
                assert!(
                    err <= bound,
                    "m={m} k={k} n={n} group {gs} {bits}-bit {scale_dtype:?} scales, row {i} col {j}: {o} vs {name} {r}"
                );
                worst = worst.max(err / bound);
            }
        }
    }
    worst
}

#[test]
fn the_cpu_kernel_matches_mlx_on_random_shapes() {
    let _serial = serial();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut worst = 0.0f32;
    let mut cases = 0;
    for &(gs, k) in &[(32, 96), (32, 32), (64, 192), (64, 640), (128, 384), (128, 128)] {
        for &bits in &[4, 8] {
            for &(m, n) in &[(1, 1), (1, 37), (3, 65), (16, 8), (32, 129), (5, 300), (33, 40)] {
                for (i, &dt) in [Dtype::F32, Dtype::F16, Dtype::BF16].iter().enumerate() {
                    let transposed = (m + n + i as i32) % 4 == 0;
                    worst = worst.max(check(&mut rng, m, k, n, gs, bits, dt, transposed));
                    cases += 1;
                }
            }
        }
    }
    eprintln!("{cases} products, worst error {worst:.3} of the bound, {} threads", ops::cpu_qmm_threads());
}

/// A row's result is the same bits whether it comes alone or with up to 31 others: the engine's
/// guarantee that a sequence decodes the same tokens in any batch rests on it.
#[test]
fn each_row_is_the_same_alone_or_batched() {
    let _serial = serial();
    let mut rng = Rng(99);
    for &(bits, gs, k, n, m) in &[(4, 32, 96, 70, 5), (4, 64, 192, 33, 32), (8, 64, 128, 20, 7), (4, 128, 256, 9, 16)] {
        let w = Array::from_f32(&rng.fill((n * k) as usize), &[n, k]).unwrap();
        let (q, s, b) = ops::quantize(&w, gs, bits).unwrap();
        let (s, b) = (ops::astype(&s, Dtype::BF16).unwrap(), ops::astype(&b, Dtype::BF16).unwrap());
        let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: gs, bits, mode: "affine" };
        let xs = rng.fill((m * k) as usize);
        let all = ops::quantized_matmul(&Array::from_f32(&xs, &[m, k]).unwrap(), &q, &spec, true).unwrap();
        let all = all.to_f32().unwrap();
        for i in 0..m as usize {
            let row = &xs[i * k as usize..(i + 1) * k as usize];
            let alone = ops::quantized_matmul(&Array::from_f32(row, &[1, k]).unwrap(), &q, &spec, true).unwrap();
            let alone = alone.to_f32().unwrap();
            let batched = &all[i * n as usize..(i + 1) * n as usize];
            let same = alone.iter().zip(batched).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{bits}-bit group {gs}: row {i} of {m} differs from the row alone");
        }
    }
}

/// Past 32 rows a float32 GEMM on the dequantized weights answers (the same values); rows of
/// another type go to MLX's own kernel.
#[test]
fn larger_batches_and_other_types_fall_back_to_mlx() {
    let _serial = serial();
    let mut rng = Rng(7);
    assert!(check(&mut rng, 33, 64, 40, 32, 4, Dtype::F16, false) <= 1.0);
    let w = Array::from_f32(&rng.fill(64 * 64), &[64, 64]).unwrap();
    let (q, s, b) = ops::quantize(&w, 64, 4).unwrap();
    let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: 64, bits: 4, mode: "affine" };
    let x = ops::astype(&Array::from_f32(&rng.fill(64), &[1, 64]).unwrap(), Dtype::F16).unwrap();
    let before = ops::cpu_qmm_calls();
    let y = ops::quantized_matmul(&x, &q, &spec, true).unwrap();
    y.eval().unwrap();
    assert_eq!(ops::cpu_qmm_calls(), before, "float16 rows are not the kernel's");
    let reference = ops::mlx_quantized_matmul(&x, &q, &spec).unwrap();
    assert_eq!(y.dtype(), reference.dtype());
    assert_eq!(y.to_f32().unwrap(), reference.to_f32().unwrap(), "float16 rows are MLX's own product");
}
