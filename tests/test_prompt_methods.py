"""Prompt tuning, DePT and EPT on tiny random BERT, LLaMA, GPT-2 and T5 models (offline): training,
generation, save/load, PEFT interop, initialisation, errors, the parameter budget, the EPT prompt
module against its reference, and the Trainer."""
import json

import pytest
import torch

import fastprompt
import transformers
from fastprompt.methods import (DePTConfig, DePTModel, PromptTuningConfig, PromptTuningModel, count_parameters,
                                dept_parameter_count, match_prompt_budget)
from fastprompt.nn import SoftPrompt


from conftest import DEVICES, assert_close, require  # noqa: E402

from oracles import greedy_decode_reference  # noqa: E402
from tiny_models import VOCAB, perturb, tiny_bert, tiny_gpt2, tiny_llama, tiny_t5, train_losses, trainer_args  # noqa: E402


# the tiny models here are far too small for intra-op threads to help
pytestmark = pytest.mark.usefixtures("one_thread")


BACKBONES = {"bert": tiny_bert, "llama": tiny_llama, "gpt2": tiny_gpt2, "t5": tiny_t5}


# ---- SoftPrompt --------------------------------------------------------------------------------

def test_soft_prompt_shapes_and_from_tensor():
    prompt = SoftPrompt(5, 8)
    assert prompt.weight.shape == (5, 8) and prompt.weight.requires_grad
    out = prompt(3)
    assert out.shape == (3, 5, 8) and torch.equal(out[2], prompt.weight)
    assert prompt().shape == (5, 8)
    out.sum().backward()
    torch.testing.assert_close(prompt.weight.grad, torch.full((5, 8), 3.0))
    # from any tensor: a non-contiguous view of a tensor that requires grad, float64
    source = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    view = source.t()[:, ::2] * 2
    copied = SoftPrompt.from_tensor(view)
    assert copied.weight.shape == (6, 4) and copied.weight.dtype == torch.float64
    assert copied.weight.is_leaf and copied.weight.requires_grad
    assert torch.equal(copied.weight, view.detach())
    with torch.no_grad():
        copied.weight.add_(1.0)
    assert not torch.equal(copied.weight, view.detach())  # a copy, not shared storage
    with pytest.raises(ValueError, match="tensor"):
        SoftPrompt.from_tensor(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="num_tokens"):
        SoftPrompt(0, 4)


# ---- small generated tasks ---------------------------------------------------------------------

def classification_batch(step, batch=16, length=7):
    """Class 0 draws its words from 3..10, class 1 from 11..18; [CLS] = 1 first."""
    gen = torch.Generator().manual_seed(step % 4)
    labels = torch.randint(0, 2, (batch,), generator=gen)
    ids = torch.randint(3, 11, (batch, length), generator=gen) + 8 * labels.unsqueeze(1)
    ids[:, 0] = 1
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)


def copy_batch(step, batch=16, length=5):
    """Decoder task: random tokens, then the first one shifted by 20, then EOS; loss on the answer."""
    gen = torch.Generator().manual_seed(step % 4)
    instr = torch.randint(3, 11, (batch, length), generator=gen)
    ids = torch.cat([instr, instr[:, :1] + 20, torch.full((batch, 1), 2)], dim=1)
    labels = ids.clone()
    labels[:, :length] = -100
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)


def seq2seq_batch(step, batch=16, length=6):
    """Encoder input: random tokens; target: the first one shifted by 20, then EOS."""
    gen = torch.Generator().manual_seed(step % 4)
    ids = torch.randint(3, 11, (batch, length), generator=gen)
    labels = torch.cat([ids[:, :1] + 20, torch.full((batch, 1), 2)], dim=1)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)


TASKS = {"bert": classification_batch, "llama": copy_batch, "gpt2": copy_batch, "t5": seq2seq_batch}
METHODS = {
    "prompt_tuning": (PromptTuningModel, dict(num_virtual_tokens=6)),
    "dept": (DePTModel, dict(num_virtual_tokens=4, rank=4, max_len=16)),
    "ept": (None, dict(num_virtual_tokens=4, rank=4, max_len=16, num_spaces=3)),
}


def method_class(method):
    from fastprompt.methods import EPTModel

    return METHODS[method][0] or EPTModel


def wrap(method, model, **overrides):
    kwargs = {**METHODS[method][1], "seed": 0, **overrides}
    return method_class(method)(model, **kwargs)


def train(wrapper, steps, make_batch, lr=5e-2, lr_lowrank=None):
    """Adam with every prompt part at ``lr`` (the low-rank pair at ``lr_lowrank`` if given)."""
    groups = {name: lr for name in wrapper.default_learning_rates() if name != "lr_head"}
    if "lr_lowrank" in groups and lr_lowrank is not None:
        groups["lr_lowrank"] = lr_lowrank
    return train_losses(wrapper, torch.optim.Adam(wrapper.param_groups(**groups)), steps, make_batch)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_training_loss_falls_and_backbone_stays_frozen(method, backbone):
    model = BACKBONES[backbone]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = wrap(method, model)
    heads = wrapper.prompt_config.modules_to_save
    assert heads == (["classifier"] if backbone == "bert" else [])  # a classifier's head trains by default
    assert all(p.requires_grad == any(n.startswith(h + ".") for h in heads) for n, p in model.named_parameters())
    assert wrapper.num_trainable_parameters() == count_parameters(wrapper) > 0
    losses = train(wrapper, 20, TASKS[backbone])
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    for k, v in model.state_dict().items():
        if not any(k.startswith(h + ".") for h in heads):
            assert torch.equal(v, before[k]), k
    if method != "prompt_tuning":  # the low-rank offset trained away from its zero start
        assert wrapper.prompt_encoder.offset.B.abs().sum() > 0


