// CUDA kernels of combine and merge. Torch-free: raw pointers, sizes, a stream.
// Every reduction has a fixed order (integer atomics only, for histograms and counts), so the
// results are bitwise reproducible.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "task_arithmetic/task_arithmetic.h"
#include "task_arithmetic/task_arithmetic_rng.h"

namespace fastprompt {
namespace task_arithmetic {
namespace {

using namespace gpu;

constexpr int kThreads = 256;

inline unsigned grid_1d(int64_t n, int64_t per_block) { return blocks_for(n, per_block); }

// ---- vector loads ------------------------------------------------------------------------------
// V consecutive elements (16 bytes when aligned) converted to the compute type.
template <typename S> struct VecWidth { static constexpr int value = 16 / int(sizeof(S)); };

template <typename S, int V, bool Aligned>
__device__ __forceinline__ void load_n(const S* p, acc_t<S>* v, int64_t valid) {
  if (Aligned && valid >= V) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const S* s = reinterpret_cast<const S*>(&raw);
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = Convert<S>::load(s[e]);
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = e < valid ? Convert<S>::load(p[e]) : acc_t<S>(0);
  }
}

template <typename S, int V, bool Aligned>
__device__ __forceinline__ void store_n(S* p, const acc_t<S>* v, int64_t valid) {
  if (Aligned && valid >= V) {
    uint4 raw;
    S* s = reinterpret_cast<S*>(&raw);
#pragma unroll
    for (int e = 0; e < V; ++e) s[e] = Convert<S>::store(v[e]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e)
      if (e < valid) p[e] = Convert<S>::store(v[e]);
  }
}

// ---- combine -----------------------------------------------------------------------------------
// One thread per V consecutive elements; rows in order, vectors in order (the bank tile of a
// block stays in L1/L2 across the rows, so DRAM sees the bank once and out once).
template <typename S, bool Aligned>
__global__ void __launch_bounds__(kThreads) combine_kernel(const S* __restrict__ bank,
    const acc_t<S>* __restrict__ w, const S* __restrict__ base, S* __restrict__ out, int64_t T,
    int64_t B, int64_t N, int64_t base_rows) {
  using A = acc_t<S>;
  constexpr int V = VecWidth<S>::value;
  const int64_t i = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * V;
  if (i >= N) return;
  const int64_t valid = N - i;
  for (int64_t b = 0; b < B; ++b) {
    A acc[V];
    if (base_rows > 0) {
      load_n<S, V, Aligned>(base + (base_rows == 1 ? 0 : b) * N + i, acc, valid);
    } else {
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] = A(0);
    }
    const A* wb = w + b * T;
    for (int64_t t = 0; t < T; ++t) {
      A x[V];
      load_n<S, V, Aligned>(bank + t * N + i, x, valid);
      const A wt = __ldg(wb + t);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] += wt * x[e];
    }
    store_n<S, V, Aligned>(out + b * N + i, acc, valid);
  }
}

// partial[c, b*T + t] = sum over chunk c of g[b, n] bank[t, n]: one warp per (b, t) pair, lanes
// strided over the chunk, then a fixed shuffle tree.
template <typename S>
__global__ void __launch_bounds__(kThreads) weights_grad_partial_kernel(const S* __restrict__ g,
    const S* __restrict__ bank, acc_t<S>* __restrict__ partial, int64_t T, int64_t B, int64_t N) {
  using A = acc_t<S>;
  const int64_t c = blockIdx.x;
  const int64_t begin = c * kDotChunk;
  const int64_t end = begin + kDotChunk < N ? begin + kDotChunk : N;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t e = warp; e < B * T; e += kThreads / 32) {
    const int64_t b = e / T, t = e % T;
    const S* gr = g + b * N;
    const S* br = bank + t * N;
    A s = A(0);
    for (int64_t n = begin + lane; n < end; n += 32) s += Convert<S>::load(gr[n]) * Convert<S>::load(br[n]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) partial[c * B * T + e] = s;
  }
}

