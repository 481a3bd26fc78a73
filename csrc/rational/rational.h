// Torch-free entry points of the rational activation kernels (CPU: rational_cpu*.cpp,
// CUDA: rational_cuda.cu). The glue in rational_ops.cpp checks the
// arguments and makes every input contiguous before calling these.
#pragma once

#include <cstdint>

#include "common/parallel.h"
#include "common/scalar.h"

namespace fastprompt {
namespace rational {

constexpr int kMaxDegree = 8;

// x is viewed as (rows, groups, group_size), contiguous; group g owns x[:, g, :].
struct Problem {
  DType dtype;          // storage type of x, y, grad_out, grad_x
  int64_t numel;        // rows * groups * group_size
  int64_t groups;       // G
  int64_t group_size;   // channels per group, C / G
  int degree;           // D = max(m, n), 1..kMaxDegree
  int form;             // kFormA or kFormB (rational_math.h)
  // (G, 2, D + 1) coefficients in the compute type (double for float64 x, else float):
  // [g][0][j] = a_j (zero past m), [g][1][k] = b_k (zero past n, b_0 unused).
  const void* coef;
};

void forward_cpu(const Problem& pb, const void* x, void* y, ParallelFor pf);
// grad_coef: (G, 2, D + 1) in the compute type, laid out like coef.
void backward_cpu(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                  void* grad_coef, ParallelFor pf);

// CUDA: `stream` is a cudaStream_t; `workspace` must hold workspace_bytes_cuda(pb) bytes.
int64_t workspace_bytes_cuda(const Problem& pb);
void forward_cuda(const Problem& pb, const void* x, void* y, void* stream);
void backward_cuda(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                   void* grad_coef, void* workspace, void* stream);

}  // namespace rational
}  // namespace fastprompt
