"""Expected values that come from first principles, not from a peer library.

`greedy_decode_reference` is the oracle for greedy `generate()`: one full forward pass per new
token through the model's own `forward()`, no key/value cache, on the growing sequence. (A peer's
cached `generate()` is not an oracle: PEFT 0.21.2's prompt tuning diverges from its own no-cache
output after the second new token.)
"""
import torch


def greedy_decode_reference(model, input_ids, max_new_tokens, attention_mask=None, decoder_start_token_id=None,
                            instruction_mask=None, **forward_kwargs):
    """Greedy decoding of `max_new_tokens` tokens by repeated full forward passes.

    Decoders: returns (B, T + max_new_tokens), the caller's tokens then the new ones. Rows may be
    left-padded: the positions then count real tokens only (position_ids = cumsum(mask) - 1), as
    `generate()` does. Encoder-decoders (`decoder_start_token_id` given): returns the decoder
    sequence (B, 1 + max_new_tokens), starting with the start token. `instruction_mask` (B, T),
    for IAPT, marks the caller's instruction tokens; the new tokens are never instruction tokens.
    `forward_kwargs` (e.g. tenant_ids) go to every forward call.
    """
    batch = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        if decoder_start_token_id is not None:
            decoded = torch.full((batch, 1), decoder_start_token_id, dtype=input_ids.dtype, device=input_ids.device)
            for _ in range(max_new_tokens):
                logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoded,
                               **forward_kwargs).logits
                decoded = torch.cat([decoded, logits[:, -1:].argmax(-1)], dim=1)
            return decoded
        seq, mask = input_ids, attention_mask
        padded = bool((attention_mask == 0).any())
        instruction = instruction_mask
        for _ in range(max_new_tokens):
            extra = dict(forward_kwargs)
            if padded:
                extra["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
            if instruction is not None:
                extra["instruction_mask"] = instruction
            logits = model(input_ids=seq, attention_mask=mask, **extra).logits
            seq = torch.cat([seq, logits[:, -1:].argmax(-1)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if instruction is not None:
                instruction = torch.cat([instruction, torch.zeros_like(instruction[:, :1])], dim=1)
        return seq


def assert_same_until_eos(generated, expected, prompt_length, eos_token_id, decode=None):
    """Row by row, the new tokens of `generated` (generate()'s output, which pads a row after its
    end of sequence) equal those of `expected` (the oracle's) up to and including the first
    `eos_token_id` (an id or a list of ids) of the oracle."""
    eos = set(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])
    for row in range(expected.shape[0]):
        oracle = expected[row, prompt_length:].tolist()
        got = generated[row, prompt_length:].tolist()
        stop = next((i + 1 for i, t in enumerate(oracle) if t in eos), len(oracle))
        shown = (decode(got), decode(oracle)) if decode else (got, oracle)
        assert got[:stop] == oracle[:stop], shown
