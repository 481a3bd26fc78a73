// The ops of self-attention pooling, written once for every device (common/torch_glue.h):
// argument checks, packing, and the calls into Launch<Device>.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "attention_pool/attention_pool.h"
#include "common/torch_glue.h"

namespace fastprompt::attention_pool {

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

// The kernel calls of one device (attention_pool_ops.cpp: Cpu, attention_pool_ops_cuda.cpp: Cuda):
//   static constexpr int64_t kMaxQueries;   // the most queries (columns) its kernels take
//   static void forward(const Prepared&, at::Tensor& out, at::Tensor& lse);   // B, K > 0
//   static void backward(const Prepared&, const at::Tensor& grad_out, const at::Tensor& out,
//                        const at::Tensor& lse, at::Tensor& grad_z,
//                        at::Tensor& grad_queries_t);   // B > 0; grad_queries_t zeroed
template <class Device>
struct Launch;

template <class Device>
std::tuple<at::Tensor, at::Tensor> forward_op(const at::Tensor& z, const at::Tensor& queries,
                                              const std::optional<at::Tensor>& mask) {
  check_device<Device>(z, "z");
  check_size_at_most(queries, "queries", 2, 1, Launch<Device>::kMaxQueries,
                     "queries (columns) on CUDA");
  const typename Device::Guard guard(z);
  Prepared p = prepare(z, queries, mask);
  const Problem& pb = p.problem;
  at::Tensor out = at::empty({pb.batch, pb.num_queries, pb.dim}, p.z.options());
  at::Tensor lse = at::empty({pb.batch, pb.num_queries}, p.z.options().dtype(p.compute));
  if (pb.batch > 0 && pb.num_queries > 0) Launch<Device>::forward(p, out, lse);
  return {out, lse};
}

template <class Device>
std::tuple<at::Tensor, at::Tensor> backward_op(const at::Tensor& grad_out, const at::Tensor& z,
                                               const at::Tensor& queries,
                                               const std::optional<at::Tensor>& mask,
                                               const at::Tensor& out, const at::Tensor& lse) {
  check_device<Device>(z, "z");
  check_size_at_most(queries, "queries", 2, 1, Launch<Device>::kMaxQueries,
                     "queries (columns) on CUDA");
  const typename Device::Guard guard(z);
  Prepared p = prepare(z, queries, mask);
  auto [g, o, l] = prepare_backward(p, grad_out, out, lse);
  const Problem& pb = p.problem;
  at::Tensor grad_z = at::empty_like(p.z);
  at::Tensor grad_queries_t = at::zeros({pb.num_queries, pb.dim}, p.queries_t.options());
  if (pb.batch > 0) Launch<Device>::backward(p, g, o, l, grad_z, grad_queries_t);
  return {grad_z, unpack_queries_grad(grad_queries_t, queries)};
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("attention_pool", &forward_op<Device>).impl("attention_pool_backward", &backward_op<Device>);
}

}  // namespace fastprompt::attention_pool
