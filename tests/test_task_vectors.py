"""Task prompt vectors: TaskPromptVector, checkpoints, comparison, initialisation from vectors,
coefficient search, PromptBank, the generated task families and the transfer experiment."""
import json
import math

import pytest
import torch

import fastprompt
from fastprompt.reference.task_arithmetic import merge_ref
from fastprompt.vectors import (CheckpointNotFoundError, MixingCoefficients, PromptBank, TaskPromptVector,
                                across_inits, across_tasks, grid_search_coefficients, init_from_vectors,
                                learn_coefficients, pairwise, prompt_objective, random_init)
from fastprompt.vectors import tasks as T
from fastprompt.vectors.experiment import transfer_experiment, tiny_llama, tune_prompt, tune_vectors

from conftest import DEVICES, assert_close, require

L, D = 5, 12


def _vec(seed, device="cpu", task=None, base_model="tiny", init_seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return TaskPromptVector(torch.randn(L, D, generator=g, dtype=dtype).to(device), task=task or f"t{seed}",
                            base_model=base_model, init_seed=init_seed)


# ---- construction and arithmetic -------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_from_tensors_and_metadata(device):
    init = random_init(L, D, 3, device=device)
    tuned = init + torch.linspace(-1, 1, L * D, device=device).reshape(L, D)
    v = TaskPromptVector.from_tensors(tuned, init, task="sst2", base_model="llama", init_seed=3)
    torch.testing.assert_close(v.tau, tuned - init)
    assert v.shape == (L, D) and v.prompt_length == L and v.dim == D and v.device.type == device
    assert v.metadata == {"task": "sst2", "base_model": "llama", "init_seed": 3, "prompt_length": L}
    torch.testing.assert_close(v.apply(init), tuned)
    assert "sst2" in repr(v)


def test_random_init_is_reproducible():
    a, b = random_init(L, D, 7), random_init(L, D, 7)
    assert torch.equal(a, b) and not torch.equal(a, random_init(L, D, 8))
    assert random_init(L, D, 7, std=0.5).std() < a.std()


@pytest.mark.parametrize("device", DEVICES)
def test_arithmetic(device):
    a, b, c = _vec(1, device), _vec(2, device), _vec(3, device, init_seed=5)
    torch.testing.assert_close((a + b).tau, a.tau + b.tau)
    torch.testing.assert_close((a - b).tau, a.tau - b.tau)
    torch.testing.assert_close((2.5 * a).tau, 2.5 * a.tau)
    torch.testing.assert_close((a * -0.5).tau, -0.5 * a.tau)
    torch.testing.assert_close((a * torch.tensor(2.0)).tau, 2 * a.tau)
    torch.testing.assert_close((a / 4).tau, a.tau / 4)
    torch.testing.assert_close((-a).tau, -a.tau)
    total = sum([a, b, c])
    torch.testing.assert_close(total.tau, a.tau + b.tau + c.tau)
    torch.testing.assert_close(TaskPromptVector.sum([a, b, c]).tau, total.tau)
    assert (a + b).init_seed == 0 and total.init_seed is None      # mixed seeds: unknown
    assert (a + b).base_model == "tiny" and (a + b).task == "t1 + t2"
    init = torch.randn(L, D, device=device)
    torch.testing.assert_close((a + b).apply(init, 0.5), init + 0.5 * (a.tau + b.tau))
    assert a.to(torch.float64).dtype == torch.float64 and a.clone().tau is not a.tau
    assert math.isclose(a.norm(), float(a.tau.double().norm()))


def test_apply_is_differentiable_in_init():
    v = _vec(1)
    init = torch.randn(L, D, requires_grad=True)
    v.apply(init, coef=2.0).sum().backward()
    torch.testing.assert_close(init.grad, torch.ones(L, D))


def test_arithmetic_errors():
    a = _vec(1)
    with pytest.raises(ValueError, match="other: shape mismatch"):
        a + TaskPromptVector(torch.zeros(L + 1, D))
    with pytest.raises(ValueError, match="other: base model mismatch"):
        a - _vec(2, base_model="other-model")
    with pytest.raises(TypeError):
        a + 1.0
    with pytest.raises(TypeError):
        a * a
    with pytest.raises(ZeroDivisionError, match="coef"):
        a / 0
    with pytest.raises(ValueError, match="tau"):
        TaskPromptVector(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="tau"):
        TaskPromptVector(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="init_seed"):
        TaskPromptVector(torch.zeros(2, 3), init_seed="zero")
    with pytest.raises(ValueError, match="init: expected the shape"):
        TaskPromptVector.from_tensors(torch.zeros(L, D), torch.zeros(L, D + 1))
    with pytest.raises(ValueError, match="tuned"):
        TaskPromptVector.from_tensors(torch.zeros(D), torch.zeros(D))
    with pytest.raises(ValueError, match="init: expected a prompt of shape"):
        a.apply(torch.zeros(L, D + 1))
    with pytest.raises(ValueError, match="vectors"):
        TaskPromptVector.sum([])
    # a vector without a base model combines with any
    assert (a + TaskPromptVector(torch.zeros(L, D))).base_model == "tiny"


# ---- merging -----------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["task_arithmetic", "magnitude_prune", "ties", "dare", "dare_ties"])
def test_merge_methods(device, method):
    vs = [_vec(i, device) for i in range(3)]
    w = [0.5, 1.0, 0.25]
    merged = TaskPromptVector.merge(vs, method, weights=w, density=0.4, sign="frequency", seed=11)
    bank = torch.stack([v.tau for v in vs])
    expected = fastprompt.merge(bank, method, weights=torch.tensor(w, device=device), density=0.4,
                                sign="frequency", seed=11)
    torch.testing.assert_close(merged.tau, expected)
    torch.testing.assert_close(merged.tau.cpu(), merge_ref(bank.cpu(), method, torch.tensor(w), 0.4, "frequency", 11))
    assert merged.shape == (L, D) and merged.base_model == "tiny" and merged.init_seed == 0
    assert merged.task.startswith(method)
    again = TaskPromptVector.merge(vs, method, weights=w, density=0.4, sign="frequency", seed=11)
    assert torch.equal(merged.tau, again.tau)  # DARE reproducible from the seed


def test_merge_of_vectors_that_require_grad():
    vs = [TaskPromptVector(torch.randn(L, D, requires_grad=True)) for _ in range(2)]
    merged = TaskPromptVector.merge(vs, "dare", weights=torch.tensor([1.0, 2.0], requires_grad=True),
                                    density=0.5, seed=0)
    assert not merged.tau.requires_grad and merged.shape == (L, D)


def test_merge_matches_peft():
    merge_utils = require("peft.utils.merge_utils", "peft")
    vs = [_vec(i) for i in range(3)]
    bank = [v.tau for v in vs]
    w = torch.tensor([0.7, 1.3, 0.4])
    torch.testing.assert_close(TaskPromptVector.merge(vs, "task_arithmetic", weights=w).tau,
                               merge_utils.task_arithmetic(bank, w))
    torch.testing.assert_close(TaskPromptVector.merge(vs, "magnitude_prune", weights=w, density=0.5).tau,
                               merge_utils.magnitude_prune(bank, w, 0.5))
    torch.testing.assert_close(TaskPromptVector.merge(vs, "ties", weights=w, density=0.5, sign="total").tau,
                               merge_utils.ties(bank, w, 0.5, "total"))
    # default weights: plain sum
    torch.testing.assert_close(TaskPromptVector.merge(vs).tau, sum(bank))


def test_merge_errors():
    vs = [_vec(i) for i in range(3)]
    with pytest.raises(ValueError, match="method: unknown merge method"):
        TaskPromptVector.merge(vs, "average")
    for density in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="density"):
            TaskPromptVector.merge(vs, "ties", density=density)
    with pytest.raises(ValueError, match="weights: expected one weight per vector"):
        TaskPromptVector.merge(vs, "task_arithmetic", weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="weights"):
        TaskPromptVector.merge(vs, "task_arithmetic", weights=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="sign"):
        TaskPromptVector.merge(vs, "ties", sign="majority")
    with pytest.raises(ValueError, match="vectors"):
        TaskPromptVector.merge([], "ties")
    with pytest.raises(ValueError, match=r"vectors\[1\]: shape mismatch"):
        TaskPromptVector.merge([vs[0], TaskPromptVector(torch.zeros(L, D + 1))], "ties")
    with pytest.raises(ValueError, match=r"vectors\[2\]: base model mismatch"):
        TaskPromptVector.merge([vs[0], vs[1], _vec(5, base_model="bert")], "ties")
    with pytest.raises(TypeError, match=r"vectors\[0\]"):
        TaskPromptVector.merge([torch.zeros(L, D)], "ties")


