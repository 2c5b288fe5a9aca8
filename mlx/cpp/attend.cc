// The decode attention's arithmetic (see attend.h).
//
// Why a hand-written AVX-512 version: the portable loop, even built for AVX-512, computed one
// dot product at a time and summed its 16 lanes through the stack, and kept the output rows in
// memory across the value rows; a profile of SmolLM2 at batch 1 put a quarter of the decode step
// in it. Here 16 positions' dot products are summed together by a fixed transposition tree, and
// the outputs stay in registers over all the value rows. Other machines, and head sizes that
// are not a multiple of 16, keep the portable loop, built for AVX2 or the baseline.

#include "attend.h"

#include "cpu_parallel.h"
#include "exp16.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>


namespace zeta_mlx::attn {

namespace {

// Softmax of each head's scores in place (the maximum subtracted, sinks joining the sum); the
// reciprocal of each head's sum goes to `inv`.
inline __attribute__((always_inline)) void softmax(float* sc, int heads, int n, const float* sinks, float* inv) {
  for (int h = 0; h < heads; ++h) {
    float* sh = sc + static_cast<size_t>(h) * n;
    float m = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < n; ++i) m = std::max(m, sh[i]);
    if (sinks != nullptr) m = std::max(m, sinks[h]);
    float den = sinks != nullptr ? std::exp(sinks[h] - m) : 0.0f;
    for (int i = 0; i < n; ++i) {
      sh[i] = std::exp(sh[i] - m);
      den += sh[i];
    }
    inv[h] = den > 0.0f ? 1.0f / den : 0.0f;
  }
}

inline int64_t slot_at(const int64_t* slots, int j, int64_t S) {
  return slots[j] >= 0 && slots[j] < S ? slots[j] : 0;
}

// A sequence's rows are scattered over the cache (slots are taken one token at a time, between
// other sequences'): rows a few positions ahead are asked for before they are read.
constexpr int kAhead = 8;

inline void prefetch_row(const float* base, const int64_t* slots, int j, int len, int64_t S, int64_t stride,
                         int floats) {
  if (j >= len) return;
  const char* p = reinterpret_cast<const char*>(base + slot_at(slots, j, S) * stride);
  for (int b = 0; b < floats * 4; b += 64) __builtin_prefetch(p + b);
}

// The portable loop: each key row read once for all its heads, one dot product at a time with 16
// independent partial sums (which the compiler keeps in one vector register where it has one).
inline __attribute__((always_inline)) void portable_body(const float* q, int ng, int rep, int hd, const float* K,
                                                         const float* V, int64_t stride, const int64_t* slots, int j0,
                                                         int len, int64_t S, float scale, const float* sinks,
                                                         float* sc, float* y) {
  const int n = std::max(len - j0, 0), heads = ng * rep;
  for (int j = j0; j < std::min(len, j0 + kAhead); ++j) prefetch_row(K, slots, j, len, S, stride, ng * hd);
  for (int j = j0; j < len; ++j) {
    prefetch_row(K, slots, j + kAhead, len, S, stride, ng * hd);
    const float* row = K + slot_at(slots, j, S) * stride;
    for (int h = 0; h < heads; ++h) {
      const float* qh = q + h * hd;
      const float* k = row + (h / rep) * hd;
      float acc[16] = {};
      int d = 0;
      for (; d + 16 <= hd; d += 16)
        for (int l = 0; l < 16; ++l) acc[l] += qh[d + l] * k[d + l];
      for (; d < hd; ++d) acc[0] += qh[d] * k[d];
      for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
      sc[h * n + (j - j0)] = acc[0] * scale;
    }
  }
  float* inv = sc + static_cast<size_t>(heads) * n;
  softmax(sc, heads, n, sinks, inv);
  std::fill(y, y + static_cast<size_t>(heads) * hd, 0.0f);
  for (int j = j0; j < std::min(len, j0 + kAhead); ++j) prefetch_row(V, slots, j, len, S, stride, ng * hd);
  for (int j = j0; j < len; ++j) {
    prefetch_row(V, slots, j + kAhead, len, S, stride, ng * hd);
    const float* row = V + slot_at(slots, j, S) * stride;
    for (int h = 0; h < heads; ++h) {
      const float e = sc[h * n + (j - j0)];
      const float* v = row + (h / rep) * hd;
      float* yh = y + h * hd;
      for (int d = 0; d < hd; ++d) yh[d] += e * v[d];
    }
  }
  for (int h = 0; h < heads; ++h)
    for (int d = 0; d < hd; ++d) y[h * hd + d] *= inv[h];
}

void attend_portable(const float* q, int ng, int rep, int hd, const float* K, const float* V, int64_t stride,
                     const int64_t* slots, int j0, int len, int64_t S, float scale, const float* sinks, float* sc,
                     float* y) {
  portable_body(q, ng, rep, hd, K, V, stride, slots, j0, len, S, scale, sinks, sc, y);
}

#ifdef ZETA_X86
__attribute__((target("avx2,fma"))) void attend_avx2(const float* q, int ng, int rep, int hd, const float* K,
                                                     const float* V, int64_t stride, const int64_t* slots, int j0,
                                                     int len, int64_t S, float scale, const float* sinks, float* sc,
                                                     float* y) {
  portable_body(q, ng, rep, hd, K, V, stride, slots, j0, len, S, scale, sinks, sc, y);
}

// Lane i of the result is the sum of v[i]'s 16 lanes: pairs, then quads within each 128-bit
// block, then across blocks (45 instructions for 16 sums, in a fixed order).
__attribute__((target("avx512f"), always_inline)) inline __m512 sum16(const __m512* v) {
  __m512 p[8], r[4];
  for (int i = 0; i < 8; ++i)
    p[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    r[i] = _mm512_add_ps(_mm512_shuffle_ps(p[2 * i], p[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(p[2 * i], p[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(r[2], r[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(r[2], r[3], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1)));
}

// softmax() on 16 lanes: the same maximum, e^(score − maximum) by exp16, the sum by lanes then
// one fixed tree.
__attribute__((target("avx512f"))) void softmax_avx512(float* sc, int heads, int n, const float* sinks,
                                                       float* inv) {
  for (int h = 0; h < heads; ++h) {
    float* sh = sc + static_cast<size_t>(h) * n;
    __m512 mv = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int i = 0; i < n; i += 16) {
      const __mmask16 k = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
      mv = _mm512_mask_max_ps(mv, k, mv, _mm512_maskz_loadu_ps(k, sh + i));
    }
    float m = _mm512_reduce_max_ps(mv);
    if (sinks != nullptr) m = std::max(m, sinks[h]);
    const __m512 vm = _mm512_set1_ps(m);
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
      const __mmask16 k = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
      const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, sh + i), vm));
      _mm512_mask_storeu_ps(sh + i, k, e);
      acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    const float den = _mm512_reduce_add_ps(acc) + (sinks != nullptr ? std::exp(sinks[h] - m) : 0.0f);
    inv[h] = den > 0.0f ? 1.0f / den : 0.0f;
  }
}

// Outputs of `H` heads over `C` 16-float chunks of the head (from chunk `c0`), summed over every
// value row in order and scaled by the heads' reciprocal sums; the accumulators stay in
// registers (at most 16).
template <int H, int C>
__attribute__((target("avx512f"))) void value_block(const float* e, int n, const float* inv, const float* V,
                                                    int64_t stride, const int64_t* rows, int c0, int hd, float* y) {
  __m512 acc[H][C];
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < C; ++c) acc[h][c] = _mm512_setzero_ps();
  for (int i = 0; i < n; ++i) {
    const float* v = V + rows[i] * stride + c0 * 16;
    __m512 vv[C];
    for (int c = 0; c < C; ++c) vv[c] = _mm512_loadu_ps(v + c * 16);
    for (int h = 0; h < H; ++h) {
      const __m512 w = _mm512_set1_ps(e[static_cast<size_t>(h) * n + i]);
      for (int c = 0; c < C; ++c) acc[h][c] = _mm512_fmadd_ps(w, vv[c], acc[h][c]);
    }
  }
  for (int h = 0; h < H; ++h) {
    const __m512 s = _mm512_set1_ps(inv[h]);
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + h * hd + (c0 + c) * 16, _mm512_mul_ps(acc[h][c], s));
  }
}

using ValueBlock = void (*)(const float*, int, const float*, const float*, int64_t, const int64_t*, int, int, float*);

template <int H>
constexpr ValueBlock value_blocks[4] = {value_block<H, 1>, value_block<H, 2>, value_block<H, 3>, value_block<H, 4>};

constexpr const ValueBlock* value_table[4] = {value_blocks<1>, value_blocks<2>, value_blocks<3>, value_blocks<4>};

// Head sizes that are a multiple of 16.
__attribute__((target("avx512f"))) void attend_avx512(const float* q, int ng, int rep, int hd, const float* K,
                                                       const float* V, int64_t stride, const int64_t* slots, int j0,
                                                       int len, int64_t S, float scale, const float* sinks,
                                                       float* sc, float* y) {
  const int n = std::max(len - j0, 0), heads = ng * rep, chunks = hd / 16;
  if (n == 0) {
    std::fill(y, y + static_cast<size_t>(heads) * hd, 0.0f);
    return;
  }
  // Each position's slot once (clamped to the buffer), padded to a whole block of 16 with the
  // last position's, whose extra scores are not kept.
  const int blocks = (n + 15) / 16;
  // Per thread and kept: this runs for every row and kv head of every layer of a step.
  thread_local std::vector<int64_t> slots_of;
  if (slots_of.size() < static_cast<size_t>(blocks) * 16) slots_of.resize(static_cast<size_t>(blocks) * 16);
  int64_t* rows = slots_of.data();
  for (int i = 0; i < blocks * 16; ++i) rows[i] = slot_at(slots, j0 + std::min(i, n - 1), S);

  const int row_floats = ng * hd;
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int b = 0; b < blocks; ++b) {
    const int64_t* r = rows + b * 16;
    if (b + 1 < blocks)
      for (int i = 0; i < 16; ++i) {
        const char* p = reinterpret_cast<const char*>(K + r[16 + i] * stride);
        for (int o = 0; o < row_floats * 4; o += 64) __builtin_prefetch(p + o);
      }
    const int keep = std::min(16, n - b * 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << keep) - 1);
    for (int h = 0; h < heads; ++h) {
      const float* qh = q + static_cast<size_t>(h) * hd;
      const int64_t off = static_cast<int64_t>(h / rep) * hd;
      __m512 acc[16];
      const __m512 q0 = _mm512_loadu_ps(qh);
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_mul_ps(q0, _mm512_loadu_ps(K + r[i] * stride + off));
      for (int c = 1; c < chunks; ++c) {
        const __m512 qc = _mm512_loadu_ps(qh + c * 16);
        for (int i = 0; i < 16; ++i)
          acc[i] = _mm512_fmadd_ps(qc, _mm512_loadu_ps(K + r[i] * stride + off + c * 16), acc[i]);
      }
      _mm512_mask_storeu_ps(sc + static_cast<size_t>(h) * n + b * 16, mask, _mm512_mul_ps(sum16(acc), vscale));
    }
  }

  float* inv = sc + static_cast<size_t>(heads) * n;
  softmax_avx512(sc, heads, n, sinks, inv);

  for (int i = 0; i < std::min(n, kAhead); ++i) {
    const char* p = reinterpret_cast<const char*>(V + rows[i] * stride);
    for (int o = 0; o < row_floats * 4; o += 64) __builtin_prefetch(p + o);
  }
  for (int g = 0; g < ng; ++g)
    for (int h0 = 0; h0 < rep; h0 += 4) {
      const int hn = std::min(4, rep - h0);
      const int h = g * rep + h0;
      for (int c0 = 0; c0 < chunks; c0 += 4) {
        const int cn = std::min(4, chunks - c0);
        value_table[hn - 1][cn - 1](sc + static_cast<size_t>(h) * n, n, inv + h, V + g * hd, stride, rows, c0, hd,
                                    y + static_cast<size_t>(h) * hd);
      }
    }
}

#endif

}  // namespace

void attend(const float* q, int ng, int rep, int hd, const float* K, const float* V, int64_t stride,
            const int64_t* slots, int j0, int len, int64_t S, float scale, const float* sinks, float* sc, float* y) {
#ifdef ZETA_X86
  switch (cpu_isa()) {
    case Isa::avx512:
    case Isa::avx512_vnni:
      if (hd % 16 == 0) return attend_avx512(q, ng, rep, hd, K, V, stride, slots, j0, len, S, scale, sinks, sc, y);
      [[fallthrough]];
    case Isa::avx2:
      return attend_avx2(q, ng, rep, hd, K, V, stride, slots, j0, len, S, scale, sinks, sc, y);
    case Isa::portable:
    case Isa::neon:
    case Isa::neon_dot:
      break;
  }
#endif
  attend_portable(q, ng, rep, hd, K, V, stride, slots, j0, len, S, scale, sinks, sc, y);
}

}  // namespace zeta_mlx::attn
