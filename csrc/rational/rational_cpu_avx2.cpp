// The rational CPU kernels built for AVX2 + FMA (8 lanes); include order: common/cpu_isa.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include "rational/rational_cpu_prelude.h"
#pragma GCC target("avx2,fma")
#define FP_SIMD_TARGET 2
#define FP_CPU_ISA avx2
#define FP_CPU_LANES 8
#include "rational/rational_cpu_impl.h"
#endif
