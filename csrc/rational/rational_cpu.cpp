// Baseline-ISA CPU kernels and the runtime choice between them and the AVX2 build.
#define FP_CPU_ISA baseline
#include "rational/rational_cpu_impl.h"

namespace fastprompt {
namespace rational {

#if defined(__x86_64__) && defined(__GNUC__)
namespace avx2 {
void forward(const Problem& pb, const void* x, void* y, ParallelFor pf);
void backward(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
              void* grad_coef, ParallelFor pf);
}  // namespace avx2
static bool use_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#else
static bool use_avx2() { return false; }
namespace avx2 {
inline void forward(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  baseline::forward(pb, x, y, pf);
}
inline void backward(const Problem& pb, const void* g, const void* x, void* gx, void* gc,
                     ParallelFor pf) {
  baseline::backward(pb, g, x, gx, gc, pf);
}
}  // namespace avx2
#endif

void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  if (use_avx2()) avx2::forward(pb, x, y, pf);
  else baseline::forward(pb, x, y, pf);
}

void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf) {
  if (use_avx2()) avx2::backward(pb, grad_out, x, grad_x, grad_coef, pf);
  else baseline::backward(pb, grad_out, x, grad_x, grad_coef, pf);
}

}  // namespace rational
}  // namespace fastprompt
