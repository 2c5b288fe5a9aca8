//! MLX operations over [`Array`]s. Each builds a lazy graph node; nothing runs until an
//! evaluation (`Array::eval`, `ArrayList::eval`, or a read-back such as `Array::to_f32`).

use crate::Result;
use crate::array::{Array, ArrayList, Dtype};
use crate::ffi::ffi;

macro_rules! unary {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(a: &Array) -> Result<Array> {
            Array::wrap(stringify!($name), ffi::$name(a.raw()))
        }
    )*};
}

macro_rules! binary {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(a: &Array, b: &Array) -> Result<Array> {
            Array::wrap(stringify!($name), ffi::$name(a.raw(), b.raw()))
        }
    )*};
}

macro_rules! reduce {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
            Array::wrap(stringify!($name), ffi::$name(a.raw(), axis, keepdims))
        }
    )*};
}

unary!(
    /// e^x.
    exp,
    /// Natural logarithm.
    log,
    /// 1 / (1 + e^-x).
    sigmoid,
    /// x * sigmoid(x).
    silu,
    /// Hyperbolic tangent.
    tanh,
    /// Cosine.
    cos,
    /// Sine.
    sin,
    /// Error function.
    erf,
    /// Square root.
    sqrt,
    /// 1 / sqrt(x).
    rsqrt,
    /// x².
    square,
    /// -x.
    negative,
    /// A row-major contiguous copy (or the array itself when it already is).
    contiguous,
);

binary!(
    /// a + b, broadcasting.
    add,
    /// a - b, broadcasting.
    subtract,
    /// a * b, broadcasting.
    multiply,
    /// a / b, broadcasting.
    divide,
    /// Element-wise maximum.
    maximum,
    /// Integer division rounding down (integer arrays stay integer).
    floor_divide,
    /// Element-wise minimum.
    minimum,
    /// a > b.
    greater,
    /// a < b.
    less,
    /// a == b.
    equal,
    /// a >= b.
    greater_equal,
    /// a <= b.
    less_equal,
    /// Element-wise logical and of two boolean arrays.
    logical_and,
    /// Matrix product (batched over leading dimensions).
    matmul,
);

reduce!(
    /// Sum over one axis.
    sum,
    /// Maximum over one axis.
    max,
    /// Mean over one axis.
    mean,
    /// Index of the maximum over one axis (`u32`).
    argmax,
    /// log(sum(exp(a))) over one axis, computed stably.
    logsumexp,
);

/// `cond ? a : b`, element-wise.
pub fn where_(cond: &Array, a: &Array, b: &Array) -> Result<Array> {
    Array::wrap("where", ffi::where_(cond.raw(), a.raw(), b.raw()))
}

/// Converts to another element type.
pub fn astype(a: &Array, dtype: Dtype) -> Result<Array> {
    Array::wrap("astype", ffi::astype(a.raw(), dtype as u8))
}

/// Reshapes (one dimension may be -1).
pub fn reshape(a: &Array, shape: &[i32]) -> Result<Array> {
    Array::wrap("reshape", ffi::reshape(a.raw(), shape))
}

/// Permutes axes.
pub fn transpose(a: &Array, axes: &[i32]) -> Result<Array> {
    Array::wrap("transpose", ffi::transpose(a.raw(), axes))
}

/// Swaps two axes.
pub fn swapaxes(a: &Array, a1: i32, a2: i32) -> Result<Array> {
    Array::wrap("swapaxes", ffi::swapaxes(a.raw(), a1, a2))
}

/// Inserts a dimension of size 1.
pub fn expand_dims(a: &Array, axis: i32) -> Result<Array> {
    Array::wrap("expand_dims", ffi::expand_dims(a.raw(), axis))
}

/// Removes a dimension of size 1.
pub fn squeeze(a: &Array, axis: i32) -> Result<Array> {
    Array::wrap("squeeze", ffi::squeeze(a.raw(), axis))
}

/// `a[start:stop]` with unit strides, one entry per dimension.
pub fn slice(a: &Array, start: &[i32], stop: &[i32]) -> Result<Array> {
    let strides = vec![1; start.len()];
    Array::wrap("slice", ffi::slice(a.raw(), start, stop, &strides))
}

/// `a[start:stop:strides]`.
pub fn slice_strided(a: &Array, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
    Array::wrap("slice", ffi::slice(a.raw(), start, stop, strides))
}