template <typename A>
__global__ void sum_partials_kernel(const A* __restrict__ partial, A* __restrict__ out,
                                    int64_t nchunks, int64_t count) {
  const int64_t e = global_thread();
  if (e >= count) return;
  A s = A(0);
  for (int64_t c = 0; c < nchunks; ++c) s += partial[c * count + e];
  out[e] = s;
}

// ---- merge -------------------------------------------------------------------------------------
constexpr int kMergeEPT = 4;                             // elements per thread
constexpr int64_t kMergeBlock = int64_t(kThreads) * kMergeEPT;  // elements per block (chunk)

struct SelState {
  unsigned long long prefix;  // key bits chosen so far; the threshold after the last pass
  unsigned long long mask;    // which bits of prefix are chosen
  long long k_rem;            // rank still to find; after the last pass: ties to keep
  long long tie_mode;         // 1 when fewer ties than equal entries are kept
};

template <typename A> struct KeyBits { static constexpr int value = 32; };
template <> struct KeyBits<double> { static constexpr int value = 64; };

__device__ __forceinline__ unsigned long long abs_key(float v) {
  return __float_as_uint(v) & 0x7fffffffu;
}
__device__ __forceinline__ unsigned long long abs_key(double v) {
  return static_cast<unsigned long long>(__double_as_longlong(v)) & 0x7fffffffffffffffull;
}

__global__ void sel_init_kernel(SelState* st, int64_t T, int64_t k) {
  const int64_t t = global_thread();
  if (t < T) st[t] = SelState{0ull, 0ull, (long long)k, 0ll};
}

template <typename S>
__global__ void __launch_bounds__(kThreads) sel_hist_kernel(const S* __restrict__ x, int64_t N,
    const SelState* __restrict__ st, unsigned long long* __restrict__ hist, int64_t T, int shift) {
  // per-block counts stay below 2^32 (a block sees at most N / gridDim.x + kThreads elements,
  // gridDim.x is at least N / 2^24 + 1); the global counts are 64-bit (a vector may hold
  // 2^32 or more entries)
  __shared__ unsigned int h[256];
  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    h[threadIdx.x] = 0;
    __syncthreads();
    const unsigned long long prefix = st[t].prefix, mask = st[t].mask;
    const S* src = x + t * N;
    for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < N;
         i += int64_t(gridDim.x) * kThreads) {
      const unsigned long long key = abs_key(Convert<S>::load(src[i]));
      if ((key & mask) == prefix) atomicAdd(&h[(key >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    if (h[threadIdx.x]) atomicAdd(&hist[t * 256 + threadIdx.x], (unsigned long long)h[threadIdx.x]);
    __syncthreads();
  }
}

__global__ void sel_pick_kernel(SelState* st, const unsigned long long* __restrict__ hist, int64_t T,
                                int shift, bool last) {
  const int64_t t = global_thread();
  if (t >= T) return;
  SelState s = st[t];
  const unsigned long long* h = hist + t * 256;
  long long cum = 0;
  int d = 255;
  for (; d > 0; --d) {
    if (cum + (long long)h[d] >= s.k_rem) break;
    cum += h[d];
  }
  s.prefix |= (unsigned long long)d << shift;
  s.mask |= 0xffull << shift;
  s.k_rem -= cum;
  if (last) s.tie_mode = s.k_rem < (long long)h[d] ? 1 : 0;
  st[t] = s;
}

__device__ __forceinline__ int block_exclusive_scan(int v, int* smem, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += y;
  }
  if (lane == 31) smem[warp] = inc;
  __syncthreads();
  int warp_off = 0, sum = 0;
  for (int k = 0; k < kThreads / 32; ++k) {
    if (k < warp) warp_off += smem[k];
    sum += smem[k];
  }
  __syncthreads();
  *total = sum;
  return warp_off + inc - v;
}

template <typename S>
__global__ void __launch_bounds__(kThreads) tie_count_kernel(const S* __restrict__ x, int64_t N,
    const SelState* __restrict__ st, long long* __restrict__ tie_count, int64_t T, int64_t nchunks) {
  __shared__ int smem[kThreads / 32];
  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    if (!st[t].tie_mode) continue;  // uniform over the block
    const unsigned long long thr = st[t].prefix;
    const int64_t i0 = int64_t(blockIdx.x) * kMergeBlock + int64_t(threadIdx.x) * kMergeEPT;
    int m = 0;
#pragma unroll
    for (int e = 0; e < kMergeEPT; ++e) {
      if (i0 + e < N) m += abs_key(Convert<S>::load(x[t * N + i0 + e])) == thr;
    }
    int total;
    block_exclusive_scan(m, smem, &total);  // ends with a barrier: smem is free again
    if (threadIdx.x == 0) tie_count[t * nchunks + blockIdx.x] = total;
  }
}

