"""The demo's quick path (`python -m fastprompt.demo --quick`: two steps per method, eight held-out
examples) on tiny random stand-ins for SmolLM2 and MiniLM (a word-level tokenizer with a chat
template), so that the demo cannot rot; every method of both parts runs through its real code."""
import torch

from conftest import require

transformers = require("transformers")
for _module in ("peft", "datasets", "tqdm"):
    require(_module)

from test_data import WORDS, word_tokenizer  # noqa: E402


def tiny_smollm2(with_tokenizer=True, dtype=None):
    tok = word_tokenizer()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
                                   eos_token_id=tok.eos_token_id)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return (model, tok) if with_tokenizer else model


def tiny_minilm(head="base", num_labels=2, with_tokenizer=True):
    tok = word_tokenizer(chat_template=False, padding_side="right", bert=True)
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, num_labels=num_labels)
    model = transformers.BertForSequenceClassification(cfg).eval()
    return (model, tok) if with_tokenizer else model


def test_demo_quick_path_runs_every_method(monkeypatch, capsys, one_thread):
    import fastprompt.models
    from fastprompt import demo

    assert {"positive", "negative"} <= set(WORDS)
    monkeypatch.setattr(fastprompt.models, "load_smollm2", tiny_smollm2)
    monkeypatch.setattr(fastprompt.models, "load_minilm", tiny_minilm)
    results = demo.main(["--quick", "--no-progress"])
    printed = capsys.readouterr().out
    assert [r.method for r in results["decoder"]] == ["IAPT", "prompt tuning", "LoRA (PEFT)"]
    assert [r.method for r in results["encoder"]] == ["prompt tuning", "EPT", "LoRA (PEFT)"]
    for r in results["decoder"] + results["encoder"]:
        assert r.trainable > 0 and r.seconds_per_step > 0 and r.peak_bytes > 0 and 0 <= r.accuracy <= 1
        assert len(r.losses) == 2 and all(l == l for l in r.losses)  # no NaN
    assert printed.count("| method") == 2 and "held-out accuracy" in printed and "before" in printed
