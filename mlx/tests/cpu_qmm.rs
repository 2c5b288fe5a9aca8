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
//! 0.14, and whole-model logits showed it: engine/tests/logits.rs). Products of three rows or
//! more take the tiles (float32 on weights dequantized in a buffer), on AVX-512 here, and on the
//! AVX2 and portable paths in a second run of this binary.

mod common;

use common::{NARROWER_ISAS, Rng, narrowed, rerun_narrowed, serial};

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
    for &(gs, k) in &[(32, 96), (32, 32), (32, 576), (32, 1056), (64, 192), (64, 640), (128, 384), (128, 128)] {
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

/// A row's result is the same bits in every batch of three rows or more (the tiles), and in a
/// batch of one or two (the integer path), and the two agree to float32's precision: the engine's
/// guarantee that a sequence decodes the same tokens in any batch rests on it.
#[test]
fn each_row_is_the_same_alone_or_batched() {
    let _serial = serial();
    let mut rng = Rng(99);
    // Rows per batch so that every pass size runs (the first pass takes 4, later ones up to 6).
    let cases = [
        (4, 32, 96, 70, 5),
        (4, 64, 192, 33, 32),
        (8, 64, 128, 20, 7),
        (4, 128, 256, 9, 16),
        (4, 32, 96, 70, 15),
        (8, 32, 64, 12, 6),
    ];
    for &(bits, gs, k, n, m) in &cases {
        let w = Array::from_f32(&rng.fill((n * k) as usize), &[n, k]).unwrap();
        let (q, s, b) = ops::quantize(&w, gs, bits).unwrap();
        let (s, b) = (ops::astype(&s, Dtype::BF16).unwrap(), ops::astype(&b, Dtype::BF16).unwrap());
        let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: gs, bits, mode: "affine" };
        let (s32, b32) = (ops::astype(&s, Dtype::F32).unwrap(), ops::astype(&b, Dtype::F32).unwrap());
        let spec32 = ops::Quantization { scales: &s32, biases: Some(&b32), ..spec };
        let wv = ops::dequantize(&q, &spec32, Dtype::F32).unwrap().to_f32().unwrap();
        let xs = rng.fill((m * k) as usize);
        let product = |rows: &[f32]| {
            let x = Array::from_f32(rows, &[(rows.len() / k as usize) as i32, k]).unwrap();
            ops::quantized_matmul(&x, &q, &spec, true).unwrap().to_f32().unwrap()
        };
        let all = product(&xs);
        let (k, n) = (k as usize, n as usize);
        for i in 0..m as usize {
            let row = &xs[i * k..(i + 1) * k];
            let batched = &all[i * n..(i + 1) * n];
            // The same row first in a batch of three, then alone and in a pair, second.
            let other = &xs[((i + 1) % m as usize) * k..][..k];
            let three = product(&[row, other, other].concat());
            let alone = product(row);
            let pair = product(&[other, row].concat());
            let bits_of = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits_of(&three[..n]), bits_of(batched), "{bits}-bit group {gs}: row {i} of {m} against 3");
            assert_eq!(bits_of(&pair[n..]), bits_of(&alone), "{bits}-bit group {gs}: row {i} alone against 2");
            for (j, (a, t)) in alone.iter().zip(batched).enumerate() {
                let mag: f32 = (0..k).map(|p| (wv[j * k + p] * row[p]).abs()).sum();
                assert!((a - t).abs() <= 2e-6 * mag + 1e-7, "row {i} col {j}: {a} alone, {t} batched");
            }
        }
    }
}

/// Past 32 rows a float32 GEMM on the dequantized weights answers (the same values), a block of
/// weight rows at a time; rows of another type go to MLX's own kernel.
#[test]
fn larger_batches_and_other_types_fall_back_to_mlx() {
    let _serial = serial();
    let mut rng = Rng(7);
    assert!(check(&mut rng, 33, 64, 40, 32, 4, Dtype::F16, false) <= 1.0);
    // Weights dequantized a block of rows at a time (1,024 rows of 2,048 here): three blocks, the
    // last one short, with strided rows of x.
    assert!(check(&mut rng, 40, 2048, 2500, 64, 4, Dtype::BF16, true) <= 1.0);
    assert!(check(&mut rng, 35, 2048, 1100, 128, 8, Dtype::F32, false) <= 1.0);
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

/// The narrower tiles (AVX2 and portable on x86-64, which a machine with AVX-512 never picks; the
/// float NEON tiles and portable on arm64, which a CPU with dot products uses only for three rows
/// or more) hold to the same bound and the same batch invariance: this test binary runs those two
/// tests again, narrowed to each.
#[test]
fn the_narrower_vector_paths_agree_too() {
    if narrowed() {
        return;
    }
    for &isa in NARROWER_ISAS {
        let tests = ["--exact", "the_cpu_kernel_matches_mlx_on_random_shapes", "each_row_is_the_same_alone_or_batched"];
        let stdout = rerun_narrowed(isa, &tests);
        assert!(stdout.contains("2 passed"), "{isa}: both tests ran: {stdout}");
    }
}

#[cfg(target_arch = "x86_64")]
/// One- and two-row 4-bit products (the integer path) on shapes whose chunks of 64 pair up or
/// leave one over, every group size and scale type, as one FNV-1a digest of their bits.
fn integer_path_digest() -> u64 {
    let mut rng = Rng(4242);
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &(gs, k) in &[(32, 576), (64, 576), (128, 1536), (32, 192), (64, 128)] {
        for (i, &dt) in [Dtype::F32, Dtype::F16, Dtype::BF16].iter().enumerate() {
            let n = 17 + i as i32;
            let w = Array::from_f32(&rng.fill((n * k) as usize), &[n, k]).unwrap();
            let (q, s, b) = ops::quantize(&w, gs, 4).unwrap();
            let (s, b) = (ops::astype(&s, dt).unwrap(), ops::astype(&b, dt).unwrap());
            let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: gs, bits: 4, mode: "affine" };
            for m in [1, 2] {
                let x = Array::from_f32(&rng.fill((m * k) as usize), &[m, k]).unwrap();
                for v in ops::quantized_matmul(&x, &q, &spec, true).unwrap().to_f32().unwrap() {
                    h = (h ^ u64::from(v.to_bits())).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
    }
    h
}

/// What the child process of the next test reports (on stdout, which the parent reads); ignored
/// in a plain run, where it could not fail.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "run by the_vnni_loop_gives_the_avx2_loops_bits, in a child process"]
#[allow(clippy::print_stdout)]
fn print_integer_path_digest() {
    let _serial = serial();
    println!("integer path digest: {:016x}", integer_path_digest());
}

/// The AVX-512 VNNI loop (on machines that have it, as this one) computes the AVX2 loop's bits:
/// the same integer sums and float operations, lane for lane. A sequence then decodes the same
/// tokens whichever of the two a machine runs, and alone or in a pair. (arm64 has one integer
/// loop, the dot-product one.)
#[cfg(target_arch = "x86_64")]
#[test]
fn the_vnni_loop_gives_the_avx2_loops_bits() {
    if narrowed() {
        return;
    }
    let ours = {
        let _serial = serial();
        format!("integer path digest: {:016x}", integer_path_digest())
    };
    let stdout = rerun_narrowed("avx2", &["--exact", "print_integer_path_digest", "--ignored", "--nocapture"]);
    assert!(stdout.contains(&ours), "AVX2: {stdout}\nthis machine's widest path: {ours}");
}
