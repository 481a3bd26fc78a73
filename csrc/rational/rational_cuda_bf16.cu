// Rational CUDA kernels for BFloat16 storage (see rational_cuda_impl.cuh).
#include "rational/rational_cuda_impl.cuh"

namespace fastprompt {
namespace rational {
namespace detail {
FP_RATIONAL_CUDA_TYPED(BFloat16, )
}  // namespace detail
}  // namespace rational
}  // namespace fastprompt
