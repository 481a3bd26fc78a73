// Baseline-ISA CPU kernels of self-attention pooling and the runtime choice between them and
// the AVX2 build.
#define FP_CPU_ISA baseline
#include "attention_pool/attention_pool_cpu_impl.h"
#include "common/cpu_isa.h"

namespace fastprompt {
namespace attention_pool {

#if defined(__x86_64__) && defined(__GNUC__)
namespace avx2 {
void forward(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
             ParallelFor pf);
void backward(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
              const void* out, const void* lse, void* grad_z, void* grad_queries_t,
              ParallelFor pf);
}  // namespace avx2
static bool use_avx2() { return best_cpu_isa() >= CpuIsa::kAvx2; }
#else
static bool use_avx2() { return false; }
namespace avx2 {
using baseline::backward;
using baseline::forward;
}  // namespace avx2
#endif

void forward_cpu(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
                 ParallelFor pf) {
  if (use_avx2()) avx2::forward(pb, z, queries_t, out, lse, pf);
  else baseline::forward(pb, z, queries_t, out, lse, pf);
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
                  const void* out, const void* lse, void* grad_z, void* grad_queries_t,
                  ParallelFor pf) {
  if (use_avx2()) {
    avx2::backward(pb, grad_out, z, queries_t, out, lse, grad_z, grad_queries_t, pf);
  } else {
    baseline::backward(pb, grad_out, z, queries_t, out, lse, grad_z, grad_queries_t, pf);
  }
}

}  // namespace attention_pool
}  // namespace fastprompt
