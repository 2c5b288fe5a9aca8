// The vector intrinsics this bridge's kernels may name, and the macros that say which: every
// kernel file includes this one header instead of repeating the architecture test and GCC's
// warning switches (they had been copied into five files).
//
// The functions that use AVX2 or AVX-512 carry `__attribute__((target(...)))` and are chosen at
// run time by `cpu_isa()` (cpu_parallel.h), so the build itself targets plain x86-64.

#pragma once

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from `_mm512_undefined_ps()`, which it then reports as used
// uninitialized: a false positive inside its own header. The switches come before the header
// is included, so they cover its inline functions wherever they are expanded.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ZETA_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define ZETA_ARM 1
#endif
