"""fastprompt.data: the shipped task files and their loaders, the instruction / classification
collators (chat template or plain concatenation, padding sides, pre-encoded examples, the
Trainer), and the accuracy helpers, on tiny word-level tokenizers (offline, fast)."""
import json
from collections import Counter

import pytest
import torch

from conftest import require

from fastprompt.data import (IGNORE_INDEX, TASKS, ClassificationCollator, InstructionCollator, choice_accuracy,
                             classification_accuracy, instruction, label_words, task_files, tasks_folder)

transformers = require("transformers")
tokenizers = require("tokenizers")

WORDS = [f"w{i}" for i in range(10, 40)] + ["positive", "negative"]
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s> {% endfor %}"
            "{% if add_generation_prompt %}<assistant> {% endif %}")


def word_tokenizer(chat_template=True, padding_side="left", bert=False):
    specials = ["[PAD]", "[CLS]", "[SEP]", "</s>", "<system>", "<user>", "<assistant>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[PAD]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    if bert:
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    extra = {"model_input_names": ["input_ids", "token_type_ids", "attention_mask"]} if bert else {}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="</s>",
                                                padding_side=padding_side, **extra)
    if chat_template:
        fast.chat_template = TEMPLATE
    return fast


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# ---- shipped tasks ----------------------------------------------------------------------------------

def test_shipped_task_files_are_balanced_disjoint_english_reviews():
    files = task_files("reviews")
    assert set(files) == {"train", "validation", "test"}
    assert str(tasks_folder()) in files["train"]
    records = {split: [json.loads(line) for line in open(path)] for split, path in files.items()}
    assert {k: len(v) for k, v in records.items()} == {"train": 408, "validation": 96, "test": 96}
    texts = {split: {r["text"] for r in rs} for split, rs in records.items()}
    assert sum(len(t) for t in texts.values()) == 600  # no review twice, within or across splits
    for split, rs in records.items():
        assert sum(r["label"] for r in rs) * 2 == len(rs)
        assert {r["label_text"] for r in rs} == {"negative", "positive"}
        assert all(r["label_text"] == label_words("reviews")[r["label"]] for r in rs)
        assert len({r["domain"] for r in rs}) == 6
        assert all(r["text"][0].isupper() and r["text"].rstrip()[-1] in ".!" for r in rs)
    with pytest.raises(ValueError, match="task: expected one of"):
        task_files("glue")


SHIPPED = {  # task: ((train, validation, test) sizes, label_text of each class, answer words)
    "reviews": ((408, 96, 96), ("negative", "positive"), ("negative", "positive")),
    "topics": ((320, 80, 80), ("sport", "science", "business", "politics"),
               ("sport", "science", "business", "politics")),
    "entailment": ((320, 80, 80), ("entailment", "not_entailment"), ("yes", "no")),
}


def shipped_records(task):
    return {split: [json.loads(line) for line in open(path)] for split, path in task_files(task).items()}


