"""Corpora: a text file or a WikiText directory, encoded once, cached as .npy and memory-mapped, cut into splits.

load_corpus(path, vocab=..., layout=..., cache_dir=...) -> Corpus. Layouts:

"text" (a single file, e.g. enwik8: 100,000,000 bytes, first 90M / next 5M / last 5M bytes): the file is split by
   BYTES at floor(0.90 N) and floor(0.95 N) into train / valid / test, whatever the vocabulary:
     bytes: exactly there; the splits are zero-copy np.memmap views (uint8) of the file, no newline translation.
     chars: each split point moves forward to the next UTF-8 character start (and past the '\\n' of a '\\r\\n' pair).
     any other vocabulary: each split point moves forward to the next line start (a cut inside a line would cut
     a word or a token).
"wikitext" (a directory with wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens, or the raw release's
   wiki.{train,valid,test}.raw): one split per file. words prefer the .tokens files, the tokenizers (gpt2, hf,
   world, cut-down) the .raw files (the HGRN recipe BPE-encodes the raw release); either set is used if it is the
   only one present.
"shakespeare-char" (mru-lm's convention): one text file, character vocabulary, the first int(0.9 * n_chars)
   characters train, the rest valid (Python's int(n * 0.9), as mru-lm computes it), no test split (test is None).
"auto": "wikitext" for a directory, "text" for a file.

Text reading (every vocabulary but bytes): strict UTF-8 (a byte that is not UTF-8 is an error naming its offset)
with universal newlines as RWKV-v2 reads enwik8 (open(..., encoding='utf-8') text mode): '\\r\\n' and a lone '\\r'
become '\\n' before encoding; a byte order mark stays (U+FEFF). The file is read in blocks of a few MB, never whole.
  chars: vocabulary = sorted distinct characters of the whole file (all splits, as v2 builds it from the whole
         file; for wikitext, of the three files), unless a vocabulary is given.
  words: WordVocab convention (one "<eos>" after every line, empty lines included); vocabulary from the training
         split only, unless given; tokens of any split outside it become "<unk>" and are counted (SplitInfo.oov).
  gpt2, hf, world, cut-down: the tokenizer must be given (a Vocab, or the path of its files). "text" layout: the
         text encoded by the tokenizer's encode_blocks (without special tokens; the tokenizer modules say where
         blocks are cut); "wikitext" layout: gpt2 and hf line by line as fairseq's recipe does (encode_lines:
         stripped line + end-of-line token), world and cut-down as in the text layout.

Cache (every vocabulary but bytes): one folder per corpus under cache_dir (default $PADDLE_LRNN_CACHE, else
$XDG_CACHE_HOME/paddle_lrnn/corpora, else ~/.cache/paddle_lrnn/corpora), named
"<name>-<vocab kind>-<layout>-<key>", holding
  tokens.npy   every split's ids concatenated (train, valid, test), .npy format 1.0, the smallest unsigned dtype
               that holds the vocabulary (uint8 / uint16 / uint32), opened with np.load(mmap_mode='r')
  vocab/       the vocabulary, as Vocab.save writes it
  meta.json    format, version, key, identity, layout, vocab kind, dtype, sources (path, size, mtime_ns) and per
               split: token range in tokens.npy, tokens, bytes, chars, lines, oov, source file and byte range.
key = sha256 of: the cache format version, layout, vocabulary kind, the given vocabulary's fingerprint (or "built"
and the build options), the unknown-character option, and for each source file its size, mtime (ns) and the sha256
of its first and last MB. Touching or editing a source file therefore makes a new entry; the older entries of the
same source and options are deleted. A folder is built under a temporary name and renamed when complete (meta.json
written last), under a file lock (fcntl, where available) so that concurrent ranks build it once; a half-written
folder is never read.
"""
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import _text
from .errors import DataError
from .vocab import ByteVocab, CharVocab, Vocab, WordVocab
from .vocab_files import load_vocab

log = logging.getLogger(__name__)

