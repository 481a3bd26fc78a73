// Torch glue of the multi-space projection: the op schemas, argument checks and packing, the ops written
// once for every device (templates over Device that call Launch<Device>), and their
// registration for the CPU and, in CUDA builds (FASTPROMPT_WITH_CUDA), for CUDA. The matrix
// products go to the vendor BLAS (at::mm / at::addmm: MKL / cuBLAS); the fused kernels around them
// are per device (the Kernels table of Launch<Device>).

#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "common/torch_glue.h"
#include "multispace_project/multispace_project.h"

#ifdef FASTPROMPT_WITH_CUDA
#include "common/torch_glue_cuda.h"
#endif

namespace fastprompt::multispace_project {

struct Kernels {
  // each takes the problem and the same pointers as the torch-free functions, then runs on the
  // current stream / thread pool of the device
  void (*fold)(const Problem&, const void*, const void*, const void*, void*, void*);
  void (*fold_backward)(const Problem&, const void*, const void*, const void*, const void*,
                        const void*, void*, void*, void*, const at::Tensor& like);
  void (*rows_forward)(const Problem&, const void*, const void*, const void*, void*);
  void (*rows_backward)(const Problem&, const void*, const void*, const void*, const void*,
                        void*, void*, void*);
};

// -> (out (..., d_out), saved): saved is W_eff (d_in, d_out) for a shared gate or none, and
// the projections P_k = x @ W_k (N, M, d_out) for per-row gates; the backward takes it back.
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias,
                                           const std::optional<at::Tensor>& gate_logits,
                                           const Kernels& kernels);

// -> (grad_x, grad_weight, grad_bias (N, d_out) or shape (0,) without bias, grad_gate_logits
// (gate_logits' shape) or shape (0,) without gate logits)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate_logits,
    const at::Tensor& saved, const Kernels& kernels);

// The kernels of one device (Launch<Cpu> and Launch<Cuda> below): static constexpr int64_t
// kMaxSpaces (the most spaces its kernels take); static const Kernels& kernels().
template <class Device>
struct Launch;

template <class Device>
std::tuple<at::Tensor, at::Tensor> forward_op(const at::Tensor& x, const at::Tensor& weight,
                                              const std::optional<at::Tensor>& bias,
                                              const std::optional<at::Tensor>& gate_logits) {
  check_device<Device>(x, "x");
  check_size_at_most(weight, "weight", 3, 0, Launch<Device>::kMaxSpaces, "spaces on CUDA");
  const typename Device::Guard guard(x);
  return forward(x, weight, bias, gate_logits, Launch<Device>::kernels());
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate_logits,
    const at::Tensor& saved) {
  check_device<Device>(x, "x");
  check_size_at_most(weight, "weight", 3, 0, Launch<Device>::kMaxSpaces, "spaces on CUDA");
  const typename Device::Guard guard(x);
  return backward(grad_out, x, weight, bias, gate_logits, saved, Launch<Device>::kernels());
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("multispace_project", &forward_op<Device>).impl("multispace_project_backward", &backward_op<Device>);
}

