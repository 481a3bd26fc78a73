// Torch-free interface through which kernel files run a loop on the caller's thread pool.
// The torch glue passes `torch_parallel_for` (csrc/common/torch_glue.h), which uses
// at::parallel_for, so kernels honour torch.set_num_threads without including torch headers.
#pragma once

#include <cstdint>

namespace fastprompt {

// Calls body(ctx, begin, end) on disjoint sub-ranges covering [0, n). Ranges are whole
// multiples of `grain` except the last; results must not depend on how the range is split.
using ParallelFor = void (*)(int64_t n, int64_t grain, void* ctx,
                             void (*body)(void* ctx, int64_t begin, int64_t end));

template <typename F>
void parallel_for(ParallelFor pf, int64_t n, int64_t grain, F&& f) {
  pf(n, grain, &f, [](void* ctx, int64_t b, int64_t e) { (*static_cast<F*>(ctx))(b, e); });
}

}  // namespace fastprompt
