// Torch glue of the gathered linear layer: the op schemas, argument checks and packing, the ops
// written once for every device (templates over Device that call Launch<Device>), and their
// registration for the CPU and, in CUDA builds (FASTPROMPT_WITH_CUDA), for CUDA.

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/argsort.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "common/torch_glue.h"
#include "gathered_linear/gathered_linear.h"

#ifdef FASTPROMPT_WITH_CUDA
#include "common/torch_glue_cuda.h"
#endif

namespace fastprompt::gathered_linear {

struct Prepared {
  Problem problem;
  at::Tensor x;       // (B, T, K) contiguous
  at::Tensor weight;  // (A, N, K) contiguous, accumulation dtype
  at::Tensor bias;    // (A, N) contiguous, accumulation dtype, or undefined
  at::Tensor index;   // (B,) contiguous int64
  at::ScalarType compute;
};

// Validates the arguments (errors name the offending argument) and packs them. With
// `check_index`, CPU indices are checked against the number of layers (the backward skips it: the
// forward checked them, and the kernels never read outside the weights).
Prepared prepare(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                 const at::Tensor& index, bool check_index) {
  const DType dtype = to_dtype(x, "x");
  check_dim(x, "x", 3, "(batch, tokens, in_features)");
  check_same_device(x, "x", weight, "weight");
  check_same_device(x, "x", index, "index");
  check_dim(weight, "weight", 3, "(layers, out_features, in_features)");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "weight: expected dtype ", x.scalar_type(),
              " (the dtype of x), got ", weight.scalar_type());
  TORCH_CHECK(weight.size(2) == x.size(2), "weight: expected in_features = ", x.size(2),
              " (x.shape[2]) as its last dimension, got shape ", weight.sizes());
  const int64_t layers = weight.size(0), out_features = weight.size(1);
  TORCH_CHECK(index.scalar_type() == at::kLong, "index: expected an int64 tensor, got ",
              index.scalar_type());
  check_dim(index, "index", 1, "(batch,)");
  TORCH_CHECK(index.size(0) == x.size(0), "index: expected one layer index per batch row (",
              x.size(0), "), got ", index.size(0));
  if (index.numel() > 0) {
    TORCH_CHECK(layers > 0, "weight: expected at least one layer for a non-empty batch, got shape ",
                weight.sizes());
    if (check_index && index.is_cpu()) {  // CUDA: no device-to-host copy (NaN rows instead)
      const auto [lo, hi] = at::aminmax(index);
      const int64_t low = lo.item<int64_t>(), high = hi.item<int64_t>();
      TORCH_CHECK(low >= 0 && high < layers, "index: expected layer indices in [0, ", layers,
                  ") (weight.shape[0]), got values in [", low, ", ", high, "]");
    }
  }
  const auto compute = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Prepared p;
  if (bias.has_value() && bias->defined()) {
    check_same_device(x, "x", *bias, "bias");
    check_dim(*bias, "bias", 2, "(layers, out_features)");
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "bias: expected dtype ", x.scalar_type(),
                " (the dtype of x), got ", bias->scalar_type());
    TORCH_CHECK(bias->size(0) == layers && bias->size(1) == out_features, "bias: expected shape (",
                layers, ", ", out_features, ") = weight.shape[:2], got ", bias->sizes());
    p.bias = bias->to(compute).contiguous();
  }
  p.x = x.contiguous();
  p.weight = weight.to(compute).contiguous();
  p.index = index.contiguous();
  p.compute = compute;
  p.problem = Problem{dtype, x.size(0), x.size(1), x.size(2), out_features, layers, p.bias.defined()};
  return p;
}

// The kernel calls of one device (Launch<Cpu> and Launch<Cuda> below), each for any sizes,
// returning tensors of the dtype of x:
//   static at::Tensor forward(const Prepared&);                                  // (B, T, N)
//   static at::Tensor backward_input(const Prepared&, const at::Tensor& grad_out);  // (B, T, K)
//   static std::tuple<at::Tensor, at::Tensor> backward_weight(const Prepared&,
//       const at::Tensor& grad_out);   // (A, N, K) and (A, N) (or (0, 0) without a bias)
template <class Device>
struct Launch;

template <class Device>
at::Tensor forward_op(const at::Tensor& x, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, const at::Tensor& index) {
  check_device<Device>(x, "x");
  const typename Device::Guard guard(x);
  return Launch<Device>::forward(prepare(x, weight, bias, index, /*check_index=*/true));
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(const at::Tensor& grad_out,
                                                           const at::Tensor& x,
                                                           const at::Tensor& weight,
                                                           const at::Tensor& index, bool bias) {
  check_device<Device>(x, "x");
  const typename Device::Guard guard(x);
  Prepared p = prepare(x, weight, std::nullopt, index, /*check_index=*/false);
  Problem& pb = p.problem;
  pb.bias = bias;
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({pb.batch, pb.tokens, pb.out}),
              "grad_out: expected shape (", pb.batch, ", ", pb.tokens, ", ", pb.out,
              ") (the output's), got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "grad_out: expected dtype ",
              x.scalar_type(), ", got ", grad_out.scalar_type());
  check_same_device(x, "x", grad_out, "grad_out");
  const at::Tensor g = grad_out.contiguous();
  auto [grad_weight, grad_bias] = Launch<Device>::backward_weight(p, g);
  return {Launch<Device>::backward_input(p, g), grad_weight, grad_bias};
}

