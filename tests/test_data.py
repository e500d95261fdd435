"""Data layer: vocabularies, corpora (splits, caching, errors) and batching, on small real text made from
the embedded corpus (paddle_lrnn/data/austen/austen.txt) and RWKV-v2's vocab.json fixture. numpy only (no paddle)."""
import codecs
import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paddle_lrnn.data as D
from paddle_lrnn.data import corpus as corpus_mod
from paddle_lrnn.data.hf_tokenizer import WHITE_SPACE, safe_cut
from tokenizer_files import hand_gpt2_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUSTEN = D.DEFAULT_CORPUS
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
V2_VOCAB = os.path.join(FIXTURES, "rwkv2", "vocab.json")
V2_REF = os.path.join(FIXTURES, "rwkv2", "rwkv2-small-ref.npz")


@pytest.fixture(scope="module")
def austen_bytes():
    with open(AUSTEN, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def austen_text(austen_bytes):
    return austen_bytes.decode("utf-8")


@pytest.fixture
def excerpt(tmp_path, austen_bytes):
    """A 200,000-byte excerpt of Austen as one text file (enwik8's single-file form)."""
    p = tmp_path / "austen200k.txt"
    p.write_bytes(austen_bytes[:200_000])
    return p


# ---------------------------------------------------------------------------------------------------------- import
def test_import_does_not_import_paddle():
    code = "import sys, paddle_lrnn.data; print('paddle' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------------------- chars
def test_v2_vocab_json_loads_and_saves_byte_exact(tmp_path, austen_text):
    v = D.load_vocab(V2_VOCAB)
    assert isinstance(v, D.CharVocab) and v.vocab_size == 77 and v.unit == "char"
    expected = sorted(set(austen_text[:674_458]))
    assert v.chars == expected
    assert v.chars[:3] == ["\n", " ", "!"] and v.chars[-1] == "z" and "X" not in v.chars
    assert D.CharVocab.from_text(austen_text[:674_458]) == v
    v.save(tmp_path / "v")
    with open(V2_VOCAB, "rb") as f:
        original = f.read()
    assert (tmp_path / "v" / "vocab.json").read_bytes() == original
    assert original[:2] == codecs.BOM_UTF16_LE
    cfg = json.loads((tmp_path / "v" / "paddle_lrnn_vocab.json").read_text())
    assert cfg["kind"] == "chars" and cfg["vocab_size"] == 77 and cfg["unknown_char"] is None
    assert D.load_vocab(tmp_path / "v") == v
    # a folder holding only v2's vocab.json also loads
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "vocab.json").write_bytes(original)
    assert D.load_vocab(tmp_path / "bare").chars == v.chars


def test_v2_reference_tokens():
    ref = np.load(V2_REF)
    v = D.load_vocab(V2_VOCAB)
    text = str(ref["text"])
    assert text == "(1811)\n\n\n\n\nCHAPTER 1\n\n\nThe family of Das"
    ids = v.encode(text)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, ref["tokens"])
    assert v.decode(ids) == text


def test_char_unknown_error_and_mapping():
    v = D.load_vocab(V2_VOCAB)
    with pytest.raises(D.DataError) as e:
        v.encode("the fox\nwas Xerxes")
    msg = str(e.value)
    assert "'X' (U+0058)" in msg and "line 2, column 5" in msg and "character offset 12" in msg
    with pytest.raises(D.DataError, match=r"'£' \(U\+00A3\) at line 1, column 1 "):
        v.encode("£20,000")
    ids = v.encode("Xerxes", unknown=" ")
    assert ids[0] == v.stoi[" "] and v.decode(ids) == " erxes"
    v2 = D.CharVocab(v.chars, unknown=" ")
    assert v2.decode(v2.encode("Zz")) == " z"
    with pytest.raises(D.DataError, match="must itself be in the vocabulary"):
        D.CharVocab(v.chars, unknown="X")


def test_char_vocab_checks(tmp_path):
    with pytest.raises(D.DataError, match="more than once"):
        D.CharVocab(["a", "b", "a"])
    with pytest.raises(D.DataError, match="one-character"):
        D.CharVocab(["ab"])
    bad = tmp_path / "vocab.json"
    bad.write_bytes(codecs.BOM_UTF16_LE + '{"0": "a", "2": "b"}'.encode("utf-16-le"))
    with pytest.raises(D.DataError, match="must be 0..1"):
        D.load_vocab(bad)
    bad.write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(D.DataError, match="an RWKV-v2 vocab.json is not valid JSON"):
        D.load_vocab(bad)
    v = D.CharVocab("ab")
    with pytest.raises(D.DataError, match="token id 2 at position 1 is outside the vocabulary"):
        v.decode([0, 2])


