// Torch-free entry points of the batched vector arithmetic kernels: combine and the
// merge methods (CPU: task_arithmetic_cpu.cpp, CUDA: task_arithmetic_cuda.cu). The glue (task_arithmetic_ops*.cpp)
// checks the arguments and flattens every tensor to the contiguous 2-D layouts below.
//
// combine:  out[b, n] = base[b or 0, n] + sum_t w[b, t] bank[t, n]
//   backward: grad_bank[t, n] = sum_b w[b, t] g[b, n]  (the same kernel with w transposed),
//             grad_w[b, t] = sum_n g[b, n] bank[t, n]  (fixed-size chunks of n, partial sums
//             added in chunk order), grad_base = g or sum_b g[b] (same kernel, ones weights).
// merge: see fastprompt/reference/task_arithmetic.py (peft.utils.merge_utils semantics).
#pragma once

#include <cstdint>

#include "common/parallel.h"
#include "common/scalar.h"

namespace fastprompt {
namespace task_arithmetic {

// Elements per chunk of the fixed-order reduction of grad_w (CPU and CUDA).
constexpr int64_t kDotChunk = 4096;

struct CombineProblem {
  DType dtype;       // storage type of bank, base, out
  int64_t vectors;   // T
  int64_t rows;      // B
  int64_t numel;     // N
  int64_t base_rows; // 0 (no base), 1 (shared) or B (per row)
};

// bank (T, N), base (base_rows, N), out (B, N) in the storage type; weights (B, T) in the
// compute type C (double for float64, float otherwise).
void combine_cpu(const CombineProblem& pb, const void* bank, const void* weights, const void* base,
                 void* out, ParallelFor pf);
// grad_out, bank (storage); weights (B, T) in C; grad_weights (B, T) in C.
void combine_weights_grad_cpu(const CombineProblem& pb, const void* grad_out, const void* bank,
                              void* grad_weights, ParallelFor pf);

int64_t combine_weights_grad_workspace_cuda(const CombineProblem& pb);
void combine_cuda(const CombineProblem& pb, const void* bank, const void* weights, const void* base,
                  void* out, void* stream);
void combine_weights_grad_cuda(const CombineProblem& pb, const void* grad_out, const void* bank,
                               void* grad_weights, void* workspace, void* stream);

enum class Method : int { TaskArithmetic = 0, MagnitudePrune = 1, Ties = 2, Dare = 3, DareTies = 4 };
enum class Sign : int { Total = 0, Frequency = 1 };

struct MergeProblem {
  DType dtype;      // storage type of vectors and out
  int64_t vectors;  // T >= 1
  int64_t numel;    // N
  Method method;
  Sign sign;
  double density;   // in (0, 1]; >= 1 disables pruning
  uint64_t seed;    // DARE
};

inline bool uses_magnitude(Method m) { return m == Method::MagnitudePrune || m == Method::Ties; }
inline bool uses_dare(Method m) { return m == Method::Dare || m == Method::DareTies; }
inline bool uses_election(Method m) { return m == Method::Ties || m == Method::DareTies; }
// Entries kept per vector by magnitude pruning: int(density * N) (as peft).
inline int64_t magnitude_k(const MergeProblem& pb) {
  return int64_t(pb.density * double(pb.numel));
}

// vectors (T, N) storage; weights (T,) in C; out (N,) storage.
void merge_cpu(const MergeProblem& pb, const void* vectors, const void* weights, void* out,
               ParallelFor pf);
int64_t merge_workspace_bytes_cuda(const MergeProblem& pb);
void merge_cuda(const MergeProblem& pb, const void* vectors, const void* weights, void* out,
                void* workspace, void* stream);

}  // namespace task_arithmetic
}  // namespace fastprompt
