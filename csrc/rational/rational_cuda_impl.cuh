#pragma once
// CUDA kernels of the rational activation (torch-free: raw pointers, sizes, a cudaStream_t),
// included by one rational_cuda_<dtype>.cu per storage type (they compile in parallel).
//
// forward:  one pass, 16-byte vector loads/stores when a group's channels and the pointers
//           allow it; each element is evaluated as on the CPU (direct form where |x| <= 256 and
//           the result is safe, else the scaled form, with a double re-evaluation where the
//           float result is unsafe).
// backward: pass 1 computes grad_x and, per work item (group, chunk of kChunk elements of the
//           group), fixed-order partial sums of the coefficient gradients: the terms of the fast
//           path in the compute type, the terms of the wide (overflow-safe) path in separate
//           double accumulators (scaled by 2^-128 for float64, where they may reach DBL_MAX),
//           reduced over the block in double; pass 2 sums the partials of each coefficient
//           over the chunks in index order.
// The split into chunks, the element-to-thread mapping and the summation order depend on the
// problem size alone (not on the GPU model, the grid size or the pointer alignment), so the
// coefficient gradients are bitwise identical on every GPU and from run to run.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "common/fp_ops.h"
#include "rational/rational.h"
#include "rational/rational_math.h"
#include "rational/rational_cuda_typed.h"

