// Headers of the CPU kernels that are parsed before an ISA target pragma (see
// rational_cpu_avx2.cpp): the standard library and the scalar, torch-free API only. The vector
// math (common/simd.h, rational/rational_math.h) is parsed after the pragma, by
// rational_cpu_impl.h: a helper with vector compares parsed under the baseline target is
// lowered lane by lane even when inlined into the AVX code.
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/dispatch.h"
#include "rational/rational.h"
