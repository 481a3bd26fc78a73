// Pointwise math of the rational activation y = P(x) / Q(x), shared by the CPU (vector and
// scalar) and CUDA kernels.
//
// Overflow-safe evaluation: with D = max(m, n) and s = max(1, |x|)^D, every power is used as
//   pw[j] = x^j / s,   i.e. x^j for |x| <= 1 and sign(x)^D * (1/x)^(D-j) for |x| > 1,
// so |pw[j]| <= 1 and P/s, Q/s stay bounded: no inf/inf for large |x|. Q/s >= |pw[0]| = 1/s.
// Coefficients arrive padded to degree D (a[j] = 0 for j > m, b[k] = 0 for k > n, b[0] unused),
// which leaves P and Q unchanged.
#pragma once

#include "common/fp_ops.h"

namespace fastprompt {
namespace rational {

enum Form : int { kFormA = 0, kFormB = 1 };

// Per-point intermediates the backward reuses.
template <int D, typename V>
struct Point {
  V pw[D + 1];  // x^j / s
  V inv_q;      // s / Q
  V y;          // P / Q
  V s_sign;     // form B: sign(sum_k b_k x^k)
};

template <int D, int FORM, typename V, typename C>
FP_HOST_DEVICE void evaluate(V x, const C* a, const C* b, Point<D, V>& p) {
  const V one = splat_as(x, 1.0);
  const auto big = fp_abs(x) > one;
  const V r = fp_select(big, one / x, x);
  V rp[D + 1];
  rp[0] = one;
FP_UNROLL
  for (int j = 1; j <= D; ++j) rp[j] = rp[j - 1] * r;
  const V sign_d = (D % 2) ? fp_select(x < splat_as(x, 0.0), -one, one) : one;
FP_UNROLL
  for (int j = 0; j <= D; ++j) p.pw[j] = fp_select(big, sign_d * rp[D - j], rp[j]);

  V pn = a[0] * p.pw[0];
FP_UNROLL
  for (int j = 1; j <= D; ++j) pn += a[j] * p.pw[j];
  V qn = fp_abs(p.pw[0]);
  if (FORM == kFormA) {
FP_UNROLL
    for (int k = 1; k <= D; ++k) qn += fp_abs(b[k]) * fp_abs(p.pw[k]);
  } else {
    V sn = b[1] * p.pw[1];
FP_UNROLL
    for (int k = 2; k <= D; ++k) sn += b[k] * p.pw[k];
    qn += fp_abs(sn);
    p.s_sign = fp_sign(sn);
  }
  // saturate: in the wide fallback s / Q may exceed the range (Q/s subnormal); keeping both
  // finite means no inf * 0 in the gradient terms
  p.inv_q = saturate(one / qn);
  p.y = saturate(pn * p.inv_q);
}

// The same Point with s = 1 (pw[j] = x^j, inv_q = 1 / Q): no reciprocal of x and no selects.
// Only valid where the powers cannot overflow; see evaluate_fast.
template <int D, int FORM, typename V, typename C>
FP_HOST_DEVICE void evaluate_direct(V x, const C* a, const C* b, Point<D, V>& p) {
  const V one = splat_as(x, 1.0);
  p.pw[0] = one;
FP_UNROLL
  for (int j = 1; j <= D; ++j) p.pw[j] = p.pw[j - 1] * x;
  V pn = a[D] * p.pw[D];
FP_UNROLL
  for (int j = D - 1; j >= 0; --j) pn += a[j] * p.pw[j];
  V qn = one;
  if (FORM == kFormA) {
    const V ax = fp_abs(x);
    V sn = splat_as(x, fp_abs(b[D]));
FP_UNROLL
    for (int k = D - 1; k >= 1; --k) sn = sn * ax + fp_abs(b[k]);
    qn += sn * ax;
  } else {
    V sn = splat_as(x, b[D]);
FP_UNROLL
    for (int k = D - 1; k >= 1; --k) sn = sn * x + b[k];
    sn *= x;
    qn += fp_abs(sn);
    p.s_sign = fp_sign(sn);
  }
  p.inv_q = one / qn;
  p.y = pn * p.inv_q;
}

// Coefficients of the forward's direct form, each broadcast to the value type V once per group:
// num[j] = a_j; den[k] = |b_k| (form A) or b_k (form B) for k >= 1, den[0] unused.
template <int D, int FORM, typename V>
struct DirectCoefs {
  V num[D + 1];
  V den[D + 1];
  template <typename C>
  FP_HOST_DEVICE DirectCoefs(const C* a, const C* b) {
FP_UNROLL
    for (int j = 0; j <= D; ++j) {
      num[j] = splat_as(V{}, a[j]);
      den[j] = splat_as(V{}, FORM == kFormA ? fp_abs(b[j]) : b[j]);
    }
  }
};

// sum_{j < N} c[j] x^j by Estrin's scheme: pairs c[2j] + c[2j+1] x, then pairs of those with
// x^2, and so on; a dependency chain of about 2 log2(N) operations instead of N (Horner).
template <int N, typename V>
FP_HOST_DEVICE V estrin(V x, const V* c) {
  V t[N];
FP_UNROLL
  for (int j = 0; j < N; ++j) t[j] = c[j];
  V power = x;
FP_UNROLL
  for (int n = N; n > 1; n = (n + 1) / 2) {
FP_UNROLL
    for (int j = 0; j < n / 2; ++j) t[j] = t[2 * j] + t[2 * j + 1] * power;
    if (n % 2) t[n / 2] = t[n - 1];
    power = power * power;
  }
  return t[0];
}

// y = P(x) / Q(x) in the direct form, for the forward alone (no powers kept, one division).
// Returns the mask of the points where that form is not trusted, the same test as evaluate_fast:
// |x| > 2^8, |y| > 2^40 or not a number, or Q overflowed; those points go through evaluate_fast
// and the wide re-evaluation instead.
template <int D, int FORM, typename V>
FP_HOST_DEVICE auto direct_value(V x, const DirectCoefs<D, FORM, V>& c, V& y) {
  const V pn = estrin<D + 1>(x, c.num);
  // Q = 1 + sum_{k >= 1} den_k |x|^k (form A) or 1 + |sum_{k >= 1} b_k x^k| (form B)
  const V t = FORM == kFormA ? fp_abs(x) : x;
  const V sn = estrin<D>(t, c.den + 1) * t;
  const V qn = splat_as(x, 1.0) + (FORM == kFormA ? sn : fp_abs(sn));
  y = pn / qn;
  const V limit = splat_as(x, 1099511627776.0);  // 2^40
  return (fp_abs(x) > splat_as(x, 256.0)) | (fp_abs(y) > limit) | (y != y) |
         (qn == splat_as(x, double(INFINITY)));
}

// True where the fast (float) evaluation may have lost the denominator to underflow or
// produced a value large enough for the gradient terms (~ dy * y / Q) to overflow float;
// those points are re-evaluated in the wider type.
template <int D, typename V>
FP_HOST_DEVICE auto needs_wide(const Point<D, V>& p) {
  const V limit = splat_as(p.y, 1099511627776.0);  // 2^40
  return (p.inv_q > limit) | (fp_abs(p.y) > limit) | (p.y != p.y);
}

// evaluate() for the common case: the direct form, kept where every |x| of the vector is at
// most 2^8 (so x^D <= 2^64) and it produced a finite, representable result; otherwise the
// overflow-safe form. Returns true when the direct form was kept: its result then needs no wide
// re-evaluation (Q >= 1, so inv_q <= 1; a Q that overflowed shows as inv_q = 0).
template <int D, int FORM, typename V, typename C>
FP_HOST_DEVICE bool evaluate_fast(V x, const C* a, const C* b, Point<D, V>& p) {
  evaluate_direct<D, FORM>(x, a, b, p);
  const V limit = splat_as(x, 1099511627776.0);  // 2^40, as in needs_wide
  const auto unsafe = (fp_abs(x) > splat_as(x, 256.0)) | (fp_abs(p.y) > limit) | (p.y != p.y) |
                      (p.inv_q == splat_as(x, 0.0));
  if (!fp_any(unsafe)) return true;
  evaluate<D, FORM>(x, a, b, p);
  return false;
}

// Loop-invariant coefficient products of the backward, computed once per group:
// dp[j] = j a_j (j >= 1), dq[k] = k |b_k| (form A) or k b_k (form B) (k >= 1).
template <int D, int FORM, typename C>
struct DerivCoefs {
  C dp[D + 1];
  C dq[D + 1];
  FP_HOST_DEVICE DerivCoefs(const C* a, const C* b) {
    dp[0] = dq[0] = C(0);
FP_UNROLL
    for (int j = 1; j <= D; ++j) {
      dp[j] = C(j) * a[j];
      dq[j] = C(j) * (FORM == kFormA ? fp_abs(b[j]) : b[j]);
    }
  }
};

// dL/dx and the per-point terms of dL/da_j (= ga[j]) and dL/db_k (= -sign(b_k) * gb[k] for
// form A, -gb[k] for form B; the sign is applied once per group after the reduction).
// kRangeSafe: for a wide re-evaluation in a type with no headroom over the terms (double on the
// GPU, which has no long double): gb[k] = (g * pw[k]) * y instead of (g * y) * pw[k], since g * y
// (~ s^2 / Q^2) can overflow where the term itself (|pw[k]| <= 1) does not.
template <int D, int FORM, bool kRangeSafe = false, typename V, typename C>
FP_HOST_DEVICE V backward_terms(V dy, V x, const DerivCoefs<D, FORM, C>& dc, const Point<D, V>& p,
                                V* ga, V* gb) {
  V dp = dc.dp[1] * p.pw[0];
FP_UNROLL
  for (int j = 2; j <= D; ++j) dp += dc.dp[j] * p.pw[j - 1];
  V dq;
  if (FORM == kFormA) {
    dq = dc.dq[1] * fp_abs(p.pw[0]);
FP_UNROLL
    for (int k = 2; k <= D; ++k) dq += dc.dq[k] * fp_abs(p.pw[k - 1]);
    dq *= fp_sign(x);
  } else {
    dq = dc.dq[1] * p.pw[0];
FP_UNROLL
    for (int k = 2; k <= D; ++k) dq += dc.dq[k] * p.pw[k - 1];
    dq *= p.s_sign;
  }
  const V g = kRangeSafe ? saturate(dy * p.inv_q) : dy * p.inv_q;
  const V gy = saturate(g * p.y);  // finite, so that gy * 0 stays 0 (b = 0, S = 0)
FP_UNROLL
  for (int j = 0; j <= D; ++j) ga[j] = g * p.pw[j];
  gb[0] = splat_as(x, 0.0);
FP_UNROLL
  for (int k = 1; k <= D; ++k) {
    const V w = FORM == kFormA ? fp_abs(p.pw[k]) : p.s_sign * p.pw[k];
    gb[k] = kRangeSafe ? saturate(saturate(g * w) * p.y) : gy * w;
  }
  return g * (dp - p.y * dq);
}

template <int D, int FORM, typename V, typename C>
FP_HOST_DEVICE V backward_terms(V dy, V x, const C* a, const C* b, const Point<D, V>& p, V* ga,
                                V* gb) {
  return backward_terms(dy, x, DerivCoefs<D, FORM, C>(a, b), p, ga, gb);
}

// A wide-path gradient term clamped to the finite range of the compute type C, so that sums
// of huge terms of both signs saturate instead of producing inf - inf.
template <typename C, typename W>
FP_HOST_DEVICE W clamp_to_range(W v, C max_value) {
  const W m = W(max_value);
  return v > m ? m : (v < -m ? -m : v);
}

// Final d/db_k from the reduced sum of gb[k] (see backward_terms); b_0 does not exist.
template <int FORM, typename C>
FP_HOST_DEVICE double denominator_grad(double total, C b_k, bool is_b0) {
  if (is_b0) return 0.0;
  if (FORM == kFormB) return -total;
  const double s = double(fp_sign(b_k));
  return s == 0.0 ? 0.0 : -s * total;  // d|b|/db = 0 at b = 0, even where the sum is inf
}

}  // namespace rational
}  // namespace fastprompt
