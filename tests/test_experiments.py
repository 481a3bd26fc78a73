"""`python -m fastprompt.experiments`: every part of each experiment runs through its real code on
tiny random stand-ins for MiniLM and SmolLM2 (a few steps), and the report holds its tables, rows
and plots."""
import csv

import pytest
import torch

import fastprompt

from conftest import require

require("transformers")
require("datasets")
require("matplotlib")

from test_demo import tiny_minilm, tiny_smollm2  # noqa: E402


@pytest.fixture
def tiny_settings(monkeypatch):
    import fastprompt.models
    from fastprompt.experiments import task_vectors

    monkeypatch.setattr(fastprompt.models, "load_minilm", tiny_minilm)
    tiny = task_vectors.Settings(seeds=(0, 1), tokens=3, steps=2, batch_size=4, sizes=(4, 8), transfer_steps=2,
                                 checkpoints=(0, 2), merges=("task_arithmetic", "ties"))
    monkeypatch.setattr(task_vectors.Settings, "make", classmethod(lambda cls, quick, seeds, backbone: tiny))
    return tiny


def test_task_vectors_report_has_every_part(tmp_path, tiny_settings, one_thread, capsys):
    from fastprompt.experiments.__main__ import main

    main(["task_vectors", "--quick", "--out", str(tmp_path)])
    md = (tmp_path / "task_vectors.md").read_text()
    for heading in ("## Single-task prompt tuning", "## (a) Similarity", "## (b) Low-resource transfer",
                    "## (c) Arithmetic"):
        assert heading in md
    assert "torch " + torch.__version__ in md and " ± " in md
    for suffix in ("similarity", "transfer", "arithmetic"):
        assert (tmp_path / f"task_vectors_{suffix}.png").stat().st_size > 1000
    with open(tmp_path / "task_vectors.csv") as f:
        rows = list(csv.DictReader(f))
    parts = {r["part"] for r in rows}
    assert parts == {"tuning", "transfer", "arithmetic"}
    tuned = [r for r in rows if r["part"] == "tuning"]
    assert {(r["task"], r["seed"]) for r in tuned} == {(t, s) for t in ("sentiment_media", "sentiment_places",
                                                                        "review_domain") for s in ("0", "1")}
    assert all(0 <= float(r["test_acc"]) <= 1 for r in tuned)
    transfer = [r for r in rows if r["part"] == "transfer"]
    assert {r["init"] for r in transfer} == {"random", "vocab", "related vectors", "unrelated vector"}
    assert len(transfer) == 2 * 2 * 4  # seeds x sizes x inits
    arithmetic = [r for r in rows if r["part"] == "arithmetic"]
    assert {r["merge"] for r in arithmetic} == {"task_arithmetic", "ties"}
    assert all(float(r["lambda"]) in (0.4, 0.6, 0.8, 1.0) for r in arithmetic)
    assert "wrote" in capsys.readouterr().out


def test_vectors_of_one_seed_share_the_init(tiny_settings):
    from fastprompt.experiments import task_vectors

    runs = [task_vectors.Run(t, {"num_labels": 2}, 0, tiny_settings, "cpu") for t in ("a", "b")]
    assert torch.equal(runs[0].init, runs[1].init)
    other = task_vectors.Run("a", {"num_labels": 2}, 1, tiny_settings, "cpu")
    assert not torch.equal(runs[0].init, other.init)


def test_accuracy_with_another_prompt_restores_the_tuned_one(tiny_settings):
    from fastprompt.experiments import task_vectors

    run = task_vectors.Run("a", {"num_labels": 2}, 0, tiny_settings, "cpu")
    examples = [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}]
    kept = run.model.prompt().clone()
    run.accuracy(examples, prompt=torch.randn_like(kept))
    assert torch.equal(run.model.prompt(), kept)


def test_unknown_experiment_is_an_error(capsys):
    from fastprompt.experiments.__main__ import main

    with pytest.raises(SystemExit):
        main(["nothing"])
    assert "unknown experiment 'nothing'" in capsys.readouterr().err


