// Torch glue of self-attention pooling: the op schemas, argument checks and packing, the ops written
// once for every device (templates over Device that call Launch<Device>), and their
// registration for the CPU and, in CUDA builds (FASTPROMPT_WITH_CUDA), for CUDA.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "attention_pool/attention_pool.h"
#include "common/torch_glue.h"

#ifdef FASTPROMPT_WITH_CUDA
#include "common/torch_glue_cuda.h"
#endif

namespace fastprompt::attention_pool {

struct Prepared {
  Problem problem;
  at::Tensor z;          // (B, T, D) contiguous
  at::Tensor queries_t;  // (K, D) contiguous, compute dtype
  at::Tensor mask;       // (B, T) contiguous bool, or undefined
  at::ScalarType compute;
};

// Validates z, queries and mask (errors name the offending argument) and packs them.
Prepared prepare(const at::Tensor& z, const at::Tensor& queries,
                 const std::optional<at::Tensor>& mask);

// Checks the extra backward inputs against the forward problem; returns grad_out, out and lse
// as contiguous tensors of the compute dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor> prepare_backward(const Prepared& p,
                                                                const at::Tensor& grad_out,
                                                                const at::Tensor& out,
                                                                const at::Tensor& lse);

// (K, D) compute-dtype gradient -> (D, K) in the dtype of queries.
at::Tensor unpack_queries_grad(const at::Tensor& grad_queries_t, const at::Tensor& queries);

// The kernel calls of one device (Launch<Cpu> and Launch<Cuda> below):
//   static constexpr int64_t kMaxQueries;   // the most queries (columns) its kernels take
//   static void forward(const Prepared&, at::Tensor& out, at::Tensor& lse);   // B, K > 0
//   static void backward(const Prepared&, const at::Tensor& grad_out, const at::Tensor& out,
//                        const at::Tensor& lse, at::Tensor& grad_z,
//                        at::Tensor& grad_queries_t);   // B > 0; grad_queries_t zeroed
template <class Device>
struct Launch;

template <class Device>
std::tuple<at::Tensor, at::Tensor> forward_op(const at::Tensor& z, const at::Tensor& queries,
                                              const std::optional<at::Tensor>& mask) {
  check_device<Device>(z, "z");
  check_size_at_most(queries, "queries", 2, 1, Launch<Device>::kMaxQueries,
                     "queries (columns) on CUDA");
  const typename Device::Guard guard(z);
  Prepared p = prepare(z, queries, mask);
  const Problem& pb = p.problem;
  at::Tensor out = at::empty({pb.batch, pb.num_queries, pb.dim}, p.z.options());
  at::Tensor lse = at::empty({pb.batch, pb.num_queries}, p.z.options().dtype(p.compute));
  if (pb.batch > 0 && pb.num_queries > 0) Launch<Device>::forward(p, out, lse);
  return {out, lse};
}

template <class Device>
std::tuple<at::Tensor, at::Tensor> backward_op(const at::Tensor& grad_out, const at::Tensor& z,
                                               const at::Tensor& queries,
                                               const std::optional<at::Tensor>& mask,
                                               const at::Tensor& out, const at::Tensor& lse) {
  check_device<Device>(z, "z");
  check_size_at_most(queries, "queries", 2, 1, Launch<Device>::kMaxQueries,
                     "queries (columns) on CUDA");
  const typename Device::Guard guard(z);
  Prepared p = prepare(z, queries, mask);
  auto [g, o, l] = prepare_backward(p, grad_out, out, lse);
  const Problem& pb = p.problem;
  at::Tensor grad_z = at::empty_like(p.z);
  at::Tensor grad_queries_t = at::zeros({pb.num_queries, pb.dim}, p.queries_t.options());
  if (pb.batch > 0) Launch<Device>::backward(p, g, o, l, grad_z, grad_queries_t);
  return {grad_z, unpack_queries_grad(grad_queries_t, queries)};
}

// The kernels of Device for the family's ops (TORCH_LIBRARY_IMPL in the device files).
template <class Device>
void register_kernels(torch::Library& m) {
  m.impl("attention_pool", &forward_op<Device>).impl("attention_pool_backward", &backward_op<Device>);
}

