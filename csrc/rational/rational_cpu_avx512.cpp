// The rational CPU kernels built for AVX-512 F/BW/DQ/VL (16 lanes, 32 vector registers);
// include order: common/cpu_isa.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include "rational/rational_cpu_prelude.h"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#define FP_SIMD_TARGET 3
#define FP_CPU_ISA avx512
#define FP_CPU_LANES 16
#include "rational/rational_cpu_impl.h"
#endif
