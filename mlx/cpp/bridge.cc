// Glue between cxx and MLX's C++ API; see bridge.h.
#include "bridge.h"
#include "cpu_parallel.h"
#include "huge.h"
#include "qmm.h"

#include <cstring>
#include <dlfcn.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <stdexcept>
#include <unordered_set>

namespace mx = mlx::core;

#ifdef ZETA_CBLAS_SHIM
extern "C" const char* zeta_cblas_shim_name(void);
namespace {
// The shim only interposes `cblas_sgemm`; nothing else names it, so a linker with --as-needed
// (Rust's default) would drop it. A static initializer referring to it keeps it a dependency.
const void* volatile keep_shim = nullptr;
struct KeepShim {
  KeepShim() { keep_shim = reinterpret_cast<const void*>(&zeta_cblas_shim_name); }
} keep_shim_init;
}  // namespace

#if defined(__x86_64__) && defined(__linux__)
#include <cstdlib>
namespace {
// The shim's OpenBLAS (scipy-openblas, a DYNAMIC_ARCH build) is this process's own: MLX's
// float32 GEMM goes to it, nothing else does. It picks its kernels in its constructor, from
// OPENBLAS_CORETYPE when that is set, else from the CPU. An OPENBLAS_CORETYPE inherited from the
// environment is meant for other programs' OpenBLAS (the machine we test on sets Haswell for all),
// and Haswell's AVX2 kernels made our prefill 1.4x slower than the SkylakeX ones on its AVX-512
// Zen 5 (bench-engine, alternating: batch-1 prefill 572/628 -> 860/841 tok/s). So the daemon
// chooses: ZETA_OPENBLAS_CORETYPE if set, else SkylakeX where the CPU has AVX-512, else whatever
// OpenBLAS would choose. OpenBLAS's constructor runs before main; the executable's preinit array
// runs before any library's initializer, so the choice is made there (this object is linked into
// every executable that uses MLX), and the inherited entry is put back by a static initializer,
// which runs after every library's, so that the processes it starts (the peer a benchmark runs)
// see the environment they would have seen.
// The preinit array runs before libc's own initializer, when getenv and setenv do not yet work
// (libc then points `environ` at the stack's block), so the entry is swapped in that block:
// OPENBLAS_CORETYPE's own, else ZETA_OPENBLAS_CORETYPE's (without either, OpenBLAS's detection
// takes AVX-512 where the CPU has it).
char chosen_entry[64];
char** chosen_slot = nullptr;
char* replaced_entry = nullptr;

bool starts_with(const char* s, const char* prefix) {
  while (*prefix != '\0' && *s == *prefix) ++s, ++prefix;
  return *prefix == '\0';
}

void pick_openblas_core(int, char**, char** envp) {
  static const char kOpenblas[] = "OPENBLAS_CORETYPE=", kOurs[] = "ZETA_OPENBLAS_CORETYPE=";
  char** openblas = nullptr;
  char** ours = nullptr;
  for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
    if (starts_with(*e, kOpenblas)) openblas = e;
    if (starts_with(*e, kOurs)) ours = e;
  }
  const char* want = ours != nullptr ? *ours + sizeof kOurs - 1 : nullptr;
  if (want == nullptr) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd")) {
      want = "SkylakeX";
    }
  }
  char** slot = openblas != nullptr ? openblas : ours;
  if (want == nullptr || *want == '\0' || slot == nullptr) return;
  size_t n = 0;
  for (const char* p = kOpenblas; *p != '\0';) chosen_entry[n++] = *p++;
  for (const char* p = want; *p != '\0' && n + 1 < sizeof chosen_entry;) chosen_entry[n++] = *p++;
  chosen_entry[n] = '\0';
  replaced_entry = *slot;
  chosen_slot = slot;
  *slot = chosen_entry;
}
__attribute__((section(".preinit_array"), used)) void (*const pick_openblas_core_entry)(int, char**, char**) =
    &pick_openblas_core;

// Static initializers of the executable run after every library's (OpenBLAS's included).
struct RestoreCore {
  RestoreCore() {
    if (chosen_slot == nullptr) return;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      if (*e == chosen_entry) {
        *e = replaced_entry;
        break;
      }
    }
  }
} restore_core;
}  // namespace
#endif
#endif

