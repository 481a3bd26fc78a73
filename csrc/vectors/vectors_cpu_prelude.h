// Headers of the CPU kernels that must be parsed before an ISA target pragma (see
// vectors_cpu_avx2.cpp).
#pragma once
#include <algorithm>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "common/dispatch.h"
#include "common/simd.h"
#include "vectors/vectors.h"
#include "vectors/vectors_rng.h"
