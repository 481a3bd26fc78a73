"""Training under torch's own distributed engine: DistributedDataParallel and FSDP2
(`torch.distributed.fsdp.fully_shard`) with 2 CPU processes (gloo), and the Trainers under
`torch.distributed.run`.

Each distributed case trains a tiny random model for a few AdamW steps, every rank on its half of
a batch, and must end with the trainable parameters of one process trained on the whole batch.
The losses are means (over supervised tokens for the causal LMs, over rows for the classifiers),
and both ranks hold the same number of supervised tokens (every row supervises its answer token
and EOS; the rows differ in length and padding), so the mean of the two ranks' gradients, which DDP
and FSDP compute, is the gradient of the combined batch's mean loss. (With unequal counts the ranks
would have to sum-reduce: a per-rank mean weights every rank alike, whatever its token count.)

All cases run in one launch of this file as a worker (`python -m torch.distributed.run
--nproc_per_node 2 tests/test_distributed.py worker OUT`): starting the processes and importing
torch and transformers costs far more than the training. The one-process reference runs in the
test process.
"""
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [p for p in (str(ROOT), str(TESTS)) if p not in sys.path]

from tiny_models import perturb, tiny_bert, tiny_llama  # noqa: E402

WORLD = 2
ROWS = 8  # the combined batch; rank r trains on rows [4r, 4r + 4)
STEPS = 3
# float32 after 3 AdamW steps: the two runs add the same per-row gradient terms in a different
# order (all-reduce of two half-batch means vs one mean), so they differ by rounding only
# (measured: at most 7e-7 on parameters of size ~0.1-1).
RTOL, ATOL = 1e-5, 5e-6
LAUNCH_TIMEOUT = 300

# name -> (engine, method, options). Engines: "ddp" (DistributedDataParallel, keyword arguments in
# options["ddp"]), "fsdp2" (fully_shard on every transformer layer, then on the wrapper).
CASES = {
    "ddp-prompt_tuning": ("ddp", "prompt_tuning", {}),
    "ddp-dept": ("ddp", "dept", {}),
    "ddp-ept": ("ddp", "ept", {}),
    "ddp-iapt": ("ddp", "iapt", {}),
    # two adapters, both in every rank's rows
    "ddp-iapt-tenants": ("ddp", "iapt", {"tenants": "mixed"}),
    # rank 0's rows are all adapter "default", rank 1's all "b": each rank leaves the other adapter
    # unused, which DDP allows with find_unused_parameters=True (the unused one contributes zeros)
    "ddp-iapt-tenant-per-rank": ("ddp", "iapt", {"tenants": "per_rank", "ddp": {"find_unused_parameters": True}}),
    "ddp-prompt_tuning-classifier": ("ddp", "prompt_tuning", {"backbone": "bert"}),
    "ddp-iapt-classifier": ("ddp", "iapt", {"backbone": "bert", "modules_to_save": ["classifier"]}),
    "ddp-ept-checkpointing": ("ddp", "ept", {"checkpointing": "reentrant"}),
    "ddp-iapt-checkpointing": ("ddp", "iapt", {"checkpointing": "non_reentrant"}),
    # the gate tensor (layers, heads) is read inside every layer's checkpoint; a reentrant
    # backward per layer then fires its gradient hook once per layer, which DDP allows only with
    # static_graph=True (see the error case below)
    "ddp-iapt-checkpointing-reentrant": ("ddp", "iapt", {"checkpointing": "reentrant", "ddp": {"static_graph": True}}),
    # rank 0's rows supervise every token, rank 1's their answer only: each rank passes the
    # step's target count over both ranks (num_items_in_batch) and scales its loss by the world
    # size, as the Trainer does, so the sum-reduced result equals the combined batch's mean
    "ddp-prompt_tuning-unequal-counts": ("ddp", "prompt_tuning", {"unequal": True}),
    "ddp-iapt-unequal-counts": ("ddp", "iapt", {"unequal": True}),
    "fsdp2-prompt_tuning": ("fsdp2", "prompt_tuning", {}),
    "fsdp2-dept": ("fsdp2", "dept", {}),
    "fsdp2-ept": ("fsdp2", "ept", {}),
    "fsdp2-iapt": ("fsdp2", "iapt", {}),
    "fsdp2-iapt-tenants": ("fsdp2", "iapt", {"tenants": "mixed"}),
    "fsdp2-iapt-checkpointing": ("fsdp2", "iapt", {"checkpointing": "non_reentrant"}),
    # FSDP2 has no per-parameter readiness check, so reentrant checkpointing needs nothing extra
    "fsdp2-iapt-checkpointing-reentrant": ("fsdp2", "iapt", {"checkpointing": "reentrant"}),
    "fsdp2-prompt_tuning-classifier": ("fsdp2", "prompt_tuning", {"backbone": "bert"}),
    "fsdp2-iapt-classifier": ("fsdp2", "iapt", {"backbone": "bert", "modules_to_save": ["classifier"]}),
}
# Not here: FSDP2 with ranks that use different adapters ("tenants": "per_rank"). Each rank
# reduce-scatters the gradients it has, so the collectives differ in size and gloo aborts the
# process ("Received data size doesn't match expected size"); under FSDP2 every rank must use the
# same adapters in a step (mixed batches, as in fsdp2-iapt-tenants, work).