@pytest.mark.parametrize("backbone", ["llama", "bert"])
@pytest.mark.parametrize("method", list(METHODS))
def test_mixed_tenant_batch_equals_each_tenant_alone(method, backbone):
    wrapper = wrap(method, BACKBONES[backbone](), modules_to_save=[])
    perturb(wrapper.prompt_encoder, 1, scale=0.3)
    for i, name in enumerate(("b", "c")):
        perturb(wrapper.add_adapter(name, **METHODS[method][1], seed=i + 1, modules_to_save=[]), i + 2, scale=0.3)
    ids = torch.randint(3, VOCAB, (5, 7))
    ids[:, 0] = 1
    am = torch.ones_like(ids)
    if backbone == "llama":
        am[3, :2] = 0  # left padding
    tenants = ["b", "default", "c", "b", "default"]
    mixed = wrapper(input_ids=ids, attention_mask=am, tenant_ids=tenants, output_hidden_states=True)
    assert wrapper.active_adapter == "default" and wrapper._rows is None  # restored after the call
    for name in ("default", "b", "c"):
        rows = [i for i, t in enumerate(tenants) if t == name]
        wrapper.set_active_adapter(name)
        alone = wrapper(input_ids=ids[rows], attention_mask=am[rows], output_hidden_states=True)
        torch.testing.assert_close(mixed.logits[rows], alone.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mixed.hidden_states[-1][rows], alone.hidden_states[-1], rtol=1e-5, atol=1e-5)
    wrapper.set_active_adapter("default")
    by_index = wrapper(input_ids=ids, attention_mask=am, tenant_ids=torch.tensor([1, 0, 2, 1, 0])).logits
    torch.testing.assert_close(by_index, mixed.logits)
    if backbone == "llama":
        gen = wrapper.generate(input_ids=ids, attention_mask=am, tenant_ids=tenants, max_new_tokens=5,
                               do_sample=False, pad_token_id=0)
        for name in ("default", "b", "c"):
            rows = [i for i, t in enumerate(tenants) if t == name]
            alone = wrapper.generate(input_ids=ids[rows], attention_mask=am[rows], tenant_ids=name, max_new_tokens=5,
                                     do_sample=False, pad_token_id=0)
            assert torch.equal(gen[rows], alone)
    # gradients reach every tenant's own adapter
    wrapper(input_ids=ids, attention_mask=am, tenant_ids=tenants).logits.square().mean().backward()
    for name in ("default", "b", "c"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in wrapper.adapters[name].parameters()
                   if p.requires_grad and p.dim() > 1 and p.shape[0] != 16)  # the offset's A rows past T get none
    wrapper.add_adapter("long", **{**METHODS[method][1], "num_virtual_tokens": 2}, modules_to_save=[])
    with pytest.raises(ValueError, match="tenant_ids: 'default' and 'long' have different num_virtual_tokens"):
        wrapper(input_ids=ids, attention_mask=am, tenant_ids=["default", "long", "b", "b", "b"])
    with pytest.raises(ValueError, match="tenant_ids: unknown adapter 'nobody'"):
        wrapper(input_ids=ids, attention_mask=am, tenant_ids=["default", "nobody", "b", "b", "b"])
    memory = wrapper.adapter_memory()
    assert set(memory) == {"default", "b", "c", "long"}
    assert memory["b"] == sum(p.numel() * 4 for p in wrapper.adapters["b"].parameters())


