// The C++ half of the cxx bridge to MLX. Every function here is small glue: it turns cxx's slice
// and string types into MLX's, calls one MLX operation, and hands back an owned array. Errors are
// C++ exceptions, which cxx turns into Rust `Err` values because every Rust declaration returns
// `Result`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlx/mlx.h"
#include "fused.h"
#include "qmm.h"
#include "rust/cxx.h"

namespace zeta_mlx {

using mlx::core::array;
using ArrayPtr = std::unique_ptr<array>;

/// A list of arrays, for the operations that take or return several.
struct ArrayList {
  std::vector<array> items;
};

/// The tensors and string metadata of one safetensors file.
struct Safetensors {
  std::unordered_map<std::string, array> weights;
  std::unordered_map<std::string, std::string> metadata;
};

/// The tensors of one GGUF file as MLX's loader reads them, for the tensor types that only it
/// dequantizes (the K-quants); the Rust side reads the header and every other type itself.
struct Gguf {
  std::unordered_map<std::string, array> weights;
};

// Construction
ArrayPtr from_f32(rust::Slice<const float> data, rust::Slice<const int32_t> shape);
ArrayPtr from_i32(rust::Slice<const int32_t> data, rust::Slice<const int32_t> shape);
ArrayPtr from_u32(rust::Slice<const uint32_t> data, rust::Slice<const int32_t> shape);
ArrayPtr from_bytes(rust::Slice<const uint8_t> data, rust::Slice<const int32_t> shape, uint8_t dtype);
ArrayPtr scalar_f32(float v);
ArrayPtr scalar_i32(int32_t v);
ArrayPtr zeros(rust::Slice<const int32_t> shape, uint8_t dtype);
ArrayPtr full_f32(rust::Slice<const int32_t> shape, float v, uint8_t dtype);
ArrayPtr arange_i32(int32_t start, int32_t stop);
ArrayPtr share(const array& a);

// Introspection and read-back
size_t ndim(const array& a);
rust::Vec<int32_t> shape(const array& a);
uint8_t dtype(const array& a);
size_t size(const array& a);
size_t nbytes(const array& a);
rust::Vec<float> to_f32(const array& a);
rust::Vec<int32_t> to_i32(const array& a);
rust::Vec<uint32_t> to_u32(const array& a);

// Element-wise
ArrayPtr add(const array& a, const array& b);
ArrayPtr subtract(const array& a, const array& b);
ArrayPtr multiply(const array& a, const array& b);
ArrayPtr divide(const array& a, const array& b);
ArrayPtr maximum(const array& a, const array& b);
ArrayPtr floor_divide(const array& a, const array& b);
ArrayPtr minimum(const array& a, const array& b);
ArrayPtr greater(const array& a, const array& b);
ArrayPtr less(const array& a, const array& b);
ArrayPtr equal(const array& a, const array& b);
ArrayPtr greater_equal(const array& a, const array& b);
ArrayPtr less_equal(const array& a, const array& b);
ArrayPtr logical_and(const array& a, const array& b);
ArrayPtr where_(const array& cond, const array& a, const array& b);
ArrayPtr exp(const array& a);
ArrayPtr log(const array& a);
ArrayPtr sigmoid(const array& a);
ArrayPtr silu(const array& a);
ArrayPtr tanh(const array& a);
ArrayPtr cos(const array& a);
ArrayPtr sin(const array& a);
ArrayPtr erf(const array& a);
ArrayPtr sqrt(const array& a);
ArrayPtr rsqrt(const array& a);
ArrayPtr square(const array& a);
ArrayPtr negative(const array& a);
ArrayPtr astype(const array& a, uint8_t dtype);

// Shape and indexing
ArrayPtr reshape(const array& a, rust::Slice<const int32_t> shape);
ArrayPtr transpose(const array& a, rust::Slice<const int32_t> axes);
ArrayPtr swapaxes(const array& a, int32_t a1, int32_t a2);
ArrayPtr expand_dims(const array& a, int32_t axis);
ArrayPtr squeeze(const array& a, int32_t axis);
ArrayPtr slice(const array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop,
               rust::Slice<const int32_t> strides);
ArrayPtr slice_update(const array& src, const array& update, rust::Slice<const int32_t> start,
                      rust::Slice<const int32_t> stop);
ArrayPtr take(const array& a, const array& indices, int32_t axis);
ArrayPtr take_along_axis(const array& a, const array& indices, int32_t axis);
ArrayPtr scatter(const array& a, const array& indices, const array& updates, int32_t axis);
ArrayPtr scatter_add(const array& a, const array& indices, const array& updates, int32_t axis);
ArrayPtr concatenate(const ArrayList& list, int32_t axis);
ArrayPtr stack(const ArrayList& list, int32_t axis);
ArrayPtr contiguous(const array& a);

// Reductions
ArrayPtr sum(const array& a, int32_t axis, bool keepdims);
ArrayPtr max(const array& a, int32_t axis, bool keepdims);
ArrayPtr mean(const array& a, int32_t axis, bool keepdims);
ArrayPtr argmax(const array& a, int32_t axis, bool keepdims);
ArrayPtr logsumexp(const array& a, int32_t axis, bool keepdims);
ArrayPtr softmax(const array& a, int32_t axis, bool precise);
ArrayPtr topk(const array& a, int32_t k, int32_t axis);
ArrayPtr argpartition(const array& a, int32_t kth, int32_t axis);
ArrayPtr argsort(const array& a, int32_t axis);
ArrayPtr cumsum(const array& a, int32_t axis, bool reverse, bool inclusive);

// Linear algebra and quantization
ArrayPtr matmul(const array& a, const array& b);
ArrayPtr quantized_matmul(const array& x, const array& w, const array& scales,
                          const array& biases, bool has_biases, bool transpose, int32_t group_size,
                          int32_t bits, rust::Str mode, bool cpu_kernel);
std::unique_ptr<ArrayList> quantize(const array& w, int32_t group_size, int32_t bits);
ArrayPtr gather_mm(const array& a, const array& b, const array& rhs_indices, bool sorted_indices);
ArrayPtr gather_qmm(const array& x, const array& w, const array& scales, const array& biases,
                    bool has_biases, const array& rhs_indices, int32_t group_size, int32_t bits,
                    rust::Str mode, bool sorted_indices);
ArrayPtr dequantize(const array& w, const array& scales, const array& biases, bool has_biases,
                    int32_t group_size, int32_t bits, rust::Str mode, uint8_t dtype);

// mlx::core::fast
ArrayPtr rms_norm(const array& x, const array& weight, float eps);
ArrayPtr layer_norm(const array& x, const array& weight, const array& bias, float eps);
ArrayPtr rope(const array& x, int32_t dims, bool traditional, float base, float scale,
              int32_t offset);
ArrayPtr rope_freqs(const array& x, int32_t dims, bool traditional, float scale, int32_t offset,
                    const array& freqs);
ArrayPtr rope_rows(const array& x, int32_t dims, bool traditional, float base, float scale,
                   const array& offsets);
ArrayPtr rope_rows_freqs(const array& x, int32_t dims, bool traditional, float scale,
                         const array& offsets, const array& freqs);
ArrayPtr sdpa(const array& q, const array& k, const array& v, float scale,
              rust::Str mask_mode);
ArrayPtr sdpa_sinks(const array& q, const array& k, const array& v, float scale,
                    rust::Str mask_mode, const array& mask, bool use_mask, const array& sinks);
ArrayPtr sdpa_masked(const array& q, const array& k, const array& v, float scale,
                     const array& mask);

// The fused CPU layers (fused.h)
ArrayPtr cpu_rms_norm(const array& x, const array& w, float eps);
std::unique_ptr<ArrayList> cpu_add_rms_norm(const array& x, const array& y, const array& w, float eps);
ArrayPtr cpu_gated_act(const array& gu, int32_t act);
ArrayPtr cpu_argmax(const array& x);
std::unique_ptr<ArrayList> cpu_decode_attention(const ArrayList& inputs, rust::Slice<const int32_t> ints,
                                                rust::Slice<const float> floats);
std::unique_ptr<ArrayList> cpu_decode_layer(const ArrayList& inputs, rust::Slice<const int32_t> ints,
                                            rust::Slice<const float> floats);
std::unique_ptr<ArrayList> cpu_norm_product(const ArrayList& inputs, rust::Slice<const int32_t> ints,
                                            rust::Slice<const float> floats);
uint64_t cpu_attention_buffer_copies();

// Random
ArrayPtr random_key(uint64_t seed);
ArrayPtr categorical(const array& logits, int32_t axis, const array& key);

// Evaluation
std::unique_ptr<ArrayList> new_list();
void list_push(ArrayList& list, const array& a);
size_t list_len(const ArrayList& list);
ArrayPtr list_get(const ArrayList& list, size_t i);
void eval(const ArrayList& list);
void async_eval(const ArrayList& list);
void eval_one(const array& a);
void synchronize();
size_t graph_nodes(const ArrayList& outputs);

// Files
std::unique_ptr<Safetensors> load_safetensors(rust::Str path);
rust::Vec<rust::String> safetensors_keys(const Safetensors& st);
ArrayPtr safetensors_take(Safetensors& st, rust::Str key);
rust::Vec<rust::String> safetensors_metadata(const Safetensors& st);
void save_safetensors(rust::Str path, const rust::Vec<rust::String>& names,
                      const ArrayList& arrays);
std::unique_ptr<Gguf> load_gguf(rust::Str path);
rust::Vec<rust::String> gguf_tensor_keys(const Gguf& g);
ArrayPtr gguf_take(Gguf& g, rust::Str key);

// Device and memory
rust::String version();
bool gpu_available();
void use_gpu(bool gpu);
bool default_device_is_gpu();
void borrow_thread_streams();
void return_thread_streams();
ArrayPtr cpu_pin_huge(const array& a);
size_t cpu_pinned_bytes();
size_t active_memory();
size_t peak_memory();
void reset_peak_memory();
size_t cache_memory();
void clear_cache();
size_t set_cache_limit(size_t limit);
size_t set_memory_limit(size_t limit);
rust::String blas_backend();
rust::String cpu_kernels();

}  // namespace zeta_mlx
