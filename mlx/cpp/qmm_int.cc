// The integer path of the CPU quantized product (see qmm_int.h).
//
// Per 64 weights and row, the AVX2 loop spends six `maddubs` and three `madd` to keep float32's
// precision (three activation codes). With AVX-512 VNNI one `vpdpbusd` multiplies 64 codes by 64
// activations and sums them into int32 lanes, so two chunks take six instructions. One row is
// bound by reading the weights either way (an 8192 x 2048 product moves ~29 GB/s on a Zen 5, its
// read bandwidth); two rows gain 1.3-1.4x. Both loops form the same integer sums and the same
// float operations lane for lane, so they give the same bits.

#include "simd.h"

#include "qmm_int.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu_parallel.h"
#include "qmm_tiles.h"

#ifdef ZETA_X86

namespace zeta_mlx::q8 {

namespace mx = mlx::core;

namespace {


// The three codes of one block of 32 values, the even positions' from `at` and the odd ones'
// `gap` bytes further (see Prepared),
// eight values at a time; each code takes what the previous ones leave (|left| <= half a step,
// so the next code is within ±127), the leftovers formed with FMAs, exact enough for the last
// code. Rounding is to nearest even, as `nearbyint`.
__attribute__((target("avx2,fma"))) void code_block(const float* xb, int8_t* q0, int8_t* q1, int8_t* q2, size_t at,
                                                   size_t gap, float* d1_out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 mx = _mm256_setzero_ps();
  for (int i = 0; i < 32; i += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  const float amax = _mm_cvtss_f32(h);
  const float d0 = amax / 127.0f, d1 = d0 / 254.0f, d2 = d1 / 254.0f;
  std::fill(d1_out, d1_out + 4, d1);
  alignas(32) int32_t c[3][32];
  if (amax == 0) {
    std::memset(c, 0, sizeof c);
  } else {
    const __m256 lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    const __m256 vd0 = _mm256_set1_ps(d0), vd1 = _mm256_set1_ps(d1);
    const __m256 i0 = _mm256_set1_ps(1.0f / d0), i1 = _mm256_set1_ps(1.0f / d1), i2 = _mm256_set1_ps(1.0f / d2);
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    for (int i = 0; i < 32; i += 8) {
      const __m256 v = _mm256_loadu_ps(xb + i);
      const __m256 c0 = _mm256_min_ps(lim, _mm256_max_ps(nlim, _mm256_round_ps(_mm256_mul_ps(v, i0), kNearest)));
      const __m256 l0 = _mm256_fnmadd_ps(c0, vd0, v);
      const __m256 c1 = _mm256_min_ps(lim, _mm256_max_ps(nlim, _mm256_round_ps(_mm256_mul_ps(l0, i1), kNearest)));
      const __m256 l1 = _mm256_fnmadd_ps(c1, vd1, l0);
      const __m256 c2 = _mm256_min_ps(lim, _mm256_max_ps(nlim, _mm256_round_ps(_mm256_mul_ps(l1, i2), kNearest)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(c[0] + i), _mm256_cvtps_epi32(c0));
      _mm256_store_si256(reinterpret_cast<__m256i*>(c[1] + i), _mm256_cvtps_epi32(c1));
      _mm256_store_si256(reinterpret_cast<__m256i*>(c[2] + i), _mm256_cvtps_epi32(c2));
    }
  }
  int8_t* out[3] = {q0, q1, q2};
  for (int k = 0; k < 3; ++k) {
    for (int j = 0; j < 16; ++j) {
      out[k][at + j] = static_cast<int8_t>(c[k][2 * j]);
      out[k][at + gap + j] = static_cast<int8_t>(c[k][2 * j + 1]);
    }
  }
}

// The group sums eight lanes at a time, each lane's partial sums added by one fixed tree.
__attribute__((target("avx2,fma"))) void group_sums_avx2(const float* xm, int K, int gs, float* out) {
  for (int g = 0; g < K / gs; ++g) {
    __m256 a = _mm256_setzero_ps();
    for (int i = 0; i < gs; i += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(xm + g * gs + i));
    out[g] = tiles::hsum(a);
  }
}

}  // namespace

Prepared prepare(const float* x, int M, int K, int gs) {
  return prepare_with(x, M, K, gs, cpu_isa() == Isa::avx512_vnni, code_block, group_sums_avx2);
}

Prepared prepare8(const float* x, int M, int K, int gs) {
  Prepared p = with_buffers(M, K, gs);
  p.bytes = true;
  const int blocks = K / 32, chunks = K / 64, groups = K / gs;
  p.dv.resize(static_cast<size_t>(M) * chunks * 16);
  for (int m = 0; m < M; ++m) {
    const float* xm = x + static_cast<size_t>(m) * K;
    const size_t row = static_cast<size_t>(m) * K;
    for (int blk = 0; blk < blocks; ++blk) {
      // code_block puts the values it reads at even positions first and odd ones `gap` after:
      // fed the block interleaved with itself (its halves alternating), it writes the codes in
      // the weights' own order, which is what one byte per weight needs.
      float mixed[32];
      for (int j = 0; j < 16; ++j) {
        mixed[2 * j] = xm[blk * 32 + j];
        mixed[2 * j + 1] = xm[blk * 32 + 16 + j];
      }
      float d1[4];
      code_block(mixed, p.xq + row, p.xr + row, p.xr2 + row, static_cast<size_t>(blk) * 32, 16, d1);
      float* lanes = p.dv.data() + (static_cast<size_t>(m) * chunks + blk / 2) * 16 + (blk % 2) * 8;
      std::fill(lanes, lanes + 8, d1[0]);
    }
    group_sums_avx2(xm, K, gs, p.xsum.data() + static_cast<size_t>(m) * groups);
  }
  return p;
}

namespace {

// Σ q·a over 64 codes (`lo`: their low nibbles, `hi`: high) and 64 int8 activations, as int16
// pairs: `maddubs` multiplies unsigned codes by signed activations and adds pairs (at most
// 2 · 15 · 127: no saturation).
__attribute__((target("avx2"), always_inline)) inline __m256i dot16(__m256i lo, __m256i hi, const int8_t* a) {
  const __m256i* v = reinterpret_cast<const __m256i*>(a);
  return _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_load_si256(v)),
                          _mm256_maddubs_epi16(hi, _mm256_load_si256(v + 1)));
}

// A chunk of 64 codes times the three activation codes, in units of the first residual's scale,
// as 8 float sums (lanes 0-3 the chunk's first block, 4-7 its second):
//   254 · Σ q·c0 + Σ q·c1 + Σ q·c2 / 254.
// The first two are one int32 (`madd` by 254 widens and scales in one instruction; at most
// 8 · 15 · 127 · 255, exact in float32 too); the third is added in float.
__attribute__((target("avx2,fma"), always_inline)) inline __m256 chunk_sum(__m256i lo, __m256i hi, const int8_t* c0,
                                                                          const int8_t* c1, const int8_t* c2) {
  const __m256i t = _mm256_add_epi32(_mm256_madd_epi16(dot16(lo, hi, c0), _mm256_set1_epi16(254)),
                                     _mm256_madd_epi16(dot16(lo, hi, c1), _mm256_set1_epi16(1)));
  const __m256i u = _mm256_madd_epi16(dot16(lo, hi, c2), _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(u), _mm256_set1_ps(1.0f / 254.0f), _mm256_cvtepi32_ps(t));
}

// Eight scales or offsets as float32 lanes.
template <typename S>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 load8(const S* p) {
  if constexpr (std::is_same_v<S, mx::float16_t>) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same_v<S, mx::bfloat16_t>) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  } else {
    return _mm256_loadu_ps(p);
  }
}