def test_rows_served_from_a_prompt_bank_equal_an_adapter_with_that_prompt():
    from fastprompt.vectors import PromptBank

    wrapper = PromptTuningModel(tiny_llama(), num_virtual_tokens=4, seed=0)
    perturb(wrapper.prompt_encoder, 1, scale=0.3)
    gen = torch.Generator().manual_seed(0)
    bank = PromptBank(torch.randn(3, 4, 32, generator=gen) * 0.1, base=torch.randn(4, 32, generator=gen) * 0.1,
                      names=["sst", "nli", "qa"])
    bank.register_mix("sst+nli", {"sst": 0.5, "nli": 0.5})
    wrapper.use_prompt_bank(bank)
    for name in ("sst+nli", "qa"):
        adapter = wrapper.add_adapter(f"as_{name.replace('+', '_')}", num_virtual_tokens=4)
        with torch.no_grad():
            adapter.weight.copy_(bank([name])[0])
    ids = torch.randint(3, VOCAB, (4, 6))
    tenants = ["sst+nli", "default", "qa", "sst+nli"]
    mixed = wrapper(input_ids=ids, tenant_ids=tenants).logits
    alone = {"default": "default", "sst+nli": "as_sst_nli", "qa": "as_qa"}
    for row, name in enumerate(tenants):
        wrapper.set_active_adapter(alone[name])
        torch.testing.assert_close(mixed[row], wrapper(input_ids=ids[row:row + 1]).logits[0], rtol=1e-5, atol=1e-5)
    only_bank = wrapper(input_ids=ids[1:3], tenant_ids=["qa", "qa"]).logits
    torch.testing.assert_close(only_bank[1], mixed[2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bank: expected prompts of width 32"):
        wrapper.use_prompt_bank(PromptBank(torch.randn(2, 4, 8)))
    with pytest.raises(ValueError, match="bank: a prompt bank holds plain prompts"):
        wrap("dept", tiny_llama()).use_prompt_bank(bank)
    with pytest.raises(ValueError, match="tenant_ids: unknown adapter 'sentiment'"):
        wrapper(input_ids=ids, tenant_ids=["sentiment"] * 4)


@pytest.mark.parametrize("num_tokens", [1, 4])
@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
def test_causal_lm_projects_only_the_callers_positions_with_the_same_loss(backbone, num_tokens):
    wrapper = PromptTuningModel(BACKBONES[backbone](), num_virtual_tokens=num_tokens, seed=0)
    perturb(wrapper.prompt_encoder, 1, scale=0.3)
    assert wrapper._tail_logits
    ids = torch.randint(3, VOCAB, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding
    labels = ids.masked_fill(mask == 0, -100)
    seen = []
    hook = wrapper.base_model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    results = {}
    for tail in (True, False):
        wrapper._tail_logits = tail
        for with_labels in (True, False):
            out = wrapper(input_ids=ids, attention_mask=mask, labels=labels if with_labels else None)
            results[tail, with_labels] = out
    hook.remove()
    # LM head over 7 (+1 with labels: the last soft token predicts the first input token) vs all
    assert seen == [8, 7, 7 + num_tokens, 7 + num_tokens]
    for with_labels in (True, False):
        a, b = results[True, with_labels], results[False, with_labels]
        assert a.logits.shape == b.logits.shape == (3, 7, VOCAB)
        assert_close(a.logits, b.logits, torch.float32)
    assert_close(results[True, True].loss, results[False, True].loss, torch.float32)


@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
@pytest.mark.parametrize("method", list(METHODS))
def test_decoder_generate_with_kv_cache(method, backbone):
    wrapper = wrap(method, BACKBONES[backbone]())
    perturb(wrapper.prompt_encoder, 3, scale=0.3)
    ids = torch.randint(3, VOCAB, (3, 7))
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    cached = wrapper.generate(input_ids=ids, **kwargs)
    full = wrapper.generate(input_ids=ids, use_cache=False, **kwargs)
    assert cached.shape == (3, 12)
    assert torch.equal(cached[:, :7], ids)  # aligned with the caller's input_ids
    assert torch.equal(cached, full)
    # greedy decoding with the wrapper's forward on the growing sequence gives the same tokens
    # (for DePT / EPT the generated positions get their offset rows too)
    assert wrapper(input_ids=ids).logits.shape == (3, 7, VOCAB)
    seq = ids
    for _ in range(5):
        seq = torch.cat([seq, wrapper(input_ids=seq).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(seq, cached)
    out = wrapper.generate(input_ids=ids, return_dict_in_generate=True, **kwargs)
    assert torch.equal(out.sequences, cached)
    # max_length counts the caller's tokens
    assert wrapper.generate(input_ids=ids, max_length=9, do_sample=False, pad_token_id=0).shape == (3, 9)


@pytest.mark.parametrize("method", list(METHODS))
def test_t5_generate_follows_forward(method):
    wrapper = wrap(method, tiny_t5())
    perturb(wrapper.prompt_encoder, 4, scale=0.3)
    ids = torch.randint(3, VOCAB, (2, 6))
    seqs = wrapper.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert seqs.shape[0] == 2 and 2 <= seqs.shape[1] <= 5 and (seqs[:, 0] == 0).all()
    logits = wrapper(input_ids=ids, decoder_input_ids=seqs[:, :1]).logits
    assert torch.equal(logits[:, -1].argmax(-1), seqs[:, 1])
    # the prompt matters: a different prompt gives different encoder logits
    base = wrapper(input_ids=ids, decoder_input_ids=seqs[:, :2]).logits
    perturb(wrapper.prompt_encoder, 5, scale=0.5)
    assert not torch.allclose(base, wrapper(input_ids=ids, decoder_input_ids=seqs[:, :2]).logits)


def test_prompt_placement_masks_labels_positions_and_token_types():
    wrapper = PromptTuningModel(tiny_llama(), num_virtual_tokens=3, seed=0)
    ids = torch.randint(3, VOCAB, (2, 6))
    am = torch.ones_like(ids)
    am[1, :2] = 0  # left padding
    out = wrapper(input_ids=ids, attention_mask=am, labels=ids)
    assert out.logits.shape == (2, 6, VOCAB) and torch.isfinite(out.loss)
    # the same as feeding the concatenation by hand
    embeds = torch.cat([wrapper.prompt().unsqueeze(0).expand(2, -1, -1), wrapper.word_embeddings(ids)], dim=1)
    manual = wrapper.base_model(inputs_embeds=embeds, attention_mask=torch.cat([torch.ones(2, 3).long(), am], 1),
                                labels=torch.cat([torch.full((2, 3), -100), ids], 1))
    torch.testing.assert_close(out.logits, manual.logits[:, 3:])
    torch.testing.assert_close(out.loss, manual.loss)
    # explicit position ids 0..T-1 give what the model does without them
    positions = torch.arange(6).unsqueeze(0)
    torch.testing.assert_close(wrapper(input_ids=ids, position_ids=positions).logits, wrapper(input_ids=ids).logits)
    # BERT: token type ids of zeros change nothing; a second segment changes the logits
    bert = PromptTuningModel(tiny_bert(), num_virtual_tokens=3, seed=0)
    plain = bert(input_ids=ids).logits
    torch.testing.assert_close(bert(input_ids=ids, token_type_ids=torch.zeros_like(ids)).logits, plain)
    segments = torch.zeros_like(ids)
    segments[:, 3:] = 1
    assert not torch.allclose(bert(input_ids=ids, token_type_ids=segments).logits, plain)
    # inputs_embeds instead of input_ids
    torch.testing.assert_close(bert(inputs_embeds=bert.word_embeddings(ids)).logits, plain)


def test_dept_offset_is_added_by_position():
    wrapper = DePTModel(tiny_llama(), num_virtual_tokens=2, rank=3, max_len=10, seed=0)
    ids = torch.randint(3, VOCAB, (2, 6))
    base = PromptTuningModel(tiny_llama(), num_virtual_tokens=2, init="tensor",
                             init_tensor=wrapper.prompt_encoder.prompt.weight.detach())
    # B starts at zero: DePT equals plain prompt tuning with the same short prompt
    torch.testing.assert_close(wrapper(input_ids=ids).logits, base(input_ids=ids).logits)
    perturb(wrapper.prompt_encoder.offset, 1)
    off = wrapper.prompt_encoder.offset
    expected = wrapper.word_embeddings(ids) + (off.A @ off.B)[:6]
    torch.testing.assert_close(wrapper.embed_inputs(ids), expected)
    assert not torch.allclose(wrapper(input_ids=ids).logits, base(input_ids=ids).logits)


# ---- save / load ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", list(METHODS))
def test_save_load_round_trip(tmp_path, method):
    from safetensors.torch import load_file

    wrapper = wrap(method, tiny_llama())
    perturb(wrapper.prompt_encoder, 5, scale=0.3)
    ids = torch.randint(3, VOCAB, (2, 6))
    expected = wrapper(input_ids=ids).logits
    wrapper.save_pretrained(tmp_path / "p")
    import json

    cfg = json.loads((tmp_path / "p" / "fastprompt_config.json").read_text())
    assert cfg["method"] == method and cfg["token_dim"] == 32 and cfg["model_type"] == "llama"
    assert cfg["num_virtual_tokens"] == METHODS[method][1]["num_virtual_tokens"] and cfg["seed"] == 0
    assert cfg["init"] == "random" and "base_model_name_or_path" in cfg
    state = load_file(str(tmp_path / "p" / "fastprompt_weights.safetensors"))
    assert state["prompt_embeddings"].shape == (cfg["num_virtual_tokens"], 32)
    if method != "prompt_tuning":
        assert state["lowrank_A"].shape == (16, 4) and state["lowrank_B"].shape == (4, 32)
    if method == "ept":
        assert state["projection.weight"].shape == (3, 32, 32)
    # the class follows the saved method
    loaded = PromptTuningModel.from_pretrained(tiny_llama(), tmp_path / "p")
    assert type(loaded) is type(wrapper)
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)
    loaded = method_class(method).from_pretrained(tiny_llama(), tmp_path / "p")
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)


def test_load_onto_mismatched_backbone_raises(tmp_path):
    wrapper = DePTModel(tiny_llama(), num_virtual_tokens=3, rank=2, max_len=8)
    wrapper.save_pretrained(tmp_path / "p")
    with pytest.raises(ValueError, match="hidden size 32.*this model has hidden size 48"):
        PromptTuningModel.from_pretrained(tiny_llama(hidden=48), tmp_path / "p")
    with pytest.raises(ValueError, match="model_type 'llama'.*'gpt2'"):
        PromptTuningModel.from_pretrained(tiny_gpt2(), tmp_path / "p")  # same hidden size, other family
    from fastprompt.methods import EPTModel

    with pytest.raises(ValueError, match="'dept' adapter, which EPTModel cannot load"):
        EPTModel.from_pretrained(tiny_llama(), tmp_path / "p")
    with pytest.raises(FileNotFoundError, match="fastprompt_config.json"):
        PromptTuningModel.from_pretrained(tiny_llama(), tmp_path / "missing")


# ---- PEFT interop --------------------------------------------------------------------------------

PEFT_TASKS = {"bert": "SEQ_CLS", "llama": "CAUSAL_LM", "gpt2": "CAUSAL_LM", "t5": "SEQ_2_SEQ_LM"}


def peft_logits(model, backbone, ids, am, num):
    extra = {"decoder_input_ids": ids[:, :3]} if backbone == "t5" else {}
    logits = model(input_ids=ids, attention_mask=am, **extra).logits
    return logits[:, num:] if backbone in ("llama", "gpt2") else logits  # PEFT keeps the virtual positions


def ours_logits(wrapper, backbone, ids, am):
    extra = {"decoder_input_ids": ids[:, :3]} if backbone == "t5" else {}
    return wrapper(input_ids=ids, attention_mask=am, **extra).logits


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_peft_adapter_loads_into_fastprompt_with_equal_logits(tmp_path, backbone):
    peft = require("peft")
    config = peft.PromptTuningConfig(task_type=PEFT_TASKS[backbone], num_virtual_tokens=5,
                                     prompt_tuning_init="RANDOM")
    torch.manual_seed(1)
    peft_model = peft.get_peft_model(BACKBONES[backbone](), config).eval()
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.mul_(0.3)  # a scale the tiny models like
        if backbone == "bert":  # PEFT trains the classification head of SEQ_CLS models with the prompt
            perturb(peft_model.base_model.classifier.modules_to_save["default"], 9)
    peft_model.save_pretrained(str(tmp_path / "peft"))

    wrapper = PromptTuningModel.from_peft(BACKBONES[backbone](), tmp_path / "peft")
    assert wrapper.num_virtual_tokens == 5
    if backbone == "bert":  # the head came with the adapter, trains with the prompt, and is saved with it
        assert wrapper.prompt_config.modules_to_save == ["classifier"]
        assert wrapper.base_model.classifier.weight.requires_grad
        assert not wrapper.base_model.bert.embeddings.word_embeddings.weight.requires_grad
    ids = torch.randint(3, VOCAB, (3, 7))
    am = torch.ones_like(ids)
    am[0, 5:] = 0
    expected = peft_logits(peft_model, backbone, ids, am, 5)
    torch.testing.assert_close(ours_logits(wrapper, backbone, ids, am), expected, rtol=1e-5, atol=1e-5)
    wrapper.save_pretrained(tmp_path / "ours")
    reloaded = PromptTuningModel.from_pretrained(BACKBONES[backbone](), tmp_path / "ours")
    torch.testing.assert_close(ours_logits(reloaded, backbone, ids, am), expected, rtol=1e-5, atol=1e-5)
    if backbone in ("llama", "gpt2", "t5"):
        # generation against the oracle (a no-cache greedy decode through forward()), not against
        # PEFT's cached generate(), which is wrong in PEFT 0.21.2 after the second new token;
        # PEFT's own no-cache path agrees with the oracle
        for model in (wrapper.base_model, peft_model):
            model.generation_config.eos_token_id = None  # exactly 4 new tokens, as the oracle
        kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
        ids = ids[1:]
        start = {"decoder_start_token_id": 0} if backbone == "t5" else {}
        expected = greedy_decode_reference(wrapper, ids, 4, **start)
        assert torch.equal(wrapper.generate(input_ids=ids, **kwargs), expected)
        assert torch.equal(peft_model.generate(input_ids=ids, use_cache=False, **kwargs), expected)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_fastprompt_export_loads_into_peft_with_equal_logits(tmp_path, backbone):
    peft = require("peft")
    wrapper = PromptTuningModel(BACKBONES[backbone](), num_virtual_tokens=4, init="vocab", seed=3, placement="front")
    perturb(wrapper.prompt_encoder, 2, scale=0.1)
    wrapper.export_peft(tmp_path / "export")
    assert (tmp_path / "export" / "adapter_config.json").is_file()
    assert (tmp_path / "export" / "adapter_model.safetensors").is_file()

    peft_model = peft.PeftModel.from_pretrained(BACKBONES[backbone](), str(tmp_path / "export")).eval()
    assert peft_model.peft_config["default"].task_type == PEFT_TASKS[backbone]
    ids = torch.randint(3, VOCAB, (3, 7))
    am = torch.ones_like(ids)
    am[2, 4:] = 0
    torch.testing.assert_close(peft_logits(peft_model, backbone, ids, am, 4),
                               ours_logits(wrapper, backbone, ids, am), rtol=1e-5, atol=1e-5)
    # and back: PEFT's adapter re-imported gives the same prompt
    peft_model.save_pretrained(str(tmp_path / "again"))
    again = PromptTuningModel.from_peft(BACKBONES[backbone](), tmp_path / "again")
    torch.testing.assert_close(again.prompt(), wrapper.prompt())


def test_peft_interop_errors(tmp_path):
    wrapper = DePTModel(tiny_bert(), num_virtual_tokens=3, rank=2, max_len=8)
    with pytest.raises(ValueError, match="export_peft.*'dept'"):
        wrapper.export_peft(tmp_path / "x")
    with pytest.raises(ValueError, match="export_peft: PEFT puts the soft tokens before the whole input"):
        PromptTuningModel(tiny_bert(), num_virtual_tokens=3).export_peft(tmp_path / "x")  # placement after [CLS]
    plain = PromptTuningModel(tiny_bert(), num_virtual_tokens=3, placement="front")
    plain.export_peft(tmp_path / "ok")
    with pytest.raises(ValueError, match="hidden size 32; this model has hidden size 48"):
        PromptTuningModel.from_peft(tiny_bert(hidden=48), tmp_path / "ok")
    import json

    cfg = json.loads((tmp_path / "ok" / "adapter_config.json").read_text())
    cfg["peft_type"] = "LORA"
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="PROMPT_TUNING"):
        PromptTuningModel.from_peft(tiny_bert(), tmp_path / "lora")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        PromptTuningModel.from_peft(tiny_bert(), tmp_path / "missing")


# ---- initialisation ------------------------------------------------------------------------------

def word_tokenizer(tmp_path=None):
    import tokenizers
    words = ["[PAD]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(3, VOCAB)]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[PAD]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]")
    if tmp_path is not None:
        fast.save_pretrained(str(tmp_path))
    return fast


def test_init_from_text_vocab_tensor(tmp_path):
    model = tiny_llama()
    table = model.get_input_embeddings().weight
    # text: token embeddings of the text, repeated / truncated to L (PEFT's rule)
    tokenizer = word_tokenizer()
    wrapper = PromptTuningModel(model, num_virtual_tokens=7, init="text", init_text="w5 w9 w4", tokenizer=tokenizer)
    torch.testing.assert_close(wrapper.prompt(), table[[5, 9, 4, 5, 9, 4, 5]])
    short = PromptTuningModel(tiny_llama(), num_virtual_tokens=2, init="text", init_text="w5 w9 w4",
                              tokenizer=tokenizer)
    torch.testing.assert_close(short.prompt(), table[[5, 9]])
    # the same as PEFT's TEXT initialisation (tokenizer from a folder)
    peft = require("peft")
    word_tokenizer(tmp_path / "tok")
    theirs = peft.get_peft_model(tiny_llama(), peft.PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=7, prompt_tuning_init="TEXT", prompt_tuning_init_text="w5 w9 w4",
        tokenizer_name_or_path=str(tmp_path / "tok")))
    torch.testing.assert_close(theirs.prompt_encoder["default"].embedding.weight, wrapper.prompt())
    by_name = PromptTuningModel(tiny_llama(), num_virtual_tokens=7, init="text", init_text="w5 w9 w4",
                                tokenizer_name_or_path=str(tmp_path / "tok"))
    torch.testing.assert_close(by_name.prompt(), wrapper.prompt())
    # vocab: rows of the embedding table, reproducible with a seed
    vocab = PromptTuningModel(tiny_llama(), num_virtual_tokens=5, init="vocab", seed=7)
    rows = [(vocab.prompt()[i] == table).all(1).nonzero() for i in range(5)]
    assert all(len(r) >= 1 for r in rows)
    torch.testing.assert_close(PromptTuningModel(tiny_llama(), num_virtual_tokens=5, init="vocab", seed=7).prompt(),
                               vocab.prompt())
    # random: seeded, the scale of the word embeddings
    a = PromptTuningModel(tiny_llama(), num_virtual_tokens=50, seed=1).prompt()
    torch.testing.assert_close(PromptTuningModel(tiny_llama(), num_virtual_tokens=50, seed=1).prompt(), a)
    assert abs(a.std().item() - table.std().item()) < 0.3 * table.std().item()
    # tensor: any tensor (L, d), copied; DePT / EPT initialise their short prompt the same way
    source = torch.randn(32, 4, dtype=torch.float64).t()
    t = PromptTuningModel(tiny_llama(), num_virtual_tokens=4, init="tensor", init_tensor=source)
    torch.testing.assert_close(t.prompt(), source.float())
    assert t.prompt().data_ptr() != source.data_ptr()
    d = DePTModel(tiny_llama(), num_virtual_tokens=4, rank=2, max_len=8, init="tensor", init_tensor=source)
    torch.testing.assert_close(d.prompt(), source.float())


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="init: expected one of"):
        PromptTuningConfig(num_virtual_tokens=4, init="zeros")
    with pytest.raises(ValueError, match="init_tensor: expected shape \\(4, dim\\)"):
        PromptTuningConfig(num_virtual_tokens=4, init="tensor", init_tensor=torch.randn(5, 32))
    with pytest.raises(ValueError, match="init_tensor: expected shape \\(4, 32\\)"):
        PromptTuningModel(tiny_llama(), num_virtual_tokens=4, init="tensor", init_tensor=torch.randn(4, 31))
    with pytest.raises(ValueError, match="init_tensor: init='tensor' needs"):
        PromptTuningModel(tiny_llama(), num_virtual_tokens=4, init="tensor")
    with pytest.raises(ValueError, match="init_text"):
        PromptTuningModel(tiny_llama(), num_virtual_tokens=4, init="text")
    with pytest.raises(ValueError, match="tokenizer"):
        PromptTuningModel(tiny_llama(), num_virtual_tokens=4, init="text", init_text="hello")
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PromptTuningModel(tiny_llama(), num_virtual_tokens=0)
    with pytest.raises(ValueError, match="rank"):
        DePTModel(tiny_llama(), num_virtual_tokens=4, rank=0)
    with pytest.raises(ValueError, match="gate"):
        from fastprompt.methods import EPTModel

        EPTModel(tiny_llama(), num_virtual_tokens=4, gate="mixture")
    with pytest.raises(ValueError, match="config: DePTModel expects a DePTConfig"):
        DePTModel(tiny_llama(), PromptTuningConfig(num_virtual_tokens=4))
    with pytest.raises(ValueError, match="expects a PromptTuningConfig, got DePTConfig \\(use DePTModel\\)"):
        PromptTuningModel(tiny_llama(), DePTConfig(num_virtual_tokens=4))
    # inputs longer than the offset's max_len
    for method in ("dept", "ept"):
        wrapper = wrap(method, tiny_llama(), max_len=8)
        wrapper(input_ids=torch.randint(3, VOCAB, (2, 8)))
        with pytest.raises(ValueError, match="input_ids: inputs of 9 tokens are longer than .*max_len \\(8\\)"):
            wrapper(input_ids=torch.randint(3, VOCAB, (2, 9)))
        with pytest.raises(ValueError, match="max_len"):
            wrapper.generate(input_ids=torch.randint(3, VOCAB, (2, 9)), max_new_tokens=2)
        with pytest.raises(ValueError, match="position 8 is beyond the low-rank offset's max_len \\(8\\)"):
            wrapper.generate(input_ids=torch.randint(3, VOCAB, (2, 6)), max_new_tokens=4, do_sample=False,
                             pad_token_id=0)
    wrapper = PromptTuningModel(tiny_llama(), num_virtual_tokens=3)
    with pytest.raises(ValueError, match="attention_mask: expected shape"):
        wrapper(input_ids=torch.randint(3, VOCAB, (2, 5)), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="input_ids"):
        wrapper(input_ids=torch.randint(3, VOCAB, (5,)))
    with pytest.raises(ValueError, match="generate"):
        PromptTuningModel(tiny_bert(), num_virtual_tokens=3).generate(input_ids=torch.randint(3, VOCAB, (2, 5)))