namespace zeta_mlx {
namespace {

ArrayPtr own(array a) { return std::make_unique<array>(std::move(a)); }

mx::Shape to_shape(rust::Slice<const int32_t> s) { return mx::Shape(s.begin(), s.end()); }

std::vector<int> to_ints(rust::Slice<const int32_t> s) { return std::vector<int>(s.begin(), s.end()); }

// Codes shared with `mlx::Dtype` on the Rust side; keep both in the same order.
mx::Dtype to_dtype(uint8_t code) {
  switch (code) {
    case 0: return mx::bool_;
    case 1: return mx::uint8;
    case 2: return mx::uint16;
    case 3: return mx::uint32;
    case 4: return mx::uint64;
    case 5: return mx::int8;
    case 6: return mx::int16;
    case 7: return mx::int32;
    case 8: return mx::int64;
    case 9: return mx::float16;
    case 10: return mx::float32;
    case 11: return mx::float64;
    case 12: return mx::bfloat16;
    case 13: return mx::complex64;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(code));
}

uint8_t from_dtype(mx::Dtype d) {
  switch (d.val()) {
    case mx::Dtype::Val::bool_: return 0;
    case mx::Dtype::Val::uint8: return 1;
    case mx::Dtype::Val::uint16: return 2;
    case mx::Dtype::Val::uint32: return 3;
    case mx::Dtype::Val::uint64: return 4;
    case mx::Dtype::Val::int8: return 5;
    case mx::Dtype::Val::int16: return 6;
    case mx::Dtype::Val::int32: return 7;
    case mx::Dtype::Val::int64: return 8;
    case mx::Dtype::Val::float16: return 9;
    case mx::Dtype::Val::float32: return 10;
    case mx::Dtype::Val::float64: return 11;
    case mx::Dtype::Val::bfloat16: return 12;
    case mx::Dtype::Val::complex64: return 13;
  }
  return 255;
}

size_t element_count(rust::Slice<const int32_t> shape) {
  size_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
    n *= static_cast<size_t>(d);
  }
  return n;
}

template <typename T>
ArrayPtr from_data(rust::Slice<const T> data, rust::Slice<const int32_t> shape) {
  if (element_count(shape) != data.size()) {
    throw std::invalid_argument("data has " + std::to_string(data.size()) +
                                " elements but the shape holds " +
                                std::to_string(element_count(shape)));
  }
  return own(array(data.data(), to_shape(shape), mx::TypeToDtype<T>()));
}

template <typename T>
rust::Vec<T> read_back(const array& a) {
  array c = mx::contiguous(mx::astype(a, mx::TypeToDtype<T>()), /*allow_col_major=*/false);
  c = mx::flatten(c);
  c.eval();
  rust::Vec<T> out;
  out.reserve(c.size());
  const T* p = c.data<T>();
  for (size_t i = 0; i < c.size(); ++i) out.push_back(p[i]);
  return out;
}

}  // namespace

ArrayPtr from_f32(rust::Slice<const float> d, rust::Slice<const int32_t> s) { return from_data(d, s); }
ArrayPtr from_i32(rust::Slice<const int32_t> d, rust::Slice<const int32_t> s) { return from_data(d, s); }
ArrayPtr from_u32(rust::Slice<const uint32_t> d, rust::Slice<const int32_t> s) { return from_data(d, s); }
ArrayPtr from_bytes(rust::Slice<const uint8_t> d, rust::Slice<const int32_t> s, uint8_t dt) {
  auto dtype = to_dtype(dt);
  size_t n = element_count(s) * dtype.size();
  if (n != d.size()) {
    throw std::invalid_argument("data has " + std::to_string(d.size()) + " bytes but the shape holds " +
                                std::to_string(n));
  }
  auto data = mx::allocator::malloc(n);
  if (n > 0) std::memcpy(data.buffer().raw_ptr(), d.data(), n);
  return own(array(std::move(data), to_shape(s), dtype));
}
ArrayPtr scalar_f32(float v) { return own(array(v)); }
ArrayPtr scalar_i32(int32_t v) { return own(array(v)); }
ArrayPtr zeros(rust::Slice<const int32_t> s, uint8_t dt) { return own(mx::zeros(to_shape(s), to_dtype(dt))); }
ArrayPtr full_f32(rust::Slice<const int32_t> s, float v, uint8_t dt) {
  return own(mx::full(to_shape(s), array(v), to_dtype(dt)));
}
ArrayPtr arange_i32(int32_t start, int32_t stop) { return own(mx::arange(start, stop, 1)); }
ArrayPtr share(const array& a) { return own(a); }

