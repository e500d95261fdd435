"""Finding, reading and checking vocabulary files: load_vocab(path) for every kind, and checkpoint_vocab() which
conversion uses to carry a checkpoint's own tokenizer into the converted folder.

What load_vocab(path) reads, in this order of precedence:
  a folder with paddle_lrnn_vocab.json (or our older tokenizer_config.json)  the kind it names (Vocab.save)
  a folder with inverted_id_map.pt          mru-lm's cut-down tokenizer over the folder's Hugging Face files
  a folder with tokenizer.json              a Hugging Face tokenizer (with tokenizer_config.json and
                                            special_tokens_map.json where present)
  a folder with vocab.json                  RWKV-v2's character vocabulary (UTF-16 with BOM), or with merges.txt
                                            beside it GPT-2's BPE
  a folder with rwkv_vocab_*.txt            RWKV's World vocabulary
  a folder with one *tokenizer.json         e.g. RWKV-4's 20B_tokenizer.json
  a file                                    any of those files by itself: tokenizer.json (any name), an RWKV-v2
                                            vocab.json, GPT-2's vocab.json (merges.txt beside it), a World
                                            vocabulary file, an inverted_id_map.pt (its folder)
"""
import codecs
import fnmatch
import os

from ..io import read_json
from .errors import DataError
from .vocab import CONFIG_FORMAT, CONFIG_VERSION, KINDS, LEGACY_VOCAB_FILE, VOCAB_FILE, ByteVocab, CharVocab, WordVocab

EXPECTED = ("paddle_lrnn_vocab.json, a Hugging Face tokenizer.json, an RWKV-v2 vocab.json, GPT-2's vocab.json + "
            "merges.txt, an RWKV World vocabulary (rwkv_vocab_*.txt) or mru-lm's inverted_id_map.pt beside a "
            "tokenizer")


def _read_config(path):
    config = read_json(path, lambda problem: DataError(f"{path} {problem} (a vocabulary config)"))
    if config.get("format") != CONFIG_FORMAT:
        return None  # another library's file of the name (Hugging Face's tokenizer_config.json)
    if "kind" not in config:
        raise DataError(f"{path}: a paddle_lrnn vocabulary config without 'kind'")
    if config.get("version", 1) > CONFIG_VERSION:
        raise DataError(f"{path}: vocabulary config version {config['version']} is newer than this code reads "
                        f"({CONFIG_VERSION})")
    return config


def _ours(path):
    """(config, its path) of our metadata in the folder, or (None, None)."""
    for name in (VOCAB_FILE, LEGACY_VOCAB_FILE):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            config = _read_config(p)
            if config is not None:
                return config, p
    return None, None


def saved_kind(directory):
    """The kind a saved vocabulary's metadata in `directory` names, or None where there is none."""
    config, _ = _ours(directory)
    return None if config is None else config["kind"]


def _from_config(path, config, config_path):
    from .hf_tokenizer import CutDownVocab, Gpt2Vocab, HFTokenizerVocab
    from .world import WorldVocab

    kind = config["kind"]
    if kind == "bytes":
        vocab = ByteVocab()
    elif kind == "chars":
        vocab = CharVocab.load_v2(os.path.join(path, "vocab.json"), unknown=config.get("unknown_char"))
    elif kind == "words":
        vocab = WordVocab.load_txt(os.path.join(path, "vocab.txt"))
    elif kind == "gpt2":
        vocab = Gpt2Vocab.from_dir(path, eol_token=config.get("eol_token", Gpt2Vocab.DEFAULT_EOL))
    elif kind == "hf":
        vocab = HFTokenizerVocab.from_path(path)
    elif kind == "cut-down":
        vocab = CutDownVocab.from_dir(path)
    elif kind == "world":
        files = config.get("files") or []
        if len(files) != 1:
            raise DataError(f"{config_path}: a World vocabulary names its one file in 'files'")
        vocab = WorldVocab.from_file(os.path.join(path, files[0]))
    else:
        raise DataError(f"{config_path}: unknown vocabulary kind {kind!r} (expected one of {', '.join(KINDS)})")
    if "vocab_size" in config and config["vocab_size"] != vocab.vocab_size:
        raise DataError(f"{config_path}: says vocab_size {config['vocab_size']} but the files hold "
                        f"{vocab.vocab_size} entries")
    return vocab


