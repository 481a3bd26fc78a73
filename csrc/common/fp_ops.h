// Elementwise helpers with one name for every value type a kernel body is instantiated with:
// float / double on host and device, long double on the host (wide fallback), and the CPU
// vector type in common/simd.h. Kernel math written against these compiles for all of them.
#pragma once

#include "common/scalar.h"

#include <cmath>

namespace fastprompt {

template <typename S> FP_HOST_DEVICE S splat_as(S, double v) { return S(v); }
FP_HOST_DEVICE float fp_abs(float v) { return fabsf(v); }
FP_HOST_DEVICE double fp_abs(double v) { return fabs(v); }
// +1, -1 or 0: torch.sign, the derivative autograd uses for |v|
template <typename S> FP_HOST_DEVICE S fp_sign(S v) { return S((v > S(0)) - (v < S(0))); }
template <typename S> FP_HOST_DEVICE S fp_select(bool m, S a, S b) { return m ? a : b; }
FP_HOST_DEVICE bool fp_any(bool m) { return m; }

// Clamp a scalar to the finite range of its type (inf -> max); vectors pass through (their
// fast path is bounded by construction).
FP_HOST_DEVICE float saturate(float v) { return fminf(fmaxf(v, -3.4028234663852886e38f), 3.4028234663852886e38f); }
FP_HOST_DEVICE double saturate(double v) { return fmin(fmax(v, -1.7976931348623157e308), 1.7976931348623157e308); }
template <typename V> FP_HOST_DEVICE V saturate(V v) { return v; }

#if !defined(__CUDACC__)
FP_HOST_DEVICE long double fp_abs(long double v) { return std::fabs(v); }
FP_HOST_DEVICE long double saturate(long double v) {
  const long double m = 1.18973149535723176502e+4932L;
  return v > m ? m : (v < -m ? -m : v);
}
#endif

// The wider type used to re-evaluate the rare elements whose scaled denominator underflows.
template <typename S> struct Wider { using type = double; };
#if defined(__CUDACC__)
template <> struct Wider<double> { using type = double; };
#else
template <> struct Wider<double> { using type = long double; };
#endif

}  // namespace fastprompt
