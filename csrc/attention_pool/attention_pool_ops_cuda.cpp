// Self-attention pooling's kernel calls for CUDA tensors and their registration.
#include "attention_pool/attention_pool_glue.h"
#include "common/torch_glue_cuda.h"

namespace fastprompt::attention_pool {

template <>
struct Launch<Cuda> {
  // the per-tile score buffers of the kernels live in shared memory (48 KiB without opt-in)
  static constexpr int64_t kMaxQueries = 64;
  static void forward(const Prepared& p, at::Tensor& out, at::Tensor& lse) {
    at::Tensor ws = workspace(workspace_bytes_cuda(p.problem), p.z);
    forward_cuda(p.problem, p.z.data_ptr(), p.queries_t.data_ptr(), out.data_ptr(),
                 lse.data_ptr(), ws.data_ptr(), Cuda::stream());
  }
  static void backward(const Prepared& p, const at::Tensor& g, const at::Tensor& o,
                       const at::Tensor& l, at::Tensor& grad_z, at::Tensor& grad_queries_t) {
    if (p.problem.tokens == 0) return;
    at::Tensor ws = workspace(workspace_bytes_cuda(p.problem), p.z);
    backward_cuda(p.problem, g.data_ptr(), p.z.data_ptr(), p.queries_t.data_ptr(), o.data_ptr(),
                  l.data_ptr(), grad_z.data_ptr(), grad_queries_t.data_ptr(), ws.data_ptr(),
                  Cuda::stream());
  }
};

}  // namespace fastprompt::attention_pool

FP_REGISTER_KERNELS(CUDA, Cuda, attention_pool)
