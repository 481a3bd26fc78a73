// CPU kernels of self-attention pooling, included once per instruction set
// (attention_pool_cpu.cpp: baseline, attention_pool_cpu_avx2.cpp: AVX2 + FMA) inside namespace
// FP_CPU_ISA. Float-like storage computes in float on 8-lane vectors; float64 runs scalar.
//
// Work item = (row b, chunk of kTokenChunk tokens). Each item streams its tokens once, in blocks
// of kBlock tokens converted to the compute type in a small buffer that stays in L1: scores,
// then an online-softmax update of the running max / sum / weighted sum of the chunk. Chunk
// partials are merged per row in index order. The backward recomputes the attention weights
// from the saved log-sum-exp in the same single pass over z.
#include "attention_pool/attention_pool_cpu_prelude.h"

#include "common/simd.h"

namespace fastprompt {
namespace attention_pool {
namespace FP_CPU_ISA {

using simd::kLanes;
using simd::vfloat;

constexpr int64_t kBlock = 16;  // tokens staged in the compute type at a time

inline int64_t padded_dim(int64_t dim) { return (dim + kLanes - 1) / kLanes * kLanes; }

inline vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
inline float hsum(vfloat v) {
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// out[r] = x . rows[r] for r < count; rows has row stride n, n a multiple of kLanes.
template <typename C>
inline void dots(const C* x, const C* rows, int64_t count, int64_t n, C* out) {
  if constexpr (std::is_same_v<C, float>) {
    int64_t r = 0;
    for (; r + 8 <= count; r += 8) {  // eight rows per pass over x
      const float* m = rows + r * n;
      vfloat s[8] = {};
      for (int64_t d = 0; d < n; d += kLanes) {
        const vfloat xv = vload(x + d);
        for (int j = 0; j < 8; ++j) s[j] += xv * vload(m + j * n + d);
      }
      for (int j = 0; j < 8; ++j) out[r + j] = hsum(s[j]);
    }
    for (; r + 4 <= count; r += 4) {
      const float *m0 = rows + r * n, *m1 = m0 + n, *m2 = m1 + n, *m3 = m2 + n;
      vfloat s0{}, s1{}, s2{}, s3{};
      for (int64_t d = 0; d < n; d += kLanes) {
        const vfloat xv = vload(x + d);
        s0 += xv * vload(m0 + d);
        s1 += xv * vload(m1 + d);
        s2 += xv * vload(m2 + d);
        s3 += xv * vload(m3 + d);
      }
      out[r] = hsum(s0);
      out[r + 1] = hsum(s1);
      out[r + 2] = hsum(s2);
      out[r + 3] = hsum(s3);
    }
    for (; r < count; ++r) {
      const float* m0 = rows + r * n;
      vfloat s0{};
      for (int64_t d = 0; d < n; d += kLanes) s0 += vload(x + d) * vload(m0 + d);
      out[r] = hsum(s0);
    }
  } else {
    for (int64_t r = 0; r < count; ++r) {
      C s = 0;
      for (int64_t d = 0; d < n; ++d) s += x[d] * rows[r * n + d];
      out[r] = s;
    }
  }
}

// acc[k, :] += sum_i coef[i, k] * zb[i, :] for k < K, i < nb; rows of length n.
template <typename C>
inline void accumulate(const C* zb, int64_t nb, const C* coef, int64_t K, int64_t n, C* acc) {
  if constexpr (std::is_same_v<C, float>) {
    for (int64_t k = 0; k < K; ++k) {
      float* a = acc + k * n;
      int64_t d = 0;
      for (; d + 4 * kLanes <= n; d += 4 * kLanes) {
        vfloat a0 = vload(a + d), a1 = vload(a + d + kLanes), a2 = vload(a + d + 2 * kLanes),
               a3 = vload(a + d + 3 * kLanes);
        for (int64_t i = 0; i < nb; ++i) {
          const float c = coef[i * K + k];
          const float* zr = zb + i * n + d;
          a0 += c * vload(zr);
          a1 += c * vload(zr + kLanes);
          a2 += c * vload(zr + 2 * kLanes);
          a3 += c * vload(zr + 3 * kLanes);
        }
        vstore(a + d, a0);
        vstore(a + d + kLanes, a1);
        vstore(a + d + 2 * kLanes, a2);
        vstore(a + d + 3 * kLanes, a3);
      }
      for (; d < n; d += kLanes) {
        vfloat a0 = vload(a + d);
        for (int64_t i = 0; i < nb; ++i) a0 += coef[i * K + k] * vload(zb + i * n + d);
        vstore(a + d, a0);
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < nb; ++i) {
        const C c = coef[i * K + k];
        for (int64_t d = 0; d < n; ++d) acc[k * n + d] += c * zb[i * n + d];
      }
  }
}

// out[:] = sum_r coef[r] * rows[r, :] for r < count
template <typename C>
inline void weighted_rows(const C* coef, const C* rows, int64_t count, int64_t n, C* out) {
  if constexpr (std::is_same_v<C, float>) {
    for (int64_t d = 0; d < n; d += kLanes) {
      vfloat v{};
      for (int64_t r = 0; r < count; ++r) v += coef[r] * vload(rows + r * n + d);
      vstore(out + d, v);
    }
  } else {
    for (int64_t d = 0; d < n; ++d) {
      C v = 0;
      for (int64_t r = 0; r < count; ++r) v += coef[r] * rows[r * n + d];
      out[d] = v;
    }
  }
}

// Row `src` (D values of T) into dst (n values of C, zero past D).
template <typename T, typename C>
inline void load_row(const T* src, int64_t D, int64_t n, C* dst) {
  if constexpr (std::is_same_v<T, C>) {
    std::memcpy(dst, src, sizeof(C) * D);
  } else {
    for (int64_t d = 0; d < D; ++d) dst[d] = Convert<T>::load(src[d]);
  }
  for (int64_t d = D; d < n; ++d) dst[d] = C(0);
}

template <typename T, typename C>
inline void store_row(const C* src, int64_t D, T* dst) {
  if constexpr (std::is_same_v<T, C>) {
    std::memcpy(dst, src, sizeof(C) * D);
  } else {
    for (int64_t d = 0; d < D; ++d) dst[d] = Convert<T>::store(src[d]);
  }
}

// (rows, D) -> (rows, n) zero-padded copy.
template <typename C>
std::vector<C> pad_rows(const C* src, int64_t rows, int64_t D, int64_t n) {
  std::vector<C> out(size_t(rows * n), C(0));
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out.data() + r * n, src + r * D, sizeof(C) * D);
  return out;
}

inline int64_t num_chunks(const Problem& pb) {
  return (pb.tokens + kTokenChunk - 1) / kTokenChunk;
}

// Converts the next (up to kBlock) real tokens of row b in [t, t_end) into zb; records their
// indices in idx. Masked tokens passed over are reported through on_masked(t).
template <typename T, typename C, typename F>
inline int64_t stage_block(const Problem& pb, const T* z, int64_t b, int64_t& t, int64_t t_end,
                           int64_t n, C* zb, int64_t* idx, F&& on_masked) {
  int64_t nb = 0;
  for (; t < t_end && nb < kBlock; ++t) {
    if (pb.mask && !pb.mask[b * pb.tokens + t]) {
      on_masked(t);
      continue;
    }
    load_row(z + (b * pb.tokens + t) * pb.dim, pb.dim, n, zb + nb * n);
    idx[nb++] = t;
  }
  return nb;
}

template <typename T>
void forward_typed(const Problem& pb, const T* z, const acc_t<T>* queries_t, T* out,
                   acc_t<T>* lse, ParallelFor pf) {
  using C = acc_t<T>;
  const int64_t K = pb.num_queries, D = pb.dim, n = padded_dim(D);
  const int64_t chunks = num_chunks(pb), items = pb.batch * chunks;
  const std::vector<C> wt = pad_rows(queries_t, K, D, n);
  // per item: running max, running sum, weighted sum (K, n)
  std::vector<C> part_max(size_t(items * K)), part_sum(size_t(items * K)),
      part_acc(size_t(items * K * n));
  constexpr C kNegInf = -std::numeric_limits<C>::infinity();

  parallel_for(pf, items, 1, [&](int64_t i0, int64_t i1) {
    std::vector<C> zb(size_t(kBlock * n)), scores(size_t(kBlock * K));
    int64_t idx[kBlock];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / chunks, chunk = item % chunks;
      C* m = part_max.data() + item * K;
      C* l = part_sum.data() + item * K;
      C* acc = part_acc.data() + item * K * n;
      std::fill(m, m + K, kNegInf);
      std::fill(l, l + K, C(0));
      std::fill(acc, acc + K * n, C(0));
      int64_t t = chunk * kTokenChunk;
      const int64_t t_end = std::min(pb.tokens, t + kTokenChunk);
      while (t < t_end) {
        const int64_t nb = stage_block(pb, z, b, t, t_end, n, zb.data(), idx, [](int64_t) {});
        if (nb == 0) continue;
        for (int64_t i = 0; i < nb; ++i) dots(zb.data() + i * n, wt.data(), K, n, scores.data() + i * K);
        for (int64_t k = 0; k < K; ++k) {
          C block_max = scores[k];
          for (int64_t i = 1; i < nb; ++i) block_max = std::max(block_max, scores[i * K + k]);
          if (block_max > m[k]) {
            const C scale = std::exp(m[k] - block_max);  // 0 while m is -inf
            l[k] *= scale;
            for (int64_t d = 0; d < n; ++d) acc[k * n + d] *= scale;
            m[k] = block_max;
          }
          for (int64_t i = 0; i < nb; ++i) {
            const C e = std::exp(scores[i * K + k] - m[k]);
            scores[i * K + k] = e;
            l[k] += e;
          }
        }
        accumulate(zb.data(), nb, scores.data(), K, n, acc);
      }
    }
  });

  parallel_for(pf, pb.batch, 1, [&](int64_t b0, int64_t b1) {
    std::vector<C> row(static_cast<size_t>(n));
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t k = 0; k < K; ++k) {
        C top = kNegInf;
        for (int64_t c = 0; c < chunks; ++c) top = std::max(top, part_max[(b * chunks + c) * K + k]);
        T* dst = out + (b * K + k) * D;
        std::fill(row.begin(), row.end(), C(0));
        if (top == kNegInf) {  // no real token in the row
          store_row(row.data(), D, dst);
          lse[b * K + k] = kNegInf;
          continue;
        }
        C total = 0;
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t item = b * chunks + c;
          const C mc = part_max[item * K + k];
          if (mc == kNegInf) continue;
          const C w = std::exp(mc - top);
          total += w * part_sum[item * K + k];
          const C* a = part_acc.data() + (item * K + k) * n;
          for (int64_t d = 0; d < n; ++d) row[d] += w * a[d];
        }
        const C inv = C(1) / total;
        for (int64_t d = 0; d < n; ++d) row[d] *= inv;
        store_row(row.data(), D, dst);
        lse[b * K + k] = top + std::log(total);
      }
    }
  });
}