__global__ void tie_scan_kernel(const SelState* __restrict__ st, long long* tie_count, int64_t T,
                                int64_t nchunks) {
  const int64_t t = global_thread();
  if (t >= T || !st[t].tie_mode) return;
  long long run = 0;
  for (int64_t c = 0; c < nchunks; ++c) {
    const long long m = tie_count[t * nchunks + c];
    tie_count[t * nchunks + c] = run;
    run += m;
  }
}

struct MergeArgs {
  int64_t T, N, nchunks;
  bool magnitude;   // magnitude pruning active (k < N)
  bool keep_none;   // k == 0
  bool dare;
  bool elect;
  bool by_total;
  uint32_t dare_thr;
  double density;
  uint64_t seed;
};

// Prunes the kMergeEPT values of vector t held by this thread (magnitude or DARE).
template <typename S>
__device__ __forceinline__ void prune_values(const MergeArgs& a, int64_t t, int64_t i0,
                                             acc_t<S>* v, const SelState* st,
                                             const long long* tie_off, int* smem) {
  using A = acc_t<S>;
  if (a.magnitude) {
    if (a.keep_none) {
#pragma unroll
      for (int e = 0; e < kMergeEPT; ++e) v[e] = A(0);
    } else {
      const unsigned long long thr = st[t].prefix;
      if (!st[t].tie_mode) {
#pragma unroll
        for (int e = 0; e < kMergeEPT; ++e) v[e] = abs_key(v[e]) >= thr ? v[e] : A(0);
      } else {  // block-uniform branch: ties keep the lowest indices
        int m = 0;
#pragma unroll
        for (int e = 0; e < kMergeEPT; ++e) m += (i0 + e < a.N) && abs_key(v[e]) == thr;
        int total;
        long long rank = tie_off[t * a.nchunks + blockIdx.x] + block_exclusive_scan(m, smem, &total);
        const long long n_tie = st[t].k_rem;
#pragma unroll
        for (int e = 0; e < kMergeEPT; ++e) {
          const unsigned long long key = abs_key(v[e]);
          bool keep = key > thr;
          if (key == thr && i0 + e < a.N) keep = rank++ < n_tie;
          v[e] = keep ? v[e] : A(0);
        }
      }
    }
  }
  if (a.dare) {
    const uint32_t key = dare_vector_key(a.seed, uint32_t(t));
    const A dens = A(a.density);
#pragma unroll
    for (int e = 0; e < kMergeEPT; ++e) {
      v[e] = dare_draw(key, uint64_t(i0 + e)) < a.dare_thr ? v[e] / dens : A(0);
    }
  }
}

