// The CPU quantized matrix product (see qmm.h).
//
// Why: MLX's CPU `quantized_matmul` runs scalar on one thread and dequantizes again per row, so
// the engine used to expand every quantized weight to float32 at load and read 4-8x the bytes per
// token. This kernel reads the packed weights once per step for all rows: each group of weights
// is dequantized in registers (`q * scale + bias`, in float32 as MLX computes it) and multiplied
// into every row of `x`, the output rows split across the BLAS shim's pool of threads.
//
// It is an MLX primitive: its eval_cpu only queues the work on the stream's CPU encoder, as MLX's
// own primitives do, so it runs in order with the rest of the graph on MLX's worker thread, which
// then shares the rows with the BLAS shim's thread pool.

#include "qmm.h"

#include "cpu_parallel.h"
#include "qmm_int.h"
#include "qmm_tiles.h"
#include "simd.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"


#ifdef ZETA_CBLAS_SHIM
// The BLAS shim's GEMM (cblas_shim.c): row-major 101, no transpose 111, transpose 112.
extern "C" void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);
#endif

namespace zeta_mlx {

namespace mx = mlx::core;
using mx::array;

namespace {

// Products taken by the kernel since the process started (tests check the routing with it).
std::atomic<uint64_t> kernel_calls{0};

// ---------------------------------------------------------------------------------------------
// Kernels: at most this many rows of x at a time (their accumulators stay in L1).
constexpr int kRowsPerPass = 32;
static_assert(kRowsPerPass <= q8::kMaxRows);

// Rows up to which the kernel takes a product; past that, a float32 GEMM on the weights
// dequantized for the call (prefill chunks: `BlockedGemm` a block of rows at a time with the BLAS
// shim, else `AffineDequant` whole). bench-qmm on the 2-core machine,
// 8192 x 2048 4-bit, µs per product, tiles / float32 GEMM on expanded weights: 32 rows 6,127 /
// 9,721, 64 rows 14,855 / 13,828, 128 rows 26,643 / 21,656, 512 rows 185,564 / 76,487 (the
// tiles stream every row of x once per four weight rows; OpenBLAS blocks for the caches).
constexpr int kKernelRows = 32;

// Rows from which a product takes the tiles (qmm_tiles.cc) rather than the integer path: where
// each weight meets several rows, dequantizing it once and multiplying in float32 costs less per
// row. bench-qmm, µs per product, integer / tiles: 2 rows 1,205 / 1,424, 3 rows 2,188 / 1,432,
// 16 rows 9,726 / 3,368 (8192 x 2048, 4-bit, group 64).
constexpr int kTileRows = 3;

// Rows from which a product is cut into finer parts for the pool (see packed_product).
constexpr int kFineRows = 8;

#ifdef ZETA_X86
// Eight 8-bit codes as float32 lanes.
__attribute__((target("avx2,fma"), always_inline)) inline __m256 codes8(const uint8_t* q, int i) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i))));
}

