// CUDA kernels of self-attention pooling (torch-free: raw pointers, sizes, a cudaStream_t).
//
// forward:  pass 1, one block per (row b, token chunk): tiles of kTile tokens; warps compute the
//           K scores of a token (lanes split D, shuffle reduction), then an online-softmax update
//           of the chunk's running max / sum, then threads (one per column d) add the weighted
//           tile to the chunk's partial sum in the workspace. pass 2 merges the chunk partials of
//           each row in index order and writes out and the log-sum-exp.
// backward: pass 1, same blocking: recompute the weights from the log-sum-exp, write grad_z
//           directly and per-chunk partial sums of grad_queries; pass 2 sums those partials in
//           index order.
// Rows run along gridDim.y in a loop (at most 65535 there), chunks along gridDim.x. The token
// chunk is chosen from the shapes alone (not from the GPU's SM count), and nothing uses atomics,
// so results are bitwise identical from run to run and on every GPU model. Where the queries
// ((K, D) in the compute type) fit in kQueryStageBytes they are staged in shared memory once per
// block instead of being read from L1/L2 for every token.
#include <cuda_runtime.h>

#include <algorithm>

#include "attention_pool/attention_pool.h"
#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "common/scalar.h"

namespace fastprompt::attention_pool {
namespace {

using namespace gpu;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;     // tokens per tile
constexpr int kKGroup = 8;    // queries handled together in registers

constexpr int64_t kTargetBlocks = 512;                  // enough to fill any current GPU
constexpr int64_t kWorkspaceBudget = int64_t(64) << 20;  // bytes of chunk partials, at most
constexpr size_t kQueryStageBytes = 16384;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // dynamic shared memory without opt-in

// Column d of a tile's weighted sum into a chunk partial, for every query k:
//   acc[k * D + d] = (first ? 0 : acc[k * D + d] * scale[k]) + sum over the tile's real tokens i
//                    of coef[i * K + k] * z_tile[i * D + d]
// (scale nullptr: 1); queries go kKGroup at a time through registers.
template <typename T, typename C>
__device__ __forceinline__ void add_weighted_tile(C* acc, const C* coef, const C* scale, const int* real,
                                                  const T* z_tile, int64_t D, int K, int64_t d, bool first) {
  for (int kg = 0; kg < K; kg += kKGroup) {
    C a[kKGroup];
#pragma unroll
    for (int kk = 0; kk < kKGroup; ++kk) {
      const int k = kg + kk;
      a[kk] = (k < K && !first) ? acc[k * D + d] * (scale != nullptr ? scale[k] : C(1)) : C(0);
    }
    for (int i = 0; i < kTile; ++i) {
      if (!real[i]) continue;
      const C zv = Convert<T>::load(z_tile[i * D + d]);
#pragma unroll
      for (int kk = 0; kk < kKGroup; ++kk)
        if (kg + kk < K) a[kk] += coef[i * K + kg + kk] * zv;
    }
#pragma unroll
    for (int kk = 0; kk < kKGroup; ++kk)
      if (kg + kk < K) acc[(kg + kk) * D + d] = a[kk];
  }
}

// Tokens per block: a multiple of kTile chosen from the shapes only, so that about
// kTargetBlocks blocks are in flight, and the chunk partials ((K, D + 2) per chunk and row) stay
// within kWorkspaceBudget (or one chunk per row).
int64_t chunk_tokens(const Problem& pb) {
  const int64_t batch = std::max<int64_t>(pb.batch, 1);
  int64_t per_row = std::max<int64_t>(1, (kTargetBlocks + batch - 1) / batch);
  const int64_t per_chunk = std::max<int64_t>(1, pb.num_queries * (pb.dim + 2) * 8);
  per_row = std::min(per_row, std::max<int64_t>(1, kWorkspaceBudget / (batch * per_chunk)));
  int64_t chunk = (pb.tokens + per_row - 1) / per_row;
  chunk = (chunk + kTile - 1) / kTile * kTile;
  return std::max<int64_t>(chunk, kTile);
}

int64_t num_chunks(const Problem& pb, int64_t chunk) {
  return std::max<int64_t>(1, (pb.tokens + chunk - 1) / chunk);
}

unsigned grid_y(int64_t batch) { return blocks_for(batch, 1, kMaxGridYZ); }

// Copies the (K, D) queries into shared memory when `stage` (block-uniform); returns the
// pointer the block reads them from. Ends with a barrier.
template <typename C>
__device__ __forceinline__ const C* stage_queries(const C* __restrict__ wt, unsigned char* smem_bytes,
                                                  int64_t n, bool stage) {
  if (!stage) return wt;
  C* smem = reinterpret_cast<C*>(smem_bytes);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) smem[i] = wt[i];
  __syncthreads();
  return smem;
}

template <typename C>
__device__ __forceinline__ C warp_sum(C v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename C> __device__ __forceinline__ C neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -INFINITY; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -double(INFINITY); }

__device__ __forceinline__ float exp_c(float v) { return expf(v); }
__device__ __forceinline__ double exp_c(double v) { return exp(v); }
__device__ __forceinline__ float log_c(float v) { return logf(v); }
__device__ __forceinline__ double log_c(double v) { return log(v); }

__device__ __forceinline__ bool is_real(const uint8_t* mask, int64_t b, int64_t t, int64_t T) {
  return mask == nullptr || mask[b * T + t] != 0;
}

// Records whether token i of the tile is real (lane 0 of its warp writes real_s[i]); returns it.
__device__ __forceinline__ bool note_real(int* real_s, int i, int lane, bool real) {
  if (lane == 0) real_s[i] = real;
  return real;
}

// Scores of one real token against K rows of `rows_a` (and optionally `rows_b`), by one warp.
// rows are (K, D); results go to out_a[k] / out_b[k] on lane 0.
template <typename T, typename C, bool TWO>
__device__ __forceinline__ void warp_token_dots(const T* zr, int64_t D, int K, const C* rows_a,
                                                const C* rows_b, C* out_a, C* out_b, int lane) {
  for (int kg = 0; kg < K; kg += kKGroup) {
    C pa[kKGroup], pb[kKGroup];
#pragma unroll
    for (int kk = 0; kk < kKGroup; ++kk) pa[kk] = pb[kk] = C(0);
    for (int64_t d = lane; d < D; d += 32) {
      const C zv = Convert<T>::load(zr[d]);
#pragma unroll
      for (int kk = 0; kk < kKGroup; ++kk) {
        if (kg + kk < K) {
          pa[kk] += zv * rows_a[(kg + kk) * D + d];
          if (TWO) pb[kk] += zv * rows_b[(kg + kk) * D + d];
        }
      }
    }
#pragma unroll
    for (int kk = 0; kk < kKGroup; ++kk) {
      pa[kk] = warp_sum(pa[kk]);
      if (TWO) pb[kk] = warp_sum(pb[kk]);
    }
    if (lane == 0) {
#pragma unroll
      for (int kk = 0; kk < kKGroup; ++kk) {
        if (kg + kk < K) {
          out_a[kg + kk] = pa[kk];
          if (TWO) out_b[kg + kk] = pb[kk];
        }
      }
    }
  }
}

// shared memory: weight (kTile, K), m (K), l (K), scale (K), kTile flags, then the staged
// queries (K, D) when `stage`
template <typename T, typename C>
__global__ void forward_partial_kernel(const T* __restrict__ z, const C* __restrict__ wt_global,
                                       const uint8_t* __restrict__ mask, C* part_max,
                                       C* part_sum, C* part_acc, int64_t batch, int64_t T_len,
                                       int64_t D, int K, int64_t chunk, int64_t chunks,
                                       bool stage) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  C* weight = reinterpret_cast<C*>(smem_raw);
  C* m_s = weight + kTile * K;
  C* l_s = m_s + K;
  C* scale_s = l_s + K;
  int* real_s = reinterpret_cast<int*>(scale_s + K);
  const size_t q_offset = (sizeof(C) * (kTile * K + 3 * K) + sizeof(int) * kTile + 15) / 16 * 16;
  const C* wt = stage_queries(wt_global, smem_raw + q_offset, int64_t(K) * D, stage);

