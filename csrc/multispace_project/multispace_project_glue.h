// Device-agnostic torch glue of the multi-space projection: argument checks, the vendor-BLAS
// matrix products (at::mm / at::addmm dispatch to MKL / cuBLAS) and the calls into the fused
// per-device kernels, which a device file passes in as a Kernels table.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "multispace_project/multispace_project.h"

namespace fastprompt {
namespace multispace_project {

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

}  // namespace multispace_project
}  // namespace fastprompt
