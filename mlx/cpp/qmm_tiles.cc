// Dequantizing MLX's affine codes, and the quantized product for several rows (see qmm_tiles.h).
//
// Why a second path beside qmm.cc's integer one: with one row, a product reads each weight once
// and is bound by memory, so the weights stay 4-bit and the activations become int8 codes. With
// several rows (a batch's decode step) every weight meets every row, and the integer path's
// work per row and weight (six `maddubs` and three `madd` per 64, to keep float32's precision)
// dominates, while the float32 expansion the engine used for those steps reads 5.5x the bytes
// of the 4-bit codes. Here four weight rows at a time are dequantized into a buffer (a 4-bit
// group is a 16-entry table looked up by `vpermps`: six instructions per 32 weights), and every
// row of x is multiplied with them there: on AVX-512 up to 6 rows of x by 4 weight rows per pass
// (24 accumulators in registers over the whole row, each load feeding four to six FMAs), the
// first pass (4 rows) dequantizing as it goes; on AVX2 2 by 4. The codes are read from memory once per call and
// dequantized once, for all rows.
//
// Every accumulator adds the same products in the same order whatever the number of rows, and
// the lanes are summed in one fixed order, so a row's results do not depend on the batch.

#include "qmm_tiles.h"

#include "cpu_parallel.h"
#include "simd.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "mlx/mlx.h"


namespace zeta_mlx::tiles {

namespace mx = mlx::core;

namespace {

// Weight rows dequantized and multiplied together (their dot products share each load of x).
constexpr int kCols = 4;
// Most rows of x per pass that dequantizes (AVX-512: 4 x 4 accumulators, beside the tables,
// the codes and the loads). Five or six there measured the same as four.
constexpr int kFirstRows = 4;
// Most rows of x per later pass (AVX-512: 6 x 4 accumulators, 29 registers with the loads): each
// load of a tile's vector feeds six FMAs instead of four, and 16 rows take three passes over the
// tile instead of four. 16 rows of an 8192 x 2048 product: 3.3-3.5 ms -> 3.0-3.1 (their x and
// tile outgrow L1); SmolLM2's smaller products measured the same.
constexpr int kMaxRows = 6;

void dequant_scalar(const uint8_t* q, float scale, float bias, int gs, int bits, float* out) {
  for (int i = 0; i < gs; ++i) {
    const unsigned code = bits == 8 ? q[i] : (q[i / 2] >> (4 * (i % 2))) & 15;
    out[i] = static_cast<float>(code) * scale + bias;
  }
}

#ifdef ZETA_X86
// MLX's CPU `dequantize` is scalar on one thread (6.9 s per step on a 1B model); here 4-bit codes
// are unpacked 16 at a time, 8-bit ones 8 at a time, in MLX's order.
__attribute__((target("avx2,fma"))) void dequant_avx2(const uint8_t* q, float scale, float bias, int gs, int bits,
                                                      float* out) {
  const __m256 sv = _mm256_set1_ps(scale), bv = _mm256_set1_ps(bias);
  if (bits == 8) {
    for (int i = 0; i < gs; i += 8) {
      const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i))));
      _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(c, sv), bv));
    }
    return;
  }
  const __m128i low = _mm_set1_epi8(0x0F);
  for (int i = 0; i < gs; i += 16) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i / 2));
    // Byte j holds element 2j in its low nibble and 2j + 1 in its high one.
    const __m128i in_order = _mm_unpacklo_epi8(_mm_and_si128(v, low), _mm_and_si128(_mm_srli_epi16(v, 4), low));
    const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(in_order));
    const __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(in_order, 8)));
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(a, sv), bv));
    _mm256_storeu_ps(out + i + 8, _mm256_add_ps(_mm256_mul_ps(b, sv), bv));
  }
}

// Eight codes (the low 8 bytes of `codes`) times the scale plus the offset, stored at `at`.
__attribute__((target("avx2,fma"), always_inline)) inline void put8(float* at, __m128i codes, __m256 s, __m256 b) {
  _mm256_store_ps(at, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes)), s, b));
}

