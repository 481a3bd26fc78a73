// Autograd kernel of multispace_project (its second output, saved for the backward, is not
// differentiable).

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "common/autograd.h"

namespace fastprompt::multispace_project {
namespace {

struct MultispaceProjectFunction : torch::autograd::Function<MultispaceProjectFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias,
                               const std::optional<at::Tensor>& gate_logits) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
        const std::optional<at::Tensor>&)>("fastprompt::multispace_project");
    at::Tensor out, saved;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(out, saved) = op.call(x, weight, bias, gate_logits);
    }
    ctx->mark_non_differentiable({saved});
    ctx->save_for_backward({x, weight, or_undefined(bias),
                            or_undefined(gate_logits), saved});
    return {out, saved};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
        const std::optional<at::Tensor>&, const at::Tensor&)>(
        "fastprompt::multispace_project_backward");
    check_first_order("fastprompt.multispace_project");
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &bias = saved[2], &gate_logits = saved[3];
    auto [grad_x, grad_weight, grad_bias, grad_logits] =
        op.call(grads[0].contiguous(), saved[0], saved[1], optional_of(bias),
                optional_of(gate_logits), saved[4]);
    // the gradient edges number the given tensors only: gate_logits follows bias when both are given
    const size_t gate_edge = bias.defined() ? 3 : 2;
    return {grad_if(ctx, 0, grad_x), grad_if(ctx, 1, grad_weight),
            bias.defined() ? grad_if(ctx, 2, grad_bias) : at::Tensor(),
            gate_logits.defined() ? grad_if(ctx, gate_edge, grad_logits) : at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> multispace_project_autograd(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& gate_logits) {
  const variable_list result = MultispaceProjectFunction::apply(x, weight, bias, gate_logits);
  return {result[0], result[1]};
}

}  // namespace
}  // namespace fastprompt::multispace_project

FP_REGISTER_AUTOGRAD("multispace_project",
                     &fastprompt::multispace_project::multispace_project_autograd)
