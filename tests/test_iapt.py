"""IAPT: the prompt generator against its pure-PyTorch reference, and the method on tiny random
LLaMA, GPT-2 and BERT models (offline)."""
import pytest
import torch

import fastprompt
from fastprompt.methods import IAPTModel
from fastprompt.methods.iapt import find_layers
from fastprompt.reference import iapt_generator_ref_from_module

import transformers  # noqa: E402

from conftest import DEVICES, assert_close  # noqa: E402

from tiny_models import VOCAB, perturb, tiny_bert, tiny_gpt2, tiny_llama, train_losses, trainer_args  # noqa: E402


# ---- the generator ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_generator_matches_reference_float64(device, masked):
    torch.manual_seed(0)
    gen = fastprompt.nn.IAPTPromptGenerator(24, 8, num_tokens=4, dtype=torch.float64).to(device)
    perturb(gen, 1)
    hidden = torch.randn(3, 13, 24, dtype=torch.float64, device=device, requires_grad=True)
    mask = (torch.rand(3, 13, device=device) > 0.3) if masked else None
    if masked:
        mask[2] = False  # a row without instruction tokens
    out = gen(hidden, mask)
    ref = iapt_generator_ref_from_module(gen, hidden, mask)
    assert out.shape == (3, 4, 24)
    assert_close(out, ref, torch.float64)
    grad = torch.randn_like(out)
    params = [hidden] + list(gen.parameters())
    got = torch.autograd.grad(out, params, grad)
    want = torch.autograd.grad(ref, params, grad)
    names = ["hidden"] + [n for n, _ in gen.named_parameters()]
    for name, a, b in zip(names, got, want):
        assert_close(a, b, torch.float64, msg=f"gradient of {name}")


def test_generator_float32_and_errors():
    gen = fastprompt.nn.IAPTPromptGenerator(16, 4, num_tokens=2)
    hidden = torch.randn(2, 9, 16)
    assert_close(gen(hidden), iapt_generator_ref_from_module(gen, hidden), torch.float32, scale=5)
    with pytest.raises(ValueError, match="hidden"):
        gen(torch.randn(2, 9, 15))
    with pytest.raises(RuntimeError, match="mask"):
        gen(hidden, torch.ones(2, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="bottleneck"):
        fastprompt.nn.IAPTPromptGenerator(16, 0)


# ---- a small generated task --------------------------------------------------------------------

def copy_task(batch, seed, instruction_len=5, pad_left=False):
    """Instruction: random tokens; response: the first instruction token shifted by 20, then EOS.

    Returns input_ids, attention_mask, instruction_mask, labels (-100 on the instruction)."""
    gen = torch.Generator().manual_seed(seed)
    instr = torch.randint(3, 11, (batch, instruction_len), generator=gen)
    answer = (instr[:, :1] + 20)
    ids = torch.cat([instr, answer, torch.full((batch, 1), 2)], dim=1)
    labels = ids.clone()
    labels[:, :instruction_len] = -100
    instruction_mask = torch.zeros_like(ids, dtype=torch.bool)
    instruction_mask[:, :instruction_len] = True
    return ids, torch.ones_like(ids), instruction_mask, labels


def train(wrapper, steps, make_batch, lr=2e-2):
    return train_losses(wrapper, torch.optim.Adam(wrapper.trainable_parameters(), lr=lr), steps, make_batch)


@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
def test_causal_lm_training_loss_falls_and_backbone_stays_frozen(backbone):
    model = tiny_llama() if backbone == "llama" else tiny_gpt2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = IAPTModel(model, bottleneck=16)
    assert all(not p.requires_grad for p in model.parameters())
    # 2 layers x (down w,b; queries; a, b; up w,b) + one (layers, heads) gate tensor
    assert len(wrapper.trainable_parameters()) == 2 * 7 + 1

    def batch(step):
        ids, am, im, labels = copy_task(16, step % 4)
        return dict(input_ids=ids, attention_mask=am, instruction_mask=im, labels=labels)

    losses = train(wrapper, 25, batch)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bert_classification_training_loss_falls():
    wrapper = IAPTModel(tiny_bert(num_labels=2), bottleneck=16)
    assert wrapper.kind == "encoder"

    def batch(step):
        gen = torch.Generator().manual_seed(step % 4)
        labels = torch.randint(0, 2, (16,), generator=gen)
        # class 0 draws its words from 3..10, class 1 from 11..18
        ids = torch.randint(3, 11, (16, 7), generator=gen) + 8 * labels.unsqueeze(1)
        ids[:, 0] = 1  # [CLS]
        return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)

    losses = train(wrapper, 25, batch)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    out = wrapper(**batch(0))
    assert out.logits.shape == (16, 2)


