// Baseline build of the combine / merge CPU kernels and the run-time choice between it and the
// AVX2 / AVX-512 builds (the idiom is described in common/cpu_isa.h; every build gives the same
// results: no floating-point contraction).
#define FP_CPU_ISA baseline
#include "task_arithmetic/task_arithmetic_cpu_impl.h"

#include "common/cpu_isa.h"

namespace fastprompt {
namespace task_arithmetic {

#define FP_TASK_ARITHMETIC_CPU_ENTRY_POINTS                                                    \
  void combine(const CombineProblem& pb, const void* bank, const void* weights,                \
               const void* base, void* out, ParallelFor pf);                                   \
  void weights_grad(const CombineProblem& pb, const void* grad_out, const void* bank,          \
                    void* grad_weights, ParallelFor pf);                                       \
  void merge(const MergeProblem& pb, const void* vectors, const void* weights, void* out,      \
             ParallelFor pf);
FP_DECLARE_CPU_BUILD(avx2, FP_TASK_ARITHMETIC_CPU_ENTRY_POINTS)
FP_DECLARE_CPU_BUILD(avx512, FP_TASK_ARITHMETIC_CPU_ENTRY_POINTS)

void combine_cpu(const CombineProblem& pb, const void* bank, const void* weights, const void* base,
                 void* out, ParallelFor pf) {
  FP_CPU_DISPATCH(combine, pb, bank, weights, base, out, pf);
}

void combine_weights_grad_cpu(const CombineProblem& pb, const void* grad_out, const void* bank,
                              void* grad_weights, ParallelFor pf) {
  FP_CPU_DISPATCH(weights_grad, pb, grad_out, bank, grad_weights, pf);
}

void merge_cpu(const MergeProblem& pb, const void* vectors, const void* weights, void* out,
               ParallelFor pf) {
  FP_CPU_DISPATCH(merge, pb, vectors, weights, out, pf);
}

}  // namespace task_arithmetic
}  // namespace fastprompt
