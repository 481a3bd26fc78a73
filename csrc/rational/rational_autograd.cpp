// Autograd kernel of rational.

#include <ATen/core/Tensor.h>

#include <string>
#include <tuple>

#include "common/autograd.h"

namespace fastprompt::rational {
namespace {

struct RationalFunction : torch::autograd::Function<RationalFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& numerator,
                            const at::Tensor& denominator, c10::string_view form) {
    static const auto op = op_handle<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, c10::string_view)>(
        "fastprompt::rational");
    ctx->saved_data["form"] = std::string(form);
    ctx->save_for_backward({x, numerator, denominator});
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, numerator, denominator, form);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        c10::string_view)>("fastprompt::rational_backward");
    check_first_order("fastprompt.rational");
    const variable_list saved = ctx->get_saved_variables();
    const std::string form = ctx->saved_data["form"].toStringRef();
    auto [grad_x, grad_num, grad_den] = op.call(grads[0], saved[0], saved[1], saved[2], form);
    return {grad_if(ctx, 0, grad_x), grad_if(ctx, 1, layout_like(grad_num, saved[1])),
            grad_if(ctx, 2, layout_like(grad_den, saved[2])), at::Tensor()};
  }
};

at::Tensor rational_autograd(const at::Tensor& x, const at::Tensor& numerator,
                             const at::Tensor& denominator, c10::string_view form) {
  return RationalFunction::apply(x, numerator, denominator, form);
}

}  // namespace
}  // namespace fastprompt::rational

FP_REGISTER_AUTOGRAD("rational", &fastprompt::rational::rational_autograd)