Prepared prepare(const at::Tensor& z, const at::Tensor& queries,
                 const std::optional<at::Tensor>& mask) {
  const DType dtype = to_dtype(z, "z");
  check_dim(z, "z", 3, "(batch, tokens, dim)");
  check_same_device(z, "z", queries, "queries");
  check_dim(queries, "queries", 2, "(dim, num_queries)");
  to_dtype(queries, "queries");
  const int64_t B = z.size(0), T = z.size(1), D = z.size(2), K = queries.size(1);
  TORCH_CHECK(queries.size(0) == D, "queries: expected shape (", D,
              ", num_queries) with the first dimension equal to z.shape[2], got ",
              queries.sizes());
  if (z.scalar_type() == at::kDouble) {
    TORCH_CHECK(queries.scalar_type() == at::kDouble,
                "queries: expected float64 queries for float64 z, got ", queries.scalar_type());
  } else {
    TORCH_CHECK(queries.scalar_type() == at::kFloat || queries.scalar_type() == z.scalar_type(),
                "queries: expected dtype float32 or ", z.scalar_type(), " (the dtype of z), got ",
                queries.scalar_type());
  }
  Prepared p;
  p.compute = z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  p.z = z.contiguous();
  p.queries_t = queries.t().to(p.compute).contiguous();
  if (mask.has_value() && mask->defined()) {
    check_same_device(z, "z", *mask, "mask");
    TORCH_CHECK(mask->scalar_type() == at::kBool, "mask: expected a bool tensor, got ",
                mask->scalar_type());
    TORCH_CHECK(mask->dim() == 2 && mask->size(0) == B && mask->size(1) == T,
                "mask: expected shape (", B, ", ", T, ") = (z.shape[0], z.shape[1]), got ",
                mask->sizes());
    p.mask = mask->contiguous();
  }
  p.problem.dtype = dtype;
  p.problem.batch = B;
  p.problem.tokens = T;
  p.problem.dim = D;
  p.problem.num_queries = K;
  p.problem.mask = p.mask.defined() ? reinterpret_cast<const uint8_t*>(p.mask.data_ptr()) : nullptr;
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> prepare_backward(const Prepared& p,
                                                                const at::Tensor& grad_out,
                                                                const at::Tensor& out,
                                                                const at::Tensor& lse) {
  const Problem& pb = p.problem;
  const std::vector<int64_t> out_shape{pb.batch, pb.num_queries, pb.dim};
  check_same_device(p.z, "z", grad_out, "grad_out");
  check_same_device(p.z, "z", out, "out");
  check_same_device(p.z, "z", lse, "lse");
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(out_shape), "grad_out: expected shape ",
              at::IntArrayRef(out_shape), " (batch, num_queries, dim), got ", grad_out.sizes());
  TORCH_CHECK(out.sizes() == at::IntArrayRef(out_shape), "out: expected shape ",
              at::IntArrayRef(out_shape), " (batch, num_queries, dim), got ", out.sizes());
  TORCH_CHECK(lse.dim() == 2 && lse.size(0) == pb.batch && lse.size(1) == pb.num_queries,
              "lse: expected shape (", pb.batch, ", ", pb.num_queries, "), got ", lse.sizes());
  to_dtype(grad_out, "grad_out");
  to_dtype(out, "out");
  to_dtype(lse, "lse");
  return {grad_out.to(p.compute).contiguous(), out.to(p.compute).contiguous(),
          lse.to(p.compute).contiguous()};
}

at::Tensor unpack_queries_grad(const at::Tensor& grad_queries_t, const at::Tensor& queries) {
  return grad_queries_t.t().to(queries.scalar_type()).contiguous();
}

// The op schemas of the family.
TORCH_LIBRARY_FRAGMENT(fastprompt, m) {
  // z (B, T, D); queries (D, K); mask (B, T) bool, true = real token
  // -> (out (B, K, D), lse (B, K) log-sum-exp of the scores, float32 / float64 for float64 z)
  m.def("attention_pool(Tensor z, Tensor queries, Tensor? mask) -> (Tensor, Tensor)");
  // -> (grad_z, grad_queries)
  m.def("attention_pool_backward(Tensor grad_out, Tensor z, Tensor queries, Tensor? mask, "
        "Tensor out, Tensor lse) -> (Tensor, Tensor)");
}

template <>
struct Launch<Cpu> {
  static constexpr int64_t kMaxQueries = std::numeric_limits<int64_t>::max();
  static void forward(const Prepared& p, at::Tensor& out, at::Tensor& lse) {
    forward_cpu(p.problem, p.z.data_ptr(), p.queries_t.data_ptr(), out.data_ptr(),
                lse.data_ptr(), torch_parallel_for);
  }
  static void backward(const Prepared& p, const at::Tensor& g, const at::Tensor& o,
                       const at::Tensor& l, at::Tensor& grad_z, at::Tensor& grad_queries_t) {
    backward_cpu(p.problem, g.data_ptr(), p.z.data_ptr(), p.queries_t.data_ptr(), o.data_ptr(),
                 l.data_ptr(), grad_z.data_ptr(), grad_queries_t.data_ptr(), torch_parallel_for);
  }
};

#ifdef FASTPROMPT_WITH_CUDA
template <>
struct Launch<Cuda> {
  // the per-tile score buffers of the kernels live in shared memory (48 KiB without opt-in)
  static constexpr int64_t kMaxQueries = 64;
  static void forward(const Prepared& p, at::Tensor& out, at::Tensor& lse) {
    at::Tensor ws = workspace(workspace_bytes_cuda(p.problem), p.z);
    forward_cuda(p.problem, p.z.data_ptr(), p.queries_t.data_ptr(), out.data_ptr(),
                 lse.data_ptr(), ws.data_ptr(), Cuda::stream());
  }
  static void backward(const Prepared& p, const at::Tensor& g, const at::Tensor& o,
                       const at::Tensor& l, at::Tensor& grad_z, at::Tensor& grad_queries_t) {
    if (p.problem.tokens == 0) return;
    at::Tensor ws = workspace(workspace_bytes_cuda(p.problem), p.z);
    backward_cuda(p.problem, g.data_ptr(), p.z.data_ptr(), p.queries_t.data_ptr(), o.data_ptr(),
                  l.data_ptr(), grad_z.data_ptr(), grad_queries_t.data_ptr(), ws.data_ptr(),
                  Cuda::stream());
  }
};
#endif  // FASTPROMPT_WITH_CUDA

}  // namespace fastprompt::attention_pool

FP_REGISTER_KERNELS(attention_pool)
