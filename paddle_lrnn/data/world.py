"""The RWKV World vocabulary (`rwkv_vocab_v20230424.txt`, RWKV-LM's RWKV-v5/tokenizer), written here: its tokenizer is
a greedy longest match over the UTF-8 bytes of the text, which none of the `tokenizers` library's models does
(its WordPiece is greedy too, but per pre-tokenised word, with continuation prefixes and a word-length cap).

File format: UTF-8 text, one entry per line (lines end in "\\n", "\\r\\n" or "\\r": the released file uses "\\r\\n"),
    <id> <a Python str or bytes literal> <its length in bytes>
e.g. `300 ' A' 2`, `250 b'\\xf9' 1`; a str stands for its UTF-8 bytes. The released file has ids 1..65529 (id 0,
absent from the file, is the end of text: World models' vocabulary has 65536 rows). The literal is read with
ast.literal_eval (the original eval()s it; nothing in the file is run here), and a line that is not of this form is
an error naming the line. Where two lines hold the same bytes, the later id is the one encode() gives (as the
original's dict does).

encode(text): from the start of the UTF-8 bytes, repeatedly take the longest vocabulary entry that the remaining
bytes begin with (a byte trie; every single byte is an entry of the released file, so each step advances); the ids
equal the original TRIE_TOKENIZER.encode's. decode(ids): the entries' bytes joined and decoded as UTF-8, id 0 as
nothing; where the bytes are not valid UTF-8 each bad sequence becomes U+FFFD (the original returns a single
U+FFFD for the whole text instead). Long texts are encoded in blocks (encode_blocks) with the same ids as one call:
a token starting at byte s reads at most s + (longest entry) bytes, so only tokens that saw that much lookahead are
emitted before the next block arrives.
"""
import ast
import os

import numpy as np

from .errors import DataError
from .vocab import Utf8StreamDecoder, Vocab, _as_ids

WORLD_VOCAB_NAME = "rwkv_vocab_v20230424.txt"
EOT_ID = 0


def _parse_line(line, n, source):
    def bad(why):
        return DataError(f"{source}: line {n} is not a World vocabulary entry '<id> <str or bytes literal> "
                         f"<length in bytes>' ({why}): {line[:80]!r}")

    first, last = line.find(" "), line.rfind(" ")
    if first <= 0 or last <= first:
        raise bad("expected three fields separated by spaces")
    try:
        idx = int(line[:first])
    except ValueError:
        raise bad("the id is not an integer") from None
    if idx < 0:
        raise bad("the id is negative")
    try:
        token = ast.literal_eval(line[first:last].strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise bad("the token is not a Python str or bytes literal") from None
    if isinstance(token, str):
        token = token.encode("utf-8", "surrogatepass")
    if not isinstance(token, bytes) or not token:
        raise bad("the token is not a non-empty str or bytes literal")
    try:
        length = int(line[last:])
    except ValueError:
        raise bad("the length is not an integer") from None
    if length != len(token):
        raise bad(f"the token has {len(token)} bytes, the line says {length}")
    return idx, token


class WorldVocab(Vocab):
    """RWKV's World vocabulary (module docstring). WorldVocab(data, name): the vocabulary file's bytes and the name
    save() writes it under; WorldVocab.from_file(path) reads one."""

    kind = "world"
    unit = "token"

    def __init__(self, data, name=WORLD_VOCAB_NAME, source=None):
        source = source or name
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{source}: not a World vocabulary: not UTF-8 ({e.reason} at byte offset {e.start})") \
                from None
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise DataError(f"{source}: an empty World vocabulary file")
        entries = {}
        for n, line in enumerate(lines, 1):
            idx, token = _parse_line(line, n, source)
            if idx in entries:
                raise DataError(f"{source}: line {n}: id {idx} appears twice")
            entries[idx] = token
        self.data = data
        self.name = name
        self.source = source
        size = max(max(entries), EOT_ID) + 1
        self.tokens = [b""] * size  # id -> bytes; id 0 (end of text) and ids the file lacks decode to nothing
        for i, t in entries.items():
            self.tokens[i] = t
        self.max_len = max(len(t) for t in entries.values())
        self._next = [{}]  # the trie: node -> {byte: child node}; the root is node 0
        self._id = [-1]  # node -> id of the entry ending there, -1 for none
        for i, t in entries.items():  # in file order: a later id of the same bytes replaces an earlier one
            node = 0
            for b in t:
                child = self._next[node].get(b)
                if child is None:
                    child = len(self._id)
                    self._next[node][b] = child
                    self._next.append({})
                    self._id.append(-1)
                node = child
            self._id[node] = i

    @classmethod
    def from_file(cls, path):
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise DataError(f"{path}: cannot read the World vocabulary: {e.strerror or e}") from None
        return cls(data, name=os.path.basename(path), source=path)

    @property
    def vocab_size(self):
        return len(self.tokens)

    @property
    def eot_id(self):
        return EOT_ID

    def _entries(self):
        return [t.hex() for t in self.tokens]

    def _write_files(self, directory):
        with open(os.path.join(directory, self.name), "wb") as f:
            f.write(self.data)
        return [self.name]

    def _greedy(self, data, final):
        """(ids, bytes consumed): greedy longest matches from the start of data; unless final, only tokens that
        start at least max_len bytes before its end (their match cannot change when more bytes follow)."""
        nxt, ids_of = self._next, self._id
        n = len(data)
        stop = n if final else n - self.max_len + 1
        out = []
        i = 0
        while i < n and i < stop:
            node, j, best, end = 0, i, -1, i
            while j < n:
                node = nxt[node].get(data[j])
                if node is None:
                    break
                j += 1
                if ids_of[node] >= 0:
                    best, end = ids_of[node], j
            if best < 0:
                raise DataError(f"{self.source}: the byte 0x{data[i]:02x} at byte offset {i} of the text begins no "
                                f"entry of the World vocabulary")
            out.append(best)
            i = end
        return out, i

    def encode(self, text):
        return np.array(self._greedy(text.encode("utf-8", "surrogatepass"), True)[0], np.int64)

    def encode_blocks(self, blocks):
        carry = b""
        for block in blocks:
            data = carry + block.encode("utf-8", "surrogatepass")
            ids, used = self._greedy(data, False)
            carry = data[used:]
            yield np.array(ids, np.int64)
        yield np.array(self._greedy(carry, True)[0], np.int64)

    def _to_bytes(self, ids):
        tokens = self.tokens
        return b"".join(tokens[i] for i in _as_ids(ids, self.vocab_size).tolist())

    def decode(self, ids):
        return self._to_bytes(ids).decode("utf-8", "replace")

    def decoder(self):
        return Utf8StreamDecoder(self._to_bytes)


def looks_like_world_vocab(path):
    """Whether the file's first line has the World vocabulary's form (cheap: reads at most 4 KiB)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    try:
        _parse_line(line, 1, path)
    except DataError:
        return False
    return True
