// CUDA kernels of the gathered linear layer (math in gathered_linear.h). No torch header.
//
// Forward and input gradient are one tiled product per batch row, C[b] = X[b] @ M[index[b]]
// (+ bias), with M read through strides from the (A, N, K) weight: forward M(k, n) = W[a, n, k],
// input gradient M(n, k) = W[a, n, k]. A block computes a kTile x kTile tile of C[b] from
// shared-memory tiles, each thread kTile / kRowsPerPass outputs; every output is one thread's
// sum over the inner dimension in index order. All layers run in the one launch: the number of
// kernels does not depend on how many different layers the batch uses.
// Weight gradient: a block owns a kTile x kTile tile of grad_weight[a] and walks the rows of
// layer a (order / offsets) in tiles of kTile rows.
#include <cmath>

#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "gathered_linear/gathered_linear.h"

namespace fastprompt {
namespace gathered_linear {
namespace {

constexpr int kTile = 32;
constexpr int kRowsPerPass = 8;  // blockDim = (kTile, kRowsPerPass)
constexpr int kPerThread = kTile / kRowsPerPass;

// C[b] (T, P) = X[b] (T, Q) @ M (Q, P) + bias; M(q, p) = weight[a * P * Q + q * sq + p * sp].
template <typename S, typename A>
__global__ void rowwise_product_kernel(const S* __restrict__ x, const A* __restrict__ weight,
                                       const A* __restrict__ bias, const int64_t* __restrict__ index,
                                       S* __restrict__ out, int64_t B, int64_t T, int64_t Q,
                                       int64_t P, int64_t sq, int64_t sp, int64_t layers) {
  __shared__ A xs[kTile][kTile + 1];
  __shared__ A ms[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row_tiles = (T + kTile - 1) / kTile, col_tiles = (P + kTile - 1) / kTile;
  const int64_t tiles = B * row_tiles * col_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t b = tile / (row_tiles * col_tiles);
    const int64_t t0 = (tile / col_tiles) % row_tiles * kTile, p0 = tile % col_tiles * kTile;
    const int64_t a = index[b];
    if (a < 0 || a >= layers) {  // checked on the host for CPU tensors only: NaN rows here
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t t = t0 + ty + i * kRowsPerPass, p = p0 + tx;
        if (t < T && p < P) out[(b * T + t) * P + p] = Convert<S>::store(A(NAN));
      }
      continue;  // the whole block takes this branch: the tile belongs to one batch row
    }
    const A* w = weight + a * P * Q;
    A acc[kPerThread] = {};
    for (int64_t q0 = 0; q0 < Q; q0 += kTile) {
      for (int i = 0; i < kPerThread; ++i) {
        const int r = ty + i * kRowsPerPass;
        const int64_t t = t0 + r, q = q0 + tx;
        xs[r][tx] = (t < T && q < Q) ? A(Convert<S>::load(x[(b * T + t) * Q + q])) : A(0);
        const int64_t qm = q0 + r, p = p0 + tx;
        ms[r][tx] = (qm < Q && p < P) ? w[qm * sq + p * sp] : A(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int j = 0; j < kTile; ++j) {
        const A m = ms[j][tx];
        for (int i = 0; i < kPerThread; ++i) acc[i] += xs[ty + i * kRowsPerPass][j] * m;
      }
      __syncthreads();
    }
    const int64_t p = p0 + tx;
    if (p < P) {
      const A add = bias != nullptr ? bias[a * P + p] : A(0);
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t t = t0 + ty + i * kRowsPerPass;
        if (t < T) out[(b * T + t) * P + p] = Convert<S>::store(acc[i] + add);
      }
    }
  }
}

// grad_weight[a] (N, K) = sum over the rows of layer a of g^T x; grad_bias[a] = sum of g.
template <typename S, typename A>
__global__ void weight_grad_kernel(const S* __restrict__ grad_out, const S* __restrict__ x,
                                   const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ offsets, S* __restrict__ grad_weight,
                                   S* __restrict__ grad_bias, int64_t layers, int64_t T, int64_t K,
                                   int64_t N) {
  __shared__ A gs[kTile][kTile + 1];  // [row][n]
  __shared__ A xs[kTile][kTile + 1];  // [row][k]
  const int tx = threadIdx.x, ty = threadIdx.y;
  // at least one k-tile, so that grad_bias is written where K = 0
  const int64_t n_tiles = (N + kTile - 1) / kTile, k_tiles = K > 0 ? (K + kTile - 1) / kTile : 1;
  const int64_t tiles = layers * n_tiles * k_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t a = tile / (n_tiles * k_tiles);
    const int64_t n0 = (tile / k_tiles) % n_tiles * kTile, k0 = tile % k_tiles * kTile;
    const int64_t first = offsets[a], rows = (offsets[a + 1] - first) * T;
    A acc[kPerThread] = {};
    A bias_acc[kPerThread] = {};
    for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
      for (int i = 0; i < kPerThread; ++i) {
        const int r = ty + i * kRowsPerPass;
        const int64_t local = r0 + r;
        int64_t row = -1;
        if (local < rows) row = order[first + local / T] * T + local % T;
        gs[r][tx] = (row >= 0 && n0 + tx < N) ? A(Convert<S>::load(grad_out[row * N + n0 + tx])) : A(0);
        xs[r][tx] = (row >= 0 && k0 + tx < K) ? A(Convert<S>::load(x[row * K + k0 + tx])) : A(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int j = 0; j < kTile; ++j) {
        const A xv = xs[j][tx];
        for (int i = 0; i < kPerThread; ++i) {
          const A g = gs[j][ty + i * kRowsPerPass];
          acc[i] += g * xv;
          bias_acc[i] += g;
        }
      }
      __syncthreads();
    }
    for (int i = 0; i < kPerThread; ++i) {
      const int64_t n = n0 + ty + i * kRowsPerPass, k = k0 + tx;
      if (n < N && k < K) grad_weight[(a * N + n) * K + k] = Convert<S>::store(acc[i]);
      if (grad_bias != nullptr && n < N && k0 == 0 && tx == 0)
        grad_bias[a * N + n] = Convert<S>::store(bias_acc[i]);
    }
  }
}

template <typename S>
void launch_rowwise(const Problem& pb, const S* x, const acc_t<S>* weight, const acc_t<S>* bias,
                    const int64_t* index, S* out, int64_t Q, int64_t P, int64_t sq, int64_t sp,
                    void* stream, const char* what) {
  const int64_t tiles = pb.batch * ((pb.tokens + kTile - 1) / kTile) * ((P + kTile - 1) / kTile);
  if (tiles == 0) return;
  rowwise_product_kernel<S, acc_t<S>><<<gpu::blocks_for(tiles, 1), dim3(kTile, kRowsPerPass), 0,
                                        gpu::as_stream(stream)>>>(x, weight, bias, index, out, pb.batch,
                                                                  pb.tokens, Q, P, sq, sp, pb.layers);
  gpu::check_launch(what);
}

}  // namespace

