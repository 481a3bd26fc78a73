// Autograd kernel of combine (merge is not differentiable).

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "common/autograd.h"

namespace fastprompt::task_arithmetic {
namespace {

struct CombineFunction : torch::autograd::Function<CombineFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& bank, const at::Tensor& weights,
                            const std::optional<at::Tensor>& base) {
    static const auto op = op_handle<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                const std::optional<at::Tensor>&)>("fastprompt::combine");
    // base_rows 0 tells the backward op to skip the gradient of a base that needs none
    ctx->saved_data["base_rows"] =
        given(base) && base->requires_grad() ? base->sym_size(0) : c10::SymInt(0);
    ctx->save_for_backward({bank, weights});
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(bank, weights, base);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::SymInt)>(
        "fastprompt::combine_backward");
    const variable_list saved = ctx->get_saved_variables();
    const c10::SymInt base_rows = ctx->saved_data["base_rows"].toSymInt();
    auto [grad_bank, grad_weights, grad_base] = op.call(grads[0], saved[0], saved[1], base_rows);
    return {grad_if(ctx, 0, grad_bank), grad_if(ctx, 1, grad_weights),
            base_rows == 0 ? at::Tensor() : grad_base};
  }
};

at::Tensor combine_autograd(const at::Tensor& bank, const at::Tensor& weights,
                            const std::optional<at::Tensor>& base) {
  return CombineFunction::apply(bank, weights, base);
}

}  // namespace
}  // namespace fastprompt::task_arithmetic

FP_REGISTER_AUTOGRAD("combine", &fastprompt::task_arithmetic::combine_autograd)