# Cases DDP refuses, with the start of its error message. They run last (after an error inside a
# backward the process group is not reused for an equality case).
ERROR_CASES = {
    "ddp-iapt-tenant-per-rank-all-used": (
        ("ddp", "iapt", {"tenants": "per_rank"}),
        "Expected to have finished reduction in the prior iteration before starting a new one"),
    "ddp-iapt-checkpointing-reentrant-default": (
        ("ddp", "iapt", {"checkpointing": "reentrant"}),
        "Expected to mark a variable ready only once"),
}


# ---- what every process builds and trains alike ------------------------------------------------

def build(method, options):
    """The wrapper of a case, with its trainable parameters away from their do-nothing start."""
    from fastprompt.methods import DePTModel, EPTModel, IAPTModel, PromptTuningModel

    backbone = tiny_bert(num_labels=2) if options.get("backbone") == "bert" else tiny_llama()
    checkpointing = options.get("checkpointing")
    if checkpointing:
        backbone.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": checkpointing == "reentrant"})
    if method == "iapt":
        model = IAPTModel(backbone, bottleneck=8, modules_to_save=options.get("modules_to_save", []))
        perturb(model.adapters["default"], 1)  # open the gates (they start at 0)
        if options.get("tenants"):
            perturb(model.add_adapter("b"), 2)
    else:
        cls = {"prompt_tuning": PromptTuningModel, "dept": DePTModel, "ept": EPTModel}[method]
        extra = {} if method == "prompt_tuning" else {"rank": 2, "max_len": 16}
        if method == "ept":
            extra["num_spaces"] = 2
        model = cls(backbone, num_virtual_tokens=4, seed=0, **extra)
        perturb(model.prompt_encoder, 1, scale=0.1)  # DePT's and EPT's B start at 0
    if checkpointing:
        model.train()  # checkpointing is active in training mode only
    return model


