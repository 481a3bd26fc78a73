// Torch glue of combine and merge for CUDA tensors.
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/torch_glue.h"
#include "vectors/vectors_glue.h"

namespace fastprompt {
namespace vectors {
namespace {

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cuda(), name, ": expected a CUDA tensor, got one on ", t.device());
}

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void combine_launch_cuda(const PreparedCombine& p, at::Tensor& out) {
  if (p.problem.rows == 0 || p.problem.numel == 0) return;
  combine_cuda(p.problem, p.bank.data_ptr(), p.weights.data_ptr(),
               p.base.defined() ? p.base.data_ptr() : nullptr, out.data_ptr(), current_stream());
}

void weights_grad_launch_cuda(const CombineProblem& pb, const at::Tensor& g, const at::Tensor& bank,
                              at::Tensor& gw) {
  if (pb.numel == 0 || pb.rows == 0) {
    gw.zero_();
    return;
  }
  if (g.scalar_type() == at::kFloat || g.scalar_type() == at::kDouble) {
    // grad_weights (B, T) = grad_out (B, N) @ bank^T through cuBLAS (on the current stream): a
    // matrix product reuses each loaded tile across rows and vectors, where the fused dot kernel
    // reads grad_out T times and the bank B times. The 16-bit types keep the kernel (it converts
    // on load and accumulates in float32 without materialising float32 copies).
    at::mm_out(gw, g, bank.t());
    return;
  }
  at::Tensor ws = at::empty({std::max<int64_t>(combine_weights_grad_workspace_cuda(pb), 1)},
                            bank.options().dtype(at::kByte));
  combine_weights_grad_cuda(pb, g.data_ptr(), bank.data_ptr(), gw.data_ptr(), ws.data_ptr(),
                            current_stream());
}

at::Tensor combine_cuda_op(const at::Tensor& bank, const at::Tensor& weights,
                           const std::optional<at::Tensor>& base) {
  check_cuda(bank, "bank");
  const c10::cuda::CUDAGuard guard(bank.device());
  PreparedCombine p = prepare_combine(bank, weights, base);
  at::Tensor out = at::empty({p.problem.rows, p.problem.numel}, p.bank.options());
  combine_launch_cuda(p, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward_cuda_op(
    const at::Tensor& grad_out, const at::Tensor& bank, const at::Tensor& weights,
    int64_t base_rows) {
  check_cuda(bank, "bank");
  const c10::cuda::CUDAGuard guard(bank.device());
  return combine_backward_with(grad_out, bank, weights, base_rows, &combine_launch_cuda,
                               &weights_grad_launch_cuda);
}

at::Tensor merge_cuda_op(const at::Tensor& vectors, const at::Tensor& weights,
                         const std::string& method, double density, const std::string& sign,
                         int64_t seed) {
  check_cuda(vectors, "vectors");
  const c10::cuda::CUDAGuard guard(vectors.device());
  PreparedMerge p = prepare_merge(vectors, weights, method, density, sign, seed);
  at::Tensor out = at::empty({p.problem.numel}, p.vectors.options());
  if (p.problem.numel > 0) {
    at::Tensor ws = at::empty({std::max<int64_t>(merge_workspace_bytes_cuda(p.problem), 1)},
                              p.vectors.options().dtype(at::kByte));
    merge_cuda(p.problem, p.vectors.data_ptr(), p.weights.data_ptr(), out.data_ptr(),
               ws.data_ptr(), current_stream());
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastprompt, CUDA, m) {
  m.impl("combine", &combine_cuda_op);
  m.impl("combine_backward", &combine_backward_cuda_op);
  m.impl("merge", &merge_cuda_op);
}

}  // namespace vectors
}  // namespace fastprompt
