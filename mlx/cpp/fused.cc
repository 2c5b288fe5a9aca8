// Fused CPU layers (see fused.h).
//
// Why: MLX's CPU build has no kernels for `fast::rms_norm`, `fast::rope` or attention; it expands
// each into a chain of small operations, and every graph node costs its dispatch, an allocation
// and a pass over memory. A SmolLM2 decode step was ~2,950 nodes, and that overhead, not the
// arithmetic, set its speed. Each primitive here does one such chain in one pass over its rows.
//
// The arithmetic follows MLX's expansions in float32 (normalize, then scale by the weight; rotate
// with cosines and sines of `position * scale * inverse wavelength`; softmax with the maximum
// subtracted), so results agree with them to rounding. Every row is computed alone, whatever else
// the batch holds, so batched output equals single-sequence output bit for bit.

#include "fused.h"
#include "fused_rows.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "attend.h"
#include "cpu_parallel.h"
#include "exp16.h"
#include "simd.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"


namespace zeta_mlx {

namespace mx = mlx::core;
using mx::array;

namespace {

std::atomic<uint64_t> buffer_copies{0};

// Eight independent sums, so the compiler vectorizes the loop without reassociating floats.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// `v * rsqrt(mean(v²) + eps) * w`, in MLX's order.
inline void rms_row(const float* v, const float* w, float eps, int n, float* out) {
  const float r = 1.0f / std::sqrt(dot(v, v, n) / static_cast<float>(n) + eps);
  for (int d = 0; d < n; ++d) out[d] = (v[d] * r) * w[d];
}

// Integer arrays (ids, slots, lengths) of any strides as int64 values.
std::vector<int64_t> ints(const array& a) {
  std::vector<int64_t> out(a.size());
  const bool u = a.dtype() == mx::uint32;
  for_each_offset(a, [&](size_t i, int64_t off) {
    out[i] = u ? static_cast<int64_t>(a.data<uint32_t>()[off]) : a.data<int32_t>()[off];
  });
  return out;
}

// A row's rotation: cosines and sines of `position * scale * inverse wavelength`, as MLX's
// expansion computes them.
struct Rotation {
  const DecodeAttentionSpec& sp;
  const float* inv;
  std::vector<float> cs, sn;

  Rotation(const DecodeAttentionSpec& spec, const float* inv_freqs)
      : sp(spec), inv(inv_freqs), cs(spec.rope_dims / 2), sn(spec.rope_dims / 2) {}

  void at(int64_t position) {
    const float p = static_cast<float>(position) * sp.pos_scale;
    for (size_t i = 0; i < cs.size(); ++i) {
      const float th = p * inv[i];
      cs[i] = std::cos(th) * sp.mscale;
      sn[i] = std::sin(th) * sp.mscale;
    }
  }

  // One head `src` (normed by `norm` when given) into `dst`, rotated.
  void head(const float* src, const float* norm, float eps, float* dst) const {
    const int hd = sp.head_dim, half = sp.rope_dims / 2;
    if (norm)
      rms_row(src, norm, eps, hd, dst);
    else
      std::memcpy(dst, src, sizeof(float) * hd);
    for (int i = 0; i < half; ++i) {
      const int i0 = sp.traditional ? 2 * i : i, i1 = sp.traditional ? 2 * i + 1 : i + half;
      const float a = dst[i0], b = dst[i1];
      dst[i0] = a * cs[i] - b * sn[i];
      dst[i1] = a * sn[i] + b * cs[i];
    }
  }
};

}  // namespace

void rms_rows(const float* x, const float* y, const float* w, float eps, size_t n, int D, float* sum, float* normed) {
  auto part = [&](int t, int parts) {
    auto [r0, r1] = share_of(n, t, parts);
    for (size_t r = r0; r < r1; ++r) {
      const float* v = x + r * D;
      if (y != nullptr) {
        float* s = sum + r * D;
        const float* u = y + r * D;
        for (int d = 0; d < D; ++d) s[d] = v[d] + u[d];
        v = s;
      }
      rms_row(v, w, eps, D, normed + r * D);
    }
  };
  parallel(part, n * D * 4);
}

#ifdef ZETA_X86
// A row's SiLU gate 16 lanes at a time: e^-g by exp16 (glibc's scalar `expf` per element was
// 1% of a batch-16 step's samples, the loop around it 2%), then the scalar loop's operations in
// its order. The result is within float32 rounding of the scalar loop's, and a row's values do
// not depend on the batch.
static __attribute__((target("avx512f"))) void silu_row_avx512(const float* g, const float* u, float* o, int I) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int i = 0; i < I; i += 16) {
    const __mmask16 k = static_cast<__mmask16>(I - i >= 16 ? 0xFFFF : (1u << (I - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_mul_ps(gv, s), _mm512_maskz_loadu_ps(k, u + i)));
  }
}
#endif