# ---- comparison --------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_pairwise_metrics(device):
    a = _vec(1, device)
    b = TaskPromptVector(2 * a.tau, task="double", base_model="tiny")
    c = TaskPromptVector(-a.tau, task="neg", base_model="tiny")
    z = TaskPromptVector(torch.zeros(L, D, device=device), task="zero")
    assert math.isclose(a.cosine_similarity(b), 1.0, abs_tol=1e-12)
    assert math.isclose(a.cosine_similarity(c), -1.0, abs_tol=1e-12)
    assert a.cosine_similarity(z) == 0.0
    ref = float((a.tau.double() - b.tau.double()).norm())
    assert math.isclose(a.l2_distance(b), ref, rel_tol=1e-9)
    assert math.isclose(a.mean_abs_difference(c), float((2 * a.tau.double()).abs().mean()), rel_tol=1e-9)
    vs = [a, b, c, _vec(4, device)]
    for metric in ("cosine", "l2", "mean_abs"):
        table = pairwise(vs, metric)
        m = table.matrix
        assert m.shape == (4, 4) and m.dtype == torch.float64 and m.device.type == "cpu"
        torch.testing.assert_close(m, m.T)
        x = torch.stack([v.tau.double().flatten().cpu() for v in vs])
        for i in range(4):
            for j in range(4):
                if metric == "cosine":
                    e = torch.nn.functional.cosine_similarity(x[i], x[j], dim=0)
                elif metric == "l2":
                    e = (x[i] - x[j]).norm()
                else:
                    e = (x[i] - x[j]).abs().mean()
                assert math.isclose(float(m[i, j]), float(e), rel_tol=1e-9, abs_tol=1e-12)
    table = pairwise(vs, "cosine")
    assert table["t1@0", "double"] == pytest.approx(1.0)
    assert json.loads(json.dumps(table.to_dict()))["labels"] == table.labels
    assert "cosine" in str(table)
    with pytest.raises(ValueError, match="metric"):
        pairwise(vs, "manhattan")


