// The same CPU kernels compiled for AVX2 + FMA; chosen at run time when the CPU has them.
// Shared headers are included before the target pragma so their inline helpers keep the
// baseline target (one definition for both builds) and are inlined into the AVX2 code.
#if defined(__x86_64__) && defined(__GNUC__)
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/dispatch.h"
#include "common/simd.h"
#include "rational/rational.h"
#include "rational/rational_math.h"

#pragma GCC target("avx2,fma")
#define FP_CPU_ISA avx2
#include "rational/rational_cpu_impl.h"
#endif