namespace fastprompt {
namespace rational {
namespace {

using namespace gpu;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnit = 8;                                  // elements per thread and step
constexpr int kSteps = 8;                                 // steps per work item
constexpr int64_t kChunk = int64_t(kThreads) * kUnit * kSteps;  // elements of a group per item
static_assert(kChunk == detail::kBackwardChunk, "rational_cuda_typed.h states the chunk");
constexpr int64_t kMaxGrid = 8192;  // blocks at most (plenty for any GPU); loops cover the rest

template <typename C> constexpr C kMaxFinite = C(3.4028234663852886e38);
template <> constexpr double kMaxFinite<double> = 1.7976931348623157e308;

// Scale of the wide-path accumulators: float terms (<= FLT_MAX) fit a double sum unscaled;
// double terms (<= DBL_MAX) are scaled by 2^-128 so that their sum cannot overflow.
template <typename C> constexpr double kWideScale = 1.0;
template <> constexpr double kWideScale<double> = 2.938735877055719e-39;  // 2^-128
template <typename C> constexpr double kWideUnscale = 1.0;
template <> constexpr double kWideUnscale<double> = 3.402823669209385e38;  // 2^128

unsigned grid_for(int64_t work, int64_t per_block) { return blocks_for(work, per_block, kMaxGrid); }

// kUnit consecutive elements through 16-byte accesses (p 16-byte aligned).
template <typename T>
__device__ __forceinline__ void load_unit(const T* p, acc_t<T>* out) {
  constexpr int V = 16 / int(sizeof(T));
FP_UNROLL
  for (int l = 0; l < kUnit; l += V) load_pack<T, V>(p + l, out + l);
}
template <typename T>
__device__ __forceinline__ void store_unit(T* p, const acc_t<T>* in) {
  constexpr int V = 16 / int(sizeof(T));
FP_UNROLL
  for (int l = 0; l < kUnit; l += V) store_pack<T, V>(p + l, in + l);
}

// y at one point, evaluated as the CPU does: the direct form (direct_value), else evaluate_fast,
// then the wide re-evaluation.
template <int D, int FORM, typename C>
__device__ __forceinline__ C point_value(C x, const DirectCoefs<D, FORM, C>& dc, const C* a,
                                         const C* b) {
  C y;
  if (!direct_value(x, dc, y)) return y;
  Point<D, C> p;
  if (evaluate_fast<D, FORM>(x, a, b, p)) return p.y;
  if (needs_wide(p)) {
    using W = typename Wider<C>::type;
    Point<D, W> pw;
    evaluate<D, FORM>(W(x), a, b, pw);
    return C(pw.y);
  }
  return p.y;
}

// (i / group_size) % groups, in 32-bit arithmetic where the tensor allows it (a 64-bit division
// is a long instruction sequence on the GPU; this runs once per VEC elements).
__device__ __forceinline__ int64_t group_of(int64_t i, int64_t numel, int64_t groups,
                                            int64_t group_size) {
  if (numel <= int64_t(UINT32_MAX))
    return int64_t((uint32_t(i) / uint32_t(group_size)) % uint32_t(groups));
  return (i / group_size) % groups;
}

template <typename T, int D, int FORM, int VEC>
__global__ void __launch_bounds__(kThreads) forward_kernel(const T* __restrict__ x,
    T* __restrict__ y, const acc_t<T>* __restrict__ coef, int64_t numel, int64_t groups,
    int64_t group_size) {
  using C = acc_t<T>;
  constexpr int K = D + 1;
  const int64_t stride = grid_threads() * VEC;
  for (int64_t i = (global_thread()) * VEC; i < numel; i += stride) {
    // VEC > 1 only when group_size % VEC == 0 or there is one group: the VEC elements share
    // one group
    const C* cg = coef + group_of(i, numel, groups, group_size) * 2 * K;
    C a[K], b[K];
FP_UNROLL
    for (int j = 0; j < K; ++j) {
      a[j] = __ldg(cg + j);
      b[j] = __ldg(cg + K + j);
    }
    const DirectCoefs<D, FORM, C> dc(a, b);
    C v[VEC];
    if (VEC == 1 || i + VEC <= numel) {
      if (VEC > 1) {
        load_pack<T, VEC>(x + i, v);
      } else {
        v[0] = Convert<T>::load(x[i]);
      }
FP_UNROLL
      for (int l = 0; l < VEC; ++l) v[l] = point_value(v[l], dc, a, b);
      if (VEC > 1) {
        store_pack<T, VEC>(y + i, v);
      } else {
        y[i] = Convert<T>::store(v[0]);
      }
    } else {  // tail of a single-group tensor whose size is not a multiple of VEC
      for (int64_t k = i; k < numel; ++k)
        y[k] = Convert<T>::store(point_value(Convert<T>::load(x[k]), dc, a, b));
    }
  }
}

// Work item `item` = (group g, chunk c): elements [c * kChunk, (c + 1) * kChunk) of the group,
// in the order of the (rows, group_size) view of group g. Thread t handles the units
// u = t + kThreads * s (s < kSteps), each kUnit consecutive elements, in that order, for vector
// and scalar accesses alike. partial[item][4K]: fast a-terms, fast b-terms, wide a-terms,
// wide b-terms (the wide ones times kWideScale<C>).
template <typename T, int D, int FORM, bool VECTOR>
__global__ void __launch_bounds__(kThreads) backward_kernel(const T* __restrict__ dy,
    const T* __restrict__ x, T* __restrict__ dx, const acc_t<T>* __restrict__ coef,
    double* __restrict__ partial, int64_t groups, int64_t group_size, int64_t group_elems,
    int64_t chunks) {
  using C = acc_t<T>;
  using W = double;
  constexpr int K = D + 1;
  constexpr int S = 4 * K;
  __shared__ double shared[S][kWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t items = groups * chunks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t g = item / chunks, c = item % chunks;
    C a[K], b[K];
FP_UNROLL
    for (int j = 0; j < K; ++j) {
      a[j] = __ldg(coef + g * 2 * K + j);
      b[j] = __ldg(coef + g * 2 * K + K + j);
    }
    const DerivCoefs<D, FORM, C> dc(a, b);
    C fa[K], fb[K];
    W wa[K], wb[K];
FP_UNROLL
    for (int j = 0; j < K; ++j) {
      fa[j] = fb[j] = C(0);
      wa[j] = wb[j] = W(0);
    }
    const int64_t e_end = std::min(group_elems, (c + 1) * kChunk);
    for (int s = 0; s < kSteps; ++s) {
      const int64_t e0 = c * kChunk + (int64_t(s) * kThreads + threadIdx.x) * kUnit;
      if (e0 >= e_end) break;
      C xv[kUnit], gv[kUnit], out[kUnit];
      int64_t idx[kUnit];
      // VECTOR: group_size % kUnit == 0 or one group, so a full unit is contiguous
      const bool full = VECTOR && e0 + kUnit <= e_end;
      if (full) {
        const int64_t i0 = ((e0 / group_size) * groups + g) * group_size + e0 % group_size;
        load_unit<T>(x + i0, xv);
        load_unit<T>(dy + i0, gv);
        idx[0] = i0;
      } else {
FP_UNROLL
        for (int l = 0; l < kUnit; ++l) {
          const int64_t e = e0 + l;
          idx[l] = ((e / group_size) * groups + g) * group_size + e % group_size;
          const bool valid = e < e_end;
          xv[l] = valid ? Convert<T>::load(x[idx[l]]) : C(0);
          gv[l] = valid ? Convert<T>::load(dy[idx[l]]) : C(0);
        }
      }
FP_UNROLL
      for (int l = 0; l < kUnit; ++l) {
        if (!full && e0 + l >= e_end) {
          out[l] = C(0);
          continue;
        }
        Point<D, C> p;
        const bool direct = evaluate_fast<D, FORM>(xv[l], a, b, p);
        if (direct || !needs_wide(p)) {
          C ga[K], gb[K];
          out[l] = backward_terms(gv[l], xv[l], dc, p, ga, gb);
FP_UNROLL
          for (int j = 0; j < K; ++j) {
            fa[j] += ga[j];
            fb[j] += gb[j];
          }
        } else {
          Point<D, W> pw;
          evaluate<D, FORM>(W(xv[l]), a, b, pw);
          W ga[K], gb[K];
          out[l] = C(backward_terms<D, FORM, true>(W(gv[l]), W(xv[l]), dc, pw, ga, gb));
FP_UNROLL
          for (int j = 0; j < K; ++j) {
            wa[j] += clamp_to_range(ga[j], kMaxFinite<C>) * kWideScale<C>;
            wb[j] += clamp_to_range(gb[j], kMaxFinite<C>) * kWideScale<C>;
          }
        }
      }
      if (full) {
        store_unit<T>(dx + idx[0], out);
      } else {
FP_UNROLL
        for (int l = 0; l < kUnit; ++l)
          if (e0 + l < e_end) dx[idx[l]] = Convert<T>::store(out[l]);
      }
    }
    // block reduction in double: warp shuffle trees, then the warps in index order
    double v[S];
FP_UNROLL
    for (int j = 0; j < K; ++j) {
      v[j] = double(fa[j]);
      v[K + j] = double(fb[j]);
      v[2 * K + j] = wa[j];
      v[3 * K + j] = wb[j];
    }
FP_UNROLL
    for (int j = 0; j < S; ++j) {
FP_UNROLL
      for (int off = 16; off > 0; off >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], off);
    }
    __syncthreads();  // the previous item's readers are done with `shared`
    if (lane == 0) {
FP_UNROLL
      for (int j = 0; j < S; ++j) shared[j][warp] = v[j];
    }
    __syncthreads();
    if (threadIdx.x < S) {
      double total = 0.0;
FP_UNROLL
      for (int w = 0; w < kWarps; ++w) total += shared[threadIdx.x][w];
      partial[item * S + threadIdx.x] = total;
    }
  }
}

// grad_coef[g][j] (j < 2K) = sum over chunks c, in order, of the fast partial, plus the wide
// partial sum unscaled; then the sign rule of the denominator.
template <typename C, int D, int FORM>
__global__ void reduce_partials_kernel(const double* __restrict__ partial,
                                       const C* __restrict__ coef, C* __restrict__ grad_coef,
                                       int64_t groups, int64_t chunks) {
  constexpr int K = D + 1;
  constexpr int S = 4 * K;
  const int64_t slots = groups * 2 * K;
  for (int64_t s = global_thread(); s < slots;
       s += grid_threads()) {
    const int64_t g = s / (2 * K), j = s % (2 * K);
    double fast = 0.0, wide = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      const double* p = partial + (g * chunks + c) * S;
      fast += p[j];
      wide += p[2 * K + j];
    }
    double total = fast + wide * kWideUnscale<C>;
    if (j >= K) total = denominator_grad<FORM>(total, coef[s], j == K);
    grad_coef[s] = C(total);
  }
}

bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

}  // namespace

