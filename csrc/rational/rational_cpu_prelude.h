// Headers of the CPU kernels that must be parsed before an ISA target pragma (see
// rational_cpu_avx2.cpp).
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/dispatch.h"
#include "common/simd.h"
#include "rational/rational.h"
#include "rational/rational_math.h"
