"""Vocabularies (tokenizers) with one interface: bytes, characters (RWKV-v2's), words (WikiText's), and through
sibling modules Hugging Face tokenizers (hf_tokenizer: tokenizer.json, GPT-2's vocab.json + merges.txt, mru-lm's
cut-down tokenizer) and RWKV's World vocabulary (world).

Every vocabulary has
  encode(text: str) -> np.ndarray        1-D int64 ids, exactly as the original tokenizer gives them
  decode(ids) -> str                     ids: any 1-D sequence or array of ints in [0, vocab_size)
  decoder() -> an incremental decoder    .decode(ids) -> the text completed so far, .flush() -> the rest
  vocab_size: int, unit: str ("byte", "char", "word", "bpe token" or "token"), kind: str (KINDS)
  eot_id: the id that ends a text (generation stops there), or None
  dtype: the smallest unsigned numpy dtype that holds every id (uint8, uint16 or uint32; used by corpus caches)
  save(directory) -> directory           writes VOCAB_FILE and the kind's own files (below)
  fingerprint() -> str                   sha256 hex of the kind, options and entries (two equal vocabularies share it)
and `load_vocab(path)` reads any of them back, or the original files as they are published.

Files written by save(directory):
  paddle_lrnn_vocab.json  UTF-8 JSON: {"format": "paddle_lrnn.vocab", "version": 1, "kind": ..., "unit": ...,
                          "vocab_size": ..., "files": [...], plus the kind's options}. (Folders written before it
                          had this name hold it as tokenizer_config.json, which Hugging Face tools read as their own
                          file: load_vocab still reads those.)
  bytes: nothing else.
  chars: vocab.json in RWKV-v2's format: UTF-16 little-endian with a byte order mark, the JSON object
         {"0": char, "1": char, ...} as json.dumps(..., ensure_ascii=False) writes it (", " and ": " separators, no
         newline at the end). Options in the config: "unknown_char" (null or the character unknown ones map to).
  words: vocab.txt, UTF-8, one token per line in id order, each line ended by "\\n" (tokens never hold whitespace).
  gpt2:  GPT-2's vocab.json and merges.txt, as they were read.
  hf:    the Hugging Face files as they were read: tokenizer.json, and tokenizer_config.json, special_tokens_map.json
         where the source had them.
  cut-down: the base tokenizer's files and inverted_id_map.pt (mru-lm's layout).
  world: the World vocabulary file, as it was read, under its own name.
"""
import codecs
import collections
import hashlib
import json
import os

import numpy as np

from ..io import parse_json
from ..io.atomic import atomic_files
from .errors import DataError

VOCAB_FILE = "paddle_lrnn_vocab.json"
LEGACY_VOCAB_FILE = "tokenizer_config.json"  # our file's name before it was renamed; Hugging Face's name
KINDS = ("bytes", "chars", "words", "gpt2", "hf", "cut-down", "world")
CONFIG_FORMAT = "paddle_lrnn.vocab"
CONFIG_VERSION = 1


def smallest_uint(n):
    """The smallest unsigned numpy dtype that holds the values 0..n-1."""
    if n <= 1 << 8:
        return np.dtype(np.uint8)
    if n <= 1 << 16:
        return np.dtype(np.uint16)
    if n <= 1 << 32:
        return np.dtype(np.uint32)
    return np.dtype(np.uint64)


def _as_ids(ids, vocab_size):
    """ids (int, sequence or array) -> 1-D int64 array, checked to lie in [0, vocab_size)."""
    a = np.asarray(ids)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.size == 0:
        return np.zeros(0, np.int64)
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise DataError(f"token ids must be integers, got an array of dtype {a.dtype}")
    a = a.reshape(-1).astype(np.int64, copy=False)
    bad = (a < 0) | (a >= vocab_size)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"token id {int(a[i])} at position {i} is outside the vocabulary (ids 0..{vocab_size - 1})")
    return a


def char_position(text, index):
    """(line, column) of text[index], both 1-based; lines end at '\\n'."""
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def describe_char(ch):
    return f"{ch!r} (U+{ord(ch):04X})"


