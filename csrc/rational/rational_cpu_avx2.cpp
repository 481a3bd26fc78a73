// The CPU kernels compiled for AVX2 + FMA (8 lanes); chosen at run time when the CPU has them.
// Shared headers are included before the target pragma so their inline helpers keep the
// baseline target (one definition for every build) and are inlined into the AVX2 code.
#if defined(__x86_64__) && defined(__GNUC__)
#include "rational/rational_cpu_prelude.h"
#pragma GCC target("avx2,fma")
#define FP_CPU_ISA avx2
#define FP_CPU_LANES 8
#include "rational/rational_cpu_impl.h"
#endif