def test_soft_positions_and_logits_alignment():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, num_tokens=3)
    ids = torch.randint(3, VOCAB, (2, 6))
    am = torch.ones_like(ids)
    am[1, :2] = 0  # left padding
    inputs, batch = wrapper._prepare(ids, am, None, None, None, None)
    # decoder: reserved positions right after the first real token (which keeps the attention sink)
    assert not batch.soft_mask[0, 0] and batch.soft_mask[0, 1:4].all() and not batch.soft_mask[0, 4:].any()
    assert batch.soft_mask[1, 3:6].all() and batch.soft_mask[1].sum() == 3
    assert torch.equal(inputs["input_ids"][~batch.soft_mask].view(2, 6), ids)
    assert not batch.instruction_mask[batch.soft_mask].any()
    # gated (default): invisible to the backbone's own attention; real tokens keep their positions
    assert (inputs["attention_mask"][batch.soft_mask] == 0).all()
    assert torch.equal(inputs["position_ids"][~batch.soft_mask].view(2, 6), torch.arange(6).expand(2, 6))
    out = wrapper(input_ids=ids, attention_mask=am)
    assert out.logits.shape == (2, 6, VOCAB)
    # encoder: after [CLS]
    bert = IAPTModel(tiny_bert(num_labels=3), bottleneck=8, num_tokens=3)
    _, batch = bert._prepare(ids, torch.ones_like(ids), None, None, None, None)
    assert not batch.soft_mask[:, 0].any() and batch.soft_mask[:, 1:4].all()


def test_generators_change_every_layer():
    model = tiny_llama()
    wrapper = IAPTModel(model, bottleneck=8)
    with torch.no_grad():
        wrapper.adapters["default"].gates.fill_(0.5)  # open the gates (zero at init)
    ids = torch.randint(3, VOCAB, (2, 6))
    base = wrapper(input_ids=ids).logits
    for layer in range(2):
        perturb(wrapper.adapters["default"].generators[layer], 10 + layer)
        changed = wrapper(input_ids=ids).logits
        assert not torch.allclose(base, changed)
        base = changed


@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
def test_generate_with_kv_cache_matches_full_recompute(backbone):
    model = tiny_llama() if backbone == "llama" else tiny_gpt2()
    wrapper = IAPTModel(model, bottleneck=8)
    perturb(wrapper.adapters["default"], 3)
    ids = torch.randint(3, VOCAB, (3, 7))
    am = torch.ones_like(ids)
    am[0, :2] = 0
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = wrapper.generate(input_ids=ids, attention_mask=am, **kwargs)
    full = wrapper.generate(input_ids=ids, attention_mask=am, use_cache=False, **kwargs)
    assert cached.shape[0] == 3 and cached.shape[1] >= 8
    assert torch.equal(cached[:, :7], ids)
    assert torch.equal(cached, full)
    # the first generated token is the greedy choice of the wrapper's own forward (rows without
    # padding, where generate() and forward() use the same positions)
    logits = wrapper(input_ids=ids[1:], attention_mask=am[1:]).logits
    assert torch.equal(logits[:, -1].argmax(-1), cached[1:, 7])


def test_multi_tenant_batch_equals_per_tenant_runs():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, adapter_name="a")
    perturb(wrapper.adapters["a"], 1)
    perturb(wrapper.add_adapter("b"), 2)
    perturb(wrapper.add_adapter("c"), 3)
    ids = torch.randint(3, VOCAB, (5, 6))
    am = torch.ones_like(ids)
    tenants = ["b", "a", "c", "b", "a"]
    mixed = wrapper(input_ids=ids, attention_mask=am, tenant_ids=tenants).logits
    for name in "abc":
        rows = [i for i, t in enumerate(tenants) if t == name]
        wrapper.set_active_adapter(name)
        alone = wrapper(input_ids=ids[rows], attention_mask=am[rows]).logits
        torch.testing.assert_close(mixed[rows], alone, rtol=1e-5, atol=1e-5)
    # indices into adapter_names work too
    by_index = wrapper(input_ids=ids, attention_mask=am, tenant_ids=torch.tensor([1, 0, 2, 1, 0])).logits
    torch.testing.assert_close(by_index, mixed)
    # and in generate()
    gen = wrapper.generate(input_ids=ids, attention_mask=am, tenant_ids=tenants, max_new_tokens=4,
                           do_sample=False, pad_token_id=0)
    for name in "abc":
        rows = [i for i, t in enumerate(tenants) if t == name]
        wrapper.set_active_adapter(name)
        alone = wrapper.generate(input_ids=ids[rows], attention_mask=am[rows], max_new_tokens=4,
                                 do_sample=False, pad_token_id=0)
        assert torch.equal(gen[rows], alone)


def test_generate_per_row_equals_each_generator_with_gradients():
    from fastprompt.nn.iapt import generate_per_row

    torch.manual_seed(0)
    generators = [fastprompt.nn.IAPTPromptGenerator(24, 6, 3) for _ in range(3)]
    for i, g in enumerate(generators):
        perturb(g, 10 + i, scale=0.2)
    index = torch.tensor([2, 0, 2, 1, 0, 2])
    hidden = torch.randn(6, 9, 24)
    mask = torch.rand(6, 9) > 0.3
    mask[:, 0] = True
    scale = torch.rand(6, 9, 1) + 0.5
    out = generate_per_row(generators, index, hidden, mask, input_scale=scale)
    loss_weights = torch.randn_like(out)
    (out * loss_weights).sum().backward()
    batched = [[p.grad.clone() for p in g.parameters()] for g in generators]
    for g in generators:
        g.zero_grad()
    alone = torch.cat([generators[a](hidden[b:b + 1], mask[b:b + 1], input_scale=scale[b:b + 1])
                       for b, a in enumerate(index.tolist())])
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)
    (alone * loss_weights).sum().backward()
    for g, grads in zip(generators, batched):
        for p, grad in zip(g.parameters(), grads):
            torch.testing.assert_close(grad, p.grad, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="generators: expected generators of one shape"):
        generate_per_row([generators[0], fastprompt.nn.IAPTPromptGenerator(24, 5, 3)], index[:2], hidden[:2])


