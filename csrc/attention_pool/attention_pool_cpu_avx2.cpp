// The same CPU kernels compiled for AVX2 + FMA; chosen at run time when the CPU has them.
// The standard and scalar headers are included before the target pragma, the vector helpers
// (common/simd.h, all always_inline) after it, so their vector code is compiled for AVX2.
#if defined(__x86_64__) && defined(__GNUC__)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_pool/attention_pool.h"
#include "common/dispatch.h"

#pragma GCC target("avx2,fma")
#define FP_SIMD_TARGET 2
#include "common/simd.h"
#define FP_CPU_ISA avx2
#include "attention_pool/attention_pool_cpu_impl.h"
#endif
