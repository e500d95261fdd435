"""GPT-2's byte-level BPE, implemented here from the published algorithm (no paddlenlp, no tokenizers package).

Gpt2Vocab reads the two files GPT-2 ships, by path, and never downloads anything:
  vocab.json   UTF-8 JSON object {token: id}, ids 0..n-1 (GPT-2: 50,257 entries, "<|endoftext|>" = 50256)
  merges.txt   an optional "#version: ..." first line, then one merge "a b" per line, highest priority first
The algorithm, as GPT-2's encoder applies it:
  1. Pre-tokenisation with GPT-2's pattern
        's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
     GPT-2 runs it with the third-party `regex` module. Here it is compiled with the standard `re` module, \\p{L}
     and \\p{N} spelled out as explicit character classes built from unicodedata (general categories L* and N*) and
     \\s as the 25 code points of Unicode's White_Space property (which is what `regex` matches for \\s). `re` and
     `regex` share the backtracking, leftmost-alternative semantics, so the pieces are the same; the only possible
     difference is for code points that this Python's Unicode database (unicodedata.unidata_version) does not
     assign yet but a newer `regex` does.
  2. Each piece's UTF-8 bytes are mapped to printable characters by GPT-2's byte-to-unicode table: the bytes
     '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves, the other 68 bytes in increasing order become
     U+0100, U+0101, ... (so a space is 'Ġ' U+0120 and '\\n' is 'Ċ' U+010A).
  3. BPE on each piece: start from its single characters; repeatedly take the adjacent pair with the lowest merge
     rank and merge every occurrence of it, left to right without overlap; stop when no adjacent pair has a rank.
     The resulting symbols are looked up in vocab.json.
  decode(ids): the tokens' characters mapped back through the table to bytes, decoded as UTF-8 (invalid or
  incomplete sequences -> U+FFFD); the incremental decoder holds back an incomplete UTF-8 sequence.
Special tokens ("<|endoftext|>") are not recognised inside text passed to encode(): text is encoded literally.
"""
import json
import os
import re
import unicodedata

import numpy as np

from .errors import DataError
from .vocab import Utf8StreamDecoder, Vocab, _as_ids

WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
               "\u2028\u2029\u202f\u205f\u3000")
_WS_SET = frozenset(WHITE_SPACE)

_PATTERN = None


def bytes_to_unicode():
    """GPT-2's table: dict byte value (0..255) -> the one-character string that stands for it."""
    kept = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_ENCODER = bytes_to_unicode()
_BYTE_DECODER = {c: b for b, c in _BYTE_ENCODER.items()}
_BYTE_TRANS = [_BYTE_ENCODER[b] for b in range(256)]


