// Torch glue of self-attention pooling for CUDA tensors.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "attention_pool/attention_pool_glue.h"
#include "common/torch_glue.h"

namespace fastprompt {
namespace attention_pool {
namespace {

// The per-tile score buffers of the kernels live in shared memory (48 KiB without opt-in).
constexpr int64_t kMaxQueriesCuda = 64;

void check_cuda(const at::Tensor& z, const at::Tensor& queries) {
  TORCH_CHECK(z.device().is_cuda(), "z: expected a CUDA tensor, got one on ", z.device());
  TORCH_CHECK(queries.dim() != 2 || queries.size(1) <= kMaxQueriesCuda,
              "queries: expected at most ", kMaxQueriesCuda,
              " queries (columns) on CUDA, got shape ", queries.sizes());
}

at::Tensor workspace_for(const Prepared& p) {
  return at::empty({std::max<int64_t>(workspace_bytes_cuda(p.problem), 1)},
                   p.z.options().dtype(at::kByte));
}

std::tuple<at::Tensor, at::Tensor> forward_cuda_op(const at::Tensor& z, const at::Tensor& queries,
                                                   const std::optional<at::Tensor>& mask) {
  check_cuda(z, queries);
  const c10::cuda::CUDAGuard guard(z.device());
  Prepared p = prepare(z, queries, mask);
  const Problem& pb = p.problem;
  at::Tensor out = at::empty({pb.batch, pb.num_queries, pb.dim}, p.z.options());
  at::Tensor lse = at::empty({pb.batch, pb.num_queries}, p.z.options().dtype(p.compute));
  if (pb.batch > 0 && pb.num_queries > 0) {
    at::Tensor workspace = workspace_for(p);
    forward_cuda(pb, p.z.data_ptr(), p.queries_t.data_ptr(), out.data_ptr(), lse.data_ptr(),
                 workspace.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  }
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> backward_cuda_op(const at::Tensor& grad_out,
                                                    const at::Tensor& z, const at::Tensor& queries,
                                                    const std::optional<at::Tensor>& mask,
                                                    const at::Tensor& out, const at::Tensor& lse) {
  check_cuda(z, queries);
  const c10::cuda::CUDAGuard guard(z.device());
  Prepared p = prepare(z, queries, mask);
  auto [g, o, l] = prepare_backward(p, grad_out, out, lse);
  const Problem& pb = p.problem;
  at::Tensor grad_z = at::empty_like(p.z);
  at::Tensor grad_queries_t = at::zeros({pb.num_queries, pb.dim}, p.queries_t.options());
  if (pb.batch > 0 && pb.tokens > 0) {
    at::Tensor workspace = workspace_for(p);
    backward_cuda(pb, g.data_ptr(), p.z.data_ptr(), p.queries_t.data_ptr(), o.data_ptr(),
                  l.data_ptr(), grad_z.data_ptr(), grad_queries_t.data_ptr(), workspace.data_ptr(),
                  c10::cuda::getCurrentCUDAStream().stream());
  }
  return {grad_z, unpack_queries_grad(grad_queries_t, queries)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastprompt, CUDA, m) {
  m.impl("attention_pool", &forward_cuda_op);
  m.impl("attention_pool_backward", &backward_cuda_op);
}

}  // namespace attention_pool
}  // namespace fastprompt