namespace {

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
void* mut_ptr_or_null(at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

struct Prepared {
  Problem problem;
  at::Tensor x2;      // (M, d_in), any strides BLAS accepts
  at::Tensor weight;  // (N, d_in, d_out) contiguous
  at::Tensor bias;    // (N, d_out) contiguous or undefined
  at::Tensor logits;  // (N,) or (M, N) contiguous, or undefined
  bool per_row = false;
  std::vector<int64_t> lead;  // x.shape[:-1]
};

Prepared prepare(const at::Tensor& x, const at::Tensor& weight,
                 const std::optional<at::Tensor>& bias,
                 const std::optional<at::Tensor>& gate_logits) {
  const DType dtype = to_dtype(x, "x");
  TORCH_CHECK(x.dim() >= 1, "x: expected shape (..., d_in) with at least 1 dim, got ", x.sizes());
  check_same_device(x, "x", weight, "weight");
  to_dtype(weight, "weight");
  check_dim(weight, "weight", 3, "(num_spaces, d_in, d_out)");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "weight: expected dtype ",
              x.scalar_type(), " (the dtype of x), got ", weight.scalar_type());
  const int64_t N = weight.size(0), d_in = weight.size(1), d_out = weight.size(2);
  TORCH_CHECK(N >= 1, "weight: expected at least one space (num_spaces >= 1), got ",
              weight.sizes());
  TORCH_CHECK(x.size(-1) == d_in, "x: expected shape (..., ", d_in,
              ") with the last dimension equal to weight.shape[1], got ", x.sizes());
  Prepared p;
  p.lead = std::vector<int64_t>(x.sizes().begin(), x.sizes().end() - 1);
  int64_t M = 1;
  for (int64_t s : p.lead) M *= s;
  if (bias.has_value() && bias->defined()) {
    check_same_device(x, "x", *bias, "bias");
    to_dtype(*bias, "bias");
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "bias: expected dtype ", x.scalar_type(),
                " (the dtype of x), got ", bias->scalar_type());
    TORCH_CHECK(bias->dim() == 2 && bias->size(0) == N && bias->size(1) == d_out,
                "bias: expected shape (", N, ", ", d_out, ") = (num_spaces, d_out), got ",
                bias->sizes());
    p.bias = bias->contiguous();
  }
  if (gate_logits.has_value() && gate_logits->defined()) {
    const at::Tensor& g = *gate_logits;
    check_same_device(x, "x", g, "gate_logits");
    to_dtype(g, "gate_logits");
    TORCH_CHECK(g.scalar_type() == x.scalar_type(), "gate_logits: expected dtype ",
                x.scalar_type(), " (the dtype of x), got ", g.scalar_type());
    std::vector<int64_t> row_shape = p.lead;
    row_shape.push_back(N);
    const bool shared = g.dim() == 1 && g.size(0) == N;
    const bool per_row = g.sizes() == at::IntArrayRef(row_shape);
    TORCH_CHECK(shared || per_row, "gate_logits: expected shape (", N, ") (shared) or ",
                at::IntArrayRef(row_shape), " (x.shape[:-1] + (num_spaces,), per row), got ",
                g.sizes());
    p.per_row = !shared;
    p.logits = g.contiguous();
  }
  p.x2 = x.reshape({M, d_in});
  p.weight = weight.contiguous();
  p.problem = Problem{dtype, M, N, d_in, d_out};
  return p;
}

