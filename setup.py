"""Build fastprompt._C: CPU sources always, CUDA sources when a CUDA toolchain is usable.

Sources (found by these rules; adding an op family is adding a folder):
  csrc/fastprompt.cpp              the Python module
  csrc/common/                     shared headers only
  csrc/<family>/*.cpp              C++ sources of an op family (every folder of csrc/ but common);
                                   its CUDA glue is compiled in CUDA builds only (FASTPROMPT_WITH_CUDA)
  csrc/<family>/*.cu               its torch-free CUDA kernels: CUDA builds only

Environment:
  FASTPROMPT_CUDA=0/1   force the CUDA sources off / on (default: on when nvcc is found and
                        torch was built with CUDA)
  TORCH_CUDA_ARCH_LIST  target architectures; defaults to "8.0;9.0" when no GPU is visible
"""
import glob
import os
import shutil
import sys

from setuptools import setup

import torch
from torch.utils import cpp_extension


def _find_cuda_home():
    """The toolkit folder that holds lib64/libcudart (nvcc on PATH may be a wrapper script)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        candidates.append(os.path.dirname(os.path.dirname(real)))
        try:  # a wrapper script: `exec /path/to/cuda/bin/nvcc "$@"`
            with open(real, "r", errors="ignore") as f:
                for token in f.read(4096).split():
                    if token.endswith("/bin/nvcc"):
                        candidates.append(os.path.dirname(os.path.dirname(token)))
        except OSError:
            pass
    candidates += sorted(glob.glob("/usr/local/cuda*"), reverse=True)
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "bin", "nvcc")) and (
            glob.glob(os.path.join(c, "lib64", "libcudart*"))
            or glob.glob(os.path.join(c, "targets", "*", "lib", "libcudart*"))
        ):
            return c
    return None


def _want_cuda():
    flag = os.environ.get("FASTPROMPT_CUDA")
    if flag is not None:
        return flag.strip() not in ("0", "", "false", "False", "no")
    return torch.version.cuda is not None and _find_cuda_home() is not None


USE_CUDA = _want_cuda()
if USE_CUDA:
    cuda_home = _find_cuda_home()
    if cuda_home is None or torch.version.cuda is None:
        sys.exit("FASTPROMPT_CUDA=1 but no CUDA toolkit (nvcc + libcudart) or no CUDA build of torch")
    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home  # torch resolved it at import time, possibly wrongly
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"

def op_families():
    """The op family folders of csrc/ (every folder but common/)."""
    return sorted(d for d in os.listdir("csrc") if os.path.isdir(os.path.join("csrc", d)) and d != "common")


def family_sources(family, cuda):
    """C++ sources of a family, plus its CUDA kernels when `cuda` (rules above)."""
    sources = sorted(glob.glob(os.path.join("csrc", family, "*.cpp")))
    if cuda:
        sources += sorted(glob.glob(os.path.join("csrc", family, "*.cu")))
    return sources


sources = ["csrc/fastprompt.cpp"] + [s for f in op_families() for s in family_sources(f, USE_CUDA)]

debug = os.environ.get("FASTPROMPT_DEBUG", "0") == "1"
opt = ["-O0", "-g"] if debug else ["-O3"]
extra_compile_args = {
    "cxx": opt + ["-std=c++20", "-fopenmp", "-Wno-psabi"],
    "nvcc": opt + ["-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"],
}


def shared_libstdcxx_link_args():
    """Link flags that keep libstdc++ shared. A compiler whose own library folder holds only
    libstdc++.a (a relocated toolchain) links it statically into the extension, and a second,
    static copy of the C++ runtime beside the process's shared one crashes on the first number
    written to a stream (every error message with a size in it)."""
    import shlex
    import subprocess
    import sysconfig

    cxx = shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++")
    try:
        found = subprocess.run(cxx + ["-print-file-name=libstdc++.so"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return []
    if os.path.isabs(found) and os.path.exists(found):
        return []
    print(f"setup.py: {' '.join(cxx)} has no shared libstdc++ of its own; linking -l:libstdc++.so.6")
    return ["-l:libstdc++.so.6"]


define_macros = [("FASTPROMPT_WITH_CUDA", "1")] if USE_CUDA else []
Extension = cpp_extension.CUDAExtension if USE_CUDA else cpp_extension.CppExtension

setup(
    ext_modules=[
        Extension(
            "fastprompt._C",
            sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args=extra_compile_args,
            extra_link_args=["-fopenmp"] + shared_libstdcxx_link_args(),
            define_macros=define_macros,
            py_limited_api=True,
        )
    ],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
