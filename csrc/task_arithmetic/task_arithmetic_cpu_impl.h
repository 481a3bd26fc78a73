// CPU kernels of combine and merge, included once per instruction set inside
// namespace FP_CPU_ISA (task_arithmetic_cpu.cpp: baseline; task_arithmetic_cpu_avx2.cpp; task_arithmetic_cpu_avx512.cpp).
// Loops run over fixed-size tiles of the flattened element axis so that every reduction has an
// order that depends on the shapes alone (bitwise reproducible for any thread count and the same
// for every instruction set: no floating-point contraction); the inner loops are written for
// auto-vectorisation.
#include "task_arithmetic/task_arithmetic_cpu_prelude.h"

#include "common/simd.h"

namespace fastprompt {
namespace task_arithmetic {
namespace FP_CPU_ISA {
namespace {

// ---- combine ---------------------------------------------------------------------------------
template <typename A> constexpr int64_t combine_tile() { return sizeof(A) == 8 ? 128 : 256; }

template <typename S>
void combine_impl(const CombineProblem& pb, const S* bank, const acc_t<S>* w, const S* base, S* out,
                  ParallelFor pf) {
  using A = acc_t<S>;
  constexpr int64_t kTile = combine_tile<A>();
  const int64_t T = pb.vectors, B = pb.rows, N = pb.numel;
  const int64_t ntiles = (N + kTile - 1) / kTile;
  parallel_for(pf, ntiles, 4, [&](int64_t c0, int64_t c1) {
    std::vector<A> bk(size_t(T * kTile));
    alignas(64) A o[kTile];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kTile, n = std::min(kTile, N - i0);
      for (int64_t t = 0; t < T; ++t) {
        const S* src = bank + t * N + i0;
        A* dst = bk.data() + t * kTile;
        for (int64_t j = 0; j < n; ++j) dst[j] = Convert<S>::load(src[j]);
      }
      for (int64_t b = 0; b < B; ++b) {
        if (pb.base_rows > 0) {
          const S* bs = base + (pb.base_rows == 1 ? 0 : b) * N + i0;
          for (int64_t j = 0; j < n; ++j) o[j] = Convert<S>::load(bs[j]);
        } else {
          for (int64_t j = 0; j < n; ++j) o[j] = A(0);
        }
        const A* wb = w + b * T;
        for (int64_t t = 0; t < T; ++t) {
          const A wt = wb[t];
          const A* src = bk.data() + t * kTile;
          for (int64_t j = 0; j < n; ++j) o[j] += wt * src[j];
        }
        S* dst = out + b * N + i0;
        for (int64_t j = 0; j < n; ++j) dst[j] = Convert<S>::store(o[j]);
      }
    }
  });
}

template <typename A>
inline A dot8(const A* a, const A* b, int64_t n) {
  A s[8] = {A(0), A(0), A(0), A(0), A(0), A(0), A(0), A(0)};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) s[l] += a[j + l] * b[j + l];
  }
  for (int l = 0; j < n; ++j, ++l) s[l] += a[j] * b[j];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

template <typename S>
void weights_grad_impl(const CombineProblem& pb, const S* g, const S* bank, acc_t<S>* gw,
                       ParallelFor pf) {
  using A = acc_t<S>;
  constexpr int64_t kSub = combine_tile<A>();
  const int64_t T = pb.vectors, B = pb.rows, N = pb.numel;
  const int64_t nchunks = (N + kDotChunk - 1) / kDotChunk;
  std::vector<A> partial(size_t(nchunks * B * T), A(0));
  parallel_for(pf, nchunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<A> bk(size_t(T * kSub));
    alignas(64) A gb[kSub];
    for (int64_t c = c0; c < c1; ++c) {
      A* part = partial.data() + c * B * T;
      const int64_t end = std::min(N, (c + 1) * kDotChunk);
      for (int64_t i0 = c * kDotChunk; i0 < end; i0 += kSub) {
        const int64_t n = std::min(kSub, end - i0);
        for (int64_t t = 0; t < T; ++t) {
          const S* src = bank + t * N + i0;
          for (int64_t j = 0; j < n; ++j) bk[t * kSub + j] = Convert<S>::load(src[j]);
        }
        for (int64_t b = 0; b < B; ++b) {
          const S* src = g + b * N + i0;
          for (int64_t j = 0; j < n; ++j) gb[j] = Convert<S>::load(src[j]);
          for (int64_t t = 0; t < T; ++t) part[b * T + t] += dot8(gb, bk.data() + t * kSub, n);
        }
      }
    }
  });
  for (int64_t e = 0; e < B * T; ++e) {
    A s = A(0);
    for (int64_t c = 0; c < nchunks; ++c) s += partial[c * B * T + e];
    gw[e] = s;
  }
}

// ---- merge -----------------------------------------------------------------------------------
template <typename A> struct KeyOf { using type = uint32_t; static constexpr int kShift = 19; };
template <> struct KeyOf<double> { using type = uint64_t; static constexpr int kShift = 51; };
constexpr int kDigits = 4096;                   // first-level histogram buckets (12 bits)
constexpr int64_t kSelBlock = int64_t(1) << 20; // elements per histogram task
constexpr int64_t kMergeChunk = 8192;           // elements per parallel work item of the fused pass
constexpr int64_t kMergeTile = 512;             // elements per inner tile

// Bits of |v|: unsigned order == order of |v| (NaN above inf).
inline uint32_t abs_key(float v) { return float_to_bits(v) & 0x7fffffffu; }
inline uint64_t abs_key(double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u & 0x7fffffffffffffffull;
}

template <typename K> struct Selection {
  K thr = ~K(0);          // keep |x| keys >= thr (keys never reach ~0: keep none)
  int64_t n_tie = 0;      // entries equal to thr to keep (the lowest indices)
  bool tie_mode = false;  // n_tie < number of entries equal to thr
  std::vector<int64_t> tie_offset;  // per fused chunk, ties before the chunk (tie_mode only)
};

// Per vector, the threshold of the top-k entries by |value|: a 12-bit histogram pass over the
// data, a gather of the entries of the bucket holding the k-th largest, then nth_element on them.
template <typename S>
void select_topk(const MergeProblem& pb, const S* x, int64_t k,
                 std::vector<Selection<typename KeyOf<acc_t<S>>::type>>& sel, ParallelFor pf) {
  using A = acc_t<S>;
  using K = typename KeyOf<A>::type;
  constexpr int kShift = KeyOf<A>::kShift;
  const int64_t T = pb.vectors, N = pb.numel;
  const int64_t nblk = (N + kSelBlock - 1) / kSelBlock;
  std::vector<uint32_t> hist(size_t(T * nblk * kDigits), 0u);
  parallel_for(pf, T * nblk, 1, [&](int64_t a0, int64_t a1) {
    for (int64_t task = a0; task < a1; ++task) {
      const int64_t t = task / nblk, blk = task % nblk;
      uint32_t* h = hist.data() + task * kDigits;
      const S* src = x + t * N;
      const int64_t end = std::min(N, (blk + 1) * kSelBlock);
      for (int64_t i = blk * kSelBlock; i < end; ++i) ++h[abs_key(Convert<S>::load(src[i])) >> kShift];
    }
  });
  std::vector<int64_t> digit(T), above(T), offsets(size_t(T * nblk)), bucket(T);
  for (int64_t t = 0; t < T; ++t) {
    int64_t cum = 0, d = kDigits - 1;
    for (; d > 0; --d) {
      int64_t cnt = 0;
      for (int64_t blk = 0; blk < nblk; ++blk) cnt += hist[(t * nblk + blk) * kDigits + d];
      if (cum + cnt >= k) break;
      cum += cnt;
    }
    digit[t] = d;
    above[t] = cum;
    int64_t off = 0;
    for (int64_t blk = 0; blk < nblk; ++blk) {
      offsets[t * nblk + blk] = off;
      off += hist[(t * nblk + blk) * kDigits + d];
    }
    bucket[t] = off;
  }
  std::vector<std::vector<K>> cand(T);
  for (int64_t t = 0; t < T; ++t) cand[t].resize(size_t(bucket[t]));
  parallel_for(pf, T * nblk, 1, [&](int64_t a0, int64_t a1) {
    for (int64_t task = a0; task < a1; ++task) {
      const int64_t t = task / nblk, blk = task % nblk;
      K* dst = cand[t].data() + offsets[task];
      const S* src = x + t * N;
      const K d = K(digit[t]);
      const int64_t end = std::min(N, (blk + 1) * kSelBlock);
      int64_t m = 0;
      for (int64_t i = blk * kSelBlock; i < end; ++i) {
        const K key = abs_key(Convert<S>::load(src[i]));
        if ((key >> kShift) == d) dst[m++] = key;
      }
    }
  });
  parallel_for(pf, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      std::vector<K>& c = cand[t];
      const int64_t r = k - above[t] - 1;  // 0-based rank inside the bucket, descending
      std::nth_element(c.begin(), c.begin() + r, c.end(), std::greater<K>());
      const K thr = c[size_t(r)];
      int64_t greater = 0, equal = 0;
      for (const K key : c) {
        greater += key > thr;
        equal += key == thr;
      }
      sel[t].thr = thr;
      sel[t].n_tie = k - above[t] - greater;
      sel[t].tie_mode = sel[t].n_tie < equal;
      std::vector<K>().swap(c);
    }
  });
  const int64_t nchunks = (N + kMergeChunk - 1) / kMergeChunk;
  for (int64_t t = 0; t < T; ++t) {
    if (!sel[t].tie_mode) continue;
    std::vector<int64_t>& off = sel[t].tie_offset;
    off.assign(size_t(nchunks), 0);
    const S* src = x + t * N;
    const K thr = sel[t].thr;
    parallel_for(pf, nchunks, 4, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t m = 0;
        const int64_t end = std::min(N, (c + 1) * kMergeChunk);
        for (int64_t i = c * kMergeChunk; i < end; ++i) m += abs_key(Convert<S>::load(src[i])) == thr;
        off[size_t(c)] = m;
      }
    });
    int64_t run = 0;
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t m = off[size_t(c)];
      off[size_t(c)] = run;
      run += m;
    }
  }
}