// AVX2 rows of 8-bit weights (4-bit ones go to rows4_avx2). One row of x: dequantize and
// multiply in one pass, two accumulators to cover the FMA latency. Several rows: the group is dequantized once into `buf`, then multiplied into each
// row's vector accumulator; the lanes are summed once per output.
template <typename S>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2(const float* x, int M, int K, const uint8_t* w, const S* scales,
                                                   const S* biases, int gs, float* y, int N, int n0, int n1) {
  const int groups = K / gs;
  const size_t row_bytes = static_cast<size_t>(K);
  alignas(32) float buf[128];
  alignas(32) float acc[kRowsPerPass * 16];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    const S* sr = scales + static_cast<size_t>(n) * groups;
    const S* br = biases + static_cast<size_t>(n) * groups;
    ask_ahead(wr, row_bytes, sr, br, groups);
    if (M == 1) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int g = 0; g < groups; ++g) {
        const __m256 s = _mm256_set1_ps(tiles::widen(sr[g])), b = _mm256_set1_ps(tiles::widen(br[g]));
        const uint8_t* q = wr + static_cast<size_t>(g) * gs;
        const float* xg = x + g * gs;
        for (int i = 0; i < gs; i += 16) {
          a0 = _mm256_fmadd_ps(_mm256_fmadd_ps(codes8(q, i), s, b), _mm256_loadu_ps(xg + i), a0);
          a1 = _mm256_fmadd_ps(_mm256_fmadd_ps(codes8(q, i + 8), s, b), _mm256_loadu_ps(xg + i + 8), a1);
        }
      }
      y[n] = tiles::hsum(_mm256_add_ps(a0, a1));
      continue;
    }
    for (int m = 0; m < 2 * M; ++m) _mm256_store_ps(acc + 8 * m, _mm256_setzero_ps());
    for (int g = 0; g < groups; ++g) {
      const __m256 s = _mm256_set1_ps(tiles::widen(sr[g])), b = _mm256_set1_ps(tiles::widen(br[g]));
      const uint8_t* q = wr + static_cast<size_t>(g) * gs;
      for (int i = 0; i < gs; i += 8) _mm256_store_ps(buf + i, _mm256_fmadd_ps(codes8(q, i), s, b));
      for (int m = 0; m < M; ++m) {
        // The one-row path's additions in its order (see rows4_avx2).
        const float* xg = x + static_cast<size_t>(m) * K + g * gs;
        __m256 a0 = _mm256_load_ps(acc + 16 * m), a1 = _mm256_load_ps(acc + 16 * m + 8);
        for (int i = 0; i < gs; i += 16) {
          a0 = _mm256_fmadd_ps(_mm256_load_ps(buf + i), _mm256_loadu_ps(xg + i), a0);
          a1 = _mm256_fmadd_ps(_mm256_load_ps(buf + i + 8), _mm256_loadu_ps(xg + i + 8), a1);
        }
        _mm256_store_ps(acc + 16 * m, a0);
        _mm256_store_ps(acc + 16 * m + 8, a1);
      }
    }
    for (int m = 0; m < M; ++m) {
      y[static_cast<size_t>(m) * N + n] = tiles::hsum(_mm256_add_ps(_mm256_load_ps(acc + 16 * m), _mm256_load_ps(acc + 16 * m + 8)));
    }
  }
}

