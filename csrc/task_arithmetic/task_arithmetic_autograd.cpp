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
    // base_rows 0 tells the backward op to skip the gradient of a base that needs none; else 1
    // (shared) or the number of rows (one base per row), as the op reads base's shape
    c10::SymInt base_rows = 0;
    if (given(base) && base->requires_grad()) {
      const bool per_row = weights.dim() == 2 && base->dim() == bank.dim();
      base_rows = per_row ? base->sym_size(0) : c10::SymInt(1);
    }
    ctx->saved_data["base_rows"] = base_rows;
    ctx->save_for_backward({bank, weights, base_rows == 0 ? at::Tensor() : *base});
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(bank, weights, base);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::SymInt)>(
        "fastprompt::combine_backward");
    check_first_order("fastprompt.combine");
    const variable_list saved = ctx->get_saved_variables();
    const c10::SymInt base_rows = ctx->saved_data["base_rows"].toSymInt();
    auto [grad_bank, grad_weights, grad_base] = op.call(grads[0], saved[0], saved[1], base_rows);
    return {grad_if(ctx, 0, grad_bank), grad_if(ctx, 1, grad_weights),
            base_rows == 0 ? at::Tensor() : grad_base.reshape_symint(saved[2].sym_sizes())};
  }
};

at::Tensor combine_autograd(const at::Tensor& bank, const at::Tensor& weights,
                            const std::optional<at::Tensor>& base) {
  return CombineFunction::apply(bank, weights, base);
}

}  // namespace
}  // namespace fastprompt::task_arithmetic

FP_REGISTER_AUTOGRAD("combine", &fastprompt::task_arithmetic::combine_autograd)