size_t ndim(const array& a) { return a.ndim(); }
rust::Vec<int32_t> shape(const array& a) {
  rust::Vec<int32_t> out;
  for (auto d : a.shape()) out.push_back(d);
  return out;
}
uint8_t dtype(const array& a) { return from_dtype(a.dtype()); }
size_t size(const array& a) { return a.size(); }
size_t nbytes(const array& a) { return a.nbytes(); }
rust::Vec<float> to_f32(const array& a) { return read_back<float>(a); }
rust::Vec<int32_t> to_i32(const array& a) { return read_back<int32_t>(a); }
rust::Vec<uint32_t> to_u32(const array& a) { return read_back<uint32_t>(a); }

ArrayPtr add(const array& a, const array& b) { return own(mx::add(a, b)); }
ArrayPtr subtract(const array& a, const array& b) { return own(mx::subtract(a, b)); }
ArrayPtr multiply(const array& a, const array& b) { return own(mx::multiply(a, b)); }
ArrayPtr divide(const array& a, const array& b) { return own(mx::divide(a, b)); }
ArrayPtr maximum(const array& a, const array& b) { return own(mx::maximum(a, b)); }
ArrayPtr floor_divide(const array& a, const array& b) { return own(mx::floor_divide(a, b)); }
ArrayPtr minimum(const array& a, const array& b) { return own(mx::minimum(a, b)); }
ArrayPtr greater(const array& a, const array& b) { return own(mx::greater(a, b)); }
ArrayPtr less(const array& a, const array& b) { return own(mx::less(a, b)); }
ArrayPtr equal(const array& a, const array& b) { return own(mx::equal(a, b)); }
ArrayPtr greater_equal(const array& a, const array& b) { return own(mx::greater_equal(a, b)); }
ArrayPtr less_equal(const array& a, const array& b) { return own(mx::less_equal(a, b)); }
ArrayPtr logical_and(const array& a, const array& b) { return own(mx::logical_and(a, b)); }
ArrayPtr where_(const array& c, const array& a, const array& b) { return own(mx::where(c, a, b)); }
ArrayPtr exp(const array& a) { return own(mx::exp(a)); }
ArrayPtr log(const array& a) { return own(mx::log(a)); }
ArrayPtr sigmoid(const array& a) { return own(mx::sigmoid(a)); }
ArrayPtr silu(const array& a) { return own(mx::multiply(a, mx::sigmoid(a))); }
ArrayPtr tanh(const array& a) { return own(mx::tanh(a)); }
ArrayPtr cos(const array& a) { return own(mx::cos(a)); }
ArrayPtr sin(const array& a) { return own(mx::sin(a)); }
ArrayPtr erf(const array& a) { return own(mx::erf(a)); }
ArrayPtr sqrt(const array& a) { return own(mx::sqrt(a)); }
ArrayPtr rsqrt(const array& a) { return own(mx::rsqrt(a)); }
ArrayPtr square(const array& a) { return own(mx::square(a)); }
ArrayPtr negative(const array& a) { return own(mx::negative(a)); }
ArrayPtr astype(const array& a, uint8_t dt) { return own(mx::astype(a, to_dtype(dt))); }