std::vector<int64_t> out_shape(const Prepared& p, int64_t last) {
  std::vector<int64_t> s = p.lead;
  s.push_back(last);
  return s;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias,
                                           const std::optional<at::Tensor>& gate_logits,
                                           const Kernels& kernels) {
  Prepared p = prepare(x, weight, bias, gate_logits);
  const Problem& pb = p.problem;
  const auto opts = p.weight.options();
  if (!p.per_row) {
    at::Tensor w_eff = at::empty({pb.d_in, pb.d_out}, opts);
    at::Tensor b_eff;
    if (p.bias.defined()) b_eff = at::empty({pb.d_out}, opts);
    kernels.fold(pb, p.weight.data_ptr(), ptr_or_null(p.bias), ptr_or_null(p.logits),
                 w_eff.data_ptr(), mut_ptr_or_null(b_eff));
    at::Tensor y = b_eff.defined() ? at::addmm(b_eff, p.x2, w_eff) : at::mm(p.x2, w_eff);
    return {y.view(out_shape(p, pb.d_out)), w_eff};
  }
  // P_k = x @ W_k straight into the (N, M, d_out) buffer saved for the backward: one product
  // per space, no copy of the weights (measured faster than one product against the N weights
  // side by side, which needs a permuted copy, and than a broadcast bmm)
  at::Tensor proj = at::empty({pb.spaces, pb.rows, pb.d_out}, opts);
  for (int64_t k = 0; k < pb.spaces; ++k) {
    at::Tensor proj_k = proj.select(0, k);
    at::mm_out(proj_k, p.x2, p.weight.select(0, k));
  }
  at::Tensor y = at::empty({pb.rows, pb.d_out}, opts);
  if (pb.rows > 0 && pb.d_out > 0) {
    kernels.rows_forward(pb, proj.data_ptr(), ptr_or_null(p.bias), p.logits.data_ptr(),
                         y.data_ptr());
  }
  return {y.view(out_shape(p, pb.d_out)), proj};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate_logits,
    const at::Tensor& saved, const Kernels& kernels) {
  Prepared p = prepare(x, weight, bias, gate_logits);
  const Problem& pb = p.problem;
  const auto opts = p.weight.options();
  check_same_device(x, "x", grad_out, "grad_out");
  check_same_device(x, "x", saved, "saved");
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "grad_out: expected dtype ",
              x.scalar_type(), " (the dtype of x), got ", grad_out.scalar_type());
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(out_shape(p, pb.d_out)),
              "grad_out: expected shape ", at::IntArrayRef(out_shape(p, pb.d_out)),
              " (x.shape[:-1] + (d_out,)), got ", grad_out.sizes());
  TORCH_CHECK(saved.scalar_type() == x.scalar_type(), "saved: expected dtype ", x.scalar_type(),
              ", got ", saved.scalar_type());
  const at::Tensor dy = grad_out.reshape({pb.rows, pb.d_out}).contiguous();
  at::Tensor grad_weight = at::empty({pb.spaces, pb.d_in, pb.d_out}, opts);
  at::Tensor grad_bias = p.bias.defined() ? at::empty({pb.spaces, pb.d_out}, opts)
                                          : at::empty({0}, opts);
  at::Tensor grad_logits = p.logits.defined() ? at::empty(p.logits.sizes(), opts)
                                              : at::empty({0}, opts);
  at::Tensor grad_x2;
  if (!p.per_row) {
    TORCH_CHECK(saved.dim() == 2 && saved.size(0) == pb.d_in && saved.size(1) == pb.d_out,
                "saved: expected the folded weight of shape (", pb.d_in, ", ", pb.d_out,
                "), got ", saved.sizes());
    grad_x2 = at::mm(dy, saved.t());
    const at::Tensor grad = at::mm(p.x2.t(), dy).contiguous();  // (d_in, d_out)
    const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const at::Tensor col_sum = at::sum(dy, {0}, false, acc).contiguous();
    kernels.fold_backward(pb, p.weight.data_ptr(), ptr_or_null(p.bias), ptr_or_null(p.logits),
                          grad.data_ptr(), col_sum.data_ptr(), grad_weight.data_ptr(),
                          p.bias.defined() ? grad_bias.data_ptr() : nullptr,
                          p.logits.defined() ? grad_logits.data_ptr() : nullptr, dy);
  } else {
    TORCH_CHECK(saved.dim() == 3 && saved.size(0) == pb.spaces && saved.size(1) == pb.rows &&
                    saved.size(2) == pb.d_out && saved.is_contiguous(),
                "saved: expected the contiguous projections of shape (", pb.spaces, ", ",
                pb.rows, ", ", pb.d_out, "), got ", saved.sizes());
    at::Tensor grad_proj = at::empty({pb.spaces, pb.rows, pb.d_out}, opts);
    at::Tensor gates = at::empty({pb.rows, pb.spaces}, opts);
    if (pb.rows > 0) {
      if (pb.d_out > 0) {
        kernels.rows_backward(pb, dy.data_ptr(), saved.data_ptr(), ptr_or_null(p.bias),
                              p.logits.data_ptr(),
                              grad_proj.data_ptr(), gates.data_ptr(), grad_logits.data_ptr());
      } else {
        grad_logits.zero_();
      }
    }
    // dx = sum_k dP_k W_k^T accumulated in space order; dW_k = x^T dP_k straight into dW
    grad_x2 = at::empty({pb.rows, pb.d_in}, opts);
    const at::Tensor x_t = p.x2.t();
    for (int64_t k = 0; k < pb.spaces; ++k) {
      const at::Tensor dp_k = grad_proj.select(0, k);
      const at::Tensor w_k_t = p.weight.select(0, k).t();
      if (k == 0) {
        at::mm_out(grad_x2, dp_k, w_k_t);
      } else {
        grad_x2.addmm_(dp_k, w_k_t);
      }
      at::Tensor dw_k = grad_weight.select(0, k);
      at::mm_out(dw_k, x_t, dp_k);
    }
    if (p.bias.defined()) {
      if (pb.d_out > 0 && pb.rows > 0) {
        grad_bias = at::mm(gates.t(), dy);
      } else {
        grad_bias.zero_();
      }
    }
  }
  return {grad_x2.view(x.sizes()), grad_weight, grad_bias, grad_logits};
}

