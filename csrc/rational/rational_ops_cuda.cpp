// Torch glue of the rational activation for CUDA tensors.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/torch_glue.h"
#include "rational/rational_glue.h"

namespace fastprompt {
namespace rational {
namespace {

void check_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cuda(), "x: expected a CUDA tensor, got one on ", x.device());
}

at::Tensor forward_cuda_op(const at::Tensor& x, const at::Tensor& numerator,
                           const at::Tensor& denominator, c10::string_view form) {
  check_cuda(x);
  const c10::cuda::CUDAGuard guard(x.device());
  Prepared p = prepare(x, numerator, denominator, std::string(form));
  at::Tensor y = at::empty_like(p.x);
  forward_cuda(p.problem, p.x.data_ptr(), y.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda_op(const at::Tensor& grad_out,
                                                                const at::Tensor& x,
                                                                const at::Tensor& numerator,
                                                                const at::Tensor& denominator,
                                                                c10::string_view form) {
  check_cuda(x);
  const c10::cuda::CUDAGuard guard(x.device());
  Prepared p = prepare(x, numerator, denominator, std::string(form));
  check_grad_out(grad_out, x);
  at::Tensor g = grad_out.contiguous();
  at::Tensor grad_x = at::empty_like(p.x);
  at::Tensor grad_coef = at::zeros_like(p.coef);
  if (x.numel() > 0) {
    at::Tensor workspace =
        at::empty({workspace_bytes_cuda(p.problem)}, x.options().dtype(at::kByte));
    backward_cuda(p.problem, g.data_ptr(), p.x.data_ptr(), grad_x.data_ptr(), grad_coef.data_ptr(),
                  workspace.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  }
  auto [gn, gd] = unpack_coef_grad(grad_coef, numerator, denominator);
  return {grad_x, gn, gd};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastprompt, CUDA, m) {
  m.impl("rational", &forward_cuda_op);
  m.impl("rational_backward", &backward_cuda_op);
}

}  // namespace rational
}  // namespace fastprompt