void gated_rows(const float* x, size_t n, int I, int act, float* y) {
  const float c = static_cast<float>(std::sqrt(2.0 / M_PI));
#ifdef ZETA_X86
  const bool wide = cpu_isa() == Isa::avx512 || cpu_isa() == Isa::avx512_vnni;
#endif
  auto part = [&](int t, int parts) {
    auto [r0, r1] = share_of(n, t, parts);
    for (size_t r = r0; r < r1; ++r) {
      const float* g = x + r * 2 * I;
      const float* u = g + I;
      float* o = y + r * I;
      if (act == 0) {
#ifdef ZETA_X86
        if (wide) {
          silu_row_avx512(g, u, o, I);
          continue;
        }
#endif
        for (int i = 0; i < I; ++i) o[i] = (g[i] * (1.0f / (1.0f + std::exp(-g[i])))) * u[i];
      } else {
        for (int i = 0; i < I; ++i) {
          const float v = g[i];
          const float t = std::tanh(c * (v + 0.044715f * ((v * v) * v)));
          o[i] = ((0.5f * v) * (1.0f + t)) * u[i];
        }
      }
    }
  };
  parallel(part, n * I * 16);
}

void attend_rows(std::span<const array> in, const DecodeAttentionSpec& sp, bool qn, bool has_sinks, float* o) {
  const int nh = sp.heads, nkv = sp.kv_heads, hd = sp.head_dim;
  const int rep = nh / nkv;
  const int64_t half = static_cast<int64_t>(nkv) * hd, slot = 2 * half;
  std::vector<float> tx, tkv, tinv, tqn, tsinks;
  const float* x = float_rows(in[0], tx);
  const float* K = float_rows(in[1], tkv);
  const float* V = K + half;
  const int C = in[0].shape(-1);
  const auto pos = ints(in[2]);
  const auto gat = ints(in[3]);
  const auto lens = ints(in[4]);
  Rotation rot(sp, float_rows(in[5], tinv));
  size_t next = 6;
  const float* qnw = qn ? float_rows(in[next++], tqn) : nullptr;
  const float* sinks = has_sinks ? float_rows(in[next++], tsinks) : nullptr;
  const int B = static_cast<int>(lens.size());
  const int W = B > 0 ? static_cast<int>(gat.size() / B) : 0;
  const int64_t S = in[1].shape(0);

  std::vector<float> Q(static_cast<size_t>(B) * nh * hd);
  for (int b = 0; b < B; ++b) {
    rot.at(pos[b]);
    const float* row = x + static_cast<int64_t>(b) * C;
    for (int h = 0; h < nh; ++h) rot.head(row + h * hd, qnw, sp.q_eps, &Q[(static_cast<size_t>(b) * nh + h) * hd]);
  }

  // Work items: a row's kv heads together when the rows are enough to share among the
  // threads (each cache row then read whole), or one (row, kv head) each.
  const int ng = B >= 4 ? nkv : 1;
  const int items_per_row = nkv / ng;
  auto part = [&](int t, int parts) {
    auto [i0, i1] = share_of(static_cast<size_t>(B) * items_per_row, t, parts);
    std::vector<float> sc(static_cast<size_t>(ng) * rep * (W + 1));
    for (size_t i = i0; i < i1; ++i) {
      const int b = static_cast<int>(i / items_per_row), g = static_cast<int>(i % items_per_row) * ng;
      const int len = static_cast<int>(std::clamp<int64_t>(lens[b], 0, W));
      const int j0 = sp.window > 0 ? std::max(0, len - sp.window) : 0;
      const size_t h0 = static_cast<size_t>(g) * rep;
      attn::attend(&Q[(static_cast<size_t>(b) * nh + h0) * hd], ng, rep, hd, K + g * hd, V + g * hd, slot,
             &gat[static_cast<size_t>(b) * W], j0, len, S, sp.scale, sinks ? sinks + h0 : nullptr, sc.data(),
             o + (static_cast<size_t>(b) * nh + h0) * hd);
    }
  };
  parallel(part, static_cast<size_t>(B) * nh * W * hd * 2);
}

