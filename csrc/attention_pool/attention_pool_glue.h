// Argument checks and packing shared by the CPU and CUDA glue of self-attention pooling.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "attention_pool/attention_pool.h"

namespace fastprompt {
namespace attention_pool {

struct Prepared {
  Problem problem;
  at::Tensor z;          // (B, T, D) contiguous
  at::Tensor queries_t;  // (K, D) contiguous, compute dtype
  at::Tensor mask;       // (B, T) contiguous bool, or undefined
  at::ScalarType compute;
};

// Validates z, queries and mask (errors name the offending argument) and packs them.
Prepared prepare(const at::Tensor& z, const at::Tensor& queries,
                 const std::optional<at::Tensor>& mask);

// Checks the extra backward inputs against the forward problem; returns grad_out, out and lse
// as contiguous tensors of the compute dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor> prepare_backward(const Prepared& p,
                                                                const at::Tensor& grad_out,
                                                                const at::Tensor& out,
                                                                const at::Tensor& lse);

// (K, D) compute-dtype gradient -> (D, K) in the dtype of queries.
at::Tensor unpack_queries_grad(const at::Tensor& grad_queries_t, const at::Tensor& queries);

}  // namespace attention_pool
}  // namespace fastprompt
