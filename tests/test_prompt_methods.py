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
