// Torch-free counter-based RNG of the DARE keep mask, shared by the CPU and the CUDA kernels so
// both draw the same mask for a seed. Specification (also fastprompt/reference/task_arithmetic.py,
// dare_keep_mask):
//   fmix32 = the murmur3 32-bit finaliser
//   key_t  = fmix32(fmix32(fmix32(lo32(seed) + 0x9E3779B9) ^ hi32(seed)) ^ (t * 0x632BE5AB))
//   r(t,i) = fmix32(fmix32(lo32(i) ^ key_t) ^ (hi32(i) + 0x27D4EB2F)) >> 8      (24 bits)
//   keep(t, i) iff r(t, i) < ceil(density * 2^24)
#pragma once

#include <cstdint>

#include "common/scalar.h"

namespace fastprompt {
namespace task_arithmetic {

FP_HOST_DEVICE uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

FP_HOST_DEVICE uint32_t dare_vector_key(uint64_t seed, uint32_t t) {
  uint32_t k = fmix32(uint32_t(seed) + 0x9E3779B9u);
  k = fmix32(k ^ uint32_t(seed >> 32));
  return fmix32(k ^ (t * 0x632BE5ABu));
}

// The 24-bit uniform draw of element i of the vector with key `key`.
FP_HOST_DEVICE uint32_t dare_draw(uint32_t key, uint64_t i) {
  uint32_t h = fmix32(uint32_t(i) ^ key);
  h = fmix32(h ^ (uint32_t(i >> 32) + 0x27D4EB2Fu));
  return h >> 8;
}

// ceil(density * 2^24), clamped to [0, 2^24]: keep iff dare_draw(...) < threshold.
inline uint32_t dare_threshold(double density) {
  const double v = density * 16777216.0;
  if (!(v > 0.0)) return 0;
  if (v >= 16777216.0) return 16777216u;
  uint32_t r = uint32_t(v);
  if (double(r) < v) ++r;
  return r;
}

}  // namespace task_arithmetic
}  // namespace fastprompt
