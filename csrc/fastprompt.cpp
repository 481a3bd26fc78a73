// The one schema block of the fastprompt operator library. Kernels are registered per device
// next to each op family (csrc/<family>/<family>_ops.cpp for CPU, *_cuda.cpp for CUDA);
// autograd and fake (meta) kernels are registered in Python (fastprompt/ops/).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import fastprompt._C` loads this shared library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fastprompt, m) {
  // ---- rational activation (csrc/rational) --------------------------------------------------
  // x (..., C); numerator (G, m+1); denominator (G, n); form "A" or "B"
  m.def("rational(Tensor x, Tensor numerator, Tensor denominator, str form) -> Tensor");
  // -> (grad_x, grad_numerator, grad_denominator)
  m.def("rational_backward(Tensor grad_out, Tensor x, Tensor numerator, Tensor denominator, "
        "str form) -> (Tensor, Tensor, Tensor)");

  // ---- self-attention pooling (csrc/attention_pool) ------------------------------------------
  // z (B, T, D); queries (D, K); mask (B, T) bool, true = real token
  // -> (out (B, K, D), lse (B, K) log-sum-exp of the scores, float32 / float64 for float64 z)
  m.def("attention_pool(Tensor z, Tensor queries, Tensor? mask) -> (Tensor, Tensor)");
  // -> (grad_z, grad_queries)
  m.def("attention_pool_backward(Tensor grad_out, Tensor z, Tensor queries, Tensor? mask, "
        "Tensor out, Tensor lse) -> (Tensor, Tensor)");

  // ---- batched vector arithmetic (csrc/vectors) ----------------------------------------------
  // bank (T, N); weights (B, T); base (1 or B, N) -> out (B, N) = base + weights @ bank
  m.def("combine(Tensor bank, Tensor weights, Tensor? base) -> Tensor");
  // base_rows: 0 (no base), 1 (shared) or B -> (grad_bank (T, N), grad_weights (B, T),
  // grad_base (base_rows, N))
  m.def("combine_backward(Tensor grad_out, Tensor bank, Tensor weights, int base_rows) "
        "-> (Tensor, Tensor, Tensor)");
  // vectors (T, N); weights (T,); method task_arithmetic | magnitude_prune | ties | dare |
  // dare_ties; sign total | frequency; seed: DARE mask seed -> (N,)
  m.def("merge(Tensor vectors, Tensor weights, str method, float density, str sign, int seed) "
        "-> Tensor");

  // ---- multi-space projection with gating (csrc/multispace_project) --------------------------
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