def _is_utf16_json(path):
    try:
        with open(path, "rb") as f:
            return f.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None


def _in_folder(path):
    """The vocabulary a folder holds without our metadata (module docstring), or None."""
    from .hf_tokenizer import INVERTED_ID_MAP, TOKENIZER_JSON, CutDownVocab, Gpt2Vocab, HFTokenizerVocab
    from .world import WorldVocab

    def has(name):
        return os.path.isfile(os.path.join(path, name))

    if has(INVERTED_ID_MAP):
        return CutDownVocab.from_dir(path)
    if has(TOKENIZER_JSON):
        return HFTokenizerVocab.from_path(path)
    if has("vocab.json"):
        if _is_utf16_json(os.path.join(path, "vocab.json")):
            return CharVocab.load_v2(os.path.join(path, "vocab.json"))
        if has("merges.txt"):
            return Gpt2Vocab.from_dir(path)
    names = sorted(os.listdir(path))
    world = fnmatch.filter(names, "rwkv_vocab_*.txt")
    if world:
        return WorldVocab.from_file(os.path.join(path, world[0]))
    others = fnmatch.filter(names, "*tokenizer.json")
    if len(others) == 1:
        return HFTokenizerVocab.from_path(os.path.join(path, others[0]))
    return None


def _file(path):
    from .hf_tokenizer import INVERTED_ID_MAP, CutDownVocab, Gpt2Vocab, HFTokenizerVocab
    from .world import WorldVocab, looks_like_world_vocab

    name = os.path.basename(path)
    folder = os.path.dirname(os.path.abspath(path))
    if name == INVERTED_ID_MAP:
        return CutDownVocab.from_dir(folder)
    if name.endswith(".json"):
        if _is_utf16_json(path):
            return CharVocab.load_v2(path)
        if name == "vocab.json" and os.path.isfile(os.path.join(folder, "merges.txt")):
            return Gpt2Vocab.from_dir(folder)
        return HFTokenizerVocab.from_path(path)
    if fnmatch.fnmatch(name, "rwkv_vocab_*.txt") or looks_like_world_vocab(path):
        return WorldVocab.from_file(path)
    raise DataError(f"{path}: not a vocabulary file this code reads (expected {EXPECTED})")


def load_vocab(path):
    """The vocabulary at `path` (a folder or a file; module docstring). DataError for anything else."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return _file(path)
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such vocabulary file or directory")
    config, config_path = _ours(path)
    if config is not None:
        return _from_config(path, config, config_path)
    vocab = _in_folder(path)
    if vocab is None:
        raise DataError(f"{path}: no vocabulary found (expected {EXPECTED})")
    return vocab


def check_fits(vocab, model_vocab_size, what, holder="the checkpoint's"):
    """DataError when the vocabulary has more ids than the model's embedding has rows (fewer is fine: published
    models pad their embedding, e.g. World's 65536 rows for 65530 ids)."""
    if vocab.vocab_size > model_vocab_size:
        raise DataError(f"{what} has {vocab.vocab_size} entries but {holder} embedding has {model_vocab_size} rows")


def checkpoint_vocab(src, vocab, model_vocab_size):
    """The vocabulary a conversion stores beside the model: `vocab` (a file or folder, --vocab) when given, else the
    tokenizer files found beside the checkpoint `src` (in the folder src is or sits in, or for mru-lm's
    checkpoints/ folder, the run folder above it); None when there are none. Checked to fit the model; the caller
    saves it (Vocab.save) into the output."""
    if vocab is not None:
        found = load_vocab(vocab)
        check_fits(found, model_vocab_size, f"--vocab {vocab}")
        return found
    src = os.path.abspath(os.fspath(src))
    folders = [src] if os.path.isdir(src) else [os.path.dirname(src)]
    if os.path.basename(folders[0]) == "checkpoints":
        folders.append(os.path.dirname(folders[0]))
    for folder in folders:
        config, config_path = _ours(folder)
        try:
            found = _from_config(folder, config, config_path) if config is not None else _in_folder(folder)
        except DataError as e:
            raise DataError(f"the tokenizer beside the checkpoint is unusable ({e}); name another with --vocab") \
                from None
        if found is not None:
            check_fits(found, model_vocab_size, f"the tokenizer in {folder}")
            return found
    return None