class Vocab:
    """Base class; see the module docstring for the interface."""

    kind = None
    unit = None

    @property
    def vocab_size(self):
        raise NotImplementedError

    def __len__(self):
        return self.vocab_size

    @property
    def dtype(self):
        return smallest_uint(self.vocab_size)

    def encode(self, text):
        raise NotImplementedError

    def decode(self, ids):
        raise NotImplementedError

    def decoder(self):
        raise NotImplementedError

    @property
    def eot_id(self):
        """The id that ends a text (generation stops there unless told otherwise), or None."""
        return None

    def encode_blocks(self, blocks):
        """Encodes a long text given as an iterable of str blocks: yields int64 arrays whose concatenation is the
        text's ids. This version encodes each block on its own, which is exact for bytes and characters; the
        tokenizer kinds override it and say where they cut."""
        for block in blocks:
            yield self.encode(block)

    def _options(self):
        """Kind-specific entries of VOCAB_FILE."""
        return {}

    def _entries(self):
        """A JSON-serialisable description of the entries, for fingerprint()."""
        return []

    def _write_files(self, directory):
        """Writes the kind's own files into `directory`; returns their names."""
        return []

    def fingerprint(self):
        entries = self.__dict__.get("_entries_sha")
        if entries is None:  # the entries never change after construction; hash them once
            blob = json.dumps(self._entries(), ensure_ascii=False)
            entries = self.__dict__["_entries_sha"] = hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
        blob = json.dumps([self.kind, self._options(), entries], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.kind == other.kind and self.fingerprint() == other.fingerprint()

    def __hash__(self):
        return hash(self.fingerprint())

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    def save(self, directory):
        """Writes VOCAB_FILE and the kind's files into `directory` (created if needed), replacing all of
        them or, on any failure, none; returns it."""
        directory = os.fspath(directory)
        with atomic_files(directory) as staging:
            files = self._write_files(staging)
            config = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "kind": self.kind, "unit": self.unit,
                      "vocab_size": self.vocab_size, "files": files, **self._options()}
            with open(os.path.join(staging, VOCAB_FILE), "w", encoding="utf-8", newline="\n") as f:
                json.dump(config, f, ensure_ascii=False, indent=2, sort_keys=True)
                f.write("\n")
        return directory


class Utf8StreamDecoder:
    """Incremental decoder for vocabularies whose tokens are bytes: decode(ids) returns the text of every complete
    UTF-8 character so far and holds back an incomplete trailing sequence; flush() returns what is held back,
    invalid bytes decoded as U+FFFD."""

    def __init__(self, to_bytes):
        self._to_bytes = to_bytes
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def decode(self, ids):
        return self._dec.decode(self._to_bytes(ids), False)

    def flush(self):
        out = self._dec.decode(b"", True)
        self._dec.reset()
        return out


class _SimpleStreamDecoder:
    def __init__(self, decode):
        self._decode = decode

    def decode(self, ids):
        return self._decode(ids)

    def flush(self):
        return ""


# --------------------------------------------------------------------------------------------------------------- bytes
class ByteVocab(Vocab):
    """256 ids, one per byte of the UTF-8 encoding of the text (enwik8's byte-level convention).

    encode(text) -> the UTF-8 bytes of text as int64; decode(ids) -> those bytes decoded as UTF-8, an invalid or
    incomplete sequence becoming U+FFFD. The incremental decoder holds back an incomplete UTF-8 sequence until its
    last byte arrives."""

    kind = "bytes"
    unit = "byte"

    @property
    def vocab_size(self):
        return 256

    def encode(self, text):
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8).astype(np.int64)

    def _to_bytes(self, ids):
        return _as_ids(ids, 256).astype(np.uint8).tobytes()

    def decode(self, ids):
        return self._to_bytes(ids).decode("utf-8", "replace")

    def decoder(self):
        return Utf8StreamDecoder(self._to_bytes)


# --------------------------------------------------------------------------------------------------------------- chars
_NO_DEFAULT = object()


