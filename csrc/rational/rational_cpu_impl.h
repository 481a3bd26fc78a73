// CPU kernels of the rational activation, included once per instruction set inside namespace
// FP_CPU_ISA with FP_CPU_LANES float lanes (rational_cpu.cpp: baseline, 8 lanes;
// rational_cpu_avx2.cpp: AVX2 + FMA, 8 lanes; rational_cpu_avx512.cpp: AVX-512, 16 lanes).
// Float-like storage runs on float vectors; float64 runs scalar.
#include "rational/rational_cpu_prelude.h"

#include "common/simd.h"
#include "rational/rational_math.h"

namespace fastprompt {
namespace rational {
namespace FP_CPU_ISA {

constexpr int kLanes = FP_CPU_LANES;
using vfloat = simd::Vec<kLanes>::f32;
using vmask = simd::Vec<kLanes>::mask;
using vu32 = simd::Vec<kLanes>::u32;
using vu16 = simd::Vec<kLanes>::u16;

// Loads / stores of kLanes elements with conversion. Full vectors go through vector registers
// only (a partial store to a stack buffer followed by a vector load stalls store forwarding).
template <typename T>
inline vfloat load_full(const T* p) {
  float tmp[kLanes];
  for (int l = 0; l < kLanes; ++l) tmp[l] = Convert<T>::load(p[l]);
  vfloat v;
  std::memcpy(&v, tmp, sizeof v);
  return v;
}
template <>
inline vfloat load_full<float>(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <>
inline vfloat load_full<BFloat16>(const BFloat16* p) {
  vu16 h;
  std::memcpy(&h, p, sizeof h);
  return (vfloat)(__builtin_convertvector(h, vu32) << 16);
}
template <>
inline vfloat load_full<Half>(const Half* p) {
  vu16 h16;
  std::memcpy(&h16, p, sizeof h16);
  const vu32 h = __builtin_convertvector(h16, vu32);
  const vu32 sign = (h & 0x8000u) << 16;
  // (exponent, mantissa) moved to float position; * 2^112 rebiases normals and subnormals
  vfloat mag = (vfloat)((h & 0x7fffu) << 13) * 5.192296858534828e33f;
  const vmask special = (vmask)((h & 0x7c00u) == 0x7c00u);  // inf / NaN
  mag = fp_select(special, (vfloat)(((h & 0x3ffu) << 13) | 0x7f800000u), mag);
  return (vfloat)((vu32)mag | sign);
}

template <typename T>
inline void store_full(T* p, vfloat v) {
  for (int l = 0; l < kLanes; ++l) p[l] = Convert<T>::store(v[l]);
}
template <>
inline void store_full<float>(float* p, vfloat v) {
  std::memcpy(p, &v, sizeof v);
}
template <>
inline void store_full<BFloat16>(BFloat16* p, vfloat v) {
  const vu32 u = (vu32)v;
  const vu32 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const vmask nan = (vmask)((u & 0x7fffffffu) > 0x7f800000u);
  const vu32 out = (vu32)fp_select(nan, (vfloat)((u >> 16) | 0x40u), (vfloat)rounded);
  const vu16 h = __builtin_convertvector(out, vu16);
  std::memcpy(p, &h, sizeof h);
}

// 2 * kLanes bfloat16 values as two float vectors, interleaved with zeros within each 128-bit
// lane (unpack low / high: no shift, no cross-lane move); the element order inside the pair of
// vectors is permuted, which a pointwise computation does not mind as long as the result goes
// back through store_bf16_pair, the exact inverse.
using vu16x2 = simd::Vec<2 * kLanes>::u16;
inline void load_bf16_pair(const BFloat16* p, vfloat& lo, vfloat& hi) {
  vu16x2 h;
  std::memcpy(&h, p, sizeof h);
  const vu16x2 z = {};
#if FP_CPU_LANES == 16
  lo = (vfloat)__builtin_shufflevector(z, h, 0, 32, 0, 33, 0, 34, 0, 35, 0, 40, 0, 41, 0, 42, 0, 43,
                                       0, 48, 0, 49, 0, 50, 0, 51, 0, 56, 0, 57, 0, 58, 0, 59);
  hi = (vfloat)__builtin_shufflevector(z, h, 0, 36, 0, 37, 0, 38, 0, 39, 0, 44, 0, 45, 0, 46, 0, 47,
                                       0, 52, 0, 53, 0, 54, 0, 55, 0, 60, 0, 61, 0, 62, 0, 63);
#else
  lo = (vfloat)__builtin_shufflevector(z, h, 0, 16, 0, 17, 0, 18, 0, 19, 0, 24, 0, 25, 0, 26, 0, 27);
  hi = (vfloat)__builtin_shufflevector(z, h, 0, 20, 0, 21, 0, 22, 0, 23, 0, 28, 0, 29, 0, 30, 0, 31);
#endif
}

// float -> bfloat16 bits (round to nearest even) in the upper half of each 32-bit lane, for finite
// values only (a NaN could round to infinity).
inline vu32 round_to_bf16_finite(vfloat v) {
  const vu32 u = (vu32)v;
  return u + 0x7fffu + ((u >> 16) & 1u);
}

// Inverse of load_bf16_pair for finite values: the upper halves of lo's and hi's lanes, packed
// back in memory order.
inline void store_bf16_pair_finite(BFloat16* p, vfloat lo, vfloat hi) {
  const vu16x2 l = (vu16x2)round_to_bf16_finite(lo);
  const vu16x2 h = (vu16x2)round_to_bf16_finite(hi);
#if FP_CPU_LANES == 16
  const vu16x2 out = __builtin_shufflevector(l, h, 1, 3, 5, 7, 33, 35, 37, 39, 9, 11, 13, 15, 41, 43,
                                             45, 47, 17, 19, 21, 23, 49, 51, 53, 55, 25, 27, 29, 31,
                                             57, 59, 61, 63);
#else
  const vu16x2 out = __builtin_shufflevector(l, h, 1, 3, 5, 7, 17, 19, 21, 23, 9, 11, 13, 15, 25, 27,
                                             29, 31);
#endif
  std::memcpy(p, &out, sizeof out);
}

template <typename T>
inline vfloat load_lanes(const T* p, int64_t n) {  // n <= kLanes; missing lanes are 0
  if (n == kLanes) return load_full(p);
  float tmp[kLanes] = {};
  for (int64_t l = 0; l < n; ++l) tmp[l] = Convert<T>::load(p[l]);
  vfloat v;
  std::memcpy(&v, tmp, sizeof v);
  return v;
}

template <typename T>
inline void store_lanes(T* p, vfloat v, int64_t n) {
  if (n == kLanes) return store_full(p, v);
  for (int64_t l = 0; l < n; ++l) p[l] = Convert<T>::store(v[l]);
}

// Value type of the main loop: vectors for float-like storage, scalars for double.
template <typename T> struct Lane { using type = vfloat; static constexpr int width = kLanes; };
template <> struct Lane<double> { using type = double; static constexpr int width = 1; };

template <typename T>
inline typename Lane<T>::type load_value(const T* p, int64_t n) { return load_lanes(p, n); }
template <>
inline double load_value<double>(const double* p, int64_t) { return *p; }
template <typename T>
inline void store_value(T* p, typename Lane<T>::type v, int64_t n) { store_lanes(p, v, n); }
template <>
inline void store_value<double>(double* p, double v, int64_t) { *p = v; }

template <typename V> struct LaneCount { static constexpr int value = kLanes; };
template <> struct LaneCount<double> { static constexpr int value = 1; };
template <typename V> inline float lane(const V& v, int l) { return v[l]; }
inline double lane(double v, int) { return v; }
template <typename V> inline void set_lane(V& v, int l, float s) { v[l] = s; }
inline void set_lane(double& v, int, double s) { v = s; }
template <typename M> inline bool mask_lane(const M& m, int l) { return m[l] != 0; }
inline bool mask_lane(int m, int) { return m != 0; }  // scalar masks (bool | bool is int)

// Local copies of group g's coefficients a (numerator) and b (denominator) from pb.coef.
template <typename C, int D>
inline void group_coefs(const Problem& pb, int64_t g, C* a, C* b) {
  const C* coef = static_cast<const C*>(pb.coef) + g * 2 * (D + 1);
  for (int j = 0; j <= D; ++j) {
    a[j] = coef[j];
    b[j] = coef[D + 1 + j];
  }
}

// Calls f(begin, end, g, a, b) for each maximal sub-range of [begin, end) inside one group;
// a and b are local copies of the group's coefficients (no aliasing with the output).
template <typename C, int D, typename F>
inline void for_each_group_run(const Problem& pb, int64_t begin, int64_t end, F&& f) {
  // one division for the first run; the following runs step through the groups cyclically
  int64_t run_end = (begin / pb.group_size + 1) * pb.group_size;
  int64_t g = (begin / pb.group_size) % pb.groups;
  for (int64_t i = begin; i < end; i = run_end, run_end += pb.group_size) {
    C a[D + 1], b[D + 1];
    group_coefs<C, D>(pb, g, a, b);
    f(i, std::min(end, run_end), g, a, b);
    if (++g == pb.groups) g = 0;
  }
}

// Short groups: the whole rows inside [begin, end), [rows_begin, rows_end), are visited in blocks
// of rows, group by group within a block: f(g, a, b, first, stride, rows) covers the runs
// [first + r * stride, + group_size) for r < rows, so that a group's coefficients are set up
// once per block instead of once per run. The partial rows at both ends go through
// for_each_group_run (run(lo, hi)).
constexpr int64_t kRowBlockElements = 2048;

template <typename C, int D, typename Run, typename F>
inline void for_each_group_by_rows(const Problem& pb, int64_t begin, int64_t end, Run&& run,
                                   F&& f) {
  const int64_t row = pb.groups * pb.group_size;
  const int64_t rows_begin = std::min(end, (begin + row - 1) / row * row);
  const int64_t rows_end = std::max(rows_begin, end / row * row);
  run(begin, rows_begin);
  // blocks of whole rows small enough to stay in the L2 cache while every group passes over them
  const int64_t block = std::max<int64_t>(1, kRowBlockElements / row) * row;
  for (int64_t block_begin = rows_begin; block_begin < rows_end; block_begin += block) {
    const int64_t rows = (std::min(rows_end, block_begin + block) - block_begin) / row;
    for (int64_t g = 0; g < pb.groups; ++g) {
      C a[D + 1], b[D + 1];
      group_coefs<C, D>(pb, g, a, b);
      f(g, a, b, block_begin + g * pb.group_size, row, rows);
    }
  }
  run(rows_end, end);
}

// Groups shorter than this are visited by rows (for_each_group_by_rows) in the forward.
constexpr int64_t kShortGroup = 64;

// Forward of one group run [lo, hi): the direct form over the whole run, with the unsafe-point
// masks or-ed together instead of a branch per vector; a run that has any unsafe point is
// evaluated again vector by vector (evaluate_fast, then the wide re-evaluation per lane).
template <typename T, int D, int FORM>
void forward_run(const T* x, T* y, int64_t lo, int64_t hi, const acc_t<T>* a,
                 const acc_t<T>* b, const DirectCoefs<D, FORM, typename Lane<T>::type>& coefs) {
  using V = typename Lane<T>::type;
  using W = typename Wider<acc_t<T>>::type;
  constexpr int width = Lane<T>::width;
  V value;
  decltype(direct_value(V{}, coefs, value)) unsafe{};  // all lanes false
  int64_t i = lo;
  if constexpr (std::is_same_v<T, BFloat16>) {
    // two vectors per step through the cheaper paired conversions; a non-finite result is
    // flagged unsafe, so the run is stored again by the checked path below
    for (; i + 2 * width <= hi; i += 2 * width) {
      V x0, x1, y0, y1;
      load_bf16_pair(x + i, x0, x1);
      unsafe |= direct_value(x0, coefs, y0);
      unsafe |= direct_value(x1, coefs, y1);
      store_bf16_pair_finite(y + i, y0, y1);
    }
  }
  for (; i + width <= hi; i += width) {
    unsafe |= direct_value(load_value(x + i, width), coefs, value);
    store_value(y + i, value, width);
  }
  if (i < hi) {
    unsafe |= direct_value(load_value(x + i, hi - i), coefs, value);
    store_value(y + i, value, hi - i);
  }
  if (__builtin_expect(!fp_any(unsafe), 1)) return;
  for (i = lo; i < hi; i += width) {
    const int64_t n = std::min<int64_t>(width, hi - i);
    const V xv = load_value(x + i, n);
    Point<D, V> p;
    const bool direct = evaluate_fast<D, FORM>(xv, a, b, p);
    store_value(y + i, p.y, n);
    if (direct) continue;
    const auto wide = needs_wide(p);
    if (!fp_any(wide)) continue;
    for (int l = 0; l < n; ++l) {
      if (!mask_lane(wide, l)) continue;
      Point<D, W> pw;
      evaluate<D, FORM>(W(lane(xv, l)), a, b, pw);
      y[i + l] = Convert<T>::store(acc_t<T>(pw.y));
    }
  }
}

template <typename T, int D, int FORM>
void forward_range(const Problem& pb, const T* x, T* y, int64_t begin, int64_t end) {
  using Coefs = DirectCoefs<D, FORM, typename Lane<T>::type>;
  const auto runs = [&](int64_t lo, int64_t hi) {
    for_each_group_run<acc_t<T>, D>(pb, lo, hi, [&](int64_t l, int64_t h, int64_t, const auto* a, const auto* b) {
      forward_run<T, D, FORM>(x, y, l, h, a, b, Coefs(a, b));
    });
  };
  if (pb.group_size >= kShortGroup) return runs(begin, end);
  for_each_group_by_rows<acc_t<T>, D>(pb, begin, end, runs,
      [&](int64_t, const auto* a, const auto* b, int64_t first, int64_t stride, int64_t rows) {
        const Coefs coefs(a, b);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t lo = first + r * stride;
          forward_run<T, D, FORM>(x, y, lo, lo + pb.group_size, a, b, coefs);
        }
      });
}

// Element chunk of the backward: fixed by the shapes alone, so the reduction order (and the
// result, bit for bit) does not depend on the number of threads.
inline int64_t backward_chunk(const Problem& pb) {
  const int64_t slots = 2 * (pb.degree + 1);
  return std::max<int64_t>(16384, 16 * pb.groups * slots);
}

// Gradient terms of the elements [lo, hi) of one group run (inside one group): grad_x is
// stored, the fast-path terms are added to the vector accumulators sa / sb, the terms of the
// points re-evaluated in the wider type to wide_a / wide_b (clamped to the float range).
template <typename T, int D, int FORM, typename V, typename W, typename C>
__attribute__((always_inline)) inline void backward_run(
    const T* dy, const T* x, T* dx, int64_t lo, int64_t hi, const C* a, const C* b,
    const DerivCoefs<D, FORM, C>& dc, V* sa, V* sb, W* wide_a, W* wide_b) {
  constexpr int width = Lane<T>::width;
  constexpr int K = D + 1;
  for (int64_t i = lo; i < hi; i += width) {
    const int64_t n = std::min<int64_t>(width, hi - i);
    const V xv = load_value(x + i, n);
    const V gv = load_value(dy + i, n);
    Point<D, V> p;
    const bool direct = evaluate_fast<D, FORM>(xv, a, b, p);
    V ga[K], gb[K];
    V gx = backward_terms(gv, xv, dc, p, ga, gb);
    const auto wide = needs_wide(p);
    if (__builtin_expect(!direct && fp_any(wide), 0)) {
      const V zero = splat_as(V{}, 0.0);
      for (int j = 0; j < K; ++j) {
        ga[j] = fp_select(wide, zero, ga[j]);
        gb[j] = fp_select(wide, zero, gb[j]);
      }
      for (int l = 0; l < n; ++l) {
        if (!mask_lane(wide, l)) continue;
        Point<D, W> pw;
        const W xw = W(lane(xv, l));
        evaluate<D, FORM>(xw, a, b, pw);
        W wa[K], wb[K];
        set_lane(gx, l, C(backward_terms(W(lane(gv, l)), xw, dc, pw, wa, wb)));
        constexpr C kMax = std::numeric_limits<C>::max();
        for (int j = 0; j < K; ++j) {
          wide_a[j] += clamp_to_range(wa[j], kMax);
          wide_b[j] += clamp_to_range(wb[j], kMax);
        }
      }
    }
    for (int j = 0; j < K; ++j) sa[j] += ga[j];
    for (int j = 1; j < K; ++j) sb[j] += gb[j];
    store_value(dx + i, gx, n);
  }
}

// acc_a / acc_b (double) += the lanes of sa / sb and the wide sums; then zeroes them.
template <int K, typename V, typename W>
inline void flush_terms(double* acc_a, double* acc_b, V* sa, V* sb, W* wide_a, W* wide_b) {
  for (int j = 0; j < K; ++j) {
    double ta = double(wide_a[j]), tb = double(wide_b[j]);
    for (int l = 0; l < LaneCount<V>::value; ++l) {
      ta += lane(sa[j], l);
      tb += lane(sb[j], l);
    }
    acc_a[j] += ta;
    acc_b[j] += tb;
    sa[j] = sb[j] = splat_as(V{}, 0.0);
    wide_a[j] = wide_b[j] = W(0);
  }
}

template <typename T, int D, int FORM>
void backward_chunk_range(const Problem& pb, const T* dy, const T* x, T* dx, int64_t begin,
                          int64_t end, double* partial /* (G, 2, D + 1), zeroed */) {
  using C = acc_t<T>;
  using V = typename Lane<T>::type;
  using W = typename Wider<C>::type;
  constexpr int K = D + 1;
  constexpr int64_t kFlushEvery = 256;  // float accumulators are flushed to double this often
  const auto runs = [&](int64_t lo_all, int64_t hi_all) {
    for_each_group_run<C, D>(pb, lo_all, hi_all, [&](int64_t lo, int64_t hi, int64_t g, const C* a, const C* b) {
      double* acc_a = partial + g * 2 * K;
      double* acc_b = acc_a + K;
      const DerivCoefs<D, FORM, C> dc(a, b);
      for (int64_t block = lo; block < hi; block += kFlushEvery) {
        const int64_t block_end = std::min(hi, block + kFlushEvery);
        V sa[K], sb[K];
        for (int j = 0; j < K; ++j) sa[j] = sb[j] = splat_as(V{}, 0.0);
        W wide_a[K] = {}, wide_b[K] = {};
        backward_run<T, D, FORM>(dy, x, dx, block, block_end, a, b, dc, sa, sb, wide_a, wide_b);
        flush_terms<K>(acc_a, acc_b, sa, sb, wide_a, wide_b);
      }
    });
  };
  if (pb.group_size >= kFlushEvery) return runs(begin, end);
  // Short groups: group by group over the chunk's whole rows, with one set of accumulators per
  // group flushed every kFlushEvery elements, instead of a horizontal sum per short run.
  for_each_group_by_rows<C, D>(pb, begin, end, runs,
      [&](int64_t g, const C* a, const C* b, int64_t first, int64_t stride, int64_t rows) {
        const DerivCoefs<D, FORM, C> dc(a, b);
        V sa[K], sb[K];
        for (int j = 0; j < K; ++j) sa[j] = sb[j] = splat_as(V{}, 0.0);
        W wide_a[K] = {}, wide_b[K] = {};
        double* acc_a = partial + g * 2 * K;
        int64_t seen = 0;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t lo = first + r * stride;
          backward_run<T, D, FORM>(dy, x, dx, lo, lo + pb.group_size, a, b, dc, sa, sb, wide_a,
                                   wide_b);
          seen += pb.group_size;
          if (seen >= kFlushEvery) {
            flush_terms<K>(acc_a, acc_a + K, sa, sb, wide_a, wide_b);
            seen = 0;
          }
        }
        if (seen > 0) flush_terms<K>(acc_a, acc_a + K, sa, sb, wide_a, wide_b);
      });
}

template <typename T, int D, int FORM>
void backward_typed(const Problem& pb, const T* dy, const T* x, T* dx, acc_t<T>* grad_coef,
                    ParallelFor pf) {
  using C = acc_t<T>;
  constexpr int K = D + 1;
  const int64_t chunk = backward_chunk(pb);
  const int64_t chunks = (pb.numel + chunk - 1) / chunk;
  const int64_t slots = pb.groups * 2 * K;
  std::vector<double> partial(size_t(chunks * slots), 0.0);
  parallel_for(pf, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      backward_chunk_range<T, D, FORM>(pb, dy, x, dx, c * chunk,
                                       std::min(pb.numel, (c + 1) * chunk),
                                       partial.data() + c * slots);
    }
  });
  // Second pass: chunks summed in index order; then d/db_k = -sign(b_k) * sum (form A)
  // or -sum (form B).
  const C* coef = static_cast<const C*>(pb.coef);
  for (int64_t s = 0; s < slots; ++s) {
    double total = 0.0;
    for (int64_t c = 0; c < chunks; ++c) total += partial[size_t(c * slots + s)];
    const int64_t j = s % (2 * K);
    if (j >= K) total = denominator_grad<FORM>(total, coef[s], j == K);
    grad_coef[s] = C(total);
  }
}

void forward(const Problem& pb, const void* x, void* y, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_int<1, kMaxDegree>(pb.degree, [&](auto d) {
      dispatch_int<0, 1>(pb.form, [&](auto form) {
        const T* xs = static_cast<const T*>(x);
        T* ys = static_cast<T*>(y);
        parallel_for(pf, pb.numel, 16384, [&](int64_t b, int64_t e) {
          forward_range<T, decltype(d)::value, decltype(form)::value>(pb, xs, ys, b, e);
        });
      });
    });
  });
}

void backward(const Problem& pb, const void* grad_out, const void* x, void* grad_x,
              void* grad_coef, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_int<1, kMaxDegree>(pb.degree, [&](auto d) {
      dispatch_int<0, 1>(pb.form, [&](auto form) {
        backward_typed<T, decltype(d)::value, decltype(form)::value>(
            pb, static_cast<const T*>(grad_out), static_cast<const T*>(x), static_cast<T*>(grad_x),
            static_cast<acc_t<T>*>(grad_coef), pf);
      });
    });
  });
}

}  // namespace FP_CPU_ISA
}  // namespace rational
}  // namespace fastprompt