// Σ_g bias_g · Σ_i x_i for one output: eight groups at a time, then the rest.
template <typename S>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline float offsets(const S* br, const float* xsum,
                                                                              int groups) {
  __m256 a = _mm256_setzero_ps();
  int g = 0;
  for (; g + 8 <= groups; g += 8) a = _mm256_fmadd_ps(load8(br + g), _mm256_loadu_ps(xsum + g), a);
  float off = tiles::hsum(a);
  for (; g < groups; ++g) off += tiles::widen(br[g]) * xsum[g];
  return off;
}

// The scales of chunk c's two blocks, lanes as chunk_sum's: one group (gs >= 64) or two (gs 32).
template <typename S, bool kTwoGroups>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 chunk_scales(const S* sr, int c, int shift) {
  if constexpr (kTwoGroups) {
    return _mm256_setr_m128(_mm_set1_ps(tiles::widen(sr[2 * c])), _mm_set1_ps(tiles::widen(sr[2 * c + 1])));
  } else {
    return _mm256_set1_ps(tiles::widen(sr[c >> shift]));
  }
}

// One row of x times chunk c of a weight row, whose scales are `sv` (chunk_scales), added to
// `a`: the one-row loop's body, and the same operations as the several-rows loop does per row.
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 one_chunk(const uint8_t* wr, __m256 sv,
                                                                                 const int8_t* xq, const int8_t* xr,
                                                                                 const int8_t* xr2, const float* dv,
                                                                                 int c, __m256 a) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + c * 32));
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  const __m256 sum = chunk_sum(lo, hi, xq + c * 64, xr + c * 64, xr2 + c * 64);
  const __m256 f = _mm256_mul_ps(sv, _mm256_loadu_ps(dv + c * 8));
  return _mm256_fmadd_ps(sum, f, a);
}

