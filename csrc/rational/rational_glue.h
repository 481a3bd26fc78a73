// The ops of the rational activation, written once for every device (common/torch_glue.h):
// argument checks, packing, and the calls into Launch<Device>.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common/torch_glue.h"
#include "rational/rational.h"

namespace fastprompt::rational {

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

// The kernel calls of one device (rational_ops.cpp: Cpu, rational_ops_cuda.cpp: Cuda):
//   static void forward(const Prepared&, at::Tensor& y);
//   static void backward(const Prepared&, const at::Tensor& grad_out, at::Tensor& grad_x,
//                        at::Tensor& grad_coef);   // both called for non-empty x only
template <class Device>
struct Launch;

template <class Device>
at::Tensor forward_op(const at::Tensor& x, const at::Tensor& numerator,
                      const at::Tensor& denominator, c10::string_view form) {
  check_device<Device>(x, "x");
  const typename Device::Guard guard(x);
  Prepared p = prepare(x, numerator, denominator, std::string(form));
  at::Tensor y = at::empty_like(p.x);
  if (x.numel() > 0) Launch<Device>::forward(p, y);
  return y;
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(const at::Tensor& grad_out,
                                                           const at::Tensor& x,
                                                           const at::Tensor& numerator,
                                                           const at::Tensor& denominator,
                                                           c10::string_view form) {
  check_device<Device>(x, "x");
  const typename Device::Guard guard(x);
  Prepared p = prepare(x, numerator, denominator, std::string(form));
  check_grad_out(grad_out, x);
  at::Tensor g = grad_out.contiguous();
  at::Tensor grad_x = at::empty_like(p.x);
  at::Tensor grad_coef = at::zeros_like(p.coef);
  if (x.numel() > 0) Launch<Device>::backward(p, g, grad_x, grad_coef);
  auto [gn, gd] = unpack_coef_grad(grad_coef, numerator, denominator);
  return {grad_x, gn, gd};
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("rational", &forward_op<Device>).impl("rational_backward", &backward_op<Device>);
}

}  // namespace fastprompt::rational