# ---------------------------------------------------------------------------------------------------------- bytes
def test_byte_vocab_and_incremental_decoder(tmp_path):
    v = D.ByteVocab()
    text = "Miss Bennet £20,000 — naïve 😀\n"
    ids = v.encode(text)
    assert v.vocab_size == 256 and ids.dtype == np.int64 and len(ids) == len(text.encode("utf-8"))
    assert v.decode(ids) == text
    dec = v.decoder()
    parts = [dec.decode([i]) for i in ids]
    assert "".join(parts) + dec.flush() == text
    assert "\ufffd" not in "".join(parts)
    # the 4 bytes of the emoji: nothing comes out until the last one
    emoji = [i for i in v.encode("😀")]
    assert [dec.decode([b]) for b in emoji] == ["", "", "", "😀"]
    dec.decode(emoji[:2])
    assert dec.flush() == "\ufffd"
    v.save(tmp_path / "b")
    assert D.load_vocab(tmp_path / "b") == v


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(st.text())
def test_byte_and_char_round_trip(text):
    assert D.ByteVocab().decode(D.ByteVocab().encode(text)) == text
    if text:
        v = D.CharVocab.from_text(text)
        assert v.decode(v.encode(text)) == text
        assert v.chars == sorted(v.chars)


# ---------------------------------------------------------------------------------------------------------- words
def test_word_vocab_order_lines_and_unk(tmp_path):
    v = D.WordVocab.build(["b a", "a c b", ""])
    # counts: b 2, a 2, <eos> 3, c 1 -> by frequency, ties by first occurrence; <unk> added at the end
    assert v.itos == ["<eos>", "b", "a", "c", "<unk>"]
    ids, oov = v.encode("a  b\n\nc d\nb", return_oov=True)
    assert ids.tolist() == [2, 1, 0, 0, 3, 4, 0, 1]  # the partial last line 'b' gets no <eos>
    assert oov == 1
    assert v.decode(ids) == "a b\n\nc <unk>\nb"
    dec = v.decoder()
    assert "".join(dec.decode([i]) for i in ids) == v.decode(ids)
    assert D.WordVocab.build(["x y z"], max_size=3).itos == ["x", "<eos>", "<unk>"]
    assert D.WordVocab.build(["x x y", "<unk> y"], min_freq=2).itos == ["x", "y", "<eos>", "<unk>"]
    v.save(tmp_path / "w")
    assert (tmp_path / "w" / "vocab.txt").read_text() == "<eos>\nb\na\nc\n<unk>\n"
    assert D.load_vocab(tmp_path / "w") == v
    with pytest.raises(D.DataError, match="must contain '<unk>'"):
        D.WordVocab(["<eos>", "a"])


def _wikitextify(chapter_lines, number):
    """Austen chapter -> WikiText-style lines: ' = Heading = ', paragraphs as one line each with punctuation split
    off, ' @-@ ' inside hyphenated words and ' @,@ ' inside numbers, ' ' for empty lines."""
    out = [" ", f" = Chapter {number} = ", " "]
    paras = " ".join(line if line.strip() else "\n" for line in chapter_lines).split("\n")
    for para in paras:
        para = " ".join(para.split())
        if not para:
            continue
        para = re.sub(r"(\d),(\d)", r"\1 @,@ \2", para)
        para = re.sub(r"(\w)-(\w)", r"\1 @-@ \2", para)
        para = re.sub(r"([.,;:!?\"()]|--)", r" \1 ", para)
        out += [" " + " ".join(para.split()) + " ", " "]
    return out


@pytest.fixture(scope="module")
def wikitext_lines(austen_text):
    """train / valid / test line lists from the first 30 chapters of Sense and Sensibility; train words seen once
    are replaced by <unk> (WikiText's own rare-word treatment), valid and test are left as they are so that they
    hold words the training vocabulary lacks."""
    lines = austen_text.split("\n")
    starts = [i for i, l in enumerate(lines) if l.startswith("CHAPTER ")][:31]
    chapters = [lines[a + 1:b] for a, b in zip(starts, starts[1:])]
    parts = {"train": chapters[:24], "valid": chapters[24:27], "test": chapters[27:30]}
    out = {}
    n = 0
    for split, chs in parts.items():
        out[split] = []
        for ch in chs:
            n += 1
            out[split] += _wikitextify(ch, n)
    counts = collections.Counter(w for l in out["train"] for w in l.split())
    out["train"] = [" " + " ".join(w if counts[w] > 1 else "<unk>" for w in l.split()) + " " if l.strip() else l
                    for l in out["train"]]
    return out


def _write_wikitext(directory, lines, suffix="tokens", skip=()):
    directory.mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        if split not in skip:
            (directory / f"wiki.{split}.{suffix}").write_text("".join(l + "\n" for l in lines[split]))
    return directory