CACHE_FORMAT = "paddle_lrnn.corpus"
CACHE_VERSION = 1
LAYOUTS = ("auto", "text", "wikitext", "shakespeare-char")
VOCAB_KINDS = {"bytes": "bytes", "byte": "bytes", "chars": "chars", "char": "chars", "words": "words",
               "word": "words", "gpt2": "gpt2", "bpe": "gpt2", "hf": "hf", "world": "world", "cut-down": "cut-down"}
TOKENIZER_KINDS = ("gpt2", "hf", "world", "cut-down")  # kinds read from their files, never built from the data
SPLITS = ("train", "valid", "test")
WIKITEXT_FILES = {"tokens": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
                  "raw": ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw")}
_HASH_SPAN = 1 << 20


@dataclass
class SplitInfo:
    """What one split holds. tokens: its length in ids. bytes: UTF-8 bytes of its text as read (after newline
    translation; raw file bytes for the byte vocabulary). chars: characters (None for the byte vocabulary).
    lines: line breaks in it (None for the byte vocabulary). oov: tokens that were outside the vocabulary (words
    mapped to <unk>, characters mapped by the unknown option). source: the file it comes from; byte_range: [start,
    end) byte offsets in that file (None for shakespeare-char, whose split point is a character index)."""
    name: str
    tokens: int
    bytes: int
    chars: object
    lines: object
    oov: int
    source: str
    byte_range: tuple


class Corpus:
    """An encoded corpus. Attributes:
      train, valid, test: 1-D arrays of ids (np.memmap views of the file or of the cache; dtype uint8, uint16 or
                          uint32); test is None for layouts without a test split.
      vocab: the Vocab; unit: vocab.unit; name: e.g. "enwik8"; layout: "text", "wikitext" or "shakespeare-char".
      splits: dict split name -> SplitInfo; bytes_per_split / chars_per_split / tokens_per_split: dicts.
      cache_path: the cache folder (None for the byte vocabulary); from_cache: whether it was read, not built."""

    def __init__(self, name, layout, vocab, arrays, splits, cache_path=None, from_cache=False):
        self.name = name
        self.layout = layout
        self.vocab = vocab
        self.unit = vocab.unit
        self.train = arrays.get("train")
        self.valid = arrays.get("valid")
        self.test = arrays.get("test")
        self.splits = splits
        self.cache_path = cache_path
        self.from_cache = from_cache

    def __getitem__(self, split):
        if split not in SPLITS:
            raise KeyError(split)
        return getattr(self, split)

    @property
    def vocab_size(self):
        return self.vocab.vocab_size

    @property
    def split_names(self):
        return [s for s in SPLITS if getattr(self, s) is not None]

    @property
    def bytes_per_split(self):
        return {s: i.bytes for s, i in self.splits.items()}

    @property
    def chars_per_split(self):
        return {s: i.chars for s, i in self.splits.items()}

    @property
    def tokens_per_split(self):
        return {s: i.tokens for s, i in self.splits.items()}

    def bits_per(self, split, mean_loss, per="byte"):
        """Converts a mean cross-entropy in nats per token, measured on `split`, into bits per "byte", "char" or
        "token": mean_loss / ln 2 * tokens / bytes (or chars). With bytes the split's UTF-8 bytes as read and the
        whole split's token count, so the ratio is exact for a loss averaged over the whole split."""
        info = self.splits[split]
        bits = float(mean_loss) / math.log(2)
        if per == "token":
            return bits
        if per == "byte":
            return bits * info.tokens / info.bytes
        if per == "char":
            if info.chars is None:
                raise DataError("the byte vocabulary does not count characters; report bits per byte")
            return bits * info.tokens / info.chars
        raise ValueError(f"per must be 'byte', 'char' or 'token', got {per!r}")

    def summary(self):
        """One line per split: tokens, bytes, chars, out-of-vocabulary count."""
        rows = [f"{self.name} ({self.layout}, {self.vocab.kind}, vocab_size {self.vocab.vocab_size})"]
        for s, i in self.splits.items():
            rows.append(f"  {s}: {i.tokens:,} tokens, {i.bytes:,} bytes" +
                        (f", {i.chars:,} chars" if i.chars is not None else "") +
                        (f", {i.oov:,} out of vocabulary" if i.oov else ""))
        return "\n".join(rows)

    def __repr__(self):
        return (f"Corpus(name={self.name!r}, layout={self.layout!r}, vocab={self.vocab!r}, "
                f"tokens={self.tokens_per_split})")

    def check_ctx_len(self, ctx_len):
        """DataError unless every split holds at least ctx_len + 1 tokens (one window and its shifted targets)."""
        for s in self.split_names:
            n = len(getattr(self, s))
            if n < ctx_len + 1:
                info = self.splits[s]
                raise DataError(f"{self.name}: the {s} split has {n:,} tokens ({info.bytes:,} bytes of "
                                f"{info.source}), too few for ctx_len {ctx_len}, which needs at least "
                                f"{ctx_len + 1:,}")


# ---------------------------------------------------------------------------------------------------------- resolving
def default_cache_dir():
    env = os.environ.get("PADDLE_LRNN_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "paddle_lrnn", "corpora")


def _resolve_vocab(vocab):
    """-> (kind, Vocab or None). vocab: a kind name, a Vocab, or a path to a saved vocabulary."""
    if isinstance(vocab, Vocab):
        return vocab.kind, vocab
    if isinstance(vocab, str) and vocab.lower() in VOCAB_KINDS:
        kind = VOCAB_KINDS[vocab.lower()]
        if kind == "bytes":
            return kind, ByteVocab()
        if kind == "gpt2":
            raise DataError("the GPT-2 vocabulary needs its tokenizer files: pass vocab=<directory with vocab.json "
                            "and merges.txt> or vocab=Gpt2Vocab.from_files(vocab_json, merges_txt)")
        if kind in TOKENIZER_KINDS:
            raise DataError(f"the {kind} vocabulary needs its tokenizer files: pass vocab=<their path>")
        return kind, None
    if isinstance(vocab, (str, os.PathLike)) and os.path.exists(os.fspath(vocab)):
        v = load_vocab(vocab)
        return v.kind, v
    raise DataError(f"vocab={vocab!r}: expected one of bytes, chars, words, gpt2, a Vocab, or the path of a "
                    f"vocabulary (a saved one or a tokenizer's own files)")


def _wikitext_files(directory, kind):
    present = {flavour: [os.path.isfile(os.path.join(directory, n)) for n in names]
               for flavour, names in WIKITEXT_FILES.items()}
    order = ("raw", "tokens") if kind in TOKENIZER_KINDS else ("tokens", "raw")
    for flavour in order:
        if all(present[flavour]):
            return [os.path.join(directory, n) for n in WIKITEXT_FILES[flavour]]
    # name what is missing from the more complete set
    flavour = max(order, key=lambda f: sum(present[f]))
    missing = [n for n, ok in zip(WIKITEXT_FILES[flavour], present[flavour]) if not ok]
    raise DataError(f"{directory}: not a WikiText directory: missing {', '.join(missing)} (expected "
                    f"wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens, or the raw release's wiki.*.raw)")


def _file_signature(path):
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_HASH_SPAN))
        if st.st_size > _HASH_SPAN:
            f.seek(max(_HASH_SPAN, st.st_size - _HASH_SPAN))
            h.update(f.read(_HASH_SPAN))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": h.hexdigest()}


