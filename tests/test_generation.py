"""Sampling rules (top-p as RWKV implements it, top-a, temperature, greedy) and the generation loop: prompt through
the parallel pass, then step mode with the state, equal to re-running the whole sequence in parallel; the end-of-text
token stops it (unless ignore_eos), and generate.py reports tokens/s on stderr (unless --quiet)."""
import json
import os
import re

import numpy as np
import paddle
import pytest
from helpers import SMALL_MODELS, small_model

from paddle_lrnn.convert import convert
from paddle_lrnn.generation import generate_ids, generate_text, sample_logits
from paddle_lrnn.models.rwkv2 import RWKV2Config, RWKV2ForCausalLM

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "rwkv2")


def probs_of(p):
    return np.log(np.asarray(p, dtype=np.float64))


def draws(logits, n=4000, **kw):
    rng = np.random.default_rng(0)
    return np.bincount([sample_logits(logits, rng, **kw) for _ in range(n)], minlength=len(logits)) / n


def test_top_p_keeps_the_token_that_crosses_the_threshold_and_its_ties():
    logits = probs_of([0.5, 0.3, 0.1, 0.1])
    freq = draws(logits, top_p=0.7)  # cumulative 0.5, 0.8: the 0.3 token crosses 0.7 and is kept
    assert freq[2] == 0 and freq[3] == 0 and freq[0] == pytest.approx(0.5 / 0.8, abs=0.03)
    freq = draws(logits, top_p=0.85)  # crosses at a 0.1 token: its tie is kept too
    assert (freq > 0).all()


def test_top_a_drops_tokens_below_a_times_pmax_squared():
    freq = draws(probs_of([0.6, 0.3, 0.06, 0.04]), top_a=0.2)  # threshold 0.2 * 0.36 = 0.072
    assert freq[2] == 0 and freq[3] == 0 and freq[1] > 0


def test_temperature_and_greedy():
    logits = probs_of([0.6, 0.4])
    assert sample_logits(logits, np.random.default_rng(0), temperature=0) == 0
    freq = draws(logits, temperature=0.5)  # p^(1/T): 0.36 vs 0.16
    assert freq[0] == pytest.approx(0.36 / 0.52, abs=0.03)
    with pytest.raises(ValueError, match="top_p"):
        sample_logits(logits, np.random.default_rng(0), top_p=0)


def test_greedy_generation_matches_the_parallel_pass():
    paddle.seed(0)
    model = RWKV2ForCausalLM(RWKV2Config(vocab_size=29, n_embd=32, n_layer=3, ctx_len=8))
    for p in model.parameters():
        p.set_value(p + paddle.randn(p.shape) * 0.3)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]  # longer than ctx_len: fed in chunks
    new = list(generate_ids(model, prompt, 12, temperature=0))
    seq = prompt + new
    logits = model(paddle.to_tensor([seq])).logits.numpy()[0]
    assert new == [int(np.argmax(logits[t])) for t in range(len(prompt) - 1, len(seq) - 1)]
    assert list(generate_ids(model, prompt, 12, seed=5)) == list(generate_ids(model, prompt, 12, seed=5))


@pytest.mark.slow
def test_generate_text_from_a_converted_checkpoint(tmp_path):
    out = str(tmp_path / "m")
    convert("rwkv2", os.path.join(FIXTURE, "rwkv2-small.pth"), out, vocab=os.path.join(FIXTURE, "vocab.json"),
            log=lambda *_: None)
    pieces = list(generate_text(out, "\nIn the", 30, seed=1))
    assert pieces[0] == "\nIn the" and len("".join(pieces[1:])) == 30
    with pytest.raises(ValueError, match=r"'\$' \(U\+0024\) at line 1, column 3"):
        next(generate_text(out, "10$", 5))


# ------------------------------------------------------------------------------------------- tokenizers and the end
def model_with_tokenizer(tmp_path):
    """A small random RWKV-v2 model saved with a Unigram tokenizer ("▁" for spaces, "</s>" ends text; no byte
    tokens, so that random weights never make invalid UTF-8, which a whole decode and a stream may replace
    differently)."""
    from paddle_lrnn.data import load_vocab
    from tokenizer_files import unigram_dir

    vocab = load_vocab(unigram_dir(str(tmp_path / "tok")))
    paddle.seed(1)
    model = RWKV2ForCausalLM(RWKV2Config(vocab_size=vocab.vocab_size, n_embd=16, n_layer=1, ctx_len=16))
    for p in model.parameters():
        p.set_value(p + paddle.randn(p.shape) * 0.5)
    out = tmp_path / "model"
    model.save_pretrained(str(out))
    vocab.save(str(out))
    return out, vocab


def test_generation_stops_at_the_end_of_text_token(tmp_path):
    out, vocab = model_with_tokenizer(tmp_path)
    prompt = "Once upon a time"
    model = RWKV2ForCausalLM.from_pretrained(str(out))
    tokens = list(generate_ids(model, vocab.encode(prompt).tolist(), 12, temperature=0))
    stats = {}
    text = "".join(generate_text(str(out), prompt, 12, temperature=0, ignore_eos=True, stats=stats))
    prompt_ids = vocab.encode(prompt).tolist()

    def continuation(new):  # the text the new tokens add after the prompt's (a leading space kept)
        return vocab.decode(prompt_ids + new)[len(vocab.decode(prompt_ids)):]

    assert text == prompt + continuation(tokens)
    assert stats["prompt_tokens"] == len(vocab.encode(prompt)) and stats["decode_tokens"] == 11
    assert not stats["stopped_at_eos"] and stats["prompt_seconds"] > 0 and stats["decode_seconds"] > 0
    # make a token the model generates the end of text: generation stops before printing it
    k = 3
    eos = vocab.tokenizer.id_to_token(tokens[k])
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["eos_token"] = eos
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    stats = {}
    text = "".join(generate_text(str(out), prompt, 12, temperature=0, stats=stats))
    first = tokens.index(tokens[k])
    assert text == prompt + continuation(tokens[:first]) and stats["stopped_at_eos"]
    assert "".join(generate_text(str(out), prompt, 12, temperature=0, ignore_eos=True)) == \
        prompt + continuation(tokens)


