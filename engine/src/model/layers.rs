//! The building blocks of every architecture: linear projections (dense or affine-quantized),
//! embeddings (which double as the tied output projection), and RMS norms.

use std::cell::OnceCell;

use mlx::{Array, Dtype, ops};

use crate::error::Result;

/// A linear projection `y = x Wᵀ (+ b)`.
#[derive(Clone)]
pub enum Linear {
    /// Full-precision weight `[out, in]`.
    Dense {
        /// The weight.
        weight: Array,
        /// Optional bias `[out]`.
        bias: Option<Array>,
        /// `weightᵀ`, a view made by the first product and computed with it: later steps then
        /// multiply by it without a transpose node of their own (one of every four nodes of a
        /// dense decode step on the CPU).
        transposed: OnceCell<Array>,
    },
    /// Quantized weight: packed `u32` rows with per-group scales (and offsets, in the affine
    /// mode).
    Quantized {
        /// Packed weight `[out, in * bits / 32]`.
        weight: Array,
        /// Per-group scales `[out, in / group]`.
        scales: Array,
        /// Per-group offsets `[out, in / group]` (affine mode only).
        biases: Option<Array>,
        /// Elements per group.
        group_size: i32,
        /// Bits per element.
        bits: i32,
        /// MLX's quantization mode.
        mode: QuantMode,
        /// Optional bias `[out]`.
        bias: Option<Array>,
    },
    /// Projections of the same input that could not be joined into one matrix (different
    /// quantization); their outputs are concatenated.
    Stack(Vec<Linear>),
    /// A quantized weight kept both packed and expanded to float32 (small models on the CPU):
    /// products of few rows (decode steps) read the packed weights with the CPU kernel, larger
    /// ones (prompt chunks, big batches) multiply the expansion.
    Hybrid {
        /// The expansion.
        dense: Box<Linear>,
        /// The packed weights.
        packed: Box<Linear>,
    },
}

/// MLX's quantization modes: `affine` (scale and offset per group, mlx-lm's default) and the
/// microscaling float formats (one shared scale per group, no offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuantMode {
    /// `w = scale · q + bias`, 2-8 bits, any group size.
    #[default]
    Affine,
    /// OCP MXFP4: 4-bit floats, groups of 32, an 8-bit power-of-two scale.
    Mxfp4,
    /// OCP MXFP8: 8-bit floats, groups of 32.
    Mxfp8,
    /// NVFP4: 4-bit floats, groups of 16, an 8-bit float scale.
    Nvfp4,
}

impl QuantMode {
    /// From a config's `mode`.
    pub fn parse(s: &str) -> Option<QuantMode> {
        match s {
            "affine" => Some(QuantMode::Affine),
            "mxfp4" => Some(QuantMode::Mxfp4),
            "mxfp8" => Some(QuantMode::Mxfp8),
            "nvfp4" => Some(QuantMode::Nvfp4),
            _ => None,
        }
    }

    /// MLX's name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuantMode::Affine => "affine",
            QuantMode::Mxfp4 => "mxfp4",
            QuantMode::Mxfp8 => "mxfp8",
            QuantMode::Nvfp4 => "nvfp4",
        }
    }
}

/// The storage of a quantized weight, as MLX's quantized operations take it.
pub(crate) fn spec<'a>(
    scales: &'a Array,
    biases: &'a Option<Array>,
    group_size: i32,
    bits: i32,
    mode: QuantMode,
) -> ops::Quantization<'a> {
    ops::Quantization { scales, biases: biases.as_ref(), group_size, bits, mode: mode.as_str() }
}

impl Linear {
    /// A dense projection.
    pub fn dense(weight: Array, bias: Option<Array>) -> Linear {
        Linear::Dense { weight, bias, transposed: OnceCell::new() }
    }

