// The Python module of the operator library. `import fastprompt._C` loads this shared library,
// which runs the static registrations of every op family: each family defines its op schemas
// (TORCH_LIBRARY_FRAGMENT) and registers its CPU and CUDA kernels in
// csrc/<family>/<family>_ops.cpp, and its autograd kernels in csrc/<family>/<family>_autograd.cpp;
// the fake (meta) kernels are registered in Python (fastprompt/ops/<family>.py).
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
