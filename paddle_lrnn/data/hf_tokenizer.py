"""Hugging Face tokenizers, run by the `tokenizers` library (Rust; works offline from local files).

  HFTokenizerVocab  any `tokenizer.json` (byte-level BPE such as GPT-2's and GPT-NeoX's 20B_tokenizer.json,
                    SentencePiece-style BPE with byte fallback such as Llama-2's, Unigram, WordPiece, WordLevel),
                    with Hugging Face's `tokenizer_config.json` and `special_tokens_map.json` beside it
  Gpt2Vocab         GPT-2's own two files, vocab.json + merges.txt, built into the same library's byte-level BPE
                    exactly as transformers' GPT2TokenizerFast builds it
  CutDownVocab      mru-lm's TinyStories tokenizer: a Hugging Face tokenizer cut to the ids that occur in the data,
                    `inverted_id_map.pt` (a 1-D int64 tensor: reduced id -> the base tokenizer's id) beside its files

Special tokens, as transformers does it: the text is encoded with the tokenizer.json's post-processor (Llama-2's adds
"<s>" in front, GPT-2's and GPT-NeoX's add nothing). Where tokenizer_config.json sets `add_bos_token` or
`add_eos_token` explicitly, those decide instead, "<s> $A </s>"-style, as the transformers 4 tokenizer classes that
read them do (transformers 5 ignores them when a tokenizer.json is present; published files agree with their
post-processor, so both give the same ids). The BOS/EOS tokens are named by tokenizer_config.json, where a
`special_tokens_map.json` entry overrides them unless the config lists `added_tokens_decoder` (transformers'
precedence). A bare tokenizer.json (RWKV's 20B_tokenizer.json) ends text with "<|endoftext|>" (or "</s>", "<eos>",
"<|end_of_text|>"), the first of them that is a special token of the file. Any truncation or padding stored in the
tokenizer.json is switched off: encode() always returns every token.

decode(ids) is the library decoder's text, special tokens included, without transformers' optional clean-up of the
spaces before punctuation (so decode(encode(text)) gives the text back wherever the tokenizer is lossless).
The incremental decoder decodes a short window of recent ids and emits the new text once it no longer ends in an
incomplete character (U+FFFD), so a character split over byte-fallback tokens (Llama's <0xE4> <0xB8> <0xAD>) or
over byte-level BPE tokens appears whole, once, and a decoder that strips the first space (Llama's) strips it only
at the start of the text.

Long texts (corpora) are encoded by encode_blocks(): byte-level pipelines (GPT-2's pattern over NFC/NFKC or no
normalisation) are cut right before a white-space run that follows a non-space character, where the pattern never
joins the two sides, so the ids equal those of encode() on the whole text; other pipelines (a prepended "▁" makes
every call different at its start) are encoded one line at a time, as SentencePiece reads its training text.
"""
import hashlib
import json
import os

import numpy as np

from ..io import parse_json
from .errors import DataError
from .vocab import Vocab, _as_ids

TOKENIZER_JSON = "tokenizer.json"
HF_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
INVERTED_ID_MAP = "inverted_id_map.pt"
MODEL_TYPES = ("BPE", "Unigram", "WordPiece", "WordLevel")
END_OF_TEXT_TOKENS = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")

# the white space of Unicode's White_Space property: GPT-2's pattern splits there (its \s)
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
               "\u2028\u2029\u202f\u205f\u3000")
_WS_SET = frozenset(WHITE_SPACE)
_LOCAL_NORMALIZERS = (None, "NFC", "NFKC", "NFD", "NFKD")


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("reading Hugging Face tokenizers needs the `tokenizers` package: pip install tokenizers") \
            from None
    return tokenizers


def safe_cut(text):
    """A cut p > 0, as late in text as is quick to find, such that GPT-2's pre-tokenisation pattern gives the same
    pieces for text[:p] and text[p:] as for text (text[p] is white space and text[p-1] is not: no piece spans p and
    no lookahead sees past it); -1 if text has no such place."""
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


def _read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read {what}: {e.strerror or e}") from None


