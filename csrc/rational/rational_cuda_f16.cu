// Rational CUDA kernels for Half storage (see rational_cuda_impl.cuh).
#include "rational/rational_cuda_impl.cuh"

namespace fastprompt {
namespace rational {
namespace detail {
FP_RATIONAL_CUDA_TYPED(Half, )
}  // namespace detail
}  // namespace rational
}  // namespace fastprompt
