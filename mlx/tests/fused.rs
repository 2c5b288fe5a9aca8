//! The fused CPU layers (`mlx::fused`) against MLX's own operations on random inputs: RMSNorm with
//! and without the residual add, both gated activations, the rows' argmax (exactly MLX's where no NaN is), and the decode rows' rope + KV write +
//! attention over grouped heads, partial rotation, both rope layouts, q/k norms, sinks, a sliding
//! window and rows of different lengths (a row's output the same bits alone as in any batch, on
//! each vector path); the cache written in place when nothing else holds it, and left untouched
//! when something does.
//!
//! Error bound: 2e-5 + 2e-5·|reference| per output. Both sides compute in float32; sums run in a
//! different order and sines come from another implementation, which moves results by a few ulps
//! (measured: under 3e-6); a wrong position, slot, head or mask moves them by whole units.

mod common;

use common::{NARROWER_ISAS, Rng, narrowed, rerun_narrowed, serial};

use mlx::fused::{self, DecodeAttention, Gate};
use mlx::{Array, ArrayList, Dtype, ops};

fn close(what: &str, ours: &Array, reference: &Array) {
    let (a, b) = (ours.to_f32().unwrap(), reference.to_f32().unwrap());
    assert_eq!(ours.shape(), reference.shape(), "{what}: shape");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 2e-5 + 2e-5 * y.abs(), "{what}: element {i}: {x} vs MLX {y}");
    }
}

#[test]
fn norms_and_gates_match_mlx() {
    let mut rng = Rng(7);
    for shape in [vec![1, 576], vec![3, 5, 96], vec![7, 33]] {
        let d = *shape.last().unwrap();
        let (x, y, w) = (rng.array(&shape), rng.array(&shape), rng.array(&[d]));
        close("rms_norm", &fused::rms_norm(&x, &w, 1e-5).unwrap(), &ops::rms_norm(&x, &w, 1e-5).unwrap());
        let (sum, normed) = fused::add_rms_norm(&x, &y, &w, 1e-6).unwrap();
        let reference = ops::add(&x, &y).unwrap();
        assert_eq!(sum.to_f32().unwrap(), reference.to_f32().unwrap(), "the residual sum is exact");
        close("add_rms_norm", &normed, &ops::rms_norm(&reference, &w, 1e-6).unwrap());
        // A strided view (rows of a transpose) reads as its logical rows.
        let t = ops::transpose(&rng.array(&[d, 4]), &[1, 0]).unwrap();
        close("rms_norm of a view", &fused::rms_norm(&t, &w, 1e-5).unwrap(), &ops::rms_norm(&t, &w, 1e-5).unwrap());

        // Gates far out in both directions too, where e^-g underflows or overflows float32.
        let mut gv = rng.fill((shape[0] * 2 * d) as usize);
        for (i, v) in [-1000.0, -200.0, -90.0, -30.0, 30.0, 90.0, 200.0, 1000.0].into_iter().enumerate() {
            gv[i * 3 % d as usize] = v;
        }
        let gu = Array::from_f32(&gv, &[shape[0], 2 * d]).unwrap();
        let gate = ops::slice_axis(&gu, 1, 0, d).unwrap();
        let up = ops::slice_axis(&gu, 1, d, 2 * d).unwrap();
        let silu = ops::multiply(&ops::silu(&gate).unwrap(), &up).unwrap();
        close("silu gate", &fused::gated_act(&gu, Gate::Silu).unwrap(), &silu);
        let c = |v: f32| Array::scalar_f32(v).unwrap();
        let cube = ops::multiply(&ops::multiply(&gate, &gate).unwrap(), &gate).unwrap();
        let inner = ops::add(&gate, &ops::multiply(&c(0.044715), &cube).unwrap()).unwrap();
        let th = ops::tanh(&ops::multiply(&c((2.0f64 / std::f64::consts::PI).sqrt() as f32), &inner).unwrap()).unwrap();
        let gelu = ops::multiply(&ops::multiply(&c(0.5), &gate).unwrap(), &ops::add(&c(1.0), &th).unwrap()).unwrap();
        close("gelu gate", &fused::gated_act(&gu, Gate::GeluTanh).unwrap(), &ops::multiply(&gelu, &up).unwrap());
    }
}

