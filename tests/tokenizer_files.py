"""Small tokenizer files in the layouts published checkpoints ship, made with the `tokenizers` library (nothing is
downloaded): each writer trains a tiny model on an excerpt of the embedded corpus plus a Unicode-heavy text, then
writes the files with the same pipeline (normalizer, pre-tokenizer, post-processor, decoder, added tokens) as the
published ones.

  gpt2_files(d)     GPT-2's vocab.json + merges.txt (byte-level BPE, "<|endoftext|>" last)
  hand_gpt2_files(d, merges)  the same two files written by hand: the 256 byte symbols (id = byte value), the
                    given merges, "<|endoftext|>"
  neox_json(path)   GPT-NeoX's 20B_tokenizer.json: NFC, byte-level BPE, "<|endoftext|>" = 0, "<|padding|>" = 1, and
                    runs of 2..24 spaces as added (non-special) tokens at the end of the vocabulary
  llama_dir(d)      Llama-2's tokenizer.json + tokenizer_config.json + special_tokens_map.json: <unk> <s> </s>,
                    the 256 byte-fallback tokens <0x00>..<0xFF>, SentencePiece-style BPE ("▁" for spaces, one
                    prepended), TemplateProcessing "<s> $A"
  unigram_dir(d)    a T5/ALBERT-style Unigram tokenizer.json: Metaspace, "$A </s>" appended
  UNICODE_TEXT      the text the fidelity tests encode (fixtures/tokenizers/unicode.txt, read without newline
                    translation): scripts, emoji (4-byte UTF-8, ZWJ sequences), combining marks, NFC-sensitive
                    pairs, runs of spaces, tabs, CRLF, U+0085 and U+2028, leading and trailing spaces
"""
import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from paddle_lrnn.data import DEFAULT_CORPUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

UNICODE_FILE = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "unicode.txt")
with open(UNICODE_FILE, encoding="utf-8", newline="") as _f:
    UNICODE_TEXT = _f.read()


def austen(chars=60_000):
    with open(DEFAULT_CORPUS, encoding="utf-8") as f:
        return f.read(chars)


def _training_text():
    return [austen(), UNICODE_TEXT]


def _byte_level_bpe(vocab_size, special):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_text(), trainer)
    return tok


def gpt2_files(directory, vocab_size=600):
    """GPT-2's two files: vocab.json (token -> id, "<|endoftext|>" = the last id) and merges.txt."""
    os.makedirs(directory, exist_ok=True)
    tok = _byte_level_bpe(vocab_size, [])
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab["<|endoftext|>"] = len(vocab)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(m + "\n" for m in merges))
    return directory


def gpt2_byte_symbols():
    """GPT-2's table byte -> the character standing for it: the printable bytes '!'..'~', 0xA1..0xAC and
    0xAE..0xFF stand for themselves, the other 68 in increasing order become U+0100, U+0101, ..."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in kept]
    return {**{b: chr(b) for b in kept}, **{b: chr(0x100 + k) for k, b in enumerate(others)}}


def hand_gpt2_files(directory, merges):
    """vocab.json (byte symbols with id = byte value, then one token per merge, then "<|endoftext|>") and
    merges.txt for the given (a, b) merges, highest priority first."""
    os.makedirs(directory, exist_ok=True)
    symbols = gpt2_byte_symbols()
    encoder = {symbols[b]: b for b in range(256)}
    for a, b in merges:
        encoder[a + b] = len(encoder)
    encoder["<|endoftext|>"] = len(encoder)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return directory


def neox_json(path, vocab_size=700):
    """A tokenizer.json in the shape of GPT-NeoX's 20B_tokenizer.json."""
    tok = _byte_level_bpe(vocab_size, ["<|endoftext|>", "<|padding|>"])
    tok.normalizer = normalizers.NFC()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in range(24, 1, -1)])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tok.save(path)
    return path


def llama_dir(directory, vocab_size=700, add_bos=True, add_eos=False, config=None):
    """Llama-2's three files. config: entries that replace tokenizer_config.json's defaults."""
    os.makedirs(directory, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials + byte_tokens, show_progress=False,
                                  limit_alphabet=200)
    tok.train_from_iterator(_training_text(), trainer)
    data = json.loads(tok.to_str())
    for t in data["added_tokens"]:  # the byte tokens are ordinary vocabulary entries in Llama's file
        t["special"] = t["content"] in specials
    data["added_tokens"] = [t for t in data["added_tokens"] if t["special"]]
    data["post_processor"] = None
    data["decoder"] = None
    tok = Tokenizer.from_str(json.dumps(data))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    single = ("<s> " if add_bos else "") + "$A" + (" </s>" if add_eos else "")
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=single + " " + single.replace("$A", "$B"),
        special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>")])
    tok.save(os.path.join(directory, "tokenizer.json"))
    cfg = {"add_bos_token": add_bos, "add_eos_token": add_eos, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "pad_token": None, "clean_up_tokenization_spaces": False, "legacy": False,
           "model_max_length": 2048, "tokenizer_class": "LlamaTokenizer"}
    cfg.update(config or {})
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(directory, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=2)
    return directory


def unigram_dir(directory, vocab_size=500):
    """A Unigram tokenizer.json (T5/ALBERT shape: NFKC, Metaspace, "$A </s>") with its tokenizer_config.json."""
    os.makedirs(directory, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(_training_text(), trainer)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 512,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    return directory