def test_stacked_generators_share_storage_with_the_parameters():
    from fastprompt.nn.iapt import StackedGenerators, generate_per_row

    torch.manual_seed(1)
    generators = [fastprompt.nn.IAPTPromptGenerator(16, 4, 2) for _ in range(3)]
    for i, g in enumerate(generators):
        perturb(g, 20 + i, scale=0.2)
    index = torch.tensor([1, 2, 0, 1])
    hidden = torch.randn(4, 5, 16)
    expected = generate_per_row(generators, index, hidden).detach()
    stack = StackedGenerators(generators)
    assert stack.is_current() and len(stack) == 3
    assert generators[1].up.weight.data_ptr() == stack.tensors[("up", "weight")][1].data_ptr()
    with torch.no_grad():
        torch.testing.assert_close(generate_per_row(stack, index, hidden), expected)
        generators[0].up.bias.add_(1.0)  # an in-place update (an optimizer step) is seen by the stack
        moved = generate_per_row(stack, index, hidden)
    torch.testing.assert_close(moved[2], expected[2] + 1.0)
    torch.testing.assert_close(moved[[0, 1, 3]], expected[[0, 1, 3]])
    generate_per_row(stack, index, hidden).sum().backward()  # with autograd: gradients reach the parameters
    assert all(p.grad is not None for g in generators for p in g.parameters())
    generators[2].down.weight.data = generators[2].down.weight.data.clone()
    assert not stack.is_current()
    with pytest.raises(ValueError, match="a parameter appears in two of the generators"):
        StackedGenerators([generators[0], generators[0]])


def test_serving_stacks_follow_training_loading_and_unloading(tmp_path):
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, adapter_name="a")
    perturb(wrapper.adapters["a"], 1)
    perturb(wrapper.add_adapter("b", bottleneck=8), 2)
    ids = torch.randint(3, VOCAB, (4, 6))
    tenants = ["a", "b", "b", "a"]

    def check_against_alone():
        with torch.no_grad():
            mixed = wrapper(input_ids=ids, tenant_ids=tenants).logits
            for row, name in enumerate(tenants):
                alone = wrapper(input_ids=ids[row:row + 1], tenant_ids=[name]).logits
                torch.testing.assert_close(mixed[row:row + 1], alone, rtol=1e-5, atol=1e-5)

    check_against_alone()
    down = wrapper.adapters["b"].generators[0].down.weight
    assert down.untyped_storage().nbytes() == 2 * down.numel() * 4  # a row of the stack of a and b
    # train b between serving calls: the stacks see the optimizer's in-place updates
    wrapper.set_active_adapter("b")
    optimizer = torch.optim.AdamW(wrapper.adapters["b"].parameters(), lr=0.05)
    wrapper(input_ids=ids).logits.pow(2).mean().backward()
    optimizer.step()
    check_against_alone()
    wrapper.save_pretrained(tmp_path / "b", adapter_name="b")
    perturb(wrapper.add_adapter("c", bottleneck=8), 3)
    tenants[2] = "c"
    check_against_alone()
    wrapper.delete_adapter("c")  # leaving frees the stack: every parameter has its own storage again
    assert down.untyped_storage().nbytes() == down.numel() * 4
    wrapper.load_adapter(tmp_path / "b", adapter_name="a")
    tenants[2] = "b"
    check_against_alone()
    with torch.no_grad():
        torch.testing.assert_close(wrapper(input_ids=ids, tenant_ids=["a"] * 4).logits,
                                   wrapper(input_ids=ids, tenant_ids=["b"] * 4).logits)
    wrapper.double()  # moving the model moves the parameters out of their stacks
    ids_logits = wrapper(input_ids=ids, tenant_ids=tenants).logits
    assert ids_logits.dtype == torch.float64


def test_mixed_batch_trains_each_adapter_as_alone_and_mixes_generator_shapes():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, adapter_name="a")
    perturb(wrapper.adapters["a"], 1)
    perturb(wrapper.add_adapter("b", bottleneck=8), 2)
    perturb(wrapper.add_adapter("wide", bottleneck=12), 3)  # another generator shape: its own batched call
    ids = torch.randint(3, VOCAB, (6, 7))
    am = torch.ones_like(ids)
    am[1, :2] = 0
    labels = ids.masked_fill(am == 0, -100)
    tenants = ["b", "a", "wide", "b", "a", "wide"]
    wrapper(input_ids=ids, attention_mask=am, labels=labels, tenant_ids=tenants).logits.sum().backward()
    mixed = {n: [p.grad.clone() for p in wrapper.adapters[n].parameters()] for n in ("a", "b", "wide")}
    wrapper.zero_grad()
    for name in ("a", "b", "wide"):
        rows = [i for i, t in enumerate(tenants) if t == name]
        wrapper.set_active_adapter(name)
        wrapper(input_ids=ids[rows], attention_mask=am[rows], labels=labels[rows]).logits.sum().backward()
    for name, grads in mixed.items():
        for p, grad in zip(wrapper.adapters[name].parameters(), grads):
            torch.testing.assert_close(grad, p.grad, rtol=1e-3, atol=1e-4)