def batch(step, options):
    """The combined batch of a step (ROWS rows). Decoders: an instruction of 3-5 tokens, the first
    one shifted by 20, EOS, right padding, loss on the last two (2 supervised tokens per row).
    Classifiers: [CLS] and words of a class-dependent range, one label per row."""
    gen = torch.Generator().manual_seed(100 + step)
    if options.get("backbone") == "bert":
        labels = torch.randint(0, 2, (ROWS,), generator=gen)
        ids = torch.randint(3, 11, (ROWS, 7), generator=gen) + 8 * labels.unsqueeze(1)
        ids[:, 0] = 1
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    ids = torch.zeros(ROWS, 7, dtype=torch.long)
    labels = torch.full((ROWS, 7), -100)
    for row in range(ROWS):
        n = 3 + (row + step) % 3
        instruction = torch.randint(3, 11, (n,), generator=gen)
        tokens = torch.cat([instruction, instruction[:1] + 20, torch.tensor([2])])
        ids[row, :n + 2] = tokens
        labels[row, n:n + 2] = tokens[n:]
        if options.get("unequal") and row < ROWS // WORLD:
            labels[row, :n] = instruction
    out = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels}  # no token id is 0
    if options.get("unequal"):  # IAPT's generators then read the instruction, not the supervised tokens
        out["instruction_mask"] = labels == -100
        out["instruction_mask"][:ROWS // WORLD, :] = torch.arange(7) < 3
    return out


def tenant_ids(options, rows):
    kind = options.get("tenants")
    if kind == "mixed":
        return ["default" if r % 2 == 0 else "b" for r in rows]
    if kind == "per_rank":
        return ["default" if r < ROWS // WORLD else "b" for r in rows]
    return None


def targets(model, labels):
    """Number of targets of a causal LM batch: every label but -100, except IAPT's first column
    (never predicted; prompt tuning's soft tokens in front predict it)."""
    from fastprompt.methods import IAPTModel

    return (labels[:, 1:] if isinstance(model, IAPTModel) else labels).ne(-100).sum()


def train(model, call, options, rows):
    """STEPS AdamW steps of ``call`` (the wrapper, or its DDP / FSDP form) on ``rows`` of each
    step's batch, with the method's default parameter groups."""
    import torch.distributed as dist

    optimizer = torch.optim.AdamW(model.param_groups())
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    for step in range(STEPS):
        inputs = {k: v[rows] for k, v in batch(step, options).items()}
        if "instruction_mask" in inputs and model.__class__.__name__ != "IAPTModel":
            del inputs["instruction_mask"]
        tenants = tenant_ids(options, range(ROWS)[rows])
        if tenants is not None:
            inputs["tenant_ids"] = tenants
        if options.get("unequal") and world > 1:
            count = targets(model, inputs["labels"])
            dist.all_reduce(count)
            inputs["num_items_in_batch"] = count
        loss = call(**inputs, use_cache=False).loss if options.get("backbone") != "bert" else call(**inputs).loss
        if options.get("unequal"):
            # each rank's loss is its share of the step's total (divided by the count over all
            # ranks); DDP averages the ranks' gradients, so scale them back to a sum
            loss = loss * world
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def trainable_state(model):
    """name -> full value of every trainable parameter (FSDP2's sharded ones gathered)."""
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            value = p.full_tensor() if hasattr(p, "full_tensor") else p
            out[name] = value.detach().clone()
    return out


def reference(method, options, rows=slice(0, ROWS)):
    model = build(method, options)
    before = trainable_state(model)
    train(model, model, options, rows)
    return before, trainable_state(model)


# ---- the Trainers ------------------------------------------------------------------------------

TRAINER_STEPS = 3
TRAINER_ROWS = 24  # 3 steps of 8 rows (4 per rank)


def trainer_rows(method):
    """Rows of 8 tokens (right-padded) whose supervised token counts differ from row to row: even
    rows supervise every real token (the first column included), odd rows their answer only. The
    Trainer counts the targets of the whole step over all ranks (``num_items_in_batch``), so the
    ranks' losses add up to the combined batch's mean whatever their own counts."""
    gen = torch.Generator().manual_seed(7)
    rows = []
    for i in range(TRAINER_ROWS):
        n = 2 + i % 4
        instruction = torch.randint(3, 11, (n,), generator=gen)
        tokens = torch.cat([instruction, instruction[:1] + 20, torch.tensor([2])])
        ids = torch.zeros(8, dtype=torch.long)
        ids[:n + 2] = tokens
        labels = torch.full((8,), -100)
        labels[:n + 2] = tokens
        if i % 2:
            labels[:n] = -100
        row = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels}
        if method == "iapt":
            row["instruction_mask"] = torch.arange(8) < n
        rows.append(row)
    return rows


def run_trainer(method, output_dir, per_device_batch, distributed):
    """AdapterTrainer (prompt tuning, IAPT) for TRAINER_STEPS steps, a checkpoint at the end
    (``distributed``: under torch.distributed.run, DDP over gloo)."""
    import transformers

    from fastprompt.methods import AdapterTrainer, IAPTModel, PromptTuningModel

    if method == "iapt":
        model, trainer_class = IAPTModel(tiny_llama(), bottleneck=8), AdapterTrainer
        perturb(model.adapters["default"], 1)
    else:
        model, trainer_class = PromptTuningModel(tiny_llama(), num_virtual_tokens=4, seed=0), AdapterTrainer
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=per_device_batch, max_steps=TRAINER_STEPS,
        learning_rate=1e-2, lr_scheduler_type="constant", save_strategy="steps", save_steps=TRAINER_STEPS,
        logging_steps=1, report_to=[], use_cpu=True, ddp_backend="gloo" if distributed else None,
        remove_unused_columns=False, disable_tqdm=True, seed=0, data_seed=0, dataloader_num_workers=0)
    trainer = trainer_class(model=model, args=args, train_dataset=trainer_rows(method))
    trainer.train()
    return model, trainer


