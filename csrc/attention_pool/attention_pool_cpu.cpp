// Baseline build of the self-attention pooling CPU kernels and the run-time choice between it
// and the AVX2 build (the idiom is described in common/cpu_isa.h).
#define FP_CPU_ISA baseline
#include "attention_pool/attention_pool_cpu_impl.h"

#include "common/cpu_isa.h"

namespace fastprompt {
namespace attention_pool {

FP_DECLARE_CPU_BUILD(avx2,
  void forward(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
               ParallelFor pf);
  void backward(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
                const void* out, const void* lse, void* grad_z, void* grad_queries_t,
                ParallelFor pf);)
FP_ALIAS_CPU_BUILD(avx512, avx2)

void forward_cpu(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
                 ParallelFor pf) {
  FP_CPU_DISPATCH(forward, pb, z, queries_t, out, lse, pf);
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
                  const void* out, const void* lse, void* grad_z, void* grad_queries_t,
                  ParallelFor pf) {
  FP_CPU_DISPATCH(backward, pb, grad_out, z, queries_t, out, lse, grad_z, grad_queries_t, pf);
}

}  // namespace attention_pool
}  // namespace fastprompt
