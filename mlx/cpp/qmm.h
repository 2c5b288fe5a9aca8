// The CPU's quantized matrix product: MLX's 4- and 8-bit affine formats multiplied by float32
// activations without expanding the weights, as an MLX primitive, so the model stays one MLX
// graph for every backend and a GPU never sees it.

#pragma once

#include "mlx/mlx.h"

namespace zeta_mlx {

/// Whether `cpu_affine_qmm` takes this product: a CPU stream, float32 `x`, affine mode, 4 or 8
/// bits, groups of 32, 64 or 128, `w` transposed (`x @ w.T`), and at most 32 rows (decode steps),
/// where reading the packed weights once beats dequantizing them for a float32 GEMM.
bool cpu_qmm_applies(const mlx::core::array& x, int group_size, int bits, const std::string& mode, bool transpose,
                     mlx::core::StreamOrDevice s = {});

/// `x [..., K] @ dequantize(w [N, K * bits / 32]).T` → `[..., N]` float32, the weights read
/// packed, dequantized in registers and multiplied on every core.
mlx::core::array cpu_affine_qmm(const mlx::core::array& x, const mlx::core::array& w,
                                const mlx::core::array& scales, const mlx::core::array& biases, int group_size,
                                int bits, mlx::core::StreamOrDevice s = {});

/// Whether a product `cpu_qmm_applies` refuses for its row count alone is better done as a
/// float32 GEMM on the weights dequantized for the call (prefill chunks on the CPU, where MLX's
/// own quantized kernel is scalar and single-threaded).
bool cpu_qmm_wants_gemm(const mlx::core::array& x, int group_size, int bits, const std::string& mode, bool transpose,
                        mlx::core::StreamOrDevice s = {});

/// That GEMM: `x @ dequantize(w).T` in float32 (scales and offsets widened first, as the kernel
/// computes).
mlx::core::array cpu_dequantized_gemm(const mlx::core::array& x, const mlx::core::array& w,
                                      const mlx::core::array& scales, const mlx::core::array& biases,
                                      int group_size, int bits, mlx::core::StreamOrDevice s = {});

/// Whether the kernel takes weights of this format (affine, 4 or 8 bits, groups of 32, 64 or
/// 128): the one list that the routing, the primitives and the engine's choice of what to keep
/// packed read.
bool cpu_qmm_takes(int bits, int group_size);

/// Most rows of a product the kernel takes (`cpu_qmm_applies`); past that, the dequantized GEMM.
int cpu_qmm_max_rows();

/// Threads the kernel uses (the calling MLX worker included): the BLAS shim's pool, or 1
/// without the shim.
int cpu_qmm_threads();

/// Checks packed weights for `K` inputs as the kernel takes them and returns their outputs (rows
/// of `w`); throws an invalid argument that says what is wrong.
int packed_outputs(const mlx::core::array& w, const mlx::core::array& scales, const mlx::core::array& biases,
                   int group_size, int bits, int K);

/// The kernel on plain rows, for the fused layers (layer.cc): `y` [M, N] = `x` [M, K] (row-major,
/// M <= `cpu_qmm_max_rows()`) times the packed weights, on the pool. Runs where it is called (a
/// node's task), not as a node of its own.
void packed_product(const float* x, int M, int K, const mlx::core::array& w, const mlx::core::array& scales,
                    const mlx::core::array& biases, int group_size, int bits, float* y, int N);

/// Products the kernel has taken in this process.
uint64_t cpu_qmm_calls();

}  // namespace zeta_mlx
