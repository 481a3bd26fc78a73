// Device-agnostic torch glue of the multi-space projection: argument checks, the vendor-BLAS
// matrix products (at::mm / at::addmm dispatch to MKL / cuBLAS) and the calls into the fused
// per-device kernels, which Launch<Device>::kernels() returns as a Kernels table; the ops are
// written once for every device (common/torch_glue.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "common/torch_glue.h"
#include "multispace_project/multispace_project.h"

namespace fastprompt::multispace_project {

struct Kernels {
  // each takes the problem and the same pointers as the torch-free functions, then runs on the
  // current stream / thread pool of the device
  void (*fold)(const Problem&, const void*, const void*, const void*, void*, void*);
  void (*fold_backward)(const Problem&, const void*, const void*, const void*, const void*,
                        const void*, void*, void*, void*, const at::Tensor& like);
  void (*rows_forward)(const Problem&, const void*, const void*, const void*, void*);
  void (*rows_backward)(const Problem&, const void*, const void*, const void*, const void*,
                        void*, void*, void*);
};

// -> (out (..., d_out), saved): saved is W_eff (d_in, d_out) for a shared gate or none, and
// the projections P_k = x @ W_k (N, M, d_out) for per-row gates; the backward takes it back.
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias,
                                           const std::optional<at::Tensor>& gate_logits,
                                           const Kernels& kernels);

// -> (grad_x, grad_weight, grad_bias (N, d_out) or shape (0,) without bias, grad_gate_logits
// (gate_logits' shape) or shape (0,) without gate logits)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate_logits,
    const at::Tensor& saved, const Kernels& kernels);

// The kernels of one device (multispace_project_ops.cpp: Cpu, multispace_project_ops_cuda.cpp:
// Cuda): static constexpr int64_t kMaxSpaces (the most spaces its kernels take);
// static const Kernels& kernels().
template <class Device>
struct Launch;

template <class Device>
std::tuple<at::Tensor, at::Tensor> forward_op(const at::Tensor& x, const at::Tensor& weight,
                                              const std::optional<at::Tensor>& bias,
                                              const std::optional<at::Tensor>& gate_logits) {
  check_device<Device>(x, "x");
  check_size_at_most(weight, "weight", 3, 0, Launch<Device>::kMaxSpaces, "spaces on CUDA");
  const typename Device::Guard guard(x);
  return forward(x, weight, bias, gate_logits, Launch<Device>::kernels());
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate_logits,
    const at::Tensor& saved) {
  check_device<Device>(x, "x");
  check_size_at_most(weight, "weight", 3, 0, Launch<Device>::kMaxSpaces, "spaces on CUDA");
  const typename Device::Guard guard(x);
  return backward(grad_out, x, weight, bias, gate_logits, saved, Launch<Device>::kernels());
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("multispace_project", &forward_op<Device>).impl("multispace_project_backward", &backward_op<Device>);
}

}  // namespace fastprompt::multispace_project
