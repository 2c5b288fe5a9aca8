// The integer path of the CPU quantized product (qmm.cc): one or two rows of activations as int8
// codes times 4-bit weights, for x86 with AVX2 (`maddubs`) or AVX-512 VNNI (`vpdpbusd`)
// (qmm_int.cc), and for arm64 with the int8 dot product (`sdot`, qmm_int_neon.cc); and times
// 8-bit weights with AVX-512 VNNI.

#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mlx/mlx.h"

namespace zeta_mlx::q8 {

/// Most rows of x one call of [`rows`] takes.
constexpr int kMaxRows = 32;

/// Activations as integers: per block of 32, int8 codes with a scale d (max |x| / 127, as ggml's
/// Q8_0), then two more int8 codes of what is left, at scales d / 254 and d / 254²:
///   x ≈ d · q + (d / 254) · r + (d / 254²) · r2,
/// about 23 bits, float32's own precision. Codes alone (8 bits) changed SmolLM2's greedy tokens
/// against mlx-lm; with one residual (15 bits) every product passed its bound, but the tiny
/// models' logits were 150x further from mlx-lm's than on the float path (2e-3 against 1.2e-5:
/// random weights amplify small errors layer after layer), at the edge of the tolerance. With the
/// second residual they are as close as the float path's.
///
/// Each chunk of 64 values is laid out as the 32 bytes of its 4-bit codes come apart: the even
/// positions of its two blocks (16 + 16 bytes), then the odd ones, so that one 256-bit load of
/// codes pairs with one load of activations per nibble half. For the VNNI loop (`pairs`), two
/// chunks' codes are one 512-bit load, so chunks go by pairs: both chunks' even positions, then
/// both chunks' odd ones (a last chunk without a pair keeps the single layout). The arm64 loop
/// takes the single layout: a 16-byte load of codes is one block's even or odd positions.
struct Prepared {
  std::vector<int8_t> storage;
  int8_t* xq = nullptr;
  int8_t* xr = nullptr;     // the first residuals' codes, same layout
  int8_t* xr2 = nullptr;    // the second residuals' codes
  std::vector<float> dv;    // [M, K / 64, 8]: per chunk, the first residual's scale (d / 254) of
                            // its first block in lanes 0-3 and of its second in 4-7, as the
                            // chunk's sums come out
  std::vector<float> xsum;  // [M, K / gs], exact float sums for the offsets
  bool pairs = false;       // the VNNI layout
  bool bytes = false;       // 8-bit weights (`prepare8`): codes in the weights' own order, and
                            // `dv` [M, K / 64, 16], each block's scale over its 8 lanes
};

/// `x` [M, K] (K a multiple of 64) prepared for [`rows`]. Needs AVX2 on x86.
Prepared prepare(const float* x, int M, int K, int gs);

/// `x` [M, K] (K a multiple of 64) prepared for [`rows`] on 8-bit weights. Needs AVX-512 VNNI.
Prepared prepare8(const float* x, int M, int K, int gs);

/// A [`Prepared`] whose three code arrays ([M, K] each, 64-byte aligned) and group sums
/// ([M, K / gs], zeros) are allocated; the layouts fill them.
inline Prepared with_buffers(int M, int K, int gs) {
  Prepared p;
  const size_t n = static_cast<size_t>(M) * K;
  p.storage.resize(3 * n + 64);
  auto addr = reinterpret_cast<uintptr_t>(p.storage.data());
  p.xq = p.storage.data() + (64 - addr % 64) % 64;
  p.xr = p.xq + n;
  p.xr2 = p.xr + n;
  p.xsum.assign(static_cast<size_t>(M) * (K / gs), 0.0f);
  return p;
}

/// What every architecture's [`prepare`] shares: the buffers and the layout (`pairs`: the VNNI
/// one). The architecture brings its own loops: `code(xb, q0, q1, q2, at, gap, d1_out)` codes the
/// block of 32 values at `xb` into the three code arrays (even positions at `at`, odd ones `gap`
/// further) and writes its first residual's scale four times; `sums(xm, K, gs, out)` writes the
/// row's group sums.
template <typename Code, typename Sums>
inline Prepared prepare_with(const float* x, int M, int K, int gs, bool pairs, Code code, Sums sums) {
  Prepared p = with_buffers(M, K, gs);
  p.pairs = pairs;
  const int chunks = K / 64, paired = pairs ? chunks - chunks % 2 : 0;
  const int blocks = K / 32, groups = K / gs;
  p.dv.resize(static_cast<size_t>(M) * blocks * 4);
  for (int m = 0; m < M; ++m) {
    const float* xm = x + static_cast<size_t>(m) * K;
    const size_t row = static_cast<size_t>(m) * K;
    for (int blk = 0; blk < blocks; ++blk) {
      const int c = blk / 2, half = blk % 2;
      const bool pair = c < paired;
      const size_t at = pair ? static_cast<size_t>(c / 2) * 128 + (c % 2) * 32 + half * 16
                             : static_cast<size_t>(c) * 64 + half * 16;
      code(xm + blk * 32, p.xq + row, p.xr + row, p.xr2 + row, at, pair ? 64 : 32,
           p.dv.data() + (static_cast<size_t>(m) * blocks + blk) * 4);
    }
    sums(xm, K, gs, p.xsum.data() + static_cast<size_t>(m) * groups);
  }
  return p;
}

/// Output columns [n0, n1) of rows [m0, m0 + M) (M <= kMaxRows) of `y` [*, N]: the prepared rows
/// times 4-bit weights `w` [N, K / 2] (8-bit, [N, K], when prepared by `prepare8`) with their
/// per-group scales and offsets. Every row runs the
/// same operations in the same order whatever M is, and the VNNI loop computes the same bits as
/// the AVX2 one (batch invariance).
template <typename S>
void rows(const Prepared& p, int m0, int M, int K, const uint8_t* w, const S* scales, const S* biases, int gs,
          float* y, int N, int n0, int n1);

// The scale types `rows` is built for, in the file (qmm_int.cc, qmm_int_neon.cc) that defines it.
#define ZETA_Q8_ROWS_INSTANCE(S)                                                                           \
  template void rows<S>(const Prepared&, int, int, int, const uint8_t*, const S*, const S*, int, float*, int, int, \
                        int);
#define ZETA_Q8_ROWS_INSTANCES                 \
  ZETA_Q8_ROWS_INSTANCE(float)                 \
  ZETA_Q8_ROWS_INSTANCE(mlx::core::float16_t) \
  ZETA_Q8_ROWS_INSTANCE(mlx::core::bfloat16_t)

}  // namespace zeta_mlx::q8