# The script `python -m torch.distributed.run` runs for the Trainer test (written to tmp_path).
TRAINER_SCRIPT = """
import sys

import torch
import torch.distributed as dist

from test_distributed import run_trainer, trainable_state

torch.set_num_threads(1)
out = sys.argv[1]
for method in ("prompt_tuning", "iapt"):
    model, trainer = run_trainer(method, f"{out}/{method}", per_device_batch=4, distributed=True)
    rank = dist.get_rank()
    torch.save({"world_size": trainer.args.world_size, "wrapped": type(trainer.model_wrapped).__name__,
                "state": trainable_state(model)}, f"{out}/{method}/rank{rank}.pt")
"""


# ---- the worker (one per rank) -----------------------------------------------------------------

def distribute(model, engine, options):
    if engine == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model, **options.get("ddp", {}))
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from fastprompt.methods.iapt import find_layers

    mesh = init_device_mesh("cpu", (WORLD,))
    for layer in find_layers(model.base_model)[0]:  # the transformer layers, whichever method
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def worker(out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    half = ROWS // WORLD
    rows = slice(rank * half, (rank + 1) * half)
    cases = [(name, spec, None) for name, spec in CASES.items()]
    cases += [(name, spec, expected) for name, (spec, expected) in ERROR_CASES.items()]
    for name, (engine, method, options), expected in cases:
        start = time.perf_counter()
        try:
            model = build(method, options)
            train(model, distribute(model, engine, options), options, rows)
            result = {"state": trainable_state(model)}
            if expected is None and (engine == "fsdp2" or rank == 0):  # FSDP2: every rank gathers, rank 0 writes
                model.save_pretrained(Path(out_dir) / f"{name}.saved")
        except Exception as err:  # recorded for the test to check (expected errors) or report
            result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        result["seconds"] = time.perf_counter() - start
        torch.save(result, Path(out_dir) / f"{name}.rank{rank}.pt")
        dist.barrier()
    dist.destroy_process_group()


# ---- launching ---------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script, *args, timeout=LAUNCH_TIMEOUT):
    """Runs ``python -m torch.distributed.run --nproc_per_node 2 script *args``; returns the
    CompletedProcess (stdout and stderr together)."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def check_launch(proc):
    assert proc.returncode == 0, f"torch.distributed.run exited with {proc.returncode}:\n{proc.stdout[-6000:]}"


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    worker(sys.argv[2])
    sys.exit(0)


# ---- the tests ---------------------------------------------------------------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """Every case of CASES and ERROR_CASES trained in one 2-process launch: case -> [rank 0, rank 1]."""
    import torch.distributed as dist

    assert dist.is_available() and dist.is_gloo_available(), "torch.distributed with gloo is needed"
    out = tmp_path_factory.mktemp("distributed")
    proc = launch(Path(__file__), "worker", out)
    check_launch(proc)
    results = {"output": proc.stdout, "dir": out}
    for name in list(CASES) + list(ERROR_CASES):
        results[name] = [torch.load(out / f"{name}.rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_distributed_training_equals_one_process_on_the_combined_batch(case, distributed_results, one_thread):
    engine, method, options = CASES[case]
    ranks = distributed_results[case]
    for rank, result in enumerate(ranks):
        assert "error" not in result, f"rank {rank}: {result.get('traceback', result.get('error'))}"
    before, expected = reference(method, options)
    # the replicas agree bit for bit (the reduced gradients are the same on both ranks)
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys() == expected.keys()
    for name in expected:
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), name
    for name, value in expected.items():
        torch.testing.assert_close(ranks[0]["state"][name], value, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")
    # the saved adapter (DDP: written by rank 0; FSDP2: gathered by every rank, written by rank 0)
    # loads onto a fresh backbone with the trained values
    from fastprompt.methods import IAPTModel, PromptTuningModel

    backbone = tiny_bert(num_labels=2) if options.get("backbone") == "bert" else tiny_llama()
    cls = IAPTModel if method == "iapt" else PromptTuningModel
    loaded = trainable_state(cls.from_pretrained(backbone, distributed_results["dir"] / f"{case}.saved"))
    assert loaded and set(loaded) <= set(expected)
    for name, value in loaded.items():
        assert torch.equal(value, ranks[0]["state"][name]), f"saved {name}"
    # training moved every parameter, and the result is not what one rank's half alone gives
    assert all(not torch.equal(before[n], expected[n]) for n in expected), "a parameter did not train"
    _, half = reference(method, options, rows=slice(0, ROWS // WORLD))
    assert any(not torch.allclose(half[n], expected[n], rtol=RTOL, atol=ATOL) for n in expected)


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_distributed_setups_ddp_refuses(case, distributed_results):
    """DDP's own checks: parameters left unused on a rank need find_unused_parameters=True; a
    parameter read inside several reentrant checkpoints needs static_graph=True (or
    use_reentrant=False, transformers' default). The working forms are in CASES."""
    _, expected = ERROR_CASES[case]
    for rank, result in enumerate(distributed_results[case]):
        assert "error" in result, f"rank {rank}: DDP trained a setup it is documented to refuse"
        assert expected in result["error"], result["error"]


def test_gradients_have_the_layout_ddp_buckets_expect(distributed_results):
    """Coefficient gradients with a dimension of size 1 (one rational per layer, a single pooling
    query) have the strides of their parameters, so DDP neither warns nor copies."""
    import fastprompt

    x = torch.randn(3, 8)
    numerator = torch.randn(1, 6, requires_grad=True)
    denominator = torch.randn(1, 4, requires_grad=True)
    queries = torch.randn(5, 1, requires_grad=True)
    grads = torch.autograd.grad(fastprompt.rational(x, numerator, denominator).sum(), [numerator, denominator])
    grads += torch.autograd.grad(fastprompt.attention_pool(torch.randn(2, 4, 5), queries).sum(), [queries])
    for grad, param in zip(grads, (numerator, denominator, queries)):
        assert grad.stride() == param.stride()
    assert "Grad strides do not match bucket view strides" not in distributed_results["output"]


def test_outputs_are_not_views(distributed_results):
    """The wrappers return their per-token outputs as new tensors (the soft positions stripped), not
    views, which FSDP2 warns about: it cannot follow an in-place change to a view."""
    from fastprompt.methods import PromptTuningModel

    model = PromptTuningModel(tiny_llama(), num_virtual_tokens=4, seed=0)
    for rows in (1, 2):
        out = model(input_ids=torch.randint(3, 20, (rows, 5)), output_hidden_states=True)
        assert out.logits._base is None and all(h._base is None for h in out.hidden_states)
    assert "returned a view tensor" not in distributed_results["output"]


def test_trainers_under_torchrun_save_rank_0s_adapter(tmp_path, one_thread):
    """AdapterTrainer (prompt tuning and IAPT) under `python -m torch.distributed.run --nproc_per_node
    2` (DDP over gloo, TrainingArguments(use_cpu=True, ddp_backend="gloo")): the checkpoint loads
    onto a fresh backbone with rank 0's parameters, the replicas agree, and the run ends where one
    process with the combined batches (8 rows a step) does."""
    from fastprompt.methods import IAPTModel, PromptTuningModel

    script = tmp_path / "train_with_trainer.py"
    script.write_text(TRAINER_SCRIPT)
    check_launch(launch(script, tmp_path / "run"))
    for method, cls in (("prompt_tuning", PromptTuningModel), ("iapt", IAPTModel)):
        folder = tmp_path / "run" / method
        ranks = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
        assert [r["world_size"] for r in ranks] == [WORLD, WORLD]
        assert ranks[0]["wrapped"] == "DistributedDataParallel"
        state = ranks[0]["state"]
        for name, value in state.items():
            assert torch.equal(value, ranks[1]["state"][name]), f"{method} {name}: the replicas differ"
        loaded = trainable_state(cls.from_pretrained(tiny_llama(), folder / f"checkpoint-{TRAINER_STEPS}"))
        assert loaded.keys() == state.keys()
        for name, value in state.items():
            assert torch.equal(loaded[name], value), f"{method} {name}: the checkpoint is not rank 0's parameters"
        model, _ = run_trainer(method, tmp_path / "one" / method, per_device_batch=WORLD * 4, distributed=False)
        for name, value in trainable_state(model).items():
            torch.testing.assert_close(state[name], value, rtol=RTOL, atol=ATOL, msg=lambda m: f"{method} {name}: {m}")


def test_trainer_loss_is_the_mean_over_the_models_own_targets(tmp_path, one_thread):
    """The Trainer divides the summed loss by its count of the batch's targets (gathered over the
    ranks under DDP). That count must be the model's: for IAPT on a causal LM, labels[:, 1:] (the
    first label is never a target); for prompt tuning every label (the soft tokens in front
    predict the first one). Rows that supervise their first token tell the two apart. (Adam is
    almost blind to a constant scale of the loss, so the torchrun test above cannot see this.)"""
    import transformers

    from fastprompt.methods import AdapterTrainer, IAPTModel, PromptTuningModel

    rows = trainer_rows("iapt")[:8]
    collated = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    for cls, trainer_class in ((IAPTModel, AdapterTrainer), (PromptTuningModel, AdapterTrainer)):
        model = cls(tiny_llama(), bottleneck=8) if cls is IAPTModel else cls(tiny_llama(), num_virtual_tokens=4, seed=0)
        inputs = collated if cls is IAPTModel else {k: v for k, v in collated.items() if k != "instruction_mask"}
        with torch.no_grad():
            expected = model(**inputs).loss.item()
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=8, max_steps=1, learning_rate=0.0,
            save_strategy="no", report_to=[], use_cpu=True, remove_unused_columns=False, disable_tqdm=True)
        extra = {"param_groups": {"lr_prompt": 0.0}} if cls is PromptTuningModel else {}
        dataset = rows if cls is IAPTModel else [{k: v for k, v in r.items() if k != "instruction_mask"} for r in rows]
        result = trainer_class(model=model, args=args, train_dataset=dataset, **extra).train()
        assert result.training_loss == pytest.approx(expected, rel=1e-5), cls.__name__
