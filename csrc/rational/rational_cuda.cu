// Host entry points of the rational CUDA kernels: dispatch on the storage type to the
// per-type code in rational_cuda_<dtype>.cu (kernels in rational_cuda_impl.cuh).
#include <cuda_runtime.h>

#include "common/dispatch.h"
#include "rational/rational.h"
#include "rational/rational_cuda_typed.h"

namespace fastprompt {
namespace rational {
namespace detail {
FP_RATIONAL_CUDA_TYPED(float, extern)
FP_RATIONAL_CUDA_TYPED(double, extern)
FP_RATIONAL_CUDA_TYPED(Half, extern)
FP_RATIONAL_CUDA_TYPED(BFloat16, extern)
}  // namespace detail

int64_t workspace_bytes_cuda(const Problem& pb) {
  // (groups, chunks, 4 (D + 1)) double partials: fast and wide sums of the a- and b-terms
  return pb.groups * detail::backward_chunks_per_group(pb) * 4 * (pb.degree + 1) *
         int64_t(sizeof(double));
}

void forward_cuda(const Problem& pb, const void* x, void* y, void* stream) {
  if (pb.numel == 0) return;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    detail::forward_typed<T>(pb, x, y, static_cast<cudaStream_t>(stream));
  });
}

void backward_cuda(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                   void* grad_coef, void* workspace, void* stream) {
  if (pb.numel == 0) return;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    detail::backward_typed<T>(pb, grad_out, x, grad_x, grad_coef, workspace,
                              static_cast<cudaStream_t>(stream));
  });
}

}  // namespace rational
}  // namespace fastprompt
