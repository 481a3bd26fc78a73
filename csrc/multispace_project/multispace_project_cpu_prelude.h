// The headers of the multi-space projection CPU kernels that come before an instruction-set
// target pragma (the rule is in common/cpu_isa.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/dispatch.h"
#include "multispace_project/multispace_project.h"
