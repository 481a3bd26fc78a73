"""Benchmark cases, timing and the memory-bandwidth measurement."""
import importlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

from fastprompt.bench.cases import FAMILIES


@dataclass
class Case:
    """One benchmark row.

    ``make()`` builds the inputs (a tuple); every provider is called as ``fn(*inputs)``.
    ``bytes_moved`` is the minimum traffic the op must make (read + write) for the
    memory-bandwidth fraction; ``flops`` the arithmetic for the FLOP/s figure.
    """

    op: str
    shape: str
    dtype: torch.dtype
    device: str
    mode: str  # "fwd" or "fwd+bwd"
    make: Callable[[], tuple]
    providers: Dict[str, Callable]
    bytes_moved: Optional[int] = None
    flops: Optional[int] = None
    note: str = ""
    tags: List[str] = field(default_factory=list)
    family: str = ""  # the case module (set by all_cases)

    @property
    def name(self) -> str:
        return f"{self.op}[{self.shape},{str(self.dtype).replace('torch.', '')},{self.device},{self.mode}]"


def fwd_bwd(fn: Callable, *, grad_argnums=(0,)) -> Callable:
    """Wrap fn(*inputs) -> Tensor into forward + backward with a fixed upstream gradient.

    The inputs at ``grad_argnums`` must already require grad; their .grad is reset each call.
    """
    cache = {}

    def run(*inputs):
        for i in grad_argnums:
            inputs[i].grad = None
        out = fn(*inputs)
        g = cache.get("g")
        if g is None or g.shape != out.shape or g.dtype != out.dtype:
            g = cache["g"] = torch.randn_like(out)
        out.backward(g)
        return out

    return run


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable, inputs: tuple, device: str, *, warmup: int = 3, warmup_time: float = 1.0,
            min_time: float = 0.5, max_reps: int = 200, min_reps: int = 5) -> List[float]:
    """Wall-clock times (seconds) of repeated fn(*inputs) calls, after warm-up.

    The warm-up runs at least ``warmup`` calls and at least ``warmup_time`` seconds (at most
    ``max_reps`` calls): besides lazy compilation it must absorb one-time costs of a fresh
    process, such as first-touch page faults of large buffers, which on some virtual machines
    make the first second of large allocations several times slower.
    """
    start = time.perf_counter()
    calls = 0
    while calls < warmup or (time.perf_counter() - start < warmup_time and calls < max_reps):
        fn(*inputs)
        synchronize(device)
        calls += 1
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        times.append(time_once(fn, inputs, device))
    return times


def median(times: List[float]) -> float:
    return statistics.median(times)


_BANDWIDTH: Dict[str, float] = {}


def memory_bandwidth(device: str) -> float:
    """Measured copy bandwidth in bytes/s (read + write of a large buffer), cached per device."""
    if device not in _BANDWIDTH:
        n = (1 << 28) if device.startswith("cuda") else (1 << 26)
        src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
        dst = torch.empty_like(src)
        times = measure(lambda: dst.copy_(src), (), device, min_time=0.5, max_reps=50)
        _BANDWIDTH[device] = 2 * n / median(times)
    return _BANDWIDTH[device]


def all_cases(device: str, quick: bool = False, ops: Optional[List[str]] = None) -> List[Case]:
    """Every family's cases for `device` (quick: small sizes, for smoke tests)."""
    cases = []
    for family in FAMILIES:
        if ops and family not in ops:
            continue
        module = importlib.import_module(f"fastprompt.bench.cases.{family}")
        for case in module.cases(device, quick):
            case.family = family
            cases.append(case)
    return cases


def time_once(fn: Callable, inputs: tuple, device: str) -> float:
    """Seconds of one fn(*inputs) call (CUDA events on a GPU)."""
    if device.startswith("cuda"):
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
        fn(*inputs)
        t1.record()
        t1.synchronize()
        return t0.elapsed_time(t1) / 1e3
    t0 = time.perf_counter()
    fn(*inputs)
    return time.perf_counter() - t0


def measure_interleaved(providers: Dict[str, Callable], inputs: tuple, device: str, *,
                        warmup_time: float = 1.0, min_time: float = 0.5, rounds: int = 5,
                        min_reps: int = 5, max_reps: int = 200) -> Dict[str, List[float]]:
    """Times of every provider, measured in alternating rounds (provider A's calls, then B's, ...,
    repeated), so that a change of machine load during the run affects every provider alike.

    Each provider is first warmed up alone for at least ``warmup_time`` seconds (and 3 calls).
    A provider that raises is left out of the result (reported on stderr by the caller).
    """
    alive = dict(providers)
    errors = {}
    for name, fn in list(alive.items()):
        try:
            start, calls = time.perf_counter(), 0
            while calls < 3 or (time.perf_counter() - start < warmup_time and calls < max_reps):
                fn(*inputs)
                synchronize(device)
                calls += 1
        except Exception as exc:  # noqa: BLE001 - a baseline that cannot run this case
            errors[name] = exc
            del alive[name]
    times: Dict[str, List[float]] = {name: [] for name in alive}
    rounds = max(rounds, 1)
    per_round = min_time / rounds
    calls_per_round = -(-min_reps // rounds)  # ceil
    for _ in range(rounds):
        for name, fn in alive.items():
            start, calls = time.perf_counter(), 0
            while calls < calls_per_round or (time.perf_counter() - start < per_round
                                              and calls < max_reps // rounds):
                times[name].append(time_once(fn, inputs, device))
                calls += 1
    measure_interleaved.errors = errors
    return times


def peak_memory(fn: Callable, inputs: tuple, device: str) -> Optional[int]:
    """Peak bytes allocated during one fn(*inputs) call above what was allocated before it
    (CUDA: the caching allocator's statistics; CPU: the profiler's allocation events)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(*inputs)
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before)
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn(*inputs)
        # every allocation and free is attributed once, to the op (or "[memory]" event outside
        # any op) that made it: the running sum of the self usage in time order peaks at the
        # peak allocated by the call, at op granularity
        level = peak = 0
        for e in sorted(prof.events(), key=lambda e: e.time_range.start):
            level += e.self_cpu_memory_usage
            peak = max(peak, level)
        return peak
    except Exception:  # noqa: BLE001 - the profiler is optional here
        return None
