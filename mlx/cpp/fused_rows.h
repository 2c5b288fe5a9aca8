// What fused.cc's primitives compute, as functions on plain rows, for the whole-layer nodes of
// layer.cc: one piece of code serves both, so a layer node gives the bits the separate nodes give.
// Each runs where it is called (a node's task) and shares its rows with the pool.

#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "fused.h"
#include "mlx/mlx.h"

namespace zeta_mlx {

/// Rows `[n, D]`: `normed = rms_norm(x (+ y)) * w`; with `y`, the sum `x + y` goes to `sum`.
void rms_rows(const float* x, const float* y, const float* w, float eps, size_t n, int D, float* sum, float* normed);

/// `y [n, I] = act(x[:, :I]) * x[:, I:]` for `x [n, 2I]`; `act` 0 SiLU, 1 GeLU (tanh).
void gated_rows(const float* x, size_t n, int I, int act, float* y);

/// The decode rows' attention (`o [B, heads * head_dim]`) from the attention node's inputs: qkv,
/// the written cache, positions, gather, lens, inverse wavelengths[, q norm][, sinks].
void attend_rows(std::span<const mlx::core::array> in, const DecodeAttentionSpec& sp, bool q_norm, bool sinks,
                 float* o);

/// The cache write node and the attention's inputs, checked.
struct DecodeAttentionNodes {
  mlx::core::array written;
  std::vector<mlx::core::array> inputs;
  int rows;
};

/// Checks the decode attention's arguments and builds the node that writes the rows' keys and
/// values (see `fused_decode_attention`); returns it with the inputs `attend_rows` reads.
DecodeAttentionNodes decode_attention_nodes(const mlx::core::array& qkv, const mlx::core::array& kv,
                                            const mlx::core::array& positions, const mlx::core::array& write,
                                            const mlx::core::array& gather, const mlx::core::array& lens,
                                            const mlx::core::array& inv_freqs, const mlx::core::array* q_norm,
                                            const mlx::core::array* k_norm, const mlx::core::array* sinks,
                                            const DecodeAttentionSpec& sp, mlx::core::Stream stream);

/// Throws `[op] what` (an invalid argument) unless `ok`.
void require(bool ok, const std::string& op, const std::string& what);

/// `s` as a stream, which must be the CPU's.
mlx::core::Stream cpu_stream(mlx::core::StreamOrDevice s, const std::string& op);

}  // namespace zeta_mlx
