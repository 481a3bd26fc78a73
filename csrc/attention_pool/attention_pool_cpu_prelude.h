// The headers of the self-attention pooling CPU kernels that come before an instruction-set
// target pragma (the rule is in common/cpu_isa.h); attention_pool_cpu_impl.h adds
// common/simd.h after it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_pool/attention_pool.h"
#include "common/dispatch.h"