// 4-bit rows with the activations prepared once per call (`prepare4`): each block of 32 of a
// row's values reordered as ggml's nibbles come out of a byte (the 16 even positions, then the
// 16 odd ones), and each group's sum. Sixteen bytes of codes then become four vectors of
// floats with two masks and two shifts, and a group's offset term is its sum times the offset:
//   y = Σ_g scale_g · Σ_i q_i x_i + bias_g · Σ_i x_i.
template <typename S>
__attribute__((target("avx2,fma,f16c"))) void rows4_avx2(const float* xp, const float* xsum, int M, int K,
                                                        const uint8_t* w, const S* scales, const S* biases, int gs,
                                                        float* y, int N, int n0, int n1) {
  const int groups = K / gs;
  const size_t row_bytes = static_cast<size_t>(K) / 2;
  const __m128i low = _mm_set1_epi8(0x0F);
  alignas(32) float codes[128];
  alignas(32) float tot[kRowsPerPass * 8];
  float offs[kRowsPerPass];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    const S* sr = scales + static_cast<size_t>(n) * groups;
    const S* br = biases + static_cast<size_t>(n) * groups;
    ask_ahead(wr, row_bytes, sr, br, groups);
    if (M == 1) {
      __m256 total = _mm256_setzero_ps();
      float off = 0;
      for (int g = 0; g < groups; ++g) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        const uint8_t* q = wr + static_cast<size_t>(g) * gs / 2;
        const float* xg = xp + g * gs;
        for (int i = 0; i < gs; i += 32) {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i / 2));
          const __m128i even = _mm_and_si128(v, low), odd = _mm_and_si128(_mm_srli_epi16(v, 4), low);
          a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(even)), _mm256_load_ps(xg + i), a0);
          a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(even, 8))),
                               _mm256_load_ps(xg + i + 8), a1);
          a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(odd)), _mm256_load_ps(xg + i + 16), a0);
          a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(odd, 8))),
                               _mm256_load_ps(xg + i + 24), a1);
        }
        total = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(tiles::widen(sr[g])), total);
        off += tiles::widen(br[g]) * xsum[g];
      }
      y[n] = tiles::hsum(total) + off;
      continue;
    }
    for (int m = 0; m < M; ++m) {
      _mm256_store_ps(tot + 8 * m, _mm256_setzero_ps());
      offs[m] = 0;
    }
    for (int g = 0; g < groups; ++g) {
      const uint8_t* q = wr + static_cast<size_t>(g) * gs / 2;
      for (int i = 0; i < gs; i += 32) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i / 2));
        const __m128i even = _mm_and_si128(v, low), odd = _mm_and_si128(_mm_srli_epi16(v, 4), low);
        _mm256_store_ps(codes + i, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(even)));
        _mm256_store_ps(codes + i + 8, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(even, 8))));
        _mm256_store_ps(codes + i + 16, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(odd)));
        _mm256_store_ps(codes + i + 24, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(odd, 8))));
      }
      const __m256 sv = _mm256_set1_ps(tiles::widen(sr[g]));
      const float bv = tiles::widen(br[g]);
      for (int m = 0; m < M; ++m) {
        // The same additions in the same order as the one-row path, so that a row's result does
        // not depend on how many rows share the step.
        const float* xg = xp + static_cast<size_t>(m) * K + g * gs;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int i = 0; i < gs; i += 16) {
          a0 = _mm256_fmadd_ps(_mm256_load_ps(codes + i), _mm256_load_ps(xg + i), a0);
          a1 = _mm256_fmadd_ps(_mm256_load_ps(codes + i + 8), _mm256_load_ps(xg + i + 8), a1);
        }
        _mm256_store_ps(tot + 8 * m, _mm256_fmadd_ps(_mm256_add_ps(a0, a1), sv, _mm256_load_ps(tot + 8 * m)));
        offs[m] += bv * xsum[static_cast<size_t>(m) * groups + g];
      }
    }
    for (int m = 0; m < M; ++m) y[static_cast<size_t>(m) * N + n] = tiles::hsum(_mm256_load_ps(tot + 8 * m)) + offs[m];
  }
}
#endif

#ifdef ZETA_X86
/// The activations as `rows4_avx2` reads them: `xp` [M, K] (32-aligned) with each block of 32
/// reordered even positions first, `xsum` [M, K / gs] the groups' sums.
struct Prepared {
  std::vector<float> storage;
  float* xp = nullptr;
  std::vector<float> xsum;
};

Prepared prepare4(const float* x, int M, int K, int gs) {
  Prepared p;
  p.storage.resize(static_cast<size_t>(M) * K + 8);
  auto addr = reinterpret_cast<uintptr_t>(p.storage.data());
  p.xp = p.storage.data() + ((32 - addr % 32) % 32) / sizeof(float);
  const int groups = K / gs;
  p.xsum.assign(static_cast<size_t>(M) * groups, 0.0f);
  for (int m = 0; m < M; ++m) {
    const float* xr = x + static_cast<size_t>(m) * K;
    float* out = p.xp + static_cast<size_t>(m) * K;
    for (int blk = 0; blk < K; blk += 32) {
      for (int j = 0; j < 16; ++j) {
        out[blk + j] = xr[blk + 2 * j];
        out[blk + 16 + j] = xr[blk + 2 * j + 1];
      }
    }
    group_sums(xr, K, gs, p.xsum.data() + static_cast<size_t>(m) * groups);
  }
  return p;
}

// The one-row paths' rows [n0, n1), 32 rows of x at a time: 4-bit ones reordered (`prep`), or
// 8-bit.
template <typename S>
void run_rows(const float* x, const Prepared* prep, int M, int K, const uint8_t* w, const S* s, const S* b, int gs,
              float* y, int N, int n0, int n1) {
  for (int m0 = 0; m0 < M; m0 += kRowsPerPass) {
    const int rows_here = std::min(kRowsPerPass, M - m0);
    if (prep != nullptr) {
      rows4_avx2<S>(prep->xp + static_cast<size_t>(m0) * K, prep->xsum.data() + static_cast<size_t>(m0) * (K / gs),
                    rows_here, K, w, s, b, gs, y + static_cast<size_t>(m0) * N, N, n0, n1);
    } else {
      rows_avx2<S>(x + static_cast<size_t>(m0) * K, rows_here, K, w, s, b, gs, y + static_cast<size_t>(m0) * N, N, n0,
                   n1);
    }
  }
}
#endif

