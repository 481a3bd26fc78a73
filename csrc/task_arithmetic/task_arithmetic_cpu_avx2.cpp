// The combine / merge CPU kernels built for AVX2 + FMA; include order: common/cpu_isa.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include "task_arithmetic/task_arithmetic_cpu_prelude.h"
#pragma GCC target("avx2,fma")
#define FP_SIMD_TARGET 2
#define FP_CPU_ISA avx2
#include "task_arithmetic/task_arithmetic_cpu_impl.h"
#endif
