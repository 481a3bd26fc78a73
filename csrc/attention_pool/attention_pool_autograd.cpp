// Autograd kernel of attention_pool (the log-sum-exp output is not differentiable).

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "common/autograd.h"

namespace fastprompt::attention_pool {
namespace {

struct AttentionPoolFunction : torch::autograd::Function<AttentionPoolFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& z, const at::Tensor& queries,
                               const std::optional<at::Tensor>& mask) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&)>(
        "fastprompt::attention_pool");
    at::Tensor out, lse;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(out, lse) = op.call(z, queries, mask);
    }
    ctx->mark_non_differentiable({lse});
    ctx->save_for_backward({z, queries, or_undefined(mask), out, lse});
    return {out, lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = op_handle<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
        const at::Tensor&, const at::Tensor&)>("fastprompt::attention_pool_backward");
    check_first_order("fastprompt.attention_pool");
    const variable_list saved = ctx->get_saved_variables();
    auto [grad_z, grad_queries] =
        op.call(grads[0], saved[0], saved[1], optional_of(saved[2]), saved[3], saved[4]);
    return {grad_if(ctx, 0, grad_z), grad_if(ctx, 1, layout_like(grad_queries, saved[1])),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> attention_pool_autograd(const at::Tensor& z,
                                                           const at::Tensor& queries,
                                                           const std::optional<at::Tensor>& mask) {
  const variable_list result = AttentionPoolFunction::apply(z, queries, mask);
  return {result[0], result[1]};
}

}  // namespace
}  // namespace fastprompt::attention_pool

FP_REGISTER_AUTOGRAD("attention_pool", &fastprompt::attention_pool::attention_pool_autograd)
