// Baseline-ISA CPU kernels and the runtime choice between them and the AVX2 / AVX-512 builds.
#define FP_CPU_ISA baseline
#define FP_CPU_LANES 8
#include "rational/rational_cpu_impl.h"

#include "common/cpu_isa.h"

namespace fastprompt {
namespace rational {

#if defined(__x86_64__) && defined(__GNUC__)
#define FP_DECLARE_ISA(isa)                                                                    \
  namespace isa {                                                                              \
  void forward(const Problem& pb, const void* x, void* y, ParallelFor pf);                     \
  void backward(const Problem& pb, const void* grad_out, const void* x, void* grad_x,          \
                void* grad_coef, ParallelFor pf);                                              \
  }
FP_DECLARE_ISA(avx2)
FP_DECLARE_ISA(avx512)
#undef FP_DECLARE_ISA

using Isa = CpuIsa;

void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  switch (best_cpu_isa()) {
    case Isa::kAvx512: return avx512::forward(pb, x, y, pf);
    case Isa::kAvx2: return avx2::forward(pb, x, y, pf);
    default: return baseline::forward(pb, x, y, pf);
  }
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf) {
  switch (best_cpu_isa()) {
    case Isa::kAvx512: return avx512::backward(pb, grad_out, x, grad_x, grad_coef, pf);
    case Isa::kAvx2: return avx2::backward(pb, grad_out, x, grad_x, grad_coef, pf);
    default: return baseline::backward(pb, grad_out, x, grad_x, grad_coef, pf);
  }
}
#else
void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  baseline::forward(pb, x, y, pf);
}
void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf) {
  baseline::backward(pb, grad_out, x, grad_x, grad_coef, pf);
}
#endif

}  // namespace rational
}  // namespace fastprompt
