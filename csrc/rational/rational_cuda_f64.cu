// Rational CUDA kernels for double storage (see rational_cuda_impl.cuh).
#include "rational/rational_cuda_impl.cuh"

namespace fastprompt {
namespace rational {
namespace detail {
FP_RATIONAL_CUDA_TYPED(double, )
}  // namespace detail
}  // namespace rational
}  // namespace fastprompt