namespace {

class RmsNormCpu : public mx::Primitive {
 public:
  RmsNormCpu(mx::Stream s, float eps, bool residual) : Primitive(s), eps_(eps), residual_(residual) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
    auto& enc = encoder(stream(), inputs, outputs);
    enc.dispatch([in = weak(inputs), out = weak(outputs), eps = eps_, residual = residual_]() mutable {
      const int D = in[0].shape(-1);
      const size_t n = in[0].size() / std::max(D, 1);
      std::vector<float> tx, ty, tw;
      rms_rows(float_rows(in[0], tx), residual ? float_rows(in[1], ty) : nullptr, float_rows(in[residual ? 2 : 1], tw),
               eps, n, D, residual ? out[0].data<float>() : nullptr, out[residual ? 1 : 0].data<float>());
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[zeta_rms_norm] runs on the CPU only");
  }
  const char* name() const override { return "ZetaRmsNorm"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const RmsNormCpu*>(&other);
    return o && o->eps_ == eps_ && o->residual_ == residual_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    if (residual_) return {inputs[0].shape(), inputs[0].shape()};
    return {inputs[0].shape()};
  }

 private:
  float eps_;
  bool residual_;
};

class GatedActCpu : public mx::UnaryPrimitive {
 public:
  GatedActCpu(mx::Stream s, int act) : UnaryPrimitive(s), act_(act) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    std::vector<array> outs{out};
    auto& enc = encoder(stream(), inputs, outs);
    enc.dispatch([gu = array::unsafe_weak_copy(inputs[0]), out = array::unsafe_weak_copy(out), act = act_]() mutable {
      const int I = out.shape(-1);
      std::vector<float> tmp;
      gated_rows(float_rows(gu, tmp), out.size() / std::max(I, 1), I, act, out.data<float>());
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_gated_act] runs on the CPU only");
  }
  const char* name() const override { return "ZetaGatedAct"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const GatedActCpu*>(&other);
    return o && o->act_ == act_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    auto shape = inputs[0].shape();
    shape.back() /= 2;
    return {shape};
  }

