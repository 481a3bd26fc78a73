// Minimal portable SIMD for CPU kernels on GCC/Clang vector extensions. `vfloat` holds kLanes
// floats; it gets the same helper names as the scalars in common/fp_ops.h, so one templated
// kernel body serves the vector path and the scalar (wide) fallback.
#pragma once

#include <cstdint>

#include "common/fp_ops.h"

namespace fastprompt {
namespace simd {

constexpr int kLanes = 8;
typedef float vfloat __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vmask __attribute__((vector_size(kLanes * sizeof(int32_t))));

}  // namespace simd

inline simd::vfloat splat_as(simd::vfloat, double v) { return simd::vfloat{} + float(v); }
inline simd::vfloat fp_abs(simd::vfloat v) {
  return (simd::vfloat)((simd::vmask)v & 0x7fffffff);
}
inline simd::vfloat fp_select(simd::vmask m, simd::vfloat a, simd::vfloat b) {
  return (simd::vfloat)((m & (simd::vmask)a) | (~m & (simd::vmask)b));
}
inline simd::vfloat fp_sign(simd::vfloat v) {
  const simd::vfloat one = splat_as(v, 1.0);
  return fp_select(v > 0, one, fp_select(v < 0, -one, simd::vfloat{}));
}
inline bool fp_any(simd::vmask m) {
  int32_t r = 0;
  for (int i = 0; i < simd::kLanes; ++i) r |= m[i];
  return r != 0;
}

}  // namespace fastprompt
