// Torch glue of the rational activation: the op schemas, argument checks and packing, the ops written
// once for every device (templates over Device that call Launch<Device>), and their
// registration for the CPU and, in CUDA builds (FASTPROMPT_WITH_CUDA), for CUDA.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common/torch_glue.h"
#include "rational/rational.h"

#ifdef FASTPROMPT_WITH_CUDA
#include "common/torch_glue_cuda.h"
#endif

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

// The kernel calls of one device (Launch<Cpu> and Launch<Cuda> below):
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

Prepared prepare(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                 const std::string& form) {
  TORCH_CHECK(form == "A" || form == "B", "form: expected \"A\" or \"B\", got \"", form, "\"");
  const DType dtype = to_dtype(x, "x");
  check_same_device(x, "x", numerator, "numerator");
  check_same_device(x, "x", denominator, "denominator");
  check_dim(numerator, "numerator", 2, "(groups, m + 1)");
  check_dim(denominator, "denominator", 2, "(groups, n)");
  to_dtype(numerator, "numerator");
  TORCH_CHECK(numerator.scalar_type() == denominator.scalar_type(),
              "denominator: expected the dtype of numerator (", numerator.scalar_type(), "), got ",
              denominator.scalar_type());
  if (x.scalar_type() == at::kDouble) {
    TORCH_CHECK(numerator.scalar_type() == at::kDouble,
                "numerator: expected float64 coefficients for float64 x, got ",
                numerator.scalar_type());
  } else {
    TORCH_CHECK(numerator.scalar_type() == at::kFloat || numerator.scalar_type() == x.scalar_type(),
                "numerator: expected coefficients of dtype float32 or ", x.scalar_type(),
                " (the dtype of x), got ", numerator.scalar_type());
  }
  const int64_t groups = numerator.size(0);
  TORCH_CHECK(groups >= 1, "numerator: expected at least one group (shape (groups, m + 1)), got ",
              numerator.sizes());
  TORCH_CHECK(denominator.size(0) == groups, "denominator: expected ", groups,
              " groups (numerator.shape[0]), got shape ", denominator.sizes());
  const int64_t m = numerator.size(1) - 1, n = denominator.size(1);
  TORCH_CHECK(m >= 0 && m <= kMaxDegree, "numerator: expected order m in [0, ", kMaxDegree,
              "] (shape (groups, m + 1)), got shape ", numerator.sizes());
  TORCH_CHECK(n >= 1 && n <= kMaxDegree, "denominator: expected order n in [1, ", kMaxDegree,
              "] (shape (groups, n)), got shape ", denominator.sizes());
  TORCH_CHECK(x.dim() >= 1, "x: expected at least one dimension (..., channels), got a scalar");
  const int64_t channels = x.size(-1);
  TORCH_CHECK(channels % groups == 0, "x: expected the last dimension (", channels,
              ") to be divisible by the number of groups (", groups, ")");

  const int degree = int(std::max(m, n));
  const auto compute = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor coef = numerator.new_zeros({groups, 2, degree + 1}, numerator.options().dtype(compute));
  coef.select(1, 0).narrow(1, 0, m + 1).copy_(numerator);
  coef.select(1, 1).narrow(1, 1, n).copy_(denominator);

  Prepared out;
  out.x = x.contiguous();
  out.coef = coef;
  out.problem.dtype = dtype;
  out.problem.numel = x.numel();
  out.problem.groups = groups;
  // one group: a single run over the whole tensor
  out.problem.group_size = groups == 1 ? std::max<int64_t>(x.numel(), 1) : channels / groups;
  out.problem.degree = degree;
  out.problem.form = form == "A" ? 0 : 1;
  out.problem.coef = coef.data_ptr();
  return out;
}

std::tuple<at::Tensor, at::Tensor> unpack_coef_grad(const at::Tensor& grad_coef,
                                                    const at::Tensor& numerator,
                                                    const at::Tensor& denominator) {
  const int64_t m1 = numerator.size(1), n = denominator.size(1);
  return {grad_coef.select(1, 0).narrow(1, 0, m1).to(numerator.scalar_type()).contiguous(),
          grad_coef.select(1, 1).narrow(1, 1, n).to(denominator.scalar_type()).contiguous()};
}

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& x) {
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "grad_out: expected shape ", x.sizes(),
              " (the shape of x), got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "grad_out: expected dtype ",
              x.scalar_type(), ", got ", grad_out.scalar_type());
  check_same_device(x, "x", grad_out, "grad_out");
}

// The op schemas of the family.
TORCH_LIBRARY_FRAGMENT(fastprompt, m) {
  // x (..., C); numerator (G, m+1); denominator (G, n); form "A" or "B"
  m.def("rational(Tensor x, Tensor numerator, Tensor denominator, str form) -> Tensor");
  // -> (grad_x, grad_numerator, grad_denominator)
  m.def("rational_backward(Tensor grad_out, Tensor x, Tensor numerator, Tensor denominator, "
        "str form) -> (Tensor, Tensor, Tensor)");
}

template <>
struct Launch<Cpu> {
  static void forward(const Prepared& p, at::Tensor& y) {
    forward_cpu(p.problem, p.x.data_ptr(), y.data_ptr(), torch_parallel_for);
  }
  static void backward(const Prepared& p, const at::Tensor& g, at::Tensor& grad_x,
                       at::Tensor& grad_coef) {
    backward_cpu(p.problem, g.data_ptr(), p.x.data_ptr(), grad_x.data_ptr(),
                 grad_coef.data_ptr(), torch_parallel_for);
  }
};

#ifdef FASTPROMPT_WITH_CUDA
template <>
struct Launch<Cuda> {
  static void forward(const Prepared& p, at::Tensor& y) {
    forward_cuda(p.problem, p.x.data_ptr(), y.data_ptr(), Cuda::stream());
  }
  static void backward(const Prepared& p, const at::Tensor& g, at::Tensor& grad_x,
                       at::Tensor& grad_coef) {
    at::Tensor ws = workspace(workspace_bytes_cuda(p.problem), p.x);
    backward_cuda(p.problem, g.data_ptr(), p.x.data_ptr(), grad_x.data_ptr(),
                  grad_coef.data_ptr(), ws.data_ptr(), Cuda::stream());
  }
};
#endif  // FASTPROMPT_WITH_CUDA

}  // namespace fastprompt::rational

FP_REGISTER_KERNELS(rational)
