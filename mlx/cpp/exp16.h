// e^x on 16 float32 lanes with AVX-512, shared by the attention's softmax (attend.cc) and the
// SiLU gate (fused.cc), where glibc's scalar `expf` per element cost whole percents of a step.

#pragma once

#include "simd.h"

#ifdef ZETA_X86

namespace zeta_mlx {

// e^x in 16 lanes: x = n·ln 2 + r with |r| <= ln 2 / 2,
// e^r by its Taylor series to r^7 (the first term left out is under 0.05 of float32's last bit
// there), times 2^n (`scalef`, which gives infinity past float32's range). Below -104 the result
// is 0, as e^x rounds to in float32. glibc's scalar `expf` per score was 3% of a batch-16 step.
__attribute__((target("avx512f"), always_inline)) inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace zeta_mlx

#endif