/// The bridge's argmax answers as MLX's on every row without NaN: random logits, the largest value
/// repeated (the first one wins), rows of -inf, +0 against -0, widths around the vector sizes,
/// rows enough for the thread pool, and a strided view. NaNs never win (a NaN first gives 0):
/// MLX's CPU build, compiled for speed, picks a NaN in some rows and not in others.
#[test]
fn argmax_matches_mlx() {
    let mut rng = Rng(11);
    for (rows, width) in [(1, 1), (3, 7), (5, 16), (4, 33), (2, 100), (16, 49152), (1, 49152)] {
        let mut x = rng.fill((rows * width) as usize);
        let w = width as usize;
        let mut with_nan = vec![];
        for r in 0..rows as usize {
            let row = &mut x[r * w..(r + 1) * w];
            match r % 8 {
                1 if w > 3 => {
                    // The largest value twice: MLX keeps the first.
                    let i = first_max(row);
                    row[(i + w / 2) % w] = row[i];
                }
                2 => {
                    row[0] = f32::NAN;
                    with_nan.push((r, 0));
                }
                3 if w > 2 => {
                    row[w - 1] = f32::NAN;
                    row[w / 2] = f32::NAN;
                    with_nan.push((r, first_max(row)));
                }
                4 => row.fill(f32::NEG_INFINITY),
                5 if w > 2 => {
                    row.fill(-1.0);
                    row[1] = -0.0;
                    row[w - 1] = 0.0;
                }
                6 if w > 20 => row[w - 3] = 1e30,
                _ => {}
            }
        }
        let a = Array::from_f32(&x, &[rows, width]).unwrap();
        let ours = fused::argmax(&a).unwrap();
        assert_eq!(ours.shape(), vec![rows], "shape");
        let (ours, mut theirs) = (ours.to_u32().unwrap(), ops::argmax(&a, -1, false).unwrap().to_u32().unwrap());
        for &(r, i) in &with_nan {
            assert_eq!(ours[r] as usize, i, "{rows} x {width}: row {r} has NaNs");
            theirs[r] = ours[r];
        }
        assert_eq!(ours, theirs, "{rows} x {width}");
    }
    let t = ops::transpose(&rng.array(&[40, 6]), &[1, 0]).unwrap();
    assert_eq!(fused::argmax(&t).unwrap().to_u32().unwrap(), ops::argmax(&t, -1, false).unwrap().to_u32().unwrap());
}