  const int64_t c = blockIdx.x, t_begin = c * chunk, t_end = min(T_len, t_begin + chunk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t item = b * chunks + c;
    C* acc = part_acc + item * K * D;

    for (int k = tid; k < K; k += kThreads) {
      m_s[k] = neg_inf<C>();
      l_s[k] = C(0);
    }
    __syncthreads();

    bool first = true;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kTile) {
      for (int i = warp; i < kTile; i += kWarps) {
        const bool real = note_real(real_s, i, lane, t0 + i < t_end && is_real(mask, b, t0 + i, T_len));
        if (!real) {
          for (int k = lane; k < K; k += 32) weight[i * K + k] = neg_inf<C>();
          continue;
        }
        warp_token_dots<T, C, false>(z + (b * T_len + t0 + i) * D, D, K, wt, nullptr, weight + i * K,
                                     nullptr, lane);
      }
      __syncthreads();
      for (int k = tid; k < K; k += kThreads) {
        C tile_max = neg_inf<C>();
        for (int i = 0; i < kTile; ++i) tile_max = max(tile_max, weight[i * K + k]);
        const C m_old = m_s[k];
        const C m_new = max(m_old, tile_max);
        const C scale = m_new == neg_inf<C>() ? C(1) : exp_c(m_old - m_new);
        C sum = C(0);
        for (int i = 0; i < kTile; ++i) {
          const C s = weight[i * K + k];
          const C e = s == neg_inf<C>() ? C(0) : exp_c(s - m_new);
          weight[i * K + k] = e;
          sum += e;
        }
        l_s[k] = l_s[k] * scale + sum;
        m_s[k] = m_new;
        scale_s[k] = scale;
      }
      __syncthreads();
      for (int64_t d = tid; d < D; d += kThreads) {
        add_weighted_tile(acc, weight, scale_s, real_s, z + (b * T_len + t0) * D, D, K, d, first);
      }
      first = false;
      __syncthreads();
    }
    for (int k = tid; k < K; k += kThreads) {
      part_max[item * K + k] = m_s[k];
      part_sum[item * K + k] = l_s[k];
    }
    __syncthreads();
  }  // rows
}

