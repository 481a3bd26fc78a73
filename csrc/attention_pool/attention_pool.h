// Torch-free entry points of the self-attention pooling kernels (CPU: attention_pool_cpu*.cpp,
// CUDA: attention_pool_cuda.cu). The glue in attention_pool_ops.cpp checks the
// arguments and makes every input contiguous before calling these.
//
// Math: u[b,t,k] = z[b,t,:] . w[:,k]; a[b,:,k] = softmax over the real tokens of
// u[b,:,k]; out[b,k,:] = sum_t a[b,t,k] z[b,t,:]; lse[b,k] = log sum_t exp(u[b,t,k]).
// Backward with c[b,k] = grad_out[b,k,:] . out[b,k,:] and g[b,t,k] = z[b,t,:] . grad_out[b,k,:]:
//   du[b,t,k] = a[b,t,k] (g[b,t,k] - c[b,k])
//   grad_z[b,t,:] = sum_k a[b,t,k] grad_out[b,k,:] + du[b,t,k] w[:,k]
//   grad_w[:,k] = sum_{b,t} du[b,t,k] z[b,t,:]
#pragma once

#include <cstdint>

#include "common/parallel.h"
#include "common/scalar.h"

namespace fastprompt {
namespace attention_pool {

// Tokens per work item along T. Fixed, so that partial results are combined in an order that
// depends on the shapes alone (bitwise reproducible for any thread count).
constexpr int64_t kTokenChunk = 256;

struct Problem {
  DType dtype;              // storage type of z, out, grad_z
  int64_t batch;            // B
  int64_t tokens;           // T
  int64_t dim;              // D
  int64_t num_queries;      // K
  const uint8_t* mask;      // (B, T), nonzero = real token; nullptr = every token is real
};

// Compute type C: double for float64 z, float otherwise.
//   queries_t: (K, D) in C (the queries transposed)
//   out:       (B, K, D) in the storage type;  lse: (B, K) in C, -inf for a row with no real token
void forward_cpu(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
                 ParallelFor pf);
//   grad_out, out: (B, K, D) in C;  grad_z: (B, T, D) in the storage type;
//   grad_queries_t: (K, D) in C (overwritten)
void backward_cpu(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
                  const void* out, const void* lse, void* grad_z, void* grad_queries_t,
                  ParallelFor pf);

// CUDA: `stream` is a cudaStream_t; `workspace` must hold workspace_bytes_cuda(pb) bytes.
int64_t workspace_bytes_cuda(const Problem& pb);
void forward_cuda(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
                  void* workspace, void* stream);
void backward_cuda(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
                   const void* out, const void* lse, void* grad_z, void* grad_queries_t,
                   void* workspace, void* stream);

}  // namespace attention_pool
}  // namespace fastprompt