    /// Applies the projection to `x` `[..., in]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias, transposed } => {
                let t = match transposed.get() {
                    Some(t) => t,
                    None => {
                        let _ = transposed.set(ops::transpose(weight, &[1, 0])?);
                        transposed.get().expect("just set")
                    }
                };
                (ops::matmul(x, t)?, bias)
            }
            Linear::Quantized { weight, scales, biases, group_size, bits, mode, bias } => {
                (ops::quantized_matmul(x, weight, &spec(scales, biases, *group_size, *bits, *mode), true)?, bias)
            }
            Linear::Stack(parts) => {
                let outs = parts.iter().map(|p| p.forward(x)).collect::<Result<Vec<_>>>()?;
                return Ok(ops::concatenate(&outs.iter().collect::<Vec<_>>(), -1)?);
            }
            Linear::Hybrid { dense, packed } => {
                let rows = x.size() / x.dim(-1).max(1) as usize;
                // Up to the kernel's own row limit its tiles beat the float32 expansion (several
                // rows: each weight dequantized once in L1 for all of them, a fifth of the bytes
                // read). SmolLM2, 2 cores, decode tok/s packed / expanded: batch 4 191 / 108,
                // batch 16 343 / 217. Longer prompt chunks take the expansion, where OpenBLAS's
                // blocking wins.
                return if rows <= ops::cpu_qmm_max_rows() { packed.forward(x) } else { dense.forward(x) };
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
            Linear::Hybrid { dense, .. } => dense.out_features(),
        }
    }

    /// [`Linear::densify`], keeping the packed weights too where the CPU kernel takes them
    /// ([`ops::cpu_qmm_takes`]): a [`Linear::Hybrid`].
    pub fn densify_keeping_packed(self, dtype: Dtype) -> Result<Linear> {
        match self {
            Linear::Quantized { mode: QuantMode::Affine, bits, group_size, .. }
                if ops::cpu_qmm_takes(bits, group_size) =>
            {
                let dense = self.clone().densify(dtype)?;
                Ok(Linear::Hybrid { dense: Box::new(dense), packed: Box::new(self) })
            }
            Linear::Stack(parts) => Ok(Linear::Stack(
                parts.into_iter().map(|p| p.densify_keeping_packed(dtype)).collect::<Result<Vec<_>>>()?,
            )),
            other => other.densify(dtype),
        }
    }

    /// Expands a quantized weight to a dense one of `dtype` (the CPU fast path, where MLX's float
    /// GEMM through OpenBLAS is far faster than its quantized kernels). Dense weights are cast.
    pub fn densify(self, dtype: Dtype) -> Result<Linear> {
        // Scales and offsets go to the target type first: MLX dequantizes in the type of the
        // scales, and float16 there would round every weight (the quantized kernel does not).
        Ok(match self {
            Linear::Quantized { weight, scales, biases, group_size, bits, mode, bias } => {
                let scales = cast(scales, dtype)?;
                let biases = biases.map(|b| cast(b, dtype)).transpose()?;
                Linear::dense(ops::dequantize(&weight, &spec(&scales, &biases, group_size, bits, mode), dtype)?, bias)
            }
            Linear::Dense { weight, bias, .. } => Linear::dense(cast(weight, dtype)?, bias),
            Linear::Stack(parts) => {
                Linear::Stack(parts.into_iter().map(|p| p.densify(dtype)).collect::<Result<Vec<_>>>()?)
            }
            Linear::Hybrid { dense, .. } => *dense,
        })
    }

    /// Moves the packed weights the CPU kernel streams every step into 2 MB pages
    /// ([`Array::pin_huge`]); the float32 expansion of a [`Linear::Hybrid`], which only prompt
    /// chunks read, stays where it is.
    pub fn pin_packed(&mut self) -> Result<()> {
        match self {
            Linear::Quantized { weight, scales, biases, .. } => {
                *weight = weight.pin_huge()?;
                *scales = scales.pin_huge()?;
                if let Some(b) = biases {
                    *b = b.pin_huge()?;
                }
            }
            Linear::Hybrid { packed, .. } => packed.pin_packed()?,
            Linear::Stack(parts) => {
                for p in parts {
                    p.pin_packed()?;
                }
            }
            Linear::Dense { .. } => {}
        }
        Ok(())
    }

    /// Every array this layer holds, for evaluation and memory accounting.
    pub fn arrays(&self) -> Vec<&Array> {
        match self {
            Linear::Dense { weight, bias, .. } => std::iter::once(weight).chain(bias.iter()).collect(),
            Linear::Quantized { weight, scales, biases, bias, .. } => {
                [weight, scales].into_iter().chain(biases.iter()).chain(bias.iter()).collect()
            }
            Linear::Stack(parts) => parts.iter().flat_map(Linear::arrays).collect(),
            Linear::Hybrid { dense, packed } => dense.arrays().into_iter().chain(packed.arrays()).collect(),
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
        lookup(&self.0, ids, dtype)
    }

    /// The tied output projection: `x Eᵀ`.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.0.forward(x)
    }
}

fn lookup(table: &Linear, ids: &Array, dtype: Dtype) -> Result<Array> {
    match table {
        Linear::Stack(_) => unreachable!("an embedding is one matrix"),
        Linear::Hybrid { dense, .. } => lookup(dense, ids, dtype),
        Linear::Dense { weight, .. } => cast(ops::take(weight, ids, 0)?, dtype),
        Linear::Quantized { weight, scales, biases, group_size, bits, mode, .. } => {
            let w = ops::take(weight, ids, 0)?;
            let s = ops::take(scales, ids, 0)?;
            let b = biases.as_ref().map(|b| ops::take(b, ids, 0)).transpose()?;
            Ok(ops::dequantize(&w, &spec(&s, &b, *group_size, *bits, *mode), dtype)?)
        }
    }
}

/// RMS normalization with a learned scale.
pub struct RmsNorm {
    /// Scale `[dim]`.
    pub weight: Array,
    /// Epsilon.
    pub eps: f32,
    /// Run as the CPU's fused primitive (float32 on the CPU), not MLX's `fast::rms_norm`.
    pub fused: bool,
}

impl RmsNorm {
    /// Normalizes over the last axis.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        if self.fused {
            return Ok(mlx::fused::rms_norm(x, &self.weight, self.eps)?);
        }
        Ok(ops::rms_norm(x, &self.weight, self.eps)?)
    }

    /// `(x + y, norm(x + y))`: the residual add and the norm after it, one node when fused.
    pub fn add_forward(&self, x: &Array, y: &Array) -> Result<(Array, Array)> {
        if self.fused {
            return Ok(mlx::fused::add_rms_norm(x, y, &self.weight, self.eps)?);
        }
        let sum = ops::add(x, y)?;
        let normed = self.forward(&sum)?;
        Ok((sum, normed))
    }
}