// What the products on packed weights share: their format, and an output of x's rows by the
// weight's rows. Inputs: x, w, scales, biases.
template <typename Self>
class PackedProduct : public mx::UnaryPrimitive {
 public:
  PackedProduct(mx::Stream s, int group_size, int bits) : UnaryPrimitive(s), gs_(group_size), bits_(bits) {}

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const Self*>(&other);
    return o != nullptr && o->gs_ == gs_ && o->bits_ == bits_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    auto shape = inputs[0].shape();
    shape.back() = inputs[1].shape(0);
    return {shape};
  }

 protected:
  // Allocates the output and queues `body(x's rows, M, K, w, scales, biases, group size, bits, y,
  // N)` on the stream. Arrays are captured as weak copies, as MLX's own primitives do: the graph
  // keeps the buffers alive until the task has run.
  template <typename Body>
  void queue(const std::vector<array>& inputs, array& out, Body body) {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    std::vector<array> outs{out};
    auto& enc = encoder(stream(), inputs, outs);
    enc.dispatch([x = array::unsafe_weak_copy(inputs[0]), w = array::unsafe_weak_copy(inputs[1]),
                  s = array::unsafe_weak_copy(inputs[2]), b = array::unsafe_weak_copy(inputs[3]),
                  out = array::unsafe_weak_copy(out), gs = gs_, bits = bits_, body]() mutable {
      const int K = x.shape(-1), N = out.shape(-1);
      const int M = static_cast<int>(x.size() / std::max(K, 1));
      std::vector<float> packed;
      body(float_rows(x, packed), M, K, w, s, b, gs, bits, out.data<float>(), N);
    });
  }

  int gs_;
  int bits_;
};

}  // namespace