def test_shipped_tasks_are_the_known_ones():
    assert set(TASKS) == set(SHIPPED)


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_every_shipped_task_is_balanced_disjoint_and_labelled(task):
    sizes, classes, words = SHIPPED[task]
    assert tuple(TASKS[task]["classes"]) == classes and tuple(label_words(task)) == words
    assert all(w.isalpha() and w.islower() for w in words) and len(set(words)) == len(words)  # one plain word each
    records = shipped_records(task)
    assert tuple(len(records[split]) for split in ("train", "validation", "test")) == sizes
    texts = {split: {r["text"] for r in rs} for split, rs in records.items()}
    assert sum(len(t) for t in texts.values()) == sum(sizes)  # no text twice, within or across splits
    for split, rs in records.items():
        counts = Counter(r["label"] for r in rs)
        assert sorted(counts) == list(range(len(classes)))
        assert set(counts.values()) == {len(rs) // len(classes)}, (split, counts)  # balanced
        assert all(r["label_text"] == classes[r["label"]] for r in rs)
        assert all(r["text"][0].isupper() and r["text"].rstrip()[-1] in ".!" for r in rs)
        if task == "entailment":
            assert all(r["text"] == r["premise"] + " " + r["hypothesis"] for r in rs)
            assert all(r["premise"] != r["hypothesis"] for r in rs)


def test_load_task_through_datasets_and_as_instructions(tmp_path):
    require("datasets")
    from fastprompt.data import as_instructions, load_files, load_task

    data = load_task("reviews")
    assert {k: len(v) for k, v in data.items()} == {"train": 408, "validation": 96, "test": 96}
    assert set(data["train"].column_names) == {"text", "label", "label_text", "domain"}
    test = load_task("reviews", split="test", limit=5)
    assert len(test) == 5 and test[0] == data["test"][0]
    chat = as_instructions(test)
    row = chat[0]
    assert row["response"] == label_words("reviews")[row["label"]]
    assert row["text"] in row["prompt"] and row["prompt"].startswith("Is the following review positive or negative?")
    with pytest.raises(ValueError, match="split"):
        load_task("reviews", split="dev")
    # the same path for a user's files (JSONL and CSV)
    (tmp_path / "a.jsonl").write_text('{"sentence": "Great film.", "label": 1}\n{"sentence": "Dull.", "label": 0}\n')
    (tmp_path / "b.csv").write_text("sentence,label\nLovely food.,1\n")
    mine = load_files({"train": str(tmp_path / "a.jsonl")})
    assert mine["train"]["sentence"] == ["Great film.", "Dull."]
    assert load_files(str(tmp_path / "b.csv"))["train"][0] == {"sentence": "Lovely food.", "label": 1}
    assert as_instructions(mine, text_key="sentence")["train"][0]["response"] == "positive"
    with pytest.raises(ValueError, match="format"):
        load_files(str(tmp_path / "x.txt"))


PROMPTS = {  # the prompt each shipped task gives for one example
    "reviews": lambda r: f"Is the following review positive or negative? Answer with one word.\n\n{r['text']}",
    "topics": lambda r: ("What is the topic of the following news text? Answer with one word: sport, science, "
                         f"business or politics.\n\n{r['text']}"),
    "entailment": lambda r: ("Does the first sentence imply the second? Answer with one word: yes or no.\n\n"
                             f"First: {r['premise']}\nSecond: {r['hypothesis']}"),
}


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_every_shipped_task_loads_and_gives_its_prompt(task):
    require("datasets")
    from fastprompt.data import as_instructions, load_task

    sizes, classes, words = SHIPPED[task]
    data = load_task(task)
    assert tuple(len(data[split]) for split in ("train", "validation", "test")) == sizes
    assert data["train"][0] == shipped_records(task)["train"][0]
    rows = as_instructions(load_task(task, split="test", limit=8), task)
    assert len(rows) == 8
    for row in rows:
        assert row["prompt"] == PROMPTS[task](row)
        assert row["response"] == words[row["label"]] and row["label_text"] == classes[row["label"]]
    # instruction() for one example: the text positionally, other fields as keywords
    first = rows[0]
    if task == "entailment":
        assert instruction(task, premise=first["premise"], hypothesis=first["hypothesis"]) == first["prompt"]
        with pytest.raises(ValueError, match="needs hypothesis"):
            instruction(task, premise=first["premise"])
    else:
        assert instruction(task, first["text"]) == instruction(task, text=first["text"]) == first["prompt"]
        with pytest.raises(ValueError, match="needs text"):
            instruction(task)


# ---- the instruction collator --------------------------------------------------------------------------

def test_chat_template_batch_masks_and_labels():
    tok = word_tokenizer()
    collator = InstructionCollator(tok)
    assert collator.use_chat_template and collator.padding_side == "left"
    examples = [{"prompt": "w10 w11 w12", "response": "positive"}, {"prompt": "w13", "response": "negative w14"}]
    batch = collator(examples)
    assert set(batch) == {"input_ids", "attention_mask", "instruction_mask", "labels"}
    assert batch["instruction_mask"].dtype == torch.bool and batch["labels"].dtype == torch.long
    for row, ex in enumerate(examples):
        messages = [{"role": "user", "content": ex["prompt"]}, {"role": "assistant", "content": ex["response"]}]
        full = tok.apply_chat_template(messages, tokenize=True)["input_ids"]
        prompt = tok.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True)["input_ids"]
        real = batch["attention_mask"][row].bool()
        assert batch["input_ids"][row][real].tolist() == full  # exactly the template's rendering
        assert not real[-1:].logical_not().any()  # padded on the left
        instr = batch["instruction_mask"][row]
        assert instr[real].tolist() == [True] * len(prompt) + [False] * (len(full) - len(prompt))
        assert not instr[~real].any()
        labels = batch["labels"][row]
        assert (labels[~real] == IGNORE_INDEX).all()
        response = labels[real][len(prompt):].tolist()
        assert response == ids(tok, ex["response"]) + [tok.eos_token_id]
        assert (labels[real][:len(prompt)] == IGNORE_INDEX).all()
    # right padding, pre-encoded examples (datasets.map) give the same rows
    right = InstructionCollator(tok, padding_side="right")
    encoded = [right.encode(e) for e in examples]
    again = right(encoded)
    for key in batch:
        for row in range(2):
            real = batch["attention_mask"][row].bool()
            real_r = again["attention_mask"][row].bool()
            assert torch.equal(batch[key][row][real], again[key][row][real_r]), key
    assert again["attention_mask"][:, 0].all()


