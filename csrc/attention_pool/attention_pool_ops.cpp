// Torch glue of self-attention pooling: argument checks, packing, CPU registration.
#include "attention_pool/attention_pool_glue.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/torch_glue.h"

namespace fastprompt {
namespace attention_pool {

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

namespace {

void check_cpu(const at::Tensor& z) {
  TORCH_CHECK(z.device().is_cpu(), "z: expected a CPU tensor, got one on ", z.device());
}

std::tuple<at::Tensor, at::Tensor> forward_cpu_op(const at::Tensor& z, const at::Tensor& queries,
                                                  const std::optional<at::Tensor>& mask) {
  check_cpu(z);
  Prepared p = prepare(z, queries, mask);
  const Problem& pb = p.problem;
  at::Tensor out = at::empty({pb.batch, pb.num_queries, pb.dim}, p.z.options());
  at::Tensor lse = at::empty({pb.batch, pb.num_queries}, p.z.options().dtype(p.compute));
  if (pb.batch > 0 && pb.num_queries > 0) {
    forward_cpu(pb, p.z.data_ptr(), p.queries_t.data_ptr(), out.data_ptr(), lse.data_ptr(),
                torch_parallel_for);
  }
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu_op(const at::Tensor& grad_out, const at::Tensor& z,
                                                   const at::Tensor& queries,
                                                   const std::optional<at::Tensor>& mask,
                                                   const at::Tensor& out, const at::Tensor& lse) {
  check_cpu(z);
  Prepared p = prepare(z, queries, mask);
  auto [g, o, l] = prepare_backward(p, grad_out, out, lse);
  const Problem& pb = p.problem;
  at::Tensor grad_z = at::empty_like(p.z);
  at::Tensor grad_queries_t = at::empty({pb.num_queries, pb.dim}, p.queries_t.options());
  grad_queries_t.zero_();
  if (pb.batch > 0) {
    backward_cpu(pb, g.data_ptr(), p.z.data_ptr(), p.queries_t.data_ptr(), o.data_ptr(),
                 l.data_ptr(), grad_z.data_ptr(), grad_queries_t.data_ptr(), torch_parallel_for);
  }
  return {grad_z, unpack_queries_grad(grad_queries_t, queries)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastprompt, CPU, m) {
  m.impl("attention_pool", &forward_cpu_op);
  m.impl("attention_pool_backward", &backward_cpu_op);
}

}  // namespace attention_pool
}  // namespace fastprompt