def test_mixed_batch_runs_the_same_operators_for_any_number_of_tenants():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, adapter_name="t0")
    for i in range(1, 8):
        perturb(wrapper.add_adapter(f"t{i}", bottleneck=8), i)
    ids = torch.randint(3, VOCAB, (8, 6))

    def operators(tenants):
        with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            wrapper(input_ids=ids, tenant_ids=tenants)
        return sorted((e.key, e.count) for e in prof.key_averages())

    operators([f"t{i}" for i in range(8)])  # the first call without autograd stacks the generators
    two = operators([f"t{i % 2}" for i in range(8)])
    eight = operators([f"t{i}" for i in range(8)])
    assert two == eight
    assert any(key == "fastprompt::gathered_linear" for key, _ in two)


def test_hundreds_of_adapters_load_serve_and_unload(tmp_path):
    wrapper = IAPTModel(tiny_llama(), bottleneck=4, adapter_name="t0")
    perturb(wrapper.adapters["t0"], 0)
    wrapper.save_pretrained(tmp_path / "saved")
    for i in range(1, 128):
        perturb(wrapper.add_adapter(f"t{i}", bottleneck=4), i)
    memory = wrapper.adapter_memory()
    assert len(memory) == 128 and len(set(memory.values())) == 1
    assert memory["t0"] == sum(p.numel() * 4 for p in wrapper.adapters["t0"].parameters())
    ids = torch.randint(3, VOCAB, (64, 5))
    tenants = [f"t{2 * i + 1}" for i in range(64)]  # 64 distinct tenants
    with torch.no_grad():
        mixed = wrapper(input_ids=ids, tenant_ids=tenants).logits
        for row in (0, 31, 63):
            alone = wrapper(input_ids=ids[row:row + 1], tenant_ids=tenants[row]).logits
            torch.testing.assert_close(mixed[row:row + 1], alone, rtol=1e-5, atol=1e-5)
        # unload and load while serving
        wrapper.delete_adapter("t1")
        with pytest.raises(ValueError, match="tenant_ids: unknown adapter 't1'"):
            wrapper(input_ids=ids, tenant_ids=tenants)
        wrapper.load_adapter(tmp_path / "saved", adapter_name="t1")
        again = wrapper(input_ids=ids[:1], tenant_ids=["t1"]).logits
        torch.testing.assert_close(again, wrapper(input_ids=ids[:1], tenant_ids=["t0"]).logits)


def test_save_load_round_trip_and_mismatch(tmp_path):
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, rational_init="silu")
    perturb(wrapper.adapters["default"], 5)
    ids = torch.randint(3, VOCAB, (2, 6))
    expected = wrapper(input_ids=ids).logits
    wrapper.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "fastprompt_config.json").is_file()
    assert (tmp_path / "adapter" / "fastprompt_weights.safetensors").is_file()

    loaded = IAPTModel.from_pretrained(tiny_llama(), tmp_path / "adapter")
    assert loaded.adapters["default"].config.rational_init == "silu"
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)

    # a second tenant loaded by name
    loaded.load_adapter(tmp_path / "adapter", "copy")
    out = loaded(input_ids=ids, tenant_ids=["copy", "default"]).logits
    torch.testing.assert_close(out, expected)

    with pytest.raises(ValueError, match="3 layers"):
        IAPTModel(tiny_llama(layers=3), bottleneck=8).load_adapter(tmp_path / "adapter")
    with pytest.raises(ValueError, match="hidden size"):
        IAPTModel(tiny_llama(hidden=48), bottleneck=8).load_adapter(tmp_path / "adapter")
    with pytest.raises(FileNotFoundError, match="fastprompt_config.json"):
        loaded.load_adapter(tmp_path / "missing")


def test_bad_inputs_give_clear_errors():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    ids = torch.randint(3, VOCAB, (2, 6))
    with pytest.raises(ValueError, match="instruction_mask"):
        wrapper(input_ids=ids, instruction_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="tenant_ids: unknown adapter 'nobody'"):
        wrapper(input_ids=ids, tenant_ids=["default", "nobody"])
    with pytest.raises(ValueError, match="tenant_ids: unknown tenant index 4"):
        wrapper(input_ids=ids, tenant_ids=[0, 4])
    with pytest.raises(ValueError, match="tenant_ids: expected one tenant per row"):
        wrapper(input_ids=ids, tenant_ids=["default"])
    with pytest.raises(ValueError, match="no supported transformer layers"):
        IAPTModel(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    with pytest.raises(ValueError, match="num_tokens"):
        wrapper.add_adapter("other", num_tokens=5)
    with pytest.raises(ValueError, match="generate"):
        IAPTModel(tiny_bert(num_labels=3), bottleneck=8).generate(input_ids=ids)


def test_works_with_transformers_trainer(tmp_path):
    from fastprompt.methods import AdapterTrainer

    wrapper = IAPTModel(tiny_gpt2(), bottleneck=16)  # GPT-2 ties its input and output embeddings
    ids, am, im, labels = copy_task(32, 0)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": am[i], "instruction_mask": im[i], "labels": labels[i]}

    args = trainer_args(tmp_path, 4, save_strategy="steps", save_steps=4)
    before = [p.clone() for p in wrapper.trainable_parameters()]
    trainer = AdapterTrainer(model=wrapper, args=args, train_dataset=Data())
    result = trainer.train()
    assert result.training_loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, wrapper.trainable_parameters()))
    # the checkpoint holds the adapter, loadable onto a fresh backbone
    checkpoint = tmp_path / "checkpoint-4"
    loaded = IAPTModel.from_pretrained(tiny_gpt2(), checkpoint)
    wrapper.eval()  # the Trainer left it in training mode (dropout)
    torch.testing.assert_close(loaded(input_ids=ids[:2]).logits, wrapper(input_ids=ids[:2]).logits)