void packed_product(const float* xp, int M, int K, const array& w, const array& s, const array& b, int gs, int bits,
                    float* y, int N) {
  kernel_calls.fetch_add(1, std::memory_order_relaxed);
  const uint8_t* wp = w.data<uint8_t>();
#ifdef ZETA_X86
  std::optional<Prepared> prep;
  std::optional<q8::Prepared> q8;
  const bool tiled = M >= kTileRows || cpu_isa() < Isa::avx2;
  // One or two rows of 4-bit products whose rows split into chunks of 64 take the integer
  // path (qmm_int.cc), and 8-bit ones too where AVX-512 VNNI multiplies unsigned bytes (AVX2's
  // `maddubs` would saturate on them); others of few rows a float one; several rows the tiles.
  if (!tiled && bits == 4 && K % 64 == 0) {
    q8 = q8::prepare(xp, M, K, gs);
  } else if (!tiled && bits == 8 && K % 64 == 0 && cpu_isa() == Isa::avx512_vnni) {
    q8 = q8::prepare8(xp, M, K, gs);
  } else if (!tiled && bits == 4) {
    prep = prepare4(xp, M, K, gs);
  }
#elif defined(__aarch64__)
  // With the int8 dot product, one or two rows of 4-bit products in chunks of 64 take the integer
  // path (qmm_int_neon.cc); everything else the tiles.
  std::optional<q8::Prepared> q8;
  const bool tiled = M >= kTileRows || bits != 4 || K % 64 != 0 || cpu_isa() != Isa::neon_dot;
  if (!tiled) q8 = q8::prepare(xp, M, K, gs);
#else
  const bool tiled = true;
#endif
  std::optional<tiles::Rows> rows;
  if (tiled) rows = tiles::prepare_rows(xp, M, K, bits);
#ifdef ZETA_X86
  const Prepared* pp = prep ? &*prep : nullptr;
#endif
  auto part = [&](int t, int parts) {
    int n0 = static_cast<int>(static_cast<int64_t>(N) * t / parts);
    int n1 = static_cast<int>(static_cast<int64_t>(N) * (t + 1) / parts);
    if (tiled) {
      switch (s.dtype()) {
        case mx::float32:
          return tiles::float_rows(*rows, M, K, wp, s.data<float>(), b.data<float>(), gs, bits, y, N, n0, n1);
        case mx::float16:
          return tiles::float_rows(*rows, M, K, wp, s.data<mx::float16_t>(), b.data<mx::float16_t>(), gs, bits, y,
                                   N, n0, n1);
        default:
          return tiles::float_rows(*rows, M, K, wp, s.data<mx::bfloat16_t>(), b.data<mx::bfloat16_t>(), gs, bits, y,
                                   N, n0, n1);
      }
    }
#if defined(ZETA_X86) || defined(__aarch64__)
    if (q8) {
      for (int m0 = 0; m0 < M; m0 += kRowsPerPass) {
        const int rows_here = std::min(kRowsPerPass, M - m0);
        switch (s.dtype()) {
          case mx::float32:
            q8::rows(*q8, m0, rows_here, K, wp, s.data<float>(), b.data<float>(), gs, y, N, n0, n1);
            break;
          case mx::float16:
            q8::rows(*q8, m0, rows_here, K, wp, s.data<mx::float16_t>(), b.data<mx::float16_t>(), gs, y, N, n0,
                     n1);
            break;
          default:
            q8::rows(*q8, m0, rows_here, K, wp, s.data<mx::bfloat16_t>(), b.data<mx::bfloat16_t>(), gs, y, N,
                     n0, n1);
            break;
        }
      }
      return;
    }
#endif
#ifdef ZETA_X86
    switch (s.dtype()) {
      case mx::float32:
        return run_rows(xp, pp, M, K, wp, s.data<float>(), b.data<float>(), gs, y, N, n0, n1);
      case mx::float16:
        return run_rows(xp, pp, M, K, wp, s.data<mx::float16_t>(), b.data<mx::float16_t>(), gs, y, N, n0, n1);
      default:
        return run_rows(xp, pp, M, K, wp, s.data<mx::bfloat16_t>(), b.data<mx::bfloat16_t>(), gs, y, N, n0, n1);
    }
#endif
  };
  // Tiled products of many rows are bound by arithmetic, not by the stream of weights: smaller
  // parts, so that the threads finish together.
  parallel(part, static_cast<size_t>(N) * K * std::max(M, 1), tiled && M >= kFineRows ? 8 : 2);
}

namespace {

class AffineQmm : public PackedProduct<AffineQmm> {
 public:
  using PackedProduct::PackedProduct;

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    queue(inputs, out, [](const float* xp, int M, int K, const array& w, const array& s, const array& b, int gs,
                          int bits, float* y, int N) { packed_product(xp, M, K, w, s, b, gs, bits, y, N); });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_affine_qmm] runs on the CPU only");
  }

  const char* name() const override { return "ZetaAffineQmm"; }
};

// Weight rows [n0, n1) of `w` dequantized into `out` (see tiles::dequant_rows), their scales and
// offsets from group `g0` of `s` and `b` on, in whichever float type those are.
void dequant_part(const uint8_t* w, const array& s, const array& b, size_t g0, int K, int gs, int bits, float* out,
                  int n0, int n1) {
  switch (s.dtype()) {
    case mx::float32:
      return tiles::dequant_rows(w, s.data<float>() + g0, b.data<float>() + g0, K, gs, bits, out, n0, n1);
    case mx::float16:
      return tiles::dequant_rows(w, s.data<mx::float16_t>() + g0, b.data<mx::float16_t>() + g0, K, gs, bits, out, n0,
                                 n1);
    default:
      return tiles::dequant_rows(w, s.data<mx::bfloat16_t>() + g0, b.data<mx::bfloat16_t>() + g0, K, gs, bits, out,
                                 n0, n1);
  }
}

