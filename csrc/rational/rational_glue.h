// Argument checks and packing shared by the CPU and CUDA glue of the rational activation.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <tuple>

#include "rational/rational.h"

namespace fastprompt {
namespace rational {

struct Prepared {
  Problem problem;
  at::Tensor x;     // contiguous input
  at::Tensor coef;  // (G, 2, D + 1) packed coefficients in the compute dtype
};

// Validates the arguments (raising errors that name the offending argument) and packs them.
Prepared prepare(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                 const std::string& form);

// Splits the packed (G, 2, D + 1) coefficient gradient into (grad_numerator, grad_denominator)
// with the shapes and dtypes of the coefficients.
std::tuple<at::Tensor, at::Tensor> unpack_coef_grad(const at::Tensor& grad_coef,
                                                    const at::Tensor& numerator,
                                                    const at::Tensor& denominator);

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& x);

}  // namespace rational
}  // namespace fastprompt