class CharVocab(Vocab):
    """Unicode characters (code points), RWKV-v2's vocabulary: built as the sorted distinct characters of the text,
    id = rank in code-point order; stored as RWKV-v2's vocab.json (see the module docstring).

    CharVocab(chars, unknown=None): chars is a sequence of distinct one-character strings (or a str) in id order.
    unknown=None makes encode raise DataError on a character outside the vocabulary, naming it (repr and code point)
    and its position (line, column, character offset); unknown=c (a character of the vocabulary) maps every such
    character to c's id instead, as v2's run.py does with UNKNOWN_CHAR = ' '.

    encode(text) maps characters one by one; it does not translate newlines (a '\\r' is a character like any other;
    corpora read from files translate '\\r\\n' and '\\r' to '\\n' before encoding)."""

    kind = "chars"
    unit = "char"

    def __init__(self, chars, unknown=None):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise DataError(f"a character vocabulary entry must be a one-character string, got {c!r}")
        if len(set(chars)) != len(chars):
            dup = [c for c, n in collections.Counter(chars).items() if n > 1][0]
            raise DataError(f"character {describe_char(dup)} appears more than once in the vocabulary")
        if not chars:
            raise DataError("a character vocabulary needs at least one character")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self._table = None
        self.unknown = None
        self.set_unknown(unknown)

    def set_unknown(self, unknown):
        """Sets the character that characters outside the vocabulary map to (None: raise instead)."""
        if unknown is not None and unknown not in self.stoi:
            raise DataError(f"unknown={unknown!r}: the replacement for unknown characters must itself be in the "
                            f"vocabulary")
        self.unknown = unknown

    @classmethod
    def from_text(cls, text, unknown=None):
        """The sorted distinct characters of text (v2: sorted(set(data)))."""
        return cls(sorted(set(text)), unknown=unknown)

    @classmethod
    def from_file(cls, path, unknown=None, block_bytes=None):
        """The sorted distinct characters of a UTF-8 file read with universal newlines, in one streaming pass."""
        from ._text import DEFAULT_BLOCK_BYTES, TextBlocks, check_file
        check_file(path)
        seen = set()
        for block in TextBlocks(path, block_bytes=block_bytes or DEFAULT_BLOCK_BYTES):
            seen.update(block)
        return cls(sorted(seen), unknown=unknown)

    @classmethod
    def load_v2(cls, path, unknown=None):
        """Reads an RWKV-v2 vocab.json (UTF-16 with BOM, {"0": char, ...}); ids are the keys, which must be 0..n-1."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
            if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                text = raw.decode("utf-16")
            else:  # tolerate a UTF-8 copy of the same JSON
                text = raw.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not an RWKV-v2 vocab.json (UTF-16 JSON object id -> character): {e}") from None
        obj = parse_json(text, lambda problem: DataError(f"{path}: an RWKV-v2 vocab.json {problem}"))
        try:
            keys = sorted(int(k) for k in obj)
        except ValueError:
            raise DataError(f"{path}: not an RWKV-v2 vocab.json: keys must be decimal ids") from None
        if keys != list(range(len(obj))):
            raise DataError(f"{path}: the ids of an RWKV-v2 vocab.json must be 0..{len(obj) - 1}")
        try:
            return cls([obj[str(i)] for i in keys], unknown=unknown)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    def v2_json_bytes(self):
        """The bytes of this vocabulary as RWKV-v2's vocab.json."""
        body = json.dumps({str(i): c for i, c in enumerate(self.chars)}, ensure_ascii=False)
        return codecs.BOM_UTF16_LE + body.encode("utf-16-le", "surrogatepass")

    def save_v2(self, path):
        """Writes only the v2 vocab.json to the file `path`."""
        with open(path, "wb") as f:
            f.write(self.v2_json_bytes())
        return path

    @property
    def vocab_size(self):
        return len(self.chars)

    def _options(self):
        return {"unknown_char": self.unknown}

    def _entries(self):
        return self.chars

    def _write_files(self, directory):
        self.save_v2(os.path.join(directory, "vocab.json"))
        return ["vocab.json"]

    def _lookup(self):
        if self._table is None:
            top = max(ord(c) for c in self.chars)
            table = np.full(top + 2, -1, np.int64)  # the last entry stands for every code point above top
            for i, c in enumerate(self.chars):
                table[ord(c)] = i
            self._table = table
        return self._table

    def encode_block(self, text, unknown=_NO_DEFAULT):
        """text -> (ids as int64, index of the first character outside the vocabulary or -1). Unknown characters
        get the id of `unknown` (default: self.unknown) when it is set, else -1."""
        unknown = self.unknown if unknown is _NO_DEFAULT else unknown
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        table = self._lookup()
        ids = table[np.minimum(cps, len(table) - 1)]
        bad = ids < 0
        first = -1
        if bad.any():
            first = int(np.argmax(bad))
            if unknown is not None:
                ids[bad] = self.stoi[unknown]
        return ids, first

    def unknown_error(self, ch, where):
        return DataError(
            f"character {describe_char(ch)} {where} is not in the vocabulary ({self.vocab_size} characters); pass "
            f"unknown=' ' (or another character of the vocabulary) to map unknown characters to it, as RWKV-v2's "
            f"run.py does with UNKNOWN_CHAR")

    def encode(self, text, unknown=_NO_DEFAULT):
        """text -> int64 ids. unknown: overrides self.unknown for this call (None: raise on unknown characters)."""
        if unknown is not _NO_DEFAULT and unknown is not None and unknown not in self.stoi:
            raise DataError(f"unknown={unknown!r} is not in the vocabulary")
        ids, first = self.encode_block(text, unknown)
        if first >= 0 and (self.unknown if unknown is _NO_DEFAULT else unknown) is None:
            line, col = char_position(text, first)
            raise self.unknown_error(text[first], f"at line {line}, column {col} (character offset {first})")
        return ids

    def decode(self, ids):
        chars = self.chars
        return "".join(chars[i] for i in _as_ids(ids, self.vocab_size).tolist())

    def decoder(self):
        return _SimpleStreamDecoder(self.decode)

    def utf8_lengths(self):
        """int64 array: the UTF-8 byte length of each character, by id."""
        return np.array([len(c.encode("utf-8", "surrogatepass")) for c in self.chars], np.int64)


