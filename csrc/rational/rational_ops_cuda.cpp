// The rational activation's kernel calls for CUDA tensors and their registration.
#include "common/torch_glue_cuda.h"
#include "rational/rational_glue.h"

namespace fastprompt::rational {

template <>
struct Launch<Cuda> {
  static void forward(const Prepared& p, at::Tensor& y) {
    forward_cuda(p.problem, p.x.data_ptr(), y.data_ptr(), Cuda::stream());
  }
  static void backward(const Prepared& p, const at::Tensor& g, at::Tensor& grad_x,
                       at::Tensor& grad_coef) {
    at::Tensor ws = workspace(workspace_bytes_cuda(p.problem), p.x);
    backward_cuda(p.problem, g.data_ptr(), p.x.data_ptr(), grad_x.data_ptr(),
                  grad_coef.data_ptr(), ws.data_ptr(), Cuda::stream());
  }
};

}  // namespace fastprompt::rational

FP_REGISTER_KERNELS(CUDA, Cuda, rational)
