// Run-time choice of the instruction set of the CPU kernels that are built several times
// (baseline / AVX2 + FMA / AVX-512): the widest this CPU has, capped by
// FASTPROMPT_CPU_ISA=baseline|avx2|avx512 (read on every call, so tests can compare the builds
// in one process).
//
// How an op family builds its CPU kernels per instruction set (the one idiom):
//   <op>_cpu_impl.h     the kernels, defined inside `namespace FP_CPU_ISA`; it includes
//                       <op>_cpu_prelude.h first, then common/simd.h (where it uses vectors);
//   <op>_cpu_prelude.h  every header the kernels need except common/simd.h;
//   <op>_cpu.cpp        the baseline build (`#define FP_CPU_ISA baseline`, then the impl), the
//                       declarations of the wider builds' entry points (FP_DECLARE_CPU_BUILD,
//                       FP_ALIAS_CPU_BUILD for a build the family does not have) and the entry
//                       points, each a FP_CPU_DISPATCH(fn, args...);
//   <op>_cpu_<isa>.cpp  one per wider build, in this order:
//                         #include "<op>/<op>_cpu_prelude.h"
//                         #pragma GCC target("avx2,fma")     (or the AVX-512 list)
//                         #define FP_SIMD_TARGET 2           (3 for AVX-512)
//                         #define FP_CPU_ISA avx2
//                         #include "<op>/<op>_cpu_impl.h"
// The rule for the target pragma: the standard library and every shared header come before it,
// so that their ordinary inline functions are compiled for the baseline in every build (the
// linker keeps one copy of each; one compiled for AVX2 could run on a CPU without it), and
// common/simd.h comes after it (all its helpers are always_inline, and their vector code must be
// compiled for the build's instruction set: vector compares parsed under the baseline target are
// lowered lane by lane even when inlined into AVX2 code).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace fastprompt {

enum class CpuIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

inline CpuIsa best_cpu_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const CpuIsa supported = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
      return CpuIsa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
    return CpuIsa::kBaseline;
  }();
#else
  const CpuIsa supported = CpuIsa::kBaseline;
#endif
  const char* cap = std::getenv("FASTPROMPT_CPU_ISA");
  if (cap == nullptr) return supported;
  const CpuIsa wanted = std::strcmp(cap, "baseline") == 0 ? CpuIsa::kBaseline
                        : std::strcmp(cap, "avx2") == 0   ? CpuIsa::kAvx2
                                                          : CpuIsa::kAvx512;
  return std::min(wanted, supported);
}

}  // namespace fastprompt

#if defined(__x86_64__) && defined(__GNUC__)
// Declares the entry points (function declarations, the rest of the arguments) of the build
// `isa` (avx2 or avx512).
#define FP_DECLARE_CPU_BUILD(isa, ...) \
  namespace isa {                      \
  __VA_ARGS__                          \
  }
// A family without the build `isa` runs the narrower build `other` there.
#define FP_ALIAS_CPU_BUILD(isa, other) namespace isa = other;
// `return <build>::fn(args...)` for the build best_cpu_isa() chooses.
#define FP_CPU_DISPATCH(fn, ...) FP_CPU_DISPATCH_AT_MOST(::fastprompt::CpuIsa::kAvx512, fn, __VA_ARGS__)
// The same, never above the build `widest` (a call whose shape runs faster on a narrower build).
#define FP_CPU_DISPATCH_AT_MOST(widest, fn, ...)                           \
  switch (std::min(::fastprompt::best_cpu_isa(), widest)) {                \
    case ::fastprompt::CpuIsa::kAvx512: return avx512::fn(__VA_ARGS__);    \
    case ::fastprompt::CpuIsa::kAvx2: return avx2::fn(__VA_ARGS__);        \
    default: return baseline::fn(__VA_ARGS__);                             \
  }
#else  // other CPUs: the baseline build only
#define FP_DECLARE_CPU_BUILD(isa, ...)
#define FP_ALIAS_CPU_BUILD(isa, other)
#define FP_CPU_DISPATCH(fn, ...) return baseline::fn(__VA_ARGS__)
#define FP_CPU_DISPATCH_AT_MOST(widest, fn, ...) return baseline::fn(__VA_ARGS__)
#endif
