"""Small labelled task families generated in code, for tests, demos and transfer experiments.

No package ships GLUE-style data offline, so these families stand in for it. Tasks of one family
share their structure, so their task prompt vectors should transfer to each other:

* :func:`sentiment_family`: reviews of different domains (films, phones, restaurants, hotels,
  books, ...) made of filler words, domain nouns and polarity words; the label ("positive" /
  "negative") is the polarity of the majority of the polarity words. All tasks share the
  polarity lexicon and the verbalizers; they differ in the domain nouns.
* :func:`topic_family`: texts built around the keywords of one topic (sports, politics,
  science, music, cooking) mixed with filler and distractor words; each task classifies a
  different subset of the topics, verbalized by the topic names.

Everything is deterministic from ``seed``. Every task uses the one word list of
:func:`vocabulary`, so one tiny model (vocabulary size :attr:`Vocabulary.size`) serves them all.
Examples encode for causal LMs (``text => label``, the loss on the label word) or for
sequence classification (``[CLS] text [SEP]``, the class index) with :func:`encode`.
Real data sets load with :func:`load_examples` (local CSV / JSON / JSONL files, or
``datasets.load_dataset`` where that package is installed).
"""
import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "=>")
FILLERS = ("the", "a", "it", "was", "is", "very", "quite", "and", "but", "this", "that", "so", "really",
           "of", "with", "my", "we", "they")
POSITIVE = ("good", "great", "excellent", "nice", "lovely", "superb", "fine", "happy", "perfect", "enjoyable")
NEGATIVE = ("bad", "awful", "poor", "terrible", "dull", "nasty", "boring", "sad", "broken", "horrible")
DOMAINS = {
    "movies": ("film", "movie", "plot", "actor", "scene", "ending"),
    "phones": ("phone", "battery", "screen", "price", "case", "charger"),
    "restaurants": ("food", "waiter", "menu", "soup", "dessert", "table"),
    "hotels": ("room", "bed", "staff", "view", "pool", "lobby"),
    "books": ("book", "author", "chapter", "story", "cover", "page"),
    "games": ("game", "level", "player", "graphics", "controls", "boss"),
}
SENTIMENT_LABELS = ("negative", "positive")
TOPICS = {
    "sports": ("goal", "team", "match", "coach", "score", "league"),
    "politics": ("vote", "senate", "law", "minister", "party", "election"),
    "science": ("atom", "theory", "experiment", "cell", "energy", "lab"),
    "music": ("song", "band", "guitar", "album", "melody", "concert"),
    "cooking": ("recipe", "oven", "flour", "spice", "bake", "chef"),
}


