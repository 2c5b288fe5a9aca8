// The decode rows' attention arithmetic (what fused.cc's ZetaDecodeAttention runs per row and
// group of kv heads), apart from the primitive so that its vector versions stay small.

#pragma once

#include <cstdint>

namespace zeta_mlx::attn {

/// The query heads of `ng` consecutive kv heads (`rep` query heads per kv head) attend to one
/// sequence's slots [j0, len): their rotated queries at `q` (ng x rep x hd), the first kv head's
/// key and value rows at `K` and `V` + slot * `stride`; `slots` maps a position to its slot (one
/// outside [0, S) reads the scratch slot 0). `sinks` (per head, or null) join the softmax.
/// `sc` holds ng x rep x (len - j0 + 1) floats; `y` gets ng x rep x hd.
///
/// A row's result does not depend on `ng` (each head's sums run in the same order), so a row
/// gives the same bits whether its kv heads are taken together or apart, in any batch.
void attend(const float* q, int ng, int rep, int hd, const float* K, const float* V, int64_t stride,
            const int64_t* slots, int j0, int len, int64_t S, float scale, const float* sinks, float* sc, float* y);

}  // namespace zeta_mlx::attn
