// Argument checks and packing shared by the CPU and CUDA glue of combine and merge.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

#include "vectors/vectors.h"

namespace fastprompt {
namespace vectors {

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

}  // namespace vectors
}  // namespace fastprompt