# ---- parameter budget ----------------------------------------------------------------------------

def test_parameter_budget_helper():
    # DePT's main setting: L=100 on T5-base (d=768), max_len 256 -> m=60, r=30, exactly L*d
    assert match_prompt_budget(100, 768, 256) == (60, 30)
    assert dept_parameter_count(60, 30, 768, 256) == 100 * 768
    m, r = match_prompt_budget(100, 768, 256, num_tokens=40)
    assert m == 40 and dept_parameter_count(m, r, 768, 256) <= 100 * 768 < dept_parameter_count(m, r + 1, 768, 256)
    m, r = match_prompt_budget(100, 768, 256, rank=45)
    assert r == 45 and dept_parameter_count(m, r, 768, 256) <= 100 * 768 < dept_parameter_count(m + 1, r, 768, 256)
    with pytest.raises(ValueError, match="rank"):
        match_prompt_budget(10, 32, 256, rank=5)
    with pytest.raises(ValueError, match="num_tokens"):
        match_prompt_budget(10, 32, 256, num_tokens=10)
    with pytest.raises(ValueError, match="at most one"):
        match_prompt_budget(10, 32, 256, num_tokens=2, rank=1)
    # the wrappers report what they train
    m, r = match_prompt_budget(20, 32, 16)
    dept = DePTModel(tiny_llama(), num_virtual_tokens=m, rank=r, max_len=16)
    assert dept.num_trainable_parameters() == dept_parameter_count(m, r, 32, 16) <= 20 * 32
    report = dept.parameter_report()
    assert report["trainable"] == dept.num_trainable_parameters()
    assert report["prompt_weight"] == m * 32 and report["offset_A"] == 16 * r
    assert report["backbone"] == sum(p.numel() for p in dept.base_model.parameters())
    plain = PromptTuningModel(tiny_llama(), num_virtual_tokens=20)
    assert plain.num_trainable_parameters() == 20 * 32
    # separate learning rates
    groups = dept.param_groups(0.3, 1e-4)
    assert groups[0]["lr"] == 0.3 and groups[1]["lr"] == 1e-4
    assert [p.shape for p in groups[1]["params"]] == [(16, r), (r, 32)]
    assert sum(len(g["params"]) for g in groups) == len(dept.trainable_parameters())


