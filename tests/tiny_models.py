"""Tiny randomly initialised transformers models for the method tests (offline, fast)."""
import torch
import transformers

VOCAB = 48


def tiny_llama(layers=2, hidden=32, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
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


def train_losses(wrapper, optimizer, steps, make_batch):
    """Runs `steps` optimizer steps on wrapper(**make_batch(step)).loss; returns the losses."""
    losses = []
    for step in range(steps):
        out = wrapper(**make_batch(step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses


def perturb(module, seed, scale=0.5):
    """Adds seeded noise to the trainable parameters of `module` (so an adapter is not at its
    do-nothing initial state)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))


def trainer_args(output_dir, max_steps, **overrides):
    """transformers.TrainingArguments for the small Trainer tests (CPU, no reporting, no tqdm);
    keywords the installed transformers does not know are dropped."""
    import inspect

    kwargs = dict(output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=max_steps, report_to=[],
                  save_strategy="no", logging_steps=1, remove_unused_columns=False, use_cpu=True, disable_tqdm=True)
    kwargs.update(overrides)
    params = inspect.signature(transformers.TrainingArguments).parameters
    return transformers.TrainingArguments(**{k: v for k, v in kwargs.items() if k in params})