ArrayPtr reshape(const array& a, rust::Slice<const int32_t> s) { return own(mx::reshape(a, to_shape(s))); }
ArrayPtr transpose(const array& a, rust::Slice<const int32_t> axes) {
  return own(mx::transpose(a, to_ints(axes)));
}
ArrayPtr swapaxes(const array& a, int32_t a1, int32_t a2) { return own(mx::swapaxes(a, a1, a2)); }
ArrayPtr expand_dims(const array& a, int32_t axis) { return own(mx::expand_dims(a, axis)); }
ArrayPtr squeeze(const array& a, int32_t axis) { return own(mx::squeeze(a, axis)); }
ArrayPtr slice(const array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop,
               rust::Slice<const int32_t> strides) {
  return own(mx::slice(a, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr slice_update(const array& src, const array& upd, rust::Slice<const int32_t> start,
                      rust::Slice<const int32_t> stop) {
  return own(mx::slice_update(src, upd, to_shape(start), to_shape(stop)));
}
ArrayPtr take(const array& a, const array& idx, int32_t axis) { return own(mx::take(a, idx, axis)); }
ArrayPtr take_along_axis(const array& a, const array& idx, int32_t axis) {
  return own(mx::take_along_axis(a, idx, axis));
}
ArrayPtr scatter(const array& a, const array& idx, const array& upd, int32_t axis) {
  return own(mx::scatter(a, idx, upd, axis));
}
ArrayPtr scatter_add(const array& a, const array& idx, const array& upd, int32_t axis) {
  return own(mx::scatter_add(a, idx, upd, axis));
}
ArrayPtr concatenate(const ArrayList& l, int32_t axis) { return own(mx::concatenate(l.items, axis)); }
ArrayPtr stack(const ArrayList& l, int32_t axis) { return own(mx::stack(l.items, axis)); }
ArrayPtr contiguous(const array& a) { return own(mx::contiguous(a)); }

ArrayPtr sum(const array& a, int32_t axis, bool k) { return own(mx::sum(a, axis, k)); }
ArrayPtr max(const array& a, int32_t axis, bool k) { return own(mx::max(a, axis, k)); }
ArrayPtr mean(const array& a, int32_t axis, bool k) { return own(mx::mean(a, axis, k)); }
ArrayPtr argmax(const array& a, int32_t axis, bool k) { return own(mx::argmax(a, axis, k)); }
ArrayPtr logsumexp(const array& a, int32_t axis, bool k) { return own(mx::logsumexp(a, axis, k)); }
ArrayPtr softmax(const array& a, int32_t axis, bool precise) { return own(mx::softmax(a, axis, precise)); }
ArrayPtr topk(const array& a, int32_t k, int32_t axis) { return own(mx::topk(a, k, axis)); }
ArrayPtr argpartition(const array& a, int32_t kth, int32_t axis) {
  return own(mx::argpartition(a, kth, axis));
}
ArrayPtr argsort(const array& a, int32_t axis) { return own(mx::argsort(a, axis)); }
ArrayPtr cumsum(const array& a, int32_t axis, bool reverse, bool inclusive) {
  return own(mx::cumsum(a, axis, reverse, inclusive));
}

ArrayPtr matmul(const array& a, const array& b) { return own(mx::matmul(a, b)); }
static std::optional<array> maybe(const array& a, bool present) {
  return present ? std::optional<array>(a) : std::nullopt;
}
ArrayPtr quantized_matmul(const array& x, const array& w, const array& scales, const array& biases,
                          bool has_biases, bool transpose, int32_t group_size, int32_t bits,
                          rust::Str mode, bool cpu_kernel) {
  const std::string m(mode);
  if (cpu_kernel && has_biases && cpu_qmm_applies(x, group_size, bits, m, transpose)) {
    return own(cpu_affine_qmm(x, w, scales, biases, group_size, bits));
  }
  if (cpu_kernel && has_biases && cpu_qmm_wants_gemm(x, group_size, bits, m, transpose)) {
    return own(cpu_dequantized_gemm(x, w, scales, biases, group_size, bits));
  }
  return own(mx::quantized_matmul(x, w, scales, maybe(biases, has_biases), transpose, group_size, bits, m));
}
ArrayPtr gather_mm(const array& a, const array& b, const array& rhs_indices, bool sorted_indices) {
  return own(mx::gather_mm(a, b, std::nullopt, rhs_indices, sorted_indices));
}
ArrayPtr gather_qmm(const array& x, const array& w, const array& scales, const array& biases,
                    bool has_biases, const array& rhs_indices, int32_t group_size, int32_t bits,
                    rust::Str mode, bool sorted_indices) {
  return own(mx::gather_qmm(x, w, scales, maybe(biases, has_biases), std::nullopt, rhs_indices, true,
                            group_size, bits, std::string(mode), std::nullopt, sorted_indices));
}
std::unique_ptr<ArrayList> quantize(const array& w, int32_t group_size, int32_t bits) {
  auto out = std::make_unique<ArrayList>();
  out->items = mx::quantize(w, group_size, bits, "affine");
  return out;
}
ArrayPtr dequantize(const array& w, const array& scales, const array& biases, bool has_biases,
                    int32_t group_size, int32_t bits, rust::Str mode, uint8_t dt) {
  return own(mx::dequantize(w, scales, maybe(biases, has_biases), group_size, bits, std::string(mode),
                            std::nullopt, to_dtype(dt)));
}

ArrayPtr cpu_rms_norm(const array& x, const array& w, float eps) { return own(fused_rms_norm(x, w, eps)); }
std::unique_ptr<ArrayList> cpu_add_rms_norm(const array& x, const array& y, const array& w, float eps) {
  auto out = std::make_unique<ArrayList>();
  out->items = fused_add_rms_norm(x, y, w, eps);
  return out;
}
ArrayPtr cpu_gated_act(const array& gu, int32_t act) { return own(fused_gated_act(gu, act)); }
ArrayPtr cpu_argmax(const array& x) { return own(fused_argmax(x)); }

namespace {

// The decode attention's arguments as the bridge passes them. `inputs`: qkv, kv, positions,
// write, gather, lens, inverse wavelengths, then the q norm, k norm and sinks that `ints` says are
// present. `ints`: heads, kv heads, head dim, rope dims, traditional, window, has q norm, has k
// norm, has sinks. `floats`: position scale, mscale, score scale, q eps, k eps. Whatever follows
// belongs to the caller; `used` says where it starts in each list.
struct AttentionArgs {
  DecodeAttentionSpec sp;
  const array* q_norm;
  const array* k_norm;
  const array* sinks;
  size_t used;
};

AttentionArgs attention_args(const std::vector<array>& in, rust::Slice<const int32_t> ints,
                             rust::Slice<const float> floats, const char* op) {
  if (ints.size() < 9 || floats.size() < 5) throw std::invalid_argument(std::string("[") + op + "] bad parameters");
  const size_t extra = static_cast<size_t>(ints[6] != 0) + (ints[7] != 0) + (ints[8] != 0);
  if (in.size() < 7 + extra) throw std::invalid_argument(std::string("[") + op + "] wrong number of inputs");
  DecodeAttentionSpec sp{ints[0], ints[1],   ints[2],   ints[3],   ints[4] != 0, floats[0],
                         floats[1], floats[2], ints[5], floats[3], floats[4]};
  size_t next = 7;
  const array* qn = ints[6] ? &in[next++] : nullptr;
  const array* kn = ints[7] ? &in[next++] : nullptr;
  const array* sinks = ints[8] ? &in[next++] : nullptr;
  return {sp, qn, kn, sinks, next};
}

// Three inputs from `i` on, with the group size and bits at `ints[j]` and `ints[j + 1]`.
PackedWeight packed_at(const std::vector<array>& in, size_t i, rust::Slice<const int32_t> ints, size_t j) {
  return {in[i], in[i + 1], in[i + 2], ints[j], ints[j + 1]};
}

}  // namespace

std::unique_ptr<ArrayList> cpu_decode_attention(const ArrayList& inputs, rust::Slice<const int32_t> ints,
                                                rust::Slice<const float> floats) {
  const auto& in = inputs.items;
  auto a = attention_args(in, ints, floats, "zeta_decode_attention");
  if (in.size() != a.used || ints.size() != 9 || floats.size() != 5)
    throw std::invalid_argument("[zeta_decode_attention] wrong number of inputs");
  auto out = std::make_unique<ArrayList>();
  out->items = fused_decode_attention(in[0], in[1], in[2], in[3], in[4], in[5], in[6], a.q_norm, a.k_norm, a.sinks, a.sp);
  return out;
}

// `inputs`: the attention's (as `cpu_decode_attention`), then x, the post-attention norm weight,
// and weight, scales and offsets of the output, gate/up and down products. `ints`: the
// attention's, then group size and bits of the three products, then the activation. `floats`:
// the attention's, then the norm's epsilon.
std::unique_ptr<ArrayList> cpu_decode_layer(const ArrayList& inputs, rust::Slice<const int32_t> ints,
                                            rust::Slice<const float> floats) {
  const auto& in = inputs.items;
  auto a = attention_args(in, ints, floats, "zeta_decode_layer");
  const size_t i = a.used;
  if (in.size() != i + 11 || ints.size() != 16 || floats.size() != 6)
    throw std::invalid_argument("[zeta_decode_layer] wrong number of inputs");
  auto out = std::make_unique<ArrayList>();
  out->items = fused_decode_layer(in[0], in[1], in[2], in[3], in[4], in[5], in[6], a.q_norm, a.k_norm, a.sinks, a.sp,
                                  in[i], in[i + 1], floats[5], packed_at(in, i + 2, ints, 9),
                                  packed_at(in, i + 5, ints, 11), packed_at(in, i + 8, ints, 13), ints[15]);
  return out;
}

// `inputs`: x[, m], norm weight, weight, scales, offsets; `ints`: has m, group size, bits;
// `floats`: epsilon.
std::unique_ptr<ArrayList> cpu_norm_product(const ArrayList& inputs, rust::Slice<const int32_t> ints,
                                            rust::Slice<const float> floats) {
  const auto& in = inputs.items;
  if (ints.size() != 3 || floats.size() != 1 || in.size() != static_cast<size_t>(ints[0] != 0 ? 6 : 5))
    throw std::invalid_argument("[zeta_norm_product] wrong number of inputs");
  const size_t k = ints[0] != 0 ? 2 : 1;
  auto out = std::make_unique<ArrayList>();
  out->items = fused_norm_product(in[0], k == 2 ? &in[1] : nullptr, in[k], floats[0], packed_at(in, k + 1, ints, 1));
  return out;
}

uint64_t cpu_attention_buffer_copies() { return fused_attention_buffer_copies(); }

ArrayPtr rms_norm(const array& x, const array& w, float eps) { return own(mx::fast::rms_norm(x, w, eps)); }
ArrayPtr layer_norm(const array& x, const array& w, const array& b, float eps) {
  return own(mx::fast::layer_norm(x, w, b, eps));
}
ArrayPtr rope(const array& x, int32_t dims, bool traditional, float base, float scale,
              int32_t offset) {
  return own(mx::fast::rope(x, dims, traditional, base, scale, offset));
}
ArrayPtr rope_freqs(const array& x, int32_t dims, bool traditional, float scale, int32_t offset,
                    const array& freqs) {
  return own(mx::fast::rope(x, dims, traditional, std::nullopt, scale, offset, freqs));
}
ArrayPtr rope_rows(const array& x, int32_t dims, bool traditional, float base, float scale,
                   const array& offsets) {
  return own(mx::fast::rope(x, dims, traditional, base, scale, offsets));
}
ArrayPtr rope_rows_freqs(const array& x, int32_t dims, bool traditional, float scale,
                         const array& offsets, const array& freqs) {
  return own(mx::fast::rope(x, dims, traditional, std::nullopt, scale, offsets, freqs));
}
ArrayPtr sdpa(const array& q, const array& k, const array& v, float scale, rust::Str mask_mode) {
  return own(mx::fast::scaled_dot_product_attention(q, k, v, scale, std::string(mask_mode)));
}
ArrayPtr sdpa_sinks(const array& q, const array& k, const array& v, float scale,
                    rust::Str mask_mode, const array& mask, bool use_mask, const array& sinks) {
  if (use_mask) {
    return own(mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask, sinks));
  }
  return own(mx::fast::scaled_dot_product_attention(q, k, v, scale, std::string(mask_mode), std::nullopt, sinks));
}
ArrayPtr sdpa_masked(const array& q, const array& k, const array& v, float scale,
                     const array& mask) {
  return own(mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask));
}

ArrayPtr random_key(uint64_t seed) { return own(mx::random::key(seed)); }
ArrayPtr categorical(const array& logits, int32_t axis, const array& key) {
  return own(mx::random::categorical(logits, axis, key));
}

std::unique_ptr<ArrayList> new_list() { return std::make_unique<ArrayList>(); }
void list_push(ArrayList& l, const array& a) { l.items.push_back(a); }
size_t list_len(const ArrayList& l) { return l.items.size(); }
ArrayPtr list_get(const ArrayList& l, size_t i) { return own(l.items.at(i)); }
void eval(const ArrayList& l) { mx::eval(l.items); }
void async_eval(const ArrayList& l) { mx::async_eval(l.items); }
void eval_one(const array& a) { mx::eval({a}); }
// Operations (nodes) evaluating `outputs` would run: arrays not yet computed, each
// multi-output operation once.
size_t graph_nodes(const ArrayList& outputs) {
  std::unordered_set<std::uintptr_t> seen;
  std::vector<array> stack(outputs.items);
  size_t n = 0;
  while (!stack.empty()) {
    array a = stack.back();
    stack.pop_back();
    if (!seen.insert(a.id()).second || a.is_available() || !a.has_primitive()) continue;
    ++n;
    for (const auto& s : a.siblings()) seen.insert(s.id());
    for (const auto& i : a.inputs()) stack.push_back(i);
  }
  return n;
}

void synchronize() { mx::synchronize(); }

std::unique_ptr<Safetensors> load_safetensors(rust::Str path) {
  auto [w, m] = mx::load_safetensors(std::string(path));
  auto out = std::make_unique<Safetensors>();
  out->weights = std::move(w);
  out->metadata = std::move(m);
  return out;
}
rust::Vec<rust::String> safetensors_keys(const Safetensors& st) {
  rust::Vec<rust::String> out;
  for (const auto& [k, _] : st.weights) out.push_back(rust::String::lossy(k));
  return out;
}
ArrayPtr safetensors_take(Safetensors& st, rust::Str key) {
  auto it = st.weights.find(std::string(key));
  if (it == st.weights.end()) throw std::out_of_range("no tensor named " + std::string(key));
  auto a = own(std::move(it->second));
  st.weights.erase(it);
  return a;
}
rust::Vec<rust::String> safetensors_metadata(const Safetensors& st) {
  rust::Vec<rust::String> out;
  for (const auto& [k, v] : st.metadata) {
    out.push_back(rust::String::lossy(k));
    out.push_back(rust::String::lossy(v));
  }
  return out;
}
void save_safetensors(rust::Str path, const rust::Vec<rust::String>& names, const ArrayList& arrays) {
  if (names.size() != arrays.items.size()) throw std::invalid_argument("names and arrays differ in length");
  std::unordered_map<std::string, array> m;
  for (size_t i = 0; i < names.size(); ++i) m.insert_or_assign(std::string(names[i]), arrays.items[i]);
  mx::save_safetensors(std::string(path), std::move(m));
}

std::unique_ptr<Gguf> load_gguf(rust::Str path) {
  auto out = std::make_unique<Gguf>();
  out->weights = std::get<0>(mx::load_gguf(std::string(path)));
  return out;
}
rust::Vec<rust::String> gguf_tensor_keys(const Gguf& g) {
  rust::Vec<rust::String> out;
  for (const auto& [k, _] : g.weights) out.push_back(rust::String::lossy(k));
  return out;
}
ArrayPtr gguf_take(Gguf& g, rust::Str key) {
  auto it = g.weights.find(std::string(key));
  if (it == g.weights.end()) throw std::out_of_range("no tensor named " + std::string(key));
  auto a = own(std::move(it->second));
  g.weights.erase(it);
  return a;
}

rust::String version() { return rust::String(mx::version()); }
bool gpu_available() { return mx::is_available(mx::Device::gpu); }
void use_gpu(bool gpu) {
  if (gpu && !mx::is_available(mx::Device::gpu)) throw std::runtime_error("this MLX build has no GPU backend");
  mx::set_default_device(gpu ? mx::Device(mx::Device::gpu) : mx::Device(mx::Device::cpu));
}
bool default_device_is_gpu() { return mx::default_device() == mx::Device::gpu; }
// A thread that evaluates gets default streams of its own, and MLX keeps each stream's
// scheduler thread for the life of the process: an engine thread per loaded model would leave
// one behind at every unload. So engine threads borrow streams that any thread may use (one at
// a time) from this pool, and give them back when they end.
namespace {
std::mutex stream_pool_mtx;
std::vector<mx::Stream> free_streams;
thread_local std::vector<mx::Stream> borrowed_streams;

mx::Stream borrow_stream(mx::Device d) {
  std::lock_guard<std::mutex> lk(stream_pool_mtx);
  for (auto it = free_streams.begin(); it != free_streams.end(); ++it) {
    if (it->device == d) {
      auto s = *it;
      free_streams.erase(it);
      return s;
    }
  }
  return mx::new_thread_unsafe_stream(d);
}
}  // namespace

void borrow_thread_streams() {
  if (!borrowed_streams.empty()) return;
  std::vector<mx::Device> devices{mx::Device(mx::Device::cpu)};
  if (mx::is_available(mx::Device::gpu)) devices.push_back(mx::Device(mx::Device::gpu));
  for (auto& d : devices) {
    auto s = borrow_stream(d);
    mx::set_default_stream(s);
    borrowed_streams.push_back(s);
  }
}

void return_thread_streams() {
  for (auto& s : borrowed_streams) mx::synchronize(s);
  std::lock_guard<std::mutex> lk(stream_pool_mtx);
  for (auto& s : borrowed_streams) free_streams.push_back(s);
  borrowed_streams.clear();
}
// With the weights `pin_huge` moved out of MLX's allocator, which no longer counts them. The
// peak adds the two peaks: an upper bound, as they need not have come at the same moment.
size_t active_memory() { return mx::get_active_memory() + huge_bytes(); }
size_t peak_memory() { return mx::get_peak_memory() + huge_peak_bytes(); }
ArrayPtr cpu_pin_huge(const array& a) { return own(pin_huge(a)); }
size_t cpu_pinned_bytes() { return huge_bytes(); }
void reset_peak_memory() {
  mx::reset_peak_memory();
  reset_huge_peak();
}
size_t cache_memory() { return mx::get_cache_memory(); }
// MLX's cache goes back to the C allocator, and glibc's free heap pages back to the system: a
// freed tensor below glibc's mmap threshold (which rises to 32 MB as large blocks are freed) would
// otherwise stay resident (the loader's copies of the weights into 2 MB pages, an unloaded model).
void clear_cache() {
  mx::clear_cache();
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}
size_t set_cache_limit(size_t limit) { return mx::set_cache_limit(limit); }
size_t set_memory_limit(size_t limit) { return mx::set_memory_limit(limit); }

rust::String cpu_kernels() {
  switch (cpu_isa()) {
    case Isa::avx512_vnni: return rust::String("avx512-vnni");
    case Isa::avx512: return rust::String("avx512");
    case Isa::avx2: return rust::String("avx2");
    case Isa::neon_dot: return rust::String("neon-dotprod");
    case Isa::neon: return rust::String("neon");
    case Isa::portable: break;
  }
  return rust::String("portable");
}

rust::String blas_backend() {
  // Which library the loader bound `cblas_sgemm` to: the OpenBLAS shim, Accelerate, or the
  // reference BLAS bundled with the mlx-cpu wheel.
#ifdef ZETA_CBLAS_SHIM
  (void)zeta_cblas_shim_name();
#endif
  void* sym = dlsym(RTLD_DEFAULT, "cblas_sgemm");
  Dl_info info{};
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return rust::String("unknown");
  std::string name = info.dli_fname;
#ifdef ZETA_CBLAS_SHIM
  if (name.find("libzeta_cblas") != std::string::npos) name += std::string(" (") + zeta_cblas_shim_name() + ")";
#endif
  return rust::String::lossy(name);
}

}  // namespace zeta_mlx