def test_bfloat16_backbone_with_float32_generators():
    wrapper = IAPTModel(tiny_llama().to(torch.bfloat16), bottleneck=8)
    ids = torch.randint(3, VOCAB, (2, 6))
    out = wrapper(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in wrapper.trainable_parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert wrapper.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0).shape == (2, 9)


def test_decoder_sequence_classification_pools_a_real_token():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, num_labels=3,
                                   initializer_range=0.2)
    model = transformers.LlamaForSequenceClassification(cfg).eval()
    wrapper = IAPTModel(model, bottleneck=8)
    ids = torch.randint(3, VOCAB, (3, 6))
    ids[0, 4:] = 0  # right padding
    am = (ids != 0).long()
    out = wrapper(input_ids=ids, attention_mask=am, labels=torch.tensor([0, 1, 2]))
    assert out.logits.shape == (3, 3) and torch.isfinite(out.loss)
    # the reserved positions never read as padding: the pooled token of row 0 is its last real one
    inputs, batch = wrapper._prepare(ids, am, None, None, None, None)
    assert (inputs["input_ids"][batch.soft_mask] != 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_device_run_matches_cpu(device):
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    perturb(wrapper.adapters["default"], 4)
    perturb(wrapper.add_adapter("other"), 5)
    ids = torch.randint(3, VOCAB, (3, 6))
    am = torch.ones_like(ids)
    am[0, :2] = 0
    tenants = ["other", "default", "other"]
    expected = wrapper(input_ids=ids, attention_mask=am, tenant_ids=tenants).logits
    wrapper.to(device)
    out = wrapper(input_ids=ids.to(device), attention_mask=am.to(device), tenant_ids=tenants).logits
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert all(p.grad is not None for p in wrapper.adapters["other"].parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tiny_llama()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        wrapper = IAPTModel(model, bottleneck=8)
        perturb(wrapper.adapters["default"], 1)
        wrapper.train()
        ids, am, im, labels = copy_task(4, 0)
        wrapper(input_ids=ids, attention_mask=am, instruction_mask=im, labels=labels, use_cache=False).loss.backward()
        grads.append([p.grad for p in wrapper.trainable_parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate", ["attention", "none"])
@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
def test_inference_runs_the_mlp_on_real_positions_only_with_the_same_outputs(backbone, gate):
    make = {"llama": tiny_llama, "gpt2": tiny_gpt2}[backbone]
    wrapper = IAPTModel(make(), bottleneck=8, gate=gate)
    perturb(wrapper.adapters["default"], 4)
    ids = torch.randint(3, VOCAB, (3, 7), generator=torch.Generator().manual_seed(2))
    am = torch.ones_like(ids)
    am[0, :2] = 0
    rows_seen = []
    layers, _, _ = find_layers(wrapper.base_model)
    hook = layers[0].mlp.register_forward_hook(lambda m, args, out: rows_seen.append(args[0].shape[:2]))
    try:
        with_grad = wrapper(input_ids=ids, attention_mask=am, output_hidden_states=True)
        with torch.no_grad():
            without = wrapper(input_ids=ids, attention_mask=am, output_hidden_states=True)
    finally:
        hook.remove()
    k = wrapper.num_tokens
    assert rows_seen == [torch.Size([3, 7 + k]), torch.Size([3, 7])]
    torch.testing.assert_close(without.logits, with_grad.logits.detach(), rtol=1e-5, atol=1e-6)
    for a, b in zip(without.hidden_states, with_grad.hidden_states):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("placement", ["after_first", "start", "after_instruction"])
def test_side_layout_equals_the_inline_layout(placement, monkeypatch):
    """Without autograd a gated adapter on a LLaMA-style decoder computes the soft tokens' keys and
    values beside the caller's sequence (no reserved positions): logits, hidden states and generated
    tokens equal those of the inline layout, for mixed tenants and left padding."""
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, adapter_name="a", placement=placement)
    perturb(wrapper.adapters["a"], 5)
    perturb(wrapper.add_adapter("b", bottleneck=8, placement=placement), 6)
    ids = torch.randint(3, VOCAB, (3, 9), generator=torch.Generator().manual_seed(4))
    am = torch.ones_like(ids)
    am[0, :3] = 0
    im = am.clone()
    im[:, -3:] = 0  # the instruction ends before the last three tokens
    tenants = ["b", "a", "b"]
    call = dict(input_ids=ids, attention_mask=am, instruction_mask=im, tenant_ids=tenants)
    assert wrapper._side_modules is not None
    with torch.no_grad():
        inputs, batch = wrapper._prepare(ids, am, im, None, None, tenants)
        assert batch.side and inputs["input_ids"] is ids
        side = wrapper(**call, output_hidden_states=True)
        monkeypatch.setattr(wrapper, "_side_modules", None)
        assert not wrapper._prepare(ids, am, im, None, None, tenants)[1].side
        inline = wrapper(**call, output_hidden_states=True)
    real = am.bool()
    torch.testing.assert_close(side.logits[real], inline.logits[real], rtol=1e-5, atol=1e-5)
    for a, b in zip(side.hidden_states, inline.hidden_states):
        torch.testing.assert_close(a[real], b[real], rtol=1e-5, atol=1e-5)
    # the adapters act (the comparison is not between two bare models)
    with torch.no_grad():
        bare = wrapper.base_model(input_ids=ids, attention_mask=am).logits
    assert not torch.allclose(bare[real], side.logits[real], atol=1e-3)
    if placement == "after_instruction":
        return  # generate() refuses this placement
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, instruction_mask=im, tenant_ids=tenants)
    inline_gen = wrapper.generate(input_ids=ids, attention_mask=am, **kwargs)
    monkeypatch.undo()
    side_gen = wrapper.generate(input_ids=ids, attention_mask=am, **kwargs)
    assert torch.equal(side_gen, inline_gen)
    no_cache = wrapper.generate(input_ids=ids, attention_mask=am, use_cache=False, **kwargs)
    assert torch.equal(side_gen, no_cache)


# ---- do no harm at initialisation ----------------------------------------------------------------

def _bare_and_wrapped(backbone, **cfg):
    make = {"llama": tiny_llama, "gpt2": tiny_gpt2, "bert": lambda: tiny_bert(num_labels=3)}[backbone]
    return make(), IAPTModel(make(), bottleneck=8, **cfg)


@pytest.mark.parametrize("backbone", ["llama", "gpt2", "bert"])
def test_untrained_adapter_leaves_the_backbone_unchanged(backbone):
    bare, wrapper = _bare_and_wrapped(backbone)
    ids = torch.randint(3, VOCAB, (3, 7))
    am = torch.ones_like(ids)
    if backbone != "bert":
        am[0, :2] = 0  # left padding
    got = wrapper(input_ids=ids, attention_mask=am).logits
    want = bare(input_ids=ids, attention_mask=am).logits
    real = am.bool() if got.dim() == 3 else slice(None)
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)
    # an untrained tenant next to a trained one: its rows are the bare model's
    perturb(wrapper.add_adapter("trained"), 7)
    mixed = wrapper(input_ids=ids, attention_mask=am, tenant_ids=["default", "trained", "default"]).logits
    rows = [0, 2]
    mask = am[rows].bool() if got.dim() == 3 else slice(None)
    torch.testing.assert_close(mixed[rows][mask], want[rows][mask], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mixed[1], want[1], atol=1e-4)
    if backbone != "bert":
        kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
        torch.testing.assert_close(wrapper.generate(input_ids=ids, attention_mask=am, tenant_ids=["default"] * 3,
                                                    **kwargs),
                                   bare.generate(input_ids=ids, attention_mask=am, **kwargs))


def test_paper_layout_is_available_and_changes_the_model():
    bare, wrapper = _bare_and_wrapped("llama", gate="none", placement="start", normalize_input=False,
                                      token_scale="none")
    ids = torch.randint(3, VOCAB, (2, 6))
    inputs, batch = wrapper._prepare(ids, torch.ones_like(ids), None, None, None, None)
    assert batch.soft_mask[:, :4].all() and (inputs["attention_mask"] == 1).all()
    assert not torch.allclose(wrapper(input_ids=ids).logits, bare(input_ids=ids).logits, atol=1e-4)


def test_gates_open_with_training_and_generators_then_learn():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    opt = torch.optim.AdamW(wrapper.param_groups())
    ids, am, im, labels = copy_task(8, 0)
    for _ in range(3):
        loss = wrapper(input_ids=ids, attention_mask=am, instruction_mask=im, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    adapter = wrapper.adapters["default"]
    assert adapter.gates.abs().max() > 0
    assert adapter.generators[0].down.weight.grad.abs().max() > 0


def test_share_projections_option(tmp_path):
    wrapper = IAPTModel(tiny_llama(layers=3), bottleneck=8, share_projections=True)
    adapter = wrapper.adapters["default"]
    assert adapter.generators[2].down is adapter.generators[0].down
    separate = IAPTModel(tiny_llama(layers=3), bottleneck=8)
    count = lambda w: sum(p.numel() for p in w.trainable_parameters())  # noqa: E731
    per_layer_proj = 32 * 8 + 8 + 8 * 32 + 32
    assert count(separate) - count(wrapper) == 2 * per_layer_proj
    perturb(adapter, 3)
    ids = torch.randint(3, VOCAB, (2, 6))
    expected = wrapper(input_ids=ids).logits
    wrapper.save_pretrained(tmp_path / "shared")
    loaded = IAPTModel.from_pretrained(tiny_llama(layers=3), tmp_path / "shared")
    assert loaded.adapters["default"].generators[1].up is loaded.adapters["default"].generators[0].up
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)


# ---- optimisation defaults -----------------------------------------------------------------------

def test_param_groups_default_learning_rates():
    from fastprompt.methods.iapt import DEFAULT_LR, GATE_LR_SCALE

    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    wrapper.add_adapter("b")
    groups = wrapper.param_groups()
    assert [g["lr"] for g in groups] == [DEFAULT_LR, GATE_LR_SCALE * DEFAULT_LR]
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len(wrapper.trainable_parameters())
    assert {id(p) for p in params} == {id(p) for p in wrapper.trainable_parameters()}
    only_b = wrapper.param_groups(lr=1e-4, adapter_name="b")
    assert only_b[0]["lr"] == 1e-4 and only_b[1]["lr"] == GATE_LR_SCALE * 1e-4
    assert sum(len(g["params"]) for g in only_b) == len(params) // 2
    torch.optim.AdamW(wrapper.param_groups())  # just works


# ---- instruction masks, warnings and errors --------------------------------------------------------

def test_instruction_mask_from_labels_and_label_padding_values():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    perturb(wrapper.adapters["default"], 2)
    ids, am, im, labels = copy_task(4, 0)
    explicit = wrapper(input_ids=ids, attention_mask=am, instruction_mask=im, labels=labels)
    inferred = wrapper(input_ids=ids, attention_mask=am, labels=labels)  # -100 labels = the prompt
    torch.testing.assert_close(inferred.loss, explicit.loss)
    # an integer mask padded like labels (-100) is accepted: -100 counts as False
    padded = im.long().masked_fill(~im, -100)
    torch.testing.assert_close(wrapper(input_ids=ids, attention_mask=am, instruction_mask=padded,
                                       labels=labels).loss, explicit.loss)


def test_warning_when_labels_cover_everything_and_no_instruction_mask():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    ids = torch.randint(3, VOCAB, (2, 6))
    with pytest.warns(UserWarning, match="instruction_mask"):
        wrapper(input_ids=ids, labels=ids)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapper(input_ids=ids, labels=ids)  # once only


def test_errors_in_the_users_terms(tmp_path):
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    ids = torch.randint(3, VOCAB, (2, 6))
    with pytest.raises(ValueError, match=r"labels: expected shape \(2, 6\)"):
        wrapper(input_ids=ids, labels=ids[:, 1:])
    with pytest.raises(ValueError, match="labels: expected one row per input row"):
        wrapper(input_ids=ids, labels=ids[:1])
    with pytest.raises(ValueError, match="instruction_mask: rows \\[1\\]"):
        mask = torch.ones_like(ids, dtype=torch.bool)
        mask[1] = False
        wrapper(input_ids=ids, instruction_mask=mask)
    for call in (lambda: IAPTModel.from_pretrained(tiny_llama(), tmp_path / "nowhere"),
                 lambda: wrapper.load_adapter(tmp_path / "nowhere")):
        with pytest.raises(ValueError, match="directory: .*nowhere does not exist") as info:
            call()
        assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no fastprompt_config.json and no fastprompt_weights.safetensors"):
        wrapper.load_adapter(tmp_path / "empty")
    with pytest.raises(ValueError, match="placement"):
        IAPTModel(tiny_llama(), placement="middle")


def test_warnings_fp16_on_cpu_and_right_padded_generate():
    with pytest.warns(UserWarning, match="float16 on the CPU"):
        IAPTModel(tiny_llama().half(), bottleneck=8)
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    ids = torch.randint(3, VOCAB, (2, 6))
    am = torch.ones_like(ids)
    am[0, -2:] = 0
    with pytest.warns(UserWarning, match="right-padded"):
        wrapper.generate(input_ids=ids, attention_mask=am, max_new_tokens=2, do_sample=False, pad_token_id=0)


# ---- generate ------------------------------------------------------------------------------------

def test_generate_dict_output_and_max_length_counts_the_callers_tokens():
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    perturb(wrapper.adapters["default"], 3)
    ids = torch.randint(3, VOCAB, (2, 6))
    out = wrapper.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0,
                           return_dict_in_generate=True, output_scores=True)
    assert out.sequences.shape == (2, 10) and torch.equal(out.sequences[:, :6], ids)
    assert len(out.scores) == 4
    by_length = wrapper.generate(input_ids=ids, max_length=9, do_sample=False, pad_token_id=0)
    assert by_length.shape == (2, 9)
    torch.testing.assert_close(by_length, out.sequences[:, :9])


