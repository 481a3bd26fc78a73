// Baseline-ISA CPU kernels of the multi-space projection and the runtime choice between them and
// the AVX2 build.
#define FP_CPU_ISA baseline
#include "multispace_project/multispace_project_cpu_impl.h"
#include "common/cpu_isa.h"

namespace fastprompt {
namespace multispace_project {

#if defined(__x86_64__) && defined(__GNUC__)
namespace avx2 {
void fold(const Problem& pb, const void* weight, const void* bias, const void* logits,
          void* w_eff, void* b_eff, ParallelFor pf);
void fold_backward(const Problem& pb, const void* weight, const void* bias, const void* logits,
                   const void* grad, const void* col_sum, void* grad_weight, void* grad_bias,
                   void* grad_logits, ParallelFor pf);
void rows_forward(const Problem& pb, const void* proj, const void* bias, const void* logits, void* out,
                  ParallelFor pf);
void rows_backward(const Problem& pb, const void* grad_out, const void* proj, const void* bias,
                   const void* logits,
                   void* grad_proj, void* gates, void* grad_logits, ParallelFor pf);
}  // namespace avx2
static bool use_avx2() { return best_cpu_isa() >= CpuIsa::kAvx2; }
#define FP_PICK(name, ...) \
  (use_avx2() ? avx2::name(__VA_ARGS__) : baseline::name##_any(__VA_ARGS__))
#else
#define FP_PICK(name, ...) baseline::name##_any(__VA_ARGS__)
#endif

void fold_cpu(const Problem& pb, const void* weight, const void* bias, const void* logits,
              void* w_eff, void* b_eff, ParallelFor pf) {
  FP_PICK(fold, pb, weight, bias, logits, w_eff, b_eff, pf);
}

void fold_backward_cpu(const Problem& pb, const void* weight, const void* bias, const void* logits,
                       const void* grad, const void* col_sum, void* grad_weight, void* grad_bias,
                       void* grad_logits, ParallelFor pf) {
  FP_PICK(fold_backward, pb, weight, bias, logits, grad, col_sum, grad_weight, grad_bias,
          grad_logits, pf);
}

void rows_forward_cpu(const Problem& pb, const void* proj, const void* bias, const void* logits,
                      void* out, ParallelFor pf) {
  FP_PICK(rows_forward, pb, proj, bias, logits, out, pf);
}

void rows_backward_cpu(const Problem& pb, const void* grad_out, const void* proj,
                       const void* bias, const void* logits, void* grad_proj, void* gates,
                       void* grad_logits, ParallelFor pf) {
  FP_PICK(rows_backward, pb, grad_out, proj, bias, logits, grad_proj, gates, grad_logits, pf);
}

}  // namespace multispace_project
}  // namespace fastprompt