 private:
  int act_;
};

// Takes `src`'s buffer for `dst` when nothing else holds it (the KV buffer of the last step,
// which the pool has just replaced); else allocates, and the task copies. The nodes that write
// the cache have one output each for this reason: MLX gives every output of a node its own copy
// of the node's inputs, so an input of a multi-output node is never donatable.
bool donate(const array& src, array& dst) {
  if (src.is_donatable() && src.flags().row_contiguous) {
    dst.copy_shared_buffer(src);
    return true;
  }
  dst.set_data(mx::allocator::malloc(dst.nbytes()));
  buffer_copies.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void copy_into(const array& src, float* dst) {
  if (src.flags().row_contiguous)
    std::memcpy(dst, src.data<float>(), src.nbytes());
  else
    gather_rows(src, dst);
}

// Writes rows `0..B` of a step's keys (normed and rotated) and values into the layer's buffer
// `[slots, 2, kv_heads, head_dim]` (a slot's keys, then its values): one node per layer, so that
// MLX can donate the one buffer it replaces. Inputs: buffer, qkv, positions, write slots, inverse
// wavelengths[, k norm].
class KvWriteCpu : public mx::UnaryPrimitive {
 public:
  KvWriteCpu(mx::Stream s, DecodeAttentionSpec spec, int rows, bool norm)
      : UnaryPrimitive(s), sp_(spec), rows_(rows), norm_(norm) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    const bool copy = !donate(inputs[0], out);
    std::vector<array> outs{out};
    auto& enc = encoder(stream(), inputs, outs);
    enc.dispatch([in = weak(inputs), out = array::unsafe_weak_copy(out), sp = sp_, B = rows_, has_norm = norm_,
                  copy]() mutable {
      float* buf = out.data<float>();
      if (copy) copy_into(in[0], buf);
      std::vector<float> tx, tinv, tnorm;
      const float* x = float_rows(in[1], tx);
      const int C = in[1].shape(-1);
      const auto pos = ints(in[2]);
      const auto wr = ints(in[3]);
      Rotation rot(sp, float_rows(in[4], tinv));
      const float* norm = has_norm ? float_rows(in[5], tnorm) : nullptr;
      const int nh = sp.heads, nkv = sp.kv_heads, hd = sp.head_dim;
      const int64_t half = static_cast<int64_t>(nkv) * hd;
      const int64_t S = out.shape(0);
      for (int b = 0; b < B; ++b) {
        // A slot outside the buffer (never from the pool) is not written rather than corrupting
        // memory; this task cannot throw.
        if (wr[b] < 0 || wr[b] >= S) continue;
        const float* row = x + static_cast<int64_t>(b) * C;
        float* dst = buf + wr[b] * 2 * half;
        rot.at(pos[b]);
        for (int g = 0; g < nkv; ++g) rot.head(row + (nh + g) * hd, norm, sp.k_eps, dst + g * hd);
        std::memcpy(dst + half, row + (nh + nkv) * hd, sizeof(float) * half);
      }
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_kv_write] runs on the CPU only");
  }
  const char* name() const override { return "ZetaKvWrite"; }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override { return {inputs[0].shape()}; }

 private:
  DecodeAttentionSpec sp_;
  int rows_;
  bool norm_;
};

// The decode rows' attention over the written buffer. Inputs: qkv, buffer, positions, gather,
// lens, inverse wavelengths[, q norm][, sinks].
class DecodeAttentionCpu : public mx::UnaryPrimitive {
 public:
  DecodeAttentionCpu(mx::Stream s, DecodeAttentionSpec spec, bool q_norm, bool sinks)
      : UnaryPrimitive(s), sp_(spec), qn_(q_norm), sinks_(sinks) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    std::vector<array> outs{out};
    auto& enc = encoder(stream(), inputs, outs);
    enc.dispatch([in = weak(inputs), out = array::unsafe_weak_copy(out), sp = sp_, qn = qn_,
                  has_sinks = sinks_]() mutable {
      attend_rows(in, sp, qn, has_sinks, out.data<float>());
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[zeta_decode_attention] runs on the CPU only");
  }
  const char* name() const override { return "ZetaDecodeAttention"; }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    return {{static_cast<int>(inputs[4].size()), sp_.heads * sp_.head_dim}};
  }

 private:
  DecodeAttentionSpec sp_;
  bool qn_, sinks_;
};

}  // namespace

void require(bool ok, const std::string& op, const std::string& what) {
  if (!ok) throw std::invalid_argument("[" + op + "] " + what);
}

mx::Stream cpu_stream(mx::StreamOrDevice s, const std::string& op) {
  auto stream = mx::to_stream(s);
  require(stream.device == mx::Device::cpu, op, "runs on the CPU only");
  return stream;
}

array fused_rms_norm(const array& x, const array& w, float eps, mx::StreamOrDevice s) {
  auto stream = cpu_stream(s, "zeta_rms_norm");
  require(x.dtype() == mx::float32 && w.dtype() == mx::float32, "zeta_rms_norm", "takes float32");
  require(x.ndim() >= 1 && w.shape() == mx::Shape{x.shape(-1)}, "zeta_rms_norm",
          "weight must have the last axis' size");
  return array(x.shape(), mx::float32, std::make_shared<RmsNormCpu>(stream, eps, false), {x, w});
}

std::vector<array> fused_add_rms_norm(const array& x, const array& y, const array& w, float eps,
                                    mx::StreamOrDevice s) {
  auto stream = cpu_stream(s, "zeta_add_rms_norm");
  require(x.dtype() == mx::float32 && y.dtype() == mx::float32 && w.dtype() == mx::float32, "zeta_add_rms_norm",
          "takes float32");
  require(x.shape() == y.shape() && x.ndim() >= 1 && w.shape() == mx::Shape{x.shape(-1)}, "zeta_add_rms_norm",
          "x and y must have one shape and the weight its last axis' size");
  return array::make_arrays({x.shape(), x.shape()}, {mx::float32, mx::float32},
                            std::make_shared<RmsNormCpu>(stream, eps, true), {x, y, w});
}

array fused_gated_act(const array& gu, int act, mx::StreamOrDevice s) {
  auto stream = cpu_stream(s, "zeta_gated_act");
  require(gu.dtype() == mx::float32 && gu.ndim() >= 1 && gu.shape(-1) % 2 == 0, "zeta_gated_act",
          "takes float32 with an even last axis");
  require(act == 0 || act == 1, "zeta_gated_act", "activation must be 0 (SiLU) or 1 (GeLU tanh)");
  auto shape = gu.shape();
  shape.back() /= 2;
  return array(std::move(shape), mx::float32, std::make_shared<GatedActCpu>(stream, act), {gu});
}

DecodeAttentionNodes decode_attention_nodes(const array& qkv, const array& kv, const array& positions,
                                           const array& write, const array& gather, const array& lens,
                                           const array& inv_freqs, const array* q_norm, const array* k_norm,
                                           const array* sinks, const DecodeAttentionSpec& sp, mx::Stream stream) {
  const std::string op = "zeta_decode_attention";
  const int nh = sp.heads, nkv = sp.kv_heads, hd = sp.head_dim;
  require(nh > 0 && nkv > 0 && hd > 0 && nh % nkv == 0, op, "heads must be a multiple of kv heads");
  require(sp.rope_dims >= 0 && sp.rope_dims <= hd && sp.rope_dims % 2 == 0, op, "rope dims must be even, <= head dim");
  require(qkv.dtype() == mx::float32 && qkv.ndim() == 2 && qkv.shape(1) == (nh + 2 * nkv) * hd, op,
          "qkv must be float32 [rows, (heads + 2 kv_heads) * head_dim]");
  const mx::Shape buf{kv.ndim() == 4 ? kv.shape(0) : 0, 2, nkv, hd};
  require(kv.dtype() == mx::float32 && kv.shape() == buf, op, "the cache must be float32 [slots, 2, kv_heads, head_dim]");
  const int B = static_cast<int>(lens.size());
  require(B > 0 && B <= qkv.shape(0) && positions.size() >= static_cast<size_t>(B) &&
              write.size() >= static_cast<size_t>(B) && gather.size() % B == 0,
          op, "rows, positions, write slots and gather lists disagree");
  for (const array* a : {&positions, &write, &gather, &lens})
    require(a->dtype() == mx::int32 || a->dtype() == mx::uint32, op, "indices must be int32 or uint32");
  require(inv_freqs.dtype() == mx::float32 && inv_freqs.size() == static_cast<size_t>(sp.rope_dims / 2), op,
          "inverse wavelengths must be float32 [rope_dims / 2]");
  std::vector<array> in{kv, qkv, positions, write, inv_freqs};
  if (k_norm) {
    require(k_norm->dtype() == mx::float32 && k_norm->shape() == mx::Shape{hd}, op, "k norm weight must be float32 [head_dim]");
    in.push_back(*k_norm);
  }
  array written(kv.shape(), mx::float32, std::make_shared<KvWriteCpu>(stream, sp, B, k_norm != nullptr), std::move(in));
  std::vector<array> inputs{qkv, written, positions, gather, lens, inv_freqs};
  if (q_norm) {
    require(q_norm->dtype() == mx::float32 && q_norm->shape() == mx::Shape{hd}, op, "q norm weight must be float32 [head_dim]");
    inputs.push_back(*q_norm);
  }
  if (sinks) {
    require(sinks->dtype() == mx::float32 && sinks->shape() == mx::Shape{nh}, op, "sinks must be float32 [heads]");
    inputs.push_back(*sinks);
  }
  return {written, std::move(inputs), B};
}

std::vector<array> fused_decode_attention(const array& qkv, const array& kv, const array& positions,
                                        const array& write, const array& gather,
                                        const array& lens, const array& inv_freqs, const array* q_norm,
                                        const array* k_norm, const array* sinks, const DecodeAttentionSpec& sp,
                                        mx::StreamOrDevice s) {
  auto stream = cpu_stream(s, "zeta_decode_attention");
  auto nodes = decode_attention_nodes(qkv, kv, positions, write, gather, lens, inv_freqs, q_norm, k_norm, sinks, sp,
                                      stream);
  array o({nodes.rows, sp.heads * sp.head_dim}, mx::float32,
          std::make_shared<DecodeAttentionCpu>(stream, sp, q_norm != nullptr, sinks != nullptr), std::move(nodes.inputs));
  return {o, nodes.written};
}

uint64_t fused_attention_buffer_copies() { return buffer_copies.load(std::memory_order_relaxed); }

}  // namespace zeta_mlx