// A weight row's inputs [k0, k0 + len) dequantized into the buffer, 4-bit codes in nibble order
// (as `prepare_rows` lays x out): codes converted and scaled, 8 lanes at a time (AVX2 has no
// 16-entry lookup).
template <typename S>
__attribute__((target("avx2,fma,f16c"))) void tile_row_avx2(const uint8_t* wr, const S* sr, const S* br, int gs,
                                                           int bits, int k0, int len, float* out) {
  const __m128i low = _mm_set1_epi8(0x0F);
  for (int g = k0 / gs; g < (k0 + len) / gs; ++g) {
    const __m256 s = _mm256_set1_ps(widen(sr[g])), b = _mm256_set1_ps(widen(br[g]));
    float* o = out + (g * gs - k0);
    if (bits == 4) {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs / 2;
      for (int i = 0; i < gs; i += 32) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i / 2));
        const __m128i lo = _mm_and_si128(v, low), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low);
        put8(o + i, lo, s, b);
        put8(o + i + 8, _mm_srli_si128(lo, 8), s, b);
        put8(o + i + 16, hi, s, b);
        put8(o + i + 24, _mm_srli_si128(hi, 8), s, b);
      }
    } else {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs;
      for (int i = 0; i < gs; i += 8) put8(o + i, _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)), s, b);
    }
  }
}

// The four sums of a, b, c and d (16 lanes each), every one by the same tree: the halves of 256
// bits added, then of 128, then of 64 and of 32 bits.
__attribute__((target("avx512f"), always_inline)) inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
  // 128-bit lanes: a's, b's, c's and d's four partial sums.
  const __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  const __m512 h = _mm512_add_ps(q, _mm512_permute_ps(q, 0x4E));
  const __m512 o = _mm512_add_ps(h, _mm512_permute_ps(h, 0xB1));
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), o));
}

// a[r][c] += x[r][p, p + 16) · wv[c] for every row and column: one step of the AVX-512 passes.
template <int R>
__attribute__((target("avx512f"), always_inline)) inline void multiply16(__m512 (&a)[R][kCols], const float* x,
                                                                         size_t ldx, const __m512* wv, int p) {
  for (int r = 0; r < R; ++r) {
    const __m512 xv = _mm512_load_ps(x + r * ldx + p);
    for (int c = 0; c < kCols; ++c) a[r][c] = _mm512_fmadd_ps(xv, wv[c], a[r][c]);
  }
}

// R rows of x (stride ldx) times the kCols dequantized weight rows of `t` (stride ldt) over K
// inputs, into out[r * kCols + c]. The accumulators stay in registers from the first input to
// the last (keeping them across chunks of K in memory was slower).
template <int R>
__attribute__((target("avx512f"))) void pass_avx512(const float* x, size_t ldx, const float* t, size_t ldt, int K,
                                                    float* out) {
  __m512 a[R][kCols];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) a[r][c] = _mm512_setzero_ps();
  for (int p = 0; p < K; p += 16) {
    __m512 wv[kCols];
    for (int c = 0; c < kCols; ++c) wv[c] = _mm512_load_ps(t + c * ldt + p);
    multiply16<R>(a, x, ldx, wv, p);
  }
  for (int r = 0; r < R; ++r) _mm_storeu_ps(out + r * kCols, reduce4(a[r][0], a[r][1], a[r][2], a[r][3]));
}

