// CUDA kernel of the gathered linear layer's weight gradient (math in gathered_linear.h). No
// torch header. A block owns a kTile x kTile tile of grad_weight[a] and walks the rows of layer a
// (order / offsets) in tiles of kTile rows, from shared-memory tiles, each thread kTile /
// kRowsPerPass outputs; every output is one thread's sum in row order.
#include <algorithm>

#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "gathered_linear/gathered_linear.h"

namespace fastprompt {
namespace gathered_linear {
namespace {

constexpr int kTile = 32;
constexpr int kRowsPerPass = 8;  // blockDim = (kTile, kRowsPerPass)
constexpr int kPerThread = kTile / kRowsPerPass;

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

}  // namespace

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
