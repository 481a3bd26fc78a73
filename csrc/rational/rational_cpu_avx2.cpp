// The CPU kernels compiled for AVX2 + FMA (8 lanes); chosen at run time when the CPU has them.
// The standard headers are included before the target pragma (rational_cpu_prelude.h); the
// vector math after it, so it is compiled for AVX2. Every vector helper is always_inline, so
// no out-of-line copy with AVX2 instructions can stand in for the baseline build's.
#if defined(__x86_64__) && defined(__GNUC__)
#include "rational/rational_cpu_prelude.h"
#pragma GCC target("avx2,fma")
#define FP_SIMD_TARGET 2
#define FP_CPU_ISA avx2
#define FP_CPU_LANES 8
#include "rational/rational_cpu_impl.h"
#endif