// 4-bit rows times int8 activations: per 64 weights six `maddubs` and three `madd` to int32
// (`chunk_sum`), scaled per block by scale_g · d_block in float:
//   y = Σ_blocks scale_g · d_b · Σ_i q_i x̂_i + Σ_g bias_g · Σ_i x_i.
// Even and odd chunks go to two accumulators (an FMA's latency is four cycles). Every row runs the
// same operations in the same order whatever M is (batch invariance).
template <typename S, bool kTwoGroups>
__attribute__((target("avx2,fma,f16c"))) void rows4_q8_avx2(const Prepared& p, int m0, int M, int K,
                                                           const uint8_t* w, const S* scales, const S* biases,
                                                           int gs, float* y, int N, int n0, int n1) {
  const int groups = K / gs, chunks = K / 64;
  const int shift = kTwoGroups ? 0 : __builtin_ctz(static_cast<unsigned>(gs / 64));
  const size_t row_bytes = static_cast<size_t>(K) / 2;
  const __m256i low = _mm256_set1_epi8(0x0F);
  const int8_t* xq = p.xq + static_cast<size_t>(m0) * K;
  const int8_t* xr = p.xr + static_cast<size_t>(m0) * K;
  const int8_t* xr2 = p.xr2 + static_cast<size_t>(m0) * K;
  const float* dv = p.dv.data() + static_cast<size_t>(m0) * chunks * 8;
  const float* xs = p.xsum.data() + static_cast<size_t>(m0) * groups;
  alignas(32) float acc[kMaxRows * 16];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    const S* sr = scales + static_cast<size_t>(n) * groups;
    const S* br = biases + static_cast<size_t>(n) * groups;
    ask_ahead(wr, row_bytes, sr, br, groups);
    if (M == 1) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int c = 0;
      if constexpr (kTwoGroups) {
        // Groups of 32: four chunks' eight scales widened by one instruction, then spread to
        // each chunk's lanes by one permute (two scalar conversions per chunk cost a third of
        // the loop). The same values in the same order as the loop below.
        const __m256i spread[4] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
                                   _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5), _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)};
        for (; c + 3 < chunks; c += 4) {
          const __m256 s8 = load8(sr + 2 * c);
          a0 = one_chunk(wr, _mm256_permutevar8x32_ps(s8, spread[0]), xq, xr, xr2, dv, c, a0);
          a1 = one_chunk(wr, _mm256_permutevar8x32_ps(s8, spread[1]), xq, xr, xr2, dv, c + 1, a1);
          a0 = one_chunk(wr, _mm256_permutevar8x32_ps(s8, spread[2]), xq, xr, xr2, dv, c + 2, a0);
          a1 = one_chunk(wr, _mm256_permutevar8x32_ps(s8, spread[3]), xq, xr, xr2, dv, c + 3, a1);
        }
      }
      for (; c + 1 < chunks; c += 2) {
        a0 = one_chunk(wr, chunk_scales<S, kTwoGroups>(sr, c, shift), xq, xr, xr2, dv, c, a0);
        a1 = one_chunk(wr, chunk_scales<S, kTwoGroups>(sr, c + 1, shift), xq, xr, xr2, dv, c + 1, a1);
      }
      if (c < chunks) a0 = one_chunk(wr, chunk_scales<S, kTwoGroups>(sr, c, shift), xq, xr, xr2, dv, c, a0);
      y[static_cast<size_t>(m0) * N + n] = tiles::hsum(_mm256_add_ps(a0, a1)) + offsets(br, xs, groups);
      continue;
    }
    for (int m = 0; m < 2 * M; ++m) _mm256_store_ps(acc + 8 * m, _mm256_setzero_ps());
    for (int c = 0; c < chunks; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + c * 32));
      const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
      const __m256 sv = chunk_scales<S, kTwoGroups>(sr, c, shift);
      for (int m = 0; m < M; ++m) {
        const size_t at = static_cast<size_t>(m) * K + c * 64;
        const __m256 sum = chunk_sum(lo, hi, xq + at, xr + at, xr2 + at);
        const __m256 f = _mm256_mul_ps(sv, _mm256_loadu_ps(dv + (static_cast<size_t>(m) * chunks + c) * 8));
        float* am = acc + 16 * m + 8 * (c & 1);
        _mm256_store_ps(am, _mm256_fmadd_ps(sum, f, _mm256_load_ps(am)));
      }
    }
    for (int m = 0; m < M; ++m) {
      const float sum = tiles::hsum(_mm256_add_ps(_mm256_load_ps(acc + 16 * m), _mm256_load_ps(acc + 16 * m + 8)));
      y[static_cast<size_t>(m0 + m) * N + n] = sum + offsets(br, xs + static_cast<size_t>(m) * groups, groups);
    }
  }
}