/// The first index of the largest value that is not NaN.
fn first_max(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

/// One attention configuration.
#[derive(Clone, Copy)]
struct Case {
    heads: i32,
    kv_heads: i32,
    head_dim: i32,
    rope_dims: i32,
    traditional: bool,
    norms: bool,
    sinks: bool,
    window: i32,
    /// Factor on the new rows' queries, keys and values: large, a row's scores spread over
    /// hundreds, and most of their exponentials are below float32's range.
    gain: f32,
    /// Rows' lengths (each ending at its own new slot).
    lens: &'static [i32],
}

/// Rows of different lengths over a cache of random earlier keys: ours against MLX's rope,
/// scatter, gather and attention; and each row's output the same bits alone as in the batch.
fn attention_case(rng: &mut Rng, c: &Case) {
    let (nh, nkv, hd) = (c.heads, c.kv_heads, c.head_dim);
    let lens = c.lens;
    let b = lens.len() as i32;
    let width = *lens.iter().max().unwrap();
    // The slot lists interleave, each row's at its own stride.
    let mut gather = vec![0u32; (b * width) as usize];
    let mut next = 1u32;
    for (r, &len) in lens.iter().enumerate() {
        for j in 0..len as usize {
            gather[r * width as usize + j] = next;
            next += 2 + (r % 3) as u32;
        }
    }
    let slots = next as i32 + 1;
    let keys = rng.array(&[slots, nkv, hd]);
    let values = rng.array(&[slots, nkv, hd]);
    let kv = ops::stack(&[&keys, &values], 1).unwrap();
    ArrayList::of([&keys, &values, &kv]).eval().unwrap();
    let write: Vec<u32> =
        lens.iter().enumerate().map(|(r, &len)| gather[r * width as usize + len as usize - 1]).collect();
    let positions: Vec<i32> = lens.iter().map(|&l| l - 1).collect();
    let w = width;
    let raw: Vec<f32> = rng.fill((b * (nh + 2 * nkv) * hd) as usize).iter().map(|v| v * c.gain).collect();
    let qkv = Array::from_f32(&raw, &[b, (nh + 2 * nkv) * hd]).unwrap();
    qkv.eval().unwrap();
    let base = 10000f32;
    let half = c.rope_dims / 2;
    let inv: Vec<f32> = (0..half).map(|i| (-(i as f32) * base.ln() / half as f32).exp()).collect();
    let inv = Array::from_f32(&inv, &[half]).unwrap();
    let (q_norm, k_norm) = (rng.array(&[hd]), rng.array(&[hd]));
    let sinks = rng.array(&[nh]);
    let pos = Array::from_i32(&positions, &[b]).unwrap();
    let write_arr = Array::from_u32(&write, &[b]).unwrap();
    let gather_arr = Array::from_u32(&gather, &[b * w]).unwrap();
    let lens_arr = Array::from_i32(lens, &[b, 1, 1, 1]).unwrap();
    let scale = 1.0 / (hd as f32).sqrt();

    // Ours on rows `from..to` of the batch.
    let ours = |from: usize, to: usize| {
        let n = (to - from) as i32;
        let span = |v: &[u32], per: usize| v[from * per..to * per].to_vec();
        let qkv = ops::slice_axis(&qkv, 0, from as i32, to as i32).unwrap();
        let (pos, write) =
            (Array::from_i32(&positions[from..to], &[n]).unwrap(), Array::from_u32(&span(&write, 1), &[n]).unwrap());
        let gather = Array::from_u32(&span(&gather, w as usize), &[n * w]).unwrap();
        let lens = Array::from_i32(&lens[from..to], &[n, 1, 1, 1]).unwrap();
        let (out, kv2) = fused::decode_attention(&DecodeAttention {
            qkv: &qkv,
            kv: &kv,
            positions: &pos,
            write: &write,
            gather: &gather,
            lens: &lens,
            inv_freqs: &inv,
            q_norm: c.norms.then_some((&q_norm, 1e-6)),
            k_norm: c.norms.then_some((&k_norm, 1e-6)),
            sinks: c.sinks.then_some(&sinks),
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            rope_dims: c.rope_dims,
            traditional: c.traditional,
            pos_scale: 1.0,
            mscale: 1.0,
            scale,
            window: c.window,
        })
        .unwrap();
        ArrayList::of([&out, &kv2]).eval().unwrap();
        (out, kv2)
    };
    let (out, kv2) = ours(0, lens.len());
    let half = |i: i32| ops::reshape(&ops::slice_axis(&kv2, 1, i, i + 1).unwrap(), &[slots, nkv, hd]).unwrap();
    let (k2, v2) = (half(0), half(1));
    let all = out.to_f32().unwrap();
    let row = (nh * hd) as usize;
    for r in 0..lens.len() {
        let alone = ours(r, r + 1).0.to_f32().unwrap();
        assert_eq!(alone, all[r * row..(r + 1) * row], "row {r} of {b}: alone and batched differ");
    }

    // The same with MLX's operations.
    let heads = |from: i32, n: i32, norm: Option<&Array>, rotate: bool| -> Array {
        let mut x =
            ops::reshape(&ops::slice_axis(&qkv, 1, from * hd, (from + n) * hd).unwrap(), &[b, n, 1, hd]).unwrap();
        if let Some(w) = norm {
            x = ops::rms_norm(&x, w, 1e-6).unwrap();
        }
        if rotate {
            x = ops::rope_rows(&x, c.rope_dims, c.traditional, base, 1.0, &pos).unwrap();
        }
        x
    };
    let q = heads(0, nh, c.norms.then_some(&q_norm), true);
    let k = heads(nh, nkv, c.norms.then_some(&k_norm), true);
    let v = heads(nh + nkv, nkv, None, false);
    let kr = ops::scatter(&keys, &write_arr, &ops::reshape(&k, &[b, 1, nkv, hd]).unwrap(), 0).unwrap();
    let vr = ops::scatter(&values, &write_arr, &ops::reshape(&v, &[b, 1, nkv, hd]).unwrap(), 0).unwrap();
    close("keys written", &k2, &kr);
    close("values written", &v2, &vr);
    let rows = |buf: &Array| {
        let r = ops::reshape(&ops::take(buf, &gather_arr, 0).unwrap(), &[b, w, nkv, hd]).unwrap();
        ops::transpose(&r, &[0, 2, 1, 3]).unwrap()
    };
    let cols = ops::reshape(&Array::arange(0, w).unwrap(), &[1, 1, 1, w]).unwrap();
    let mut mask = ops::less(&cols, &lens_arr).unwrap();
    if c.window > 0 {
        let from = ops::subtract(&lens_arr, &Array::scalar_i32(c.window).unwrap()).unwrap();
        mask = ops::logical_and(&mask, &ops::greater_equal(&cols, &from).unwrap()).unwrap();
    }
    let reference = if c.sinks {
        ops::scaled_dot_product_attention_sinks(&q, &rows(&kr), &rows(&vr), scale, "", Some(&mask), &sinks).unwrap()
    } else {
        ops::scaled_dot_product_attention_masked(&q, &rows(&kr), &rows(&vr), scale, &mask).unwrap()
    };
    close("attention", &out, &ops::reshape(&reference, &[b, nh * hd]).unwrap());
}

#[test]
fn decode_attention_matches_mlx() {
    let _g = serial();
    let mut rng = Rng(11);
    let plain = Case {
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        rope_dims: 16,
        traditional: false,
        norms: false,
        sinks: false,
        window: 0,
        gain: 1.0,
        lens: &[9, 17, 1],
    };
    attention_case(&mut rng, &plain);
    attention_case(&mut rng, &Case { traditional: true, rope_dims: 8, ..plain });
    attention_case(&mut rng, &Case { heads: 6, kv_heads: 3, head_dim: 24, norms: true, rope_dims: 24, ..plain });
    attention_case(&mut rng, &Case { sinks: true, window: 5, ..plain });
    attention_case(&mut rng, &Case { heads: 3, kv_heads: 3, head_dim: 8, rope_dims: 4, window: 40, ..plain });
    // SmolLM2's heads (9 over 3 kv heads of 64), four rows and more: a row's kv heads are taken
    // together; lengths around whole blocks of 16 positions.
    let smol = Case { heads: 9, kv_heads: 3, head_dim: 64, rope_dims: 64, lens: &[16, 33, 1, 47, 15], ..plain };
    attention_case(&mut rng, &smol);
    attention_case(&mut rng, &Case { sinks: true, window: 20, ..smol });
    // Scores hundreds apart: the softmax's exponentials underflow to zero (the AVX-512 path's own
    // e^x clamps there) and the row's attention is nearly one position's value.
    attention_case(&mut rng, &Case { gain: 40.0, ..smol });
    attention_case(&mut rng, &Case { gain: 40.0, sinks: true, ..smol });
    // Eight heads per kv head of 128 (gpt-oss-like): heads and chunks in more than one block.
    attention_case(
        &mut rng,
        &Case { heads: 16, kv_heads: 2, head_dim: 128, rope_dims: 64, norms: true, lens: &[70, 3, 18, 31], ..plain },
    );
}

/// The narrower gate, attention and argmax paths (AVX2 and portable on x86-64; NEON and portable
/// on arm64) hold to the same bounds and answers and give a row the same bits alone and batched:
/// this test binary runs those tests again, narrowed to each.
#[test]
fn the_narrower_paths_agree_too() {
    if narrowed() {
        return;
    }
    for &isa in NARROWER_ISAS {
        let tests = ["--exact", "norms_and_gates_match_mlx", "decode_attention_matches_mlx", "argmax_matches_mlx"];
        let stdout = rerun_narrowed(isa, &tests);
        assert!(stdout.contains("3 passed"), "{isa}: the tests ran: {stdout}");
    }
}

/// A step's attention on the cache `kv` writing one row at slot 3.
fn write_one(kv: &Array, value: f32) -> mlx::Result<(Array, Array)> {
    let qkv = Array::full(&[1, 4 * 8], value, Dtype::F32).unwrap();
    let one = |v: i32| Array::from_i32(&[v], &[1]).unwrap();
    let inv = Array::from_f32(&[1.0, 0.5, 0.25, 0.125], &[4]).unwrap();
    let slots = Array::from_u32(&[3], &[1]).unwrap();
    fused::decode_attention(&DecodeAttention {
        qkv: &qkv,
        kv,
        positions: &one(0),
        write: &slots,
        gather: &slots,
        lens: &one(1),
        inv_freqs: &inv,
        q_norm: None,
        k_norm: None,
        sinks: None,
        heads: 2,
        kv_heads: 1,
        head_dim: 8,
        rope_dims: 8,
        traditional: false,
        pos_scale: 1.0,
        mscale: 1.0,
        scale: 1.0,
        window: 0,
    })
}

#[test]
fn the_cache_is_written_in_place_only_when_no_one_else_holds_it() {
    let _g = serial();
    let fresh = || {
        let a = Array::full(&[16, 2, 1, 8], 0.0, Dtype::F32).unwrap();
        let a = ops::add(&a, &Array::scalar_f32(0.0).unwrap()).unwrap();
        a.eval().unwrap();
        a
    };
    // Slot 3's keys (rotated at position 0: unchanged) and values.
    let slot3 = |kv: &Array| kv.to_f32().unwrap()[48..64].to_vec();
    // The pool's way: the old cache is replaced by the new one, so MLX can donate it.
    let mut kv = fresh();
    let before = fused::attention_buffer_copies();
    for step in 0..3 {
        let (o, next) = write_one(&kv, step as f32 + 1.0).unwrap();
        kv = next;
        ArrayList::of([&o, &kv]).eval().unwrap();
        assert_eq!(slot3(&kv), [step as f32 + 1.0; 16], "slot 3 written");
    }
    assert_eq!(fused::attention_buffer_copies(), before, "a cache no one else held was copied");

    // Someone still holds the old cache: it must keep its contents, so the node copies.
    let held = fresh();
    let (o, next) = write_one(&held, 5.0).unwrap();
    ArrayList::of([&o, &next]).eval().unwrap();
    assert_eq!(fused::attention_buffer_copies(), before + 1);
    assert!(held.to_f32().unwrap().iter().all(|&x| x == 0.0), "the held cache changed");
    assert_eq!(slot3(&next), [5.0; 16]);
}

#[test]
fn bad_inputs_are_errors() {
    let x = Array::full(&[2, 8], 1.0, Dtype::F32).unwrap();
    let half = ops::astype(&x, Dtype::F16).unwrap();
    let err = fused::rms_norm(&half, &Array::full(&[8], 1.0, Dtype::F16).unwrap(), 1e-5).unwrap_err();
    assert!(err.message.contains("float32"), "{err}");
    let err = fused::rms_norm(&x, &Array::full(&[7], 1.0, Dtype::F32).unwrap(), 1e-5).unwrap_err();
    assert!(err.message.contains("weight"), "{err}");
    let err = fused::gated_act(&Array::full(&[2, 7], 1.0, Dtype::F32).unwrap(), Gate::Silu).unwrap_err();
    assert!(err.message.contains("even"), "{err}");
    let err = fused::argmax(&half).unwrap_err();
    assert!(err.message.contains("float32"), "{err}");
    assert!(fused::argmax(&Array::full(&[2, 0], 0.0, Dtype::F32).unwrap()).is_err(), "an empty row has no argmax");
    // Caches of the wrong head size, of the old layout (keys alone), and of the wrong type.
    let bad = Array::full(&[16, 2, 1, 4], 0.0, Dtype::F32).unwrap();
    let err = write_one(&bad, 1.0).unwrap_err();
    assert!(err.message.contains("[slots, 2, kv_heads, head_dim]"), "{err}");
    assert!(write_one(&Array::full(&[16, 1, 8], 0.0, Dtype::F32).unwrap(), 1.0).is_err());
    assert!(write_one(&Array::full(&[16, 2, 1, 8], 0.0, Dtype::F16).unwrap(), 1.0).is_err());
}
