//! The building blocks of every architecture: linear projections (dense or affine-quantized),
//! embeddings (which double as the tied output projection), and RMS norms.

use mlx::{Array, Dtype, ops};

use crate::error::Result;

/// A linear projection `y = x Wᵀ (+ b)`.
pub enum Linear {
    /// Full-precision weight `[out, in]`.
    Dense {
        /// The weight.
        weight: Array,
        /// Optional bias `[out]`.
        bias: Option<Array>,
    },
    /// Affine-quantized weight: packed `u32` rows with per-group scales and biases.
    Quantized {
        /// Packed weight `[out, in * bits / 32]`.
        weight: Array,
        /// Per-group scales `[out, in / group]`.
        scales: Array,
        /// Per-group offsets `[out, in / group]`.
        biases: Array,
        /// Elements per group.
        group_size: i32,
        /// Bits per element.
        bits: i32,
        /// Optional bias `[out]`.
        bias: Option<Array>,
    },
    /// Projections of the same input that could not be joined into one matrix (different
    /// quantization); their outputs are concatenated.
    Stack(Vec<Linear>),
}

impl Linear {
    /// Applies the projection to `x` `[..., in]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } => (ops::matmul(x, &ops::transpose(weight, &[1, 0])?)?, bias),
            Linear::Quantized { weight, scales, biases, group_size, bits, bias } => {
                (ops::quantized_matmul(x, weight, scales, biases, true, *group_size, *bits)?, bias)
            }
            Linear::Stack(parts) => {
                let outs = parts.iter().map(|p| p.forward(x)).collect::<Result<Vec<_>>>()?;
                return Ok(ops::concatenate(&outs.iter().collect::<Vec<_>>(), -1)?);
            }
        };
        Ok(match bias {
            Some(b) => ops::add(&y, b)?,
            None => y,
        })
    }

    /// Rows of the weight (output features).
    pub fn out_features(&self) -> i32 {
        match self {
            Linear::Dense { weight, .. } | Linear::Quantized { weight, .. } => weight.dim(0),
            Linear::Stack(parts) => parts.iter().map(Linear::out_features).sum(),
        }
    }

    /// Expands a quantized weight to a dense one of `dtype` (the CPU fast path, where MLX's float
    /// GEMM through OpenBLAS is far faster than its quantized kernels). Dense weights are cast.
    pub fn densify(self, dtype: Dtype) -> Result<Linear> {
        // Scales and offsets go to the target type first: MLX dequantizes in the type of the
        // scales, and float16 there would round every weight (the quantized kernel does not).
        Ok(match self {
            Linear::Quantized { weight, scales, biases, group_size, bits, bias } => Linear::Dense {
                weight: ops::dequantize(
                    &weight,
                    &cast(scales, dtype)?,
                    &cast(biases, dtype)?,
                    group_size,
                    bits,
                    dtype,
                )?,
                bias,
            },
            Linear::Dense { weight, bias } => Linear::Dense { weight: cast(weight, dtype)?, bias },
            Linear::Stack(parts) => {
                Linear::Stack(parts.into_iter().map(|p| p.densify(dtype)).collect::<Result<Vec<_>>>()?)
            }
        })
    }

    /// Every array this layer holds, for evaluation and memory accounting.
    pub fn arrays(&self) -> Vec<&Array> {
        match self {
            Linear::Dense { weight, bias } => std::iter::once(weight).chain(bias.iter()).collect(),
            Linear::Quantized { weight, scales, biases, bias, .. } => {
                [weight, scales, biases].into_iter().chain(bias.iter()).collect()
            }
            Linear::Stack(parts) => parts.iter().flat_map(Linear::arrays).collect(),
        }
    }
}

/// Casts floating arrays to `dtype`; other arrays pass through.
pub fn cast(a: Array, dtype: Dtype) -> Result<Array> {
    if a.dtype() == dtype || !a.dtype().is_float() { Ok(a) } else { Ok(ops::astype(&a, dtype)?) }
}

/// Token embedding, stored like a [`Linear`] with `[vocab, hidden]` rows.
pub struct Embedding(pub Linear);

impl Embedding {
    /// Looks up the rows for `ids` (`i32` or `u32`, any shape) → `[..., hidden]` in `dtype`.
    pub fn forward(&self, ids: &Array, dtype: Dtype) -> Result<Array> {
        match &self.0 {
            Linear::Stack(_) => unreachable!("an embedding is one matrix"),
            Linear::Dense { weight, .. } => cast(ops::take(weight, ids, 0)?, dtype),
            Linear::Quantized { weight, scales, biases, group_size, bits, .. } => {
                let w = ops::take(weight, ids, 0)?;
                let s = ops::take(scales, ids, 0)?;
                let b = ops::take(biases, ids, 0)?;
                Ok(ops::dequantize(&w, &s, &b, *group_size, *bits, dtype)?)
            }
        }
    }

    /// The tied output projection: `x Eᵀ`.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.0.forward(x)
    }
}

/// RMS normalization with a learned scale.
pub struct RmsNorm {
    /// Scale `[dim]`.
    pub weight: Array,
    /// Epsilon.
    pub eps: f32,
}

impl RmsNorm {
    /// Normalizes over the last axis.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(ops::rms_norm(x, &self.weight, self.eps)?)
    }
}
