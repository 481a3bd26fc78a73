"""Prompt tuning, DePT and EPT on tiny random BERT, LLaMA, GPT-2 and T5 models (offline): training,
generation, save/load, PEFT interop, initialisation, errors, the parameter budget, the EPT prompt
module against its reference, and the Trainer."""
import inspect

import pytest
import torch

import fastprompt
from fastprompt.methods import (DePTConfig, DePTModel, PromptTuningConfig, PromptTuningModel, count_parameters,
                                dept_parameter_count, match_prompt_budget)
from fastprompt.nn import SoftPrompt

transformers = pytest.importorskip("transformers", reason="transformers is needed for the prompt method tests")

from conftest import DEVICES, assert_close  # noqa: E402

VOCAB = 48


def tiny_llama(hidden=32, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                   initializer_range=0.2)
    return transformers.LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2)
    return transformers.GPT2LMHeadModel(cfg).eval()


def tiny_bert(num_labels=2, hidden=32, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, num_labels=num_labels, max_position_embeddings=128,
                                  initializer_range=0.2)
    return transformers.BertForSequenceClassification(cfg).eval()


def tiny_t5(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                decoder_start_token_id=0, pad_token_id=0, eos_token_id=2, dropout_rate=0.0)
    return transformers.T5ForConditionalGeneration(cfg).eval()


BACKBONES = {"bert": tiny_bert, "llama": tiny_llama, "gpt2": tiny_gpt2, "t5": tiny_t5}


def perturb(module, seed, scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))


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
    opt = torch.optim.Adam(wrapper.param_groups(lr, lr_lowrank))
    losses = []
    for step in range(steps):
        out = wrapper(**make_batch(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_training_loss_falls_and_backbone_stays_frozen(method, backbone):
    model = BACKBONES[backbone]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = wrap(method, model)
    assert all(not p.requires_grad for p in model.parameters())
    assert wrapper.num_trainable_parameters() == count_parameters(wrapper) > 0
    losses = train(wrapper, 20, TASKS[backbone])
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    if method != "prompt_tuning":  # the low-rank offset trained away from its zero start
        assert wrapper.prompt_encoder.offset.B.abs().sum() > 0


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
    # the first new token is the greedy choice of the wrapper's forward
    logits = wrapper(input_ids=ids).logits
    assert logits.shape == (3, 7, VOCAB)
    assert torch.equal(logits[:, -1].argmax(-1), cached[:, 7])
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

    cfg = json.loads((tmp_path / "p" / "prompt_config.json").read_text())
    assert cfg["method"] == method and cfg["token_dim"] == 32 and cfg["model_type"] == "llama"
    assert cfg["num_virtual_tokens"] == METHODS[method][1]["num_virtual_tokens"] and cfg["seed"] == 0
    assert cfg["init"] == "random" and "base_model_name_or_path" in cfg
    state = load_file(str(tmp_path / "p" / "prompt_weights.safetensors"))
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

    with pytest.raises(ValueError, match="'dept' prompt, which EPTModel cannot load"):
        EPTModel.from_pretrained(tiny_llama(), tmp_path / "p")
    with pytest.raises(FileNotFoundError, match="prompt_config.json"):
        PromptTuningModel.from_pretrained(tiny_llama(), tmp_path / "missing")
