// Torch-free scalar helpers shared by the CPU (.cpp) and CUDA (.cu) kernels.
// Kernels receive raw pointers plus a DType tag; 16-bit types travel as uint16_t bit patterns
// and are converted to float on load, so no torch header is needed in kernel files.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FP_HOST_DEVICE __host__ __device__ __forceinline__
#define FP_UNROLL _Pragma("unroll")
#else
#define FP_UNROLL _Pragma("GCC unroll 9")
// always_inline: these helpers are also inlined into the AVX2 build of the CPU kernels
#define FP_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace fastprompt {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

FP_HOST_DEVICE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

FP_HOST_DEVICE uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

FP_HOST_DEVICE float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN (quiet).
FP_HOST_DEVICE uint16_t float_to_bf16(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint16_t r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
#else
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
#endif
}

// IEEE binary16 <-> binary32, round to nearest even, subnormals, inf and NaN handled.
FP_HOST_DEVICE float half_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(h));
  return r;
#else
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
  // zero or subnormal: value = man * 2^-24
  const float mag = float(man) * 5.9604644775390625e-08f;
  return sign ? -mag : mag;
#endif
}

FP_HOST_DEVICE uint16_t float_to_half(float f) {
#if defined(__CUDA_ARCH__)
  uint16_t r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
#else
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);          // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);         // overflows to inf
  if (a < 0x38800000u) {                                          // subnormal or zero
    // scale so the half subnormal unit (2^-24) becomes an integer step, then round
    const float scaled = bits_to_float(a) * 16777216.0f;         // * 2^24
    uint32_t m = uint32_t(scaled);
    const float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return uint16_t(sign | m);
  }
  const uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return uint16_t(sign | (rounded >> 13));
#endif
}

// Load / store with conversion to the compute type.
template <typename T> struct Convert;
template <> struct Convert<float> {
  static FP_HOST_DEVICE float load(float v) { return v; }
  static FP_HOST_DEVICE float store(float v) { return v; }
};
template <> struct Convert<double> {
  static FP_HOST_DEVICE double load(double v) { return v; }
  static FP_HOST_DEVICE double store(double v) { return v; }
};
template <> struct Convert<Half> {
  static FP_HOST_DEVICE float load(Half v) { return half_to_float(v.bits); }
  static FP_HOST_DEVICE Half store(float v) { return Half{float_to_half(v)}; }
};
template <> struct Convert<BFloat16> {
  static FP_HOST_DEVICE float load(BFloat16 v) { return bf16_to_float(v.bits); }
  static FP_HOST_DEVICE BFloat16 store(float v) { return BFloat16{float_to_bf16(v)}; }
};

// Compute (accumulation) type: float for every storage type except double.
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

}  // namespace fastprompt
