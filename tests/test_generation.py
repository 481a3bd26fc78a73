"""Greedy generation of every method on every backbone family equals the oracle: a step-by-step
decode through the wrapper's own forward() without a key/value cache (tests/oracles.py)."""
import pytest
import torch

from fastprompt.methods import DePTModel, EPTModel, IAPTModel, PromptTuningModel

from oracles import greedy_decode_reference
from tiny_models import VOCAB, perturb, tiny_gpt2, tiny_llama, tiny_t5

METHODS = {
    "prompt_tuning": lambda m: PromptTuningModel(m, num_virtual_tokens=5, seed=0),
    "dept": lambda m: DePTModel(m, num_virtual_tokens=4, rank=3, max_len=32, seed=0),
    "ept": lambda m: EPTModel(m, num_virtual_tokens=4, rank=3, max_len=32, num_spaces=3, seed=0),
    "iapt": lambda m: IAPTModel(m, bottleneck=8),
}
DECODERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}
NEW_TOKENS = 6


def _trained_looking(method, backbone):
    backbone.generation_config.eos_token_id = None  # always NEW_TOKENS tokens, as the oracle
    wrapper = METHODS[method](backbone)
    perturb(wrapper, 3, scale=0.3)  # away from the initial state, so the adapter matters
    return wrapper.eval()


def _inputs(padded):
    ids = torch.randint(3, VOCAB, (3, 7), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    if padded:  # left padding, as for generation
        mask[0, :3] = 0
        mask[2, :1] = 0
        ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
@pytest.mark.parametrize("backbone", list(DECODERS))
@pytest.mark.parametrize("method", list(METHODS))
def test_decoder_cached_generate_equals_no_cache_decode(method, backbone, padded, one_thread):
    wrapper = _trained_looking(method, DECODERS[backbone]())
    ids, mask = _inputs(padded)
    extra = {"instruction_mask": mask.bool()} if method == "iapt" else {}
    cached = wrapper.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                              do_sample=False, pad_token_id=0, **extra)
    expected = greedy_decode_reference(wrapper, ids, NEW_TOKENS, attention_mask=mask, **extra)
    assert torch.equal(cached, expected)


@pytest.mark.parametrize("method", ["prompt_tuning", "dept", "ept"])
def test_encoder_decoder_cached_generate_equals_no_cache_decode(method, one_thread):
    wrapper = _trained_looking(method, tiny_t5())
    ids, mask = _inputs(padded=False)
    mask[1, 5:] = 0  # the encoder input may be padded on either side
    cached = wrapper.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                              do_sample=False)
    start = wrapper.base_model.config.decoder_start_token_id
    expected = greedy_decode_reference(wrapper, ids, NEW_TOKENS, attention_mask=mask, decoder_start_token_id=start)
    assert torch.equal(cached, expected)
