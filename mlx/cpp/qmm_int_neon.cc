// The integer path of the CPU quantized product on arm64 (see qmm_int.h): the x86 loops' scheme
// with Armv8.2's int8 dot product. `sdot` multiplies sixteen signed bytes by sixteen and adds
// each four into an int32 lane; 4-bit codes (0-15) are signed bytes as they are, so a block of
// 32 weights and one activation code is two `sdot`s, and its three codes six. Cores without
// DotProd take the tiles (qmm_tiles.cc).
//
// The activations are coded as on x86 (an int8 code and two int8 residuals per block of 32,
// about 23 bits), here by a scalar loop: it touches each activation once per product, against
// each weight once per output row.

#include "qmm_int.h"
#include "simd.h"

#ifdef ZETA_ARM

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cpu_parallel.h"

#if defined(__clang__)
#define ZETA_DOTPROD __attribute__((target("dotprod")))
#else
#define ZETA_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

namespace zeta_mlx::q8 {

namespace mx = mlx::core;

namespace {

// One block of 32 values as three codes (see Prepared): even positions at `at`, odd ones `gap`
// bytes further; the first residual's scale into `d1_out` four times (a chunk's lanes).
void code_block(const float* xb, int8_t* q0, int8_t* q1, int8_t* q2, size_t at, size_t gap, float* d1_out) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
  const float d0 = amax / 127.0f, d1 = d0 / 254.0f, d2 = d1 / 254.0f;
  std::fill(d1_out, d1_out + 4, d1);
  int8_t* out[3] = {q0, q1, q2};
  for (int i = 0; i < 32; ++i) {
    int c[3] = {0, 0, 0};
    if (amax != 0) {
      // Each code takes what the previous ones left (|left| <= half a step, so the next code is
      // within ±127); the leftovers are formed with fused multiply-adds, rounding to nearest even.
      const auto code = [](float v) { return std::min(127.0f, std::max(-127.0f, std::nearbyint(v))); };
      const float c0 = code(xb[i] * (1.0f / d0));
      const float l0 = std::fma(-c0, d0, xb[i]);
      const float c1 = code(l0 * (1.0f / d1));
      const float l1 = std::fma(-c1, d1, l0);
      const float c2 = code(l1 * (1.0f / d2));
      c[0] = static_cast<int>(c0), c[1] = static_cast<int>(c1), c[2] = static_cast<int>(c2);
    }
    const size_t to = at + (i % 2 == 0 ? 0 : gap) + i / 2;
    for (int k = 0; k < 3; ++k) out[k][to] = static_cast<int8_t>(c[k]);
  }
}

template <typename S>
inline float widen(S v) {
  return static_cast<float>(v);
}

// Σ_g bias_g · Σ_i x_i for one output.
template <typename S>
inline float offsets(const S* br, const float* xsum, int groups) {
  float off = 0;
  for (int g = 0; g < groups; ++g) off += widen(br[g]) * xsum[g];
  return off;
}

// `sdot`: acc + the sums of each four byte products. Clang before 16 declares `vdotq_s32` only
// where the whole file targets DotProd (Apple's arm64 does: the M1 has it), not in a function
// that does; there the instruction itself.
ZETA_DOTPROD inline __attribute__((always_inline)) int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD) || !defined(__clang__)
  return vdotq_s32(acc, a, b);
#else
  __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
  return acc;
#endif
}

// Σ q·a over a block's 32 codes (`lo`: the even positions', `hi`: the odd ones') and its
// activations (even ones at `a`, odd ones 32 bytes further), in four int32 lanes.
ZETA_DOTPROD inline __attribute__((always_inline)) int32x4_t block_dot(int8x16_t lo, int8x16_t hi, const int8_t* a) {
  return sdot(sdot(vdupq_n_s32(0), lo, vld1q_s8(a)), hi, vld1q_s8(a + 32));
}

