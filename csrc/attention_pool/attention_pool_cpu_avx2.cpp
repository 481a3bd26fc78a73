// The same CPU kernels compiled for AVX2 + FMA; chosen at run time when the CPU has them.
// Shared headers are included before the target pragma so their inline helpers keep the
// baseline target (one definition for both builds) and are inlined into the AVX2 code.
#if defined(__x86_64__) && defined(__GNUC__)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_pool/attention_pool.h"
#include "common/dispatch.h"
#include "common/simd.h"

#pragma GCC target("avx2,fma")
#define FP_CPU_ISA avx2
#include "attention_pool/attention_pool_cpu_impl.h"
#endif