def test_across_tasks_and_inits():
    # the vector of task k from seed s: a shared direction per task plus a little seed noise
    g = torch.Generator().manual_seed(0)
    base = {k: torch.randn(L, D, generator=g) for k in ("a", "b", "c")}
    vs = [TaskPromptVector(base[k] + 0.1 * torch.randn(L, D, generator=g), task=k, init_seed=s)
          for s in (0, 1) for k in ("a", "b", "c")]
    tasks = across_tasks(vs, "cosine")
    assert tasks.labels == ["a", "b", "c"]
    for i in range(3):
        assert tasks.matrix[i, i] == pytest.approx(1.0)
    by_seed = [pairwise([v for v in vs if v.init_seed == s], "cosine").matrix for s in (0, 1)]
    torch.testing.assert_close(tasks.matrix, (by_seed[0] + by_seed[1]) / 2)
    inits = across_inits(vs, "cosine")
    assert list(inits) == ["a", "b", "c"]
    for table in inits.values():
        assert table.labels == ["0", "1"] and table.off_diagonal_mean() > 0.95   # init-independent
    assert tasks.off_diagonal_mean() < 0.6
    # a task missing for one seed: averaged over the seeds that have it
    partial = across_tasks(vs[:4], "l2")
    assert partial.labels == ["a", "b", "c"] and not torch.isnan(partial.matrix).any()
    with pytest.raises(ValueError, match="init_seed"):
        across_inits([TaskPromptVector(torch.zeros(L, D), task="a")])
    with pytest.raises(ValueError, match="task"):
        across_tasks([TaskPromptVector(torch.zeros(L, D))])
    with pytest.raises(ValueError, match="vectors"):
        across_tasks([vs[0], vs[0]])


# ---- save / load -------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_save_load_roundtrip(tmp_path, device):
    v = _vec(1, device, task="sst2", init_seed=42)
    v.extra["steps"] = 100
    v.extra["notes"] = {"lr": 0.3}
    path = tmp_path / "sub" / "sst2.safetensors"
    v.save(path)
    w = TaskPromptVector.load(path, device=device)
    assert torch.equal(w.tau, v.tau) and w.device.type == device
    assert (w.task, w.base_model, w.init_seed, w.prompt_length) == ("sst2", "tiny", 42, L)
    assert w.extra == {"steps": 100, "notes": {"lr": 0.3}}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["task"]) == "sst2" and json.loads(meta["prompt_length"]) == L
    assert json.loads(meta["init_seed"]) == 42 and json.loads(meta["base_model"]) == "tiny"
    # missing metadata stays None
    TaskPromptVector(torch.ones(2, 3, dtype=torch.bfloat16)).save(tmp_path / "bare.safetensors")
    bare = TaskPromptVector.load(tmp_path / "bare.safetensors")
    assert bare.task is None and bare.init_seed is None and bare.dtype == torch.bfloat16


def test_load_errors(tmp_path):
    v = _vec(1)
    good = tmp_path / "v.safetensors"
    v.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(bytes(range(256)) * 3)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for bad in (truncated, garbage, empty):
        with pytest.raises(ValueError, match="path: cannot read"):
            TaskPromptVector.load(bad)
    with pytest.raises(ValueError, match="path: no such file"):
        TaskPromptVector.load(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        TaskPromptVector.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ValueError, match="not a task prompt vector"):
        TaskPromptVector.load(other)
    v.extra["bad"] = object()
    with pytest.raises(ValueError, match="extra"):
        v.save(tmp_path / "x.safetensors")


# ---- checkpoints -------------------------------------------------------------------------
def _write_fastprompt_checkpoint(directory, weight, **config):
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prompt_config.json").write_text(json.dumps({"num_virtual_tokens": weight.shape[0], **config}))
    save_file({"prompt_embeddings": weight.contiguous()}, str(directory / "prompt_weights.safetensors"))


@pytest.mark.parametrize("device", DEVICES)
def test_from_fastprompt_checkpoint(tmp_path, device):
    init = random_init(L, D, 5, std=0.5)
    tuned = init + 0.5
    _write_fastprompt_checkpoint(tmp_path / "ckpt", tuned, base_model_name_or_path="tiny-llama", seed=5,
                                 init="random")
    v = TaskPromptVector.from_checkpoint(tmp_path / "ckpt", task="rte", init_std=0.5, device=device)  # recorded seed
    assert v.device.type == device and v.init_seed == 5 and v.base_model == "tiny-llama" and v.task == "rte"
    torch.testing.assert_close(v.tau.cpu(), torch.full((L, D), 0.5))
    w = TaskPromptVector.from_checkpoint(tmp_path / "ckpt", init=init.to(device), device=device)
    torch.testing.assert_close(w.tau, v.tau)
    _write_fastprompt_checkpoint(tmp_path / "init", init)
    u = TaskPromptVector.from_checkpoint(tmp_path / "ckpt", init=tmp_path / "init")
    torch.testing.assert_close(u.tau, torch.full((L, D), 0.5))
    s = TaskPromptVector.from_checkpoint(tmp_path / "ckpt", init_seed=6, init_std=0.5)
    torch.testing.assert_close(s.tau, tuned - random_init(L, D, 6, std=0.5))
    assert s.init_seed == 6
    with pytest.raises(ValueError, match="init_std"):
        TaskPromptVector.from_checkpoint(tmp_path / "ckpt")
    _write_fastprompt_checkpoint(tmp_path / "text", tuned, seed=1, init="text")
    with pytest.raises(ValueError, match="init: a 'text' init cannot be rebuilt"):
        TaskPromptVector.from_checkpoint(tmp_path / "text", init_std=1.0)


