// The same CPU kernels compiled for AVX2 + FMA; chosen at run time when the CPU has them.
// Shared headers are included before the target pragma so their inline helpers keep the
// baseline target (one definition for both builds) and are inlined into the AVX2 code.
#if defined(__x86_64__) && defined(__GNUC__)
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/dispatch.h"
#include "multispace_project/multispace_project.h"

#pragma GCC target("avx2,fma")
#define FP_CPU_ISA avx2
#include "multispace_project/multispace_project_cpu_impl.h"

namespace fastprompt {
namespace multispace_project {
namespace avx2 {
void fold(const Problem& pb, const void* weight, const void* bias, const void* logits,
          void* w_eff, void* b_eff, ParallelFor pf) {
  fold_any(pb, weight, bias, logits, w_eff, b_eff, pf);
}
void fold_backward(const Problem& pb, const void* weight, const void* bias, const void* logits,
                   const void* grad, const void* col_sum, void* grad_weight, void* grad_bias,
                   void* grad_logits, ParallelFor pf) {
  fold_backward_any(pb, weight, bias, logits, grad, col_sum, grad_weight, grad_bias, grad_logits,
                    pf);
}
void rows_forward(const Problem& pb, const void* proj, const void* bias, const void* logits, void* out,
                  ParallelFor pf) {
  rows_forward_any(pb, proj, bias, logits, out, pf);
}
void rows_backward(const Problem& pb, const void* grad_out, const void* proj, const void* bias,
                   const void* logits,
                   void* grad_proj, void* gates, void* grad_logits, ParallelFor pf) {
  rows_backward_any(pb, grad_out, proj, bias, logits, grad_proj, gates, grad_logits, pf);
}
}  // namespace avx2
}  // namespace multispace_project
}  // namespace fastprompt
#endif
