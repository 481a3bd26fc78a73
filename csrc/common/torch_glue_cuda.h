// The CUDA device of the torch glue (see common/torch_glue.h): the guard that makes a tensor's
// GPU current and the current stream, which the torch-free kernels receive as a void*.
#pragma once

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/torch_glue.h"

namespace fastprompt {

struct Cuda {
  static constexpr c10::DeviceType kType = c10::DeviceType::CUDA;
  struct Guard {
    c10::cuda::CUDAGuard guard;
    explicit Guard(const at::Tensor& t) : guard(t.device()) {}
  };
  static void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
};

}  // namespace fastprompt
