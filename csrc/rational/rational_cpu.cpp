// Baseline-ISA CPU kernels and the runtime choice between them and the AVX2 / AVX-512 builds.
#define FP_CPU_ISA baseline
#define FP_CPU_LANES 8
#include "rational/rational_cpu_impl.h"

#include <cstdlib>
#include <cstring>

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

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The widest instruction set this CPU has, capped by FASTPROMPT_CPU_ISA=baseline|avx2|avx512
// (read on every call, so tests can compare the builds in one process).
static Isa best_isa() {
  static const Isa supported = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
      return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
    return Isa::kBaseline;
  }();
  const char* cap = std::getenv("FASTPROMPT_CPU_ISA");
  if (cap == nullptr) return supported;
  const Isa wanted = std::strcmp(cap, "baseline") == 0 ? Isa::kBaseline
                     : std::strcmp(cap, "avx2") == 0   ? Isa::kAvx2
                                                       : Isa::kAvx512;
  return std::min(wanted, supported);
}

void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  switch (best_isa()) {
    case Isa::kAvx512: return avx512::forward(pb, x, y, pf);
    case Isa::kAvx2: return avx2::forward(pb, x, y, pf);
    default: return baseline::forward(pb, x, y, pf);
  }
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf) {
  switch (best_isa()) {
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