// The first pass of a block on AVX-512: its kCols weight rows (`cols` of them real, the rest
// zeros) dequantized in registers as the pass goes, stored at `t` (stride ldt) for the block's
// later passes, and multiplied with R rows of x there and then. Dequantizing in a loop of its
// own, then multiplying, left the permutes and stores waiting on each other, a group at a time
// (a 4-bit group of 32 is one iteration): 13% of a batch-16 step. Here they fill the ports the
// FMAs leave free. The tile's values and the FMAs' order are pass_avx512's: the same bits.
//
// A 4-bit group is a table of its 16 values (code · scale + offset, one FMA) that `vpermps`
// looks the codes up in: it reads only an index's low 4 bits, so a byte's low nibble selects
// without a mask and its high one after a shift. The codes are in nibble order (as
// `prepare_rows` lays x out): a block of 32 is its 16 low nibbles, then its 16 high ones.
template <int R, typename S>
__attribute__((target("avx512f,avx2,fma,f16c"))) void dequant_pass_avx512(const float* x, size_t ldx,
                                                                         const uint8_t* w, size_t row_bytes,
                                                                         const S* sr, const S* br, int groups,
                                                                         int cols, int gs, int bits, float* t,
                                                                         size_t ldt, float* out) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // Columns past `cols` read the first row's codes with a zero scale and offset: zeros.
  const uint8_t* wc[kCols];
  for (int c = 0; c < kCols; ++c) wc[c] = w + (c < cols ? c : 0) * row_bytes;
  __m512 a[R][kCols];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) a[r][c] = _mm512_setzero_ps();
  // The scales and offsets of the next 16 groups as float32 (`widen_upto16`): one at a time
  // they took an insert, a conversion and a broadcast each, all on the ports the FMAs use, more
  // work than a group's FMAs at four rows.
  alignas(64) float sf[kCols][16], bf[kCols][16];
  for (int g = 0; g < groups; ++g) {
    if (g % 16 == 0) {
      const int n = std::min(16, groups - g);
      for (int c = 0; c < kCols; ++c) {
        const size_t at = static_cast<size_t>(c) * groups + g;
        if (c >= cols) {
          _mm512_store_ps(sf[c], _mm512_setzero_ps());
          _mm512_store_ps(bf[c], _mm512_setzero_ps());
        } else {
          widen_upto16(sr + at, n, sf[c]);
          widen_upto16(br + at, n, bf[c]);
        }
      }
    }
    __m512 sv[kCols], bv[kCols];
    for (int c = 0; c < kCols; ++c) {
      sv[c] = _mm512_set1_ps(sf[c][g % 16]);
      bv[c] = _mm512_set1_ps(bf[c][g % 16]);
    }
    const int k0 = g * gs;
    if (bits == 4) {
      __m512 table[kCols];
      for (int c = 0; c < kCols; ++c) table[c] = _mm512_fmadd_ps(iota, sv[c], bv[c]);
      for (int j = 0; j < gs; j += 32) {
        const int p = k0 + j;
        // The codes widened once for both nibbles: the stores to the tile may alias them for
        // all the compiler knows, so loading them again for the high nibbles widened them again,
        // one more shuffle per 16 weights on the FMAs' port 5 on Intel's cores.
        __m512 wv[kCols];
        __m512i v[kCols];
        for (int c = 0; c < kCols; ++c) {
          v[c] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wc[c] + p / 2)));
          wv[c] = _mm512_permutexvar_ps(v[c], table[c]);
          _mm512_store_ps(t + c * ldt + p, wv[c]);
        }
        multiply16<R>(a, x, ldx, wv, p);
        for (int c = 0; c < kCols; ++c) {
          wv[c] = _mm512_permutexvar_ps(_mm512_srli_epi32(v[c], 4), table[c]);
          _mm512_store_ps(t + c * ldt + p + 16, wv[c]);
        }
        multiply16<R>(a, x, ldx, wv, p + 16);
      }
    } else {
      for (int j = 0; j < gs; j += 16) {
        const int p = k0 + j;
        __m512 wv[kCols];
        for (int c = 0; c < kCols; ++c) {
          const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wc[c] + p)));
          wv[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sv[c], bv[c]);
          _mm512_store_ps(t + c * ldt + p, wv[c]);
        }
        multiply16<R>(a, x, ldx, wv, p);
      }
    }
  }
  for (int r = 0; r < R; ++r) _mm_storeu_ps(out + r * kCols, reduce4(a[r][0], a[r][1], a[r][2], a[r][3]));
}

// As pass_avx512 with 8 lanes: at most 2 x 4 accumulators beside the loads in 16 registers; each
// accumulator's lanes summed by the portable tree.
template <int R>
__attribute__((target("avx2,fma"))) void pass_avx2(const float* x, size_t ldx, const float* t, size_t ldt, int K,
                                                  float* out) {
  __m256 a[R][kCols];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) a[r][c] = _mm256_setzero_ps();
  for (int p = 0; p < K; p += 8) {
    __m256 wv[kCols];
    for (int c = 0; c < kCols; ++c) wv[c] = _mm256_load_ps(t + c * ldt + p);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_load_ps(x + r * ldx + p);
      for (int c = 0; c < kCols; ++c) a[r][c] = _mm256_fmadd_ps(xv, wv[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < kCols; ++c) {
      alignas(32) float v[8];
      _mm256_store_ps(v, a[r][c]);
      for (int w = 4; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) v[l] += v[l + w];
      out[r * kCols + c] = v[0];
    }
  }
}
#endif

