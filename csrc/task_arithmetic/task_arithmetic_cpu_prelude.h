// The headers of the combine / merge CPU kernels that come before an instruction-set target
// pragma (the rule is in common/cpu_isa.h); task_arithmetic_cpu_impl.h adds common/simd.h
// after it.
#pragma once
#include <algorithm>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "common/dispatch.h"
#include "task_arithmetic/task_arithmetic.h"
#include "task_arithmetic/task_arithmetic_rng.h"