#define ZETA_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

// Four scales or offsets as float32 lanes.
template <typename S>
ZETA_VNNI inline __m128 load4(const S* p) {
  if constexpr (std::is_same_v<S, mx::float16_t>) {
    return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same_v<S, mx::bfloat16_t>) {
    const __m128i u = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm_castsi128_ps(_mm_slli_epi32(u, 16));
  } else {
    return _mm_loadu_ps(p);
  }
}

// The scales of chunks c and c + 1, lanes as pair_sum's (chunk c's chunk_scales, then c + 1's).
template <typename S, bool kTwoGroups>
ZETA_VNNI inline __m512 pair_scales(const S* sr, int c, int shift) {
  if constexpr (kTwoGroups) {
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(load4(sr + 2 * c)));
  } else {
    return _mm512_shuffle_f32x4(_mm512_set1_ps(tiles::widen(sr[c >> shift])),
                                _mm512_set1_ps(tiles::widen(sr[(c + 1) >> shift])), _MM_SHUFFLE(0, 0, 0, 0));
  }
}

// Σ q·a over two chunks' codes (`lo`, `hi`: their nibbles) and activations `a` in the pairs
// layout, into 16 int32 lanes of four products per nibble half: the same sums as dot16 + madd.
ZETA_VNNI inline __m512i pair_dot(__m512i lo, __m512i hi, const int8_t* a) {
  const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(a));
  return _mm512_dpbusd_epi32(s, hi, _mm512_load_si512(a + 64));
}

// chunk_sum for two chunks: 254 · Σ q·c0 + Σ q·c1 exactly in int32, plus Σ q·c2 / 254 in float.
ZETA_VNNI inline __m512 pair_sum(__m512i lo, __m512i hi, const int8_t* c0, const int8_t* c1, const int8_t* c2) {
  const __m512i t =
      _mm512_add_epi32(_mm512_mullo_epi32(pair_dot(lo, hi, c0), _mm512_set1_epi32(254)), pair_dot(lo, hi, c1));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_dot(lo, hi, c2)), _mm512_set1_ps(1.0f / 254.0f),
                         _mm512_cvtepi32_ps(t));
}

