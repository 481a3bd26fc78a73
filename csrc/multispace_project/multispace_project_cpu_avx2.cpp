// The multi-space projection CPU kernels built for AVX2 + FMA; include order: common/cpu_isa.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include "multispace_project/multispace_project_cpu_prelude.h"
#pragma GCC target("avx2,fma")
#define FP_SIMD_TARGET 2
#define FP_CPU_ISA avx2
#include "multispace_project/multispace_project_cpu_impl.h"
#endif
