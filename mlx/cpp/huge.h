// Weights in 2 MB pages on the CPU (see huge.cc).

#pragma once

#include <cstddef>

#include "mlx/mlx.h"

namespace zeta_mlx {

/// `a` (evaluated) copied into memory that Linux backs with 2 MB pages where it can, for weights
/// the CPU kernels stream every step; `a` itself where that does not apply (a GPU backend, a small
/// or strided array).
mlx::core::array pin_huge(const mlx::core::array& a);

/// Bytes of arrays `pin_huge` copied that are still alive (MLX's own counters do not see them).
size_t huge_bytes();

/// Most of [`huge_bytes`] since the last [`reset_huge_peak`].
size_t huge_peak_bytes();

/// Restarts [`huge_peak_bytes`] from what is alive now.
void reset_huge_peak();

}  // namespace zeta_mlx
