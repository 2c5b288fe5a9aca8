// What qmm.cc shares with qmm_tiles.cc: dequantizing MLX's affine codes to float32, and the
// quantized product for several rows of activations (a batch's decode step), which multiplies
// tiles of dequantized weights held in L1.

#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "mlx/mlx.h"

#include "simd.h"

namespace zeta_mlx::tiles {

#ifdef ZETA_X86
/// A scale or offset as float32: float16 through F16C (MLX's portable conversion is a dozen
/// branches), bfloat16 by a shift.
template <typename S>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline float widen(S v) {
  if constexpr (std::is_same_v<S, mlx::core::float16_t>) {
    return _cvtsh_ss(v.bits_);
  } else if constexpr (std::is_same_v<S, mlx::core::bfloat16_t>) {
    uint32_t u = static_cast<uint32_t>(v.bits_) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  } else {
    return v;
  }
}

/// `n` (at most 16) consecutive scales or offsets as float32 at `out`, the values `widen` gives:
/// sixteen by one vector conversion, fewer one by one. The AVX-512 loops widen a row's or a
/// block's groups this way ahead of use and broadcast them from `out` (a broadcast from memory is
/// a load, where one from a register is a shuffle on a port an FMA unit shares on Intel's cores).
template <typename S>
__attribute__((target("avx512f,avx2,fma,f16c"))) inline void widen_upto16(const S* p, int n, float* out) {
  if (n < 16) {
    for (int i = 0; i < n; ++i) out[i] = widen(p[i]);
  } else if constexpr (std::is_same_v<S, mlx::core::float16_t>) {
    _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  } else if constexpr (std::is_same_v<S, mlx::core::bfloat16_t>) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    _mm512_storeu_ps(out, _mm512_castsi512_ps(_mm512_slli_epi32(u, 16)));
  } else {
    std::memcpy(out, p, 16 * sizeof(float));
  }
}

/// The sum of eight lanes, in a fixed order (halves, then pairs).
__attribute__((target("avx2,fma"), always_inline)) inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}
#endif

/// One group of `gs` codes of `bits` (4 or 8) at `q` as `code * scale + bias` in float32 at
/// `out` (SIMD where the machine has AVX2).
void dequant_group(const uint8_t* q, float scale, float bias, int gs, int bits, float* out);

/// Weight rows [n0, n1) of `w` [N, K * bits / 8] dequantized to `out` [N, K] (rows outside the
/// range untouched).
template <typename S>
void dequant_rows(const uint8_t* w, const S* scales, const S* biases, int K, int gs, int bits, float* out, int n0,
                  int n1);

/// The rows of `x` as `float_rows` reads them: 64-byte aligned, `ld` floats apart (K + 16, so
/// that rows whose size is a multiple of 4 KiB do not all fall in the same L1 sets: that alone
/// cost 40% on a 2048-wide product), and for 4-bit weights each block of 32 values reordered as a
/// byte's nibbles come apart (its 16 even positions, then its 16 odd ones).
struct Rows {
  std::vector<float> storage;
  const float* data = nullptr;
  size_t ld = 0;
};

/// `x` [M, K] laid out for a product with weights of `bits`.
Rows prepare_rows(const float* x, int M, int K, int bits);

/// Columns [n0, n1) of `y` [M, N] = `x` [M, K] @ dequantize(w).T for any M: each block of four
/// weight rows dequantized into a buffer and multiplied there with every row of `x`. A row's
/// results are the same bits whatever M is.
template <typename S>
void float_rows(const Rows& x, int M, int K, const uint8_t* w, const S* scales, const S* biases, int gs, int bits,
                float* y, int N, int n0, int n1);

}  // namespace zeta_mlx::tiles
