"""Tokenizers against their originals on a Unicode-heavy text (tests/fixtures/tokenizers/unicode.txt): Hugging Face
tokenizer.json files in the published shapes (GPT-NeoX's 20B, Llama-2's byte-fallback BPE, a Unigram) against the
`tokenizers` library and transformers; GPT-2's vocab.json + merges.txt against transformers' GPT2TokenizerFast and
the ids the former hand-written BPE gave; RWKV's World vocabulary against ids made by RWKV-LM's own tokenizer;
mru-lm's cut-down tokenizer; streaming decoding; corpus blocks; conversion carrying the tokenizer."""
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

import paddle_lrnn.data as D
import tokenizer_files as T
from paddle_lrnn.data.hf_tokenizer import TokenStreamDecoder

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "tokenizers")
MRU_FIX = os.path.join(HERE, "fixtures", "mru")
TEXT = T.UNICODE_TEXT
SHORT_TEXTS = ["", " ", "  two leading", "\n", "trailing  ", "中", "🙂", "e\u0301", "\r\n\r\n", "a<|endoftext|>b"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Tokenizer folders in the published shapes, made once for the module."""
    d = tmp_path_factory.mktemp("tokenizers")
    return {"neox": T.neox_json(str(d / "neox" / "20B_tokenizer.json")), "llama": T.llama_dir(str(d / "llama")),
            "llama-eos": T.llama_dir(str(d / "llama-eos"), add_eos=True), "unigram": T.unigram_dir(str(d / "uni"))}


def transformers_tokenizer(path):
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if os.path.isfile(path):  # a bare tokenizer.json, as RWKV-4's code loads 20B_tokenizer.json
            return transformers.PreTrainedTokenizerFast(tokenizer_file=path)
        # transformers 5's AutoTokenizer rebuilds a LlamaTokenizer's pipeline from its vocabulary (a prepended "▁"
        # only where the text does not start with a space), where the tokenizer.json, sentencepiece and
        # transformers 4 prepend one always; the generic class reads the tokenizer.json as it is
        return transformers.PreTrainedTokenizerFast.from_pretrained(path)


def library(path):
    return Tokenizer.from_file(path if os.path.isfile(path) else os.path.join(path, "tokenizer.json"))


# ---------------------------------------------------------------------------------------------------------- hf
@pytest.mark.parametrize("name", ["neox", "llama", "llama-eos", "unigram"])
def test_tokenizer_json_ids_equal_the_library_and_transformers(made, name):
    path = made[name]
    v = D.load_vocab(path)
    assert v.kind == "hf" and v.unit == "token"
    lib, hf = library(path), transformers_tokenizer(path)
    for text in [TEXT, *SHORT_TEXTS]:
        ids = v.encode(text).tolist()
        assert ids == lib.encode(text).ids, (name, text)
        assert ids == hf.encode(text), (name, text)
    if os.path.isdir(path):  # a bare file names no end of text for transformers (test_20b_shape_bare_file)
        assert v.eot_id == hf.eos_token_id
    assert v.vocab_size == len(hf)
    if name.startswith("llama"):
        ids = v.encode(" Hello")
        assert ids[0] == hf.bos_token_id and (ids[-1] == hf.eos_token_id) == (name == "llama-eos")
    assert v.decode(lib.encode(TEXT, add_special_tokens=False).ids) == lib.decode(lib.encode(TEXT).ids)


def test_20b_shape_bare_file(made):
    v = D.load_vocab(made["neox"])
    spec = json.loads(v.files["tokenizer.json"])
    assert spec["normalizer"]["type"] == "NFC" and v.eot_token == "<|endoftext|>" and v.eot_id == 0
    assert v.encode("e\u0301").tolist() == v.encode("\u00e9").tolist()  # NFC
    assert v.decode(v.encode(TEXT)) == TEXT.replace("e\u0301", "\u00e9").replace("A\u030a", "\u00c5")
    spaces = v.tokenizer.token_to_id(" " * 24)
    assert v.encode("x" + " " * 24 + "y").tolist()[1] == spaces  # the added runs of spaces


def test_tokenizer_config_decides_bos_and_eos(made, tmp_path):
    base = made["llama"]
    lib_ids = library(base).encode(TEXT, add_special_tokens=False).ids

    def variant(name, config=None, smap=None):
        d = tmp_path / name
        shutil.copytree(base, d)
        if config is not None:
            cfg = json.loads((d / "tokenizer_config.json").read_text())
            cfg.update(config)
            (d / "tokenizer_config.json").write_text(json.dumps(cfg))
        if smap is not None:
            (d / "special_tokens_map.json").write_text(json.dumps(smap))
        return D.load_vocab(d)

    # explicit add_bos_token / add_eos_token decide, whatever the tokenizer.json's template (transformers 4's rule)
    assert variant("eos", {"add_eos_token": True}).encode(TEXT).tolist() == [1, *lib_ids, 2]
    assert variant("none", {"add_bos_token": False}).encode(TEXT).tolist() == lib_ids
    # without the flags, the tokenizer.json's post-processor ("<s> $A")
    variant("noflags")
    cfg = json.loads((tmp_path / "noflags" / "tokenizer_config.json").read_text())
    del cfg["add_bos_token"], cfg["add_eos_token"]
    (tmp_path / "noflags" / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert D.load_vocab(tmp_path / "noflags").encode(TEXT).tolist() == [1, *lib_ids]
    # special_tokens_map.json names the end of text over tokenizer_config.json (no added_tokens_decoder)
    assert variant("smap", smap={"eos_token": {"content": "<unk>"}}).eot_id == 0
    assert variant("decoder", {"added_tokens_decoder": {}}, smap={"eos_token": "<unk>"}).eot_id == 2
    with pytest.raises(D.DataError, match=r"adds the token '<eot>', which is not in the tokenizer"):
        variant("missing", {"add_eos_token": True, "eos_token": "<eot>"}, smap={})


def test_truncation_in_the_file_is_ignored(made, tmp_path):
    spec = json.loads(open(made["neox"], encoding="utf-8").read())
    spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    p = tmp_path / "truncating.json"
    p.write_text(json.dumps(spec), encoding="utf-8")
    assert D.load_vocab(p).encode(TEXT).tolist() == D.load_vocab(made["neox"]).encode(TEXT).tolist()
    assert len(D.load_vocab(p).encode(TEXT)) > 8


# ---------------------------------------------------------------------------------------------------------- GPT-2
def test_gpt2_ascii_ids_equal_the_former_implementation():
    """ids recorded from the hand-written BPE this library replaced (fixtures/tokenizers/make_gpt2_ids.py)."""
    v = D.load_vocab(os.path.join(FIX, "gpt2"))
    old = np.load(os.path.join(FIX, "gpt2", "old_ids.npz"))
    text = T.austen(50_000)
    assert text.isascii() and isinstance(v, D.Gpt2Vocab)
    np.testing.assert_array_equal(v.encode(text), old["text"])
    np.testing.assert_array_equal(v.encode_lines(text.split("\n"))[0], old["lines"])
    np.testing.assert_array_equal(v.encode(TEXT), old["unicode"])  # and on this Unicode text too


def test_gpt2_files_equal_transformers_gpt2_tokenizer():
    transformers = pytest.importorskip("transformers")
    d = os.path.join(FIX, "gpt2")
    hf = transformers.GPT2TokenizerFast(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
    v = D.load_vocab(d)
    for text in [TEXT, *SHORT_TEXTS]:
        assert v.encode(text).tolist() == hf.encode(text), text
    assert v.eot_id == hf.eos_token_id and v.vocab_size == len(hf) == 1000
    assert v.decode(v.encode(TEXT)) == TEXT


# ---------------------------------------------------------------------------------------------------------- World
def world():
    return D.load_vocab(os.path.join(FIX, "world", "rwkv_vocab_subset.txt"))


def test_world_ids_equal_the_original():
    """ids from RWKV-LM's TRIE_TOKENIZER (fixtures/tokenizers/make_world_ids.py) on the full 65529-entry file; the
    subset file holds the lines that text can match, so it gives the same ids."""
    ref = json.load(open(os.path.join(FIX, "world", "ids.json")))
    v = world()
    assert isinstance(v, D.WorldVocab) and v.vocab_size == 65530 and v.eot_id == 0 and v.max_len == 128
    ids = v.encode(TEXT)
    assert ids.tolist() == ref["unicode"] == ref["unicode_subset"]
    assert ref["decoded_ok"] and v.decode(ids) == TEXT
    assert v.decode([0]) == ""
    spaces = v.encode(" " * 300)  # the longest entry, 128 spaces, twice, then shorter runs
    assert spaces[:2].tolist() == [65529, 65529] and 65529 not in spaces[2:] and v.decode(spaces) == " " * 300


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=8))
def test_world_blocks_encode_as_one_call(cuts):
    v = world()
    text = TEXT * 2
    blocks, start = [], 0
    for c in cuts:
        blocks.append(text[start:start + c])
        start += c
    blocks.append(text[start:])
    assert np.concatenate(list(v.encode_blocks(blocks))).tolist() == v.encode(text).tolist()


def test_world_save_load_and_stream(tmp_path):
    v = world()
    v.save(tmp_path / "w")
    assert (tmp_path / "w" / "rwkv_vocab_subset.txt").read_bytes() == \
        open(os.path.join(FIX, "world", "rwkv_vocab_subset.txt"), "rb").read()
    assert D.load_vocab(tmp_path / "w") == v
    ids = v.encode("中文🙂")
    dec = v.decoder()
    assert "".join(dec.decode([i]) for i in ids) + dec.flush() == "中文🙂"


@pytest.mark.parametrize("line,why", [
    ("12", "three fields"), ("x 'a' 1", "id is not an integer"), ("5 __import__('os').system('true') 1",
                                                                   "not a Python str or bytes literal"),
    ("5 'ab' 3", "has 2 bytes, the line says 3"), ("5 'a' one", "length is not an integer"), ("5 3 1", "non-empty str"),
])
def test_world_malformed_lines(tmp_path, line, why):
    p = tmp_path / "rwkv_vocab_bad.txt"
    p.write_text("1 '\\x00' 1\r\n2 'a' 1\r\n" + line + "\r\n", encoding="utf-8")
    with pytest.raises(D.DataError, match=rf"rwkv_vocab_bad\.txt: line 3 is not a World vocabulary entry .*{why}"):
        D.load_vocab(p)


# ---------------------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("name", ["llama", "neox"])
def test_streaming_prints_only_whole_characters(made, name):
    v = D.load_vocab(made[name])
    lib = library(made[name])
    # a character the tokenizer spells with several tokens (byte fallback <0xF0><0x9F>... or byte-level pieces)
    ids = lib.encode("x 𝔘🙂", add_special_tokens=False).ids
    assert len(ids) > 3
    dec = v.decoder()
    pieces = [dec.decode([i]) for i in ids] + [dec.flush()]
    assert "".join(pieces) == v.decode(ids) and "\ufffd" not in "".join(pieces)
    for p in pieces:  # no piece ends inside a character: each is valid on its own
        assert p.encode("utf-8").decode("utf-8") == p
    assert pieces.count("") >= 2  # the 4-byte characters waited for their last byte
    # a stream that ends inside a character keeps what it printed and gives the rest as the library decodes those
    # ids (U+FFFDs), even where the library would turn a whole run of byte tokens into U+FFFDs
    head = lib.encode("x 𝔘", add_special_tokens=False).ids
    assert ids[:len(head)] == head
    dec = v.decoder()
    tail = ids[len(head):-1]  # the last character without its last token
    assert "".join(dec.decode([i]) for i in ids[:-1]) + dec.flush() == v.decode(head) + v.decode(tail)


def test_streaming_keeps_a_whole_character_before_an_incomplete_one(made):
    """Two characters spelled in byte tokens, the stream cut inside the second: the first was printed whole, the
    second's three bytes become three U+FFFDs (the library decodes the seven bytes as seven)."""
    v, lib = D.load_vocab(made["llama"]), library(made["llama"])
    ids = [lib.token_to_id("x")] + [lib.token_to_id(f"<0x{b:02X}>") for b in "𝔘🙂".encode()]
    dec = v.decoder()
    pieces = [dec.decode([i]) for i in ids[:-1]]
    assert pieces[4] == "𝔘" and pieces[5:] == ["", "", ""]
    assert "".join(pieces) + dec.flush() == "x𝔘" + "\ufffd" * 3
    assert v.decode(ids[:-1]) == "x" + "\ufffd" * 7


def test_stream_decoder_keeps_a_short_window():
    calls = []

    def decode(ids):
        calls.append(len(ids))
        return "".join(chr(97 + i) for i in ids)

    dec = TokenStreamDecoder(decode)
    assert "".join(dec.decode([i % 26]) for i in range(1000)) == "".join(chr(97 + i % 26) for i in range(1000))
    assert max(calls) <= 2


# ---------------------------------------------------------------------------------------------------------- corpora
def test_corpus_blocks(made, tmp_path):
    text = T.austen(20_000) + TEXT.replace("\r\n", "\n").replace("\x85", " ").replace("\u2028", " ")
    neox, llama = D.load_vocab(made["neox"]), D.load_vocab(made["llama"])
    blocks = [text[i:i + 700] for i in range(0, len(text), 700)]
    # byte-level: cut only where GPT-2's pattern cuts, so the ids equal one call on the whole text
    assert np.concatenate(list(neox.encode_blocks(blocks))).tolist() == neox.encode_list(text)
    # SentencePiece-style: one line at a time (each line a new text with its own "▁" in front)
    expect = [i for line in text.splitlines(keepends=True) for i in llama.encode_list(line)]
    assert np.concatenate(list(llama.encode_blocks(blocks))).tolist() == expect
    p = tmp_path / "text.txt"
    p.write_text(text, encoding="utf-8")
    c = D.load_corpus(p, made["neox"], cache_dir=tmp_path / "cache", block_bytes=500)
    assert c.vocab.kind == "hf" and c.unit == "token"
    whole = np.concatenate([c.train, c.valid, c.test])
    assert whole.tolist() == neox.encode_list(text)


# ---------------------------------------------------------------------------------------------------------- mru-lm
def cut_down_dir(tmp_path, text, size):
    """mru-lm's tokenizer folder: GPT-2-style files as transformers saves them (mru-lm's save_pretrained) and
    inverted_id_map.pt, the base ids of `text` in first-seen order then others up to `size` ids."""
    transformers = pytest.importorskip("transformers")
    d = tmp_path / "tokenizer"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = transformers.GPT2TokenizerFast(os.path.join(FIX, "gpt2", "vocab.json"),
                                              os.path.join(FIX, "gpt2", "merges.txt"))
        base.save_pretrained(str(d))
    seen = list(dict.fromkeys(base.encode(text) + [base.eos_token_id]))
    inv = np.array(seen + [i for i in range(len(base)) if i not in seen][:size - len(seen)], np.int64)
    np.random.default_rng(0).shuffle(inv)  # numpy.unique(sorted=False) gives no particular order
    try:
        import torch
        torch.save(torch.from_numpy(inv), str(d / "inverted_id_map.pt"))
    except ImportError:
        from paddle_lrnn.io import save_torch_checkpoint
        save_torch_checkpoint(str(d / "inverted_id_map.pt"), inv)
    return d, base, inv


def test_cut_down_tokenizer_as_mru_lm(tmp_path):
    text = "Once upon a time, there was a little cat. The cat said: “hello”!"
    d, base, inv = cut_down_dir(tmp_path, text, 59)
    v = D.load_vocab(d)
    assert isinstance(v, D.CutDownVocab) and v.vocab_size == 59
    id_map = np.full(len(base), -1)
    id_map[inv] = np.arange(len(inv))  # CutDownTokenizer.reduce_ids
    ids = v.encode(text)
    assert ids.tolist() == id_map[base.encode(text)].tolist()
    assert v.decode(ids) == base.decode(inv[ids].tolist(), skip_special_tokens=True) == text
    assert v.eot_id == id_map[base.eos_token_id] and v.decode([v.eot_id]) == ""
    with pytest.raises(D.DataError, match=r"the text piece 'Z' .* is not in the cut-down vocabulary .* keeps 59 of"):
        v.encode("Z")
    v.save(tmp_path / "saved")
    assert D.load_vocab(tmp_path / "saved") == v
    assert D.load_vocab(d / "inverted_id_map.pt") == v


def test_mru_conversion_carries_the_cut_down_tokenizer(tmp_path):
    from paddle_lrnn.convert import convert
    from paddle_lrnn.generation import generate_text

    text = "Once upon a time there was a cat."
    d, _, _ = cut_down_dir(tmp_path, text, 59)
    run = tmp_path / "train-1"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(os.path.join(MRU_FIX, "model.json"), run)
    shutil.copy(os.path.join(MRU_FIX, "checkpoint-step-100.pt"), run / "checkpoints")
    out = tmp_path / "converted"
    convert("mru", str(run / "checkpoints" / "checkpoint-step-100.pt"), str(out), vocab=str(d), log=lambda *_: None)
    v = D.load_vocab(out)
    assert isinstance(v, D.CutDownVocab) and v == D.load_vocab(d)
    assert sorted(os.listdir(out)) == sorted(["config.json", "model.safetensors", "paddle_lrnn_vocab.json",
                                              "inverted_id_map.pt", "tokenizer.json", "tokenizer_config.json",
                                              *[n for n in os.listdir(d) if n not in ("inverted_id_map.pt",)
                                                and n in ("special_tokens_map.json", "vocab.json", "merges.txt")]])
    pieces = list(generate_text(str(out), "Once upon", 5, temperature=0, ignore_eos=True))
    assert pieces[0] == "Once upon" and len(pieces) == 7
    # the tokenizer files in the run folder (above checkpoints/) are found without --vocab
    for n in os.listdir(d):
        shutil.copy(d / n, run)
    convert("mru", str(run / "checkpoints" / "checkpoint-step-100.pt"), str(tmp_path / "found"), log=lambda *_: None)
    assert D.load_vocab(tmp_path / "found") == v


# ---------------------------------------------------------------------------------------------------------- conversion
def test_conversion_carries_a_checkpoints_own_tokenizer(made, tmp_path):
    """An fla-hub-style HGRN2 folder with Llama-2-style tokenizer files: the converted folder holds them unchanged,
    Hugging Face tools read them as before, and load_vocab gives the same ids."""
    from paddle_lrnn.convert import convert
    from paddle_lrnn.models.hgrn2 import HGRN2Config, HGRN2ForCausalLM

    size = D.load_vocab(made["llama"]).vocab_size
    model = HGRN2ForCausalLM(HGRN2Config(vocab_size=size + 4, hidden_size=16, num_hidden_layers=1, num_heads=2,
                                         expand_ratio=8))
    model.save_pretrained(str(tmp_path / "paddle"))
    src = tmp_path / "fla"
    convert("hgrn2", str(tmp_path / "paddle"), str(src), to="torch", log=lambda *_: None)
    for n in os.listdir(made["llama"]):
        shutil.copy(os.path.join(made["llama"], n), src)
    out = tmp_path / "out"
    convert("hgrn2", str(src), str(out), log=lambda *_: None)
    for n in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out / n).read_bytes() == (src / n).read_bytes()
    assert D.load_vocab(out) == D.load_vocab(made["llama"])
    hf = transformers_tokenizer(str(out))
    assert hf.encode(TEXT) == D.load_vocab(out).encode(TEXT).tolist()
    # --vocab names one elsewhere: a bare tokenizer.json, stored as tokenizer.json
    out2 = tmp_path / "out2"
    convert("hgrn2", str(src), str(out2), vocab=made["unigram"] + "/tokenizer.json", log=lambda *_: None)
    assert D.load_vocab(out2).encode(TEXT).tolist() == library(made["unigram"]).encode(TEXT).ids