@pytest.mark.parametrize("init_kind", ["random", "vocab"])
def test_from_prompt_tuning_checkpoints(tmp_path, init_kind):
    """Checkpoints written by PromptTuningModel (its own format and the PEFT export): the init is
    rebuilt from the recorded seed with the backbone."""
    from fastprompt.methods import PromptTuningConfig, PromptTuningModel

    model = tiny_llama(40, hidden=16, layers=1, heads=2)
    ptm = PromptTuningModel(model, PromptTuningConfig(num_virtual_tokens=L, init=init_kind, seed=3))
    init = ptm.prompt().detach().clone()
    with torch.no_grad():
        ptm.prompt_encoder.weight.add_(torch.linspace(0, 1, L * 16).reshape(L, 16))
    ptm.save_pretrained(tmp_path / "fp")
    v = TaskPromptVector.from_checkpoint(tmp_path / "fp", model=model, task="t")
    assert v.init_seed == 3 and v.task == "t"
    torch.testing.assert_close(v.tau, torch.linspace(0, 1, L * 16).reshape(L, 16))
    ptm.export_peft(tmp_path / "peft")
    w = TaskPromptVector.from_checkpoint(tmp_path / "peft", init=init)
    torch.testing.assert_close(w.tau, v.tau)


def _peft_adapter(directory, seed=0, shift=0.0):
    peft = require("peft")
    model = tiny_llama(40, hidden=16, layers=1, heads=2)
    torch.manual_seed(seed)
    pm = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=L))
    emb = pm.prompt_encoder["default"].embedding.weight
    init = emb.detach().clone()
    with torch.no_grad():
        emb.add_(shift)
    pm.save_pretrained(str(directory))
    return init, emb.detach().clone()


def test_from_peft_adapter(tmp_path):
    init, tuned = _peft_adapter(tmp_path / "tuned", shift=0.25)
    v = TaskPromptVector.from_checkpoint(tmp_path / "tuned", init=init, task="boolq")
    assert v.shape == (L, 16) and v.task == "boolq"
    torch.testing.assert_close(v.tau, tuned - init)
    torch.testing.assert_close(v.tau, torch.full((L, 16), 0.25))
    # the init as the adapter saved before training
    _peft_adapter(tmp_path / "start", shift=0.0)
    u = TaskPromptVector.from_checkpoint(tmp_path / "tuned", init=tmp_path / "start")
    torch.testing.assert_close(u.tau, v.tau)
    with pytest.raises(ValueError, match="init: .* records no init seed"):
        TaskPromptVector.from_checkpoint(tmp_path / "tuned")
    with pytest.raises(ValueError, match="init: expected the shape"):
        TaskPromptVector.from_checkpoint(tmp_path / "tuned", init=torch.zeros(L, 17))


def test_checkpoint_errors(tmp_path):
    init, _ = _peft_adapter(tmp_path / "peft", shift=0.1)
    weights = tmp_path / "peft" / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 7])                    # truncated
    with pytest.raises(ValueError, match="path: cannot read .*adapter_model.safetensors"):
        TaskPromptVector.from_checkpoint(tmp_path / "peft", init=init)
    weights.write_bytes(b"\x00garbage" * 50)                       # garbage
    with pytest.raises(ValueError, match="path: cannot read"):
        TaskPromptVector.from_checkpoint(tmp_path / "peft", init=init)
    weights.unlink()
    with pytest.raises(ValueError, match="path: .* has neither adapter_model"):
        TaskPromptVector.from_checkpoint(tmp_path / "peft", init=init)
    # not a prompt-tuning adapter
    cfg = tmp_path / "peft" / "adapter_config.json"
    cfg.write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match="PEFT LORA adapter"):
        TaskPromptVector.from_checkpoint(tmp_path / "peft", init=init)
    cfg.write_text("{not json")
    with pytest.raises(ValueError, match="path: corrupted config"):
        TaskPromptVector.from_checkpoint(tmp_path / "peft", init=init)
    # fastprompt checkpoints
    _write_fastprompt_checkpoint(tmp_path / "fp", torch.zeros(L, D), init_seed=1)
    w = tmp_path / "fp" / "prompt_weights.safetensors"
    w.write_bytes(w.read_bytes()[:20])
    with pytest.raises(ValueError, match="path: cannot read"):
        TaskPromptVector.from_checkpoint(tmp_path / "fp")
    _write_fastprompt_checkpoint(tmp_path / "fp2", torch.zeros(L, D), num_virtual_tokens=L + 1)
    with pytest.raises(ValueError, match="virtual tokens"):
        TaskPromptVector.from_checkpoint(tmp_path / "fp2", init_seed=0)
    from safetensors.torch import save_file

    (tmp_path / "fp3").mkdir()
    (tmp_path / "fp3" / "prompt_config.json").write_text("{}")
    save_file({"a": torch.zeros(2, 2), "b": torch.zeros(3, 3)}, str(tmp_path / "fp3" / "prompt_weights.safetensors"))
    with pytest.raises(ValueError, match="prompt_embeddings"):
        TaskPromptVector.from_checkpoint(tmp_path / "fp3", init_seed=0)
    # missing things
    with pytest.raises(CheckpointNotFoundError, match="path: no such checkpoint"):
        TaskPromptVector.from_checkpoint(tmp_path / "nowhere", init_seed=0)
    with pytest.raises(ValueError, match="path: .* contains neither"):
        TaskPromptVector.from_checkpoint(tmp_path, init_seed=0)