/// Rows `[start, stop)` of `axis`, all of every other dimension.
pub fn slice_axis(a: &Array, axis: i32, start: i32, stop: i32) -> Result<Array> {
    let shape = a.shape();
    let axis = if axis < 0 { shape.len() as i32 + axis } else { axis } as usize;
    let mut lo = vec![0; shape.len()];
    let mut hi = shape.clone();
    lo[axis] = start;
    hi[axis] = stop;
    slice(a, &lo, &hi)
}

/// A copy of `src` with `src[start:stop] = update`. When `src` holds the only reference to its
/// buffer, MLX writes in place, which is what keeps a growing KV cache linear in cost.
pub fn slice_update(src: &Array, update: &Array, start: &[i32], stop: &[i32]) -> Result<Array> {
    Array::wrap("slice_update", ffi::slice_update(src.raw(), update.raw(), start, stop))
}

/// Gathers `indices` along `axis`.
pub fn take(a: &Array, indices: &Array, axis: i32) -> Result<Array> {
    Array::wrap("take", ffi::take(a.raw(), indices.raw(), axis))
}

/// Gathers along `axis` with indices broadcast against `a`.
pub fn take_along_axis(a: &Array, indices: &Array, axis: i32) -> Result<Array> {
    Array::wrap("take_along_axis", ffi::take_along_axis(a.raw(), indices.raw(), axis))
}

/// A copy of `a` with the slices `a[indices[i]]` along `axis` replaced by `updates[i]`
/// (`updates` is `[indices..., a's shape with 1 at axis]`). Like [`slice_update`], MLX writes in
/// place when `a` holds the only reference to its buffer: the KV cache's one write per step.
pub fn scatter(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    Array::wrap("scatter", ffi::scatter(a.raw(), indices.raw(), updates.raw(), axis))
}

/// Like [`scatter`], but adds `updates` to the selected slices.
pub fn scatter_add(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    Array::wrap("scatter_add", ffi::scatter_add(a.raw(), indices.raw(), updates.raw(), axis))
}

/// Joins arrays along an existing axis.
pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
    let list = ArrayList::of(arrays.iter().copied());
    Array::wrap("concatenate", ffi::concatenate(&list.inner, axis))
}

/// Joins arrays along a new axis.
pub fn stack(arrays: &[&Array], axis: i32) -> Result<Array> {
    let list = ArrayList::of(arrays.iter().copied());
    Array::wrap("stack", ffi::stack(&list.inner, axis))
}

/// Softmax over one axis; `precise` accumulates in float32 for half-precision input.
pub fn softmax(a: &Array, axis: i32, precise: bool) -> Result<Array> {
    Array::wrap("softmax", ffi::softmax(a.raw(), axis, precise))
}

/// The `k` largest values along `axis` (unordered).
pub fn topk(a: &Array, k: i32, axis: i32) -> Result<Array> {
    Array::wrap("topk", ffi::topk(a.raw(), k, axis))
}

/// Indices that partition `a` around its `kth` element along `axis`.
pub fn argpartition(a: &Array, kth: i32, axis: i32) -> Result<Array> {
    Array::wrap("argpartition", ffi::argpartition(a.raw(), kth, axis))
}

/// Indices that sort `a` ascending along `axis` (`u32`).
pub fn argsort(a: &Array, axis: i32) -> Result<Array> {
    Array::wrap("argsort", ffi::argsort(a.raw(), axis))
}

/// Running sum along `axis`; `inclusive` counts each element in its own position.
pub fn cumsum(a: &Array, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
    Array::wrap("cumsum", ffi::cumsum(a.raw(), axis, reverse, inclusive))
}

/// How a quantized matrix is stored: per-group scales (and, in MLX's `affine` mode, offsets),
/// the group size, the bits per element and MLX's mode (`affine`, `mxfp4`, `mxfp8`, `nvfp4`).
#[derive(Clone, Copy)]
pub struct Quantization<'a> {
    /// Per-group scales `[..., out, in / group]`.
    pub scales: &'a Array,
    /// Per-group offsets, in the affine mode only.
    pub biases: Option<&'a Array>,
    /// Elements per group.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
    /// MLX's quantization mode.
    pub mode: &'a str,
}

impl Quantization<'_> {
    fn biases<'b>(&'b self, fallback: &'b Array) -> (&'b Array, bool) {
        match self.biases {
            Some(b) => (b, true),
            None => (fallback, false),
        }
    }
}

