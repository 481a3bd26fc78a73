// Minimal portable SIMD for CPU kernels on GCC/Clang vector extensions. `Vec<N>` holds N floats
// (N = 8 for the baseline/AVX2 builds, 16 for AVX-512); each gets the same helper names as the
// scalars in common/fp_ops.h, so one templated kernel body serves the vector paths and the
// scalar (wide) fallback. The helpers are always_inline: kernels built per instruction set include
// this header after their target pragma, and no out-of-line copy may be shared between builds.
#pragma once

#include <cstdint>

#include "common/fp_ops.h"

namespace fastprompt {
namespace simd {

template <int N>
struct Vec {
  typedef float f32 __attribute__((vector_size(N * sizeof(float))));
  typedef int32_t mask __attribute__((vector_size(N * sizeof(int32_t))));
  typedef uint32_t u32 __attribute__((vector_size(N * sizeof(uint32_t))));
  typedef uint16_t u16 __attribute__((vector_size(N * sizeof(uint16_t))));
};

// The 8-lane vector, the width kernels use unless they are built per instruction set.
constexpr int kLanes = 8;
using vfloat = Vec<kLanes>::f32;
using vmask = Vec<kLanes>::mask;
using vu32 = Vec<kLanes>::u32;
using vu16 = Vec<kLanes>::u16;

}  // namespace simd

#define FP_DEFINE_VECTOR_HELPERS(N)                                                           \
  FP_HOST_DEVICE simd::Vec<N>::f32 splat_as(simd::Vec<N>::f32, double v) {                          \
    return simd::Vec<N>::f32{} + float(v);                                                    \
  }                                                                                           \
  FP_HOST_DEVICE simd::Vec<N>::f32 fp_abs(simd::Vec<N>::f32 v) {                                    \
    return (simd::Vec<N>::f32)((simd::Vec<N>::mask)v & 0x7fffffff);                          \
  }                                                                                           \
  FP_HOST_DEVICE simd::Vec<N>::f32 fp_select(simd::Vec<N>::mask m, simd::Vec<N>::f32 a,             \
                                     simd::Vec<N>::f32 b) {                                   \
    return (simd::Vec<N>::f32)((m & (simd::Vec<N>::mask)a) | (~m & (simd::Vec<N>::mask)b));   \
  }                                                                                           \
  FP_HOST_DEVICE simd::Vec<N>::f32 fp_sign(simd::Vec<N>::f32 v) {                                   \
    const simd::Vec<N>::f32 one = splat_as(v, 1.0);                                           \
    return fp_select(v > 0, one, fp_select(v < 0, -one, simd::Vec<N>::f32{}));                \
  }                                                                                           \
  FP_HOST_DEVICE bool fp_any_generic(simd::Vec<N>::mask m) {                                 \
    uint64_t words[N / 2];                                                                    \
    __builtin_memcpy(words, &m, sizeof m);                                                    \
    uint64_t r = 0;                                                                           \
    for (int i = 0; i < N / 2; ++i) r |= words[i];                                            \
    return r != 0;                                                                            \
  }

FP_DEFINE_VECTOR_HELPERS(8)
FP_DEFINE_VECTOR_HELPERS(16)
#undef FP_DEFINE_VECTOR_HELPERS

// fp_any: a sign-bit mask test where the translation unit is built for AVX (FP_SIMD_TARGET set
// to 2 for AVX2, 3 for AVX-512 before this header, after the target pragma); a word-wise OR
// otherwise.
#if defined(FP_SIMD_TARGET) && FP_SIMD_TARGET >= 2
FP_HOST_DEVICE bool fp_any(simd::Vec<8>::mask m) {
  typedef float v8sf __attribute__((vector_size(32)));
  return __builtin_ia32_movmskps256((v8sf)m) != 0;
}
#else
FP_HOST_DEVICE bool fp_any(simd::Vec<8>::mask m) { return fp_any_generic(m); }
#endif
#if defined(FP_SIMD_TARGET) && FP_SIMD_TARGET >= 3
FP_HOST_DEVICE bool fp_any(simd::Vec<16>::mask m) { return __builtin_ia32_ptestmd512(m, m, 0xffff) != 0; }
#else
FP_HOST_DEVICE bool fp_any(simd::Vec<16>::mask m) { return fp_any_generic(m); }
#endif

}  // namespace fastprompt