// One block per (row b, query k) pair (grid-stride over the B * K pairs): the chunk weights
// exp(m_c - max) are computed once into shared memory (chunks <= kTargetBlocks), then the threads
// merge the D columns, each summing the chunks in index order.
template <typename T, typename C>
__global__ void forward_merge_kernel(const C* __restrict__ part_max, const C* __restrict__ part_sum,
                                     const C* __restrict__ part_acc, T* __restrict__ out,
                                     C* __restrict__ lse, int64_t batch, int64_t D, int K,
                                     int64_t chunks) {
  __shared__ C chunk_w[kTargetBlocks];
  for (int64_t pair = blockIdx.x; pair < batch * K; pair += gridDim.x) {
    const int64_t b = pair / K;
    const int k = int(pair % K);
    C top = neg_inf<C>();
    for (int64_t c = 0; c < chunks; ++c) top = max(top, part_max[(b * chunks + c) * K + k]);
    C total = C(0);
    if (top != neg_inf<C>()) {
      for (int64_t c = 0; c < chunks; ++c) {
        const C mc = part_max[(b * chunks + c) * K + k];
        if (mc != neg_inf<C>()) total += exp_c(mc - top) * part_sum[(b * chunks + c) * K + k];
      }
    }
    if (threadIdx.x == 0) lse[b * K + k] = top == neg_inf<C>() ? top : top + log_c(total);
    const C inv = top == neg_inf<C>() ? C(0) : C(1) / total;
    const bool cached = chunks <= kTargetBlocks;
    if (cached) {
      for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
        const C mc = part_max[(b * chunks + c) * K + k];
        chunk_w[c] = (top == neg_inf<C>() || mc == neg_inf<C>()) ? C(0) : exp_c(mc - top);
      }
      __syncthreads();
    }
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      C v = C(0);
      if (top != neg_inf<C>()) {
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t item = b * chunks + c;
          C wc;
          if (cached) {
            wc = chunk_w[c];
          } else {
            const C mc = part_max[item * K + k];
            wc = mc == neg_inf<C>() ? C(0) : exp_c(mc - top);
          }
          if (wc != C(0)) v += wc * part_acc[(item * K + k) * D + d];
        }
      }
      out[(b * K + k) * D + d] = Convert<T>::store(v * inv);
    }
    if (cached) __syncthreads();  // chunk_w is rewritten for the next pair
  }
}

