// CUDA kernels of the multi-space projection (torch-free: raw pointers, sizes, a cudaStream_t).
// The matrix products run in the glue (cuBLAS through at::mm); these kernels fuse the rest.
//
// fold:          grid-stride over packs of 4 elements of the (d_in, d_out) matrix (16-byte loads
//                for float), each summing its N weights with the softmax gates (computed once per
//                block in shared memory).
// fold backward: pass 1, one block per kChunk elements: reads G and each W_k chunk once, writes
//                dW_k = g_k G and the block's partial <G, W_k> (fixed-order block reduction);
//                pass 2, one block: sums the partials in chunk order, adds <s, b_k>, applies the
//                softmax backward and writes db_k = g_k s.
// rows:          one block per row (grid-stride): softmax of the row's N logits in shared memory,
//                threads over d_out in packs of 4; the backward reduces <dy, P_k + b_k> per space
//                with fixed-order block reductions. No atomics anywhere: bitwise reproducible.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "common/scalar.h"
#include "multispace_project/multispace_project.h"

namespace fastprompt {
namespace multispace_project {
namespace {

using namespace gpu;

constexpr int kThreads = 256;
constexpr int kPerThread = kChunk / kThreads;  // elements per thread in fold backward pass 1

int grid_for(int64_t work, int threads) { return int(blocks_for(work, threads, kMaxGridYZ)); }

// softmax of n logits (nullptr: 1/n), by one thread
template <typename S, typename A>
__device__ void softmax_serial(const S* logits, int64_t n, A* g) {
  if (logits == nullptr) {
    for (int64_t k = 0; k < n; ++k) g[k] = A(1) / A(n);
    return;
  }
  A top = A(Convert<S>::load(logits[0]));
  for (int64_t k = 1; k < n; ++k) top = max(top, A(Convert<S>::load(logits[k])));
  A total = 0;
  for (int64_t k = 0; k < n; ++k) {
    g[k] = exp(A(Convert<S>::load(logits[k])) - top);
    total += g[k];
  }
  const A inv = A(1) / total;
  for (int64_t k = 0; k < n; ++k) g[k] *= inv;
}

// Sum over the block in a fixed order; the result is valid in thread 0. scratch: 32 entries.
template <typename A>
__device__ A block_sum(A v, A* scratch) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A r = 0;
  if (warp == 0) {
    r = lane < int(blockDim.x / 32) ? scratch[lane] : A(0);
    for (int off = 16; off > 0; off /= 2) r += __shfl_down_sync(0xffffffffu, r, off);
  }
  __syncthreads();
  return r;
}

// out[e] = sum_k g_k src[k * e_total + e], V elements per step
template <typename S, int V>
__global__ void fold_kernel(const S* __restrict__ src, const S* __restrict__ logits,
                            S* __restrict__ out, int64_t n, int64_t e_total) {
  using A = acc_t<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* g = reinterpret_cast<A*>(smem_raw);
  if (threadIdx.x == 0) softmax_serial(logits, n, g);
  __syncthreads();
  const int64_t packs = e_total / V;
  const int64_t stride = grid_threads();
  for (int64_t p = global_thread(); p < packs; p += stride) {
    A acc[V] = {};
    for (int64_t k = 0; k < n; ++k) {
      A w[V];
      load_pack<S, V>(src + k * e_total + p * V, w);
      const A gk = g[k];
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += gk * w[i];
    }
    store_pack<S, V>(out + p * V, acc);
  }
}

// pass 1 of the fold backward: one block per chunk of kChunk elements
template <typename S>
__global__ void fold_backward_partial_kernel(const S* __restrict__ weight,
                                             const S* __restrict__ logits,
                                             const S* __restrict__ grad, S* __restrict__ grad_weight,
                                             acc_t<S>* __restrict__ partial, int64_t n,
                                             int64_t e_total, bool want_dg) {
  using A = acc_t<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* scratch = reinterpret_cast<A*>(smem_raw);
  A* g = scratch + 32;
  if (threadIdx.x == 0) softmax_serial(logits, n, g);
  __syncthreads();
  const int64_t chunk = blockIdx.x;
  const int64_t e0 = chunk * kChunk;
  A gv[kPerThread];
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int64_t e = e0 + threadIdx.x + int64_t(j) * kThreads;
    gv[j] = e < e_total ? A(Convert<S>::load(grad[e])) : A(0);
  }
  for (int64_t k = 0; k < n; ++k) {
    const A gk = g[k];
    const S* w = weight + k * e_total;
    S* dw = grad_weight + k * e_total;
    A dot = 0;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t e = e0 + threadIdx.x + int64_t(j) * kThreads;
      if (e < e_total) {
        dw[e] = Convert<S>::store(gk * gv[j]);
        if (want_dg) dot += gv[j] * A(Convert<S>::load(w[e]));
      }
    }
    if (want_dg) {
      const A total = block_sum(dot, scratch);
      if (threadIdx.x == 0) partial[chunk * n + k] = total;
    }
  }
}

