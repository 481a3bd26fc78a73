"""Tiny randomly initialised transformers models for the method tests (offline, fast)."""
import torch
import transformers

VOCAB = 48


def tiny_llama(layers=2, hidden=32, seed=0):
    """Grouped-query attention (4 heads, 2 key/value heads), eos id 2, not frozen."""
    from fastprompt.vectors.experiment import tiny_llama as library_tiny_llama

    return library_tiny_llama(VOCAB, hidden=hidden, layers=layers, heads=4, kv_heads=2, max_positions=128,
                              eos_token_id=2, seed=seed, frozen=False)


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


def train_losses(wrapper, optimizer, steps, make_batch):
    """Runs `steps` optimizer steps on wrapper(**make_batch(step)).loss; returns the losses."""
    from fastprompt.methods.training import optimize

    return optimize(lambda step: wrapper(**make_batch(step)).loss, optimizer, range(steps))


def perturb(module, seed, scale=0.5, relative=False, fill=None):
    """Adds seeded noise to the trainable parameters of `module` (so an adapter is not at its
    do-nothing initial state): scale * N(0, 1), times the parameter's own std (at least 0.01)
    with `relative`; parameters named in `fill` are set to that value instead (e.g. open gates)."""
    gen = torch.Generator().manual_seed(seed)
    fill = fill or {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if name in fill:
                p.fill_(fill[name])
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
            p.add_(scale * (p.detach().float().std().clamp_min(1e-2) if relative else 1.0) * noise)


def trainer_args(output_dir, max_steps, **overrides):
    """transformers.TrainingArguments for the small Trainer tests (CPU, no reporting, no tqdm);
    keywords the installed transformers does not know are dropped."""
    import inspect

    kwargs = dict(output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=max_steps, report_to=[],
                  save_strategy="no", logging_steps=1, remove_unused_columns=False, use_cpu=True, disable_tqdm=True)
    kwargs.update(overrides)
    params = inspect.signature(transformers.TrainingArguments).parameters
    return transformers.TrainingArguments(**{k: v for k, v in kwargs.items() if k in params})