#ifdef ZETA_ARM
// Sixteen codes (bytes, in order) times the scale plus the offset, stored at `at` (one FMA per
// four: code · scale + offset rounded once, as the AVX-512 table's entries).
inline __attribute__((always_inline)) void put16_neon(float* at, uint8x16_t codes, float32x4_t s, float32x4_t b) {
  const uint16x8_t lo = vmovl_u8(vget_low_u8(codes)), hi = vmovl_u8(vget_high_u8(codes));
  vst1q_f32(at, vfmaq_f32(b, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), s));
  vst1q_f32(at + 4, vfmaq_f32(b, vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo))), s));
  vst1q_f32(at + 8, vfmaq_f32(b, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), s));
  vst1q_f32(at + 12, vfmaq_f32(b, vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi))), s));
}

// As tile_row_avx2 with NEON: 4-bit codes 32 at a time (16 bytes: the low nibbles are the even
// positions, the high ones the odd), 8-bit ones 16 at a time.
template <typename S>
void tile_row_neon(const uint8_t* wr, const S* sr, const S* br, int gs, int bits, int k0, int len, float* out) {
  const uint8x16_t low = vdupq_n_u8(0x0F);
  for (int g = k0 / gs; g < (k0 + len) / gs; ++g) {
    const float32x4_t s = vdupq_n_f32(static_cast<float>(sr[g])), b = vdupq_n_f32(static_cast<float>(br[g]));
    float* o = out + (g * gs - k0);
    if (bits == 4) {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs / 2;
      for (int i = 0; i < gs; i += 32) {
        const uint8x16_t v = vld1q_u8(q + i / 2);
        put16_neon(o + i, vandq_u8(v, low), s, b);
        put16_neon(o + i + 16, vshrq_n_u8(v, 4), s, b);
      }
    } else {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs;
      for (int i = 0; i < gs; i += 16) put16_neon(o + i, vld1q_u8(q + i), s, b);
    }
  }
}

