// The ops combine and merge, written once for every device (common/torch_glue.h): argument
// checks, packing, and the calls into Launch<Device>.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>

#include "common/torch_glue.h"
#include "task_arithmetic/task_arithmetic.h"

namespace fastprompt::task_arithmetic {

struct PreparedCombine {
  CombineProblem problem;
  at::Tensor bank;     // (T, N) contiguous
  at::Tensor weights;  // (B, T) contiguous, compute dtype
  at::Tensor base;     // (base_rows, N) contiguous, or undefined
  at::ScalarType compute;
};

// bank (T, N), weights (B, T), base (1 or B, N) or none; errors name the argument.
PreparedCombine prepare_combine(const at::Tensor& bank, const at::Tensor& weights,
                                const std::optional<at::Tensor>& base);

struct PreparedMerge {
  MergeProblem problem;
  at::Tensor vectors;  // (T, N) contiguous
  at::Tensor weights;  // (T,) contiguous, compute dtype
};

PreparedMerge prepare_merge(const at::Tensor& vectors, const at::Tensor& weights,
                            const std::string& method, double density, const std::string& sign,
                            int64_t seed);

// The backward of combine from two device launchers:
//   combine_fn(const PreparedCombine&, at::Tensor out) and
//   weights_grad_fn(const CombineProblem&, grad_out, bank, at::Tensor grad_weights (B, T) compute)
// -> (grad_bank (T, N), grad_weights (B, T) in weights' dtype, grad_base (base_rows, N)).
std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward_with(
    const at::Tensor& grad_out, const at::Tensor& bank, const at::Tensor& weights,
    int64_t base_rows, void (*combine_fn)(const PreparedCombine&, at::Tensor&),
    void (*weights_grad_fn)(const CombineProblem&, const at::Tensor&, const at::Tensor&,
                            at::Tensor&));

// The kernel calls of one device (task_arithmetic_ops.cpp: Cpu, task_arithmetic_ops_cuda.cpp:
// Cuda), each for any sizes (empty ones included):
//   static void combine(const PreparedCombine&, at::Tensor& out);
//   static void weights_grad(const CombineProblem&, const at::Tensor& grad_out,
//                            const at::Tensor& bank, at::Tensor& grad_weights);
//       (the fused kernel of the 16-bit types, for rows and elements > 0; combine_backward_with
//       runs float32 / float64 through the vendor BLAS)
//   static void merge(const PreparedMerge&, at::Tensor& out);
template <class Device>
struct Launch;

template <class Device>
at::Tensor combine_op(const at::Tensor& bank, const at::Tensor& weights,
                      const std::optional<at::Tensor>& base) {
  check_device<Device>(bank, "bank");
  const typename Device::Guard guard(bank);
  PreparedCombine p = prepare_combine(bank, weights, base);
  at::Tensor out = at::empty({p.problem.rows, p.problem.numel}, p.bank.options());
  Launch<Device>::combine(p, out);
  return out;
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward_op(const at::Tensor& grad_out,
                                                                   const at::Tensor& bank,
                                                                   const at::Tensor& weights,
                                                                   int64_t base_rows) {
  check_device<Device>(bank, "bank");
  const typename Device::Guard guard(bank);
  return combine_backward_with(grad_out, bank, weights, base_rows, &Launch<Device>::combine,
                               &Launch<Device>::weights_grad);
}

template <class Device>
at::Tensor merge_op(const at::Tensor& vectors, const at::Tensor& weights,
                    const std::string& method, double density, const std::string& sign,
                    int64_t seed) {
  check_device<Device>(vectors, "vectors");
  const typename Device::Guard guard(vectors);
  PreparedMerge p = prepare_merge(vectors, weights, method, density, sign, seed);
  at::Tensor out = at::empty({p.problem.numel}, p.vectors.options());
  Launch<Device>::merge(p, out);
  return out;
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("combine", &combine_op<Device>)
      .impl("combine_backward", &combine_backward_op<Device>)
      .impl("merge", &merge_op<Device>);
}

}  // namespace fastprompt::task_arithmetic