def test_legacy_metadata_name_still_loads(tmp_path):
    v = D.CharVocab("abc")
    v.save(tmp_path / "v")
    os.rename(tmp_path / "v" / "paddle_lrnn_vocab.json", tmp_path / "v" / "tokenizer_config.json")
    assert D.load_vocab(tmp_path / "v") == v


# ---------------------------------------------------------------------------------------------------------- training
def test_train_with_a_tokenizer_path_then_evaluate_and_generate(made, tmp_path):
    """--vocab PATH trains on a tokenizer.json; the run saves it; --eval-only and generation read it back."""
    from paddle_lrnn.generation import generate_text
    from paddle_lrnn.training.recipes import resolve
    from paddle_lrnn.training.evaluation import evaluate_model_dir
    from training_helpers import run

    data = tmp_path / "data.txt"
    data.write_text(T.austen(30_000), encoding="utf-8")
    out = tmp_path / "run"
    cfg = resolve(dict(model="rwkv2", data=str(data), out=str(out), device="cpu", n_layer=1, n_embd=16, ctx_len=16,
                       batch_size=4, max_steps=2, eval_interval=2, eval_iters=1, warmup_steps=0, sample_length=0,
                       vocab=made["neox"]))
    _, t = run(cfg)
    v = D.load_vocab(made["neox"])
    assert t.corpus.vocab == v and t.model.config.vocab_size == v.vocab_size
    assert D.load_vocab(out) == v and (out / "tokenizer.json").is_file()
    result = evaluate_model_dir(str(out), str(data), max_batches=1, log=lambda *_: None)
    assert result["tokenization"] == "hf" and result["ppl_unit"] == "token"
    text = "".join(generate_text(str(out), "It is a truth", 4, temperature=0, ignore_eos=True))
    assert text.startswith("It is a truth")
    with pytest.raises(ValueError, match="is a path, which names the tokenizer itself: drop --tokenizer"):
        run(resolve(dict(cfg.__dict__, tokenizer=made["neox"], out=str(tmp_path / "x"))))
