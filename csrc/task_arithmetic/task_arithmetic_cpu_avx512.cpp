// The combine / merge CPU kernels built for AVX-512 (F, BW, DQ, VL); include order:
// common/cpu_isa.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include "task_arithmetic/task_arithmetic_cpu_prelude.h"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#define FP_SIMD_TARGET 3
#define FP_CPU_ISA avx512
#include "task_arithmetic/task_arithmetic_cpu_impl.h"
#endif