def test_ept_report_has_every_part(tmp_path, monkeypatch, one_thread):
    import fastprompt.models
    from fastprompt.experiments import ept
    from fastprompt.experiments.__main__ import main

    monkeypatch.setattr(fastprompt.models, "load_minilm", tiny_minilm)
    tiny = ept.Settings(seeds=(0, 1), tasks=("sentiment_places", "review_domain"), steps=2,
                        ablations=("N=1", "shared gate", "no fusion"))
    monkeypatch.setattr(ept.Settings, "make", classmethod(lambda cls, quick, seeds, backbone: tiny))
    main(["ept", "--quick", "--out", str(tmp_path)])
    md = (tmp_path / "ept.md").read_text()
    for heading in ("## Main comparison", "## Ablations on review_domain", "## Learned gate weights"):
        assert heading in md
    assert "EPT / DePT" in md
    for suffix in ("gates", "accuracy"):
        assert (tmp_path / f"ept_{suffix}.png").stat().st_size > 1000
    with open(tmp_path / "ept.csv") as f:
        rows = list(csv.DictReader(f))
    main_rows = [r for r in rows if r["part"] == "main"]
    assert {r["method"] for r in main_rows} == {"prompt tuning", "DePT", "EPT"}
    assert len(main_rows) == 3 * 2 * 2
    assert {r["method"] for r in rows if r["part"] == "ablation"} == {"EPT N=1", "EPT shared gate", "EPT no fusion"}
    trainable = {r["method"]: int(r["trainable"]) for r in main_rows if r["task"] == "sentiment_places"}
    assert trainable["DePT"] <= trainable["prompt tuning"] < trainable["EPT"]


def test_ept_without_fusion_projects_the_short_prompt():
    from fastprompt.nn import EPTPrompt

    torch.manual_seed(0)
    with_fusion = EPTPrompt(3, 8, 2, 16, num_spaces=2)
    without = EPTPrompt(3, 8, 2, 16, num_spaces=2, fusion=False)
    without.load_state_dict(with_fusion.state_dict())
    with torch.no_grad():
        with_fusion.offset.B.normal_()
        without.offset.B.copy_(with_fusion.offset.B)
    assert torch.equal(without.fuse(), without.prompt.weight)
    assert not torch.allclose(with_fusion(), without())
    p = without.prompt.weight
    expected = p + fastprompt.multispace_project(p, without.projection.weight, without.projection.bias,
                                                 torch.nn.functional.linear(p, without.projection.gate_net.weight,
                                                                            without.projection.gate_net.bias))
    torch.testing.assert_close(without(), expected)
    assert torch.allclose(without.gate_weights().sum(), torch.tensor(1.0))


