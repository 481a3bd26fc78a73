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

// Groups of fewer than 16 channels leave every run a partial 16-lane vector (element-wise loads,
// stores and accumulator traffic per run); the 8-lane AVX2 build runs them faster (measured at
// 2^25 float32, C = 64, G = 8: forward 57 vs 94 ms, forward + backward 208 vs 290 ms).
inline CpuIsa widest_for(const Problem& pb) {
  return pb.group_size < 16 ? CpuIsa::kAvx2 : CpuIsa::kAvx512;
}

void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  FP_CPU_DISPATCH_AT_MOST(widest_for(pb), forward, pb, x, y, pf);
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf) {
  FP_CPU_DISPATCH_AT_MOST(widest_for(pb), backward, pb, grad_out, x, grad_x, grad_coef, pf);
}

}  // namespace rational
}  // namespace fastprompt