def test_generate_tool_reports_speed_on_stderr(tmp_path, capsys):
    import importlib.util

    out, vocab = model_with_tokenizer(tmp_path)
    spec = importlib.util.spec_from_file_location("tools_generate", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "generate.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--model-dir", str(out), "--prompt", "It is", "--length", "5", "--temperature", "0", "--ignore-eos"])
    captured = capsys.readouterr()
    assert captured.out.startswith("It is") and captured.err.count("\n") == 1
    assert re.fullmatch(r"prompt: \d+ tokens in \d+\.\d{3} s \([\d,.]+ tokens/s\); decode: 4 tokens in \d+\.\d{3} s "
                        r"\([\d,.]+ tokens/s\)\n", captured.err)
    tool.main(["--model-dir", str(out), "--prompt", "It is", "--length", "5", "--quiet"])
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------- batched generation
PROMPTS = [[3], [5, 1, 4, 1, 5], [2, 6, 5, 3, 5, 8, 1, 7, 4]]  # lengths 1, 5 and 9: past every small model's window
LENGTH = 8


def weights_as(model, fmt):
    """The model with its matrices in `fmt`: "float32" as it is, "bfloat16" cast, "int8" quantized."""
    from paddle_lrnn.models.quantization import quantize_int8_

    if fmt == "bfloat16":
        model.to(dtype="bfloat16")
        model._fused_weights = None
    elif fmt == "int8":
        quantize_int8_(model)
    return model


def top_margin(model, prompt, new):
    """The smallest gap between the two largest logits at the positions that chose `new` (greedy)."""
    with paddle.no_grad():
        logits = model(paddle.to_tensor([prompt + new[:-1]])).logits.numpy()[0, len(prompt) - 1:]
    top = np.sort(logits, axis=-1)[:, -2:]
    return (top[:, 1] - top[:, 0]).min()


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("family", list(SMALL_MODELS))
def test_a_batch_of_prompts_generates_what_each_prompt_generates_alone(family, fmt):
    model = weights_as(small_model(family, seed=4), fmt)
    vocab = model.config.vocab_size
    prompts = [[t % vocab for t in p] for p in PROMPTS]
    penalties = {"alpha_presence": 0.5, "alpha_frequency": 0.3, "token_ban": [0]}  # (counted per row)
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "top_p": 0.9}, {"temperature": 0.8, **penalties}):
        seeds = [11, 12, 13]
        # (seeds as a numpy array once: one generator per row too, not one seeded with the whole array)
        batched = list(generate_ids(model, prompts, LENGTH, seed=np.array(seeds) if "top_p" in sampling else seeds,
                                    **sampling))
        assert len(batched) == LENGTH and all(len(step) == len(prompts) for step in batched)
        rows = [[step[r] for step in batched] for r in range(len(prompts))]
        alone = [list(generate_ids(model, p, LENGTH, seed=s, **sampling)) for p, s in zip(prompts, seeds)]
        # float32 rows may round differently in a batched product than alone (16-bit and int8 products never do):
        # equal tokens, where greedy's choices are not near ties
        if fmt == "float32" and sampling["temperature"] == 0:
            assert min(top_margin(model, p, a) for p, a in zip(prompts, alone)) > 1e-3
        assert rows == alone, sampling
    # one int seed: every row samples as it would alone with that seed
    batched = list(generate_ids(model, prompts, 4, seed=7))
    assert [[step[r] for step in batched] for r in range(3)] == [list(generate_ids(model, p, 4, seed=7))
                                                                    for p in prompts]


def test_rows_whose_states_cannot_share_a_batch_are_decoded_apart(monkeypatch):
    """MRU's attention keeps one position for all rows: prompts of different lengths are decoded in separate calls,
    those of one length together."""
    from helpers import count_calls

    model = small_model("mru", seed=4)
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11]]
    calls = count_calls(monkeypatch, type(model), "forward")
    steps = list(generate_ids(model, prompts, 3, temperature=0))
    assert len(calls) == 2 + 2 * 2  # two prompt groups, then two decoding calls per step after the first
    assert [[s[r] for s in steps] for r in range(3)] == [list(generate_ids(model, p, 3, temperature=0))
                                                         for p in prompts]


def test_batch_arguments_are_checked():
    model = small_model("rwkv4")
    with pytest.raises(ValueError, match=r"seed: 2 seeds for 3 prompts; give one per prompt, or one int"):
        next(generate_ids(model, [[1], [2, 3], [4]], 2, seed=[1, 2]))
    with pytest.raises(ValueError, match=r"the prompt must contain at least one token \(in every row\)"):
        next(generate_ids(model, [[1], [], [4]], 2))
    with pytest.raises(ValueError, match=r"the prompt must contain at least one token$"):
        next(generate_ids(model, [], 2))
