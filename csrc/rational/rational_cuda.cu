// CUDA kernels of the rational activation (torch-free: raw pointers, sizes, a cudaStream_t).
//
// forward:  one pass, 16-byte vector loads/stores when a group's channels allow it.
// backward: pass 1 computes grad_x and, per (group, block), fixed-order partial sums of the
//           coefficient gradients (registers -> warp shuffles -> shared memory, no atomics);
//           pass 2 sums the partials of each coefficient over blocks in index order.
// Both passes depend only on the shapes and the device's SM count, so results are bitwise
// reproducible from run to run.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/dispatch.h"
#include "common/fp_ops.h"
#include "rational/rational.h"
#include "rational/rational_math.h"

namespace fastprompt {
namespace rational {
namespace {

constexpr int kThreads = 256;

template <typename C> constexpr C kMaxFinite = C(3.4028234663852886e38);
template <> constexpr double kMaxFinite<double> = 1.7976931348623157e308;

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("fastprompt: CUDA launch of ") + what +
                             " failed: " + cudaGetErrorString(err));
  }
}

int sm_count() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 108;
  }
  return count;
}

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ void load_pack(const T* p, acc_t<T> (&out)[VEC]) {
  const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(p);
FP_UNROLL
  for (int l = 0; l < VEC; ++l) out[l] = Convert<T>::load(pk.v[l]);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, const acc_t<T> (&in)[VEC]) {
  Pack<T, VEC> pk;
FP_UNROLL
  for (int l = 0; l < VEC; ++l) pk.v[l] = Convert<T>::store(in[l]);
  *reinterpret_cast<Pack<T, VEC>*>(p) = pk;
}

// y at one point, re-evaluated in the wider type where the float evaluation is unsafe.
template <int D, int FORM, typename C>
__device__ __forceinline__ C point_value(C x, const C* a, const C* b) {
  Point<D, C> p;
  evaluate<D, FORM>(x, a, b, p);
  if (needs_wide(p)) {
    using W = typename Wider<C>::type;
    Point<D, W> pw;
    evaluate<D, FORM>(W(x), a, b, pw);
    return C(pw.y);
  }
  return p.y;
}

template <typename T, int D, int FORM, int VEC>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, const acc_t<T>* coef,
                               int64_t numel, int64_t groups, int64_t group_size) {
  using C = acc_t<T>;
  constexpr int K = D + 1;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < numel; i += stride) {
    const C* a = coef + ((i / group_size) % groups) * 2 * K;
    const C* b = a + K;
    C v[VEC];
    if (VEC > 1) {
      load_pack<T, VEC>(x + i, v);
    } else {
      v[0] = Convert<T>::load(x[i]);
    }
FP_UNROLL
    for (int l = 0; l < VEC; ++l) v[l] = point_value<D, FORM>(v[l], a, b);
    if (VEC > 1) {
      store_pack<T, VEC>(y + i, v);
    } else {
      y[i] = Convert<T>::store(v[0]);
    }
  }
}

// Sum of v over the block, in a fixed order; valid in thread 0.
template <typename C>
__device__ __forceinline__ C block_sum(C v, C* shared) {
FP_UNROLL
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  C total = C(0);
  if (threadIdx.x == 0) {
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += shared[w];
  }
  return total;
}

// grid: (blocks_per_group, groups). Group g owns x[r, g, :] of the (rows, groups, group_size)
// view; partial[(g * blocks_per_group + block) * 2K + slot].
template <typename T, int D, int FORM, int VEC>
__global__ void backward_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                T* __restrict__ dx, const acc_t<T>* coef, acc_t<T>* partial,
                                int64_t numel, int64_t groups, int64_t group_size) {
  using C = acc_t<T>;
  using W = typename Wider<C>::type;
  constexpr int K = D + 1;
  __shared__ C shared[kThreads / 32];
  const int64_t g = blockIdx.y;
  const C* a = coef + g * 2 * K;
  const C* b = a + K;
  C ca[K] = {}, cb[K] = {};
  const int64_t group_elems = numel / groups;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * VEC;
  for (int64_t e = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; e < group_elems;
       e += stride) {
    const int64_t i = ((e / group_size) * groups + g) * group_size + e % group_size;
    C xv[VEC], gv[VEC], out[VEC];
    if (VEC > 1) {
      load_pack<T, VEC>(x + i, xv);
      load_pack<T, VEC>(dy + i, gv);
    } else {
      xv[0] = Convert<T>::load(x[i]);
      gv[0] = Convert<T>::load(dy[i]);
    }
FP_UNROLL
    for (int l = 0; l < VEC; ++l) {
      Point<D, C> p;
      evaluate<D, FORM>(xv[l], a, b, p);
      C ga[K], gb[K];
      if (!needs_wide(p)) {
        out[l] = backward_terms<D, FORM>(gv[l], xv[l], a, b, p, ga, gb);
      } else {
        Point<D, W> pw;
        evaluate<D, FORM>(W(xv[l]), a, b, pw);
        W wa[K], wb[K];
        out[l] = C(backward_terms<D, FORM>(W(gv[l]), W(xv[l]), a, b, pw, wa, wb));
FP_UNROLL
        for (int j = 0; j < K; ++j) {
          ga[j] = C(clamp_to_range(wa[j], kMaxFinite<C>));
          gb[j] = C(clamp_to_range(wb[j], kMaxFinite<C>));
        }
      }
FP_UNROLL
      for (int j = 0; j < K; ++j) {
        ca[j] += ga[j];
        cb[j] += gb[j];
      }
    }
    if (VEC > 1) {
      store_pack<T, VEC>(dx + i, out);
    } else {
      dx[i] = Convert<T>::store(out[0]);
    }
  }
  C* dst = partial + (g * gridDim.x + blockIdx.x) * 2 * K;
FP_UNROLL
  for (int j = 0; j < K; ++j) {
    const C sa = block_sum(ca[j], shared);
    const C sb = block_sum(cb[j], shared);
    if (threadIdx.x == 0) {
      dst[j] = sa;
      dst[K + j] = sb;
    }
  }
}