// shared memory: weight (kTile, K), dscore (kTile, K), c (K), kTile flags, then the staged
// queries (K, D) when `stage`
template <typename T, typename C>
__global__ void backward_partial_kernel(const C* __restrict__ grad_out, const T* __restrict__ z,
                                        const C* __restrict__ wt_global, const C* __restrict__ out,
                                        const C* __restrict__ lse, const uint8_t* __restrict__ mask,
                                        T* __restrict__ grad_z, C* part_dw, int64_t batch,
                                        int64_t T_len, int64_t D, int K, int64_t chunk,
                                        int64_t chunks, bool stage) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  C* weight = reinterpret_cast<C*>(smem_raw);
  C* dscore = weight + kTile * K;
  C* c_s = dscore + kTile * K;
  int* real_s = reinterpret_cast<int*>(c_s + K);
  const size_t q_offset = (sizeof(C) * (2 * kTile * K + K) + sizeof(int) * kTile + 15) / 16 * 16;
  const C* wt = stage_queries(wt_global, smem_raw + q_offset, int64_t(K) * D, stage);

  const int64_t c = blockIdx.x, t_begin = c * chunk, t_end = min(T_len, t_begin + chunk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t item = b * chunks + c;
    const C* gp = grad_out + b * K * D;
    C* dw = part_dw + item * K * D;

    for (int k = warp; k < K; k += kWarps) {
      C s = C(0);
      for (int64_t d = lane; d < D; d += 32) s += gp[k * D + d] * out[(b * K + k) * D + d];
      s = warp_sum(s);
      if (lane == 0) c_s[k] = s;
    }
    __syncthreads();

    bool first = true;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kTile) {
      for (int i = warp; i < kTile; i += kWarps) {
        const bool real = note_real(real_s, i, lane, t0 + i < t_end && is_real(mask, b, t0 + i, T_len));
        if (!real) continue;
        warp_token_dots<T, C, true>(z + (b * T_len + t0 + i) * D, D, K, wt, gp, weight + i * K,
                                    dscore + i * K, lane);
        __syncwarp();
        for (int k = lane; k < K; k += 32) {
          const C a = exp_c(weight[i * K + k] - lse[b * K + k]);
          dscore[i * K + k] = a * (dscore[i * K + k] - c_s[k]);
          weight[i * K + k] = a;
        }
      }
      __syncthreads();
      for (int64_t d = tid; d < D; d += kThreads) {
        for (int i = 0; i < kTile && t0 + i < t_end; ++i) {
          C v = C(0);
          if (real_s[i]) {
            for (int k = 0; k < K; ++k)
              v += weight[i * K + k] * gp[k * D + d] + dscore[i * K + k] * wt[k * D + d];
          }
          grad_z[(b * T_len + t0 + i) * D + d] = Convert<T>::store(v);
        }
        add_weighted_tile(dw, dscore, static_cast<const C*>(nullptr), real_s, z + (b * T_len + t0) * D, D, K, d,
                          first);
      }
      first = false;
      __syncthreads();
    }
  }  // rows
}

template <typename C>
__global__ void reduce_items_kernel(const C* __restrict__ part, C* __restrict__ dst, int64_t n,
                                    int64_t items) {
  const int64_t i = global_thread();
  if (i >= n) return;
  C s = C(0);
  for (int64_t item = 0; item < items; ++item) s += part[item * n + i];
  dst[i] = s;
}

size_t aligned_bytes(size_t n) { return (n + 15) / 16 * 16; }

size_t compute_size(DType dtype) { return dtype == DType::Float64 ? sizeof(double) : sizeof(float); }

}  // namespace

