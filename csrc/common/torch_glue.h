// Helpers for the torch glue (.cpp) files: argument checks with useful messages, the mapping
// from at::ScalarType to the torch-free DType tag, and the thread pool bridge.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>

#include "common/parallel.h"
#include "common/scalar.h"

namespace fastprompt {

inline DType to_dtype(const at::Tensor& t, const char* arg) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default:
      TORCH_CHECK(false, arg, ": expected a floating tensor of dtype float32, float64, float16 or "
                  "bfloat16, got ", t.scalar_type());
  }
}

inline void check_same_device(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                              const char* name) {
  TORCH_CHECK(t.device() == ref.device(), name, ": expected a tensor on ", ref.device(),
              " (the device of ", ref_name, "), got one on ", t.device());
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* shape) {
  TORCH_CHECK(t.dim() == dim, name, ": expected shape ", shape, " (", dim, " dims), got ",
              t.sizes());
}

inline void torch_parallel_for(int64_t n, int64_t grain, void* ctx,
                               void (*body)(void*, int64_t, int64_t)) {
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { body(ctx, b, e); });
}

}  // namespace fastprompt