# ---- the EPT prompt module -----------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gate", ["per_row", "shared"])
def test_ept_prompt_matches_reference_float64(device, gate):
    from fastprompt.reference import ept_prompt_ref_from_module

    torch.manual_seed(0)
    module = fastprompt.nn.EPTPrompt(7, 13, 3, 24, num_spaces=5, gate=gate, dtype=torch.float64).to(device)
    perturb(module, 1)  # B away from zero, gates away from uniform
    out = module()
    ref = ept_prompt_ref_from_module(module)
    assert out.shape == (7, 24) and out.dtype == torch.float64
    assert_close(out, ref, torch.float64)
    grad = torch.randn_like(out)
    params = list(module.parameters())
    got = torch.autograd.grad(out, params, grad)
    want = torch.autograd.grad(ref, params, grad)
    for (name, _), a, b in zip(module.named_parameters(), got, want):
        assert_close(a, b, torch.float64, msg=f"gradient of {name}")


def test_ept_prompt_structure_and_float32():
    from fastprompt.reference import ept_prompt_ref, ept_prompt_ref_from_module

    module = fastprompt.nn.EPTPrompt(6, 20, 4, 32, num_spaces=4, gate="shared")
    assert module.projection.gate_logits.shape == (4,) and torch.count_nonzero(module.offset.B) == 0
    assert_close(module(), ept_prompt_ref_from_module(module), torch.float32, scale=5)
    # with B = 0 the knowledge is zero: fusion is self-attention over the prompt plus zero rows
    p = module.prompt.weight
    attn = torch.softmax(torch.cat([p @ p.t(), torch.zeros(6, 20)], 1) / 32 ** 0.5, 1)
    fused = p + attn[:, :6] @ p
    torch.testing.assert_close(module.fuse(), fused)
    # the reference with a uniform gate equals shared logits of zero
    proj = module.projection
    torch.testing.assert_close(ept_prompt_ref(p, module.offset.A, module.offset.B, proj.weight, proj.bias),
                               module(), rtol=1e-5, atol=1e-6)


