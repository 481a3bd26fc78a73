// Torch-free helpers of the CUDA kernel files (.cu): launch checks, grid sizes, 64-bit thread
// indices and packed (16-byte) loads and stores. Only the CUDA runtime and the standard
// library are included, so a .cu file that uses these still compiles in about a second.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/scalar.h"

namespace fastprompt {
namespace gpu {

constexpr int64_t kMaxGridX = 2147483647;  // blocks along x
constexpr int64_t kMaxGridYZ = 65535;      // blocks along y and z

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Throws std::runtime_error (a RuntimeError in Python) when the last launch failed; `what`
// names the kernel.
inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("fastprompt: CUDA launch of ") + what +
                             " failed: " + cudaGetErrorString(err));
  }
}

// Blocks for `work` items at `per_block` items a block: at least 1, at most `max_blocks`
// (the kernels loop over what a capped grid does not cover).
inline unsigned blocks_for(int64_t work, int64_t per_block, int64_t max_blocks = kMaxGridX) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return unsigned(std::max<int64_t>(1, std::min(blocks, max_blocks)));
}

// True for nullptr or a pointer aligned to `bytes`.
inline bool aligned(const void* p, int64_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % uintptr_t(bytes) == 0;
}

#if defined(__CUDACC__)
// Index of this thread in the x-dimension of the grid, and the number of threads of the grid
// along x, in 64 bits (their 32-bit products overflow past 2^31 elements).
__device__ __forceinline__ int64_t global_thread() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

// V consecutive elements of storage type T moved as one aligned access (16 bytes for
// V = 16 / sizeof(T)); the pointer must be aligned to sizeof(Pack<T, V>).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V, typename A>
__device__ __forceinline__ void load_pack(const T* p, A* out) {
  const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = A(Convert<T>::load(pk.v[i]));
}

template <typename T, int V, typename A>
__device__ __forceinline__ void store_pack(T* p, const A* in) {
  Pack<T, V> pk;
#pragma unroll
  for (int i = 0; i < V; ++i) pk.v[i] = Convert<T>::store(in[i]);
  *reinterpret_cast<Pack<T, V>*>(p) = pk;
}
#endif

}  // namespace gpu
}  // namespace fastprompt