template <typename S>
__global__ void __launch_bounds__(kThreads) merge_kernel(const S* __restrict__ x,
    const acc_t<S>* __restrict__ w, S* __restrict__ out, MergeArgs a,
    const SelState* __restrict__ st, const long long* __restrict__ tie_off) {
  using A = acc_t<S>;
  __shared__ int smem[kThreads / 32];
  const int64_t i0 = int64_t(blockIdx.x) * kMergeBlock + int64_t(threadIdx.x) * kMergeEPT;
  A acc[kMergeEPT], vote[kMergeEPT];
#pragma unroll
  for (int e = 0; e < kMergeEPT; ++e) acc[e] = vote[e] = A(0);
  const int passes = a.elect ? 2 : 1;
  A cnt[kMergeEPT];
#pragma unroll
  for (int e = 0; e < kMergeEPT; ++e) cnt[e] = A(0);
  for (int pass = 0; pass < passes; ++pass) {
    for (int64_t t = 0; t < a.T; ++t) {
      A v[kMergeEPT];
#pragma unroll
      for (int e = 0; e < kMergeEPT; ++e) v[e] = i0 + e < a.N ? Convert<S>::load(x[t * a.N + i0 + e]) : A(0);
      prune_values<S>(a, t, i0, v, st, tie_off, smem);
      const A wt = w[t];
      if (!a.elect) {
#pragma unroll
        for (int e = 0; e < kMergeEPT; ++e) acc[e] += v[e] * wt;
      } else if (pass == 0) {
#pragma unroll
        for (int e = 0; e < kMergeEPT; ++e) vote[e] += a.by_total ? v[e] : A((v[e] > A(0)) - (v[e] < A(0)));
      } else {
#pragma unroll
        for (int e = 0; e < kMergeEPT; ++e) {
          const bool agree = vote[e] >= A(0) ? v[e] > A(0) : v[e] < A(0);
          acc[e] += agree ? v[e] * wt : A(0);
          cnt[e] += agree ? A(1) : A(0);
        }
      }
    }
  }
#pragma unroll
  for (int e = 0; e < kMergeEPT; ++e) {
    if (i0 + e < a.N) {
      const A r = a.elect ? acc[e] / (cnt[e] > A(1) ? cnt[e] : A(1)) : acc[e];
      out[i0 + e] = Convert<S>::store(r);
    }
  }
}

struct MergeWorkspace {
  SelState* st;
  unsigned long long* hist;
  long long* tie;
};

MergeWorkspace carve(const MergeProblem& pb, void* ws) {
  char* p = static_cast<char*>(ws);
  MergeWorkspace w;
  w.st = reinterpret_cast<SelState*>(p);
  p += ((pb.vectors * int64_t(sizeof(SelState)) + 255) / 256) * 256;
  w.hist = reinterpret_cast<unsigned long long*>(p);
  p += ((pb.vectors * 256 * 8 + 255) / 256) * 256;
  w.tie = reinterpret_cast<long long*>(p);
  return w;
}

}  // namespace

void combine_cuda(const CombineProblem& pb, const void* bank, const void* weights, const void* base,
                  void* out, void* stream) {
  if (pb.rows == 0 || pb.numel == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    constexpr int V = VecWidth<S>::value;
    const auto aligned = [](const void* p) { return p == nullptr || (uintptr_t(p) & 15u) == 0; };
    const bool al = pb.numel % V == 0 && aligned(bank) && aligned(base) && aligned(out);
    const unsigned grid = grid_1d((pb.numel + V - 1) / V, kThreads);
    auto* kernel = al ? combine_kernel<S, true> : combine_kernel<S, false>;
    kernel<<<grid, kThreads, 0, s>>>(static_cast<const S*>(bank), static_cast<const acc_t<S>*>(weights),
                                     static_cast<const S*>(base), static_cast<S*>(out), pb.vectors,
                                     pb.rows, pb.numel, pb.base_rows);
    check_launch("combine");
  });
}

int64_t combine_weights_grad_workspace_cuda(const CombineProblem& pb) {
  const int64_t nchunks = (pb.numel + kDotChunk - 1) / kDotChunk;
  return nchunks * pb.rows * pb.vectors * (pb.dtype == DType::Float64 ? 8 : 4);
}

