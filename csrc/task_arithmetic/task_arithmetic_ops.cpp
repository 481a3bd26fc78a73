// Torch glue of combine and merge: the op schemas, argument checks and packing, the ops written
// once for every device (templates over Device that call Launch<Device>), and their
// registration for the CPU and, in CUDA builds (FASTPROMPT_WITH_CUDA), for CUDA.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "common/torch_glue.h"
#include "task_arithmetic/task_arithmetic.h"

#ifdef FASTPROMPT_WITH_CUDA
#include "common/torch_glue_cuda.h"
#endif

namespace fastprompt::task_arithmetic {

struct PreparedCombine {
  CombineProblem problem;
  at::Tensor bank;     // (T, N) contiguous
  at::Tensor weights;  // (B, T) contiguous, compute dtype
  at::Tensor base;     // (base_rows, N) contiguous, or undefined
  at::ScalarType compute;
  at::DimVector out_sizes;  // weights.shape[:-1] + bank.shape[1:]
};

// bank (T, ...) with N = bank[0].numel(); weights (B, T) or (T,) (B = 1); base none, or of the
// shape bank.shape[1:] or (1,) + bank.shape[1:] (shared), or (B,) + bank.shape[1:] (per row, 2-D
// weights only); flattened to the (T, N), (B, T), (base_rows, N) of the kernels. Errors name the
// argument.
PreparedCombine prepare_combine(const at::Tensor& bank, const at::Tensor& weights,
                                const std::optional<at::Tensor>& base);

struct PreparedMerge {
  MergeProblem problem;
  at::Tensor vectors;  // (T, N) contiguous
  at::Tensor weights;  // (T,) contiguous, compute dtype
};

PreparedMerge prepare_merge(const at::Tensor& vectors, const at::Tensor& weights,
                            const std::string& method, double density, const std::string& sign,
                            int64_t seed);

// The backward of combine from two device launchers:
//   combine_fn(const PreparedCombine&, at::Tensor out) and
//   weights_grad_fn(const CombineProblem&, grad_out, bank, at::Tensor grad_weights (B, T) compute)
// -> (grad_bank, grad_weights in the shapes of bank and weights (weights' dtype), grad_base
// (base_rows, N)).
std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward_with(
    const at::Tensor& grad_out, const at::Tensor& bank, const at::Tensor& weights,
    int64_t base_rows, void (*combine_fn)(const PreparedCombine&, at::Tensor&),
    void (*weights_grad_fn)(const CombineProblem&, const at::Tensor&, const at::Tensor&,
                            at::Tensor&));

// The kernel calls of one device (Launch<Cpu> and Launch<Cuda> below), each for any sizes (empty ones included):
//   static void combine(const PreparedCombine&, at::Tensor& out);
//   static void weights_grad(const CombineProblem&, const at::Tensor& grad_out,
//                            const at::Tensor& bank, at::Tensor& grad_weights);
//       (the fused kernel of the 16-bit types, for rows and elements > 0; combine_backward_with
//       runs float32 / float64 through the vendor BLAS)
//   static void merge(const PreparedMerge&, at::Tensor& out);
template <class Device>
struct Launch;

template <class Device>
at::Tensor combine_op(const at::Tensor& bank, const at::Tensor& weights,
                      const std::optional<at::Tensor>& base) {
  check_device<Device>(bank, "bank");
  const typename Device::Guard guard(bank);
  PreparedCombine p = prepare_combine(bank, weights, base);
  at::Tensor out = at::empty({p.problem.rows, p.problem.numel}, p.bank.options());
  Launch<Device>::combine(p, out);
  return out.view(p.out_sizes);
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward_op(const at::Tensor& grad_out,
                                                                   const at::Tensor& bank,
                                                                   const at::Tensor& weights,
                                                                   int64_t base_rows) {
  check_device<Device>(bank, "bank");
  const typename Device::Guard guard(bank);
  return combine_backward_with(grad_out, bank, weights, base_rows, &Launch<Device>::combine,
                               &Launch<Device>::weights_grad);
}

template <class Device>
at::Tensor merge_op(const at::Tensor& vectors, const at::Tensor& weights,
                    const std::string& method, double density, const std::string& sign,
                    int64_t seed) {
  check_device<Device>(vectors, "vectors");
  const typename Device::Guard guard(vectors);
  PreparedMerge p = prepare_merge(vectors, weights, method, density, sign, seed);
  at::Tensor out = at::empty({p.problem.numel}, p.vectors.options());
  Launch<Device>::merge(p, out);
  return out;
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("combine", &combine_op<Device>)
      .impl("combine_backward", &combine_backward_op<Device>)
      .impl("merge", &merge_op<Device>);
}

PreparedCombine prepare_combine(const at::Tensor& bank, const at::Tensor& weights,
                                const std::optional<at::Tensor>& base) {
  const DType dtype = to_dtype(bank, "bank");
  TORCH_CHECK(bank.dim() >= 1 && bank.size(0) >= 1,
              "bank: expected shape (T, ...) with at least 1 vector, got ", bank.sizes());
  TORCH_CHECK(weights.dim() == 1 || weights.dim() == 2,
              "weights: expected shape (rows, vectors) or (vectors,), got ", weights.sizes());
  check_same_device(bank, "bank", weights, "weights");
  to_dtype(weights, "weights");
  const int64_t T = bank.size(0), N = bank.numel() / T;
  const int64_t B = weights.dim() == 2 ? weights.size(0) : 1;
  TORCH_CHECK(weights.size(-1) == T, "weights: expected the last dimension to equal the number of "
              "vectors bank.shape[0] = ", T, ", got shape ", weights.sizes());
  const c10::IntArrayRef item = bank.sizes().slice(1);
  PreparedCombine p;
  p.out_sizes.assign(weights.sizes().begin(), weights.sizes().end() - 1);
  p.out_sizes.append(item.begin(), item.end());
  p.compute = bank.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  p.bank = bank.reshape({T, N}).contiguous();
  p.weights = weights.reshape({B, T}).to(p.compute).contiguous();
  int64_t base_rows = 0;
  if (base.has_value() && base->defined()) {
    check_same_device(bank, "bank", *base, "base");
    TORCH_CHECK(base->scalar_type() == bank.scalar_type(), "base: expected dtype ",
                bank.scalar_type(), " (the dtype of bank), got ", base->scalar_type());
    const bool leading = weights.dim() == 2 && base->dim() == bank.dim() &&
                         base->sizes().slice(1) == item;
    const bool shared = base->sizes() == item || (leading && base->size(0) == 1);
    TORCH_CHECK(shared || (leading && base->size(0) == B), "base: expected shape ", item,
                " (shared by every row) or (", B, ", ...) with the item shape ", item,
                " (one per row), got ", base->sizes());
    base_rows = shared ? 1 : B;
    p.base = base->reshape({base_rows, N}).contiguous();
  }
  p.problem = CombineProblem{dtype, T, B, N, base_rows};
  return p;
}

namespace {

// The merge methods and sign rules by name, in the order of their enums (the Python side
// lists the same names in fastprompt/reference/task_arithmetic.py).
constexpr std::array<std::pair<const char*, Method>, 5> kMethodNames{{
    {"task_arithmetic", Method::TaskArithmetic},
    {"magnitude_prune", Method::MagnitudePrune},
    {"ties", Method::Ties},
    {"dare", Method::Dare},
    {"dare_ties", Method::DareTies},
}};
constexpr std::array<std::pair<const char*, Sign>, 2> kSignNames{{
    {"total", Sign::Total},
    {"frequency", Sign::Frequency},
}};

// The enum value named `value`; a RuntimeError naming the argument and the choices otherwise.
template <typename E, size_t N>
E parse_choice(const std::string& value, const char* arg,
               const std::array<std::pair<const char*, E>, N>& names) {
  std::string expected;
  for (const auto& [name, e] : names) {
    if (value == name) return e;
    expected += std::string(expected.empty() ? "'" : ", '") + name + "'";
  }
  TORCH_CHECK(false, arg, ": expected one of ", expected, ", got '", value, "'");
  return names[0].second;  // not reached
}

}  // namespace

PreparedMerge prepare_merge(const at::Tensor& vectors, const at::Tensor& weights,
                            const std::string& method, double density, const std::string& sign,
                            int64_t seed) {
  const DType dtype = to_dtype(vectors, "vectors");
  check_dim(vectors, "vectors", 2, "(vectors, numel)");
  TORCH_CHECK(vectors.size(0) >= 1, "vectors: expected at least 1 vector, got shape ",
              vectors.sizes());
  check_same_device(vectors, "vectors", weights, "weights");
  to_dtype(weights, "weights");
  TORCH_CHECK(weights.dim() == 1 && weights.size(0) == vectors.size(0), "weights: expected shape (",
              vectors.size(0), ",), one weight per vector, got ", weights.sizes());
  const Method m = parse_choice(method, "method", kMethodNames);
  const Sign s = parse_choice(sign, "sign", kSignNames);
  TORCH_CHECK(density > 0.0 && density <= 1.0, "density: expected a value in (0, 1], got ", density);
  PreparedMerge p;
  const at::ScalarType compute = vectors.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  p.vectors = vectors.contiguous();
  p.weights = weights.to(compute).contiguous();
  p.problem = MergeProblem{dtype, vectors.size(0), vectors.size(1), m, s, density, uint64_t(seed)};
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward_with(
    const at::Tensor& grad_out, const at::Tensor& bank, const at::Tensor& weights,
    int64_t base_rows, void (*combine_fn)(const PreparedCombine&, at::Tensor&),
    void (*weights_grad_fn)(const CombineProblem&, const at::Tensor&, const at::Tensor&,
                            at::Tensor&)) {
  PreparedCombine p = prepare_combine(bank, weights, std::nullopt);
  const int64_t T = p.problem.vectors, B = p.problem.rows, N = p.problem.numel;
  check_same_device(bank, "bank", grad_out, "grad_out");
  TORCH_CHECK(grad_out.sizes() == c10::IntArrayRef(p.out_sizes), "grad_out: expected shape ",
              c10::IntArrayRef(p.out_sizes), " (the output's), got ", grad_out.sizes());
  TORCH_CHECK(base_rows == 0 || base_rows == 1 || base_rows == B, "base_rows: expected 0, 1 or ",
              B, ", got ", base_rows);
  const at::Tensor g = grad_out.reshape({B, N}).to(bank.scalar_type()).contiguous();
  at::Tensor grad_bank = at::empty({T, N}, p.bank.options());
  at::Tensor grad_weights = at::empty({B, T}, p.weights.options());
  if (B == 0 || N == 0) {
    grad_bank.zero_();
    grad_weights.zero_();
  } else if (g.scalar_type() == at::kFloat || g.scalar_type() == at::kDouble) {
    // Both products through the vendor BLAS (on the current stream on CUDA): a matrix product
    // reuses each loaded tile across rows and vectors (about 4x faster on the CPU than the fused
    // dot kernel for grad_weights) and reads weights^T in place.
    at::mm_out(grad_bank, p.weights.t(), g);   // (T, B) @ (B, N)
    at::mm_out(grad_weights, g, p.bank.t());   // (B, N) @ (N, T)
  } else {
    // The 16-bit types keep the kernels, which convert on load and accumulate in float32 without
    // materialising float32 copies: grad_bank = weights^T (T, B) applied to the rows of grad_out.
    PreparedCombine gb;
    gb.compute = p.compute;
    gb.bank = g;
    gb.weights = p.weights.t().contiguous();
    gb.problem = CombineProblem{p.problem.dtype, B, T, N, 0};
    combine_fn(gb, grad_bank);
    weights_grad_fn(p.problem, g, p.bank, grad_weights);
  }
  at::Tensor grad_base;
  if (base_rows == 0) {
    grad_base = at::empty({0, N}, p.bank.options());
  } else if (base_rows == B) {
    grad_base = g.clone();
  } else {  // shared base: sum of the rows of grad_out, in row order
    grad_base = at::empty({1, N}, p.bank.options());
    if (B == 0) {
      grad_base.zero_();
    } else {
      PreparedCombine sb;
      sb.compute = p.compute;
      sb.bank = g;
      sb.weights = at::ones({1, B}, p.weights.options());
      sb.problem = CombineProblem{p.problem.dtype, B, 1, N, 0};
      combine_fn(sb, grad_base);
    }
  }
  return {grad_bank.view(bank.sizes()), grad_weights.to(weights.scalar_type()).view(weights.sizes()),
          grad_base};
}

// The op schemas of the family.
TORCH_LIBRARY_FRAGMENT(fastprompt, m) {
  // bank (T, ...); weights (B, T) or (T,); base (...), (1, ...) or (B, ...) with the item shape
  // bank.shape[1:] -> out weights.shape[:-1] + bank.shape[1:] = base + weights @ bank
  m.def("combine(Tensor bank, Tensor weights, Tensor? base) -> Tensor");
  // base_rows: 0 (no base gradient), 1 (shared) or B -> (grad_bank, grad_weights (the shapes of
  // bank and weights), grad_base (base_rows, N) with N = bank[0].numel())
  m.def("combine_backward(Tensor grad_out, Tensor bank, Tensor weights, SymInt base_rows) "
        "-> (Tensor, Tensor, Tensor)");
  // vectors (T, N); weights (T,); method task_arithmetic | magnitude_prune | ties | dare |
  // dare_ties; sign total | frequency; seed: DARE mask seed -> (N,)
  m.def("merge(Tensor vectors, Tensor weights, str method, float density, str sign, int seed) "
        "-> Tensor");
}

template <>
struct Launch<Cpu> {
  static void combine(const PreparedCombine& p, at::Tensor& out) {
    if (p.problem.rows == 0 || p.problem.numel == 0) return;
    combine_cpu(p.problem, p.bank.data_ptr(), p.weights.data_ptr(),
                p.base.defined() ? p.base.data_ptr() : nullptr, out.data_ptr(),
                torch_parallel_for);
  }
  static void weights_grad(const CombineProblem& pb, const at::Tensor& g, const at::Tensor& bank,
                           at::Tensor& gw) {
    combine_weights_grad_cpu(pb, g.data_ptr(), bank.data_ptr(), gw.data_ptr(),
                             torch_parallel_for);
  }
  static void merge(const PreparedMerge& p, at::Tensor& out) {
    if (p.problem.numel == 0) return;
    merge_cpu(p.problem, p.vectors.data_ptr(), p.weights.data_ptr(), out.data_ptr(),
              torch_parallel_for);
  }
};

#ifdef FASTPROMPT_WITH_CUDA
template <>
struct Launch<Cuda> {
  static void combine(const PreparedCombine& p, at::Tensor& out) {
    if (p.problem.rows == 0 || p.problem.numel == 0) return;
    combine_cuda(p.problem, p.bank.data_ptr(), p.weights.data_ptr(),
                 p.base.defined() ? p.base.data_ptr() : nullptr, out.data_ptr(), Cuda::stream());
  }
  static void weights_grad(const CombineProblem& pb, const at::Tensor& g, const at::Tensor& bank,
                           at::Tensor& gw) {
    at::Tensor ws = workspace(combine_weights_grad_workspace_cuda(pb), bank);
    combine_weights_grad_cuda(pb, g.data_ptr(), bank.data_ptr(), gw.data_ptr(), ws.data_ptr(),
                              Cuda::stream());
  }
  static void merge(const PreparedMerge& p, at::Tensor& out) {
    if (p.problem.numel == 0) return;
    at::Tensor ws = workspace(merge_workspace_bytes_cuda(p.problem), p.vectors);
    merge_cuda(p.problem, p.vectors.data_ptr(), p.weights.data_ptr(), out.data_ptr(),
               ws.data_ptr(), Cuda::stream());
  }
};
#endif  // FASTPROMPT_WITH_CUDA

}  // namespace fastprompt::task_arithmetic

FP_REGISTER_KERNELS(task_arithmetic)
