// What the bridge's CPU primitives (qmm*.cc, fused.cc, attend.cc) share: the one thread pool,
// registering a node's arrays with MLX's CPU encoder, reading an MLX array of any strides as
// plain rows, and the choice of vector instructions.

#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"

namespace zeta_mlx {

// Parallel work goes to the one pool of the BLAS shim (`cblas_shim.c`), which the float32
// products already use; a second pool would spin beside it on the same cores. Without the shim
// (no OpenBLAS wheel, e.g. macOS, where the GPU does this work) the work runs on MLX's worker
// thread alone.
#ifdef ZETA_CBLAS_SHIM
extern "C" void zeta_parallel(void (*fn)(void* ctx, int part, int parts), void* ctx, size_t work, int per_thread);
extern "C" int zeta_parallel_threads(void);
#endif

/// Runs `f(part, parts)` on the pool, `per_thread` parts per thread (see `zeta_parallel`);
/// `work` (roughly, multiply-adds) below the shim's threshold stays on the calling thread.
template <typename F>
void parallel(F& f, size_t work, int per_thread = 2) {
#ifdef ZETA_CBLAS_SHIM
  zeta_parallel([](void* ctx, int part, int parts) { (*static_cast<F*>(ctx))(part, parts); }, &f, work, per_thread);
#else
  (void)work;
  (void)per_thread;
  f(0, 1);
#endif
}

/// The row range `[first, end)` of part `t` of `parts` over `n` rows (for `parallel`'s parts).
inline std::pair<size_t, size_t> share_of(size_t n, int t, int parts) {
  return {n * t / parts, n * (t + 1) / parts};
}

/// Calls `f(i, offset)` for every element of `a` in row-major order, with its offset in the
/// buffer (any strides).
template <typename F>
void for_each_offset(const mlx::core::array& a, F f) {
  const auto& shape = a.shape();
  const auto& strides = a.strides();
  const int nd = static_cast<int>(shape.size());
  std::vector<int> idx(nd, 0);
  for (size_t i = 0; i < a.size(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < nd; ++d) off += static_cast<int64_t>(idx[d]) * strides[d];
    f(i, off);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

/// Copies an array of float32 of any strides into `dst`, in row-major order.
inline void gather_rows(const mlx::core::array& a, float* dst) {
  const float* src = a.data<float>();
  for_each_offset(a, [&](size_t i, int64_t off) { dst[i] = src[off]; });
}

/// Registers a primitive's arrays with the CPU encoder, so they live until its task has run.
inline mlx::core::cpu::CommandEncoder& encoder(mlx::core::Stream s, const std::vector<mlx::core::array>& inputs,
                                               std::vector<mlx::core::array>& outputs) {
  auto& enc = mlx::core::cpu::get_command_encoder(s);
  for (const auto& a : inputs) enc.set_input_array(a);
  for (auto& o : outputs) enc.set_output_array(o);
  return enc;
}

/// Weak copies of a node's arrays for its task, as MLX's own primitives capture them: the graph
/// keeps the buffers alive until the task has run.
inline std::vector<mlx::core::array> weak(const std::vector<mlx::core::array>& v) {
  std::vector<mlx::core::array> out;
  out.reserve(v.size());
  for (const auto& a : v) out.push_back(mlx::core::array::unsafe_weak_copy(a));
  return out;
}

#if defined(__aarch64__)
/// Whether the core has Armv8.2's int8 dot product (`sdot`): the kernel's HWCAP on Linux, the
/// `hw.optional.arm.FEAT_DotProd` sysctl on macOS.
inline bool arm_dotprod() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  int on = 0;
  size_t size = sizeof on;
  return sysctlbyname("hw.optional.arm.FEAT_DotProd", &on, &size, nullptr, 0) == 0 && on != 0;
#else
  return false;
#endif
}
#endif

/// The widest vector paths the CPU primitives take: on x86 from narrowest to widest; on arm64
/// NEON (every AArch64 core has it) and NEON with the int8 dot product (`sdot`, Armv8.2's
/// DotProd: Apple M1 and later, Graviton 2 and later, Cortex-A76 and later).
enum class Isa { portable, avx2, avx512, avx512_vnni, neon, neon_dot };

/// What this machine has (AVX2 counted with FMA and F16C; VNNI with AVX-512 BW and VL), narrowed
/// by `ZETA_CPU_ISA=avx2`, `neon` or `portable` so that the tests run the narrower paths on any
/// machine.
inline Isa cpu_isa() {
  static const Isa chosen = [] {
    const char* narrow = std::getenv("ZETA_CPU_ISA");
    const std::string only = narrow != nullptr ? narrow : "";
#if defined(__x86_64__) || defined(_M_X64)
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
    const bool vnni = avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512vnni");
    if (only == "portable" || !avx2) return Isa::portable;
    if (only == "avx2" || !avx512) return Isa::avx2;
    return vnni ? Isa::avx512_vnni : Isa::avx512;
#elif defined(__aarch64__)
    if (only == "portable") return Isa::portable;
    if (only == "neon" || !arm_dotprod()) return Isa::neon;
    return Isa::neon_dot;
#else
    (void)only;
    return Isa::portable;
#endif
  }();
  return chosen;
}

/// Asks for the packed weight row about 2 KB after `wr` (codes, and the scales and offsets of
/// its groups), so that a part's stream of weights is on its way before the loop gets there.
/// The hardware prefetcher alone left SmolLM2's batch-1 products at 15-25 GB/s (a part of a
/// small product is a short stream, ~35 KB, paying the memory's latency at its start); asking
/// ahead (with two parts per thread) took 20% off its 4-bit products.
template <typename S>
inline void ask_ahead(const uint8_t* wr, size_t row_bytes, const S* sr, const S* br, int groups) {
  const size_t ahead = std::min<size_t>(8, std::max<size_t>(1, (2304 + row_bytes - 1) / row_bytes));
  const char* next = reinterpret_cast<const char*>(wr + ahead * row_bytes);
  for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(next + off, 0, 3);
  __builtin_prefetch(sr + ahead * groups, 0, 3);
  __builtin_prefetch(br + ahead * groups, 0, 3);
}

/// `out[g]` = the sum of group g's `gs` values of the row `x` [K], in order: the term the
/// quantization's offsets multiply (Σ_g bias_g · Σ_i x_i).
inline void group_sums(const float* x, int K, int gs, float* out) {
  for (int g = 0; g < K / gs; ++g) {
    float sum = 0;
    for (int i = 0; i < gs; ++i) sum += x[g * gs + i];
    out[g] = sum;
  }
}

/// The float32 rows of `a`: its own buffer when row-contiguous, else a copy in `tmp`.
inline const float* float_rows(const mlx::core::array& a, std::vector<float>& tmp) {
  if (a.flags().row_contiguous) return a.data<float>();
  tmp.resize(a.size());
  gather_rows(a, tmp.data());
  return tmp.data();
}

}  // namespace zeta_mlx