template <typename T>
void backward_typed(const Problem& pb, const acc_t<T>* grad_out, const T* z,
                    const acc_t<T>* queries_t, const acc_t<T>* out, const acc_t<T>* lse,
                    T* grad_z, acc_t<T>* grad_queries_t, ParallelFor pf) {
  using C = acc_t<T>;
  const int64_t B = pb.batch, K = pb.num_queries, D = pb.dim, n = padded_dim(D);
  const int64_t chunks = num_chunks(pb), items = B * chunks;
  const std::vector<C> wt = pad_rows(queries_t, K, D, n);
  const std::vector<C> gp = pad_rows(grad_out, B * K, D, n);
  std::vector<C> c_dot(size_t(B * K));  // grad_out[b, k] . out[b, k]
  for (int64_t r = 0; r < B * K; ++r) {
    C s = 0;
    for (int64_t d = 0; d < D; ++d) s += grad_out[r * D + d] * out[r * D + d];
    c_dot[r] = s;
  }
  std::vector<C> part_dw(size_t(items * K * n));

  parallel_for(pf, items, 1, [&](int64_t i0, int64_t i1) {
    std::vector<C> zb(static_cast<size_t>(kBlock * n)), row(static_cast<size_t>(n));
    // rows (2K, n): the queries, then grad_out of the current row; one pass over a token gives
    // its scores u (first K) and g (last K), and grad_z is a weighted sum of the same rows
    std::vector<C> rows(static_cast<size_t>(2 * K * n)), ug(static_cast<size_t>(2 * K));
    std::vector<C> coef(static_cast<size_t>(2 * K)), dscore(static_cast<size_t>(kBlock * K));
    std::copy(wt.begin(), wt.end(), rows.begin());
    int64_t rows_of = -1;
    int64_t idx[kBlock];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / chunks, chunk = item % chunks;
      if (rows_of != b) {
        std::copy(gp.begin() + b * K * n, gp.begin() + (b + 1) * K * n, rows.begin() + K * n);
        rows_of = b;
      }
      const C* lse_b = lse + b * K;
      const C* c_b = c_dot.data() + b * K;
      C* dw = part_dw.data() + item * K * n;
      std::fill(dw, dw + K * n, C(0));
      int64_t t = chunk * kTokenChunk;
      const int64_t t_end = std::min(pb.tokens, t + kTokenChunk);
      auto zero_grad_row = [&](int64_t tm) {
        T* dst = grad_z + (b * pb.tokens + tm) * D;
        for (int64_t d = 0; d < D; ++d) dst[d] = Convert<T>::store(C(0));
      };
      while (t < t_end) {
        const int64_t nb = stage_block(pb, z, b, t, t_end, n, zb.data(), idx, zero_grad_row);
        for (int64_t i = 0; i < nb; ++i) {
          const C* zr = zb.data() + i * n;
          dots(zr, rows.data(), 2 * K, n, ug.data());
          C* du = dscore.data() + i * K;
          for (int64_t k = 0; k < K; ++k) {
            const C a = std::exp(ug[k] - lse_b[k]);
            du[k] = a * (ug[K + k] - c_b[k]);
            coef[k] = du[k];   // times the queries
            coef[K + k] = a;   // times grad_out
          }
          weighted_rows(coef.data(), rows.data(), 2 * K, n, row.data());
          store_row(row.data(), D, grad_z + (b * pb.tokens + idx[i]) * D);
        }
        if (nb > 0) accumulate(zb.data(), nb, dscore.data(), K, n, dw);
      }
    }
  });

  // grad_w summed over items in index order
  parallel_for(pf, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      C* dst = grad_queries_t + k * D;
      std::fill(dst, dst + D, C(0));
      for (int64_t item = 0; item < items; ++item) {
        const C* src = part_dw.data() + (item * K + k) * n;
        for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
      }
    }
  });
}

void forward(const Problem& pb, const void* z, const void* queries_t, void* out, void* lse,
             ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = acc_t<T>;
    forward_typed<T>(pb, static_cast<const T*>(z), static_cast<const C*>(queries_t),
                     static_cast<T*>(out), static_cast<C*>(lse), pf);
  });
}

void backward(const Problem& pb, const void* grad_out, const void* z, const void* queries_t,
              const void* out, const void* lse, void* grad_z, void* grad_queries_t,
              ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = acc_t<T>;
    backward_typed<T>(pb, static_cast<const C*>(grad_out), static_cast<const T*>(z),
                      static_cast<const C*>(queries_t), static_cast<const C*>(out),
                      static_cast<const C*>(lse), static_cast<T*>(grad_z),
                      static_cast<C*>(grad_queries_t), pf);
  });
}

}  // namespace FP_CPU_ISA
}  // namespace attention_pool
}  // namespace fastprompt
