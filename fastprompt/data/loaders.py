"""Task loaders: the small task families shipped with fastprompt, and the same path for any
JSON / JSONL / CSV files or hub data sets.

Shipped tasks (``fastprompt/data/tasks/<task>_<split>.jsonl``, fixed train / validation / test
splits):

* ``reviews``: 600 short English reviews of films, phones, headphones, restaurants, books and
  hotels (408 train, 96 validation, 96 test; balanced per domain and class); fields ``text``,
  ``label`` (0 negative, 1 positive), ``label_text``, ``domain``. Reviews are built from
  hand-written sentences (``python -m fastprompt.data.make_tasks`` rewrites the files), so a
  sentence can occur in several splits inside different reviews; no review text occurs twice.
* ``topics``: 480 short news texts (a headline and a lead sentence, sometimes one more sentence
  or the lead alone) about sport, science, business or politics (320 train, 80 validation, 80
  test; balanced per class and per story frame); fields ``text``, ``label`` (0 sport, 1 science,
  2 business, 3 politics), ``label_text``. The names in them (clubs, athletes, universities,
  companies, parties, ministers) are invented.
* ``entailment``: 480 premise / hypothesis pairs over everyday sentences (320 train, 80
  validation, 80 test; balanced per class and per frame); fields ``premise``, ``hypothesis``,
  ``text`` (the two joined by a space, for :class:`ClassificationCollator`), ``label`` (0
  entailment, 1 not_entailment: contradicted or not supported), ``label_text``. The decoder
  answers "yes" / "no".

No text occurs twice within or across the splits of a task.

All of them load through ``datasets.load_dataset("json", data_files=...)``, like user files::

    from fastprompt.data import load_task, load_files, as_instructions
    data = load_task("reviews")                                   # DatasetDict train/validation/test
    chat = as_instructions(data, "reviews")                       # + "prompt", "response" columns
    pairs = as_instructions(load_task("entailment"), "entailment")  # the prompt shows premise and hypothesis
    mine = load_files({"train": "train.jsonl", "test": "test.jsonl"})   # your own JSON/JSONL/CSV

With a network, hub data sets come through the same library (``datasets.load_dataset("glue",
"sst2")`` has ``sentence`` / ``label`` columns: ``as_instructions(data, "reviews",
text_key="sentence")`` and ``ClassificationCollator(tokenizer, text_key="sentence")`` use it as is).
"""
import string
from importlib import resources
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

SPLITS = ("train", "validation", "test")

# Per task: ``labels`` are the answer words of the classes for decoders (single common words
# with distinct first tokens), ``classes`` the ``label_text`` of each class in the files,
# ``instruction`` the user prompt; it names ``{text}`` or other fields of an example.
TASKS = {
    "reviews": {
        "labels": ("negative", "positive"),
        "classes": ("negative", "positive"),
        "instruction": "Is the following review positive or negative? Answer with one word.\n\n{text}",
        "description": "sentiment of short product, restaurant, hotel, book and film reviews",
    },
    "topics": {
        "labels": ("sport", "science", "business", "politics"),
        "classes": ("sport", "science", "business", "politics"),
        "instruction": ("What is the topic of the following news text? Answer with one word: sport, science, "
                        "business or politics.\n\n{text}"),
        "description": "topic of short news texts: sport, science, business or politics",
    },
    "entailment": {
        "labels": ("yes", "no"),
        "classes": ("entailment", "not_entailment"),
        "instruction": ("Does the first sentence imply the second? Answer with one word: yes or no.\n\n"
                        "First: {premise}\nSecond: {hypothesis}"),
        "description": "whether an everyday premise implies a hypothesis (entailment / not_entailment)",
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


def _instruction_fields(task: str) -> Sequence[str]:
    """The example fields a task's instruction uses (``("text",)`` for ``reviews`` and ``topics``,
    ``("premise", "hypothesis")`` for ``entailment``)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {task!r}")
    names = [name for _, name, _, _ in string.Formatter().parse(TASKS[task]["instruction"]) if name]
    return tuple(dict.fromkeys(names))


def instruction(task: str, text: Optional[str] = None, **fields) -> str:
    """The user prompt of a task for one input: ``instruction("reviews", text)``, or the fields its
    instruction names as keywords (``instruction("entailment", premise=..., hypothesis=...)``)."""
    if text is not None:
        fields["text"] = text
    missing = [name for name in _instruction_fields(task) if name not in fields]
    if missing:
        raise ValueError(f"instruction: task {task!r} needs {', '.join(missing)}")
    return TASKS[task]["instruction"].format(**fields)


def as_instructions(data, task: str = "reviews", text_key: str = "text", label_key: str = "label"):
    """Adds ``prompt`` (the task's instruction filled from the example: ``text_key`` for ``{text}``,
    the field of the same name for any other, e.g. ``premise`` / ``hypothesis``) and ``response``
    (the label word) columns to a ``Dataset`` / ``DatasetDict``, for
    :class:`fastprompt.data.InstructionCollator`."""
    labels = label_words(task)
    keys = {name: text_key if name == "text" else name for name in _instruction_fields(task)}

    def convert(example):
        prompt = instruction(task, **{name: example[key] for name, key in keys.items()})
        return {"prompt": prompt, "response": labels[int(example[label_key])]}

    return data.map(convert)


def label_words(task: str = "reviews") -> Sequence[str]:
    """The answer word of each class of a shipped task (class index order)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {task!r}")
    return TASKS[task]["labels"]
