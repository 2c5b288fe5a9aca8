//! Mixture-of-experts MLPs (Qwen3-MoE, Mixtral): a router picks `top_k` experts per row, and
//! every expert's rows of the whole step run as one product.
//!
//! The step's (row, expert) pairs are sorted by expert, so `gather_mm` / `gather_qmm` read each
//! expert's weights once for all of its rows in the batch — decode rows of every sequence and
//! prompt chunks alike — instead of looping per token or per expert. The results are put back in
//! row order and summed with the router's weights.

use mlx::{Array, ops};

use super::layers::{Linear, cast, spec};
use crate::config::ExpertActivation;
use crate::error::Result;

/// The weights of all experts of one projection: `[experts, out, in]` (dense) or packed
/// `[experts, out, in * bits / 32]` with scales and biases `[experts, out, groups]`.
pub struct Experts(pub Linear);

impl Experts {
    /// Row `i` of `x` `[n, 1, in]` through expert `idx[i]` → `[n, 1, out]`; `idx` ascending.
    fn forward(&self, x: &Array, idx: &Array) -> Result<Array> {
        gather(&self.0, x, idx)
    }
}

fn gather(experts: &Linear, x: &Array, idx: &Array) -> Result<Array> {
    let (y, bias) = match experts {
        Linear::Hybrid { dense, .. } => return gather(dense, x, idx),
        Linear::Dense { weight, bias, .. } => (ops::gather_mm(x, &ops::swapaxes(weight, -1, -2)?, idx, true)?, bias),
        Linear::Quantized { weight, scales, biases, group_size, bits, mode, bias } => {
            (ops::gather_qmm(x, weight, &spec(scales, biases, *group_size, *bits, *mode), idx, true)?, bias)
        }
        Linear::Stack(parts) => {
            let outs = parts.iter().map(|p| gather(p, x, idx)).collect::<Result<Vec<_>>>()?;
            return Ok(ops::concatenate(&outs.iter().collect::<Vec<_>>(), -1)?);
        }
    };
    Ok(match bias {
        // Each row's expert's bias `[experts, out]` → `[n, 1, out]`.
        Some(b) => ops::add(&y, &ops::expand_dims(&ops::take(b, idx, 0)?, 1)?)?,
        None => y,
    })
}

/// gpt-oss's gated activation: `(clip(up, ±limit) + 1) · g · sigmoid(1.702 · g)` with
/// `g = min(gate, limit)`, in mlx-lm's order of operations.
fn clamped_swiglu(gate: &Array, up: &Array, limit: f32) -> Result<Array> {
    let c = |v: f32| -> Result<Array> { Ok(ops::astype(&Array::scalar_f32(v)?, gate.dtype())?) };
    let g = ops::minimum(gate, &c(limit)?)?;
    let u = ops::minimum(&ops::maximum(up, &c(-limit)?)?, &c(limit)?)?;
    let glu = ops::multiply(&g, &ops::sigmoid(&ops::multiply(&c(1.702)?, &g)?)?)?;
    Ok(ops::multiply(&ops::add(&u, &c(1.0)?)?, &glu)?)
}

/// One sparse MLP layer.
pub struct Moe {
    /// Router: hidden → one logit per expert.
    pub router: Linear,
    /// Gate and up projections of every expert, outputs `[gate | up]`.
    pub gate_up: Experts,
    /// Down projections of every expert.
    pub down: Experts,
    /// Experts per row.
    pub top_k: i32,
    /// Width of one expert.
    pub intermediate: i32,
    /// Renormalize the chosen experts' weights.
    pub norm_topk_prob: bool,
    /// The experts' activation.
    pub activation: ExpertActivation,
}

impl Moe {
    /// `x` `[n, hidden]` → `[n, hidden]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (n, hidden) = (x.dim(0), x.dim(1));
        let k = self.top_k;
        let logits = self.router.forward(x)?;
        let experts = logits.dim(1);
        let probs = ops::softmax(&logits, -1, true)?;
        // The k largest, in no particular order (their sum is order-independent).
        let chosen = ops::slice_axis(&ops::argpartition(&probs, experts - k, -1)?, 1, experts - k, experts)?;
        let mut weights = ops::take_along_axis(&probs, &chosen, -1)?;
        if self.norm_topk_prob {
            weights = ops::divide(&weights, &ops::sum(&weights, -1, true)?)?;
        }
        // Sort the n·k (row, expert) pairs by expert; `order / k` is each pair's row.
        let flat = ops::reshape(&chosen, &[n * k])?;
        let order = ops::argsort(&flat, 0)?;
        let restore = ops::argsort(&order, 0)?;
        let rows = ops::floor_divide(&order, &ops::astype(&Array::scalar_i32(k)?, order.dtype())?)?;
        let idx = ops::take(&flat, &order, 0)?;
        let xs = ops::expand_dims(&ops::take(x, &rows, 0)?, 1)?;
        let gu = self.gate_up.forward(&xs, &idx)?;
        let i = self.intermediate;
        let gate = ops::slice_axis(&gu, 2, 0, i)?;
        let up = ops::slice_axis(&gu, 2, i, 2 * i)?;
        let h = match self.activation {
            ExpertActivation::Silu => ops::multiply(&ops::silu(&gate)?, &up)?,
            ExpertActivation::ClampedSwiglu { limit } => clamped_swiglu(&gate, &up, limit)?,
        };
        let y = self.down.forward(&h, &idx)?;
        let y = ops::take(&ops::reshape(&y, &[n * k, hidden])?, &restore, 0)?;
        let y = ops::reshape(&y, &[n, k, hidden])?;
        let weights = cast(ops::expand_dims(&weights, -1)?, y.dtype())?;
        Ok(ops::sum(&ops::multiply(&y, &weights)?, 1, false)?)
    }

    /// Every array this layer holds.
    pub fn arrays(&self) -> Vec<&Array> {
        let mut out = self.router.arrays();
        out.extend(self.gate_up.0.arrays());
        out.extend(self.down.0.arrays());
        out
    }
}
