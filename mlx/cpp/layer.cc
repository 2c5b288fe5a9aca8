// Whole-layer CPU nodes for decode steps (see fused.h): a decoder layer's decode rows as three MLX
// nodes (norm + q/k/v product, the cache write, and the rest of the layer), where the separate
// fused nodes take nine.
//
// Why: with the weights read near memory bandwidth, a SmolLM2 batch-1 decode step spent about a
// third of its time between nodes: the engine building 274 of them, MLX dispatching each to its
// worker, the pool waking for each. The arithmetic is the separate nodes' own (fused_rows.h and
// `packed_product`), called in the same order on the same rows, so a layer node gives their bits.
//
// The cache write stays a node of its own: it takes over the cache's buffer, which MLX allows only
// to a node with one output.

#include <algorithm>
#include <array>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_parallel.h"
#include "fused.h"
#include "fused_rows.h"
#include "mlx/primitives.h"
#include "qmm.h"

namespace zeta_mlx {

namespace mx = mlx::core;
using mx::array;

namespace {

// The intermediate rows of a node's task (at most 32 rows of a layer's widths), kept per thread:
// a decode step runs ~60 of these tasks, one after another on MLX's worker.
float* scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// `[sum,] norm(x (+ m)) @ W.T`. Inputs: x[, m], norm weight, w, scales, biases.
class NormProduct : public mx::Primitive {
 public:
  NormProduct(mx::Stream s, float eps, bool residual, int group_size, int bits)
      : Primitive(s), eps_(eps), residual_(residual), gs_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
    auto& enc = encoder(stream(), inputs, outputs);
    enc.dispatch([in = weak(inputs), out = weak(outputs), eps = eps_, residual = residual_, gs = gs_,
                  bits = bits_]() mutable {
      const int D = in[0].shape(-1);
      const size_t n = in[0].size() / std::max(D, 1);
      const size_t k = residual ? 2 : 1;
      std::vector<float> tx, ty, tw;
      float* h = scratch(n * D);
      rms_rows(float_rows(in[0], tx), residual ? float_rows(in[1], ty) : nullptr, float_rows(in[k], tw), eps, n, D,
               residual ? out[0].data<float>() : nullptr, h);
      array& y = out.back();
      packed_product(h, static_cast<int>(n), D, in[k + 1], in[k + 2], in[k + 3], gs, bits, y.data<float>(),
                     y.shape(-1));
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[zeta_norm_product] runs on the CPU only");
  }
  const char* name() const override { return "ZetaNormProduct"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const NormProduct*>(&other);
    return o && o->eps_ == eps_ && o->residual_ == residual_ && o->gs_ == gs_ && o->bits_ == bits_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    auto y = inputs[0].shape();
    y.back() = inputs[residual_ ? 3 : 2].shape(0);
    if (residual_) return {inputs[0].shape(), y};
    return {y};
  }

 private:
  float eps_;
  bool residual_;
  int gs_, bits_;
};

// Inputs before the attention's (fused_rows.h): x, post norm, then w, scales, biases of the
// output, gate/up and down products.
constexpr size_t kTailInputs = 11;

// After the cache write: attention, output product, residual add, norm, gate/up product, gated
// activation, down product. Outputs: x + attention, the MLP's output.
class DecodeLayerTail : public mx::Primitive {
 public:
  DecodeLayerTail(mx::Stream s, DecodeAttentionSpec spec, bool q_norm, bool sinks, float post_eps,
                  std::array<int, 6> formats, int act)
      : Primitive(s), sp_(spec), qn_(q_norm), sinks_(sinks), eps_(post_eps), fmt_(formats), act_(act) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
    auto& enc = encoder(stream(), inputs, outputs);
    enc.dispatch([in = weak(inputs), out = weak(outputs), sp = sp_, qn = qn_, sinks = sinks_, eps = eps_, f = fmt_,
                  act = act_]() mutable {
      const int B = out[0].shape(0), D = out[0].shape(1);
      const int A = sp.heads * sp.head_dim, G = in[5].shape(0), I = G / 2;
      const size_t b = static_cast<size_t>(B);
      float* a = scratch(b * (A + 2 * D + G + I));
      float *o = a + b * A, *h = o + b * D, *gu = h + b * D, *g = gu + b * G;
      std::vector<float> tx, tw;
      attend_rows(std::span<const array>(in).subspan(kTailInputs), sp, qn, sinks, a);
      packed_product(a, B, A, in[2], in[3], in[4], f[0], f[1], o, D);
      rms_rows(float_rows(in[0], tx), o, float_rows(in[1], tw), eps, b, D, out[0].data<float>(), h);
      packed_product(h, B, D, in[5], in[6], in[7], f[2], f[3], gu, G);
      gated_rows(gu, b, I, act, g);
      packed_product(g, B, I, in[8], in[9], in[10], f[4], f[5], out[1].data<float>(), D);
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[zeta_decode_layer] runs on the CPU only");
  }
  const char* name() const override { return "ZetaDecodeLayer"; }
  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape(), inputs[0].shape()};
  }