# ---- initialisation from vectors ---------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_init_from_vectors(device):
    vs = [_vec(i, device) for i in range(3)]
    init = random_init(L, D, 9, device=device)
    torch.testing.assert_close(init_from_vectors(init, vs), init + sum(v.tau for v in vs))
    torch.testing.assert_close(init_from_vectors(init, vs, 0.5), init + 0.5 * sum(v.tau for v in vs))
    torch.testing.assert_close(init_from_vectors(init, vs, [1.0, -1.0, 0.0]), init + vs[0].tau - vs[1].tau)
    torch.testing.assert_close(init_from_vectors(init, vs[2], [2.0]), init + 2 * vs[2].tau)
    bank = torch.stack([v.tau for v in vs])
    torch.testing.assert_close(init_from_vectors(init, bank, [1.0, 2.0, 3.0]),
                               init + bank[0] + 2 * bank[1] + 3 * bank[2])
    half = init_from_vectors(init.half(), vs)
    assert half.dtype == torch.float16
    coefs = torch.tensor([0.1, 0.2, 0.3], device=device, requires_grad=True)
    init_from_vectors(init, vs, coefs).sum().backward()
    torch.testing.assert_close(coefs.grad, bank.sum(dim=(1, 2)))
    with pytest.raises(ValueError, match="coefs: expected one coefficient per vector"):
        init_from_vectors(init, vs, [1.0, 2.0])
    with pytest.raises(ValueError, match="init: expected the vectors' prompt shape"):
        init_from_vectors(init[:-1], vs)
    with pytest.raises(ValueError, match="vectors"):
        init_from_vectors(init, torch.zeros(0, L, D, device=device))


def test_soft_prompt_from_vectors():
    from fastprompt.vectors import soft_prompt_from_vectors

    vs = [_vec(i) for i in range(2)]
    init = random_init(L, D, 1)
    sp = soft_prompt_from_vectors(init, vs, [0.5, 0.5])
    torch.testing.assert_close(sp.weight.detach(), init + 0.5 * (vs[0].tau + vs[1].tau))
    assert sp.weight.requires_grad


def test_prompt_tuning_from_vectors():
    from fastprompt.methods import PromptTuningConfig
    from fastprompt.vectors import prompt_tuning_from_vectors

    model = tiny_llama(40, hidden=16, layers=1, heads=2)
    vs = [TaskPromptVector(random_init(L, 16, s), task=f"t{s}") for s in (1, 2)]
    init = random_init(L, 16, 0, std=0.2)
    ptm = prompt_tuning_from_vectors(model, init, vs, [0.5, 2.0])
    torch.testing.assert_close(ptm.prompt().detach(), init + 0.5 * vs[0].tau + 2.0 * vs[1].tau)
    assert ptm.prompt_config.init == "tensor" and ptm.num_virtual_tokens == L
    assert [p.shape for p in ptm.trainable_parameters()] == [(L, 16)]
    cfg = prompt_tuning_from_vectors(model, init, vs, config=PromptTuningConfig(num_virtual_tokens=99))
    torch.testing.assert_close(cfg.prompt().detach(), init + vs[0].tau + vs[1].tau)
    ids = torch.randint(0, 40, (2, 6))
    out = ptm(input_ids=ids, labels=ids)
    out.loss.backward()
    assert ptm.prompt_encoder.weight.grad is not None
    # the objective of a prompt-tuning model swaps its prompt in (functional_call)
    objective = prompt_objective(ptm, [{"input_ids": ids, "labels": ids}])
    assert float(objective(ptm.prompt().detach())) == pytest.approx(float(out.loss.detach()), rel=1e-5)


# ---- coefficients ------------------------------------------------------------------------
def _quadratic(init, vs, coefs):
    target = init + sum(c * v.tau for c, v in zip(coefs, vs))
    return lambda p: ((p - target) ** 2).mean()