template <typename C, int D, int FORM>
__global__ void reduce_partials_kernel(const C* partial, const C* coef, C* grad_coef,
                                       int64_t groups, int64_t blocks_per_group) {
  constexpr int K = D + 1;
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= groups * 2 * K) return;
  const int64_t g = s / (2 * K), j = s % (2 * K);
  double total = 0.0;
  for (int64_t blk = 0; blk < blocks_per_group; ++blk)
    total += double(partial[(g * blocks_per_group + blk) * 2 * K + j]);
  if (j >= K) total = denominator_grad<FORM>(total, coef[s], j == K);
  grad_coef[s] = C(total);
}

int vector_width(const Problem& pb, int elem_bytes, std::initializer_list<const void*> ptrs) {
  const int vec = 16 / elem_bytes;
  if (pb.group_size % vec != 0) return 1;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return 1;
  return vec;
}

int64_t blocks_per_group(const Problem& pb) {
  const int64_t group_elems = pb.numel / pb.groups;
  const int64_t needed = (group_elems + kThreads * 4 - 1) / (kThreads * 4);
  const int64_t budget = std::max<int64_t>(1, int64_t(sm_count()) * 4 / pb.groups);
  return std::max<int64_t>(1, std::min(needed, budget));
}

// f(integral_constant<int, V>) with V = 16 / sizeof(T) (one 16-byte access) or V = 1.
template <typename T, typename F>
void with_vector_width(int vec, F&& f) {
  constexpr int kWide = 16 / int(sizeof(T));
  if (vec == kWide) f(std::integral_constant<int, kWide>{});
  else f(std::integral_constant<int, 1>{});
}

}  // namespace

int64_t workspace_bytes_cuda(const Problem& pb) {
  const int64_t elem = pb.dtype == DType::Float64 ? 8 : 4;
  return pb.groups * blocks_per_group(pb) * 2 * (pb.degree + 1) * elem;
}

void forward_cuda(const Problem& pb, const void* x, void* y, void* stream) {
  if (pb.numel == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = acc_t<T>;
    dispatch_int<1, kMaxDegree>(pb.degree, [&](auto d) {
      dispatch_int<0, 1>(pb.form, [&](auto form) {
        with_vector_width<T>(vector_width(pb, sizeof(T), {x, y}), [&](auto vec) {
          constexpr int V = decltype(vec)::value;
          const int64_t work = (pb.numel + V - 1) / V;
          const int64_t blocks = std::min<int64_t>((work + kThreads - 1) / kThreads,
                                                   int64_t(sm_count()) * 32);
          forward_kernel<T, decltype(d)::value, decltype(form)::value, V>
              <<<unsigned(blocks), kThreads, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                     static_cast<const C*>(pb.coef), pb.numel,
                                                     pb.groups, pb.group_size);
          check_launch("rational forward");
        });
      });
    });
  });
}

void backward_cuda(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
                   void* grad_coef, void* workspace, void* stream) {
  if (pb.numel == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t bpg = blocks_per_group(pb);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = acc_t<T>;
    dispatch_int<1, kMaxDegree>(pb.degree, [&](auto d) {
      constexpr int D = decltype(d)::value;
      dispatch_int<0, 1>(pb.form, [&](auto form) {
        constexpr int FORM = decltype(form)::value;
        with_vector_width<T>(vector_width(pb, sizeof(T), {x, grad_out, grad_x}), [&](auto vec) {
          backward_kernel<T, D, FORM, decltype(vec)::value>
              <<<dim3(unsigned(bpg), unsigned(pb.groups)), kThreads, 0, s>>>(
                  static_cast<const T*>(grad_out), static_cast<const T*>(x),
                  static_cast<T*>(grad_x), static_cast<const C*>(pb.coef),
                  static_cast<C*>(workspace), pb.numel, pb.groups, pb.group_size);
          check_launch("rational backward");
        });
        const int64_t slots = pb.groups * 2 * (D + 1);
        reduce_partials_kernel<C, D, FORM><<<unsigned((slots + 127) / 128), 128, 0, s>>>(
            static_cast<const C*>(workspace), static_cast<const C*>(pb.coef),
            static_cast<C*>(grad_coef), pb.groups, bpg);
        check_launch("rational backward reduction");
      });
    });
  });
}

}  // namespace rational
}  // namespace fastprompt
