// Torch-free entry points of the multi-space projection kernels (CPU:
// multispace_project_cpu*.cpp, CUDA: multispace_project_cuda.cu). The matrix products run in the
// device-agnostic glue (multispace_project_ops.cpp) through the vendor BLAS; these kernels fuse
// everything around them. Every pointer is contiguous; S is the storage dtype of the problem and
// A the accumulation type (double for float64, float otherwise).
//
// Math, g = softmax(gate logits) (1/N for no logits), M rows, N spaces:
//   y[m] = sum_k g_k (x[m] @ W_k + b_k)
// Shared gate (or none): W_eff = sum_k g_k W_k, b_eff = sum_k g_k b_k, y = x @ W_eff + b_eff;
//   backward with G = x^T dy (d_in, d_out) and s = sum_m dy[m] (d_out):
//   dW_k = g_k G, db_k = g_k s, dg_k = <G, W_k> + <s, b_k>, dlogits = g (dg - <g, dg>).
// Per-row gates: P_k = x @ W_k (N, M, d_out), one product per space straight into P (no copy
//   of the weights); y[m] = sum_k g[m,k] (P_k[m] + b_k). P is saved for the backward:
//   dP_k[m] = g[m,k] dy[m], dg[m,k] = <dy[m], P_k[m]> + <dy[m], b_k>, then dW_k = x^T dP_k
//   (straight into dW), dx = sum_k dP_k W_k^T (accumulated in space order), db = g^T dy.
// Every reduction is summed in an order fixed by the shapes alone (no float atomics): results
// are bitwise reproducible for any thread count.
#pragma once

#include <cstdint>

#include "common/parallel.h"
#include "common/scalar.h"

namespace fastprompt {
namespace multispace_project {

// Elements of a (d_in * d_out) matrix per work item of the fold kernels (fixed, so partial sums
// combine in a shape-determined order).
constexpr int64_t kChunk = 4096;

struct Problem {
  DType dtype;     // storage type of every tensor argument except col_sum (A)
  int64_t rows;    // M
  int64_t spaces;  // N
  int64_t d_in;
  int64_t d_out;
};

inline int64_t fold_chunks(const Problem& pb) {
  const int64_t e = pb.d_in * pb.d_out;
  return (e + kChunk - 1) / kChunk;
}

// ---- shared gate: logits (N,) or nullptr (uniform); bias (N, d_out) or nullptr ----------------
// w_eff (d_in, d_out) = sum_k g_k weight[k]; b_eff (d_out) = sum_k g_k bias[k] when bias.
void fold_cpu(const Problem& pb, const void* weight, const void* bias, const void* logits,
              void* w_eff, void* b_eff, ParallelFor pf);
// grad (d_in, d_out) = x^T dy in S; col_sum (d_out) in A. Writes grad_weight (N, d_in, d_out),
// grad_bias (N, d_out) when bias, grad_logits (N,) when logits.
void fold_backward_cpu(const Problem& pb, const void* weight, const void* bias, const void* logits,
                       const void* grad, const void* col_sum, void* grad_weight, void* grad_bias,
                       void* grad_logits, ParallelFor pf);

// ---- per-row gates: logits (M, N) -------------------------------------------------------------
// proj (N, M, d_out) = x @ W_k (read only); writes out (M, d_out).
void rows_forward_cpu(const Problem& pb, const void* proj, const void* bias, const void* logits,
                      void* out, ParallelFor pf);
// proj = P from the forward. Writes grad_proj (N, M, d_out) = g dy, gates (M, N) = g,
// grad_logits (M, N).
void rows_backward_cpu(const Problem& pb, const void* grad_out, const void* proj,
                       const void* bias, const void* logits, void* grad_proj, void* gates,
                       void* grad_logits, ParallelFor pf);

// ---- CUDA (stream is a cudaStream_t) ----------------------------------------------------------
int64_t fold_backward_workspace_bytes_cuda(const Problem& pb);
void fold_cuda(const Problem& pb, const void* weight, const void* bias, const void* logits,
               void* w_eff, void* b_eff, void* stream);
void fold_backward_cuda(const Problem& pb, const void* weight, const void* bias,
                        const void* logits, const void* grad, const void* col_sum,
                        void* grad_weight, void* grad_bias, void* grad_logits, void* workspace,
                        void* stream);
void rows_forward_cuda(const Problem& pb, const void* proj, const void* bias,
                       const void* logits, void* out, void* stream);
void rows_backward_cuda(const Problem& pb, const void* grad_out, const void* proj,
                        const void* bias, const void* logits, void* grad_proj, void* gates, void* grad_logits,
                        void* stream);

}  // namespace multispace_project
}  // namespace fastprompt
