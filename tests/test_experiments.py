"""`python -m fastprompt.experiments`: every part of each experiment runs through its real code on a
tiny random stand-in for MiniLM (a few steps), and the report holds its tables, rows and plots."""
import csv

import pytest
import torch

from conftest import require

require("transformers")
require("datasets")
require("matplotlib")

from test_demo import tiny_minilm  # noqa: E402


@pytest.fixture
def tiny_settings(monkeypatch):
    import fastprompt.models
    from fastprompt.experiments import task_vectors

    monkeypatch.setattr(fastprompt.models, "load_minilm", tiny_minilm)
    tiny = task_vectors.Settings(seeds=(0, 1), tokens=3, steps=2, batch_size=4, sizes=(4, 8), transfer_steps=2,
                                 checkpoints=(0, 2), merges=("task_arithmetic", "ties"))
    monkeypatch.setattr(task_vectors.Settings, "make", classmethod(lambda cls, quick, seeds: tiny))
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

    runs = [task_vectors.Run(t, 2, 0, tiny_settings, "cpu") for t in ("a", "b")]
    assert torch.equal(runs[0].init, runs[1].init)
    other = task_vectors.Run("a", 2, 1, tiny_settings, "cpu")
    assert not torch.equal(runs[0].init, other.init)


def test_accuracy_with_another_prompt_restores_the_tuned_one(tiny_settings):
    from fastprompt.experiments import task_vectors

    run = task_vectors.Run("a", 2, 0, tiny_settings, "cpu")
    examples = [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}]
    kept = run.model.prompt().clone()
    run.accuracy(examples, prompt=torch.randn_like(kept))
    assert torch.equal(run.model.prompt(), kept)


def test_unknown_experiment_is_an_error(capsys):
    from fastprompt.experiments.__main__ import main

    with pytest.raises(SystemExit):
        main(["nothing"])
    assert "unknown experiment 'nothing'" in capsys.readouterr().err