def _category_classes(prefixes):
    """Regex character-class bodies (no brackets), one per general-category prefix ("L", "N"): every code point
    whose category starts with it, as ranges of \\U escapes."""
    ranges = {p: [] for p in prefixes}
    current, start = None, 0
    for cp in range(0x110001):
        cat = unicodedata.category(chr(cp))[0] if cp < 0x110000 else None
        key = cat if cat in ranges else None
        if key != current:
            if current is not None:
                ranges[current].append((start, cp - 1))
            current, start = key, cp
    return [
        "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges[p]) for p in prefixes]


def gpt2_pattern():
    """The compiled GPT-2 pre-tokenisation pattern (built once, about half a second)."""
    global _PATTERN
    if _PATTERN is None:
        letters, numbers = _category_classes(("L", "N"))
        ws = "".join(f"\\U{ord(c):08x}" for c in WHITE_SPACE)
        _PATTERN = re.compile(
            f"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{ws}{letters}{numbers}]+"
            f"|[{ws}]+(?![^{ws}])|[{ws}]+")
    return _PATTERN


def pretokenize(text):
    """GPT-2's pre-tokenisation: the list of pieces (str) that BPE is applied to, in order; "".join gives text."""
    return gpt2_pattern().findall(text)


def safe_cut(text):
    """A cut p > 0, as late in text as is quick to find, such that text[:p] and text[p:] pre-tokenise exactly as text
    does (text[p] is white space and text[p-1] is not: no piece spans p and no lookahead sees past it); -1 if text
    has no such place. Used to encode a long text in blocks."""
    end = len(text)
    while end > 1:  # fast path: the common white space characters
        p = max(text.rfind(" ", 1, end), text.rfind("\n", 1, end), text.rfind("\t", 1, end))
        if p <= 0:
            break
        if text[p - 1] not in _WS_SET:
            return p
        end = p
    p = len(text) - 1  # rare: only uncommon white space, or none
    while p > 0:
        if text[p] in _WS_SET and text[p - 1] not in _WS_SET:
            return p
        p -= 1
    return -1


class Gpt2Vocab(Vocab):
    """GPT-2 byte-level BPE (module docstring), read from GPT-2's tokenizer files by path.

    Gpt2Vocab(encoder, merges, eol_token="\\n"): encoder dict token -> id with ids 0..n-1, merges a list of
    (a, b) pairs by rank. Gpt2Vocab.from_files(vocab_json, merges_txt) / from_dir(directory) read the files.
    eol_token: the token that closes each line when a corpus is encoded line by line (the WikiText recipe of the
    HGRN papers, see encode_lines): "\\n" means GPT-2's own newline token 'Ċ' (id 198 in GPT-2's vocabulary); any
    other value is looked up as a token, e.g. "<|endoftext|>"."""

    kind = "gpt2"
    unit = "bpe token"
    DEFAULT_EOL = "\n"
    CACHE_LIMIT = 200_000

    def __init__(self, encoder, merges, eol_token=DEFAULT_EOL):
        if not isinstance(encoder, dict) or not encoder:
            raise DataError("a GPT-2 vocabulary needs a non-empty {token: id} mapping")
        ids = sorted(encoder.values())
        if ids != list(range(len(encoder))):
            raise DataError(f"the ids of a GPT-2 vocab.json must be 0..{len(encoder) - 1} without gaps or repeats")
        self.encoder = dict(encoder)
        self.itos = [None] * len(encoder)
        for t, i in encoder.items():
            self.itos[i] = t
        self.merges = [tuple(m) for m in merges]
        self.ranks = {}
        for r, pair in enumerate(self.merges):
            self.ranks.setdefault(pair, r)
        self.eol_token = eol_token
        self._cache = {}
        self._bytes = None

    @classmethod
    def from_files(cls, vocab_json, merges_txt, eol_token=DEFAULT_EOL):
        """Reads GPT-2's vocab.json and merges.txt (paths)."""
        vocab_json, merges_txt = os.fspath(vocab_json), os.fspath(merges_txt)
        for p in (vocab_json, merges_txt):
            if not os.path.isfile(p):
                raise DataError(f"{p}: no such file (a GPT-2 tokenizer needs vocab.json and merges.txt)")
        try:
            with open(vocab_json, "r", encoding="utf-8") as f:
                encoder = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"{vocab_json}: not a GPT-2 vocab.json (UTF-8 JSON token -> id): {e}") from None
        if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
            raise DataError(f"{vocab_json}: not a GPT-2 vocab.json (a JSON object token -> integer id)")
        merges = []
        with open(merges_txt, "r", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if (n == 1 and line.startswith("#version")) or not line.strip():
                    continue
                parts = line.split(" ")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise DataError(f"{merges_txt}: line {n} is not a merge 'a b': {line!r}")
                merges.append((parts[0], parts[1]))
        try:
            return cls(encoder, merges, eol_token=eol_token)
        except DataError as e:
            raise DataError(f"{vocab_json}: {e}") from None

    @classmethod
    def from_dir(cls, directory, eol_token=DEFAULT_EOL):
        """Reads vocab.json and merges.txt from one directory."""
        directory = os.fspath(directory)
        return cls.from_files(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
                              eol_token=eol_token)

    @property
    def vocab_size(self):
        return len(self.itos)

    @property
    def eot_id(self):
        """The id of "<|endoftext|>", or None."""
        return self.encoder.get("<|endoftext|>")

    @property
    def eol_id(self):
        """The id that closes each line in encode_lines (see eol_token)."""
        mapped = "".join(_BYTE_TRANS[b] for b in self.eol_token.encode("utf-8"))
        for t in (mapped, self.eol_token):
            if t in self.encoder:
                return self.encoder[t]
        raise DataError(f"the end-of-line token {self.eol_token!r} is not a single token of this vocabulary")

    def _options(self):
        return {"eol_token": self.eol_token}

    def _entries(self):
        return [self.itos, [list(m) for m in self.merges]]

    def _write_files(self, directory):
        with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8", newline="\n") as f:
            json.dump(self.encoder, f, ensure_ascii=False)
        with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write(f"{a} {b}\n")
        return ["vocab.json", "merges.txt"]

    def bpe(self, piece):
        """BPE of one pre-tokenised piece already mapped through the byte table: the list of symbols (str)."""
        parts = list(piece)
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            a, b = best
            merged, out, i, n = a + b, [], 0, len(parts)
            while i < n:
                if i + 1 < n and parts[i] == a and parts[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        return parts

    def _piece_ids(self, piece):
        ids = self._cache.get(piece)
        if ids is None:
            mapped = "".join(_BYTE_TRANS[b] for b in piece.encode("utf-8", "surrogatepass"))
            try:
                ids = [self.encoder[s] for s in self.bpe(mapped)]
            except KeyError as e:
                raise DataError(f"BPE symbol {e.args[0]!r} (from the text {piece!r}) is not in the vocabulary; a "
                                f"GPT-2 vocabulary must hold all 256 byte symbols") from None
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[piece] = ids
        return ids

    def encode_list(self, text):
        out = []
        for piece in gpt2_pattern().findall(text):
            out.extend(self._piece_ids(piece))
        return out

    def encode(self, text):
        """text -> int64 ids, exactly as GPT-2's encoder (module docstring); text is taken literally."""
        return np.array(self.encode_list(text), np.int64)

    def encode_lines(self, lines):
        """The WikiText recipe of the HGRN papers (fairseq's BPE encoder then binariser): each line stripped of
        surrounding white space, BPE-encoded, then followed by the end-of-line id (eol_id); an empty line gives the
        end-of-line id alone. Returns (int64 ids, 0) (no token is ever out of vocabulary)."""
        eol = self.eol_id
        out = []
        for line in lines:
            out.extend(self.encode_list(line.strip()))
            out.append(eol)
        return np.array(out, np.int64), 0

    def token_bytes(self, i):
        """The bytes that token id i stands for."""
        if self._bytes is None:
            self._bytes = [bytes(_BYTE_DECODER[c] for c in t) if all(c in _BYTE_DECODER for c in t)
                           else t.encode("utf-8", "surrogatepass") for t in self.itos]
        return self._bytes[i]

    def _to_bytes(self, ids):
        ids = _as_ids(ids, self.vocab_size).tolist()
        self.token_bytes(0)
        table = self._bytes
        return b"".join(table[i] for i in ids)

    def decode(self, ids):
        return self._to_bytes(ids).decode("utf-8", "replace")

    def decoder(self):
        return Utf8StreamDecoder(self._to_bytes)