@pytest.mark.parametrize("device", DEVICES)
def test_grid_search(device):
    vs = [_vec(i, device) for i in range(2)]
    init = random_init(L, D, 2, device=device)
    objective = _quadratic(init, vs, (0.3, 0.7))
    result = grid_search_coefficients(init, vs, objective)
    assert result.best == pytest.approx((0.3, 0.7)) and result.best_score < 1e-10
    assert len(result.table) == 121 and not result.maximize
    torch.testing.assert_close(result.best_prompt, init + 0.3 * vs[0].tau + 0.7 * vs[1].tau)
    scores = {c: s for c, s in result.table}
    assert scores[(0.0, 0.0)] > scores[(0.3, 0.7)]
    assert "*" in str(result)
    shared = grid_search_coefficients(init, vs, objective, grid=[0.0, 0.5, 1.0], shared=True)
    assert [c for c, _ in shared.table] == [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)] and shared.best == (0.5, 0.5)
    top = grid_search_coefficients(init, vs, lambda p: -objective(p), grid=[0.0, 0.3, 0.7], maximize=True)
    assert top.best == pytest.approx((0.3, 0.7))
    explicit = grid_search_coefficients(init, vs, objective, candidates=[(1, 1), (0.3, 0.7)])
    assert explicit.best == pytest.approx((0.3, 0.7)) and len(explicit.table) == 2
    with pytest.raises(ValueError, match="grid: .* candidates"):
        grid_search_coefficients(init, [_vec(i, device) for i in range(5)], objective, grid=[0.1 * i for i in range(11)])
    with pytest.raises(ValueError, match="candidates"):
        grid_search_coefficients(init, vs, objective, candidates=[(1.0,)])
    with pytest.raises(ValueError, match="evaluate"):
        grid_search_coefficients(init, vs)
    with pytest.raises(ValueError, match="init"):
        grid_search_coefficients(init[1:], vs, objective)
    with pytest.raises(ValueError, match="evaluate: every candidate scored NaN"):
        grid_search_coefficients(init, vs, lambda p: float("nan"), grid=[0.0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("parametrization", ["raw", "softmax"])
def test_learned_coefficients(device, parametrization):
    vs = [_vec(i, device) for i in range(3)]
    init = random_init(L, D, 2, device=device)
    target = (0.2, 0.5, 0.3)
    objective = _quadratic(init, vs, target)
    mixer = MixingCoefficients(vs, base=init, parametrization=parametrization)
    torch.testing.assert_close(mixer(), init + sum(v.tau for v in vs) / 3)
    mixer().sum().backward()
    grad = mixer.coefficients.grad if parametrization == "raw" else mixer.logits.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert mixer.bank.requires_grad is False and len(list(mixer.parameters())) == 1
    result = learn_coefficients(init, vs, objective, steps=150, lr=0.05, parametrization=parametrization)
    assert result.losses[-1] < 1e-3 * result.losses[0]
    assert result.coefficients == pytest.approx(target, abs=0.03)
    if parametrization == "softmax":
        assert sum(result.coefficients) == pytest.approx(1.0)
    torch.testing.assert_close(result.prompt, result.module().detach())
    with pytest.raises(ValueError, match="parametrization"):
        MixingCoefficients(vs, parametrization="sigmoid")
    with pytest.raises(ValueError, match="base"):
        MixingCoefficients(vs, base=init[1:])


def test_coefficients_with_model(one_thread):
    """grid search and learned coefficients scored by a frozen model on validation batches."""
    vocab = T.vocabulary()
    task = T.sentiment_task("books", num_train=16, num_validation=16)
    model = tiny_llama(vocab.size)
    val = T.batches(T.encode(task.validation, task, vocab), 16)
    init = random_init(4, 32, 0)
    vs = [TaskPromptVector(random_init(4, 32, s, std=0.5), task=f"s{s}") for s in (1, 2)]
    objective = prompt_objective(model, val)
    result = grid_search_coefficients(init, vs, model=model, batches=val, grid=[0.0, 1.0])
    assert len(result.table) == 4
    assert result.best_score == pytest.approx(min(s for _, s in result.table))
    assert dict(result.table)[(0.0, 0.0)] == pytest.approx(float(objective(init)), rel=1e-5)
    learned = learn_coefficients(init, vs, model=model, batches=val, steps=5, lr=0.1)
    assert len(learned.losses) == 5 and learned.losses[-1] <= learned.losses[0]
    assert all(not p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="batches"):
        prompt_objective(model, [])
    with pytest.raises(ValueError, match="param_name"):
        prompt_objective(model, val, param_name="nope")


# ---- PromptBank --------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_prompt_bank(device, monkeypatch):
    vs = [_vec(i, device, task=name) for i, name in enumerate(["sst2", "imdb", "yelp"])]
    base = random_init(L, D, 4, device=device)
    bank = PromptBank(vs, base=base)
    assert bank.task_names == ["sst2", "imdb", "yelp"] and bank.prompt_shape == (L, D)
    taus = torch.stack([v.tau for v in vs])
    w = torch.rand(6, 3, device=device)
    torch.testing.assert_close(bank(w), base + torch.einsum("bt,tld->bld", w, taus))
    torch.testing.assert_close(bank(w[0]), base + torch.einsum("t,tld->ld", w[0], taus))
    assert bank.register_mix("sentiment", {"sst2": 0.5, "imdb": 0.5}) == 3
    assert bank.register_mix("all", [1.0, 1.0, 1.0]) == 4
    calls = []
    real = fastprompt.combine
    monkeypatch.setattr(fastprompt, "combine", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = bank(["imdb", "sentiment", 0, "all", 2])
    assert len(calls) == 1 and out.shape == (5, L, D)                    # one combine for the batch
    expected = torch.stack([base + vs[1].tau, base + 0.5 * (vs[0].tau + vs[1].tau), base + vs[0].tau,
                            base + taus.sum(0), base + vs[2].tau])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(bank(torch.tensor([3, 1], device=device)), expected[[1, 0]])
    assert set(bank.mixes()) == {"sentiment", "all"}
    # state_dict carries the mixes and the names
    fresh = PromptBank(torch.zeros(3, L, D, device=device), base=torch.zeros(L, D, device=device))
    fresh.load_state_dict(bank.state_dict())
    assert fresh.names == bank.names
    torch.testing.assert_close(fresh(["imdb", "sentiment", 0, "all", 2]), out)
    # without a base: the plain combination
    torch.testing.assert_close(PromptBank(vs)(["imdb"]), vs[1].tau.unsqueeze(0))


def test_prompt_bank_errors():
    vs = [_vec(i, task=f"t{i}") for i in range(3)]
    bank = PromptBank(vs)
    with pytest.raises(ValueError, match="mix: unknown tenant"):
        bank(["t0", "nope"])
    with pytest.raises(ValueError, match="mix: index 7 out of range"):
        bank([7])
    with pytest.raises(ValueError, match="mix: tenant indices"):
        bank(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="mix: expected weights"):
        bank(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mix: expected one entry per row"):
        bank("t0")
    with pytest.raises(ValueError, match="weights: expected one weight per task"):
        bank.register_mix("m", [1.0, 2.0])
    with pytest.raises(ValueError, match="weights: unknown tasks"):
        bank.register_mix("m", {"t9": 1.0})
    with pytest.raises(ValueError, match="name: 't1' is already"):
        bank.register_mix("t1", [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="names: expected distinct"):
        PromptBank(vs, names=["a", "a", "b"])
    with pytest.raises(ValueError, match="names: expected one name per vector"):
        PromptBank(vs, names=["a"])
    with pytest.raises(ValueError, match="base"):
        PromptBank(vs, base=torch.zeros(L + 1, D))
    with pytest.raises(ValueError, match=r"vectors\[1\]: base model mismatch"):
        PromptBank([vs[0], _vec(9, base_model="bert")])


def test_prompt_bank_compiles():
    bank = PromptBank([_vec(i) for i in range(3)], base=random_init(L, D, 0))
    compiled = torch.compile(bank, backend="aot_eager", fullgraph=True)
    w = torch.rand(4, 3)
    torch.testing.assert_close(compiled(w), bank(w))
    mixer = MixingCoefficients([_vec(i) for i in range(3)], base=random_init(L, D, 0), parametrization="softmax")
    compiled_mixer = torch.compile(mixer, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled_mixer(), mixer())
    compiled_mixer().square().sum().backward()
    assert mixer.logits.grad is not None and torch.isfinite(mixer.logits.grad).all()


# ---- generated tasks ---------------------------------------------------------------------
def test_sentiment_family_is_deterministic_and_correct():
    fam = T.sentiment_family(3, seed=0, num_train=20, num_validation=10, num_test=4)
    again = T.sentiment_family(3, seed=0, num_train=20, num_validation=10, num_test=4)
    other = T.sentiment_family(3, seed=1, num_train=20, num_validation=10, num_test=4)
    assert [t.train for t in fam] == [t.train for t in again]
    assert [t.train for t in fam] != [t.train for t in other]
    assert [t.name for t in fam] == ["sentiment-movies", "sentiment-phones", "sentiment-restaurants"]
    for task in fam:
        assert len(task.train) == 20 and len(task.validation) == 10 and len(task.test) == 4
        assert task.labels == ("negative", "positive") and task.family == "sentiment"
        examples = task.train + task.validation + task.test
        assert sum(e.label for e in examples) == len(examples) // 2                   # balanced
        for e in examples:
            assert len(e.words) == 8
            pos = sum(w in T.POSITIVE for w in e.words)
            neg = sum(w in T.NEGATIVE for w in e.words)
            assert pos + neg == 3 and (pos > neg) == (e.label == 1)
    with pytest.raises(ValueError, match="num_tasks"):
        T.sentiment_family(0)
    with pytest.raises(ValueError, match="domain"):
        T.sentiment_task("cars")
    with pytest.raises(ValueError, match="polarity_words"):
        T.sentiment_task("books", polarity_words=2)


def test_topic_family_and_encoding():
    vocab = T.vocabulary()
    assert vocab.words[0] == "[PAD]" and len(set(vocab.words)) == vocab.size
    fam = T.topic_family(3, num_classes=3, seed=0, num_train=30, num_validation=6)
    assert [t.labels for t in fam][:2] == [("sports", "politics", "science"), ("politics", "science", "music")]
    for task in fam:
        for e in task.train:
            own = sum(w in T.TOPICS[task.labels[e.label]] for w in e.words)
            assert own >= 2 and all(w in vocab.ids for w in e.words)
    task = fam[0]
    enc = T.encode(task.train, task, vocab)
    assert enc["input_ids"].shape == (30, 10) and enc["labels"].shape == (30, 10)
    assert (enc["labels"][:, :-1] == -100).all()
    assert vocab.decode(enc["input_ids"][0])[-2:] == ["=>", task.labels[task.train[0].label]]
    cls = T.encode(task.train, task, vocab, kind="classification")
    assert cls["input_ids"].shape == (30, 10) and cls["labels"].tolist() == [e.label for e in task.train]
    parts = T.batches(enc, 8, shuffle_seed=0)
    assert [b["input_ids"].shape[0] for b in parts] == [8, 8, 8, 6]
    assert sorted(torch.cat([b["input_ids"] for b in parts]).tolist()) == sorted(enc["input_ids"].tolist())
    with pytest.raises(ValueError, match="kind"):
        T.encode(task.train, task, vocab, kind="seq2seq")
    with pytest.raises(ValueError, match="topics"):
        T.topic_task(["sports"])


@pytest.mark.parametrize("reader", ["datasets", "stdlib"])
def test_load_examples(tmp_path, monkeypatch, reader):
    """Local files load through datasets.load_dataset("csv" | "json", data_files=...) where
    `datasets` is installed, and through the standard library without it, to the same tasks."""
    calls = []
    if reader == "datasets":
        datasets = require("datasets")
        monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
        real = datasets.load_dataset
        monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    else:
        import sys

        monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    (tmp_path / "d.csv").write_text("text,label\ngood film,positive\nbad film,negative\nfine,positive\n")
    task = T.load_examples(tmp_path / "d.csv")
    assert task.labels == ("positive", "negative") and [e.label for e in task.train] == [0, 1, 0]
    assert task.train[0].words == ("good", "film")
    (tmp_path / "d.tsv").write_text("text\tlabel\ngood film\t1\nbad\t0\n")
    task = T.load_examples(tmp_path / "d.tsv")
    assert task.labels == ("0", "1") and [e.label for e in task.train] == [1, 0]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"sentence": s, "y": y})
                                                for s, y in [("a b", 1), ("c", 0)]))
    task = T.load_examples(tmp_path / "d.jsonl", text_field="sentence", label_field="y",
                           labels=("negative", "positive"))
    assert [e.label for e in task.train] == [1, 0]
    (tmp_path / "d.json").write_text(json.dumps({"train": [{"text": "x y", "label": 0}],
                                                 "validation": [{"text": "z", "label": 1}, {"text": "w", "label": 0}]}))
    task = T.load_examples(tmp_path / "d.json", split="validation")
    assert [e.words for e in task.train] == [("z",), ("w",)] and [e.label for e in task.train] == [1, 0]
    with pytest.raises(ValueError, match="text_field"):
        T.load_examples(tmp_path / "d.jsonl")
    with pytest.raises(FileNotFoundError, match="source"):
        T.load_examples(tmp_path / "missing.jsonl")
    if reader == "datasets":
        assert [a[0] for a, _ in calls] == ["csv", "csv", "json", "json", "json"]
        assert all(k["data_files"].startswith(str(tmp_path)) for _, k in calls)


# ---- the transfer experiment ---------------------------------------------------------------
def test_transfer_from_related_tasks_lowers_the_starting_loss(one_thread):
    """Tune prompts on two sentiment tasks, then start a third from the sum of their vectors:
    its loss at init is clearly below that of a random init (fixed seeds)."""
    torch.manual_seed(0)
    vocab = T.vocabulary()
    fam = T.sentiment_family(3, seed=0, num_train=48, num_validation=32)
    model = tiny_llama(vocab.size)
    src = {t.name: T.batches(T.encode(t.train, t, vocab), 48) for t in fam[:2]}
    tgt = T.batches(T.encode(fam[2].validation, fam[2], vocab), 32)
    result = transfer_experiment(model, src, tgt, prompt_length=4, steps=40, lr=0.3, target_steps=5,
                                 base_model="tiny-llama")
    for losses in result.source_losses.values():
        assert losses[-1] < losses[0] - 1.0                       # the source prompts learned
    assert result.target_init_loss["vectors"] < result.target_init_loss["random"] - 0.3
    assert result.target_losses["vectors"][-1] < result.target_losses["random"][-1]
    a, b = result.vectors
    assert a.base_model == "tiny-llama" and a.init_seed == 0 and b.init_seed == 1
    assert -1.0 <= a.cosine_similarity(b) <= 1.0
    assert "vectors" in result.summary()


def test_related_tasks_have_similar_vectors(one_thread):
    """Vectors of two sentiment tasks are closer to each other than to a topic task's
    (cosine across tasks, averaged over two init seeds; fixed seeds)."""
    vocab = T.vocabulary()
    tasks = T.sentiment_family(2, seed=0, num_train=48) + T.topic_family(1, seed=0, num_train=48)
    model = tiny_llama(vocab.size)
    batches = {t.name: T.batches(T.encode(t.train, t, vocab), 48) for t in tasks}
    vectors = tune_vectors(model, batches, seeds=(0, 1), prompt_length=4, steps=40, lr=0.3)
    assert [(v.task, v.init_seed) for v in vectors[:3]] == [(t.name, 0) for t in tasks]
    table = across_tasks(vectors, "cosine")
    related = table[tasks[0].name, tasks[1].name]
    unrelated = max(table[tasks[0].name, tasks[2].name], table[tasks[1].name, tasks[2].name])
    assert related > unrelated + 0.2
    assert set(across_inits(vectors)) == {t.name for t in tasks}


def test_tune_prompt():
    target = torch.arange(6.0).reshape(2, 3)
    tuned, losses = tune_prompt(lambda p: ((p - target) ** 2).mean(), torch.zeros(2, 3), steps=200, lr=0.1)
    torch.testing.assert_close(tuned, target, atol=1e-2, rtol=0)
    assert losses[-1] < losses[0]


def test_tune_prompt_errors():
    with pytest.raises(ValueError, match="steps"):
        tune_prompt(lambda p: p.sum(), torch.zeros(2, 2), steps=-1)
    with pytest.raises(ValueError, match="optimizer"):
        tune_prompt(lambda p: p.sum(), torch.zeros(2, 2), optimizer="lbfgs")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_precision_and_double(dtype):
    vs = [_vec(i, dtype=dtype) for i in range(3)]
    base = random_init(L, D, 0).to(dtype)
    bank = PromptBank(vs, base=base)
    w = torch.rand(4, 3, dtype=torch.float64)
    expected = base.double() + torch.einsum("bt,tld->bld", w, torch.stack([v.tau.double() for v in vs]))
    out = bank(w.float() if dtype != torch.float64 else w)
    assert out.dtype == dtype
    assert_close(out, expected, dtype, scale=4)
    assert_close(init_from_vectors(base, vs, [0.5, 1.0, 2.0]),
                 base.double() + 0.5 * vs[0].tau.double() + vs[1].tau.double() + 2 * vs[2].tau.double(), dtype, scale=4)
    mixer = MixingCoefficients(vs, base=base)
    mixer().float().sum().backward()
    assert mixer.coefficients.grad.dtype == torch.float32
    merged = TaskPromptVector.merge(vs, "ties", density=0.5)
    assert merged.dtype == dtype


def test_mixing_coefficients_under_ddp(tmp_path):
    """One-process DDP (gloo): the learnable coefficients are ordinary parameters."""
    import torch.distributed as dist

    assert dist.is_available() and dist.is_gloo_available(), "torch.distributed with gloo is needed"
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        vs = [_vec(i) for i in range(3)]
        init = random_init(L, D, 0)
        mixer = MixingCoefficients(vs, base=init)
        ddp = torch.nn.parallel.DistributedDataParallel(mixer)
        target = init + vs[0].tau
        ((ddp() - target) ** 2).mean().backward()
        plain = MixingCoefficients(vs, base=init)
        ((plain() - target) ** 2).mean().backward()
        torch.testing.assert_close(mixer.coefficients.grad, plain.coefficients.grad)
    finally:
        dist.destroy_process_group()