def test_wikitext_words(tmp_path, wikitext_lines):
    d = _write_wikitext(tmp_path / "wikitext-austen", wikitext_lines)
    c = D.load_corpus(d, "words", cache_dir=tmp_path / "cache")
    assert c.name == "wikitext-austen" and c.layout == "wikitext" and c.unit == "word"
    train_vocab = collections.Counter(w for l in wikitext_lines["train"] for w in l.split())
    assert set(c.vocab.itos) == set(train_vocab) | {"<eos>"}
    assert "<unk>" in train_vocab  # kept as an ordinary token
    top = [w for w, _ in collections.Counter(
        [w for l in wikitext_lines["train"] for w in l.split() + ["<eos>"]]).most_common(3)]
    assert c.vocab.itos[:3] == top
    for split in ("train", "valid", "test"):
        lines = wikitext_lines[split]
        n_words = sum(len(l.split()) for l in lines)
        info = c.splits[split]
        assert info.tokens == len(c[split]) == n_words + len(lines)  # one <eos> per line, empty lines included
        assert info.lines == len(lines)
        oov = sum(1 for l in lines for w in l.split() if w not in train_vocab)
        assert info.oov == oov
        assert (split == "train") == (oov == 0)
        assert int(np.count_nonzero(np.asarray(c[split]) == c.vocab.eos_id)) == len(lines)
        expect = "".join(" ".join(w if w in train_vocab else "<unk>" for w in l.split()) + "\n" for l in lines)
        assert c.vocab.decode(c[split]) == expect
    assert c.splits["valid"].oov > 50
    assert c.vocab.decode(c.train[:3]) == "\n= Chapter"
    # the raw release's names are read too
    raw = _write_wikitext(tmp_path / "raw", wikitext_lines, suffix="raw")
    c2 = D.load_corpus(raw, "words", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(c2.train, c.train)


def test_wikitext_missing_files(tmp_path, wikitext_lines):
    d = _write_wikitext(tmp_path / "w", wikitext_lines, skip=("valid", "test"))
    with pytest.raises(D.DataError, match=r"not a WikiText directory: missing wiki.valid.tokens, wiki.test.tokens"):
        D.load_corpus(d, "words", cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DataError, match="missing wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens"):
        D.load_corpus(tmp_path / "empty", "words", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------- GPT-2 BPE
TINY_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("an", "d"), ("Ġ", "and"), ("i", "n"),
               ("Ġ", "s"), ("e", "e"), ("n", "d")]


@pytest.fixture
def tiny_bpe(tmp_path):
    """A hand-made GPT-2-format pair: the 256 byte symbols (id = byte value), 10 merges, <|endoftext|>."""
    return hand_gpt2_files(tmp_path / "gpt2-tiny", TINY_MERGES)


def _pieces(text):
    """GPT-2's pre-tokenisation of text, as the tokenizers library does it."""
    from tokenizers import pre_tokenizers
    return [p for p, _ in pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str(text)]


def test_gpt2_tiny_vocab(tmp_path, tiny_bpe):
    v = D.Gpt2Vocab.from_dir(tiny_bpe)
    assert v.vocab_size == 256 + 10 + 1 and v.unit == "bpe token" and v.eot_id == 266
    ids = v.tokenizer.token_to_id
    assert v.encode("the").tolist() == [ord("t"), ids("he")]
    assert v.encode(" the").tolist() == [ids("Ġthe")]
    assert v.encode(" and").tolist() == [ids("Ġand")]  # a+n (rank 3) before n+d (rank 9): Ġ an d -> Ġ and
    assert v.encode(" end").tolist() == [ids("Ġ"), ord("e"), ids("nd")]
    assert v.encode("seen").tolist() == [ord("s"), ids("ee"), ord("n")]
    assert v.encode("eee").tolist() == [ids("ee"), ord("e")]  # merges left to right, no overlap
    assert v.encode(" cat").tolist() == [ids("Ġ"), ord("c"), ord("a"), ord("t")]
    assert v.encode("the cat and the seen\n\nI'm").tolist() == \
        [116, 257, 32, 99, 97, 116, 261, 258, 263, 264, 110, 10, 10, 73, 39, 109]
    e = v.encode("é")  # two bytes, two byte symbols ('Ã', '©')
    assert e.tolist() == [0xC3, 0xA9]
    dec = v.decoder()
    assert dec.decode(e[:1]) == "" and dec.decode(e[1:]) == "é"
    assert v.decode([266]) == "<|endoftext|>"
    assert v.encode("a<|endoftext|>b").tolist() == [97, 266, 98]  # a special token, as GPT2TokenizerFast has it
    assert v.eol_id == 10
    v.save(tmp_path / "saved")
    assert D.load_vocab(tmp_path / "saved") == v
    assert (tmp_path / "saved" / "merges.txt").read_bytes() == (tiny_bpe / "merges.txt").read_bytes()
    assert D.load_vocab(tiny_bpe) == v  # GPT-2's own two files, no config
    (tiny_bpe / "tokenizer_config.json").write_text('{"model_max_length": 1024}')  # Hugging Face's, not ours
    assert D.load_vocab(tiny_bpe) == v
    assert D.load_vocab(tiny_bpe / "vocab.json") == v  # the file by itself: merges.txt beside it
    with pytest.raises(D.DataError, match="merges.txt: no such file"):
        D.Gpt2Vocab.from_files(tiny_bpe / "vocab.json", tmp_path / "merges.txt")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab '\n\t.1\u3000\x85é")), max_size=40))
def test_gpt2_block_cut_keeps_pretokenisation(text):
    p = safe_cut(text)
    if p > 0:
        assert _pieces(text[:p]) + _pieces(text[p:]) == _pieces(text)
    else:
        assert not any(text[i] in WHITE_SPACE and text[i - 1] not in WHITE_SPACE for i in range(1, len(text)))


_TINY_DIR = None


def _tiny_vocab():
    global _TINY_DIR
    if _TINY_DIR is None:
        import tempfile
        _TINY_DIR = hand_gpt2_files(tempfile.mkdtemp(prefix="gpt2-tiny-"), TINY_MERGES)
    return D.Gpt2Vocab.from_dir(_TINY_DIR)


@settings(max_examples=40, deadline=None)
@given(st.text())
def test_gpt2_round_trip(text):
    v = _tiny_vocab()
    assert v.decode(v.encode(text)) == text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def test_gpt2_corpora(tmp_path, tiny_bpe, wikitext_lines, austen_bytes):
    v = D.Gpt2Vocab.from_dir(tiny_bpe)
    # wikitext: each line stripped, encoded, closed by the newline token (fairseq's recipe)
    d = _write_wikitext(tmp_path / "wt", wikitext_lines, suffix="raw")
    c = D.load_corpus(d, tiny_bpe, cache_dir=tmp_path / "cache")
    assert c.vocab == v and c.unit == "bpe token"
    expect = np.concatenate([np.concatenate([v.encode(l.strip()), [10]]) for l in wikitext_lines["valid"]])
    np.testing.assert_array_equal(c.valid, expect)
    assert c.vocab.decode(c.test) == "".join(l.strip() + "\n" for l in wikitext_lines["test"])
    # a single file: the whole text as GPT-2 encodes it, read in small blocks; split points at line starts
    p = tmp_path / "a.txt"
    p.write_bytes(austen_bytes[:30_000])
    g = D.load_corpus(p, v, cache_dir=tmp_path / "cache", block_bytes=1000)
    cut1 = austen_bytes.index(b"\n", 27_000 - 1) + 1  # the first line start at or after the byte split point
    cut2 = austen_bytes.index(b"\n", 28_500 - 1) + 1
    assert g.splits["train"].byte_range == (0, cut1) and g.splits["test"].byte_range == (cut2, 30_000)
    np.testing.assert_array_equal(g.train, v.encode(austen_bytes[:cut1].decode()))
    np.testing.assert_array_equal(g.valid, v.encode(austen_bytes[cut1:cut2].decode()))
    with pytest.raises(D.DataError, match="GPT-2 vocabulary needs its tokenizer files"):
        D.load_corpus(p, "gpt2", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------- corpora
def test_single_file_bytes(excerpt, austen_bytes):
    c = D.load_corpus(excerpt, "bytes")
    assert c.name == "austen200k" and c.unit == "byte" and c.cache_path is None
    assert (len(c.train), len(c.valid), len(c.test)) == (180_000, 10_000, 10_000)
    for s, (a, b) in {"train": (0, 180_000), "valid": (180_000, 190_000), "test": (190_000, 200_000)}.items():
        arr = c[s]
        assert isinstance(arr, np.memmap) and arr.dtype == np.uint8 and arr.filename == str(excerpt)
        assert bytes(arr[:20]) == austen_bytes[a:a + 20] and bytes(arr[-5:]) == austen_bytes[b - 5:b]
        assert c.splits[s].byte_range == (a, b)
    assert c.bytes_per_split == {"train": 180_000, "valid": 10_000, "test": 10_000}
    assert c.bits_per("valid", np.log(2)) == pytest.approx(1.0)


def test_single_file_chars(tmp_path, excerpt, austen_bytes):
    c = D.load_corpus(excerpt, "chars", cache_dir=tmp_path / "cache", ctx_len=1024)
    text = austen_bytes[:200_000].decode()
    assert c.vocab.chars == sorted(set(text)) and c.unit == "char"
    assert c.train.dtype == np.uint8 and isinstance(c.train, np.memmap)
    assert (len(c.train), len(c.valid), len(c.test)) == (180_000, 10_000, 10_000)
    assert c.vocab.decode(c.train) == text[:180_000]
    assert c.vocab.decode(c.valid) == text[180_000:190_000]
    assert c.vocab.decode(c.test) == text[190_000:]
    assert c.splits["valid"].chars == c.splits["valid"].bytes == 10_000
    assert c.bits_per("test", 1.0, per="char") == pytest.approx(1 / np.log(2))


def test_char_split_points_move_to_character_starts(tmp_path, austen_bytes):
    # 1000 bytes: a 3-byte '€' over byte 900 (the 90% point), a 4-byte emoji over byte 950 (95%), CRLF lines
    body = austen_bytes[:2000].replace(b"\n", b"\r\n")
    data = body[:899] + "€".encode() + body[899:945] + "😀".encode() + body[945:]
    data = data[:1000]
    assert data[899:902] == "€".encode() and data[948:952] == "😀".encode()
    p = tmp_path / "mb.txt"
    p.write_bytes(data)
    results = []
    for block in (16, 17, 64, 1 << 20):  # blocks cut through characters and CRLF pairs; same result
        c = D.load_corpus(p, "chars", cache_dir=tmp_path / f"cache{block}", block_bytes=block)
        assert c.splits["train"].byte_range == (0, 902)
        assert c.splits["valid"].byte_range == (902, 952)
        assert c.splits["test"].byte_range == (952, 1000)
        results.append(np.concatenate([c.train, c.valid, c.test]))
        assert "\r" not in c.vocab.chars
        assert c.vocab.decode(c.train) == data[:902].decode().replace("\r\n", "\n").replace("\r", "\n")
        assert c.vocab.decode(c.test) == data[952:].decode().replace("\r\n", "\n").replace("\r", "\n")
        n_crlf = data[:902].count(b"\r\n")
        assert c.splits["train"].bytes == 902 - n_crlf
        assert c.splits["train"].chars == len(data[:902].decode()) - n_crlf
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    # a split point between '\r' and '\n' moves past the '\n'
    q = tmp_path / "crlf.txt"
    q.write_bytes(b"a" * 899 + b"\r\n" + b"b" * 99)
    c = D.load_corpus(q, "chars", cache_dir=tmp_path / "cache")
    assert c.splits["train"].byte_range == (0, 901)
    assert c.vocab.decode(c.train[-2:]) == "a\n" and len(c.train) == 900
    # a lone '\r' is a newline too (universal newlines)
    r = tmp_path / "cr.txt"
    r.write_bytes(b"x\ry\r\nz" * 100)
    c = D.load_corpus(r, "chars", cache_dir=tmp_path / "cache")
    assert c.vocab.chars == ["\n", "x", "y", "z"]


def test_words_single_file_line_split(tmp_path, excerpt, austen_bytes):
    c = D.load_corpus(excerpt, "words", cache_dir=tmp_path / "cache")
    cut1 = austen_bytes.index(b"\n", 180_000 - 1) + 1
    cut2 = austen_bytes.index(b"\n", 190_000 - 1) + 1
    assert [c.splits[s].byte_range for s in ("train", "valid", "test")] == \
        [(0, cut1), (cut1, cut2), (cut2, 200_000)]
    train_lines = austen_bytes[:cut1].decode().split("\n")[:-1]
    assert c.vocab == D.WordVocab.build(train_lines)
    test_lines = austen_bytes[cut2:200_000].decode().split("\n")  # last line has no final newline: still an <eos>
    assert len(c.test) == sum(len(l.split()) for l in test_lines) + len(test_lines)


def test_shakespeare_char_layout(tmp_path, austen_bytes):
    p = tmp_path / "input.txt"
    data = austen_bytes[:50_001] + "é".encode() + austen_bytes[50_001:60_000]
    p.write_bytes(data)
    c = D.load_corpus(p, "chars", layout="shakespeare-char", cache_dir=tmp_path / "cache")
    text = data.decode()
    n = len(text)
    assert c.test is None and c.split_names == ["train", "valid"]
    assert len(c.train) == int(n * 0.9) and len(c.valid) == n - int(n * 0.9)
    assert c.vocab.decode(c.train) == text[:int(n * 0.9)]
    assert c.vocab.decode(c.valid) == text[int(n * 0.9):]
    assert c.splits["train"].bytes == len(text[:int(n * 0.9)].encode())
    with pytest.raises(D.DataError, match="uses a character vocabulary"):
        D.load_corpus(p, "words", layout="shakespeare-char", cache_dir=tmp_path / "cache")


def test_given_vocab_that_does_not_fit(tmp_path, austen_text, austen_bytes):
    v = D.load_vocab(V2_VOCAB)
    bad = next(i for i, ch in enumerate(austen_text) if ch not in v.stoi)
    line = austen_text.count("\n", 0, bad) + 1
    col = bad - austen_text.rfind("\n", 0, bad)
    ch = austen_text[bad]
    with pytest.raises(D.DataError) as e:
        D.load_corpus(AUSTEN, v, cache_dir=tmp_path / "cache")
    assert f"character {ch!r} (U+{ord(ch):04X}) at line {line}, column {col} (character offset {bad})" in \
        str(e.value)
    assert not [n for n in os.listdir(tmp_path / "cache") if not n.endswith(".lock")]  # nothing half-built left
    c = D.load_corpus(AUSTEN, v, unknown=" ", cache_dir=tmp_path / "cache")
    n = len(austen_bytes)
    ranges = {"train": (0, n * 90 // 100), "valid": (n * 90 // 100, n * 95 // 100), "test": (n * 95 // 100, n)}
    for s, (a, b) in ranges.items():
        part = austen_bytes[a:b].decode()
        assert c.splits[s].oov == sum(1 for x in part if x not in v.stoi)
        assert len(c[s]) == len(part)
    assert c.splits["train"].oov > 0
    # a vocabulary that carries its own unknown character needs no unknown= argument
    c2 = D.load_corpus(AUSTEN, D.CharVocab(v.chars, unknown=" "), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(c2.test, c.test)


def test_cache_reuse_invalidation_and_no_half_written_entries(tmp_path, excerpt, monkeypatch):
    cache = tmp_path / "cache"
    c1 = D.load_corpus(excerpt, "chars", cache_dir=cache)
    assert not c1.from_cache and os.path.isdir(c1.cache_path)
    assert sorted(os.listdir(c1.cache_path)) == ["meta.json", "tokens.npy", "vocab"]
    meta = json.loads(open(os.path.join(c1.cache_path, "meta.json")).read())
    assert meta["dtype"] == "uint8" and meta["sources"][0]["size"] == 200_000 and meta["complete"]
    c2 = D.load_corpus(excerpt, "chars", cache_dir=cache)
    assert c2.from_cache and c2.cache_path == c1.cache_path and c2.vocab == c1.vocab
    np.testing.assert_array_equal(c2.valid, c1.valid)
    # touching the file (new mtime) makes a new entry and removes the stale one
    st = os.stat(excerpt)
    os.utime(excerpt, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    c3 = D.load_corpus(excerpt, "chars", cache_dir=cache)
    assert not c3.from_cache and c3.cache_path != c1.cache_path and not os.path.exists(c1.cache_path)
    # a different vocabulary kind is a different entry
    assert D.load_corpus(excerpt, "words", cache_dir=cache).cache_path != c3.cache_path
    # an entry without its meta.json (interrupted by hand) and leftover temporary folders are never used
    os.remove(os.path.join(c3.cache_path, "meta.json"))
    leftover = c3.cache_path + ".tmp-dead"
    os.makedirs(leftover)
    c4 = D.load_corpus(excerpt, "chars", cache_dir=cache)
    assert not c4.from_cache and c4.cache_path == c3.cache_path and not os.path.exists(leftover)
    np.testing.assert_array_equal(c4.train, c1.train)
    # a build that fails half way leaves nothing behind, and the next load builds a complete entry
    os.utime(excerpt, ns=(st.st_atime_ns, st.st_mtime_ns + 4_000_000_000))
    real = corpus_mod._encode_range

    def failing(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt("crash while encoding")

    monkeypatch.setattr(corpus_mod, "_encode_range", failing)
    with pytest.raises(KeyboardInterrupt):
        D.load_corpus(excerpt, "chars", cache_dir=cache)
    monkeypatch.setattr(corpus_mod, "_encode_range", real)
    assert not [n for n in os.listdir(cache) if ".tmp-" in n]
    c5 = D.load_corpus(excerpt, "chars", cache_dir=cache)
    assert not c5.from_cache
    np.testing.assert_array_equal(c5.test, c1.test)


def test_concurrent_builds_make_one_entry(tmp_path, excerpt):
    """Data-parallel ranks all call load_corpus at once: one builds, the others wait and read the same entry."""
    code = ("import sys, numpy as np, paddle_lrnn.data as D; "
            "c = D.load_corpus(sys.argv[1], 'words', cache_dir=sys.argv[2]); "
            "print(c.cache_path, int(np.asarray(c.train, np.int64).sum()))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(excerpt), str(tmp_path / "cache")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    entries = [n for n in os.listdir(tmp_path / "cache") if not n.endswith(".lock")]
    assert len(entries) == 1 and ".tmp-" not in entries[0]


# ---------------------------------------------------------------------------------------------------------- bad input
def test_bad_input_errors(tmp_path, excerpt):
    cache = tmp_path / "cache"
    with pytest.raises(D.DataError, match="no such file or directory"):
        D.load_corpus(tmp_path / "missing.txt", "chars", cache_dir=cache)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(D.DataError, match=r"empty.txt: the file is empty \(0 bytes\)"):
        D.load_corpus(tmp_path / "empty.txt", "chars", cache_dir=cache)
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"line one\nline two\n" + bytes([0x89, 0x50, 0x4E, 0x47]) + b"\x00\n" * 100)
    for kind in ("chars", "words"):
        with pytest.raises(D.DataError, match=r"not UTF-8 text: invalid start byte at byte offset 18 "
                                              r"\(byte 0x89, line 3\)"):
            D.load_corpus(binary, kind, cache_dir=cache, block_bytes=16)
    assert len(D.load_corpus(binary, "bytes").train) == 199  # the byte vocabulary reads anything
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes(b"abc" * 10 + "é".encode()[:1])
    with pytest.raises(D.DataError, match="unexpected end of data at byte offset 30"):
        D.load_corpus(truncated, "chars", cache_dir=cache)
    with pytest.raises(D.DataError, match=r"the valid split has 10,000 tokens \(10,000 bytes of .*austen200k.txt\), "
                                          r"too few for ctx_len 20000, which needs at least 20,001"):
        D.load_corpus(excerpt, "bytes", ctx_len=20_000)
    tiny = tmp_path / "tiny.txt"
    tiny.write_bytes(b"one line only\n")
    with pytest.raises(D.DataError, match=r"tiny.txt \(14 bytes\) is too small to split 90/5/5 by bytes: its "
                                          r"valid split is empty"):
        D.load_corpus(tiny, "words", cache_dir=cache)
    with pytest.raises(D.DataError, match="vocab='klingon'"):
        D.load_corpus(excerpt, "klingon", cache_dir=cache)
    with pytest.raises(D.DataError, match="layout='enwik9'"):
        D.load_corpus(excerpt, "chars", layout="enwik9", cache_dir=cache)
    with pytest.raises(D.DataError, match="the wikitext layout needs a directory"):
        D.load_corpus(excerpt, "words", layout="wikitext", cache_dir=cache)
    with pytest.raises(D.DataError, match="applies to chars only"):
        D.load_corpus(excerpt, "words", unknown=" ", cache_dir=cache)
    with pytest.raises(D.DataError, match="no vocabulary found"):
        D.load_vocab(tmp_path)
    assert issubclass(D.DataError, ValueError)


# ---------------------------------------------------------------------------------------------------------- batching
@pytest.fixture(scope="module")
def tokens():
    with open(AUSTEN, "rb") as f:
        data = f.read(60_000)
    return np.frombuffer(data, np.uint8)


def test_sampler_windows_and_determinism(tokens):
    s = D.BatchSampler(tokens, batch_size=6, ctx_len=32, seed=7)
    b = s.next_batch()
    assert b.x.shape == b.y.shape == (6, 32) and b.x.dtype == b.y.dtype == np.int64 and b.step == 0
    for r, o in enumerate(b.offsets):
        np.testing.assert_array_equal(b.x[r], tokens[o:o + 32])
        np.testing.assert_array_equal(b.y[r], tokens[o + 1:o + 33])
    again = D.BatchSampler(tokens, batch_size=6, ctx_len=32, seed=7).next_batch()
    np.testing.assert_array_equal(again.x, b.x)
    other = D.BatchSampler(tokens, batch_size=6, ctx_len=32, seed=8).next_batch()
    assert not np.array_equal(other.offsets, b.offsets)
    # offsets cover the whole range, the last target included
    small = np.arange(10, dtype=np.uint16)
    offs = np.concatenate([D.BatchSampler(small, 50, 4, seed=1).next_batch().offsets for _ in range(1)])
    assert set(offs.tolist()) == set(range(6))
    with pytest.raises(D.DataError, match=r"the split has 10 tokens, too few for ctx_len 10: a training window "
                                          r"needs ctx_len \+ 1 = 11 tokens"):
        D.BatchSampler(small, 2, 10)


def test_sampler_resume_is_exact(tokens):
    s = D.BatchSampler(tokens, batch_size=4, ctx_len=16, seed=123)
    for _ in range(5):
        s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))  # survives JSON
    assert state["step"] == 5
    expected = [s.next_batch() for _ in range(4)]
    resumed = D.BatchSampler(tokens, batch_size=4, ctx_len=16, seed=0)
    resumed.load_state_dict(state)
    got = [resumed.next_batch() for _ in range(4)]
    for a, b in zip(expected, got):
        assert a.step == b.step
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    with pytest.raises(D.DataError, match="the saved sampler had batch_size 4, this one has 8"):
        D.BatchSampler(tokens, batch_size=8, ctx_len=16).load_state_dict(state)
    with pytest.raises(D.DataError, match="not a BatchSampler state"):
        resumed.load_state_dict({"step": 3})


def test_shards_concatenate_to_the_global_batch(tokens):
    s1 = D.BatchSampler(tokens, batch_size=8, ctx_len=16, seed=5)
    ranks = [D.BatchSampler(tokens, batch_size=8, ctx_len=16, seed=5) for _ in range(2)]
    for _ in range(3):
        g = s1.next_batch()
        shards = [r.next_batch().shard(i, 2) for i, r in enumerate(ranks)]
        np.testing.assert_array_equal(np.concatenate([x for x, _ in shards]), g.x)
        np.testing.assert_array_equal(np.concatenate([y for _, y in shards]), g.y)
        assert shards[0][0].shape == (4, 16)
    # resume a world-size-2 run on 4 ranks: the same global sequence goes on
    state = ranks[0].state_dict()
    nxt = s1.next_batch()
    four = []
    for i in range(4):
        r = D.BatchSampler(tokens, batch_size=8, ctx_len=16)
        r.load_state_dict(state)
        four.append(r.next_batch().shard(i, 4)[0])
    np.testing.assert_array_equal(np.concatenate(four), nxt.x)
    with pytest.raises(D.DataError, match="global batch size 8 is not divisible by the world size 3"):
        nxt.shard(0, 3)
    with pytest.raises(D.DataError, match=r"rank must be in 0..1"):
        nxt.shard(2, 2)


@pytest.mark.parametrize("streams", [False, True])
@pytest.mark.parametrize("n,B,T", [(1001, 4, 32), (129, 2, 64), (40, 3, 100), (2, 5, 1)])
def test_eval_batches_cover_every_target_once(n, B, T, streams):
    tokens = (np.arange(n) * 7919 % 65521).astype(np.uint16)
    eb = D.eval_batches(tokens, B, T, streams=streams)
    seen = np.zeros(n, np.int64)
    total = 0
    for batch in eb:
        x, y, cnt = batch
        assert x.dtype == y.dtype == np.int64 and x.shape[1] == T and x.shape == y.shape
        assert x.shape[0] <= B and (x.shape[0] == B or not streams)
        mask = batch.mask
        assert cnt == int(mask.sum())
        total += cnt
        for r in range(x.shape[0]):
            m = int(mask[r].sum())
            assert mask[r, :m].all() and not mask[r, m:].any()  # padding only at the end of a row
            if m:
                start = int(np.flatnonzero(tokens == x[r, 0])[0])
                np.testing.assert_array_equal(x[r, :m], tokens[start:start + m])
                np.testing.assert_array_equal(y[r, :m], tokens[start + 1:start + m + 1])
                seen[start + 1:start + m + 1] += 1
        assert (y[~mask] == -100).all() and (x[~mask] == 0).all()
    assert total == eb.n_tokens == n - 1
    assert seen[0] == 0 and (seen[1:] == 1).all()
    assert len(eb) == len(list(eb))


def test_eval_batches_order_streams_and_max_batches():
    tokens = np.arange(1, 102, dtype=np.uint8)  # 101 tokens, 100 targets
    first = next(iter(D.eval_batches(tokens, 2, 10)))
    np.testing.assert_array_equal(first.x, [tokens[0:10], tokens[10:20]])
    eb = D.eval_batches(tokens, 3, 10, max_batches=2)
    assert len(eb) == 2 and eb.n_tokens == 60 and sum(b.n_tokens for b in eb) == 60
    # streams: row r continues where row r of the previous batch stopped
    st_batches = list(D.eval_batches(tokens, 4, 10, streams=True))
    assert len(st_batches) == 3  # 4 streams of 25 targets, windows of 10
    np.testing.assert_array_equal(st_batches[0].x[:, 0], [1, 26, 51, 76])
    np.testing.assert_array_equal(st_batches[1].x[:, 0], [11, 36, 61, 86])
    assert st_batches[2].n_tokens == 4 * 5
    with pytest.raises(D.DataError, match="needs at least 2"):
        D.eval_batches(tokens[:1], 2, 4)


def test_corpus_to_batches_end_to_end(tmp_path, excerpt):
    c = D.load_corpus(excerpt, "chars", cache_dir=tmp_path / "cache")
    s = D.BatchSampler(c.train, 4, 64, seed=0)
    b = s.next_batch()
    assert c.vocab.decode(b.x[0]) == c.vocab.decode(c.train[b.offsets[0]:b.offsets[0] + 64])
    eb = D.eval_batches(c.valid, 8, 256)
    assert eb.n_tokens == len(c.valid) - 1
    assert D.steps_per_epoch(len(c.train), 4, 64) == -(-180_000 // 256)