// A block's three codes in units of the first residual's scale, as four float lanes:
//   254 · Σ q·c0 + Σ q·c1 (exact in int32: at most 8 · 15 · 127 · 255) + Σ q·c2 / 254.
ZETA_DOTPROD inline __attribute__((always_inline)) float32x4_t block_sum(int8x16_t lo, int8x16_t hi, const int8_t* c0,
                                                                         const int8_t* c1, const int8_t* c2) {
  const int32x4_t t = vmlaq_n_s32(block_dot(lo, hi, c1), block_dot(lo, hi, c0), 254);
  return vfmaq_n_f32(vcvtq_f32_s32(t), vcvtq_f32_s32(block_dot(lo, hi, c2)), 1.0f / 254.0f);
}

// 4-bit rows times the coded activations: per chunk of 64 weights (two blocks) and row, twelve
// `sdot`s, then each block's sum scaled by scale_g · d_block into one four-lane accumulator:
//   y = Σ_blocks scale_g · d_b · Σ_i q_i x̂_i + Σ_g bias_g · Σ_i x_i.
// Every row runs the same operations in the same order whatever M is (batch invariance).
template <typename S, bool kTwoGroups>
ZETA_DOTPROD void rows4_q8_neon(const Prepared& p, int m0, int M, int K, const uint8_t* w, const S* scales,
                                const S* biases, int gs, float* y, int N, int n0, int n1) {
  const int groups = K / gs, chunks = K / 64;
  const int shift = kTwoGroups ? 0 : __builtin_ctz(static_cast<unsigned>(gs / 64));
  const size_t row_bytes = static_cast<size_t>(K) / 2;
  const uint8x16_t low = vdupq_n_u8(0x0F);
  const size_t at0 = static_cast<size_t>(m0) * K;
  const float* dv = p.dv.data() + static_cast<size_t>(m0) * chunks * 8;
  const float* xs = p.xsum.data() + static_cast<size_t>(m0) * groups;
  float32x4_t acc[kMaxRows];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    const S* sr = scales + static_cast<size_t>(n) * groups;
    const S* br = biases + static_cast<size_t>(n) * groups;
    ask_ahead(wr, row_bytes, sr, br, groups);
    for (int m = 0; m < M; ++m) acc[m] = vdupq_n_f32(0.0f);
    for (int c = 0; c < chunks; ++c) {
      const uint8x16_t v0 = vld1q_u8(wr + c * 32), v1 = vld1q_u8(wr + c * 32 + 16);
      const int8x16_t lo0 = vreinterpretq_s8_u8(vandq_u8(v0, low)), hi0 = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4));
      const int8x16_t lo1 = vreinterpretq_s8_u8(vandq_u8(v1, low)), hi1 = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
      const float s0 = widen(sr[kTwoGroups ? 2 * c : c >> shift]);
      const float s1 = widen(sr[kTwoGroups ? 2 * c + 1 : c >> shift]);
      for (int m = 0; m < M; ++m) {
        const size_t at = at0 + static_cast<size_t>(m) * K + c * 64;
        const float* d = dv + (static_cast<size_t>(m) * chunks + c) * 8;
        const float32x4_t b0 = block_sum(lo0, hi0, p.xq + at, p.xr + at, p.xr2 + at);
        const float32x4_t b1 = block_sum(lo1, hi1, p.xq + at + 16, p.xr + at + 16, p.xr2 + at + 16);
        acc[m] = vfmaq_n_f32(acc[m], b0, s0 * d[0]);
        acc[m] = vfmaq_n_f32(acc[m], b1, s1 * d[4]);
      }
    }
    for (int m = 0; m < M; ++m) {
      const float sum = vpadds_f32(vadd_f32(vget_low_f32(acc[m]), vget_high_f32(acc[m])));
      y[static_cast<size_t>(m0 + m) * N + n] = sum + offsets(br, xs + static_cast<size_t>(m) * groups, groups);
    }
  }
}

}  // namespace

Prepared prepare(const float* x, int M, int K, int gs) {
  return prepare_with(x, M, K, gs, false, code_block, group_sums);
}

template <typename S>
void rows(const Prepared& p, int m0, int M, int K, const uint8_t* w, const S* scales, const S* biases, int gs,
          float* y, int N, int n0, int n1) {
  if (gs == 32) return rows4_q8_neon<S, true>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
  rows4_q8_neon<S, false>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
}

ZETA_Q8_ROWS_INSTANCES

}  // namespace zeta_mlx::q8

#endif