def test_messages_system_prompt_generation_batch_and_truncation():
    tok = word_tokenizer()
    chat = [{"role": "user", "content": "w10"}, {"role": "assistant", "content": "w11"},
            {"role": "user", "content": "w12 w13"}, {"role": "assistant", "content": "positive"}]
    row = InstructionCollator(tok).encode({"messages": chat})
    full = tok.apply_chat_template(chat, tokenize=True)["input_ids"]
    assert row["input_ids"] == full
    n_resp = len(ids(tok, "positive")) + 1
    assert row["labels"] == [IGNORE_INDEX] * (len(full) - n_resp) + full[-n_resp:]  # only the last answer
    assert row["instruction_mask"] == [True] * (len(full) - n_resp) + [False] * n_resp
    # a system prompt goes first
    sys_row = InstructionCollator(tok, system_prompt="w30").encode({"prompt": "w10", "response": "w11"})
    assert sys_row["input_ids"][:2] == ids(tok, "<system> w30")
    # prompts alone: a generation batch that ends with the generation prompt, no labels
    collator = InstructionCollator(tok)
    gen = collator.prompts(["w10", "w11 w12 w13"])
    assert "labels" not in gen and gen["instruction_mask"].equal(gen["attention_mask"].bool())
    assert (gen["input_ids"][:, -1] == tok.convert_tokens_to_ids("<assistant>")).all()
    assert not gen["attention_mask"][:, -1].logical_not().any()
    with pytest.raises(ValueError, match="some examples have a response"):
        collator([{"prompt": "w10"}, {"prompt": "w10", "response": "w11"}])
    # truncation keeps the answer and the end of the prompt
    short = InstructionCollator(tok, max_length=6).encode({"prompt": "w10 w11 w12 w13 w14", "response": "positive"})
    assert len(short["input_ids"]) == 6 and short["labels"][-2:] == ids(tok, "positive") + [tok.eos_token_id]
    with pytest.raises(ValueError, match="features: an example needs"):
        collator([{"text": "w10"}])
    with pytest.raises(ValueError, match="messages"):
        collator([{"messages": [{"content": "w10"}]}])


def test_plain_concatenation_without_a_template():
    tok = word_tokenizer(chat_template=False, padding_side="right")
    collator = InstructionCollator(tok, separator=" ")
    assert not collator.use_chat_template
    row = collator.encode({"prompt": "w10 w11", "response": "negative"})
    assert row["input_ids"] == ids(tok, "w10 w11") + ids(tok, "negative") + [tok.eos_token_id]
    assert row["instruction_mask"] == [True, True, False, False]
    assert row["labels"] == [IGNORE_INDEX] * 2 + ids(tok, "negative") + [tok.eos_token_id]
    with pytest.raises(ValueError, match="use_chat_template"):
        InstructionCollator(tok, use_chat_template=True)
    # a tokenizer with a template can still be told to concatenate
    assert not InstructionCollator(word_tokenizer(), use_chat_template=False).use_chat_template


def test_classification_collator():
    tok = word_tokenizer(chat_template=False, padding_side="right", bert=True)
    collator = ClassificationCollator(tok, instruction_mask=True)
    batch = collator([{"text": "w10 w11 w12", "label": 1}, {"text": "w13", "label": 0}])
    assert batch["input_ids"][1].tolist()[:3] == [1, ids(tok, "w13")[0], 2]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert batch["instruction_mask"].equal(batch["attention_mask"].bool())
    pairs = ClassificationCollator(tok, text_pair_key="other")([{"text": "w10", "other": "w11", "label": 0}])
    assert pairs["token_type_ids"].tolist() == [[0, 0, 0, 1, 1]]
    unlabelled = ClassificationCollator(tok)([{"text": "w10"}])
    assert "labels" not in unlabelled
    pre = ClassificationCollator(tok)([{"input_ids": [1, 12, 2], "label": 1}])
    assert pre["labels"].tolist() == [1] and pre["attention_mask"].tolist() == [[1, 1, 1]]


# ---- with models ----------------------------------------------------------------------------------------

def tiny_decoder(vocab):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, eos_token_id=3)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_collator_feeds_trainer_and_accuracy_helpers(tmp_path, one_thread):
    from tiny_models import trainer_args

    from fastprompt.methods import AdapterTrainer, PromptTuningModel

    tok = word_tokenizer()
    collator = InstructionCollator(tok)
    examples = [{"prompt": f"w{10 + i % 20} w{11 + i % 20}", "response": "positive" if i % 2 else "negative",
                 "label": i % 2} for i in range(32)]
    model = PromptTuningModel(tiny_decoder(len(tok)), num_virtual_tokens=3, seed=0)
    args = trainer_args(tmp_path, 4)
    trainer = AdapterTrainer(model=model, args=args, train_dataset=examples, data_collator=collator)
    with pytest.warns(UserWarning, match="instruction_mask: PromptTuningModel does not use"):
        result = trainer.train()
    assert result.training_loss > 0
    acc, pred = choice_accuracy(model, collator, examples, ["negative", "positive"], return_predictions=True)
    assert 0 <= acc <= 1 and len(pred) == 32 and set(pred) <= {0, 1}
    # the same predictions from a right-padded collator (the last real token is read)
    acc_right = choice_accuracy(model, InstructionCollator(tok, padding_side="right"), examples,
                                ["negative", "positive"])
    assert acc_right == acc
    bert_tok = word_tokenizer(chat_template=False, padding_side="right", bert=True)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, num_labels=2)
    classifier = transformers.BertForSequenceClassification(cfg).eval()
    data = [{"text": e["prompt"], "label": e["label"]} for e in examples]
    acc, pred = classification_accuracy(classifier, ClassificationCollator(bert_tok), data, return_predictions=True)
    assert 0 <= acc <= 1 and len(pred) == 32