// The weights of a product too large for the kernel, expanded to float32 for a GEMM, the rows
// on the pool (MLX's CPU `dequantize` took 6.9 s per step on a 1B model: scalar, one thread).
class AffineDequant : public mx::UnaryPrimitive {
 public:
  AffineDequant(mx::Stream s, int group_size, int bits) : UnaryPrimitive(s), gs_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    std::vector<array> outs{out};
    auto& enc = encoder(stream(), inputs, outs);
    enc.dispatch([w = array::unsafe_weak_copy(inputs[0]), s = array::unsafe_weak_copy(inputs[1]),
                  b = array::unsafe_weak_copy(inputs[2]), out = array::unsafe_weak_copy(out), gs = gs_,
                  bits = bits_]() mutable {
      const int N = out.shape(0), K = out.shape(1);
      float* o = out.data<float>();
      const uint8_t* wp = w.data<uint8_t>();
      auto part = [&](int t, int parts) {
        const int n0 = static_cast<int>(static_cast<int64_t>(N) * t / parts);
        const int n1 = static_cast<int>(static_cast<int64_t>(N) * (t + 1) / parts);
        dequant_part(wp, s, b, 0, K, gs, bits, o, n0, n1);
      };
      parallel(part, static_cast<size_t>(N) * K);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_affine_dequantize] runs on the CPU only");
  }
  const char* name() const override { return "ZetaAffineDequantize"; }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    return {{inputs[0].shape(0), static_cast<int>(inputs[0].shape(1) * 32 / bits_)}};
  }

 private:
  int gs_;
  int bits_;
};

#ifdef ZETA_CBLAS_SHIM
// `x` [M, K] times the weights dequantized a block of rows at a time, each block's product a GEMM
// on the pool: the float32 copy of the weights is one block (about 8 MB), not the whole matrix,
// which for a Llama-3-8B gate/up projection was 470 MB held for the call on top of the packed
// weights. Inputs: x, w, scales, biases; the output [M, N].
class BlockedGemm : public PackedProduct<BlockedGemm> {
 public:
  using PackedProduct::PackedProduct;

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    queue(inputs, out, [](const float* xp, int M, int K, const array& w, const array& s, const array& b, int gs,
                          int bits, float* y, int N) {
      const uint8_t* wp = w.data<uint8_t>();
      const int rows = std::max(64, (kBlockFloats / std::max(K, 1)) / 64 * 64);
      std::vector<float> block(static_cast<size_t>(std::min(rows, N)) * K);
      for (int n0 = 0; n0 < N; n0 += rows) {
        const int n1 = std::min(N, n0 + rows);
        // Rows n0..n1 as rows 0..n1 - n0 of the block.
        const uint8_t* wb = wp + static_cast<size_t>(n0) * K / 8 * bits;
        auto part = [&](int t, int parts) {
          const int a = static_cast<int>(static_cast<int64_t>(n1 - n0) * t / parts);
          const int e = static_cast<int>(static_cast<int64_t>(n1 - n0) * (t + 1) / parts);
          dequant_part(wb, s, b, static_cast<size_t>(n0) * (K / gs), K, gs, bits, block.data(), a, e);
        };
        parallel(part, static_cast<size_t>(n1 - n0) * K);
        cblas_sgemm(101, 111, 112, M, n1 - n0, K, 1.0f, xp, K, block.data(), K, 0.0f, y + n0, N);
      }
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_blocked_gemm] runs on the CPU only");
  }
  const char* name() const override { return "ZetaBlockedGemm"; }

 private:
  // Floats of one dequantized block: 8 MB, which stays in this machine's L3 for the GEMM.
  static constexpr int kBlockFloats = 2 << 20;
};
#endif

}  // namespace

namespace {

bool cpu_float_product(const array& x, const std::string& mode, bool transpose, mx::StreamOrDevice s) {
  return mx::to_stream(s).device == mx::Device::cpu && mode == "affine" && transpose && x.dtype() == mx::float32 &&
         x.ndim() >= 1;
}

int64_t rows_of(const array& x) { return static_cast<int64_t>(x.size() / std::max(x.shape(-1), 1)); }

}  // namespace

bool cpu_qmm_takes(int bits, int group_size) {
  return (bits == 4 || bits == 8) && (group_size == 32 || group_size == 64 || group_size == 128);
}