# ---- Trainer ---------------------------------------------------------------------------------------

def test_works_with_transformers_trainer(tmp_path):
    from fastprompt.methods import AdapterTrainer, EPTModel

    wrapper = EPTModel(tiny_gpt2(), num_virtual_tokens=4, rank=4, max_len=16, num_spaces=2)  # GPT-2 ties weights
    data = copy_batch(0, batch=32)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            return {k: v[i] for k, v in data.items()}

    args = trainer_args(tmp_path, 4, save_strategy="steps", save_steps=4)
    before = [p.clone() for p in wrapper.trainable_parameters()]
    optimizer = torch.optim.AdamW(wrapper.param_groups(2e-2, 1e-3))
    trainer = AdapterTrainer(model=wrapper, args=args, train_dataset=Data(), optimizers=(optimizer, None))
    result = trainer.train()
    assert result.training_loss > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, wrapper.trainable_parameters()))
    loaded = PromptTuningModel.from_pretrained(tiny_gpt2(), tmp_path / "checkpoint-4")
    assert isinstance(loaded, EPTModel)
    wrapper.eval()
    ids = data["input_ids"][:2]
    torch.testing.assert_close(loaded(input_ids=ids).logits, wrapper(input_ids=ids).logits)


@pytest.mark.parametrize("device", DEVICES)
def test_device_run_matches_cpu(device):
    wrapper = wrap("ept", tiny_llama())
    perturb(wrapper.prompt_encoder, 4, scale=0.3)
    ids = torch.randint(3, VOCAB, (3, 6))
    expected = wrapper(input_ids=ids).logits
    wrapper.to(device)
    out = wrapper(input_ids=ids.to(device)).logits
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert all(p.grad is not None for p in wrapper.trainable_parameters())


def test_bfloat16_backbone_with_float32_prompt():
    wrapper = wrap("ept", tiny_llama().to(torch.bfloat16))
    ids = torch.randint(3, VOCAB, (2, 6))
    out = wrapper(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in wrapper.trainable_parameters())
    assert wrapper.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0).shape == (2, 9)


