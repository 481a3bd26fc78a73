// Helpers for the autograd kernels of the op families (csrc/<family>/<family>_autograd.cpp).
//
// Each differentiable op has a torch::autograd::Function in C++, registered for the Autograd
// dispatch key: the forward saves what the backward needs and calls the op below autograd; the
// backward calls the family's backward op. Both run without entering Python, which matters at
// the small sizes of prompt tuning, where the per-call overhead is the cost. torch.compile traces
// through them (the ops' fake kernels are registered in Python, fastprompt/ops/<family>.py).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace fastprompt {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The typed handle of the op "fastprompt::<name>" (look it up once per call site: keep it in a
// function-local static).
template <class Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// `grad` with the strides of `like`, the tensor it is the gradient of (unchanged when they already
// agree). The kernels return some gradients as slices of a larger buffer; where a dimension has
// size 1 such a slice counts as contiguous but keeps the buffer's stride, and
// DistributedDataParallel compares a gradient's strides exactly with those of its bucket (it
// warns and copies on every step).
inline at::Tensor layout_like(const at::Tensor& grad, const at::Tensor& like) {
  if (!grad.defined() || grad.sym_strides() == like.sym_strides()) return grad;
  return at::empty_like(like, grad.options()).copy_(grad);
}

// The backward ops have no derivative of their own: a backward run with create_graph=True (grad
// mode on) would hand out gradients that later differentiate as constants. Say so instead.
inline void check_first_order(const char* op) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op, ": double backward is not supported (its gradients "
              "were requested with create_graph=True); differentiate through the reference in "
              "fastprompt.reference for higher-order gradients");
}

// `grad` where input `i` of the op needs a gradient, else an undefined tensor (no gradient).
inline at::Tensor grad_if(const AutogradContext* ctx, size_t i, const at::Tensor& grad) {
  return ctx->needs_input_grad(i) ? grad : at::Tensor();
}

// An optional tensor argument that is given (defined).
inline bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// An optional tensor argument as a tensor to save for the backward (undefined when not given), and
// back.
inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return given(t) ? *t : at::Tensor(); }
inline std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

}  // namespace fastprompt

// Registers `fn` as the Autograd kernel of fastprompt::<name>.
#define FP_REGISTER_AUTOGRAD(name, fn) \
  TORCH_LIBRARY_IMPL(fastprompt, Autograd, m) { m.impl(name, fn); }
