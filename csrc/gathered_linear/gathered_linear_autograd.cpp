// Autograd kernel of gathered_linear.

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "common/autograd.h"

namespace fastprompt::gathered_linear {
namespace {

struct GatheredLinearFunction : torch::autograd::Function<GatheredLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& index) {
    static const auto op = op_handle<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                const std::optional<at::Tensor>&,
                                                const at::Tensor&)>("fastprompt::gathered_linear");
    // a bias that needs no gradient is not summed in the backward
    const bool bias_grad = given(bias) && bias->requires_grad();
    ctx->save_for_backward({x, weight, bias_grad ? *bias : at::Tensor(), index});
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, weight, bias, index);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, bool)>(
        "fastprompt::gathered_linear_backward");
    check_first_order("fastprompt.gathered_linear");
    const variable_list saved = ctx->get_saved_variables();
    const bool bias_grad = saved[2].defined();  // saved only when it needs a gradient
    auto [grad_x, grad_weight, grad_bias] = op.call(grads[0], saved[0], saved[1], saved[3], bias_grad);
    return {grad_if(ctx, 0, grad_x), grad_if(ctx, 1, layout_like(grad_weight, saved[1])),
            bias_grad ? grad_if(ctx, 2, layout_like(grad_bias, saved[2])) : at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor gathered_linear_autograd(const at::Tensor& x, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, const at::Tensor& index) {
  return GatheredLinearFunction::apply(x, weight, bias, index);
}

}  // namespace
}  // namespace fastprompt::gathered_linear

FP_REGISTER_AUTOGRAD("gathered_linear", &fastprompt::gathered_linear::gathered_linear_autograd)
