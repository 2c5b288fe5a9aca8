//! A decode step on packed weights with the CPU's fused layers, as three MLX nodes per layer
//! (`mlx::fused::norm_product`, then `mlx::fused::decode_layer`'s cache write and the rest of the
//! layer) and one for the final norm and output projection: about 95 nodes for SmolLM2 where the
//! separate fused nodes take 274. At batch 1 a third of the step went to building, dispatching
//! and joining nodes, not to their arithmetic.
//!
//! The nodes compute what the separate nodes compute, in the same order, so the logits are the
//! same bits; layers this shape does not cover (extra norms around attention or the MLP, routed
//! experts, weights the kernel does not take, biases) and steps with prompt chunks take the
//! general path in `mod.rs`.

use mlx::fused::{Gate, LayerTail, Packed};
use mlx::{Array, ops};

use super::layers::Linear;
use super::step::StepInput;
use super::{Activation, Layer, Mlp, Model};
use crate::error::Result;
use crate::kv_cache::KvPool;

/// A layer's products on packed weights, and its gate.
struct Plan<'a> {
    qkv: Packed<'a>,
    o: Packed<'a>,
    gate_up: Packed<'a>,
    down: Packed<'a>,
    act: Gate,
}

impl Linear {
    /// The packed weights the CPU kernel reads for this projection, when it has them and no bias.
    fn packed(&self) -> Option<Packed<'_>> {
        match self {
            Linear::Quantized {
                weight,
                scales,
                biases: Some(biases),
                group_size,
                bits,
                mode: super::layers::QuantMode::Affine,
                bias: None,
            } if ops::cpu_qmm_takes(*bits, *group_size) => {
                Some(Packed { weight, scales, biases, group_size: *group_size, bits: *bits })
            }
            Linear::Hybrid { packed, .. } => packed.packed(),
            _ => None,
        }
    }
}

impl Layer {
    /// This layer as the whole-layer nodes take it, or `None`.
    fn plan(&self) -> Option<Plan<'_>> {
        let plain = self.attn_out_norm.is_none() && self.mlp_out_norm.is_none();
        let fused_norms = self.input_norm.fused && self.post_norm.fused;
        let Mlp::Dense { gate_up, down, act } = &self.mlp else { return None };
        if !plain || !fused_norms {
            return None;
        }
        let act = match act {
            Activation::Silu => Gate::Silu,
            Activation::GeluTanh => Gate::GeluTanh,
        };
        Some(Plan {
            qkv: self.qkv.packed()?,
            o: self.o.packed()?,
            gate_up: gate_up.packed()?,
            down: down.packed()?,
            act,
        })
    }
}

impl Model {
    /// The logits of a step of decode rows only through the whole-layer nodes, or `None` when
    /// the step or the model does not fit them (the caller then takes the general path).
    pub(super) fn decode_layers(&self, pool: &mut KvPool, step: &StepInput) -> Result<Option<Array>> {
        let fits = self.fused
            && self.layer_nodes
            && step.prefill.is_none()
            && step.every_row
            && step.logits_rows.is_some()
            && self.norm.fused
            && step.rows <= ops::cpu_qmm_max_rows() as usize;
        if !fits {
            return Ok(None);
        }
        let head = match &self.lm_head {
            Some(h) => h.packed(),
            None => self.embed.0.packed(),
        };
        let Some(head) = head else { return Ok(None) };
        // Each layer as the layer nodes take it: its products on packed weights, decode rows that
        // are the step's rows, its rope computable on the CPU, its cache one joined buffer.
        let mut plans = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let (write, decode, _) = step.for_layer(layer.sliding);
            let decode = decode.filter(|d| d.rows as usize == step.rows);
            let (Some(plan), Some(d), Some(rope)) = (layer.plan(), decode, self.layer_rope(layer).cpu_params()) else {
                return Ok(None);
            };
            if pool.joint_buffer(l).is_none() {
                return Ok(None);
            }
            plans.push((layer, plan, write, d, rope));
        }

        let mut x = self.embed_rows(step)?;
        let mut pending: Option<Array> = None;
        for (l, (layer, plan, write, d, rope)) in plans.into_iter().enumerate() {
            let n = &layer.input_norm;
            let (sum, qkv) = mlx::fused::norm_product(&x, pending.as_ref(), &n.weight, n.eps, &plan.qkv)?;
            let kv = pool.joint_buffer(l).expect("checked above");
            let attention = self.decode_spec(layer, &qkv, kv, step, write, d, rope);
            let tail = LayerTail {
                x: &sum,
                post_norm: (&layer.post_norm.weight, layer.post_norm.eps),
                o: plan.o,
                gate_up: plan.gate_up,
                down: plan.down,
                act: plan.act,
            };
            let (next, m, kv) = mlx::fused::decode_layer(&attention, &tail)?;
            pool.set_joint_buffer(l, kv);
            x = next;
            pending = Some(m);
        }
        let (_, logits) = mlx::fused::norm_product(&x, pending.as_ref(), &self.norm.weight, self.norm.eps, &head)?;
        Ok(Some(logits))
    }

    /// The rotary embedding `layer` uses.
    fn layer_rope(&self, layer: &Layer) -> &super::rope::Rope {
        match (&self.rope_local, layer.sliding) {
            (Some(r), true) => r,
            _ => &self.rope,
        }
    }
}
