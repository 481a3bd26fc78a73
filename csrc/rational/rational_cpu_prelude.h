// The headers of the rational CPU kernels that come before an instruction-set target pragma
// (the rule is in common/cpu_isa.h): the standard library and the scalar, torch-free API.
// rational_cpu_impl.h adds the vector math (common/simd.h, rational/rational_math.h) after it.
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/dispatch.h"
#include "rational/rational.h"
