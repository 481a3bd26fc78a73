// Per-storage-type entry points of the rational CUDA kernels: each is defined (explicitly
// instantiated) in its own rational_cuda_<dtype>.cu, so that the four compile in parallel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/scalar.h"
#include "rational/rational.h"

namespace fastprompt {
namespace rational {
namespace detail {

// Elements of a group per backward work item (256 threads x 8 elements x 8 steps): the shapes
// alone decide the split, so the summation order is the same on every GPU.
constexpr int64_t kBackwardChunk = 256 * 8 * 8;

inline int64_t backward_chunks_per_group(const Problem& pb) {
  const int64_t group_elems = pb.numel / pb.groups;
  return group_elems > kBackwardChunk ? (group_elems + kBackwardChunk - 1) / kBackwardChunk : 1;
}

template <typename T>
void forward_typed(const Problem& pb, const void* x, void* y, cudaStream_t s);
template <typename T>
void backward_typed(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                    void* grad_coef, void* workspace, cudaStream_t s);

#define FP_RATIONAL_CUDA_TYPED(T, EXTERN)                                                       \
  EXTERN template void forward_typed<T>(const Problem&, const void*, void*, cudaStream_t);     \
  EXTERN template void backward_typed<T>(const Problem&, const void*, const void*, void*,     \
                                         void*, void*, cudaStream_t);

}  // namespace detail
}  // namespace rational
}  // namespace fastprompt
