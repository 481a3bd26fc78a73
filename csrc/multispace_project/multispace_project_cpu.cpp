// Baseline build of the multi-space projection CPU kernels and the run-time choice between it
// and the AVX2 build (the idiom is described in common/cpu_isa.h).
#define FP_CPU_ISA baseline
#include "multispace_project/multispace_project_cpu_impl.h"

#include "common/cpu_isa.h"

namespace fastprompt {
namespace multispace_project {

FP_DECLARE_CPU_BUILD(avx2,
  void run_fold(const Problem& pb, const void* weight, const void* bias, const void* logits,
                void* w_eff, void* b_eff, ParallelFor pf);
  void run_fold_backward(const Problem& pb, const void* weight, const void* bias,
                         const void* logits, const void* grad, const void* col_sum,
                         void* grad_weight, void* grad_bias, void* grad_logits, ParallelFor pf);
  void run_rows_forward(const Problem& pb, const void* proj, const void* bias, const void* logits,
                        void* out, ParallelFor pf);
  void run_rows_backward(const Problem& pb, const void* grad_out, const void* proj,
                         const void* bias, const void* logits, void* grad_proj, void* gates,
                         void* grad_logits, ParallelFor pf);)
FP_ALIAS_CPU_BUILD(avx512, avx2)

void fold_cpu(const Problem& pb, const void* weight, const void* bias, const void* logits,
              void* w_eff, void* b_eff, ParallelFor pf) {
  FP_CPU_DISPATCH(run_fold, pb, weight, bias, logits, w_eff, b_eff, pf);
}

void fold_backward_cpu(const Problem& pb, const void* weight, const void* bias, const void* logits,
                       const void* grad, const void* col_sum, void* grad_weight, void* grad_bias,
                       void* grad_logits, ParallelFor pf) {
  FP_CPU_DISPATCH(run_fold_backward, pb, weight, bias, logits, grad, col_sum, grad_weight,
                  grad_bias, grad_logits, pf);
}

void rows_forward_cpu(const Problem& pb, const void* proj, const void* bias, const void* logits,
                      void* out, ParallelFor pf) {
  FP_CPU_DISPATCH(run_rows_forward, pb, proj, bias, logits, out, pf);
}

void rows_backward_cpu(const Problem& pb, const void* grad_out, const void* proj,
                       const void* bias, const void* logits, void* grad_proj, void* gates,
                       void* grad_logits, ParallelFor pf) {
  FP_CPU_DISPATCH(run_rows_backward, pb, grad_out, proj, bias, logits, grad_proj, gates,
                  grad_logits, pf);
}

}  // namespace multispace_project
}  // namespace fastprompt