// A chunk without a pair, as one_chunk with `vpdpbusd` on 256 bits (same sums, same layout).
ZETA_VNNI inline __m256i tail_dot(__m256i lo, __m256i hi, const int8_t* a) {
  const __m256i* v = reinterpret_cast<const __m256i*>(a);
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_load_si256(v));
  return _mm256_dpbusd_epi32(s, hi, _mm256_load_si256(v + 1));
}

ZETA_VNNI inline __m256 tail_sum(__m256i lo, __m256i hi, const int8_t* c0, const int8_t* c1, const int8_t* c2) {
  const __m256i t =
      _mm256_add_epi32(_mm256_mullo_epi32(tail_dot(lo, hi, c0), _mm256_set1_epi32(254)), tail_dot(lo, hi, c1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(tail_dot(lo, hi, c2)), _mm256_set1_ps(1.0f / 254.0f),
                         _mm256_cvtepi32_ps(t));
}

// rows4_q8_avx2 with two chunks per step. Its two accumulators (even chunks, odd chunks) are the
// lower and upper halves of one 512-bit register here, each lane getting the same FMAs in the
// same order, and the last unpaired chunk goes to the even half as there.
template <typename S, bool kTwoGroups>
ZETA_VNNI void rows4_q8_vnni(const Prepared& p, int m0, int M, int K, const uint8_t* w, const S* scales,
                             const S* biases, int gs, float* y, int N, int n0, int n1) {
  const int groups = K / gs, chunks = K / 64, paired = chunks - chunks % 2;
  const int shift = kTwoGroups ? 0 : __builtin_ctz(static_cast<unsigned>(gs / 64));
  const size_t row_bytes = static_cast<size_t>(K) / 2;
  const __m512i low = _mm512_set1_epi8(0x0F);
  const size_t at0 = static_cast<size_t>(m0) * K;
  const float* dv = p.dv.data() + static_cast<size_t>(m0) * chunks * 8;
  const float* xs = p.xsum.data() + static_cast<size_t>(m0) * groups;
  __m512 acc[kMaxRows];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    const S* sr = scales + static_cast<size_t>(n) * groups;
    const S* br = biases + static_cast<size_t>(n) * groups;
    ask_ahead(wr, row_bytes, sr, br, groups);
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int c = 0; c < paired; c += 2) {
      const __m512i v = _mm512_loadu_si512(wr + c * 32);
      const __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
      const __m512 sv = pair_scales<S, kTwoGroups>(sr, c, shift);
      for (int m = 0; m < M; ++m) {
        const size_t at = at0 + static_cast<size_t>(m) * K + c * 64;
        const __m512 sum = pair_sum(lo, hi, p.xq + at, p.xr + at, p.xr2 + at);
        const __m512 f = _mm512_mul_ps(sv, _mm512_loadu_ps(dv + (static_cast<size_t>(m) * chunks + c) * 8));
        acc[m] = _mm512_fmadd_ps(sum, f, acc[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      __m256 even = _mm512_castps512_ps256(acc[m]);
      const __m256 odd = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[m]), 1));
      if (paired < chunks) {
        const int c = paired;
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + c * 32));
        const __m256i lo4 = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(v, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        const size_t at = at0 + static_cast<size_t>(m) * K + c * 64;
        const __m256 sum = tail_sum(lo, hi, p.xq + at, p.xr + at, p.xr2 + at);
        const __m256 f = _mm256_mul_ps(chunk_scales<S, kTwoGroups>(sr, c, shift),
                                       _mm256_loadu_ps(dv + (static_cast<size_t>(m) * chunks + c) * 8));
        even = _mm256_fmadd_ps(sum, f, even);
      }
      y[static_cast<size_t>(m0 + m) * N + n] =
          tiles::hsum(_mm256_add_ps(even, odd)) + offsets(br, xs + static_cast<size_t>(m) * groups, groups);
    }
  }
}

