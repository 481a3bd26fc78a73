// Torch-free compile-time dispatch: turn a runtime DType tag or small integer into a template
// argument and call a generic lambda with it.
#pragma once

#include <type_traits>
#include <utility>

#include "common/scalar.h"

namespace fastprompt {

template <typename T> struct TypeTag { using type = T; };

// f(TypeTag<storage type>{}) for the DType.
template <typename F>
decltype(auto) dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float64: return f(TypeTag<double>{});
    case DType::Float16: return f(TypeTag<Half>{});
    case DType::BFloat16: return f(TypeTag<BFloat16>{});
    case DType::Float32:
    default: return f(TypeTag<float>{});
  }
}

namespace detail {
template <int Lo, int Hi, typename F>
decltype(auto) dispatch_int_impl(int v, F&& f) {
  if constexpr (Lo == Hi) {
    return f(std::integral_constant<int, Lo>{});
  } else {
    if (v == Lo) return f(std::integral_constant<int, Lo>{});
    return dispatch_int_impl<Lo + 1, Hi>(v, std::forward<F>(f));
  }
}
}  // namespace detail

// f(std::integral_constant<int, v>{}) for Lo <= v <= Hi (values outside clamp to Hi; callers
// validate ranges first).
template <int Lo, int Hi, typename F>
decltype(auto) dispatch_int(int v, F&& f) {
  return detail::dispatch_int_impl<Lo, Hi>(v, std::forward<F>(f));
}

}  // namespace fastprompt