// pass 2 of the fold backward: one block
template <typename S>
__global__ void fold_backward_final_kernel(const S* __restrict__ bias, const S* __restrict__ logits,
                                           const acc_t<S>* __restrict__ col_sum,
                                           const acc_t<S>* __restrict__ partial,
                                           S* __restrict__ grad_bias, S* __restrict__ grad_logits,
                                           int64_t n, int64_t chunks, int64_t d_out) {
  using A = acc_t<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* scratch = reinterpret_cast<A*>(smem_raw);
  A* g = scratch + 32;
  A* dg = g + n;
  if (threadIdx.x == 0) softmax_serial(logits, n, g);
  __syncthreads();
  if (grad_logits != nullptr) {
    for (int64_t k = 0; k < n; ++k) {
      A v = 0;
      for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) v += partial[c * n + k];
      if (bias != nullptr) {
        for (int64_t o = threadIdx.x; o < d_out; o += blockDim.x) {
          v += col_sum[o] * A(Convert<S>::load(bias[k * d_out + o]));
        }
      }
      const A total = block_sum(v, scratch);
      if (threadIdx.x == 0) dg[k] = total;
    }
    if (threadIdx.x == 0) {
      A c = 0;
      for (int64_t k = 0; k < n; ++k) c += g[k] * dg[k];
      for (int64_t k = 0; k < n; ++k) grad_logits[k] = Convert<S>::store(g[k] * (dg[k] - c));
    }
  }
  if (grad_bias != nullptr) {
    for (int64_t i = threadIdx.x; i < n * d_out; i += blockDim.x) {
      grad_bias[i] = Convert<S>::store(g[i / d_out] * col_sum[i % d_out]);
    }
  }
}

template <typename S, int V>
__global__ void rows_forward_kernel(const S* __restrict__ proj, const S* __restrict__ bias,
                                    const S* __restrict__ logits, S* __restrict__ out,
                                    int64_t rows, int64_t n, int64_t d) {
  using A = acc_t<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* g = reinterpret_cast<A*>(smem_raw);
  const int64_t packs = d / V;
  for (int64_t m = blockIdx.x; m < rows; m += gridDim.x) {
    if (threadIdx.x == 0) softmax_serial(logits + m * n, n, g);
    __syncthreads();
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      A acc[V] = {};
      for (int64_t k = 0; k < n; ++k) {
        A v[V];
        load_pack<S, V>(proj + (k * rows + m) * d + p * V, v);
        if (bias != nullptr) {
          A b[V];
          load_pack<S, V>(bias + k * d + p * V, b);
#pragma unroll
          for (int i = 0; i < V; ++i) v[i] += b[i];
        }
        const A gk = g[k];
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] += gk * v[i];
      }
      store_pack<S, V>(out + m * d + p * V, acc);
    }
    __syncthreads();
  }
}