# --------------------------------------------------------------------------------------------------------------- words
class WordVocab(Vocab):
    """Word-level vocabulary in the WikiText convention.

    Text is cut into lines at '\\n', '\\r\\n' or '\\r'; a line's tokens are line.split() (whitespace runs, str.split
    with no argument), and every line, an empty one included, is followed by the end-of-line token "<eos>". That is
    the convention of the usual WikiText loaders (PyTorch's word_language_model, Transformer-XL, fairseq's
    binariser) and the one the published token counts (217,646 valid / 245,569 test for WikiText-103) and
    perplexities are measured in. "<unk>" is an ordinary token (WikiText already holds it in place of rare words);
    any token not in the vocabulary is mapped to it and counted. In encode(text), text after the last line break
    is a partial line and gets no "<eos>" (so a prompt is not closed); a corpus file's last line gets one, with or
    without a final newline (as in those loaders).

    WordVocab(tokens): tokens in id order, distinct, none holding whitespace, "<eos>" and "<unk>" among them.
    WordVocab.build(lines, min_freq=1, max_size=None) builds the vocabulary of a training split (see there).

    decode joins a line's words with single spaces and writes "<eos>" as '\\n'."""

    kind = "words"
    unit = "word"
    EOS = "<eos>"
    UNK = "<unk>"

    def __init__(self, tokens):
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens):
            dup = [t for t, n in collections.Counter(tokens).items() if n > 1][0]
            raise DataError(f"word {dup!r} appears more than once in the vocabulary")
        for t in tokens:
            if not isinstance(t, str) or not t or t.split() != [t]:
                raise DataError(f"a word vocabulary entry must be a non-empty string without whitespace, got {t!r}")
        for special in (self.EOS, self.UNK):
            if special not in tokens:
                raise DataError(f"a word vocabulary must contain {special!r}")
        self.itos = tokens
        self.stoi = {t: i for i, t in enumerate(tokens)}
        self.eos_id = self.stoi[self.EOS]
        self.unk_id = self.stoi[self.UNK]

    @staticmethod
    def count(lines, counter=None):
        """Counts the tokens of `lines` (an iterable of lines, line breaks optional) plus one "<eos>" per line."""
        counter = collections.Counter() if counter is None else counter
        eos = WordVocab.EOS
        for line in lines:
            counter.update(line.split())
            counter[eos] += 1
        return counter

    @classmethod
    def from_counts(cls, counts, min_freq=1, max_size=None):
        """Vocabulary from a Counter whose insertion order is first occurrence: tokens with count >= min_freq,
        most frequent first, ties in order of first occurrence; "<eos>" is kept whatever its count; "<unk>" is
        added at the end if it did not make it; max_size caps the total, the specials included."""
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep first-occurrence order
        keep = [t for t, c in ranked if c >= min_freq or t == cls.EOS]
        if cls.UNK not in keep:
            keep.append(cls.UNK)
        if cls.EOS not in keep:
            keep.append(cls.EOS)
        if max_size is not None and len(keep) > max_size:
            if max_size < 2:
                raise DataError(f"max_size={max_size}: a word vocabulary needs room for <eos> and <unk>")
            allowed = {cls.EOS, cls.UNK}
            allowed.update([t for t in keep if t not in allowed][:max_size - 2])
            keep = [t for t in keep if t in allowed]
        return cls(keep)

    @classmethod
    def build(cls, lines, min_freq=1, max_size=None):
        """Vocabulary of an iterable of lines (the training split only): see count() and from_counts()."""
        return cls.from_counts(cls.count(lines), min_freq=min_freq, max_size=max_size)

    @classmethod
    def load_txt(cls, path):
        path = os.fspath(path)
        try:
            with open(path, "r", encoding="utf-8", newline="\n") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read a word vocabulary: {e}") from None
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            return cls(tokens)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    @property
    def vocab_size(self):
        return len(self.itos)

    def _options(self):
        return {"eos_token": self.EOS, "unk_token": self.UNK}

    def _entries(self):
        return self.itos

    def _write_files(self, directory):
        with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
            for t in self.itos:
                f.write(t + "\n")
        return ["vocab.txt"]

    def encode_lines(self, lines):
        """lines: iterable of complete lines (a trailing line break is ignored). Returns (ids as int64 with one
        <eos> per line, number of tokens that were not in the vocabulary and became <unk>)."""
        stoi, unk, eos = self.stoi, self.unk_id, self.eos_id
        out = []
        n_oov = 0
        for line in lines:
            ids = [stoi.get(w, -1) for w in line.split()]
            if -1 in ids:
                n_oov += ids.count(-1)
                ids = [unk if i < 0 else i for i in ids]
            out.extend(ids)
            out.append(eos)
        return np.array(out, np.int64), n_oov

    def encode(self, text, return_oov=False):
        """text -> int64 ids (see the class docstring for lines); return_oov=True also returns the number of tokens
        mapped to <unk> because they are not in the vocabulary."""
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        last = lines.pop()
        ids, n_oov = self.encode_lines(lines)
        if last.strip():
            words = last.split()
            tail = [self.stoi.get(w, self.unk_id) for w in words]
            n_oov += sum(1 for w in words if w not in self.stoi)
            ids = np.concatenate([ids, np.array(tail, np.int64)])
        return (ids, n_oov) if return_oov else ids

    def decode(self, ids):
        d = self.decoder()
        return d.decode(ids) + d.flush()

    def decoder(self):
        return WordStreamDecoder(self)


class WordStreamDecoder:
    """Incremental decoder for WordVocab: a word is preceded by a space unless it starts a line; "<eos>" is '\\n'."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.at_line_start = True

    def decode(self, ids):
        itos, eos = self.vocab.itos, self.vocab.eos_id
        parts = []
        for i in _as_ids(ids, self.vocab.vocab_size).tolist():
            if i == eos:
                parts.append("\n")
                self.at_line_start = True
            else:
                parts.append(itos[i] if self.at_line_start else " " + itos[i])
                self.at_line_start = False
        return "".join(parts)

    def flush(self):
        return ""


