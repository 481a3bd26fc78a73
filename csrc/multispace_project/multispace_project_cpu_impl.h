// CPU kernels of the multi-space projection, included once per instruction set
// (multispace_project_cpu.cpp: baseline, multispace_project_cpu_avx2.cpp: AVX2 + FMA) inside
// namespace FP_CPU_ISA. Loops are written over contiguous rows with fixed-width lane
// accumulators so the compiler vectorises them; reductions combine lanes and work items in a
// fixed order.
//
// Fold (shared gate): work item = chunk of kChunk elements of the (d_in, d_out) matrix; it
// streams the N weight chunks once, accumulating in an L1 buffer. Fold backward reads each weight
// chunk and the matching chunk of G once: writes dW_k = g_k G and the chunk's partial <G, W_k>,
// summed over chunks in index order afterwards.
// Rows (per-row gates): work item = a block of rows; each row is read and written once.
#include "multispace_project/multispace_project_cpu_prelude.h"

namespace fastprompt {
namespace multispace_project {
namespace FP_CPU_ISA {

constexpr int kLanes = 16;
constexpr int kTile = 32;  // outputs held in registers across the N spaces

// softmax of n logits (or 1/n for nullptr) into g
template <typename S, typename A>
inline void softmax_row(const S* logits, int64_t n, A* g) {
  if (logits == nullptr) {
    for (int64_t k = 0; k < n; ++k) g[k] = A(1) / A(n);
    return;
  }
  A top = Convert<S>::load(logits[0]);
  for (int64_t k = 1; k < n; ++k) top = std::max<A>(top, Convert<S>::load(logits[k]));
  A total = 0;
  for (int64_t k = 0; k < n; ++k) {
    g[k] = std::exp(A(Convert<S>::load(logits[k])) - top);
    total += g[k];
  }
  const A inv = A(1) / total;
  for (int64_t k = 0; k < n; ++k) g[k] *= inv;
}

// d(logits) = g (dg - <g, dg>)
template <typename A>
inline void softmax_backward_row(const A* g, const A* dg, int64_t n, A* dlogits) {
  A c = 0;
  for (int64_t k = 0; k < n; ++k) c += g[k] * dg[k];
  for (int64_t k = 0; k < n; ++k) dlogits[k] = g[k] * (dg[k] - c);
}

template <typename S, typename A>
inline void load_row(const S* src, int64_t n, A* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Convert<S>::load(src[i]);
}

// sum_i a[i] b[i] with kLanes lane accumulators combined in a fixed order
template <typename S, typename A>
inline A dot(const A* a, const S* b, int64_t n) {
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * A(Convert<S>::load(b[i + l]));
  }
  for (int l = 0; i < n; ++i, ++l) lanes[l] += a[i] * A(Convert<S>::load(b[i]));
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
  }
  return lanes[0];
}

template <typename S>
void fold(const Problem& pb, const S* weight, const S* bias, const S* logits, S* w_eff, S* b_eff,
          ParallelFor pf) {
  using A = acc_t<S>;
  const int64_t n = pb.spaces, e = pb.d_in * pb.d_out;
  std::vector<A> g(n);
  softmax_row(logits, n, g.data());
  parallel_for(pf, fold_chunks(pb), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t e0 = c * kChunk, len = std::min(kChunk, e - e0);
      // kTile outputs stay in registers while the N weight streams go by
      int64_t i = 0;
      for (; i + kTile <= len; i += kTile) {
        A acc[kTile];
        const S* w = weight + e0 + i;
        FP_UNROLL for (int l = 0; l < kTile; ++l) acc[l] = g[0] * A(Convert<S>::load(w[l]));
        for (int64_t k = 1; k < n; ++k) {
          const S* wk = w + k * e;
          const A gk = g[k];
          FP_UNROLL for (int l = 0; l < kTile; ++l) acc[l] += gk * A(Convert<S>::load(wk[l]));
        }
        FP_UNROLL for (int l = 0; l < kTile; ++l) w_eff[e0 + i + l] = Convert<S>::store(acc[l]);
      }
      for (; i < len; ++i) {
        A acc = 0;
        for (int64_t k = 0; k < n; ++k) acc += g[k] * A(Convert<S>::load(weight[k * e + e0 + i]));
        w_eff[e0 + i] = Convert<S>::store(acc);
      }
    }
  });
  if (bias != nullptr) {
    for (int64_t o = 0; o < pb.d_out; ++o) {
      A acc = 0;
      for (int64_t k = 0; k < n; ++k) acc += g[k] * A(Convert<S>::load(bias[k * pb.d_out + o]));
      b_eff[o] = Convert<S>::store(acc);
    }
  }
}