/// `x @ w.T` (or `x @ w` when `transpose` is false) with `w` quantized as `q` says. On the CPU,
/// float32 rows (up to 32 of them) times 4- or 8-bit affine weights in groups of 32, 64 or 128 go
/// through the bridge's own multithreaded kernel, which reads the packed weights once for all the
/// rows; more float32 rows are a float32 GEMM on the weights dequantized for the call; everything
/// else is MLX's `quantized_matmul`.
pub fn quantized_matmul(x: &Array, w: &Array, q: &Quantization<'_>, transpose: bool) -> Result<Array> {
    qmm(x, w, q, transpose, true)
}

/// MLX's own `quantized_matmul` (`x @ w.T`), never the bridge's CPU kernel: the reference its
/// tests and benchmarks compare against.
pub fn mlx_quantized_matmul(x: &Array, w: &Array, q: &Quantization<'_>) -> Result<Array> {
    qmm(x, w, q, true, false)
}

fn qmm(x: &Array, w: &Array, q: &Quantization<'_>, transpose: bool, cpu_kernel: bool) -> Result<Array> {
    let (b, has) = q.biases(q.scales);
    let (s, gs, bits) = (q.scales.raw(), q.group_size, q.bits);
    Array::wrap(
        "quantized_matmul",
        ffi::quantized_matmul(x.raw(), w.raw(), s, b.raw(), has, transpose, gs, bits, q.mode, cpu_kernel),
    )
}

/// Threads of the bridge's CPU quantized kernel (MLX's worker included): those of the BLAS
/// shim's pool (the machine's hardware threads, or `ZETA_CPU_THREADS`), 1 without the shim.
pub fn cpu_qmm_threads() -> usize {
    ffi::cpu_qmm_threads().max(1) as usize
}

/// Most rows of a product the bridge's CPU quantized kernel takes; larger products on the CPU
/// run a float32 GEMM on the weights dequantized for the call.
pub fn cpu_qmm_max_rows() -> usize {
    ffi::cpu_qmm_max_rows().max(0) as usize
}

/// Whether the bridge's CPU quantized kernel takes affine weights of `bits` in groups of
/// `group_size` (4 or 8 bits; 32, 64 or 128).
pub fn cpu_qmm_takes(bits: i32, group_size: i32) -> bool {
    ffi::cpu_qmm_takes(bits, group_size)
}

/// Products the bridge's CPU quantized kernel has taken in this process.
pub fn cpu_qmm_calls() -> u64 {
    ffi::cpu_qmm_calls()
}

/// Per-row expert products: row `i` of `a` `[n, 1, k]` times matrix `rhs_indices[i]` of `b`
/// `[experts, k, m]` → `[n, 1, m]`. `sorted_indices` promises the indices ascend, which lets MLX
/// run each expert's rows as one product.
pub fn gather_mm(a: &Array, b: &Array, rhs_indices: &Array, sorted_indices: bool) -> Result<Array> {
    Array::wrap("gather_mm", ffi::gather_mm(a.raw(), b.raw(), rhs_indices.raw(), sorted_indices))
}

/// [`gather_mm`] with quantized experts `w` `[experts, m, packed]`, multiplied transposed.
pub fn gather_qmm(
    x: &Array,
    w: &Array,
    q: &Quantization<'_>,
    rhs_indices: &Array,
    sorted_indices: bool,
) -> Result<Array> {
    let (b, has) = q.biases(q.scales);
    Array::wrap(
        "gather_qmm",
        ffi::gather_qmm(
            x.raw(),
            w.raw(),
            q.scales.raw(),
            b.raw(),
            has,
            rhs_indices.raw(),
            q.group_size,
            q.bits,
            q.mode,
            sorted_indices,
        ),
    )
}

/// Affine-quantizes `w` along its last axis: returns `(packed, scales, biases)`.
pub fn quantize(w: &Array, group_size: i32, bits: i32) -> Result<(Array, Array, Array)> {
    let list = ffi::quantize(w.raw(), group_size, bits).map_err(crate::err("quantize"))?;
    let list = ArrayList { inner: list };
    Ok((list.get(0)?, list.get(1)?, list.get(2)?))
}

/// Expands a quantized matrix back to `dtype`.
pub fn dequantize(w: &Array, q: &Quantization<'_>, dtype: Dtype) -> Result<Array> {
    let (b, has) = q.biases(q.scales);
    Array::wrap(
        "dequantize",
        ffi::dequantize(w.raw(), q.scales.raw(), b.raw(), has, q.group_size, q.bits, q.mode, dtype as u8),
    )
}

