// Torch glue of the multi-space projection for CUDA tensors: device guard, current stream,
// workspace; the shared glue (multispace_project_ops.cpp) runs the cuBLAS products.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/torch_glue.h"
#include "multispace_project/multispace_project_glue.h"

namespace fastprompt {
namespace multispace_project {
namespace {

// the gates of a block live in shared memory
constexpr int64_t kMaxSpacesCuda = 1024;

void check_cuda(const at::Tensor& x, const at::Tensor& weight) {
  TORCH_CHECK(x.device().is_cuda(), "x: expected a CUDA tensor, got one on ", x.device());
  TORCH_CHECK(weight.dim() != 3 || weight.size(0) <= kMaxSpacesCuda, "weight: expected at most ",
              kMaxSpacesCuda, " spaces on CUDA, got shape ", weight.sizes());
}

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

const Kernels& cuda_kernels() {
  static const Kernels k{
      [](const Problem& pb, const void* w, const void* b, const void* l, void* we, void* be) {
        fold_cuda(pb, w, b, l, we, be, stream());
      },
      [](const Problem& pb, const void* w, const void* b, const void* l, const void* g,
         const void* cs, void* gw, void* gb, void* gl, const at::Tensor& like) {
        at::Tensor workspace = at::empty(
            {std::max<int64_t>(fold_backward_workspace_bytes_cuda(pb), 1)},
            like.options().dtype(at::kByte));
        fold_backward_cuda(pb, w, b, l, g, cs, gw, gb, gl, workspace.data_ptr(), stream());
      },
      [](const Problem& pb, const void* pr, const void* b, const void* l, void* out) {
        rows_forward_cuda(pb, pr, b, l, out, stream());
      },
      [](const Problem& pb, const void* dy, const void* pr, const void* b, const void* l,
         void* dp, void* g, void* gl) { rows_backward_cuda(pb, dy, pr, b, l, dp, g, gl, stream()); },
  };
  return k;
}

std::tuple<at::Tensor, at::Tensor> forward_cuda_op(const at::Tensor& x, const at::Tensor& weight,
                                                   const std::optional<at::Tensor>& bias,
                                                   const std::optional<at::Tensor>& gate_logits) {
  check_cuda(x, weight);
  const c10::cuda::CUDAGuard guard(x.device());
  return forward(x, weight, bias, gate_logits, cuda_kernels());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda_op(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate_logits,
    const at::Tensor& saved) {
  check_cuda(x, weight);
  const c10::cuda::CUDAGuard guard(x.device());
  return backward(grad_out, x, weight, bias, gate_logits, saved, cuda_kernels());
}

}  // namespace

TORCH_LIBRARY_IMPL(fastprompt, CUDA, m) {
  m.impl("multispace_project", &forward_cuda_op);
  m.impl("multispace_project_backward", &backward_cuda_op);
}

}  // namespace multispace_project
}  // namespace fastprompt