template <typename S>
void fold_backward(const Problem& pb, const S* weight, const S* bias, const S* logits,
                   const S* grad, const acc_t<S>* col_sum, S* grad_weight, S* grad_bias,
                   S* grad_logits, ParallelFor pf) {
  using A = acc_t<S>;
  const int64_t n = pb.spaces, e = pb.d_in * pb.d_out, chunks = fold_chunks(pb);
  std::vector<A> g(n), partial(chunks * n);
  softmax_row(logits, n, g.data());
  const bool want_dg = logits != nullptr;
  parallel_for(pf, chunks, 1, [&](int64_t c0, int64_t c1) {
    A buf[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t e0 = c * kChunk, len = std::min(kChunk, e - e0);
      load_row(grad + e0, len, buf);
      for (int64_t k = 0; k < n; ++k) {
        const A gk = g[k];
        S* dw = grad_weight + k * e + e0;
        for (int64_t i = 0; i < len; ++i) dw[i] = Convert<S>::store(gk * buf[i]);
        if (want_dg) partial[c * n + k] = dot(buf, weight + k * e + e0, len);
      }
    }
  });
  if (bias != nullptr) {
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t o = 0; o < pb.d_out; ++o) {
        grad_bias[k * pb.d_out + o] = Convert<S>::store(g[k] * col_sum[o]);
      }
    }
  }
  if (want_dg) {
    std::vector<A> dg(n, A(0)), dl(n);
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t k = 0; k < n; ++k) dg[k] += partial[c * n + k];
    }
    if (bias != nullptr) {
      for (int64_t k = 0; k < n; ++k) dg[k] += dot(col_sum, bias + k * pb.d_out, pb.d_out);
    }
    softmax_backward_row(g.data(), dg.data(), n, dl.data());
    for (int64_t k = 0; k < n; ++k) grad_logits[k] = Convert<S>::store(dl[k]);
  }
}

inline int64_t row_grain(const Problem& pb) {
  const int64_t work = std::max<int64_t>(1, pb.spaces * pb.d_out);
  return std::max<int64_t>(1, 32768 / work);
}

template <typename S>
void rows_forward(const Problem& pb, const S* proj, const S* bias, const S* logits, S* out,
                  ParallelFor pf) {
  using A = acc_t<S>;
  const int64_t n = pb.spaces, d = pb.d_out;
  parallel_for(pf, pb.rows, row_grain(pb), [&](int64_t m0, int64_t m1) {
    std::vector<A> g(n), bias_a(bias != nullptr ? n * d : 0);
    if (bias != nullptr) load_row(bias, n * d, bias_a.data());
    for (int64_t m = m0; m < m1; ++m) {
      softmax_row(logits + m * n, n, g.data());
      S* y = out + m * d;
      // kTile outputs in registers across the N spaces; each projection row read once
      int64_t o = 0;
      for (; o + kTile <= d; o += kTile) {
        A acc[kTile] = {};
        for (int64_t k = 0; k < n; ++k) {
          const S* p = proj + (k * pb.rows + m) * d + o;
          const A gk = g[k];
          if (bias != nullptr) {
            const A* b = bias_a.data() + k * d + o;
            FP_UNROLL for (int l = 0; l < kTile; ++l) {
              acc[l] += gk * (A(Convert<S>::load(p[l])) + b[l]);
            }
          } else {
            FP_UNROLL for (int l = 0; l < kTile; ++l) acc[l] += gk * A(Convert<S>::load(p[l]));
          }
        }
        FP_UNROLL for (int l = 0; l < kTile; ++l) y[o + l] = Convert<S>::store(acc[l]);
      }
      for (; o < d; ++o) {
        A acc = 0;
        for (int64_t k = 0; k < n; ++k) {
          A v = A(Convert<S>::load(proj[(k * pb.rows + m) * d + o]));
          if (bias != nullptr) v += bias_a[k * d + o];
          acc += g[k] * v;
        }
        y[o] = Convert<S>::store(acc);
      }
    }
  });
}

