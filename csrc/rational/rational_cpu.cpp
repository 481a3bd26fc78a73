// Baseline build of the rational CPU kernels and the run-time choice between it and the AVX2 /
// AVX-512 builds (the idiom is described in common/cpu_isa.h).
#define FP_CPU_ISA baseline
#define FP_CPU_LANES 8
#include "rational/rational_cpu_impl.h"

#include "common/cpu_isa.h"

namespace fastprompt {
namespace rational {

#define FP_RATIONAL_CPU_ENTRY_POINTS                                                           \
  void forward(const Problem& pb, const void* x, void* y, ParallelFor pf);                     \
  void backward(const Problem& pb, const void* grad_out, const void* x, void* grad_x,          \
                void* grad_coef, ParallelFor pf);
FP_DECLARE_CPU_BUILD(avx2, FP_RATIONAL_CPU_ENTRY_POINTS)
FP_DECLARE_CPU_BUILD(avx512, FP_RATIONAL_CPU_ENTRY_POINTS)

void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  FP_CPU_DISPATCH(forward, pb, x, y, pf);
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf) {
  FP_CPU_DISPATCH(backward, pb, grad_out, x, grad_x, grad_coef, pf);
}

}  // namespace rational
}  // namespace fastprompt
