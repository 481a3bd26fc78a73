// Helpers for the torch glue (.cpp) files: argument checks with useful messages, the mapping
// from at::ScalarType to the torch-free DType tag, the thread pool bridge, and the devices the
// kernels are registered for.
//
// Each op family writes its ops once, in <op>_ops.cpp, as templates over the device: they check
// the device of the tensor that decides where the op runs (check_device), make that device
// current (Device::Guard), validate and pack the arguments, and call Launch<Device>, the
// family's kernel calls for that device. The same file defines Launch<Cpu> and, in CUDA builds
// (#ifdef FASTPROMPT_WITH_CUDA), Launch<Cuda> (common/torch_glue_cuda.h), and registers the ops
// with FP_REGISTER_KERNELS(family).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>

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

// The CPU as a kernel device: nothing to make current; kernels run on torch's thread pool.
struct Cpu {
  static constexpr c10::DeviceType kType = c10::DeviceType::CPU;
  struct Guard {
    explicit Guard(const at::Tensor&) {}
  };
};

// The one device check of the ops: `t`, the argument `name` that decides where the op runs,
// must be on the device the kernel was registered for.
template <class Device>
void check_device(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().type() == Device::kType, name, ": expected a ",
              c10::DeviceTypeName(Device::kType), " tensor, got one on ", t.device());
}

// A size limit of a device's kernels: where `t` (argument `name`) has `ndim` dimensions, its
// dimension `dim` is at most `limit`; `what` names what is counted.
inline void check_size_at_most(const at::Tensor& t, const char* name, int64_t ndim, int64_t dim,
                               int64_t limit, const char* what) {
  TORCH_CHECK(t.dim() != ndim || t.size(dim) <= limit, name, ": expected at most ", limit, " ",
              what, ", got shape ", t.sizes());
}

// A byte buffer of at least `bytes` bytes (at least one) on the device of `like`.
inline at::Tensor workspace(int64_t bytes, const at::Tensor& like) {
  return at::empty({std::max<int64_t>(bytes, 1)}, like.options().dtype(at::kByte));
}

inline void torch_parallel_for(int64_t n, int64_t grain, void* ctx,
                               void (*body)(void*, int64_t, int64_t)) {
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { body(ctx, b, e); });
}

}  // namespace fastprompt

// Registers the kernels of the op family `family` (fastprompt::family::register_kernels<Device>)
// for the CPU and, in CUDA builds (FASTPROMPT_WITH_CUDA, where the file includes
// common/torch_glue_cuda.h), for CUDA.
#define FP_REGISTER_KERNELS_FOR(DISPATCH, Device, family)                 \
  TORCH_LIBRARY_IMPL(fastprompt, DISPATCH, m) {                           \
    ::fastprompt::family::register_kernels<::fastprompt::Device>(m);      \
  }
#ifdef FASTPROMPT_WITH_CUDA
#define FP_REGISTER_KERNELS(family)               \
  FP_REGISTER_KERNELS_FOR(CPU, Cpu, family)       \
  FP_REGISTER_KERNELS_FOR(CUDA, Cuda, family)
#else
#define FP_REGISTER_KERNELS(family) FP_REGISTER_KERNELS_FOR(CPU, Cpu, family)
#endif
