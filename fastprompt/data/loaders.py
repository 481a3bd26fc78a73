"""Task loaders: the small task families shipped with fastprompt, and the same path for any
JSON / JSONL / CSV files or hub data sets.

Shipped tasks (``fastprompt/data/tasks/<task>_<split>.jsonl``, fixed train / validation / test
splits):

* ``reviews``: 600 short English reviews of films, phones, headphones, restaurants, books and
  hotels (408 train, 96 validation, 96 test; balanced per domain and class); fields ``text``,
  ``label`` (0 negative, 1 positive), ``label_text``, ``domain``. Reviews are built from
  hand-written sentences (``python -m fastprompt.data.make_tasks`` rewrites the files), so a
  sentence can occur in several splits inside different reviews; no review text occurs twice.

All of them load through ``datasets.load_dataset("json", data_files=...)``, like user files::

    from fastprompt.data import load_task, load_files, as_instructions
    data = load_task("reviews")                                   # DatasetDict train/validation/test
    chat = as_instructions(data, "reviews")                       # + "prompt", "response" columns
    mine = load_files({"train": "train.jsonl", "test": "test.jsonl"})   # your own JSON/JSONL/CSV

With a network, hub data sets come through the same library (``datasets.load_dataset("glue",
"sst2")`` has ``sentence`` / ``label`` columns: ``as_instructions(data, "reviews",
text_key="sentence")`` and ``ClassificationCollator(tokenizer, text_key="sentence")`` use it as is).
"""
from importlib import resources
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

SPLITS = ("train", "validation", "test")

TASKS = {
    "reviews": {
        "labels": ("negative", "positive"),
        "instruction": "Is the following review positive or negative? Answer with one word.\n\n{text}",
        "description": "sentiment of short product, restaurant, hotel, book and film reviews",
    },
}


def tasks_folder() -> Path:
    """The folder holding the shipped JSONL files (inside the installed package or the checkout)."""
    return Path(str(resources.files("fastprompt.data").joinpath("tasks")))


def task_files(task: str) -> Dict[str, str]:
    """{split: path} of a shipped task."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {task!r}")
    folder = tasks_folder()
    files = {split: folder / f"{task}_{split}.jsonl" for split in SPLITS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"task {task!r}: missing data files {missing} (the package data of fastprompt.data; "
                                "run `python -m fastprompt.data.make_tasks` in a source checkout)")
    return {split: str(path) for split, path in files.items()}


def _datasets():
    try:
        import datasets
    except ImportError as err:
        raise ImportError("fastprompt.data loads tasks with the `datasets` package: pip install datasets") from err
    return datasets


def load_files(data_files: Union[str, Sequence[str], Dict[str, Union[str, Sequence[str]]]],
               format: Optional[str] = None, **kwargs):
    """``datasets.load_dataset(format, data_files=data_files)`` for local files; ``format`` defaults
    from the file suffix (``.json`` / ``.jsonl`` -> "json", ``.csv`` -> "csv")."""
    datasets = _datasets()
    if format is None:
        first = data_files
        if isinstance(first, dict):
            first = next(iter(first.values()))
        if not isinstance(first, str):
            first = next(iter(first))
        suffix = Path(first).suffix.lower()
        format = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}.get(suffix)
        if format is None:
            raise ValueError(f"format: cannot tell the format of {first!r}; pass format='json' / 'csv' / 'parquet'")
    return datasets.load_dataset(format, data_files=data_files, **kwargs)


def load_task(task: str = "reviews", split: Optional[str] = None, limit: Optional[int] = None):
    """A shipped task as a ``datasets.DatasetDict`` (train / validation / test), or one split as a
    ``datasets.Dataset``; ``limit`` keeps the first examples of each split."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS} or None, got {split!r}")
    data = load_files(task_files(task), format="json")
    if limit is not None:
        data = data.__class__({name: ds.select(range(min(limit, len(ds)))) for name, ds in data.items()})
    return data[split] if split else data


def instruction(task: str, text: str) -> str:
    """The user prompt of a task for one input text."""
    return TASKS[task]["instruction"].format(text=text)


def as_instructions(data, task: str = "reviews", text_key: str = "text", label_key: str = "label"):
    """Adds ``prompt`` (the task's instruction with the text) and ``response`` (the label word)
    columns to a ``Dataset`` / ``DatasetDict``, for :class:`fastprompt.data.InstructionCollator`."""
    labels = TASKS[task]["labels"]

    def convert(example):
        return {"prompt": instruction(task, example[text_key]), "response": labels[int(example[label_key])]}

    return data.map(convert)


def label_words(task: str = "reviews") -> Sequence[str]:
    """The answer word of each class of a shipped task (class index order)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {task!r}")
    return TASKS[task]["labels"]
