// The CPU kernels compiled for AVX-512 (F, BW, DQ, VL); chosen at run time when the CPU has them.
#if defined(__x86_64__) && defined(__GNUC__)
#include "vectors/vectors_cpu_prelude.h"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#define FP_CPU_ISA avx512
#include "vectors/vectors_cpu_impl.h"
#endif