// R rows of x times the kCols dequantized weight rows, as pass_avx512 with four lanes: R x 4
// accumulators (16 of the 32 registers at R = 4) over the whole row, each load of x feeding
// four FMAs; each accumulator's lanes summed by one fixed tree (halves, then the pair).
template <int R>
void pass_neon(const float* x, size_t ldx, const float* t, size_t ldt, int K, float* out) {
  float32x4_t a[R][kCols];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) a[r][c] = vdupq_n_f32(0.0f);
  for (int p = 0; p < K; p += 4) {
    float32x4_t wv[kCols];
    for (int c = 0; c < kCols; ++c) wv[c] = vld1q_f32(t + c * ldt + p);
    for (int r = 0; r < R; ++r) {
      const float32x4_t xv = vld1q_f32(x + r * ldx + p);
      for (int c = 0; c < kCols; ++c) a[r][c] = vfmaq_f32(a[r][c], xv, wv[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c)
      out[r * kCols + c] = vpadds_f32(vadd_f32(vget_low_f32(a[r][c]), vget_high_f32(a[r][c])));
}
#endif

// Any machine: one row, 16 lanes per accumulator (the compiler vectorizes the lane loop), summed
// pairwise.
void pass_portable(const float* x, size_t, const float* t, size_t ldt, int K, float* out) {
  for (int c = 0; c < kCols; ++c) {
    float v[16] = {};
    const float* tc = t + c * ldt;
    for (int p = 0; p < K; p += 16)
      for (int l = 0; l < 16; ++l) v[l] += x[p + l] * tc[p + l];
    for (int w = 8; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) v[l] += v[l + w];
    out[c] = v[0];
  }
}

template <typename S>
void tile_row_portable(const uint8_t* wr, const S* sr, const S* br, int gs, int bits, int k0, int len, float* out) {
  for (int g = k0 / gs; g < (k0 + len) / gs; ++g) {
    const float s = static_cast<float>(sr[g]), b = static_cast<float>(br[g]);
    float* o = out + (g * gs - k0);
    if (bits == 4) {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs / 2;
      for (int blk = 0; blk < gs; blk += 32) {
        for (int j = 0; j < 16; ++j) {
          o[blk + j] = static_cast<float>(q[blk / 2 + j] & 15) * s + b;
          o[blk + 16 + j] = static_cast<float>(q[blk / 2 + j] >> 4) * s + b;
        }
      }
    } else {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs;
      for (int i = 0; i < gs; ++i) o[i] = static_cast<float>(q[i]) * s + b;
    }
  }
}

using Pass = void (*)(const float*, size_t, const float*, size_t, int, float*);

// The passes this machine runs, by rows of x per pass (pass[r - 1] takes r rows).
struct Passes {
  Pass pass[kMaxRows];
  int rows;
  Isa isa;  // which dequantization goes with them
};

// The machine's widest passes (see cpu_isa for the narrowing the tests use).
Passes passes() {
  switch (cpu_isa()) {
#ifdef ZETA_X86
    case Isa::avx512:
    case Isa::avx512_vnni:
      return {{pass_avx512<1>, pass_avx512<2>, pass_avx512<3>, pass_avx512<4>, pass_avx512<5>, pass_avx512<6>},
              6,
              Isa::avx512};
    case Isa::avx2:
      return {{pass_avx2<1>, pass_avx2<2>}, 2, Isa::avx2};
#endif
#ifdef ZETA_ARM
    case Isa::neon:
    case Isa::neon_dot:
      return {{pass_neon<1>, pass_neon<2>, pass_neon<3>, pass_neon<4>}, 4, Isa::neon};
#endif
    default:
      return {{pass_portable}, 1, Isa::portable};
  }
}

// A buffer of floats aligned to 64 bytes, grown on demand (one per thread: the dequantized rows).
class Scratch {
 public:
  float* get(size_t n) {
    if (n + 16 > v_.size()) v_.resize(n + 16);
    auto addr = reinterpret_cast<uintptr_t>(v_.data());
    return v_.data() + ((64 - addr % 64) % 64) / sizeof(float);
  }

 private:
  std::vector<float> v_;
};

}  // namespace

void dequant_group(const uint8_t* q, float scale, float bias, int gs, int bits, float* out) {
#ifdef ZETA_X86
  if (cpu_isa() >= Isa::avx2) return dequant_avx2(q, scale, bias, gs, bits, out);
#endif
  dequant_scalar(q, scale, bias, gs, bits, out);
}

template <typename S>
void dequant_rows(const uint8_t* w, const S* scales, const S* biases, int K, int gs, int bits, float* out, int n0,
                  int n1) {
  const int groups = K / gs;
  const size_t row_bytes = static_cast<size_t>(K) * bits / 8;
  for (int n = n0; n < n1; ++n) {
    for (int g = 0; g < groups; ++g) {
      const size_t at = static_cast<size_t>(n) * groups + g;
      dequant_group(w + n * row_bytes + static_cast<size_t>(g) * gs * bits / 8, static_cast<float>(scales[at]),
                    static_cast<float>(biases[at]), gs, bits, out + static_cast<size_t>(n) * K + g * gs);
    }
  }
}

Rows prepare_rows(const float* x, int M, int K, int bits) {
  Rows r;
  r.ld = static_cast<size_t>(K) + 16;
  r.storage.resize(static_cast<size_t>(M) * r.ld + 16);
  auto addr = reinterpret_cast<uintptr_t>(r.storage.data());
  float* base = r.storage.data() + ((64 - addr % 64) % 64) / sizeof(float);
  r.data = base;
  for (int m = 0; m < M; ++m) {
    const float* xr = x + static_cast<size_t>(m) * K;
    float* o = base + m * r.ld;
    if (bits != 4) {
      std::memcpy(o, xr, sizeof(float) * K);
      continue;
    }
    for (int blk = 0; blk < K; blk += 32) {
      for (int j = 0; j < 16; ++j) {
        o[blk + j] = xr[blk + 2 * j];
        o[blk + 16 + j] = xr[blk + 2 * j + 1];
      }
    }
  }
  return r;
}

template <typename S>
void float_rows(const Rows& x, int M, int K, const uint8_t* w, const S* scales, const S* biases, int gs, int bits,
                float* y, int N, int n0, int n1) {
  static const Passes run = passes();
  thread_local Scratch tiles;
  const size_t ldt = static_cast<size_t>(K) + 16;  // rows 64 bytes apart from a power of two
  float* tile = tiles.get(kCols * ldt);
  const int groups = K / gs;
  const size_t row_bytes = static_cast<size_t>(K) * bits / 8;
  for (int n = n0; n < n1; n += kCols) {
    const int cols = std::min(kCols, n1 - n);
    // The next block's codes, scales and offsets are asked for now, to arrive while this block
    // is multiplied (read only when dequantized, they kept the core waiting on memory). The
    // codes' requests are spread over the passes: all at once, they waited for the core's few
    // slots for misses in flight.
    const int next_cols = std::max(0, std::min(kCols, n1 - n - kCols));
    const char* next = reinterpret_cast<const char*>(w + (n + kCols) * row_bytes);
    const size_t next_bytes = next_cols * row_bytes;
    if (next_cols > 0) {
      const size_t at = static_cast<size_t>(n + kCols) * groups, len = next_cols * groups * sizeof(S);
      const char* sp = reinterpret_cast<const char*>(scales + at);
      const char* bp = reinterpret_cast<const char*>(biases + at);
      for (size_t b = 0; b < len + 63; b += 64) {
        __builtin_prefetch(sp + std::min(b, len - 1));
        __builtin_prefetch(bp + std::min(b, len - 1));
      }
    }
    const int passes_here = (M + run.rows - 1) / run.rows;
    const size_t slice = (next_bytes / 64 + passes_here) / passes_here * 64;
    size_t asked = 0;
    auto ask = [&] {
      for (const size_t end = std::min(next_bytes, asked + slice); asked < end; asked += 64)
        __builtin_prefetch(next + asked);
    };
    float out[kMaxRows * kCols];
    auto put = [&](int m, int r) {
      for (int i = 0; i < r; ++i)
        for (int c = 0; c < cols; ++c) y[static_cast<size_t>(m + i) * N + n + c] = out[i * kCols + c];
    };
    int m = 0;
#ifdef ZETA_X86
    if (run.isa == Isa::avx512) {
      // The block is dequantized by its first pass.
      using First = void (*)(const float*, size_t, const uint8_t*, size_t, const S*, const S*, int, int, int, int,
                             float*, size_t, float*);
      static constexpr First first[kFirstRows] = {dequant_pass_avx512<1, S>, dequant_pass_avx512<2, S>,
                                                  dequant_pass_avx512<3, S>, dequant_pass_avx512<4, S>};
      const int r = std::min(kFirstRows, M);
      ask();
      first[r - 1](x.data, x.ld, w + static_cast<size_t>(n) * row_bytes, row_bytes,
                   scales + static_cast<size_t>(n) * groups, biases + static_cast<size_t>(n) * groups, groups, cols,
                   gs, bits, tile, ldt, out);
      put(0, r);
      m = r;
    } else
#endif
    {
      for (int c = 0; c < cols; ++c) {
        const size_t row = static_cast<size_t>(n + c);
        const uint8_t* wr = w + row * row_bytes;
        const S* sr = scales + row * groups;
        const S* br = biases + row * groups;
        float* to = tile + c * ldt;
#ifdef ZETA_X86
        if (run.isa == Isa::avx2) {
          tile_row_avx2(wr, sr, br, gs, bits, 0, K, to);
          continue;
        }
#endif
#ifdef ZETA_ARM
        if (run.isa == Isa::neon) {
          tile_row_neon(wr, sr, br, gs, bits, 0, K, to);
          continue;
        }
#endif
        tile_row_portable(wr, sr, br, gs, bits, 0, K, to);
      }
      // Columns past the range multiply zeros, and their sums are dropped.
      for (int c = cols; c < kCols; ++c) std::memset(tile + c * ldt, 0, sizeof(float) * K);
    }
    while (m < M) {
      const int r = std::min(run.rows, M - m);
      ask();
      run.pass[r - 1](x.data + m * x.ld, x.ld, tile, ldt, K, out);
      put(m, r);
      m += r;
    }
  }
}

#define ZETA_TILES_FOR(S)                                                                                          \
  template void dequant_rows<S>(const uint8_t*, const S*, const S*, int, int, int, float*, int, int);             \
  template void float_rows<S>(const Rows&, int, int, const uint8_t*, const S*, const S*, int, int, float*, int, \
                              int, int);
ZETA_TILES_FOR(float)
ZETA_TILES_FOR(mx::float16_t)
ZETA_TILES_FOR(mx::bfloat16_t)
#undef ZETA_TILES_FOR

}  // namespace zeta_mlx::tiles