void combine_weights_grad_cuda(const CombineProblem& pb, const void* grad_out, const void* bank,
                               void* grad_weights, void* workspace, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t nchunks = (pb.numel + kDotChunk - 1) / kDotChunk;
  const int64_t count = pb.rows * pb.vectors;
  if (count == 0) return;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using A = acc_t<S>;
    A* partial = static_cast<A*>(workspace);
    if (nchunks > 0) {
      weights_grad_partial_kernel<S><<<unsigned(nchunks), kThreads, 0, s>>>(
          static_cast<const S*>(grad_out), static_cast<const S*>(bank), partial, pb.vectors,
          pb.rows, pb.numel);
      check_launch("combine weights grad");
    }
    sum_partials_kernel<A><<<grid_1d(count, kThreads), kThreads, 0, s>>>(
        partial, static_cast<A*>(grad_weights), nchunks, count);
    check_launch("combine weights grad sum");
  });
}

int64_t merge_workspace_bytes_cuda(const MergeProblem& pb) {
  const int64_t nchunks = (pb.numel + kMergeBlock - 1) / kMergeBlock;
  return ((pb.vectors * int64_t(sizeof(SelState)) + 255) / 256) * 256 +
         ((pb.vectors * 256 * 8 + 255) / 256) * 256 + pb.vectors * nchunks * 8 + 256;
}

void merge_cuda(const MergeProblem& pb, const void* vectors, const void* weights, void* out,
                void* workspace, void* stream) {
  if (pb.numel == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t T = pb.vectors, N = pb.numel;
  const int64_t nchunks = (N + kMergeBlock - 1) / kMergeBlock;
  MergeArgs a;
  a.T = T;
  a.N = N;
  a.nchunks = nchunks;
  const bool prune = pb.density < 1.0;
  const int64_t k = magnitude_k(pb);
  a.magnitude = prune && uses_magnitude(pb.method) && k < N;
  a.keep_none = a.magnitude && k <= 0;
  a.dare = prune && uses_dare(pb.method);
  a.elect = uses_election(pb.method);
  a.by_total = pb.sign == Sign::Total;
  a.dare_thr = dare_threshold(pb.density);
  a.density = pb.density;
  a.seed = pb.seed;
  MergeWorkspace ws = carve(pb, workspace);
  const unsigned tgrid = grid_1d(T, 128);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using A = acc_t<S>;
    const S* x = static_cast<const S*>(vectors);
    if (a.magnitude && !a.keep_none) {
      sel_init_kernel<<<tgrid, 128, 0, s>>>(ws.st, T, k);
      check_launch("merge select init");
      // enough blocks that each sees fewer than 2^32 elements (32-bit shared counts), at most
      // 16 elements per thread otherwise
      const unsigned gx = grid_1d(N, int64_t(kThreads) * 16);
      const unsigned gxc = gx > 65535u ? std::max(65535u, grid_1d(N, int64_t(1) << 24)) : gx;
      const unsigned gy = unsigned(T < 65535 ? T : 65535);
      for (int shift = KeyBits<A>::value - 8; shift >= 0; shift -= 8) {
        const cudaError_t err = cudaMemsetAsync(ws.hist, 0, size_t(T) * 256 * sizeof(unsigned long long), s);
        if (err != cudaSuccess) {
          throw std::runtime_error(std::string("fastprompt task_arithmetic: merge histogram reset failed: ") +
                                   cudaGetErrorString(err));
        }
        sel_hist_kernel<S><<<dim3(gxc, gy), kThreads, 0, s>>>(x, N, ws.st, ws.hist, T, shift);
        check_launch("merge select histogram");
        sel_pick_kernel<<<tgrid, 128, 0, s>>>(ws.st, ws.hist, T, shift, shift == 0);
        check_launch("merge select pick");
      }
      tie_count_kernel<S><<<dim3(grid_1d(nchunks, 1), gy), kThreads, 0, s>>>(x, N, ws.st, ws.tie, T,
                                                                            nchunks);
      check_launch("merge tie count");
      tie_scan_kernel<<<tgrid, 128, 0, s>>>(ws.st, ws.tie, T, nchunks);
      check_launch("merge tie scan");
    }
    merge_kernel<S><<<unsigned(nchunks), kThreads, 0, s>>>(x, static_cast<const A*>(weights),
                                                          static_cast<S*>(out), a, ws.st, ws.tie);
    check_launch("merge");
  });
}

}  // namespace task_arithmetic
}  // namespace fastprompt