 private:
  DecodeAttentionSpec sp_;
  bool qn_, sinks_;
  float eps_;
  std::array<int, 6> fmt_;  // group size and bits of the output, gate/up and down products
  int act_;
};

}  // namespace

std::vector<array> fused_norm_product(const array& x, const array* m, const array& norm, float eps,
                                      const PackedWeight& p, mx::StreamOrDevice s) {
  const std::string op = "zeta_norm_product";
  auto stream = cpu_stream(s, op);
  require(x.dtype() == mx::float32 && x.ndim() >= 1 && (!m || (m->dtype() == mx::float32 && m->shape() == x.shape())),
          op, "x (and m) must be float32 of one shape");
  const int D = x.shape(-1);
  require(norm.dtype() == mx::float32 && norm.shape() == mx::Shape{D}, op, "the norm weight must be float32 [hidden]");
  require(x.size() / std::max(D, 1) <= static_cast<size_t>(cpu_qmm_max_rows()), op,
          "takes at most " + std::to_string(cpu_qmm_max_rows()) + " rows");
  auto y = x.shape();
  y.back() = packed_outputs(p.w, p.scales, p.biases, p.group_size, p.bits, D);
  auto prim = std::make_shared<NormProduct>(stream, eps, m != nullptr, p.group_size, p.bits);
  if (m) return array::make_arrays({x.shape(), y}, {mx::float32, mx::float32}, prim, {x, *m, norm, p.w, p.scales, p.biases});
  return {array(std::move(y), mx::float32, prim, {x, norm, p.w, p.scales, p.biases})};
}

std::vector<array> fused_decode_layer(const array& qkv, const array& kv, const array& positions, const array& write,
                                      const array& gather, const array& lens, const array& inv_freqs,
                                      const array* q_norm, const array* k_norm, const array* sinks,
                                      const DecodeAttentionSpec& sp, const array& x, const array& post_norm,
                                      float post_eps, const PackedWeight& o, const PackedWeight& gate_up,
                                      const PackedWeight& down, int act, mx::StreamOrDevice s) {
  const std::string op = "zeta_decode_layer";
  auto stream = cpu_stream(s, op);
  auto nodes =
      decode_attention_nodes(qkv, kv, positions, write, gather, lens, inv_freqs, q_norm, k_norm, sinks, sp, stream);
  const int B = nodes.rows;
  require(qkv.shape(0) == B && B <= cpu_qmm_max_rows(), op,
          "the step must be its decode rows alone, at most " + std::to_string(cpu_qmm_max_rows()));
  require(x.dtype() == mx::float32 && x.ndim() == 2 && x.shape(0) == B, op, "x must be float32 [rows, hidden]");
  const int D = x.shape(1);
  require(post_norm.dtype() == mx::float32 && post_norm.shape() == mx::Shape{D}, op,
          "the post-attention norm weight must be float32 [hidden]");
  require(act == 0 || act == 1, op, "activation must be 0 (SiLU) or 1 (GeLU tanh)");
  const auto outputs = [](const PackedWeight& p, int K) {
    return packed_outputs(p.w, p.scales, p.biases, p.group_size, p.bits, K);
  };
  require(outputs(o, sp.heads * sp.head_dim) == D, op, "the output product must give [rows, hidden]");
  const int G = outputs(gate_up, D);
  require(G % 2 == 0 && outputs(down, G / 2) == D, op, "gate/up must give [rows, 2 I] and down take I to hidden");
  std::vector<array> inputs{x,         post_norm,      o.w,     o.scales,    o.biases,     gate_up.w,
                            gate_up.scales, gate_up.biases, down.w, down.scales, down.biases};
  inputs.insert(inputs.end(), nodes.inputs.begin(), nodes.inputs.end());
  std::array<int, 6> formats{o.group_size, o.bits, gate_up.group_size, gate_up.bits, down.group_size, down.bits};
  auto outs = array::make_arrays(
      {x.shape(), x.shape()}, {mx::float32, mx::float32},
      std::make_shared<DecodeLayerTail>(stream, sp, q_norm != nullptr, sinks != nullptr, post_eps, formats, act),
      std::move(inputs));
  return {outs[0], outs[1], nodes.written};
}

}  // namespace zeta_mlx