template <typename S, int V>
__global__ void rows_backward_kernel(const S* __restrict__ grad_out, const S* __restrict__ proj,
                                     const S* __restrict__ bias, const S* __restrict__ logits,
                                     S* __restrict__ grad_proj, S* __restrict__ gates,
                                     S* __restrict__ grad_logits,
                                     int64_t rows, int64_t n, int64_t d) {
  using A = acc_t<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* scratch = reinterpret_cast<A*>(smem_raw);
  A* g = scratch + 32;
  A* dg = g + n;
  const int64_t packs = d / V;
  for (int64_t m = blockIdx.x; m < rows; m += gridDim.x) {
    if (threadIdx.x == 0) softmax_serial(logits + m * n, n, g);
    __syncthreads();
    for (int64_t k = 0; k < n; ++k) {
      const A gk = g[k];
      const int64_t off = (k * rows + m) * d;
      A dot = 0;
      for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
        A dy[V], pv[V], dp[V];
        load_pack<S, V>(grad_out + m * d + p * V, dy);
        load_pack<S, V>(proj + off + p * V, pv);
        if (bias != nullptr) {
          A b[V];
          load_pack<S, V>(bias + k * d + p * V, b);
#pragma unroll
          for (int i = 0; i < V; ++i) pv[i] += b[i];
        }
#pragma unroll
        for (int i = 0; i < V; ++i) {
          dot += dy[i] * pv[i];
          dp[i] = gk * dy[i];
        }
        store_pack<S, V>(grad_proj + off + p * V, dp);
      }
      const A total = block_sum(dot, scratch);
      if (threadIdx.x == 0) dg[k] = total;
    }
    if (threadIdx.x == 0) {
      A c = 0;
      for (int64_t k = 0; k < n; ++k) c += g[k] * dg[k];
      for (int64_t k = 0; k < n; ++k) {
        gates[m * n + k] = Convert<S>::store(g[k]);
        grad_logits[m * n + k] = Convert<S>::store(g[k] * (dg[k] - c));
      }
    }
    __syncthreads();
  }
}


template <typename S>
size_t acc_bytes(int64_t count) {
  return size_t(count) * sizeof(acc_t<S>);
}

constexpr int kRowThreads = 128;

}  // namespace

int64_t fold_backward_workspace_bytes_cuda(const Problem& pb) {
  const size_t acc = pb.dtype == DType::Float64 ? sizeof(double) : sizeof(float);
  return int64_t(acc) * fold_chunks(pb) * pb.spaces;
}

void fold_cuda(const Problem& pb, const void* weight, const void* bias, const void* logits,
               void* w_eff, void* b_eff, void* stream) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* w = static_cast<const S*>(weight);
    const S* l = static_cast<const S*>(logits);
    const size_t smem = acc_bytes<S>(pb.spaces);
    const int64_t e = pb.d_in * pb.d_out;
    if (e > 0) {
      if (e % 4 == 0 && aligned(w, 4 * sizeof(S)) && aligned(w_eff, 4 * sizeof(S))) {
        fold_kernel<S, 4><<<grid_for(e / 4, kThreads), kThreads, smem, as_stream(stream)>>>(
            w, l, static_cast<S*>(w_eff), pb.spaces, e);
      } else {
        fold_kernel<S, 1><<<grid_for(e, kThreads), kThreads, smem, as_stream(stream)>>>(
            w, l, static_cast<S*>(w_eff), pb.spaces, e);
      }
      check_launch("multispace_project fold_kernel");
    }
    if (bias != nullptr && pb.d_out > 0) {
      fold_kernel<S, 1><<<grid_for(pb.d_out, kThreads), kThreads, smem, as_stream(stream)>>>(
          static_cast<const S*>(bias), l, static_cast<S*>(b_eff), pb.spaces, pb.d_out);
      check_launch("multispace_project fold_kernel (bias)");
    }
  });
}