@pytest.mark.parametrize("gate", ["per_row", "shared"])
def test_ept_prompt_under_torch_compile(gate):
    module = fastprompt.nn.EPTPrompt(5, 11, 3, 16, num_spaces=3, gate=gate)
    perturb(module, 2, scale=0.2)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    out = compiled()
    torch.testing.assert_close(out, module(), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_ept_benchmark_cases_run_and_agree():
    from fastprompt.bench.cases import FAMILIES
    from fastprompt.bench.cases.ept import cases

    assert "ept" in FAMILIES
    rows = cases("cpu", quick=True)
    assert {r.shape.rsplit("gate=", 1)[1] for r in rows} == {"shared", "per_row"}
    from fastprompt.nn.prompt import ept_prompt
    from fastprompt.reference import ept_prompt_ref

    for case in rows:
        inputs = case.make()
        for name in ("fastprompt", "eager"):  # the timed callables run
            case.providers[name](*inputs)
        ours, ref = ept_prompt(*inputs), ept_prompt_ref(*inputs)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
        leaves = [t for t in inputs if t is not None]
        grad = torch.randn_like(ours)
        for a, b in zip(torch.autograd.grad(ours, leaves, grad), torch.autograd.grad(ref, leaves, grad)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_decoder_sequence_classification_pools_the_last_real_token(family):
    torch.manual_seed(0)
    if family == "llama":
        cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, num_labels=3,
                                       initializer_range=0.2)
        model = transformers.LlamaForSequenceClassification(cfg).eval()
    else:
        cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, pad_token_id=0, num_labels=3,
                                      initializer_range=0.2)
        model = transformers.GPT2ForSequenceClassification(cfg).eval()
    wrapper = DePTModel(model, num_virtual_tokens=3, rank=2, max_len=8, seed=0)
    perturb(wrapper.prompt_encoder, 1, scale=0.2)
    ids = torch.randint(3, VOCAB, (3, 6))
    am = torch.ones_like(ids)
    am[0, 4:] = 0  # right padding
    ids[0, 4:] = 0
    out = wrapper(input_ids=ids, attention_mask=am, labels=torch.tensor([0, 1, 2]))
    assert out.logits.shape == (3, 3) and torch.isfinite(out.loss)
    alone = wrapper(input_ids=ids[:1, :4]).logits
    torch.testing.assert_close(out.logits[:1], alone, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in wrapper.trainable_parameters())


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(reentrant):
    grads = []
    for checkpointing in (False, True):
        model = tiny_llama()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        wrapper = wrap("ept", model)
        perturb(wrapper.prompt_encoder, 1, scale=0.2)
        wrapper.train()
        wrapper(**copy_batch(0, batch=4), use_cache=False).loss.backward()
        grads.append([p.grad for p in wrapper.trainable_parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- default learning rates and parameter groups ----------------------------------------------------

def test_param_groups_defaults_scale_and_unknown_groups():
    from fastprompt.methods import EPTModel

    plain = PromptTuningModel(tiny_bert(), num_virtual_tokens=4)  # a classifier: the head is a group
    groups = {g["name"]: g for g in plain.param_groups()}
    assert set(groups) == {"prompt", "head"}
    assert groups["prompt"]["lr"] == PromptTuningModel.DEFAULT_LR["lr_prompt"]
    assert groups["head"]["lr"] == PromptTuningModel.DEFAULT_LR["lr_head"]
    assert [p.shape for p in groups["head"]["params"]] == [(2, 32), (2,)]
    with pytest.raises(ValueError, match="lr_lowrank: PromptTuningModel \\(prompt_tuning\\) has no such"):
        plain.param_groups(lr_lowrank=1e-3)
    with pytest.raises(ValueError, match="lr_prompt: expected a non-negative"):
        plain.param_groups(lr_prompt=-1.0)
    ept = EPTModel(tiny_llama(), num_virtual_tokens=3, rank=2, max_len=8, num_spaces=2)
    groups = {g["name"]: g for g in ept.param_groups(lr_lowrank=5e-4, scale=2.0, weight_decay=0.01)}
    assert set(groups) == {"prompt", "lowrank", "projection"}  # no head on a causal LM
    assert groups["lowrank"]["lr"] == 1e-3 and groups["prompt"]["lr"] == 2 * EPTModel.DEFAULT_LR["lr_prompt"]
    assert groups["projection"]["lr"] == 2 * EPTModel.DEFAULT_LR["lr_projection"]
    assert all(g["weight_decay"] == 0.01 for g in groups.values())
    assert [p.shape for p in groups["prompt"]["params"]] == [(3, 32)]
    everything = [p for g in groups.values() for p in g["params"]]
    assert len(everything) == len(ept.trainable_parameters()) == len({id(p) for p in everything})
    assert ept.default_learning_rates() == EPTModel.DEFAULT_LR
    dept = DePTModel(tiny_llama(), num_virtual_tokens=3, rank=2, max_len=8)
    assert [g["name"] for g in dept.param_groups()] == ["prompt", "lowrank"]
    torch.optim.AdamW(dept.param_groups())  # a valid optimizer


# ---- BERT family: [CLS] stays first, per-token outputs without the soft positions ---------------------

def tiny_bert_base(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=128)
    return transformers.BertModel(cfg).eval()


@pytest.mark.parametrize("method", list(METHODS))
def test_bert_soft_tokens_after_cls_and_outputs_without_soft_positions(method):
    wrapper = wrap(method, tiny_bert_base())
    assert wrapper.prompt_config.placement == "after_first" and wrapper.prompt_start == 1
    perturb(wrapper.prompt_encoder, 2, scale=0.3)
    ids = torch.randint(3, VOCAB, (2, 6))
    ids[:, 0] = 1
    am = torch.ones_like(ids)
    am[1, 4:] = 0  # right padding
    out = wrapper(input_ids=ids, attention_mask=am, output_hidden_states=True)
    num = wrapper.num_virtual_tokens
    assert out.last_hidden_state.shape == (2, 6, 32)
    assert len(out.hidden_states) == 3 and all(h.shape == (2, 6, 32) for h in out.hidden_states)
    # the same as feeding [CLS], the soft tokens, then the rest by hand
    embeds = wrapper.embed_inputs(ids)
    prompt = wrapper.prompt().unsqueeze(0).expand(2, -1, -1)
    full = torch.cat([embeds[:, :1], prompt, embeds[:, 1:]], dim=1)
    mask = torch.cat([am[:, :1], torch.ones(2, num, dtype=am.dtype), am[:, 1:]], dim=1)
    manual = wrapper.base_model(inputs_embeds=full, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state[:, 0], manual.last_hidden_state[:, 0])  # [CLS]
    torch.testing.assert_close(out.last_hidden_state[:, 1:], manual.last_hidden_state[:, 1 + num:])
    torch.testing.assert_close(out.hidden_states[0][:, 1:], manual.hidden_states[0][:, 1 + num:])
    torch.testing.assert_close(out.pooler_output, manual.pooler_output)  # the pooler reads [CLS]
    # left padding would move [CLS] away from the first column
    left = torch.ones_like(ids)
    left[0, 0] = 0
    with pytest.raises(ValueError, match="attention_mask: the soft tokens go after the first token"):
        wrapper(input_ids=ids, attention_mask=left)
    # front placement (PEFT's) on request: the soft tokens come first, outputs still aligned
    front = wrap(method, tiny_bert_base(), placement="front")
    out = front(input_ids=ids, attention_mask=am, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 6, 32) and out.hidden_states[-1].shape == (2, 6, 32)
    # explicit position ids give what the model does without them
    positions = torch.arange(6).unsqueeze(0)
    torch.testing.assert_close(wrapper(input_ids=ids, position_ids=positions).last_hidden_state,
                               wrapper(input_ids=ids).last_hidden_state)


def test_bert_token_classification_and_masked_lm_are_aligned():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, num_labels=3)
    tagger = PromptTuningModel(transformers.BertForTokenClassification(cfg).eval(), num_virtual_tokens=3, seed=0)
    assert tagger.prompt_config.modules_to_save == ["classifier"]
    ids = torch.randint(3, VOCAB, (2, 5))
    tags = torch.randint(0, 3, (2, 5))
    out = tagger(input_ids=ids, labels=tags)
    assert out.logits.shape == (2, 5, 3) and torch.isfinite(out.loss)
    # the loss is over the caller's tokens only
    expected = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 3), tags.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match=r"labels: expected shape \(2, 5\)"):
        tagger(input_ids=ids, labels=tags[:, 1:])
    mlm = PromptTuningModel(transformers.BertForMaskedLM(cfg).eval(), num_virtual_tokens=3, seed=0)
    assert mlm(input_ids=ids, labels=ids).logits.shape == (2, 5, VOCAB)


@pytest.mark.parametrize("method", list(METHODS))
def test_bert_classifier_head_trains_saves_and_loads(tmp_path, method):
    wrapper = wrap(method, tiny_bert())
    assert wrapper.prompt_config.modules_to_save == ["classifier"]
    assert wrapper.base_model.classifier.weight.requires_grad
    assert not wrapper.base_model.bert.pooler.dense.weight.requires_grad
    head_before = wrapper.base_model.classifier.weight.clone()
    train(wrapper, 3, classification_batch)
    assert not torch.equal(head_before, wrapper.base_model.classifier.weight)
    wrapper.save_pretrained(tmp_path / "p")
    ids = classification_batch(0)["input_ids"][:3]
    loaded = PromptTuningModel.from_pretrained(tiny_bert(), tmp_path / "p")
    assert loaded.prompt_config.placement == "after_first" and loaded.prompt_config.modules_to_save == ["classifier"]
    torch.testing.assert_close(loaded(input_ids=ids).logits, wrapper(input_ids=ids).logits)
    frozen = wrap(method, tiny_bert(), modules_to_save=[])  # everything frozen on request
    assert not frozen.base_model.classifier.weight.requires_grad


