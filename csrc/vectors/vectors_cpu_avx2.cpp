// The CPU kernels compiled for AVX2 + FMA; chosen at run time when the CPU has them. Shared
// headers are included before the target pragma so their inline helpers keep the baseline target.
#if defined(__x86_64__) && defined(__GNUC__)
#include "vectors/vectors_cpu_prelude.h"
#pragma GCC target("avx2,fma")
#define FP_CPU_ISA avx2
#include "vectors/vectors_cpu_impl.h"
#endif