void fold_backward_cuda(const Problem& pb, const void* weight, const void* bias,
                        const void* logits, const void* grad, const void* col_sum,
                        void* grad_weight, void* grad_bias, void* grad_logits, void* workspace,
                        void* stream) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using A = acc_t<S>;
    const int64_t chunks = fold_chunks(pb);
    const bool want_dg = grad_logits != nullptr;
    A* partial = static_cast<A*>(workspace);
    if (chunks > 0) {
      fold_backward_partial_kernel<S><<<unsigned(chunks), kThreads, acc_bytes<S>(32 + pb.spaces),
                                        as_stream(stream)>>>(
          static_cast<const S*>(weight), static_cast<const S*>(logits),
          static_cast<const S*>(grad), static_cast<S*>(grad_weight), partial, pb.spaces,
          pb.d_in * pb.d_out, want_dg);
      check_launch("multispace_project fold_backward_partial_kernel");
    }
    if (want_dg || grad_bias != nullptr) {
      fold_backward_final_kernel<S><<<1, kThreads, acc_bytes<S>(32 + 2 * pb.spaces),
                                      as_stream(stream)>>>(
          static_cast<const S*>(bias), static_cast<const S*>(logits),
          static_cast<const A*>(col_sum), partial, static_cast<S*>(grad_bias),
          static_cast<S*>(grad_logits), pb.spaces, chunks, pb.d_out);
      check_launch("multispace_project fold_backward_final_kernel");
    }
  });
}

void rows_forward_cuda(const Problem& pb, const void* proj, const void* bias,
                       const void* logits, void* out, void* stream) {
  if (pb.rows == 0 || pb.d_out == 0) return;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const size_t smem = acc_bytes<S>(pb.spaces);
    const int grid = int(std::min<int64_t>(pb.rows, 65535));
    const int64_t vb = 4 * sizeof(S);
    if (pb.d_out % 4 == 0 && aligned(proj, vb) && aligned(bias, vb) && aligned(out, vb)) {
      rows_forward_kernel<S, 4><<<grid, kRowThreads, smem, as_stream(stream)>>>(
          static_cast<const S*>(proj), static_cast<const S*>(bias), static_cast<const S*>(logits),
          static_cast<S*>(out), pb.rows, pb.spaces, pb.d_out);
    } else {
      rows_forward_kernel<S, 1><<<grid, kRowThreads, smem, as_stream(stream)>>>(
          static_cast<const S*>(proj), static_cast<const S*>(bias), static_cast<const S*>(logits),
          static_cast<S*>(out), pb.rows, pb.spaces, pb.d_out);
    }
    check_launch("multispace_project rows_forward_kernel");
  });
}

void rows_backward_cuda(const Problem& pb, const void* grad_out, const void* proj,
                        const void* bias, const void* logits, void* grad_proj, void* gates, void* grad_logits,
                        void* stream) {
  if (pb.rows == 0 || pb.d_out == 0) return;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const size_t smem = acc_bytes<S>(32 + 2 * pb.spaces);
    const int grid = int(std::min<int64_t>(pb.rows, 65535));
    const int64_t vb = 4 * sizeof(S);
    if (pb.d_out % 4 == 0 && aligned(grad_out, vb) && aligned(proj, vb) && aligned(bias, vb) &&
        aligned(grad_proj, vb)) {
      rows_backward_kernel<S, 4><<<grid, kRowThreads, smem, as_stream(stream)>>>(
          static_cast<const S*>(grad_out), static_cast<const S*>(proj),
          static_cast<const S*>(bias), static_cast<const S*>(logits), static_cast<S*>(grad_proj),
          static_cast<S*>(gates), static_cast<S*>(grad_logits), pb.rows, pb.spaces, pb.d_out);
    } else {
      rows_backward_kernel<S, 1><<<grid, kRowThreads, smem, as_stream(stream)>>>(
          static_cast<const S*>(grad_out), static_cast<const S*>(proj),
          static_cast<const S*>(bias), static_cast<const S*>(logits), static_cast<S*>(grad_proj),
          static_cast<S*>(gates), static_cast<S*>(grad_logits), pb.rows, pb.spaces, pb.d_out);
    }
    check_launch("multispace_project rows_backward_kernel");
  });
}

}  // namespace multispace_project
}  // namespace fastprompt