// The op schemas of the family.
TORCH_LIBRARY_FRAGMENT(fastprompt, m) {
  // x (..., d_in); weight (N, d_in, d_out); bias (N, d_out); gate_logits (N,) shared or
  // x.shape[:-1] + (N,) per row; none = uniform
  // -> (out (..., d_out), saved for the backward: folded weight (d_in, d_out) for a shared gate,
  //     projections x @ weight[k] (N, M, d_out) for per-row gates)
  m.def("multispace_project(Tensor x, Tensor weight, Tensor? bias, Tensor? gate_logits) "
        "-> (Tensor, Tensor)");
  // -> (grad_x, grad_weight, grad_bias ((0,) without bias), grad_gate_logits ((0,) without))
  m.def("multispace_project_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor? bias, "
        "Tensor? gate_logits, Tensor saved) -> (Tensor, Tensor, Tensor, Tensor)");
}

template <>
struct Launch<Cpu> {
  static constexpr int64_t kMaxSpaces = std::numeric_limits<int64_t>::max();
  static const Kernels& kernels() {
    static const Kernels k{
        [](const Problem& pb, const void* w, const void* b, const void* l, void* we, void* be) {
          fold_cpu(pb, w, b, l, we, be, torch_parallel_for);
        },
        [](const Problem& pb, const void* w, const void* b, const void* l, const void* g,
           const void* cs, void* gw, void* gb, void* gl, const at::Tensor&) {
          fold_backward_cpu(pb, w, b, l, g, cs, gw, gb, gl, torch_parallel_for);
        },
        [](const Problem& pb, const void* pr, const void* b, const void* l, void* out) {
          rows_forward_cpu(pb, pr, b, l, out, torch_parallel_for);
        },
        [](const Problem& pb, const void* dy, const void* pr, const void* b, const void* l,
           void* dp, void* g, void* gl) {
          rows_backward_cpu(pb, dy, pr, b, l, dp, g, gl, torch_parallel_for);
        },
    };
    return k;
  }
};

#ifdef FASTPROMPT_WITH_CUDA
template <>
struct Launch<Cuda> {
  static constexpr int64_t kMaxSpaces = 1024;  // the gates of a block live in shared memory
  static const Kernels& kernels() {
    static const Kernels k{
        [](const Problem& pb, const void* w, const void* b, const void* l, void* we, void* be) {
          fold_cuda(pb, w, b, l, we, be, Cuda::stream());
        },
        [](const Problem& pb, const void* w, const void* b, const void* l, const void* g,
           const void* cs, void* gw, void* gb, void* gl, const at::Tensor& like) {
          at::Tensor ws = workspace(fold_backward_workspace_bytes_cuda(pb), like);
          fold_backward_cuda(pb, w, b, l, g, cs, gw, gb, gl, ws.data_ptr(), Cuda::stream());
        },
        [](const Problem& pb, const void* pr, const void* b, const void* l, void* out) {
          rows_forward_cuda(pb, pr, b, l, out, Cuda::stream());
        },
        [](const Problem& pb, const void* dy, const void* pr, const void* b, const void* l,
           void* dp, void* g, void* gl) {
          rows_backward_cuda(pb, dy, pr, b, l, dp, g, gl, Cuda::stream());
        },
    };
    return k;
  }
};
#endif  // FASTPROMPT_WITH_CUDA

}  // namespace fastprompt::multispace_project

FP_REGISTER_KERNELS(multispace_project)