# ---- BERT family -----------------------------------------------------------------------------------

def test_bert_modules_to_save_train_and_round_trip(tmp_path):
    model = tiny_bert(num_labels=2)
    head_before = model.classifier.weight.clone()
    wrapper = IAPTModel(model, bottleneck=8, modules_to_save=["classifier"])
    names = {id(p) for p in wrapper.trainable_parameters()}
    saved = wrapper.adapters["default"].saved_modules["classifier"]
    assert all(id(p) in names for p in saved.parameters())
    opt = torch.optim.AdamW(wrapper.param_groups(lr=1e-2))
    ids = torch.randint(3, VOCAB, (8, 6))
    ids[:, 0] = 1
    labels = torch.randint(0, 2, (8,))
    for _ in range(3):
        loss = wrapper(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(saved.weight, head_before)
    assert torch.equal(model.classifier.original.weight, head_before)  # the backbone's own head stays frozen
    wrapper.eval()
    expected = wrapper(input_ids=ids).logits
    wrapper.save_pretrained(tmp_path / "cls")
    loaded = IAPTModel.from_pretrained(tiny_bert(num_labels=2), tmp_path / "cls")
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)


def test_bert_base_model_per_token_outputs_without_reserved_positions():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=128)
    bare = transformers.BertModel(cfg).eval()
    wrapper = IAPTModel(transformers.BertModel(cfg).eval(), bottleneck=8)
    wrapper.base_model.load_state_dict(bare.state_dict())
    ids = torch.randint(3, VOCAB, (2, 7))
    out = wrapper(input_ids=ids, output_hidden_states=True)
    want = bare(input_ids=ids, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 7, 32)
    assert len(out.hidden_states) == 3 and all(h.shape == (2, 7, 32) for h in out.hidden_states)
    torch.testing.assert_close(out.last_hidden_state, want.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.pooler_output, want.pooler_output, rtol=1e-5, atol=1e-5)