def _read_json(path, what, data=None):
    """The JSON object of `what` at `path` (its bytes already read: `data`)."""
    raw = _read_bytes(path, what) if data is None else data
    return parse_json(raw, lambda problem: DataError(f"{path}: {what} {problem}"))


def _token_text(value):
    """A special token as tokenizer_config.json / special_tokens_map.json write it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class TokenStreamDecoder:
    """Incremental decoding for a decode(ids) -> str that sees whole sequences: decode(ids) returns the text that
    the new ids complete, flush() what is still held back (an incomplete character, as U+FFFD)."""

    def __init__(self, decode):
        self._decode = decode
        self._ids = []  # the window: the last emitted chunk's ids (context), then the ids not emitted yet
        self._read = 0  # ids[:read] were emitted

    def decode(self, ids):
        out = []
        for i in ids:
            self._ids.append(int(i))
            done = self._decode(self._ids[:self._read])
            text = self._decode(self._ids)
            if len(text) > len(done) and not text.endswith("\ufffd"):
                out.append(text[len(done):])
                del self._ids[:self._read]
                self._read = len(self._ids)
        return "".join(out)

    def flush(self):
        done, text = self._decode(self._ids[:self._read]), self._decode(self._ids)
        # a byte-fallback decoder turns a whole run of byte tokens into U+FFFDs when the run ends inside a
        # character, the emitted character before it included: then the held-back ids are decoded alone
        rest = text[len(done):] if text.startswith(done) else self._decode(self._ids[self._read:])
        self._ids, self._read = [], 0
        return rest


class LibraryVocab(Vocab):
    """A vocabulary run by a tokenizers.Tokenizer; subclasses say where it comes from and which files it keeps.

    files: {name: bytes} the files save() writes back verbatim. eot_token: the end-of-text token or None. encode()
    lets the post-processor add its special tokens; corpora (encode_blocks, encode_lines) never get them."""

    unit = "token"
    PIECE = 4096  # characters per piece that encode_blocks hands to the library at once

    def __init__(self, tokenizer, files, eot_token=None, source="tokenizer"):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.files = dict(files)
        self.source = source
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self._size = max(vocab.values()) + 1 if vocab else 0
        if self._size == 0:
            raise DataError(f"{source}: the tokenizer has no tokens")
        self.eot_token = eot_token if eot_token is not None and eot_token in vocab else None
        self._eot_id = None if self.eot_token is None else vocab[self.eot_token]
        self._cuttable = self._splits_like_gpt2()

    def _splits_like_gpt2(self):
        """Whether the pipeline cuts only where GPT-2's pattern does (see encode_blocks)."""
        spec = json.loads(self.tokenizer.to_str())
        norm, pre = spec.get("normalizer"), spec.get("pre_tokenizer")
        norm_type = None if norm is None else norm.get("type")
        # an added token matched across the cut (one mixing white space and other characters) would be split
        mixed = [t for t in spec.get("added_tokens") or []
                 if any(c in _WS_SET for c in t["content"]) and not all(c in _WS_SET for c in t["content"])]
        return (norm_type in _LOCAL_NORMALIZERS and isinstance(pre, dict) and pre.get("type") == "ByteLevel"
                and pre.get("use_regex", True) and not pre.get("add_prefix_space", False) and not mixed)

    @property
    def vocab_size(self):
        return self._size

    @property
    def eot_id(self):
        return self._eot_id

    def _entries(self):
        return {name: _sha256(data) for name, data in sorted(self.files.items())}

    def _options(self):
        return {"eot_token": self.eot_token}

    def _write_files(self, directory):
        for name, data in self.files.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        return sorted(self.files)

    def encode(self, text):
        return np.array(self.tokenizer.encode(text).ids, np.int64)

    def encode_list(self, text):
        """text -> list of ids without special tokens (a piece of a corpus)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_blocks(self, blocks):
        """A long text given as str blocks -> int64 arrays, no special tokens (module docstring: where it is cut)."""
        carry = ""
        for block in blocks:
            text = carry + block
            p = safe_cut(text) if self._cuttable else text.rfind("\n") + 1
            if p <= 0:
                carry = text
                continue
            yield self._encode_pieces(self._pieces(text[:p]))
            carry = text[p:]
        if carry:
            yield self._encode_pieces(self._pieces(carry))

    def _pieces(self, text):
        """text cut where encode_blocks may cut it: at safe cuts about every PIECE characters, or into lines."""
        if not self._cuttable:
            lines = text.split("\n")
            tail = lines.pop()
            return [line + "\n" for line in lines] + ([tail] if tail else [])
        pieces, start = [], 0
        while len(text) - start > self.PIECE:
            p = safe_cut(text[start:start + self.PIECE])
            if p <= 0:
                p = safe_cut(text[start:])
                if p <= 0:
                    break
            pieces.append(text[start:start + p])
            start += p
        pieces.append(text[start:])
        return pieces

    def _encode_pieces(self, pieces):
        # without offsets and over the library's threads: 3x faster than one call on the whole text (measured)
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return np.array([i for e in encode(pieces, add_special_tokens=False) for i in e.ids], np.int64)

    @property
    def eol_id(self):
        """The id of a newline on its own (byte-level 'Ċ', byte-fallback '<0x0A>', or '\\n'): what closes each line
        when a WikiText corpus is encoded line by line (encode_lines)."""
        for t in ("Ċ", "<0x0A>", "\n"):
            i = self.tokenizer.token_to_id(t)
            if i is not None:
                return i
        raise DataError(f"{self.source}: the tokenizer has no single newline token; encode this corpus with the "
                        f"text layout")

    def encode_lines(self, lines):
        """The WikiText recipe (fairseq's binariser): each line stripped, encoded, closed by eol_id; returns (int64
        ids, 0)."""
        eol = self.eol_id
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        out = []
        for e in encode([line.strip() for line in lines], add_special_tokens=False):
            out.extend(e.ids)
            out.append(eol)
        return np.array(out, np.int64), 0

    def _decode_ids(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def decode(self, ids):
        return self._decode_ids(_as_ids(ids, self.vocab_size).tolist())

    def decoder(self):
        return TokenStreamDecoder(self._decode_ids)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------------ tokenizer.json
def _check_model_type(path, spec):
    model = spec.get("model")
    kind = model.get("type") if isinstance(model, dict) else None
    if kind is None and isinstance(model, dict):  # older files leave BPE's type out; the library infers it
        kind = "BPE" if "merges" in model else "Unigram" if isinstance(model.get("vocab"), list) else "WordLevel"
    if kind not in MODEL_TYPES:
        raise DataError(f"{path}: a tokenizer.json of model type {kind!r}, which the tokenizers library does not run "
                        f"(expected one of {', '.join(MODEL_TYPES)})")


def _library_tokenizer(path, data):
    """tokenizers.Tokenizer from the bytes of a tokenizer.json, with one-line errors."""
    spec = _read_json(path, "a Hugging Face tokenizer.json", data)
    if "model" not in spec:
        raise DataError(f"{path}: not a Hugging Face tokenizer.json (no 'model' entry)")
    _check_model_type(path, spec)
    try:
        return _tokenizers().Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # the library raises plain Exception for every malformed file
        first = str(e).strip().splitlines()[:1]
        raise DataError(f"{path}: the tokenizers library cannot read it: {first[0] if first else type(e).__name__}") \
            from None


class HFTokenizerVocab(LibraryVocab):
    """A Hugging Face tokenizer: tokenizer.json (any name, e.g. RWKV's 20B_tokenizer.json) plus, in a folder,
    tokenizer_config.json and special_tokens_map.json (module docstring: how they decide BOS/EOS). Build with
    from_path(file_or_directory)."""

    kind = "hf"

    def __init__(self, tokenizer, files, eot_token=None, bos_eos=None, source="tokenizer.json"):
        """bos_eos: None (the tokenizer.json's post-processor adds the special tokens) or (bos, eos) token strings,
        each None when not added (tokenizer_config.json's add_bos_token / add_eos_token)."""
        self.bos_eos = bos_eos
        if bos_eos is not None:
            tokenizer.post_processor = _template(tokenizer, *bos_eos, source)
        super().__init__(tokenizer, files, eot_token=eot_token, source=source)

    @classmethod
    def from_path(cls, path):
        """path: a tokenizer.json file (saved as tokenizer.json), or a folder holding tokenizer.json and optionally
        tokenizer_config.json and special_tokens_map.json (kept as they are; tokenizer.model and added_tokens.json
        are kept too, for other tools)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            tj = os.path.join(path, TOKENIZER_JSON)
            if not os.path.isfile(tj):
                raise DataError(f"{path}: no {TOKENIZER_JSON} (a Hugging Face tokenizer folder needs it)")
            names = [n for n in (TOKENIZER_JSON, HF_CONFIG, SPECIAL_TOKENS_MAP, "tokenizer.model", "added_tokens.json")
                     if os.path.isfile(os.path.join(path, n))]
            files = {n: _read_bytes(os.path.join(path, n), "a tokenizer file") for n in names}
        else:
            tj = path
            files = {TOKENIZER_JSON: _read_bytes(path, "a Hugging Face tokenizer.json")}
        return cls.from_files(files, source=tj)

    @classmethod
    def from_files(cls, files, source=TOKENIZER_JSON):
        tokenizer = _library_tokenizer(source, files[TOKENIZER_JSON])
        folder = os.path.dirname(source)
        config = _read_json(os.path.join(folder, HF_CONFIG), "a tokenizer_config.json", files[HF_CONFIG]) \
            if HF_CONFIG in files else {}
        specials = {k: config.get(k) for k in ("bos_token", "eos_token")}
        if SPECIAL_TOKENS_MAP in files and "added_tokens_decoder" not in config:
            smap = _read_json(os.path.join(folder, SPECIAL_TOKENS_MAP), "a special_tokens_map.json",
                              files[SPECIAL_TOKENS_MAP])
            specials.update({k: smap[k] for k in specials if smap.get(k) is not None})
        bos, eos = (_token_text(specials[k]) for k in ("bos_token", "eos_token"))
        if eos is None and not config:  # a bare tokenizer.json: its own end-of-text token
            added = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
            eos = next((t for t in END_OF_TEXT_TOKENS if t in added), None)
        bos_eos = None
        if "add_bos_token" in config or "add_eos_token" in config:
            bos_eos = (bos if config.get("add_bos_token") else None, eos if config.get("add_eos_token") else None)
        return cls(tokenizer, files, eot_token=eos, bos_eos=bos_eos, source=source)

    def _options(self):
        return {**super()._options(), "bos_eos": self.bos_eos}


def _template(tokenizer, bos, eos, source):
    processors = _tokenizers().processors
    special = []
    for t in (bos, eos):
        if t is not None:
            i = tokenizer.token_to_id(t)
            if i is None:
                raise DataError(f"{source}: tokenizer_config.json adds the token {t!r}, which is not in the "
                                f"tokenizer")
            special.append((t, i))
    single = " ".join(([f"{bos}:0"] if bos else []) + ["$A:0"] + ([f"{eos}:0"] if eos else []))
    pair = single + " " + " ".join(([f"{bos}:1"] if bos else []) + ["$B:1"] + ([f"{eos}:1"] if eos else []))
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)


# ------------------------------------------------------------------------------------------------------------- GPT-2
class Gpt2Vocab(LibraryVocab):
    """GPT-2's byte-level BPE from its vocab.json (token -> id) and merges.txt ("#version" line, then one "a b" merge
    per line by rank), run by the tokenizers library as transformers' GPT2TokenizerFast runs them: GPT-2's
    pre-tokenisation pattern, byte-level symbols, "<|endoftext|>" a special token (also inside text) and the end of
    text. eol_token: the token that closes each line when a WikiText corpus is encoded line by line (encode_lines):
    "\\n" means GPT-2's newline token 'Ċ'; any other value is looked up as a token, e.g. "<|endoftext|>"."""

    kind = "gpt2"
    unit = "bpe token"
    DEFAULT_EOL = "\n"
    FILES = ("vocab.json", "merges.txt")

    def __init__(self, vocab_json, merges_txt, eol_token=DEFAULT_EOL, source="vocab.json"):
        """vocab_json, merges_txt: the two files' bytes."""
        t = _tokenizers()
        encoder = _read_json(source, "a GPT-2 vocab.json (token -> id)", vocab_json)
        if not encoder or not all(isinstance(v, int) and not isinstance(v, bool) for v in encoder.values()):
            raise DataError(f"{source}: not a GPT-2 vocab.json (a non-empty JSON object token -> integer id)")
        if sorted(encoder.values()) != list(range(len(encoder))):
            raise DataError(f"{source}: the ids of a GPT-2 vocab.json must be 0..{len(encoder) - 1} without gaps "
                            f"or repeats")
        missing = [c for c in t.pre_tokenizers.ByteLevel.alphabet() if c not in encoder]
        if missing:
            raise DataError(f"{source}: {len(missing)} of the 256 byte symbols are missing (e.g. {missing[0]!r}); a "
                            f"GPT-2 vocabulary must hold them all")
        merges = []
        try:
            lines = merges_txt.decode("utf-8").split("\n")
        except UnicodeDecodeError as e:
            raise DataError(f"merges.txt: not UTF-8: {e}") from None
        for n, line in enumerate(lines, 1):
            line = line.rstrip("\r")
            if (n == 1 and line.startswith("#version")) or not line.strip():
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise DataError(f"merges.txt: line {n} is not a merge 'a b': {line!r}")
            merges.append((parts[0], parts[1]))
        tokenizer = t.Tokenizer(t.models.BPE(encoder, merges, dropout=None, continuing_subword_prefix="",
                                             end_of_word_suffix="", fuse_unk=False))
        tokenizer.pre_tokenizer = t.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = t.decoders.ByteLevel()
        tokenizer.post_processor = t.processors.ByteLevel(trim_offsets=False)
        eot = "<|endoftext|>" if "<|endoftext|>" in encoder else None
        if eot:
            tokenizer.add_special_tokens([t.AddedToken(eot, special=True)])
        self.eol_token = eol_token
        super().__init__(tokenizer, {"vocab.json": vocab_json, "merges.txt": merges_txt}, eot_token=eot,
                         source=source)

    @classmethod
    def from_files(cls, vocab_json, merges_txt, eol_token=DEFAULT_EOL):
        """Reads GPT-2's vocab.json and merges.txt (paths)."""
        vocab_json, merges_txt = os.fspath(vocab_json), os.fspath(merges_txt)
        for p in (vocab_json, merges_txt):
            if not os.path.isfile(p):
                raise DataError(f"{p}: no such file (a GPT-2 tokenizer needs vocab.json and merges.txt)")
        return cls(_read_bytes(vocab_json, "a GPT-2 vocab.json"), _read_bytes(merges_txt, "a GPT-2 merges.txt"),
                   eol_token=eol_token, source=vocab_json)

    @classmethod
    def from_dir(cls, directory, eol_token=DEFAULT_EOL):
        directory = os.fspath(directory)
        return cls.from_files(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
                              eol_token=eol_token)

    def _options(self):
        return {**super()._options(), "eol_token": self.eol_token}

    @property
    def eol_id(self):
        mapped = self.tokenizer.encode(self.eol_token, add_special_tokens=False).tokens
        for t in (mapped[0] if len(mapped) == 1 else None, self.eol_token):
            if t is not None and self.tokenizer.token_to_id(t) is not None:
                return self.tokenizer.token_to_id(t)
        raise DataError(f"the end-of-line token {self.eol_token!r} is not a single token of this vocabulary")


# ----------------------------------------------------------------------------------------------------------- mru-lm
class CutDownVocab(Vocab):
    """mru-lm's cut-down tokenizer: a base tokenizer (HFTokenizerVocab, or Gpt2Vocab for a folder without
    tokenizer.json) and the ids of it that occur in the training data, `inverted_id_map` (reduced id i stands for
    the base id inverted_id_map[i]). encode(text) is the base's ids mapped (a base id outside the map is an error
    naming the text it encodes); decode(ids) maps back and decodes with the base's special tokens left out, as
    mru-lm's CutDownTokenizer does; the end of text is the base's, where the map keeps it."""

    kind = "cut-down"

    def __init__(self, base, inverted_id_map, source=INVERTED_ID_MAP):
        inv = np.asarray(inverted_id_map)
        if inv.ndim != 1 or inv.dtype.kind not in "iu" or inv.size == 0:
            raise DataError(f"{source}: expected a non-empty 1-D integer tensor (reduced id -> base id), got "
                            f"{inv.dtype} of shape {list(inv.shape)}")
        inv = inv.astype(np.int64)
        if inv.min() < 0 or inv.max() >= base.vocab_size:
            raise DataError(f"{source}: ids must lie in [0, {base.vocab_size}) of the base tokenizer; found "
                            f"{int(inv.min() if inv.min() < 0 else inv.max())}")
        if len(np.unique(inv)) != len(inv):
            raise DataError(f"{source}: a base id appears more than once")
        self.base = base
        self.inverted_id_map = inv
        self.id_map = np.full(base.vocab_size, -1, np.int64)
        self.id_map[inv] = np.arange(len(inv))
        self.unit = base.unit
        self.source = source
        base_eot = base.eot_id
        self._eot_id = None if base_eot is None or self.id_map[base_eot] < 0 else int(self.id_map[base_eot])
        self._special = {int(self.id_map[i]) for i in _special_ids(base) if self.id_map[i] >= 0}

    @classmethod
    def from_dir(cls, directory):
        from ..io import CheckpointError, load_torch_checkpoint
        directory = os.fspath(directory)
        path = os.path.join(directory, INVERTED_ID_MAP)
        base = HFTokenizerVocab.from_path(directory) if os.path.isfile(os.path.join(directory, TOKENIZER_JSON)) \
            else Gpt2Vocab.from_dir(directory)
        try:
            inv = load_torch_checkpoint(path)
        except CheckpointError as e:
            raise DataError(str(e)) from None
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
        if not isinstance(inv, np.ndarray):
            raise DataError(f"{path}: expected a tensor (mru-lm saves the id map with torch.save), got "
                            f"{type(inv).__name__}")
        return cls(base, inv, source=path)

    @property
    def vocab_size(self):
        return len(self.inverted_id_map)

    @property
    def eot_id(self):
        return self._eot_id

    def _entries(self):
        return [self.base.fingerprint(), self.inverted_id_map.tolist()]

    def _write_files(self, directory):
        from ..io import save_torch_checkpoint
        names = self.base._write_files(directory)
        save_torch_checkpoint(os.path.join(directory, INVERTED_ID_MAP), self.inverted_id_map)
        return names + [INVERTED_ID_MAP]

    def _reduce(self, base_ids, text):
        ids = self.id_map[np.asarray(base_ids, np.int64)]
        if (ids < 0).any():
            k = int(np.argmax(ids < 0))
            piece = self.base.decode([int(base_ids[k])])
            raise DataError(f"the text piece {piece!r} (id {int(base_ids[k])} of the base tokenizer) is not in the "
                            f"cut-down vocabulary ({self.source} keeps {self.vocab_size} of "
                            f"{self.base.vocab_size} ids)" + (f" (in {text[:40]!r})" if text else ""))
        return ids

    def encode(self, text):
        return self._reduce(self.base.encode(text), text)

    def encode_blocks(self, blocks):
        for ids in self.base.encode_blocks(blocks):
            yield self._reduce(ids, None)

    def _decode_ids(self, ids):
        kept = [i for i in ids if i not in self._special]
        return self.base._decode_ids(self.inverted_id_map[np.asarray(kept, np.int64)].tolist())

    def decode(self, ids):
        return self._decode_ids(_as_ids(ids, self.vocab_size).tolist())

    def decoder(self):
        return TokenStreamDecoder(self._decode_ids)


def _special_ids(vocab):
    return [i for i, t in vocab.tokenizer.get_added_tokens_decoder().items() if t.special]


__all__ = ["CutDownVocab", "Gpt2Vocab", "HFTokenizerVocab", "TokenStreamDecoder", "safe_cut"]