template <typename S>
void rows_backward(const Problem& pb, const S* grad_out, const S* proj, const S* bias,
                   const S* logits,
                   S* grad_proj, S* gates, S* grad_logits, ParallelFor pf) {
  using A = acc_t<S>;
  const int64_t n = pb.spaces, d = pb.d_out;
  parallel_for(pf, pb.rows, row_grain(pb), [&](int64_t m0, int64_t m1) {
    std::vector<A> g(n), dg(n), dl(n), dy(d);
    for (int64_t m = m0; m < m1; ++m) {
      softmax_row(logits + m * n, n, g.data());
      load_row(grad_out + m * d, d, dy.data());
      for (int64_t k = 0; k < n; ++k) {
        const int64_t off = (k * pb.rows + m) * d;
        dg[k] = dot(dy.data(), proj + off, d);
        if (bias != nullptr) dg[k] += dot(dy.data(), bias + k * d, d);
        const A gk = g[k];
        S* dp = grad_proj + off;
        for (int64_t o = 0; o < d; ++o) dp[o] = Convert<S>::store(gk * dy[o]);
      }
      softmax_backward_row(g.data(), dg.data(), n, dl.data());
      for (int64_t k = 0; k < n; ++k) {
        gates[m * n + k] = Convert<S>::store(g[k]);
        grad_logits[m * n + k] = Convert<S>::store(dl[k]);
      }
    }
  });
}

// ---- type-erased entry points (one set per build) ----------------------------------------------

void run_fold(const Problem& pb, const void* weight, const void* bias, const void* logits,
                     void* w_eff, void* b_eff, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    fold<S>(pb, static_cast<const S*>(weight), static_cast<const S*>(bias),
            static_cast<const S*>(logits), static_cast<S*>(w_eff), static_cast<S*>(b_eff), pf);
  });
}

void run_fold_backward(const Problem& pb, const void* weight, const void* bias,
                              const void* logits, const void* grad, const void* col_sum,
                              void* grad_weight, void* grad_bias, void* grad_logits,
                              ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    fold_backward<S>(pb, static_cast<const S*>(weight), static_cast<const S*>(bias),
                     static_cast<const S*>(logits), static_cast<const S*>(grad),
                     static_cast<const acc_t<S>*>(col_sum), static_cast<S*>(grad_weight),
                     static_cast<S*>(grad_bias), static_cast<S*>(grad_logits), pf);
  });
}

void run_rows_forward(const Problem& pb, const void* proj, const void* bias,
                             const void* logits, void* out, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    rows_forward<S>(pb, static_cast<const S*>(proj), static_cast<const S*>(bias),
                    static_cast<const S*>(logits), static_cast<S*>(out), pf);
  });
}

void run_rows_backward(const Problem& pb, const void* grad_out, const void* proj,
                              const void* bias, const void* logits, void* grad_proj, void* gates,
                              void* grad_logits, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    rows_backward<S>(pb, static_cast<const S*>(grad_out), static_cast<const S*>(proj),
                     static_cast<const S*>(bias), static_cast<const S*>(logits), static_cast<S*>(grad_proj),
                     static_cast<S*>(gates), static_cast<S*>(grad_logits), pf);
  });
}

}  // namespace FP_CPU_ISA
}  // namespace multispace_project
}  // namespace fastprompt
