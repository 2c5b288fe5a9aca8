//! The CPU quantized kernel against MLX's own `quantized_matmul` on the products of a decode
//! step: each shape's weights 4-bit (and 8-bit) affine with float16 scales, 1 to 32 rows, timed
//! back to back in the same process, beside the same product on the weights expanded to float32
//! (what the engine runs for batches of a small model). Prints a Markdown table of microseconds
//! per product, the kernel's weight-rows per second and the ratio to MLX.
//!
//! Usage: bench-qmm [--trials N] [--rows 1,2,4] [--no-mlx]

#![allow(clippy::print_stdout)]

use std::time::Instant;

use clap::Parser;
use mlx::{Array, Dtype, ops};

#[derive(Parser)]
struct Args {
    /// Timed calls of the kernel per case (MLX's own runs a tenth as many, at least 3).
    #[arg(short, long, default_value_t = 200)]
    trials: usize,
    /// Row counts to time.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3, 4, 8, 16, 32])]
    rows: Vec<usize>,
    /// Leave out MLX's own kernel (slow: a tenth of the trials still take most of the run).
    #[arg(long)]
    no_mlx: bool,
}

fn time(iters: usize, f: impl Fn() -> Array) -> f64 {
    f().eval().unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        f().eval().unwrap();
    }
    t.elapsed().as_secs_f64() / iters as f64
}

fn main() {
    let args = Args::parse();
    println!("CPU quantized products, {} threads (MLX {})", ops::cpu_qmm_threads(), mlx::version());
    println!("| out x in | bits | group | rows | kernel µs | float32 µs | MLX µs | kernel G weight-rows/s | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // SmolLM2's MLP up-projection and a Llama-3.2-1B one.
    for (n, k) in [(3072, 576), (8192, 2048)] {
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 500.0 - 1.0).collect();
        let w = Array::from_f32(&w, &[n as i32, k as i32]).unwrap();
        for (bits, gs) in [(4, 32), (4, 64), (8, 64)] {
            let (q, s, b) = ops::quantize(&w, gs, bits).unwrap();
            let (s, b) = (ops::astype(&s, Dtype::F16).unwrap(), ops::astype(&b, Dtype::F16).unwrap());
            for a in [&q, &s, &b] {
                a.eval().unwrap();
            }
            let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: gs, bits, mode: "affine" };
            let wide = ops::Quantization {
                scales: &ops::astype(&s, Dtype::F32).unwrap(),
                biases: Some(&ops::astype(&b, Dtype::F32).unwrap()),
                ..spec
            };
            let dense = ops::transpose(&ops::dequantize(&q, &wide, Dtype::F32).unwrap(), &[1, 0]).unwrap();
            dense.eval().unwrap();
            for &m in &args.rows {
                let x = Array::from_f32(&vec![0.5; m * k], &[m as i32, k as i32]).unwrap();
                let ours = time(args.trials, || ops::quantized_matmul(&x, &q, &spec, true).unwrap());
                let float = time(args.trials, || ops::matmul(&x, &dense).unwrap());
                let theirs = if args.no_mlx {
                    f64::NAN
                } else {
                    time((args.trials / 10).max(3), || ops::mlx_quantized_matmul(&x, &q, &spec).unwrap())
                };
                println!(
                    "| {n} x {k} | {bits} | {gs} | {m} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1}x |",
                    ours * 1e6,
                    float * 1e6,
                    theirs * 1e6,
                    (n * k * m) as f64 / ours / 1e9,
                    theirs / ours
                );
            }
        }
    }
}