def _safe_name(name):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60] or "corpus"


# ---------------------------------------------------------------------------------------------------------- load
_GIVEN = object()


def load_corpus(path, vocab="chars", *, layout="auto", cache_dir=None, name=None, unknown=_GIVEN, min_freq=1,
                max_size=None, ctx_len=None, block_bytes=_text.DEFAULT_BLOCK_BYTES, rebuild=False):
    """Loads (encoding and caching on first use) a corpus. See the module docstring for layouts and caching.

    path: a text file (layouts "text", "shakespeare-char") or a WikiText directory ("wikitext").
    vocab: "bytes" | "chars" | "words" (built from the data) | a Vocab instance (used as is: e.g. the vocabulary
        of a checkpoint) | the path of a saved vocabulary (load_vocab); GPT-2 BPE needs a Gpt2Vocab or its folder.
    layout: "auto" | "text" | "wikitext" | "shakespeare-char".
    cache_dir: where encoded corpora are cached (default: see default_cache_dir()).
    name: the corpus name (default: the file name without extension, or the directory name).
    unknown: chars only: None (a character outside a given vocabulary is an error naming it, its line and
        column) or a character of the vocabulary to map such characters to (RWKV-v2's run.py uses ' ');
        default: the given CharVocab's own setting (its .unknown), else None.
    min_freq, max_size: words only, when the vocabulary is built (WordVocab.from_counts).
    ctx_len: if given, every split must hold at least ctx_len + 1 tokens (DataError naming the sizes).
    block_bytes: read size for streaming (does not change the result).
    rebuild: build the cache entry again even if it exists.
    Returns a Corpus; raises DataError for bad input."""
    path = os.path.abspath(os.fspath(path))
    if layout not in LAYOUTS:
        raise DataError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory")
    is_dir = os.path.isdir(path)
    if layout == "auto":
        layout = "wikitext" if is_dir else "text"
    if layout == "wikitext" and not is_dir:
        raise DataError(f"{path}: the wikitext layout needs a directory holding wiki.train.tokens, "
                        f"wiki.valid.tokens and wiki.test.tokens")
    if layout != "wikitext" and is_dir:
        raise DataError(f"{path}: is a directory; the {layout} layout needs a single text file (a directory is read "
                        f"with the wikitext layout)")
    kind, given = _resolve_vocab(vocab)
    if unknown is _GIVEN:
        unknown = given.unknown if isinstance(given, CharVocab) else None
    if layout == "shakespeare-char" and kind != "chars":
        raise DataError(f"the shakespeare-char layout uses a character vocabulary, not {kind}")
    if unknown is not None:
        if kind != "chars":
            raise DataError("unknown= maps characters outside a character vocabulary; it applies to chars only")
        if given is not None and unknown not in given.stoi:
            raise DataError(f"unknown={unknown!r} is not in the given vocabulary")
    if name is None:
        base = os.path.basename(path.rstrip(os.sep))
        name = base if is_dir else os.path.splitext(base)[0]

    if layout == "wikitext":
        files = _wikitext_files(path, kind)
    else:
        files = [path]
    sizes = [_text.check_file(f) for f in files]

    # ranges: (split, file, start, end)
    if layout == "wikitext":
        ranges = [(s, f, 0, n) for s, f, n in zip(SPLITS, files, sizes)]
    elif layout == "text":
        n = sizes[0]
        cuts = [n * 90 // 100, n * 95 // 100]
        if kind == "chars":
            cuts = [_text.next_char_boundary(path, c, n) for c in cuts]
        elif kind != "bytes":
            cuts = [_text.next_line_start(path, c, n) for c in cuts]
        bounds = [0, *cuts, n]
        ranges = [(s, path, bounds[i], bounds[i + 1]) for i, s in enumerate(SPLITS)]
        for s, _, a, b in ranges:
            if b <= a:
                raise DataError(f"{path} ({n:,} bytes) is too small to split 90/5/5 by bytes: its {s} split is "
                                f"empty" + (" (split points move to line starts for this vocabulary)"
                                            if kind not in ("bytes", "chars") else ""))
    else:
        ranges = [("all", path, 0, sizes[0])]

    if kind == "bytes":
        corpus = _byte_corpus(name, layout, ranges)
    else:
        corpus = _cached_corpus(name, layout, kind, given, files, ranges, cache_dir, unknown, min_freq, max_size,
                                block_bytes, rebuild)
    if ctx_len is not None:
        corpus.check_ctx_len(int(ctx_len))
    return corpus


def _byte_corpus(name, layout, ranges):
    arrays, splits = {}, {}
    maps = {}
    for s, f, a, b in ranges:
        if f not in maps:
            maps[f] = np.memmap(f, dtype=np.uint8, mode="r")
        arrays[s] = maps[f][a:b]
        splits[s] = SplitInfo(s, b - a, b - a, None, None, 0, f, (a, b))
    return Corpus(name, layout, ByteVocab(), arrays, splits)


# ---------------------------------------------------------------------------------------------------------- caching
class _Lock:
    """An exclusive advisory lock on a file (fcntl.flock); a no-op where fcntl is missing."""

    def __init__(self, path):
        self.path = path
        self.f = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover (Windows)
            return self
        self.f = open(self.path, "a+")
        fcntl.flock(self.f.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.f is not None:
            import fcntl
            fcntl.flock(self.f.fileno(), fcntl.LOCK_UN)
            self.f.close()


def _read_meta(entry):
    try:
        with open(os.path.join(entry, "meta.json"), "r", encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION or not meta.get("complete"):
        return None
    if not os.path.isfile(os.path.join(entry, "tokens.npy")):
        return None
    return meta


def _cached_corpus(name, layout, kind, given, files, ranges, cache_dir, unknown, min_freq, max_size, block_bytes,
                   rebuild):
    cache_dir = os.path.abspath(os.fspath(cache_dir or default_cache_dir()))
    options = {"unknown": unknown}
    if given is None and kind == "words":
        options.update(min_freq=min_freq, max_size=max_size)
    identity_src = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "layout": layout, "kind": kind,
                    "vocab": given.fingerprint() if given is not None else "built", "options": options,
                    "paths": files}
    identity = hashlib.sha256(json.dumps(identity_src, sort_keys=True).encode()).hexdigest()
    key_src = dict(identity_src, paths=None, sources=[_file_signature(f) for f in files])
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    prefix = f"{_safe_name(name)}-{kind}-{layout}-"
    entry = os.path.join(cache_dir, prefix + key[:20])

    meta = None if rebuild else _read_meta(entry)
    if meta is None:
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create the cache directory {cache_dir}: {e}; pass cache_dir=") from None
        with _Lock(entry + ".lock"):
            meta = None if rebuild else _read_meta(entry)  # another process may have built it meanwhile
            if meta is None:
                _remove_partial(cache_dir, os.path.basename(entry))
                meta = _build_entry(entry, cache_dir, name, layout, kind, given, files, ranges, unknown, min_freq,
                                    max_size, block_bytes, key, identity)
                _remove_stale(cache_dir, prefix, identity, entry)
                from_cache = False
            else:
                from_cache = True
    else:
        from_cache = True

    vocab = given if given is not None else load_vocab(os.path.join(entry, "vocab"))
    if given is None and kind == "chars" and unknown is not None:
        vocab.set_unknown(unknown)
    tokens = np.load(os.path.join(entry, "tokens.npy"), mmap_mode="r")
    arrays, splits = {}, {}
    for s, d in meta["splits"].items():
        arrays[s] = tokens[d["start"]:d["end"]]
        splits[s] = SplitInfo(s, d["tokens"], d["bytes"], d["chars"], d["lines"], d["oov"], d["source"],
                              None if d["byte_range"] is None else tuple(d["byte_range"]))
    return Corpus(name, layout, vocab, arrays, splits, cache_path=entry, from_cache=from_cache)


def _remove_partial(cache_dir, base):
    """Removes leftovers of interrupted builds of this entry (temporary folders, a folder without a valid meta)."""
    for n in os.listdir(cache_dir):
        p = os.path.join(cache_dir, n)
        if (n.startswith(base + ".tmp-") or n == base) and os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)


def _remove_stale(cache_dir, prefix, identity, keep):
    """Deletes older entries of the same sources and options (their source files changed since)."""
    for n in os.listdir(cache_dir):
        p = os.path.join(cache_dir, n)
        if n.startswith(prefix) and ".tmp-" not in n and os.path.isdir(p) and p != keep:
            meta = _read_meta(p)
            if meta is not None and meta.get("identity") == identity:
                shutil.rmtree(p, ignore_errors=True)
                try:
                    os.remove(p + ".lock")
                except OSError:
                    pass


def _build_entry(entry, cache_dir, name, layout, kind, given, files, ranges, unknown, min_freq, max_size,
                 block_bytes, key, identity):
    t0 = time.time()
    log.info("encoding %s (%s, %s) into %s", name, layout, kind, entry)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(entry) + ".tmp-", dir=cache_dir)
    try:
        vocab = given
        if vocab is None:
            if kind == "chars":
                seen = set()
                for f in files:
                    for block in _text.TextBlocks(f, block_bytes=block_bytes):
                        seen.update(block)
                vocab = CharVocab(sorted(seen))
            elif kind == "words":
                _, f, a, b = ranges[0]
                counts = None
                for lines in _iter_lines(_text.TextBlocks(f, a, b, block_bytes)):
                    counts = WordVocab.count(lines, counts)
                vocab = WordVocab.from_counts(counts, min_freq=min_freq, max_size=max_size)
        dtype = vocab.dtype
        raw_path = os.path.join(tmp, "tokens.raw")
        stats = []
        with open(raw_path, "wb") as out:
            for s, f, a, b in ranges:
                if layout == "shakespeare-char":  # mru-lm: the first int(n * 0.9) characters train, the rest valid
                    k = int(_count_chars(f, b, block_bytes) * 0.9)
                    st = _encode_range(vocab, kind, layout, f, a, b, out, dtype, unknown, block_bytes, [k])
                    stats += [("train", f, None, st[0]), ("valid", f, None, st[1])]
                else:
                    st = _encode_range(vocab, kind, layout, f, a, b, out, dtype, unknown, block_bytes)
                    stats.append((s, f, [a, b], st[0]))
        n_total = sum(st["tokens"] for *_, st in stats)
        split_meta = {}
        pos = 0
        for s, f, byte_range, st in stats:
            split_meta[s] = dict(st, start=pos, end=pos + st["tokens"], source=f, byte_range=byte_range)
            pos += st["tokens"]
        for s, d in split_meta.items():
            if d["tokens"] == 0:
                raise DataError(f"{d['source']}: the {s} split is empty after encoding")
            if d["oov"] and s != "train":
                log.info("%s: %d tokens of the %s split are not in the vocabulary (mapped to %s)", name, d["oov"],
                         s, "<unk>" if kind == "words" else repr(unknown))

        npy_path = os.path.join(tmp, "tokens.npy")
        with open(npy_path, "wb") as dst, open(raw_path, "rb") as src:
            np.lib.format.write_array_header_1_0(
                dst, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n_total,)})
            shutil.copyfileobj(src, dst, 16 << 20)
        os.remove(raw_path)
        vocab.save(os.path.join(tmp, "vocab"))
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, "identity": identity, "name": name,
                "layout": layout, "vocab_kind": kind, "vocab_size": vocab.vocab_size, "dtype": dtype.name,
                "sources": [dict(path=f, **_file_signature(f)) for f in files], "splits": split_meta,
                "complete": True, "seconds": round(time.time() - t0, 3)}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished the same entry first (only without a working file lock)
            if _read_meta(entry) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:  # a failed write, e.g. a full
            raise type(err)(err.errno, f"{err.strerror} while writing the encoded corpus into the cache (set "  # disk
                            f"PADDLE_LRNN_CACHE to put it elsewhere)", entry) from None
        raise
    log.info("encoded %s: %d tokens in %.1f s", name, n_total, time.time() - t0)
    return meta


