// The multi-space projection's fused kernels for CUDA tensors and their registration; the shared
// glue (multispace_project_ops.cpp) runs the cuBLAS products.
#include "common/torch_glue_cuda.h"
#include "multispace_project/multispace_project_glue.h"

namespace fastprompt::multispace_project {

template <>
struct Launch<Cuda> {
  static constexpr int64_t kMaxSpaces = 1024;  // the gates of a block live in shared memory
  static const Kernels& kernels() {
    static const Kernels k{
        [](const Problem& pb, const void* w, const void* b, const void* l, void* we, void* be) {
          fold_cuda(pb, w, b, l, we, be, Cuda::stream());
        },
        [](const Problem& pb, const void* w, const void* b, const void* l, const void* g,
           const void* cs, void* gw, void* gb, void* gl, const at::Tensor& like) {
          at::Tensor ws = workspace(fold_backward_workspace_bytes_cuda(pb), like);
          fold_backward_cuda(pb, w, b, l, g, cs, gw, gb, gl, ws.data_ptr(), Cuda::stream());
        },
        [](const Problem& pb, const void* pr, const void* b, const void* l, void* out) {
          rows_forward_cuda(pb, pr, b, l, out, Cuda::stream());
        },
        [](const Problem& pb, const void* dy, const void* pr, const void* b, const void* l,
           void* dp, void* g, void* gl) {
          rows_backward_cuda(pb, dy, pr, b, l, dp, g, gl, Cuda::stream());
        },
    };
    return k;
  }
};

}  // namespace fastprompt::multispace_project

FP_REGISTER_KERNELS(CUDA, Cuda, multispace_project)
