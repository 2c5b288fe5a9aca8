// The argmax of each row of float32 logits on the CPU (see fused.h).
//
// Why not MLX's own: its CPU `argmax` compares one element at a time on its one stream thread.
// Every greedy step takes it over the whole vocabulary of every row (16 x 49,152 logits for
// SmolLM2 at batch 16): 2% of a step's samples in a profile, on one core while the pool's other
// thread waited, so about 4% of the step's time. Here the rows are shared over the thread pool,
// and each is read with vectors: once for its largest value, then up to the first element equal
// to it.
//
// The answer is MLX's for every row without NaN: the first occurrence of the largest value, +0
// and -0 equal. A NaN never wins here unless it comes first (the answer is then 0); MLX's CPU
// build, compiled for speed, picks a NaN in some rows and not in others.

#include "fused.h"

#include "cpu_parallel.h"
#include "fused_rows.h"
#include "simd.h"

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/primitives.h"


namespace zeta_mlx {

namespace mx = mlx::core;
using mx::array;

namespace {

// The largest of x[0..n) (x[0] not NaN; NaNs skipped), then its first index.
uint32_t argmax_portable(const float* x, int n) {
  float best = x[0];
  for (int i = 1; i < n; ++i) best = x[i] > best ? x[i] : best;
  int i = 0;
  while (!(x[i] == best)) ++i;
  return static_cast<uint32_t>(i);
}

#ifdef ZETA_X86
// As argmax_portable, 16 lanes at a time. `max_ps(v, m)` gives m when v is NaN, so NaNs are
// skipped as MLX's comparison skips them.
__attribute__((target("avx512f"))) uint32_t argmax_avx512(const float* x, int n) {
  __m512 m = _mm512_set1_ps(x[0]);
  int i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);
  float best = _mm512_reduce_max_ps(m);
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  const __m512 bv = _mm512_set1_ps(best);
  for (i = 0; i + 16 <= n; i += 16) {
    const __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), bv, _CMP_EQ_OQ);
    if (eq != 0) return static_cast<uint32_t>(i + __builtin_ctz(eq));
  }
  while (!(x[i] == best)) ++i;
  return static_cast<uint32_t>(i);
}

__attribute__((target("avx2"))) uint32_t argmax_avx2(const float* x, int n) {
  __m256 m = _mm256_set1_ps(x[0]);
  int i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float best = lanes[0];
  for (float l : lanes) best = l > best ? l : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  const __m256 bv = _mm256_set1_ps(best);
  for (i = 0; i + 8 <= n; i += 8) {
    const int eq = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), bv, _CMP_EQ_OQ));
    if (eq != 0) return static_cast<uint32_t>(i + __builtin_ctz(eq));
  }
  while (!(x[i] == best)) ++i;
  return static_cast<uint32_t>(i);
}
#endif

uint32_t argmax_row(const float* x, int n) {
  if (std::isnan(x[0])) return 0;
#ifdef ZETA_X86
  switch (cpu_isa()) {
    case Isa::avx512:
    case Isa::avx512_vnni:
      return argmax_avx512(x, n);
    case Isa::avx2:
      return argmax_avx2(x, n);
    default:
      break;
  }
#endif
  return argmax_portable(x, n);
}

class ArgmaxCpu : public mx::UnaryPrimitive {
 public:
  explicit ArgmaxCpu(mx::Stream s) : UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    std::vector<array> outs{out};
    auto& enc = encoder(stream(), inputs, outs);
    enc.dispatch([x = array::unsafe_weak_copy(inputs[0]), out = array::unsafe_weak_copy(out)]() mutable {
      const int n = x.shape(-1);
      const size_t rows = out.size();
      std::vector<float> tmp;
      const float* xs = float_rows(x, tmp);
      uint32_t* o = out.data<uint32_t>();
      auto part = [&](int t, int parts) {
        auto [r0, r1] = share_of(rows, t, parts);
        for (size_t r = r0; r < r1; ++r) o[r] = argmax_row(xs + r * n, n);
      };
      parallel(part, rows * static_cast<size_t>(n) / 4);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_argmax] runs on the CPU only");
  }
  const char* name() const override { return "ZetaArgmax"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const ArgmaxCpu*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    auto shape = inputs[0].shape();
    shape.pop_back();
    return {shape};
  }
};

}  // namespace

array fused_argmax(const array& x, mx::StreamOrDevice s) {
  auto stream = cpu_stream(s, "zeta_argmax");
  require(x.dtype() == mx::float32 && x.ndim() >= 1 && x.shape(-1) > 0, "zeta_argmax",
          "takes float32 with a non-empty last axis");
  auto shape = x.shape();
  shape.pop_back();
  return array(shape, mx::uint32, std::make_shared<ArgmaxCpu>(stream), {x});
}

}  // namespace zeta_mlx