def _iter_lines(blocks):
    """str blocks -> lists of complete lines (without '\\n'); a last line without a final newline is included."""
    carry = ""
    for block in blocks:
        lines = (carry + block).split("\n")
        carry = lines.pop()
        if lines:
            yield lines
    if carry:
        yield [carry]


def _count_chars(path, end, block_bytes):
    """Characters (after newline translation) in the bytes [0, end) of path."""
    tb = _text.TextBlocks(path, 0, end, block_bytes)
    for _ in tb:
        pass
    return tb.n_chars


def _locate_char(path, char_index, block_bytes):
    """(line, column) of the character with index char_index in the translated text of path (1-based)."""
    seen, line, last_nl = 0, 1, -1
    for block in _text.TextBlocks(path, block_bytes=block_bytes):
        if seen + len(block) > char_index:
            k = char_index - seen
            line += block.count("\n", 0, k)
            j = block.rfind("\n", 0, k)
            last_nl = seen + j if j >= 0 else last_nl
            return line, char_index - last_nl
        line += block.count("\n")
        j = block.rfind("\n")
        if j >= 0:
            last_nl = seen + j
        seen += len(block)
    return line, char_index - last_nl


def _encode_range(vocab, kind, layout, path, start, end, out, dtype, unknown, block_bytes, char_cuts=()):
    """Encodes bytes [start, end) of path, appending the ids (as dtype) to the open file `out`.

    Returns a list of stats dicts (tokens, bytes, chars, lines, oov): one per segment, the range being cut at the
    character indices char_cuts (chars only; none: one segment)."""
    blocks = _text.TextBlocks(path, start, end, block_bytes)
    out_stats = []

    def emit(ids):
        if len(ids):
            out.write(np.asarray(ids).astype(dtype, copy=False).tobytes())
        return len(ids)

    if kind == "chars":
        cuts = list(char_cuts) + [math.inf]
        seg = {"tokens": 0, "bytes": 0, "chars": 0, "lines": 0, "oov": 0}
        chars_before = 0  # characters of the range before the current piece
        for block in blocks:
            while block:
                room = cuts[len(out_stats)] - chars_before
                piece, block = (block, "") if room >= len(block) else (block[:room], block[room:])
                ids, first = vocab.encode_block(piece, unknown)
                if first >= 0:
                    if unknown is None:
                        index = _count_chars(path, start, block_bytes) + chars_before + first
                        line, col = _locate_char(path, index, block_bytes)
                        raise DataError(f"{path}: " + str(vocab.unknown_error(
                            piece[first], f"at line {line}, column {col} (character offset {index})")))
                    seg["oov"] += int(np.count_nonzero(vocab.encode_block(piece, None)[0] < 0))
                seg["tokens"] += emit(ids)
                seg["chars"] += len(piece)
                seg["bytes"] += len(piece.encode("utf-8", "surrogatepass"))
                seg["lines"] += piece.count("\n")
                chars_before += len(piece)
                if chars_before == cuts[len(out_stats)]:
                    out_stats.append(seg)
                    seg = {"tokens": 0, "bytes": 0, "chars": 0, "lines": 0, "oov": 0}
        while len(out_stats) < len(cuts):
            out_stats.append(seg)
            seg = {"tokens": 0, "bytes": 0, "chars": 0, "lines": 0, "oov": 0}
        return out_stats

    n_tokens = n_oov = 0
    if kind == "words" or (layout == "wikitext" and hasattr(vocab, "encode_lines")):
        for lines in _iter_lines(blocks):
            ids, oov = vocab.encode_lines(lines)
            n_tokens += emit(ids)
            n_oov += oov
    else:
        for ids in vocab.encode_blocks(blocks):
            n_tokens += emit(ids)
    return [{"tokens": n_tokens, "bytes": blocks.n_bytes, "chars": blocks.n_chars, "lines": blocks.n_newlines,
             "oov": n_oov}]


__all__ = ["Corpus", "SplitInfo", "load_corpus", "default_cache_dir"]