// 8-bit rows times the three int8 codes of one or two rows of x (`prepare8`): one 512-bit load
// is 64 weights, two blocks of 32, and `vpdpbusd` multiplies the unsigned codes by the signed
// activation codes, four at a time, into 16 int32 lanes (lanes 0-7 the first block, 8-15 the
// second). As in the 4-bit loop, 254 · Σ q·c0 + Σ q·c1 is formed in int32 (at most 4 · 255 ·
// 127 · 255 per lane) and Σ q·c2 / 254 added in float, then scaled by scale_g · d_b per lane;
// the float path spent a widening, a conversion and two FMAs on every eight weights.
template <typename S, bool kTwoGroups>
ZETA_VNNI void rows8_vnni(const Prepared& p, int m0, int M, int K, const uint8_t* w, const S* scales,
                          const S* biases, int gs, float* y, int N, int n0, int n1) {
  const int groups = K / gs, chunks = K / 64;
  const size_t row_bytes = static_cast<size_t>(K);
  const size_t at0 = static_cast<size_t>(m0) * K;
  const float* dv = p.dv.data() + static_cast<size_t>(m0) * chunks * 16;
  const float* xs = p.xsum.data() + static_cast<size_t>(m0) * groups;
  const __m512 third = _mm512_set1_ps(1.0f / 254.0f);
  __m512 acc[kMaxRows];
  // The row's scales, sixteen groups at a time as float32 (`widen_upto16`).
  alignas(64) float sf[16];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    const S* sr = scales + static_cast<size_t>(n) * groups;
    const S* br = biases + static_cast<size_t>(n) * groups;
    ask_ahead(wr, row_bytes, sr, br, groups);
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    int base = -16;
    for (int c = 0; c < chunks; ++c) {
      const int g0 = 64 * c / gs, g1 = (64 * c + 32) / gs;
      if (g0 >= base + 16) {
        base = g0;
        tiles::widen_upto16(sr + base, std::min(16, groups - base), sf);
      }
      const __m512 sv = kTwoGroups ? _mm512_shuffle_f32x4(_mm512_set1_ps(sf[g0 - base]),
                                                          _mm512_set1_ps(sf[g1 - base]), _MM_SHUFFLE(1, 0, 1, 0))
                                   : _mm512_set1_ps(sf[g0 - base]);
      const __m512i v = _mm512_loadu_si512(wr + c * 64);
      for (int m = 0; m < M; ++m) {
        const size_t at = at0 + static_cast<size_t>(m) * K + c * 64;
        const __m512i z = _mm512_setzero_si512();
        const __m512i d0 = _mm512_dpbusd_epi32(z, v, _mm512_load_si512(p.xq + at));
        const __m512i d1 = _mm512_dpbusd_epi32(z, v, _mm512_load_si512(p.xr + at));
        const __m512i d2 = _mm512_dpbusd_epi32(z, v, _mm512_load_si512(p.xr2 + at));
        const __m512i t = _mm512_add_epi32(_mm512_mullo_epi32(d0, _mm512_set1_epi32(254)), d1);
        const __m512 sum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d2), third, _mm512_cvtepi32_ps(t));
        const __m512 f = _mm512_mul_ps(sv, _mm512_load_ps(dv + (static_cast<size_t>(m) * chunks + c) * 16));
        acc[m] = _mm512_fmadd_ps(sum, f, acc[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      const __m256 lo = _mm512_castps512_ps256(acc[m]);
      const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[m]), 1));
      y[static_cast<size_t>(m0 + m) * N + n] =
          tiles::hsum(_mm256_add_ps(lo, hi)) + offsets(br, xs + static_cast<size_t>(m) * groups, groups);
    }
  }
}

}  // namespace

template <typename S>
void rows(const Prepared& p, int m0, int M, int K, const uint8_t* w, const S* scales, const S* biases, int gs,
          float* y, int N, int n0, int n1) {
  if (p.bytes) {
    if (gs == 32) return rows8_vnni<S, true>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
    return rows8_vnni<S, false>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
  }
  if (p.pairs) {
    if (gs == 32) return rows4_q8_vnni<S, true>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
    return rows4_q8_vnni<S, false>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
  }
  if (gs == 32) return rows4_q8_avx2<S, true>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
  rows4_q8_avx2<S, false>(p, m0, M, K, w, scales, biases, gs, y, N, n0, n1);
}

ZETA_Q8_ROWS_INSTANCES

}  // namespace zeta_mlx::q8

#endif