template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("gathered_linear", &forward_op<Device>)
      .impl("gathered_linear_backward", &backward_op<Device>);
}

// The op schemas of the family.
TORCH_LIBRARY_FRAGMENT(fastprompt, m) {
  // x (B, T, K); weight (A, N, K); bias (A, N) or None; index (B,) int64 -> (B, T, N)
  m.def("gathered_linear(Tensor x, Tensor weight, Tensor? bias, Tensor index) -> Tensor");
  // -> (grad_x, grad_weight, grad_bias); grad_bias is (A, N), or (0, 0) without a bias
  m.def("gathered_linear_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor index, "
        "bool bias) -> (Tensor, Tensor, Tensor)");
}

// Forward and input gradient on every device: each row's layer gathered (index_select), then the
// vendor BLAS's batched product in the accumulation dtype. Measured faster than hand-written
// kernels on the CPU and, on an H200 (B=64, T=512, K=2048, N=64, float32), 4.8x faster than a
// tiled row-wise CUDA kernel without tensor cores. `index` holds valid layer indices.
at::Tensor forward_gathered(const Prepared& p, const at::Tensor& index) {
  const at::Tensor x = p.x.to(p.compute), w = p.weight.index_select(0, index).transpose(1, 2);
  const at::Tensor out = p.bias.defined()
                             ? at::baddbmm(p.bias.index_select(0, index).unsqueeze(1), x, w)
                             : at::bmm(x, w);
  return out.to(p.x.scalar_type());
}

at::Tensor backward_input_gathered(const Prepared& p, const at::Tensor& g, const at::Tensor& index) {
  return at::bmm(g.to(p.compute), p.weight.index_select(0, index)).to(p.x.scalar_type());
}

// The CPU: the gathered products (indices checked on the host by prepare); the weight gradient
// of the gathered copies is summed per layer by index_add, in row order.
template <>
struct Launch<Cpu> {
  static at::Tensor forward(const Prepared& p) { return forward_gathered(p, p.index); }
  static at::Tensor backward_input(const Prepared& p, const at::Tensor& g) {
    return backward_input_gathered(p, g, p.index);
  }
  static std::tuple<at::Tensor, at::Tensor> backward_weight(const Prepared& p, const at::Tensor& g) {
    const Problem& pb = p.problem;
    const at::Tensor gc = g.to(p.compute);
    const at::Tensor per_row = at::bmm(gc.transpose(1, 2), p.x.to(p.compute));  // (B, N, K)
    const at::Tensor grad_weight =
        at::zeros({pb.layers, pb.out, pb.in}, per_row.options()).index_add_(0, p.index, per_row);
    at::Tensor grad_bias = at::zeros({pb.bias ? pb.layers : 0, pb.bias ? pb.out : 0}, gc.options());
    if (pb.bias) grad_bias.index_add_(0, p.index, gc.sum(1));
    return {grad_weight.to(p.x.scalar_type()), grad_bias.to(p.x.scalar_type())};
  }
};

#ifdef FASTPROMPT_WITH_CUDA
template <>
struct Launch<Cuda> {
  // The gathered products without reading the indices on the host (no device-to-host copy): an
  // out-of-range index reads layer 0 and its batch row comes out as NaN.
  static at::Tensor forward(const Prepared& p) {
    return nan_where_out_of_range(forward_gathered(p, in_range(p)), p);
  }
  static at::Tensor backward_input(const Prepared& p, const at::Tensor& g) {
    return nan_where_out_of_range(backward_input_gathered(p, g, in_range(p)), p);
  }
  static at::Tensor in_range(const Prepared& p) {
    return at::where(out_of_range(p), at::zeros({}, p.index.options()), p.index);
  }
  static at::Tensor out_of_range(const Prepared& p) {
    return p.index.lt(0).logical_or_(p.index.ge(p.problem.layers));
  }
  static at::Tensor nan_where_out_of_range(at::Tensor rows, const Prepared& p) {
    return rows.masked_fill_(out_of_range(p).view({-1, 1, 1}), std::numeric_limits<double>::quiet_NaN());
  }
  static std::tuple<at::Tensor, at::Tensor> backward_weight(const Prepared& p, const at::Tensor& g) {
    const Problem& pb = p.problem;
    at::Tensor grad_weight = at::empty({pb.layers, pb.out, pb.in}, p.x.options());
    at::Tensor grad_bias = at::empty({pb.bias ? pb.layers : 0, pb.bias ? pb.out : 0}, p.x.options());
    if (pb.layers > 0 && pb.out > 0) {
      // the rows of each layer, in batch order: order[offsets[a]:offsets[a + 1]]
      const at::Tensor order = at::argsort(p.index, /*stable=*/true);
      const at::Tensor offsets = at::searchsorted(p.index.index_select(0, order),
                                                  at::arange(pb.layers + 1, p.index.options()));
      backward_weight_cuda(pb, g.data_ptr(), p.x.data_ptr(), order.data_ptr<int64_t>(),
                           offsets.data_ptr<int64_t>(), grad_weight.data_ptr(),
                           pb.bias ? grad_bias.data_ptr() : nullptr, Cuda::stream());
    }
    return {grad_weight, grad_bias};
  }
};
#endif  // FASTPROMPT_WITH_CUDA

}  // namespace fastprompt::gathered_linear

FP_REGISTER_KERNELS(gathered_linear)
