// Baseline-ISA CPU kernels of combine and merge and the runtime choice between them and the
// AVX2 / AVX-512 builds (same results on every build: no floating-point contraction).
#define FP_CPU_ISA baseline
#include "vectors/vectors_cpu_impl.h"

#include "common/cpu_isa.h"

namespace fastprompt {
namespace vectors {

#if defined(__x86_64__) && defined(__GNUC__)
#define FP_DECLARE_ISA(isa)                                                                    \
  namespace isa {                                                                              \
  void combine(const CombineProblem& pb, const void* bank, const void* weights,                \
               const void* base, void* out, ParallelFor pf);                                   \
  void weights_grad(const CombineProblem& pb, const void* grad_out, const void* bank,          \
                    void* grad_weights, ParallelFor pf);                                       \
  void merge(const MergeProblem& pb, const void* vectors, const void* weights, void* out,      \
             ParallelFor pf);                                                                  \
  }
FP_DECLARE_ISA(avx2)
FP_DECLARE_ISA(avx512)
#undef FP_DECLARE_ISA

using Isa = CpuIsa;

#define FP_ISA_CALL(fn, ...)                                   \
  switch (best_cpu_isa()) {                                        \
    case Isa::kAvx512: return avx512::fn(__VA_ARGS__);          \
    case Isa::kAvx2: return avx2::fn(__VA_ARGS__);              \
    default: return baseline::fn(__VA_ARGS__);                  \
  }
#else
#define FP_ISA_CALL(fn, ...) return baseline::fn(__VA_ARGS__);
#endif

void combine_cpu(const CombineProblem& pb, const void* bank, const void* weights, const void* base,
                 void* out, ParallelFor pf) {
  FP_ISA_CALL(combine, pb, bank, weights, base, out, pf)
}

void combine_weights_grad_cpu(const CombineProblem& pb, const void* grad_out, const void* bank,
                              void* grad_weights, ParallelFor pf) {
  FP_ISA_CALL(weights_grad, pb, grad_out, bank, grad_weights, pf)
}

void merge_cpu(const MergeProblem& pb, const void* vectors, const void* weights, void* out,
               ParallelFor pf) {
  FP_ISA_CALL(merge, pb, vectors, weights, out, pf)
}

}  // namespace vectors
}  // namespace fastprompt
