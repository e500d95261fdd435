"""Generation with RWKV-4 as ChatRWKV's RWKV-4 pipeline samples: top-p (RWKV's rule), top-k, the presence and
frequency penalties on the tokens generated so far, banned tokens; greedy decoding equal to a transcription of
that pipeline's loop over the parallel pass; and text from a converted checkpoint through tools/generate.py."""
import os

import numpy as np
import paddle
import pytest
from helpers import run_tool

from paddle_lrnn.convert import convert
from paddle_lrnn.data import CharVocab, load_vocab
from paddle_lrnn.generation import generate_ids, sample_logits
from paddle_lrnn.models.rwkv4 import RWKV4Config, RWKV4ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def model():
    paddle.seed(0)
    m = RWKV4ForCausalLM(RWKV4Config(vocab_size=23, n_embd=32, n_layer=2, ctx_len=8))
    for p in m.parameters():
        p.set_value(p + paddle.randn(p.shape) * 0.3)
    m.eval()
    return m


def test_top_k_keeps_the_k_most_probable():
    logits = np.log([0.4, 0.3, 0.2, 0.1])
    rng = np.random.default_rng(0)
    freq = np.bincount([sample_logits(logits, rng, top_k=2) for _ in range(3000)], minlength=4) / 3000
    assert freq[2] == 0 and freq[3] == 0 and freq[0] == pytest.approx(0.4 / 0.7, abs=0.03)
    assert sample_logits(logits, rng, top_k=1) == 0
    with pytest.raises(ValueError, match="top_k must be an integer >= 0"):
        sample_logits(logits, rng, top_k=-1)


def pipeline_greedy(model, prompt, length, alpha_presence, alpha_frequency, token_ban):
    """ChatRWKV's PIPELINE.generate loop, greedy: logits of the whole sequence so far, banned tokens to -inf, the
    penalties of the generated tokens subtracted, argmax."""
    seq, occurrence = list(prompt), {}
    for _ in range(length):
        out = model(paddle.to_tensor([seq])).logits.numpy()[0, -1].astype(np.float64)
        out[token_ban] = -np.inf
        for token, n in occurrence.items():
            out[token] -= alpha_presence + n * alpha_frequency
        token = int(np.argmax(out))
        occurrence[token] = occurrence.get(token, 0) + 1
        seq.append(token)
    return seq[len(prompt):]


@pytest.mark.parametrize("presence,frequency,ban", [(0.0, 0.0, []), (0.4, 0.3, [0, 5]), (50.0, 0.0, [])])
def test_greedy_with_penalties_and_bans_is_the_pipelines(model, presence, frequency, ban):
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]  # longer than ctx_len: fed in chunks
    got = list(generate_ids(model, prompt, 15, temperature=0, alpha_presence=presence, alpha_frequency=frequency,
                            token_ban=ban))
    assert got == pipeline_greedy(model, prompt, 15, presence, frequency, ban)
    assert not set(got) & set(ban)
    if presence == 50.0:
        assert len(set(got)) == len(got)  # a large presence penalty: no token twice


def test_banned_and_bad_settings_are_refused(model):
    with pytest.raises(ValueError, match=r"token_ban holds ids outside the vocabulary \[0, 23\): \[23\]"):
        list(generate_ids(model, [1], 3, token_ban=[23]))
    with pytest.raises(ValueError, match="alpha_frequency must be a finite number"):
        list(generate_ids(model, [1], 3, alpha_frequency=float("nan")))


@pytest.mark.slow  # tools as processes
def test_generate_tool_on_a_converted_checkpoint(tmp_path):
    """The RWKV-4 fixture (97 ids) converted and given a vocabulary of 97 characters; the tool samples from it with
    ChatRWKV's settings."""
    out = tmp_path / "m"
    convert("rwkv4", os.path.join(HERE, "fixtures", "rwkv4", "rwkv4-small.pth"), str(out), log=lambda *_: None)
    CharVocab([chr(c) for c in range(32, 32 + 96)] + ["\n"]).save(str(out))
    assert load_vocab(str(out)).vocab_size == 97
    result = run_tool("generate", "--model-dir", out, "--prompt", "The", "--length", 20, "--top-p", 0.85, "--top-k", 5,
                      "--presence-penalty", 0.2, "--frequency-penalty", 0.2, "--ban", 0, "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The") and len(result.stdout.rstrip("\n")) >= 3 + 20 - 1


def released_layout_checkpoint(folder, vocab_size, seed):
    """A random RWKV-4 checkpoint (.pth, the released layout) of `vocab_size` rows in `folder`."""
    from paddle_lrnn.convert import converter
    from paddle_lrnn.models.modeling_utils import skip_init

    paddle.seed(seed)
    with skip_init():
        model = RWKV4ForCausalLM(RWKV4Config(vocab_size=vocab_size, n_embd=16, n_layer=2))
    for p in model.parameters():
        p.set_value(paddle.randn(p.shape) * 0.3)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "RWKV-4-test-20230101-ctx512.pth")
    converter("rwkv4").to_torch(model, path)
    return path


@pytest.mark.slow  # tools as processes
@pytest.mark.parametrize("tokenizer", ["20B", "World"])
def test_convert_and_generate_with_the_released_tokenizers(tmp_path, tokenizer):
    """A checkpoint folder as released: the .pth beside its tokenizer (GPT-NeoX's 20B_tokenizer.json for the Pile
    and Raven models, the World vocabulary for World models, whose 65536 embedding rows pad its 65530 ids). The
    converter carries the tokenizer, which then encodes as the original does, and the tools generate from it."""
    from tokenizer_files import UNICODE_TEXT, neox_json

    folder = tmp_path / "release"
    if tokenizer == "20B":
        tokenizer_path = neox_json(str(folder / "20B_tokenizer.json"))
        from tokenizers import Tokenizer

        expected = Tokenizer.from_file(tokenizer_path).encode(UNICODE_TEXT).ids
        rows = Tokenizer.from_file(tokenizer_path).get_vocab_size()
    else:
        world = os.path.join(HERE, "fixtures", "tokenizers", "world")
        os.makedirs(folder)
        with open(os.path.join(world, "rwkv_vocab_subset.txt"), "rb") as f:  # the released file's name
            (folder / "rwkv_vocab_v20230424.txt").write_bytes(f.read())
        import json

        expected = json.load(open(os.path.join(world, "ids.json")))["unicode"]  # RWKV-LM's TRIE_TOKENIZER
        rows = 65536
    pth = released_layout_checkpoint(str(folder), rows, seed=1)
    out = tmp_path / "converted"
    result = run_tool("convert", "--model", "rwkv4", "--src", pth, "--out", out)
    assert result.returncode == 0, result.stderr
    assert load_vocab(str(out)).encode(UNICODE_TEXT).tolist() == expected
    model = RWKV4ForCausalLM.from_pretrained(str(out))
    assert (model.config.vocab_size, model.config.ctx_len) == (rows, 512)
    result = run_tool("generate", "--model-dir", out, "--prompt", "It is a truth", "--length", 12, "--top-p", 0.85,
                  "--presence-penalty", 0.2, "--frequency-penalty", 0.2, "--ignore-eos", "--seed", 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("It is a truth") and "decode: 11 tokens" in result.stderr
