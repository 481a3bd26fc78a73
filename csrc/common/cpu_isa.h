// Run-time choice of the instruction set of the CPU kernels that are built several times
// (baseline / AVX2 + FMA / AVX-512): the widest this CPU has, capped by
// FASTPROMPT_CPU_ISA=baseline|avx2|avx512 (read on every call, so tests can compare the builds
// in one process).
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