int64_t workspace_bytes_cuda(const Problem& pb) {
  const int64_t items = pb.batch * num_chunks(pb, chunk_tokens(pb));
  return items * pb.num_queries * (pb.dim + 2) * int64_t(compute_size(pb.dtype));
}

// How the work of a call is split: `chunk` tokens per block, `chunks` blocks per row, `items`
// (row, chunk) partials in all, `K` queries.
struct Split {
  int64_t chunk, chunks, items;
  int K;
  explicit Split(const Problem& pb)
      : chunk(chunk_tokens(pb)), chunks(num_chunks(pb, chunk)), items(pb.batch * chunks),
        K(int(pb.num_queries)) {}
};

void forward_cuda(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
                  void* workspace, void* stream) {
  if (pb.batch == 0 || pb.num_queries == 0) return;
  const Split sp(pb);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = acc_t<T>;
    C* part_max = static_cast<C*>(workspace);
    C* part_sum = part_max + sp.items * sp.K;
    C* part_acc = part_sum + sp.items * sp.K;
    if (pb.tokens > 0) {
      const size_t base = aligned_bytes(sizeof(C) * (kTile * sp.K + 3 * sp.K) + sizeof(int) * kTile);
      const size_t q_bytes = sizeof(C) * size_t(sp.K) * size_t(pb.dim);
      const bool stage = q_bytes <= kQueryStageBytes && base + q_bytes <= kMaxSharedBytes;
      const size_t smem = base + (stage ? q_bytes : 0);
      forward_partial_kernel<T, C><<<dim3(unsigned(sp.chunks), grid_y(pb.batch)), kThreads, smem, as_stream(stream)>>>(
          static_cast<const T*>(z), static_cast<const C*>(queries_t), pb.mask, part_max, part_sum,
          part_acc, pb.batch, pb.tokens, pb.dim, sp.K, sp.chunk, sp.chunks, stage);
      check_launch("attention_pool forward_partial_kernel");
    }
    const int64_t pairs = pb.batch * sp.K;
    forward_merge_kernel<T, C><<<unsigned(std::min<int64_t>(pairs, int64_t(1) << 20)), kThreads, 0, as_stream(stream)>>>(
        part_max, part_sum, part_acc, static_cast<T*>(out), static_cast<C*>(lse), pb.batch, pb.dim,
        sp.K, pb.tokens > 0 ? sp.chunks : 0);
    check_launch("attention_pool forward_merge_kernel");
  });
}

void backward_cuda(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
                   const void* out, const void* lse, void* grad_z, void* grad_queries_t,
                   void* workspace, void* stream) {
  if (pb.batch == 0 || pb.tokens == 0) return;  // grad_queries_t arrives zeroed
  const Split sp(pb);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = acc_t<T>;
    C* part_dw = static_cast<C*>(workspace);
    const size_t base = aligned_bytes(sizeof(C) * (2 * kTile * sp.K + sp.K) + sizeof(int) * kTile);
    const size_t q_bytes = sizeof(C) * size_t(sp.K) * size_t(pb.dim);
    const bool stage = q_bytes <= kQueryStageBytes && base + q_bytes <= kMaxSharedBytes;
    const size_t smem = base + (stage ? q_bytes : 0);
    backward_partial_kernel<T, C><<<dim3(unsigned(sp.chunks), grid_y(pb.batch)), kThreads, smem, as_stream(stream)>>>(
        static_cast<const C*>(grad_out), static_cast<const T*>(z), static_cast<const C*>(queries_t),
        static_cast<const C*>(out), static_cast<const C*>(lse), pb.mask, static_cast<T*>(grad_z),
        part_dw, pb.batch, pb.tokens, pb.dim, sp.K, sp.chunk, sp.chunks, stage);
    check_launch("attention_pool backward_partial_kernel");
    const int64_t n = int64_t(sp.K) * pb.dim;
    if (n > 0) {
      reduce_items_kernel<C><<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, as_stream(stream)>>>(  // n <= 64 * D
          part_dw, static_cast<C*>(grad_queries_t), n, sp.items);
      check_launch("attention_pool reduce_items_kernel");
    }
  });
}

}  // namespace fastprompt::attention_pool