/// RMS normalization over the last axis, scaled by `weight` (fused kernel).
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    Array::wrap("rms_norm", ffi::rms_norm(x.raw(), weight.raw(), eps))
}

/// Layer normalization over the last axis (fused kernel).
pub fn layer_norm(x: &Array, weight: &Array, bias: &Array, eps: f32) -> Result<Array> {
    Array::wrap("layer_norm", ffi::layer_norm(x.raw(), weight.raw(), bias.raw(), eps))
}

/// Rotary position embedding over the last axis of `x` (`[B, H, L, D]`), positions starting at
/// `offset`.
pub fn rope(x: &Array, dims: i32, traditional: bool, base: f32, scale: f32, offset: i32) -> Result<Array> {
    Array::wrap("rope", ffi::rope(x.raw(), dims, traditional, base, scale, offset))
}

/// Rotary embedding with explicit per-dimension frequencies (Llama 3 style scaling).
pub fn rope_with_freqs(
    x: &Array,
    dims: i32,
    traditional: bool,
    scale: f32,
    offset: i32,
    freqs: &Array,
) -> Result<Array> {
    Array::wrap("rope", ffi::rope_freqs(x.raw(), dims, traditional, scale, offset, freqs.raw()))
}

/// Rotary embedding with one starting position per leading row: `x` is `[B, H, L, D]` and
/// `offsets` `[B]` (`i32`), so row `b`'s token `t` sits at `offsets[b] + t`. Packing independent
/// tokens as `[T, H, 1, D]` rotates every token of a batched step in one operation.
pub fn rope_rows(x: &Array, dims: i32, traditional: bool, base: f32, scale: f32, offsets: &Array) -> Result<Array> {
    Array::wrap("rope", ffi::rope_rows(x.raw(), dims, traditional, base, scale, offsets.raw()))
}

/// [`rope_rows`] with explicit per-dimension frequencies.
pub fn rope_rows_with_freqs(
    x: &Array,
    dims: i32,
    traditional: bool,
    scale: f32,
    offsets: &Array,
    freqs: &Array,
) -> Result<Array> {
    Array::wrap("rope", ffi::rope_rows_freqs(x.raw(), dims, traditional, scale, offsets.raw(), freqs.raw()))
}

/// Attention `softmax(q kᵀ · scale) v` with `mask_mode` `""` (none) or `"causal"`; q, k, v are
/// `[B, H, L, D]` and k/v may have fewer heads (grouped-query attention).
pub fn scaled_dot_product_attention(q: &Array, k: &Array, v: &Array, scale: f32, mask_mode: &str) -> Result<Array> {
    Array::wrap("scaled_dot_product_attention", ffi::sdpa(q.raw(), k.raw(), v.raw(), scale, mask_mode))
}

/// Attention with an explicit additive or boolean mask.
pub fn scaled_dot_product_attention_masked(q: &Array, k: &Array, v: &Array, scale: f32, mask: &Array) -> Result<Array> {
    Array::wrap("scaled_dot_product_attention", ffi::sdpa_masked(q.raw(), k.raw(), v.raw(), scale, mask.raw()))
}

/// Attention with a learned sink logit per head (`sinks` `[heads]`): each row's softmax also
/// counts `exp(sink)`, so a head can attend to nothing. `mask` is a boolean or additive mask, or
/// `None` for `mask_mode` (`""` or `"causal"`).
pub fn scaled_dot_product_attention_sinks(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask_mode: &str,
    mask: Option<&Array>,
    sinks: &Array,
) -> Result<Array> {
    let (m, use_mask) = match mask {
        Some(m) => (m, true),
        None => (q, false),
    };
    Array::wrap(
        "scaled_dot_product_attention",
        ffi::sdpa_sinks(q.raw(), k.raw(), v.raw(), scale, mask_mode, m.raw(), use_mask, sinks.raw()),
    )
}

/// A PRNG key from a seed.
pub fn random_key(seed: u64) -> Result<Array> {
    Array::wrap("random_key", ffi::random_key(seed))
}

/// Samples indices from unnormalized log-probabilities along `axis`.
pub fn categorical(logits: &Array, axis: i32, key: &Array) -> Result<Array> {
    Array::wrap("categorical", ffi::categorical(logits.raw(), axis, key.raw()))
}

/// Waits for all work queued on the current thread's default stream.
pub fn synchronize() -> Result<()> {
    ffi::synchronize().map_err(crate::err("synchronize"))
}