def test_prompt_saved_before_placement_existed_loads_in_front(tmp_path):
    wrapper = PromptTuningModel(tiny_bert(), num_virtual_tokens=3, seed=0, placement="front", modules_to_save=[])
    wrapper.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "fastprompt_config.json").read_text())
    del config["placement"]
    config["modules_to_save"] = None
    (tmp_path / "old" / "fastprompt_config.json").write_text(json.dumps(config))
    loaded = PromptTuningModel.from_pretrained(tiny_bert(), tmp_path / "old")
    assert loaded.prompt_config.placement == "front" and loaded.prompt_config.modules_to_save == []
    ids = classification_batch(0)["input_ids"][:2]
    torch.testing.assert_close(loaded(input_ids=ids).logits, wrapper(input_ids=ids).logits)


# ---- errors and warnings in the user's terms ---------------------------------------------------------

def test_user_mistakes_raise_or_warn(tmp_path):
    wrapper = PromptTuningModel(tiny_llama(), num_virtual_tokens=3, seed=0)
    ids = torch.randint(3, VOCAB, (2, 6))
    # instruction_mask is an IAPT input: ignored, with one warning
    with pytest.warns(UserWarning, match="instruction_mask: PromptTuningModel does not use an instruction mask"):
        out = wrapper(input_ids=ids, instruction_mask=torch.ones_like(ids, dtype=torch.bool))
    torch.testing.assert_close(out.logits, wrapper(input_ids=ids).logits)
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        wrapper(input_ids=ids, instruction_mask=torch.ones_like(ids, dtype=torch.bool))  # once only
    # labels of the wrong shape
    with pytest.raises(ValueError, match=r"labels: expected shape \(2, 6\) \(one label per input token"):
        wrapper(input_ids=ids, labels=ids[:, 1:])
    with pytest.raises(ValueError, match=r"labels: expected shape \(2,\) \(a class index per row\)"):
        PromptTuningModel(tiny_bert(), num_virtual_tokens=3)(input_ids=ids, labels=torch.tensor([0, 1, 1]))
    # right-padded prompts to generate
    am = torch.ones_like(ids)
    am[0, -2:] = 0
    with pytest.warns(UserWarning, match="right-padded.*Pad prompts on the left"):
        wrapper.generate(input_ids=ids, attention_mask=am, max_new_tokens=2, do_sample=False, pad_token_id=0)
    # float16 backbone on the CPU
    with pytest.warns(UserWarning, match="float16 on the CPU"):
        PromptTuningModel(tiny_llama().half(), num_virtual_tokens=3)
    # a missing folder, a folder without the files, a PEFT folder
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist \(expected a folder holding "
                                                r"fastprompt_config.json and fastprompt_weights.safetensors"):
        PromptTuningModel.from_pretrained(tiny_llama(), tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty has no fastprompt_config.json and no fastprompt_weights.safetensors"):
        PromptTuningModel.from_pretrained(tiny_llama(), tmp_path / "empty")
    wrapper.export_peft(tmp_path / "peft")
    with pytest.raises(FileNotFoundError, match="load it with PromptTuningModel.from_peft"):
        PromptTuningModel.from_pretrained(tiny_llama(), tmp_path / "peft")
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        PromptTuningModel.from_peft(tiny_llama(), tmp_path / "nowhere")
    with pytest.raises(ValueError, match="placement: expected one of"):
        PromptTuningModel(tiny_llama(), num_virtual_tokens=3, placement="middle")
    with pytest.raises(ValueError, match="placement: encoder-decoder"):
        PromptTuningModel(tiny_t5(), num_virtual_tokens=3, placement="after_first")


# ---- Trainer: resume from a checkpoint ------------------------------------------------------------------

class _Rows(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data["input_ids"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


def _trainer(wrapper, out, max_steps, save_steps=None, stop_at=None):
    from fastprompt.methods import AdapterTrainer

    class Interrupt(transformers.TrainerCallback):  # a run killed right after a checkpoint
        def on_step_end(self, args, state, control, **kwargs):
            if stop_at is not None and state.global_step == stop_at:
                control.should_training_stop = True
            return control

    args = trainer_args(out, max_steps, per_device_train_batch_size=4, save_strategy="steps" if save_steps else "no",
                        save_steps=save_steps or 1, seed=7, warmup_steps=2, lr_scheduler_type="linear")
    return AdapterTrainer(model=wrapper, args=args, train_dataset=_Rows(copy_batch(0, batch=24)),
                               callbacks=[Interrupt()])


@pytest.mark.parametrize("method", ["prompt_tuning", "ept"])
def test_trainer_resume_from_checkpoint_ends_where_an_uninterrupted_run_does(tmp_path, method):
    full = wrap(method, tiny_llama())
    trainer = _trainer(full, tmp_path / "full", 8)
    # without optimizers the Trainer uses the method's default parameter groups
    trainer.create_optimizer()
    assert {g["name"] for g in trainer.optimizer.param_groups} == {g["name"] for g in full.param_groups()}
    trainer.train()
    expected = [p.detach().clone() for p in full.trainable_parameters()]

    part = wrap(method, tiny_llama())
    trainer = _trainer(part, tmp_path / "run", 8, save_steps=4, stop_at=4)
    trainer.train()  # interrupted after 4 of 8 steps
    assert trainer.state.global_step == 4
    assert (tmp_path / "run" / "checkpoint-4" / "optimizer.pt").is_file()
    assert (tmp_path / "run" / "checkpoint-4" / "scheduler.pt").is_file()
    resumed = wrap(method, tiny_llama(), seed=123)  # a different start: the checkpoint must overwrite it
    trainer = _trainer(resumed, tmp_path / "run", 8, save_steps=4)
    trainer.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4"))
    assert trainer.state.global_step == 8
    for a, b in zip(resumed.trainable_parameters(), expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # resume_from_checkpoint=True picks the last checkpoint of output_dir
    again = wrap(method, tiny_llama(), seed=5)
    trainer = _trainer(again, tmp_path / "run", 8, save_steps=4)
    trainer.train(resume_from_checkpoint=True)
    for a, b in zip(again.trainable_parameters(), expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="holds a 'prompt_tuning' adapter; this model is 'dept'"):
        wrap("dept", tiny_llama()).load_weights(_saved(wrap("prompt_tuning", tiny_llama()), tmp_path / "pt"))


def _saved(wrapper, folder):
    wrapper.save_pretrained(folder)
    return folder


def test_old_trainer_names_still_work_with_a_deprecation_warning():
    import fastprompt.methods as methods

    for name in ("IAPTTrainer", "PromptTuningTrainer"):
        with pytest.warns(DeprecationWarning, match=f"{name} is deprecated; use fastprompt.methods.AdapterTrainer"):
            assert getattr(methods, name) is methods.AdapterTrainer
