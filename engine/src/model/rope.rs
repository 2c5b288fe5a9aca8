//! Rotary position embedding for a step's rows, each token at its own position.
//!
//! On a GPU this is MLX's fused `fast::rope`. MLX's CPU build has no rope kernel and expands each
//! call into ~18 small operations that recompute the same sines and cosines for q and k in every
//! layer; on the CPU the engine computes the step's table once and rotates with nine operations
//! per call instead — the same arithmetic as MLX's expansion, in the same order, so the results
//! are identical.

use mlx::{Array, Dtype, ops};

use super::layers;
use crate::error::Result;

/// How one model rotates.
pub struct Rope {
    dims: i32,
    traditional: bool,
    base: f32,
    /// Position scale (1 / linear factor).
    scale: f32,
    /// Explicit per-dimension wavelengths (Llama 3 scaling, GGUF factors).
    freqs: Option<Array>,
    /// Inverse wavelengths `[dims / 2]`, when the step's table is built on the host side.
    inv_freqs: Option<Array>,
    /// LongRoPE's scale of the rotated features (1 elsewhere): folded into the table on the CPU,
    /// a per-feature factor `[head_dim]` applied before `fast::rope` on a GPU.
    mscale: f32,
    prescale: Option<Array>,
}

/// One step's cosines and sines `[rows, 1, 1, dims / 2]`.
pub struct Table {
    cos: Array,
    sin: Array,
}

impl Rope {
    /// A rope over the first `dims` of `head_dim` features, the rotated ones scaled by `mscale`;
    /// `table` selects the CPU's precomputed-table path.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dims: i32,
        head_dim: i32,
        traditional: bool,
        base: f32,
        scale: f32,
        mscale: f32,
        freqs: Option<Array>,
        table: bool,
    ) -> Result<Rope> {
        let inv_freqs = if table {
            let half = dims / 2;
            Some(match &freqs {
                Some(f) => ops::divide(&Array::scalar_f32(1.0)?, &ops::astype(f, Dtype::F32)?)?,
                // exp(-i · ln(base) / half), as MLX's own expansion computes it.
                None => ops::exp(&ops::multiply(
                    &ops::astype(&ops::negative(&Array::arange(0, half)?)?, Dtype::F32)?,
                    &Array::scalar_f32(((base as f64).ln() / half as f64) as f32)?,
                )?)?,
            })
        } else {
            None
        };
        let prescale = if mscale != 1.0 && !table {
            let f: Vec<f32> = (0..head_dim).map(|i| if i < dims { mscale } else { 1.0 }).collect();
            Some(Array::from_f32(&f, &[head_dim])?)
        } else {
            None
        };
        Ok(Rope { dims, traditional, base, scale, freqs, inv_freqs, mscale, prescale })
    }

    /// What the CPU's fused attention needs to rotate, when the table path is in use (the CPU):
    /// the inverse wavelengths, rotated features, layout, position scale and feature scale.
    pub fn cpu_params(&self) -> Option<(&Array, i32, bool, f32, f32)> {
        self.inv_freqs.as_ref().map(|inv| (inv, self.dims, self.traditional, self.scale, self.mscale))
    }

    /// The explicit wavelengths, if any (for memory accounting).
    pub fn freqs(&self) -> Option<&Array> {
        self.freqs.as_ref()
    }

    /// The step's table for `positions` `[rows]` (`i32`), on the CPU path; `None` on a GPU.
    pub fn table(&self, positions: &Array) -> Result<Option<Table>> {
        let Some(inv) = &self.inv_freqs else { return Ok(None) };
        let rows = positions.dim(0);
        let pos = ops::multiply(&ops::astype(positions, Dtype::F32)?, &Array::scalar_f32(self.scale)?)?;
        let theta = ops::multiply(&ops::reshape(&pos, &[rows, 1, 1, 1])?, inv)?;
        let (mut cos, mut sin) = (ops::cos(&theta)?, ops::sin(&theta)?);
        if self.mscale != 1.0 {
            let m = Array::scalar_f32(self.mscale)?;
            (cos, sin) = (ops::multiply(&cos, &m)?, ops::multiply(&sin, &m)?);
        }
        Ok(Some(Table { cos, sin }))
    }

    /// Rotates `x` `[rows, heads, 1, head_dim]`, row `r` at `positions[r]`.
    pub fn apply(&self, x: &Array, positions: &Array, table: Option<&Table>) -> Result<Array> {
        let Some(t) = table else {
            let scaled;
            let x = match &self.prescale {
                Some(p) => {
                    scaled = ops::multiply(x, &layers::cast(p.clone(), x.dtype())?)?;
                    &scaled
                }
                None => x,
            };
            return Ok(match &self.freqs {
                Some(f) => ops::rope_rows_with_freqs(x, self.dims, self.traditional, self.scale, positions, f)?,
                None => ops::rope_rows(x, self.dims, self.traditional, self.base, self.scale, positions)?,
            });
        };
        let shape = x.shape();
        let (d, half) = (self.dims, self.dims / 2);
        let cos = ops::astype(&t.cos, x.dtype())?;
        let sin = ops::astype(&t.sin, x.dtype())?;
        let (x1, x2) = if self.traditional {
            let mut stop = shape.clone();
            stop[3] = d;
            (
                ops::slice_strided(x, &[0, 0, 0, 0], &stop, &[1, 1, 1, 2])?,
                ops::slice_strided(x, &[0, 0, 0, 1], &stop, &[1, 1, 1, 2])?,
            )
        } else {
            (ops::slice_axis(x, 3, 0, half)?, ops::slice_axis(x, 3, half, d)?)
        };
        let a = ops::subtract(&ops::multiply(&x1, &cos)?, &ops::multiply(&x2, &sin)?)?;
        let b = ops::add(&ops::multiply(&x1, &sin)?, &ops::multiply(&x2, &cos)?)?;
        let mut out = if self.traditional {
            let mut rot = shape.clone();
            rot[3] = d;
            ops::reshape(&ops::concatenate(&[&ops::expand_dims(&a, -1)?, &ops::expand_dims(&b, -1)?], -1)?, &rot)?
        } else {
            ops::concatenate(&[&a, &b], 3)?
        };
        if d < shape[3] {
            out = ops::concatenate(&[&out, &ops::slice_axis(x, 3, d, shape[3])?], 3)?;
        }
        Ok(out)
    }
}