namespace detail {

template <typename T>
void forward_typed(const Problem& pb, const void* x, void* y, cudaStream_t s) {
  using C = acc_t<T>;
  constexpr int kWide = 16 / int(sizeof(T));
  const bool vector = (pb.group_size % kWide == 0 || pb.groups == 1) && aligned16({x, y});
  dispatch_int<1, kMaxDegree>(pb.degree, [&](auto d) {
    dispatch_int<0, 1>(pb.form, [&](auto form) {
      constexpr int D = decltype(d)::value, FORM = decltype(form)::value;
      const auto* xs = static_cast<const T*>(x);
      auto* ys = static_cast<T*>(y);
      const auto* cs = static_cast<const C*>(pb.coef);
      if (vector) {
        forward_kernel<T, D, FORM, kWide><<<grid_for(pb.numel, int64_t(kThreads) * kWide), kThreads, 0, s>>>(
            xs, ys, cs, pb.numel, pb.groups, pb.group_size);
      } else {
        forward_kernel<T, D, FORM, 1><<<grid_for(pb.numel, kThreads), kThreads, 0, s>>>(
            xs, ys, cs, pb.numel, pb.groups, pb.group_size);
      }
      check_launch("rational forward");
    });
  });
}

template <typename T>
void backward_typed(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                    void* grad_coef, void* workspace, cudaStream_t s) {
  using C = acc_t<T>;
  const int64_t chunks = backward_chunks_per_group(pb);
  const int64_t items = pb.groups * chunks;
  const int64_t group_elems = pb.numel / pb.groups;
  const bool vector =
      (pb.group_size % kUnit == 0 || pb.groups == 1) && aligned16({x, grad_out, grad_x});
  double* partial = static_cast<double*>(workspace);
  dispatch_int<1, kMaxDegree>(pb.degree, [&](auto d) {
    constexpr int D = decltype(d)::value;
    dispatch_int<0, 1>(pb.form, [&](auto form) {
      constexpr int FORM = decltype(form)::value;
      const auto* gs = static_cast<const T*>(grad_out);
      const auto* xs = static_cast<const T*>(x);
      auto* dxs = static_cast<T*>(grad_x);
      const auto* cs = static_cast<const C*>(pb.coef);
      const unsigned grid = grid_for(items, 1);
      if (vector) {
        backward_kernel<T, D, FORM, true><<<grid, kThreads, 0, s>>>(
            gs, xs, dxs, cs, partial, pb.groups, pb.group_size, group_elems, chunks);
      } else {
        backward_kernel<T, D, FORM, false><<<grid, kThreads, 0, s>>>(
            gs, xs, dxs, cs, partial, pb.groups, pb.group_size, group_elems, chunks);
      }
      check_launch("rational backward");
      const int64_t slots = pb.groups * 2 * (D + 1);
      reduce_partials_kernel<C, D, FORM><<<grid_for(slots, 128), 128, 0, s>>>(
          partial, cs, static_cast<C*>(grad_coef), pb.groups, chunks);
      check_launch("rational backward reduction");
    });
  });
}

}  // namespace detail
}  // namespace rational
}  // namespace fastprompt
