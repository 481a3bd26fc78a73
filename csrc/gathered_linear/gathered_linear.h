// Torch-free entry point of the gathered linear CUDA kernel (gathered_linear_cuda.cu): the weight
// gradient of one linear layer per batch row, chosen from A stacked layers by an index. The
// forward and the input gradient, on the CPU and on CUDA, gather the rows' weights and run the
// vendor BLAS's batched product (gathered_linear_ops.cpp); the glue also checks the arguments and
// makes every input contiguous before calling this.
//
// Math, x (B, T, K), weight (A, N, K), bias (A, N) or none, index (B,) with values in [0, A):
//   out[b, t, :] = weight[index[b]] @ x[b, t, :] + bias[index[b]]
// Backward, g = grad_out (B, T, N):
//   grad_x[b, t, :]  = weight[index[b]]^T @ g[b, t, :]
//   grad_weight[a]   = sum over rows b with index[b] = a, and t, of g[b, t, :] x[b, t, :]^T
//   grad_bias[a]     = the same sum of g[b, t, :]
// The weight gradient reads the rows of each layer through `order` (B,), the rows sorted by
// index (stable), and `offsets` (A + 1,), where layer a's rows are order[offsets[a]:offsets[a+1]].
// Every output element is summed by one thread in an order fixed by the shapes and the index
// (no float atomics): results are bitwise reproducible from run to run, and the number of
// kernels does not depend on how many different layers the batch uses.
#pragma once

#include <cstdint>

#include "common/scalar.h"

namespace fastprompt {
namespace gathered_linear {

struct Problem {
  DType dtype;     // storage type of x, out, grad_out, grad_x, grad_weight, grad_bias
  int64_t batch;   // B
  int64_t tokens;  // T
  int64_t in;      // K
  int64_t out;     // N
  int64_t layers;  // A
  bool bias;
};

// stream is a cudaStream_t. grad_weight (A, N, K) and, when pb.bias, grad_bias (A, N), in the
// dtype of x; layers without rows get zeros.
void backward_weight_cuda(const Problem& pb, const void* grad_out, const void* x,
                          const int64_t* order, const int64_t* offsets, void* grad_weight,
                          void* grad_bias, void* stream);

}  // namespace gathered_linear
}  // namespace fastprompt