def test_iapt_report_has_every_part(tmp_path, monkeypatch, one_thread):
    import fastprompt.models
    from fastprompt.experiments import iapt
    from fastprompt.experiments.__main__ import main

    monkeypatch.setattr(fastprompt.models, "load_minilm", tiny_minilm)
    tiny = iapt.Settings(seeds=(0, 1), tasks=("sentiment_places", "review_domain"),
                         activation_tasks=("sentiment_places",), steps=2)
    monkeypatch.setattr(iapt.Settings, "make", classmethod(lambda cls, quick, seeds, backbone: tiny))
    main(["iapt", "--quick", "--out", str(tmp_path)])
    md = (tmp_path / "iapt.md").read_text()
    for heading in ("## (a) Methods at a comparable budget", "## (b) Learned rational activations",
                    "## (c) Multi-tenant serving against LoRA"):
        assert heading in md
    assert "| IAPT / LoRA |" in md or "No serving results found" in md
    assert (tmp_path / "iapt_activations.png").stat().st_size > 1000
    with open(tmp_path / "iapt.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows if r["part"] == "methods"} == set(iapt.methods())
    fixed = [r for r in rows if r["part"] == "activation"]
    assert {r["method"] for r in fixed} == {f"IAPT fixed {a} in every layer" for a in iapt.FIXED_ACTIVATIONS}
    assert len(fixed) == 3 * 2


def test_iapt_fixed_activation_is_frozen():
    from fastprompt.experiments import common

    model, optimizer = common.iapt(4, activation="relu")(tiny_minilm(with_tokenizer=False), None, 0,
                                                         common.backbone("minilm"))
    frozen = [n for n, p in model.named_parameters() if ".activation." in n]
    assert frozen and all(not p.requires_grad for n, p in model.named_parameters() if ".activation." in n)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"] if p.requires_grad}
    assert not any(id(p) in trained for n, p in model.named_parameters() if ".activation." in n)


# ---- the decoder (SmolLM2) versions -------------------------------------------------------------------

@pytest.fixture
def tiny_decoder(monkeypatch):
    """A tiny random SmolLM2 stand-in whose word tokenizer knows every answer word of the tasks."""
    import fastprompt.models
    import test_data
    from fastprompt.data import TASKS
    from fastprompt.experiments import common

    words = list(common.DOMAINS) + [w for task in TASKS.values() for w in task["labels"]]
    monkeypatch.setattr(test_data, "WORDS", test_data.WORDS + [w for w in dict.fromkeys(words)
                                                               if w not in test_data.WORDS])
    monkeypatch.setattr(fastprompt.models, "load_smollm2", tiny_smollm2)
    return common.backbone("smollm2")


def test_decoder_tasks_are_instructions_answered_by_words(tiny_decoder):
    from fastprompt.data import TASKS
    from fastprompt.experiments import common

    data = common.load_tasks(["sentiment_places", "review_domain", "news_topic", "entailment"], tiny_decoder)
    for name, task in data.items():
        assert len(task["choices"]) == task["num_labels"]
        for e in task["test"][:5]:
            assert e["response"] == task["choices"][e["label"]]
            assert e["text"] in e["prompt"] or name == "entailment"
    assert data["review_domain"]["choices"] == common.DOMAINS
    assert data["review_domain"]["test"][0]["prompt"].startswith("Which kind of thing")
    assert data["entailment"]["choices"] == TASKS["entailment"]["labels"]
    first = data["entailment"]["test"][0]
    assert first["premise"] in first["prompt"] and first["hypothesis"] in first["prompt"]


def test_decoder_runs_copy_the_backbone_and_leave_it_untouched(tiny_decoder):
    from fastprompt.experiments import common

    data = common.load_tasks(["sentiment_places"], tiny_decoder)["sentiment_places"]
    pristine, _ = tiny_decoder._loaded()
    before = {k: v.clone() for k, v in pristine.state_dict().items()}
    zero_shot = tiny_decoder.zero_shot(data)
    for build in (common.lora(2), common.prompt_tuning(3), common.iapt(4)):
        out = common.train_and_score("sentiment_places", data, 0, build, 2, backbone=tiny_decoder, batch_size=4,
                                     validation=False)
        assert out["run"].model.base_model is not pristine and 0 <= out["row"]["test_acc"] <= 1
        assert "val_acc" not in out["row"]
    assert all(torch.equal(before[k], v) for k, v in pristine.state_dict().items())
    assert tiny_decoder.zero_shot(data) == zero_shot


@pytest.mark.parametrize("name", ["iapt", "ept", "task_vectors"])
def test_decoder_report_has_every_part(name, tmp_path, monkeypatch, tiny_decoder, one_thread):
    from fastprompt.experiments import EXPERIMENTS
    from fastprompt.experiments.__main__ import main

    module = EXPERIMENTS[name]
    real_make = module.Settings.make.__func__

    def tiny(cls, quick, seeds, backbone):
        s = real_make(cls, quick, seeds, backbone)
        s.steps = 2
        if name == "iapt":
            s.activation_tasks = ("sentiment_places",)
            s.tasks = ("sentiment_places", "review_domain")
        if name == "ept":
            s.tasks, s.ablations = ("sentiment_places", "review_domain"), ("N=1",)
        return s

    monkeypatch.setattr(module.Settings, "make", classmethod(tiny))
    main([name, "--model", "smollm2", "--quick", "--out", str(tmp_path)])
    md = (tmp_path / f"{name}_smollm2.md").read_text()
    assert "SmolLM2-135M-Instruct" in md.splitlines()[0] and "zero-shot" in md
    with open(tmp_path / f"{name}_smollm2.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(0 <= float(r["test_acc"]) <= 1 for r in rows if r.get("test_acc"))
    assert not (tmp_path / f"{name}.md").exists()