# ---- Trainer -----------------------------------------------------------------------------------------

def _trainer_args(tmp_path, max_steps, **extra):
    return trainer_args(tmp_path, max_steps, per_device_train_batch_size=4, learning_rate=1e-2,
                        save_strategy="steps", save_steps=2, lr_scheduler_type="linear", seed=0, data_seed=0,
                        dataloader_num_workers=0, **extra)


def test_trainer_resume_from_checkpoint_ends_where_an_uninterrupted_run_does(tmp_path):
    from fastprompt.methods import AdapterTrainer

    ids, am, im, labels = copy_task(16, 0)
    rows = [{"input_ids": ids[i], "attention_mask": am[i], "labels": labels[i]} for i in range(16)]

    class StopAt(transformers.TrainerCallback):  # an interruption after `step` steps
        def __init__(self, step):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= self.step:
                control.should_training_stop = True

    def run(folder, max_steps, resume=None, stop_at=None):
        wrapper = IAPTModel(tiny_llama(), bottleneck=8)
        torch.manual_seed(1)
        perturb(wrapper.adapters["default"], 1)
        trainer = AdapterTrainer(model=wrapper, args=_trainer_args(folder, max_steps), train_dataset=rows,
                              callbacks=[StopAt(stop_at)] if stop_at else None)
        trainer.train(resume_from_checkpoint=resume)
        return wrapper, trainer

    full, _ = run(tmp_path / "full", 4)
    _, first = run(tmp_path / "part", 4, stop_at=2)
    assert first.state.global_step == 2
    assert (tmp_path / "part" / "checkpoint-2" / "optimizer.pt").is_file()
    resumed, trainer = run(tmp_path / "part", 4, resume=str(tmp_path / "part" / "checkpoint-2"))
    assert trainer.state.global_step == 4
    for a, b in zip(full.trainable_parameters(), resumed.trainable_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the optimizer of the resumed run carries state from the first two steps
    assert trainer.optimizer.state_dict()["state"][0]["step"].item() == 4
    with pytest.raises(ValueError, match="resume_from_checkpoint"):
        run(tmp_path / "bad", 4, resume=str(tmp_path))


def test_trainer_with_the_stock_seq2seq_collator(tmp_path):
    """Instruction/response rows with -100 labels on the prompt need no instruction_mask, so
    transformers' own DataCollatorForSeq2Seq pads them (left padding here, as for generation)."""
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers builds the tiny word-level tokenizer")
    from fastprompt.methods import AdapterTrainer

    vocab = {"[PAD]": 0, "[UNK]": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", eos_token="</s>",
                                               unk_token="[UNK]", padding_side="left")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(12):
        prompt = torch.randint(3, 11, (3 + i % 3,), generator=gen).tolist()
        answer = [prompt[0] + 20, 2]
        rows.append({"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + 2),
                     "labels": [-100] * len(prompt) + answer})
    collator = transformers.DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    batch = collator(rows[:4])
    assert batch["input_ids"].shape == batch["labels"].shape
    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    trainer = AdapterTrainer(model=wrapper, args=_trainer_args(tmp_path, 3), train_dataset=rows, data_collator=collator)
    assert trainer.train().training_loss > 0


def test_unload_restores_the_backbone():
    bare = tiny_llama()
    wrapper = IAPTModel(tiny_llama(), bottleneck=8, modules_to_save=["lm_head"])
    perturb(wrapper.adapters["default"], 1)
    model = wrapper.unload()
    assert isinstance(model.lm_head, torch.nn.Linear)
    ids = torch.randint(3, VOCAB, (2, 6))
    torch.testing.assert_close(model(input_ids=ids).logits, bare(input_ids=ids).logits)
    assert model.model.layers[0].self_attn.config is model.config


def test_soft_tokens_match_the_reference_float64():
    from fastprompt.reference import iapt_soft_tokens_ref

    wrapper = IAPTModel(tiny_llama(), bottleneck=8)
    adapter = wrapper.adapters["default"].double()
    perturb(adapter, 6)
    hidden = torch.randn(3, 9, 32, dtype=torch.float64)
    hidden[:, 0] *= 100  # a massive first position, as an attention sink
    mask = torch.rand(3, 9) > 0.3
    mask[2] = False
    got = wrapper._generate_tokens([adapter], None, 1, hidden, mask)
    want = iapt_soft_tokens_ref(adapter.generators[1], hidden, mask)
    assert_close(got, want, torch.float64)


def test_causal_lm_loss_counts_every_label_like_the_bare_model():
    bare, wrapper = _bare_and_wrapped("llama")
    ids = torch.randint(3, VOCAB, (2, 7))
    # labels on every token: the second token's target is predicted from the first real token, not
    # from a reserved position
    torch.testing.assert_close(wrapper(input_ids=ids, labels=ids).loss, bare(input_ids=ids, labels=ids).loss,
                               rtol=1e-5, atol=1e-5)
