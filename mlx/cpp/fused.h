// Fused CPU layers: the pieces of a decoder layer that MLX's CPU build runs as chains of small
// operations (RMSNorm, the gated activation, rope + KV write + attention of the decode rows), each
// as one MLX primitive, so a decode step is a few hundred graph nodes instead of thousands. Like
// the quantized kernel (qmm.h) they are MLX primitives: the model stays one MLX graph, and a GPU
// never sees them (its own fused kernels serve it).

#pragma once

#include <cstdint>
#include <vector>

#include "mlx/mlx.h"

namespace zeta_mlx {

/// RMS normalization of float32 `x` over its last axis, scaled by `w` (one node).
mlx::core::array fused_rms_norm(const mlx::core::array& x, const mlx::core::array& w, float eps,
                              mlx::core::StreamOrDevice s = {});

/// `x + y` and its RMS normalization, as one node: the residual add before every norm.
std::vector<mlx::core::array> fused_add_rms_norm(const mlx::core::array& x, const mlx::core::array& y,
                                               const mlx::core::array& w, float eps,
                                               mlx::core::StreamOrDevice s = {});

/// `act(gu[..., :I]) * gu[..., I:]` → `[..., I]`; `act` 0 is SiLU, 1 GeLU (tanh approximation).
mlx::core::array fused_gated_act(const mlx::core::array& gu, int act, mlx::core::StreamOrDevice s = {});

/// The index of the largest value of each row of float32 `x` over its last axis (uint32, that axis
/// removed): the first of equal values, as MLX's `argmax` (a NaN never wins unless first), with
/// the rows shared over the thread pool (argmax.cc).
mlx::core::array fused_argmax(const mlx::core::array& x, mlx::core::StreamOrDevice s = {});

/// The attention of a step's decode rows in one node.
struct DecodeAttentionSpec {
  int heads, kv_heads, head_dim;
  /// Rotated features (the first `rope_dims`), rotate-half or interleaved pairs.
  int rope_dims;
  bool traditional;
  /// Position scale and the factor folded into cosines and sines.
  float pos_scale, mscale;
  /// Score scale.
  float scale;
  /// Keys at most this far behind (0: all).
  int window;
  /// Epsilons of the per-head q and k norms (used when their weights are given).
  float q_eps, k_eps;
};

/// Rows `0..B` of `qkv` `[R, (heads + 2 kv_heads) * head_dim]` (B = `lens.size()`): q and k normed
/// per head (when `q_norm`/`k_norm` are given), rotated at `positions[b]` (by `inv_freqs`), k and v
/// written to slot `write[b]` of the layer's cache `kv` `[S, 2, kv_heads, head_dim]` (a slot's keys,
/// then its values), then every head attends to its row's `lens[b]` slots listed in `gather`
/// `[B * W]` (with `sinks` per head when given). Returns `[out [B, heads * head_dim], kv']` (two
/// nodes: the write, then the attention); the cache is written in place when MLX can donate it.
std::vector<mlx::core::array> fused_decode_attention(
    const mlx::core::array& qkv, const mlx::core::array& kv, const mlx::core::array& positions,
    const mlx::core::array& write, const mlx::core::array& gather, const mlx::core::array& lens,
    const mlx::core::array& inv_freqs, const mlx::core::array* q_norm, const mlx::core::array* k_norm,
    const mlx::core::array* sinks, const DecodeAttentionSpec& spec,
    mlx::core::StreamOrDevice s = {});

/// A packed weight as the CPU's quantized kernel takes it (qmm.h): affine, 4 or 8 bits, groups of
/// 32, 64 or 128.
struct PackedWeight {
  mlx::core::array w, scales, biases;
  int group_size, bits;
};

/// `[x + m,] rms_norm(x (+ m)) * norm @ p.T` as one node (layer.cc): the residual add, the norm and
/// the product after it. Returns `[sum, y]` with `m`, else `[y]`.
std::vector<mlx::core::array> fused_norm_product(const mlx::core::array& x, const mlx::core::array* m,
                                               const mlx::core::array& norm, float eps, const PackedWeight& p,
                                               mlx::core::StreamOrDevice s = {});

/// A decoder layer's decode rows after their q/k/v product, as two nodes (layer.cc): the cache
/// write, then attention, output product, residual add, post-attention norm, gate/up product,
/// gated activation (`act` as `fused_gated_act`) and down product. Attention arguments as
/// `fused_decode_attention`; `x` the residual stream `[B, hidden]`. Returns
/// `[x + attention, mlp output, kv']`: the next norm adds the second to the first.
std::vector<mlx::core::array> fused_decode_layer(
    const mlx::core::array& qkv, const mlx::core::array& kv, const mlx::core::array& positions,
    const mlx::core::array& write, const mlx::core::array& gather, const mlx::core::array& lens,
    const mlx::core::array& inv_freqs, const mlx::core::array* q_norm, const mlx::core::array* k_norm,
    const mlx::core::array* sinks, const DecodeAttentionSpec& spec, const mlx::core::array& x,
    const mlx::core::array& post_norm, float post_eps, const PackedWeight& o, const PackedWeight& gate_up,
    const PackedWeight& down, int act, mlx::core::StreamOrDevice s = {});

/// KV buffers the attention node had to copy because MLX could not donate them (each copy is a
/// whole layer's cache: tests check a decode step makes none).
uint64_t fused_attention_buffer_copies();

}  // namespace zeta_mlx
