//! The raw cxx declarations. Everything that can throw is declared `Result`, so a C++ exception
//! becomes a `cxx::Exception` instead of aborting the process; the safe wrappers in `array.rs`
//! and `ops.rs` turn those into [`crate::Error`].

#[cxx::bridge(namespace = "zeta_mlx")]
#[allow(missing_docs, clippy::missing_safety_doc, clippy::module_inception, clippy::too_many_arguments)]
pub(crate) mod ffi {
    unsafe extern "C++" {
        include!("bridge.h");

        #[namespace = "mlx::core"]
        type array;
        type ArrayList;
        type Safetensors;
        type Gguf;

        fn from_f32(data: &[f32], shape: &[i32]) -> Result<UniquePtr<array>>;
        fn from_i32(data: &[i32], shape: &[i32]) -> Result<UniquePtr<array>>;
        fn from_u32(data: &[u32], shape: &[i32]) -> Result<UniquePtr<array>>;
        fn from_bytes(data: &[u8], shape: &[i32], dtype: u8) -> Result<UniquePtr<array>>;
        fn scalar_f32(v: f32) -> Result<UniquePtr<array>>;
        fn scalar_i32(v: i32) -> Result<UniquePtr<array>>;
        fn zeros(shape: &[i32], dtype: u8) -> Result<UniquePtr<array>>;
        fn full_f32(shape: &[i32], v: f32, dtype: u8) -> Result<UniquePtr<array>>;
        fn arange_i32(start: i32, stop: i32) -> Result<UniquePtr<array>>;
        fn share(a: &array) -> Result<UniquePtr<array>>;

        fn ndim(a: &array) -> usize;
        fn shape(a: &array) -> Vec<i32>;
        fn dtype(a: &array) -> u8;
        fn size(a: &array) -> usize;
        fn nbytes(a: &array) -> usize;
        fn to_f32(a: &array) -> Result<Vec<f32>>;
        fn to_i32(a: &array) -> Result<Vec<i32>>;
        fn to_u32(a: &array) -> Result<Vec<u32>>;

        fn add(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn subtract(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn multiply(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn divide(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn maximum(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn floor_divide(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn minimum(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn greater(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn less(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn equal(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn greater_equal(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn less_equal(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn logical_and(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn where_(cond: &array, a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn exp(a: &array) -> Result<UniquePtr<array>>;
        fn log(a: &array) -> Result<UniquePtr<array>>;
        fn sigmoid(a: &array) -> Result<UniquePtr<array>>;
        fn silu(a: &array) -> Result<UniquePtr<array>>;
        fn tanh(a: &array) -> Result<UniquePtr<array>>;
        fn cos(a: &array) -> Result<UniquePtr<array>>;
        fn sin(a: &array) -> Result<UniquePtr<array>>;
        fn erf(a: &array) -> Result<UniquePtr<array>>;
        fn sqrt(a: &array) -> Result<UniquePtr<array>>;
        fn rsqrt(a: &array) -> Result<UniquePtr<array>>;
        fn square(a: &array) -> Result<UniquePtr<array>>;
        fn negative(a: &array) -> Result<UniquePtr<array>>;
        fn astype(a: &array, dtype: u8) -> Result<UniquePtr<array>>;

        fn reshape(a: &array, shape: &[i32]) -> Result<UniquePtr<array>>;
        fn transpose(a: &array, axes: &[i32]) -> Result<UniquePtr<array>>;
        fn swapaxes(a: &array, a1: i32, a2: i32) -> Result<UniquePtr<array>>;
        fn expand_dims(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn squeeze(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn slice(a: &array, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<UniquePtr<array>>;
        fn slice_update(src: &array, update: &array, start: &[i32], stop: &[i32]) -> Result<UniquePtr<array>>;
        fn take(a: &array, indices: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn take_along_axis(a: &array, indices: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn scatter(a: &array, indices: &array, updates: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn scatter_add(a: &array, indices: &array, updates: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn concatenate(list: &ArrayList, axis: i32) -> Result<UniquePtr<array>>;
        fn stack(list: &ArrayList, axis: i32) -> Result<UniquePtr<array>>;
        fn contiguous(a: &array) -> Result<UniquePtr<array>>;

        fn sum(a: &array, axis: i32, keepdims: bool) -> Result<UniquePtr<array>>;
        fn max(a: &array, axis: i32, keepdims: bool) -> Result<UniquePtr<array>>;
        fn mean(a: &array, axis: i32, keepdims: bool) -> Result<UniquePtr<array>>;
        fn argmax(a: &array, axis: i32, keepdims: bool) -> Result<UniquePtr<array>>;
        fn logsumexp(a: &array, axis: i32, keepdims: bool) -> Result<UniquePtr<array>>;
        fn softmax(a: &array, axis: i32, precise: bool) -> Result<UniquePtr<array>>;
        fn topk(a: &array, k: i32, axis: i32) -> Result<UniquePtr<array>>;
        fn argpartition(a: &array, kth: i32, axis: i32) -> Result<UniquePtr<array>>;
        fn argsort(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn cumsum(a: &array, axis: i32, reverse: bool, inclusive: bool) -> Result<UniquePtr<array>>;

        fn matmul(a: &array, b: &array) -> Result<UniquePtr<array>>;
        #[allow(clippy::too_many_arguments)]
        fn quantized_matmul(
            x: &array,
            w: &array,
            scales: &array,
            biases: &array,
            has_biases: bool,
            transpose: bool,
            group_size: i32,
            bits: i32,
            mode: &str,
            cpu_kernel: bool,
        ) -> Result<UniquePtr<array>>;
        fn quantize(w: &array, group_size: i32, bits: i32) -> Result<UniquePtr<ArrayList>>;
        fn cpu_qmm_takes(bits: i32, group_size: i32) -> bool;
        fn cpu_qmm_max_rows() -> i32;
        fn cpu_qmm_threads() -> i32;
        fn cpu_qmm_calls() -> u64;
        fn gather_mm(a: &array, b: &array, rhs_indices: &array, sorted_indices: bool) -> Result<UniquePtr<array>>;
        #[allow(clippy::too_many_arguments)]
        fn gather_qmm(
            x: &array,
            w: &array,
            scales: &array,
            biases: &array,
            has_biases: bool,
            rhs_indices: &array,
            group_size: i32,
            bits: i32,
            mode: &str,
            sorted_indices: bool,
        ) -> Result<UniquePtr<array>>;
        #[allow(clippy::too_many_arguments)]
        fn dequantize(
            w: &array,
            scales: &array,
            biases: &array,
            has_biases: bool,
            group_size: i32,
            bits: i32,
            mode: &str,
            dtype: u8,
        ) -> Result<UniquePtr<array>>;

        fn cpu_rms_norm(x: &array, w: &array, eps: f32) -> Result<UniquePtr<array>>;
        fn cpu_add_rms_norm(x: &array, y: &array, w: &array, eps: f32) -> Result<UniquePtr<ArrayList>>;
        fn cpu_gated_act(gu: &array, act: i32) -> Result<UniquePtr<array>>;
        fn cpu_argmax(x: &array) -> Result<UniquePtr<array>>;
        fn cpu_decode_attention(inputs: &ArrayList, ints: &[i32], floats: &[f32]) -> Result<UniquePtr<ArrayList>>;
        fn cpu_decode_layer(inputs: &ArrayList, ints: &[i32], floats: &[f32]) -> Result<UniquePtr<ArrayList>>;
        fn cpu_norm_product(inputs: &ArrayList, ints: &[i32], floats: &[f32]) -> Result<UniquePtr<ArrayList>>;
        fn cpu_attention_buffer_copies() -> u64;
        fn rms_norm(x: &array, weight: &array, eps: f32) -> Result<UniquePtr<array>>;
        fn layer_norm(x: &array, weight: &array, bias: &array, eps: f32) -> Result<UniquePtr<array>>;
        fn rope(
            x: &array,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: i32,
        ) -> Result<UniquePtr<array>>;
        fn rope_freqs(
            x: &array,
            dims: i32,
            traditional: bool,
            scale: f32,
            offset: i32,
            freqs: &array,
        ) -> Result<UniquePtr<array>>;
        fn rope_rows(
            x: &array,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offsets: &array,
        ) -> Result<UniquePtr<array>>;
        fn rope_rows_freqs(
            x: &array,
            dims: i32,
            traditional: bool,
            scale: f32,
            offsets: &array,
            freqs: &array,
        ) -> Result<UniquePtr<array>>;
        fn sdpa(q: &array, k: &array, v: &array, scale: f32, mask_mode: &str) -> Result<UniquePtr<array>>;
        fn sdpa_masked(q: &array, k: &array, v: &array, scale: f32, mask: &array) -> Result<UniquePtr<array>>;
        #[allow(clippy::too_many_arguments)]
        fn sdpa_sinks(
            q: &array,
            k: &array,
            v: &array,
            scale: f32,
            mask_mode: &str,
            mask: &array,
            use_mask: bool,
            sinks: &array,
        ) -> Result<UniquePtr<array>>;

        fn random_key(seed: u64) -> Result<UniquePtr<array>>;
        fn categorical(logits: &array, axis: i32, key: &array) -> Result<UniquePtr<array>>;

        fn new_list() -> UniquePtr<ArrayList>;
        fn list_push(list: Pin<&mut ArrayList>, a: &array);
        fn list_len(list: &ArrayList) -> usize;
        fn list_get(list: &ArrayList, i: usize) -> Result<UniquePtr<array>>;
        fn eval(list: &ArrayList) -> Result<()>;
        fn async_eval(list: &ArrayList) -> Result<()>;
        fn eval_one(a: &array) -> Result<()>;
        fn synchronize() -> Result<()>;
        fn graph_nodes(outputs: &ArrayList) -> usize;

        fn load_safetensors(path: &str) -> Result<UniquePtr<Safetensors>>;
        fn safetensors_keys(st: &Safetensors) -> Vec<String>;
        fn safetensors_take(st: Pin<&mut Safetensors>, key: &str) -> Result<UniquePtr<array>>;
        fn safetensors_metadata(st: &Safetensors) -> Vec<String>;
        fn save_safetensors(path: &str, names: &Vec<String>, arrays: &ArrayList) -> Result<()>;
        fn load_gguf(path: &str) -> Result<UniquePtr<Gguf>>;
        fn gguf_tensor_keys(g: &Gguf) -> Vec<String>;
        fn gguf_take(g: Pin<&mut Gguf>, key: &str) -> Result<UniquePtr<array>>;

        fn version() -> String;
        fn gpu_available() -> bool;
        fn use_gpu(gpu: bool) -> Result<()>;
        fn default_device_is_gpu() -> bool;
        fn borrow_thread_streams() -> Result<()>;
        fn return_thread_streams() -> Result<()>;
        fn cpu_pin_huge(a: &array) -> Result<UniquePtr<array>>;
        fn cpu_pinned_bytes() -> usize;
        fn active_memory() -> usize;
        fn peak_memory() -> usize;
        fn reset_peak_memory();
        fn cache_memory() -> usize;
        fn clear_cache();
        fn set_cache_limit(limit: usize) -> usize;
        fn set_memory_limit(limit: usize) -> usize;
        fn blas_backend() -> String;
        fn cpu_kernels() -> String;
    }
}
