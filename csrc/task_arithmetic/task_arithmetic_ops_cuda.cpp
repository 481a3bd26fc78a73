// The kernel calls of combine and merge for CUDA tensors and their registration.
#include "common/torch_glue_cuda.h"
#include "task_arithmetic/task_arithmetic_glue.h"

namespace fastprompt::task_arithmetic {

template <>
struct Launch<Cuda> {
  static void combine(const PreparedCombine& p, at::Tensor& out) {
    if (p.problem.rows == 0 || p.problem.numel == 0) return;
    combine_cuda(p.problem, p.bank.data_ptr(), p.weights.data_ptr(),
                 p.base.defined() ? p.base.data_ptr() : nullptr, out.data_ptr(), Cuda::stream());
  }
  static void weights_grad(const CombineProblem& pb, const at::Tensor& g, const at::Tensor& bank,
                           at::Tensor& gw) {
    at::Tensor ws = workspace(combine_weights_grad_workspace_cuda(pb), bank);
    combine_weights_grad_cuda(pb, g.data_ptr(), bank.data_ptr(), gw.data_ptr(), ws.data_ptr(),
                              Cuda::stream());
  }
  static void merge(const PreparedMerge& p, at::Tensor& out) {
    if (p.problem.numel == 0) return;
    at::Tensor ws = workspace(merge_workspace_bytes_cuda(p.problem), p.vectors);
    merge_cuda(p.problem, p.vectors.data_ptr(), p.weights.data_ptr(), out.data_ptr(),
               ws.data_ptr(), Cuda::stream());
  }
};

}  // namespace fastprompt::task_arithmetic

FP_REGISTER_KERNELS(CUDA, Cuda, task_arithmetic)