@dataclass(frozen=True)
class Example:
    words: Tuple[str, ...]
    label: int

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass
class Task:
    """One labelled task: ``labels[i]`` is the verbalizer word of class i."""

    name: str
    family: str
    labels: Tuple[str, ...]
    train: List[Example] = field(default_factory=list)
    validation: List[Example] = field(default_factory=list)
    test: List[Example] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class Vocabulary:
    """Word <-> id map of the generated tasks (a stand-in tokenizer for tiny random models)."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.ids = {w: i for i, w in enumerate(self.words)}
        if len(self.ids) != len(self.words):
            raise ValueError("words: expected distinct words")

    @property
    def size(self) -> int:
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, word: str) -> int:
        return self.ids.get(word, self.ids.get("[UNK]", 0))

    @property
    def pad_id(self) -> int:
        return self.ids["[PAD]"]

    def encode(self, words: Sequence[str]) -> List[int]:
        return [self[w] for w in words]

    def decode(self, ids) -> List[str]:
        return [self.words[int(i)] for i in ids]


def vocabulary() -> Vocabulary:
    """The fixed vocabulary of every generated family (specials first; [PAD] is id 0)."""
    words = list(SPECIALS) + list(FILLERS) + list(POSITIVE) + list(NEGATIVE) + list(SENTIMENT_LABELS)
    for nouns in DOMAINS.values():
        words += list(nouns)
    words += list(TOPICS)
    for keys in TOPICS.values():
        words += list(keys)
    return Vocabulary(list(dict.fromkeys(words)))


def _rng(*parts) -> random.Random:
    return random.Random("/".join(str(p) for p in parts))  # str seeds hash deterministically


def _split(examples: List[Example], sizes: Tuple[int, int, int]):
    a, b, _ = sizes
    return examples[:a], examples[a:a + b], examples[a + b:]


def _check_sizes(num_train, num_validation, num_test, length):
    for name, v in (("num_train", num_train), ("num_validation", num_validation), ("num_test", num_test)):
        if v < 0:
            raise ValueError(f"{name}: expected a non-negative count, got {v}")
    if length < 4:
        raise ValueError(f"length: expected at least 4 words per example, got {length}")


def sentiment_task(domain: str, seed: int = 0, num_train: int = 64, num_validation: int = 32,
                   num_test: int = 0, length: int = 8, polarity_words: int = 3) -> Task:
    """One sentiment task of the given domain (a key of :data:`DOMAINS`).

    Each example has ``length`` words: ``polarity_words`` (odd) polarity words, the majority of
    them of the label's polarity, the rest domain nouns and fillers, shuffled. Balanced labels."""
    if domain not in DOMAINS:
        raise ValueError(f"domain: expected one of {', '.join(DOMAINS)}, got {domain!r}")
    _check_sizes(num_train, num_validation, num_test, length)
    if polarity_words < 1 or polarity_words % 2 == 0 or polarity_words > length:
        raise ValueError(f"polarity_words: expected an odd count in [1, length], got {polarity_words}")
    rng = _rng("sentiment", domain, seed)
    total = num_train + num_validation + num_test
    examples = []
    for i in range(total):
        label = i % 2
        same, other = (POSITIVE, NEGATIVE) if label == 1 else (NEGATIVE, POSITIVE)
        majority = rng.randint(polarity_words // 2 + 1, polarity_words)
        words = [rng.choice(same) for _ in range(majority)]
        words += [rng.choice(other) for _ in range(polarity_words - majority)]
        rest = length - polarity_words
        nouns = max(1, rest // 2)
        words += [rng.choice(DOMAINS[domain]) for _ in range(nouns)]
        words += [rng.choice(FILLERS) for _ in range(rest - nouns)]
        rng.shuffle(words)
        examples.append(Example(tuple(words), label))
    rng.shuffle(examples)
    train, val, test = _split(examples, (num_train, num_validation, num_test))
    return Task(f"sentiment-{domain}", "sentiment", SENTIMENT_LABELS, train, val, test)


def sentiment_family(num_tasks: int = 3, seed: int = 0, **kwargs) -> List[Task]:
    """``num_tasks`` sentiment tasks of different domains (films, phones, restaurants, ...)."""
    domains = list(DOMAINS)
    if not 1 <= num_tasks <= len(domains):
        raise ValueError(f"num_tasks: expected 1..{len(domains)}, got {num_tasks}")
    return [sentiment_task(d, seed=seed, **kwargs) for d in domains[:num_tasks]]


def topic_task(topics: Sequence[str], seed: int = 0, num_train: int = 64, num_validation: int = 32,
               num_test: int = 0, length: int = 8, keywords: int = 2) -> Task:
    """Classify texts among ``topics`` (keys of :data:`TOPICS`): each example holds ``keywords``
    keywords of its topic, one distractor keyword of another topic when room allows (fewer than
    its own), and fillers."""
    topics = list(topics)
    unknown = [t for t in topics if t not in TOPICS]
    if unknown or len(topics) < 2 or len(set(topics)) != len(topics):
        raise ValueError(f"topics: expected at least two distinct topics of {', '.join(TOPICS)}, got {topics}")
    _check_sizes(num_train, num_validation, num_test, length)
    if not 1 <= keywords <= length:
        raise ValueError(f"keywords: expected 1..length, got {keywords}")
    rng = _rng("topic", ",".join(topics), seed)
    examples = []
    for i in range(num_train + num_validation + num_test):
        label = i % len(topics)
        words = [rng.choice(TOPICS[topics[label]]) for _ in range(keywords)]
        if keywords >= 2 and length > keywords:
            other = rng.choice([t for t in TOPICS if t != topics[label]])
            words.append(rng.choice(TOPICS[other]))
        words += [rng.choice(FILLERS) for _ in range(length - len(words))]
        rng.shuffle(words)
        examples.append(Example(tuple(words), label))
    rng.shuffle(examples)
    train, val, test = _split(examples, (num_train, num_validation, num_test))
    return Task("topic-" + "-".join(topics), "topic", tuple(topics), train, val, test)


def topic_family(num_tasks: int = 3, num_classes: int = 2, seed: int = 0, **kwargs) -> List[Task]:
    """``num_tasks`` topic tasks, task j classifying ``num_classes`` consecutive topics from j."""
    names = list(TOPICS)
    if not 2 <= num_classes <= len(names):
        raise ValueError(f"num_classes: expected 2..{len(names)}, got {num_classes}")
    if not 1 <= num_tasks <= len(names):
        raise ValueError(f"num_tasks: expected 1..{len(names)}, got {num_tasks}")
    return [topic_task([names[(j + k) % len(names)] for k in range(num_classes)], seed=seed, **kwargs)
            for j in range(num_tasks)]


# ---- encoding --------------------------------------------------------------------------------
def encode(examples: Sequence[Example], task: Task, vocab: Optional[Vocabulary] = None,
           kind: str = "causal_lm", device=None) -> Dict[str, torch.Tensor]:
    """Tensors of ``examples`` (all of one length) for a model over :func:`vocabulary`.

    kind "causal_lm": input_ids = words + ["=>", label word]; labels -100 except the label word
    (the loss is the label word's cross-entropy). kind "classification": input_ids =
    [CLS] words [SEP]; labels = the class index (B,)."""
    vocab = vocab or vocabulary()
    examples = list(examples)
    if not examples:
        raise ValueError("examples: expected at least one example")
    lengths = {len(e.words) for e in examples}
    if len(lengths) != 1:
        raise ValueError(f"examples: expected examples of one length, got lengths {sorted(lengths)}")
    if kind == "causal_lm":
        ids = [vocab.encode(list(e.words) + ["=>", task.labels[e.label]]) for e in examples]
        input_ids = torch.tensor(ids, dtype=torch.long)
        labels = torch.full_like(input_ids, -100)
        labels[:, -1] = input_ids[:, -1]
    elif kind == "classification":
        ids = [vocab.encode(["[CLS]"] + list(e.words) + ["[SEP]"]) for e in examples]
        input_ids = torch.tensor(ids, dtype=torch.long)
        labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    else:
        raise ValueError(f"kind: expected 'causal_lm' or 'classification', got {kind!r}")
    out = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def batches(encoded: Dict[str, torch.Tensor], batch_size: int, shuffle_seed: Optional[int] = None) -> List[Dict]:
    """Split encoded tensors into batches (shuffled reproducibly when ``shuffle_seed`` is set)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive size, got {batch_size}")
    n = next(iter(encoded.values())).shape[0]
    order = torch.arange(n)
    if shuffle_seed is not None:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(shuffle_seed))
    out = []
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        out.append({k: v[idx.to(v.device)] for k, v in encoded.items()})
    return out


# ---- real data -------------------------------------------------------------------------------
def _read_local_rows(path: Path, split: str) -> List[dict]:
    """The rows of a local CSV / TSV / JSON / JSONL file, through ``datasets.load_dataset("csv" |
    "json", data_files=...)`` (the path a user takes for any local or hub data set) where
    ``datasets`` is installed, else through the standard library (same rows)."""
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        if path.suffix in (".csv", ".tsv"):
            table = datasets.load_dataset("csv", data_files=str(path), split="train",
                                          delimiter="\t" if path.suffix == ".tsv" else ",")
        elif path.suffix == ".jsonl":
            table = datasets.load_dataset("json", data_files=str(path), split="train")
        else:
            data = json.loads(path.read_text())
            field = None if isinstance(data, list) else (split if split in data else "data")
            table = datasets.load_dataset("json", data_files=str(path), split="train", field=field)
        return list(table)
    if path.suffix in (".csv", ".tsv"):
        with path.open(newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else data.get(split, data.get("data", []))


def load_examples(source: Union[str, Path], text_field: str = "text", label_field: str = "label",
                  split: str = "train", labels: Optional[Sequence[str]] = None, name: Optional[str] = None,
                  **dataset_kwargs) -> Task:
    """A :class:`Task` from a local CSV / JSON / JSONL file, or from a ``datasets`` hub name
    (needs the ``datasets`` package). Texts are split on whitespace; labels may be ints or
    strings (strings become class indices in order of first appearance, unless ``labels`` gives
    the order)."""
    path = Path(source)
    if path.suffix in (".csv", ".tsv", ".json", ".jsonl") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"source: no such file {path}")
        rows = _read_local_rows(path, split)
    else:
        try:
            import datasets
        except ImportError:
            raise ImportError(f"source: {source!r} is not a local file, and loading a named data set needs the "
                              "`datasets` package, which is not installed") from None
        rows = list(datasets.load_dataset(str(source), split=split, **dataset_kwargs))
    if rows and (text_field not in rows[0] or label_field not in rows[0]):
        raise ValueError(f"text_field, label_field: {text_field!r} / {label_field!r} not in the fields "
                         f"{sorted(rows[0])}")
    raw = [r[label_field] for r in rows]
    if labels is None:
        if all(isinstance(v, int) or (isinstance(v, str) and v.isdigit()) for v in raw):
            count = max((int(v) for v in raw), default=-1) + 1
            labels = tuple(str(i) for i in range(count))
        else:
            labels = tuple(dict.fromkeys(str(v) for v in raw))
    labels = tuple(labels)
    examples = []
    for r in rows:
        v = r[label_field]
        idx = int(v) if (isinstance(v, int) or (isinstance(v, str) and v.isdigit())) and str(v) not in labels \
            else labels.index(str(v))
        examples.append(Example(tuple(str(r[text_field]).split()), idx))
    return Task(name or path.stem, "loaded", labels, train=examples)