template <typename S>
void merge_impl(const MergeProblem& pb, const S* x, const acc_t<S>* w, S* out, ParallelFor pf) {
  using A = acc_t<S>;
  using K = typename KeyOf<A>::type;
  const int64_t T = pb.vectors, N = pb.numel;
  const bool prune = pb.density < 1.0;
  const bool magnitude = prune && uses_magnitude(pb.method);
  const bool dare = prune && uses_dare(pb.method);
  const bool elect = uses_election(pb.method);
  const bool by_total = pb.sign == Sign::Total;
  std::vector<Selection<K>> sel(static_cast<size_t>(T));
  bool mag_active = false;
  if (magnitude) {
    const int64_t k = magnitude_k(pb);
    if (k < N) {
      mag_active = true;
      if (k > 0) select_topk<S>(pb, x, k, sel, pf);  // k == 0: default selection keeps nothing
    }
  }
  const uint32_t dare_thr = dare_threshold(pb.density);
  const A dens = A(pb.density);
  std::vector<uint32_t> dare_key(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) dare_key[t] = dare_vector_key(pb.seed, uint32_t(t));
  const int64_t nchunks = (N + kMergeChunk - 1) / kMergeChunk;
  parallel_for(pf, nchunks, 1, [&](int64_t c0, int64_t c1) {
    constexpr int64_t kTile = kMergeTile;
    std::vector<A> buf(size_t(elect ? T * kTile : kTile));
    std::vector<int64_t> rank(size_t(T), 0);
    alignas(64) A acc[kTile];
    alignas(64) A vote[kTile];
    alignas(64) A cnt[kTile];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * kMergeChunk, end = std::min(N, begin + kMergeChunk);
      if (mag_active) {
        for (int64_t t = 0; t < T; ++t) rank[t] = sel[t].tie_mode ? sel[t].tie_offset[size_t(c)] : 0;
      }
      if constexpr (std::is_same_v<S, float>) {
        if (!mag_active && !dare && !elect) {  // plain weighted sum: accumulate in registers
          using V = simd::Vec<16>::f32;
          int64_t i = begin;
          for (; i + 16 <= end; i += 16) {
            V a = V{};
            for (int64_t t = 0; t < T; ++t) {
              V v;
              std::memcpy(&v, x + t * N + i, sizeof v);
              a += v * (V{} + w[t]);
            }
            std::memcpy(out + i, &a, sizeof a);
          }
          for (; i < end; ++i) {
            float a = 0.0f;
            for (int64_t t = 0; t < T; ++t) a += x[t * N + i] * w[t];
            out[i] = a;
          }
          continue;
        }
      }
      for (int64_t i0 = begin; i0 < end; i0 += kTile) {
        const int64_t n = std::min(kTile, end - i0);
        for (int64_t j = 0; j < n; ++j) acc[j] = vote[j] = cnt[j] = A(0);
        for (int64_t t = 0; t < T; ++t) {
          A* p = buf.data() + (elect ? t * kTile : 0);
          const S* src = x + t * N + i0;
          if (!mag_active && !dare && !elect) {  // plain weighted sum: straight from memory
            const A wt = w[t];
            for (int64_t j = 0; j < n; ++j) acc[j] += Convert<S>::load(src[j]) * wt;
            continue;
          }
          for (int64_t j = 0; j < n; ++j) p[j] = Convert<S>::load(src[j]);
          if (mag_active) {
            const Selection<K>& s = sel[t];
            const K thr = s.thr;
            if (!s.tie_mode) {
              for (int64_t j = 0; j < n; ++j) p[j] = abs_key(p[j]) >= thr ? p[j] : A(0);
            } else {
              int64_t eq = 0;
              for (int64_t j = 0; j < n; ++j) eq += abs_key(p[j]) == thr;
              if (eq == 0 || rank[t] >= s.n_tie) {  // no tie to keep in this tile: vector path
                for (int64_t j = 0; j < n; ++j) p[j] = abs_key(p[j]) > thr ? p[j] : A(0);
                rank[t] += eq;
              } else {
                for (int64_t j = 0; j < n; ++j) {
                  const K key = abs_key(p[j]);
                  const bool keep = key > thr || (key == thr && rank[t]++ < s.n_tie);
                  p[j] = keep ? p[j] : A(0);
                }
              }
            }
          }
          if (dare) {
            const uint32_t key = dare_key[t];
            const uint64_t first = uint64_t(i0), last = uint64_t(i0 + n - 1);
            if ((first >> 32) == (last >> 32)) {  // one high word: 32-bit lanes
              const uint32_t lo = uint32_t(first);
              const uint32_t hc = uint32_t(first >> 32) + 0x27D4EB2Fu;
              // divide first, in its own loop: a division under a select does not vectorise
              for (int64_t j = 0; j < n; ++j) p[j] = p[j] / dens;
              for (int64_t j = 0; j < n; ++j) {
                const uint32_t r = fmix32(fmix32((lo + uint32_t(j)) ^ key) ^ hc) >> 8;
                p[j] = r < dare_thr ? p[j] : A(0);
              }
            } else {
              for (int64_t j = 0; j < n; ++j) {
                p[j] = dare_draw(key, uint64_t(i0 + j)) < dare_thr ? p[j] / dens : A(0);
              }
            }
          }
          if (!elect) {
            const A wt = w[t];
            for (int64_t j = 0; j < n; ++j) acc[j] += p[j] * wt;
          } else if (by_total) {
            for (int64_t j = 0; j < n; ++j) vote[j] += p[j];
          } else {
            for (int64_t j = 0; j < n; ++j) {
              vote[j] += (p[j] > A(0) ? A(1) : A(0)) - (p[j] < A(0) ? A(1) : A(0));
            }
          }
        }
        if (elect) {
          for (int64_t j = 0; j < n; ++j) vote[j] = vote[j] >= A(0) ? A(1) : A(-1);  // elected sign
          for (int64_t t = 0; t < T; ++t) {
            const A* p = buf.data() + t * kTile;
            const A wt = w[t];
            for (int64_t j = 0; j < n; ++j) {
              const A v = p[j];
              const bool agree = v * vote[j] > A(0);  // same sign as elected, nonzero
              acc[j] += agree ? v * wt : A(0);
              cnt[j] += agree ? A(1) : A(0);
            }
          }
          for (int64_t j = 0; j < n; ++j) acc[j] = acc[j] / std::max(cnt[j], A(1));
        }
        S* dst = out + i0;
        for (int64_t j = 0; j < n; ++j) dst[j] = Convert<S>::store(acc[j]);
      }
    }
  });
}

}  // namespace

void combine(const CombineProblem& pb, const void* bank, const void* weights, const void* base,
                 void* out, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    combine_impl<S>(pb, static_cast<const S*>(bank), static_cast<const acc_t<S>*>(weights),
                    static_cast<const S*>(base), static_cast<S*>(out), pf);
  });
}

void weights_grad(const CombineProblem& pb, const void* grad_out, const void* bank,
                              void* grad_weights, ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    weights_grad_impl<S>(pb, static_cast<const S*>(grad_out), static_cast<const S*>(bank),
                         static_cast<acc_t<S>*>(grad_weights), pf);
  });
}

void merge(const MergeProblem& pb, const void* vectors, const void* weights, void* out,
               ParallelFor pf) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    merge_impl<S>(pb, static_cast<const S*>(vectors), static_cast<const acc_t<S>*>(weights),
                  static_cast<S*>(out), pf);
  });
}

}  // namespace FP_CPU_ISA
}  // namespace task_arithmetic
}  // namespace fastprompt