bool cpu_qmm_applies(const array& x, int group_size, int bits, const std::string& mode, bool transpose,
                     mx::StreamOrDevice s) {
  if (!cpu_float_product(x, mode, transpose, s)) return false;
  if (!cpu_qmm_takes(bits, group_size)) return false;
  return rows_of(x) <= kKernelRows;
}

bool cpu_qmm_wants_gemm(const array& x, int group_size, int bits, const std::string& mode, bool transpose,
                        mx::StreamOrDevice s) {
  return cpu_float_product(x, mode, transpose, s) && rows_of(x) > kKernelRows;
}

array cpu_dequantized_gemm(const array& x, const array& w, const array& scales, const array& biases, int group_size,
                           int bits, mx::StreamOrDevice s) {
  if (!cpu_qmm_takes(bits, group_size) || w.ndim() != 2 || w.dtype() != mx::uint32 || !mx::issubdtype(scales.dtype(), mx::floating) || scales.dtype() != biases.dtype()) {
    auto wide = [&](const array& a) { return mx::astype(a, mx::float32, s); };
    array dense =
        mx::dequantize(w, wide(scales), wide(biases), group_size, bits, "affine", std::nullopt, mx::float32, s);
    return mx::matmul(x, mx::transpose(dense, {1, 0}, s), s);
  }
  const int N = w.shape(0), K = w.shape(1) * 32 / bits;
#ifdef ZETA_CBLAS_SHIM
  if (x.dtype() == mx::float32 && x.shape(-1) == K) {
    auto shape = x.shape();
    shape.back() = N;
    return array(std::move(shape), mx::float32, std::make_shared<BlockedGemm>(mx::to_stream(s), group_size, bits),
                 {x, w, scales, biases});
  }
#endif
  array dense({N, K}, mx::float32, std::make_shared<AffineDequant>(mx::to_stream(s), group_size, bits),
              {w, scales, biases});
  return mx::matmul(x, mx::transpose(dense, {1, 0}, s), s);
}

int packed_outputs(const array& w, const array& scales, const array& biases, int group_size, int bits, int K) {
  if (!cpu_qmm_takes(bits, group_size) || K % group_size != 0) {
    throw std::invalid_argument("[zeta_affine_qmm] " + std::to_string(bits) + "-bit weights in groups of " +
                                std::to_string(group_size) + " over " + std::to_string(K) +
                                " inputs: the kernel takes 4 or 8 bits in groups of 32, 64 or 128 dividing the inputs");
  }
  if (w.ndim() != 2 || w.dtype() != mx::uint32 || static_cast<int64_t>(w.shape(1)) * 32 != static_cast<int64_t>(K) * bits) {
    throw std::invalid_argument("[zeta_affine_qmm] weight of shape " + std::to_string(w.ndim() == 2 ? w.shape(0) : -1) +
                                "x" + std::to_string(w.ndim() == 2 ? w.shape(1) : -1) + " does not pack " +
                                std::to_string(K) + " inputs of " + std::to_string(bits) + " bits");
  }
  const int N = w.shape(0);
  if (scales.shape() != mx::Shape{N, K / group_size} || biases.shape() != scales.shape() ||
      scales.dtype() != biases.dtype() || !mx::issubdtype(scales.dtype(), mx::floating)) {
    throw std::invalid_argument("[zeta_affine_qmm] scales and biases must be float [N, K / group_size]");
  }
  return N;
}

array cpu_affine_qmm(const array& x, const array& w, const array& scales, const array& biases, int group_size,
                     int bits, mx::StreamOrDevice s) {
  auto shape = x.shape();
  shape.back() = packed_outputs(w, scales, biases, group_size, bits, x.shape(-1));
  auto stream = mx::to_stream(s);
  return array(std::move(shape), mx::float32, std::make_shared<AffineQmm>(stream, group_size, bits),
               {x, w, scales, biases});
}

int cpu_qmm_max_rows() { return kKernelRows; }

int cpu_qmm_threads() {
#ifdef ZETA_CBLAS_SHIM
  return zeta_parallel_threads();
#else
  return 1;
#endif
}

uint64_t cpu_qmm_calls() { return kernel_calls.load(std::memory_order_relaxed); }

}  // namespace zeta_mlx