void forward_cuda(const Problem& pb, const void* x, const void* weight, const void* bias,
                  const int64_t* index, void* out, void* stream) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using A = acc_t<S>;
    launch_rowwise<S>(pb, static_cast<const S*>(x), static_cast<const A*>(weight),
                      static_cast<const A*>(bias), index, static_cast<S*>(out), pb.in, pb.out, 1,
                      pb.in, stream, "gathered_linear forward");
  });
}

void backward_input_cuda(const Problem& pb, const void* grad_out, const void* weight,
                         const int64_t* index, void* grad_x, void* stream) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    launch_rowwise<S>(pb, static_cast<const S*>(grad_out), static_cast<const acc_t<S>*>(weight),
                      nullptr, index, static_cast<S*>(grad_x), pb.out, pb.in, pb.in, 1, stream,
                      "gathered_linear input gradient");
  });
}

void backward_weight_cuda(const Problem& pb, const void* grad_out, const void* x,
                          const int64_t* order, const int64_t* offsets, void* grad_weight,
                          void* grad_bias, void* stream) {
  const int64_t tiles = pb.layers * ((pb.out + kTile - 1) / kTile) * std::max<int64_t>(1, (pb.in + kTile - 1) / kTile);
  if (tiles == 0) return;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    weight_grad_kernel<S, acc_t<S>><<<gpu::blocks_for(tiles, 1), dim3(kTile, kRowsPerPass), 0,
                                      gpu::as_stream(stream)>>>(
        static_cast<const S*>(grad_out), static_cast<const S*>(x), order, offsets,
        static_cast<S*>(grad_weight), static_cast<S*>(grad_bias), pb.layers, pb.tokens, pb.in, pb.out);
    gpu::check_launch("gathered_linear weight gradient");
  });
}

}  // namespace gathered_linear
}  // namespace fastprompt
