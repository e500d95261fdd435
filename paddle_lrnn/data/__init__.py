"""Data layer: vocabularies (tokenizers), corpora with their splits, and batching. numpy only: importing this
package does not import paddle (the trainer turns the int64 batches into tensors).

  vocab:    ByteVocab, CharVocab (RWKV-v2's vocab.json), WordVocab (WikiText)
  hf_tokenizer: HFTokenizerVocab (any Hugging Face tokenizer.json), Gpt2Vocab (GPT-2's vocab.json + merges.txt),
            CutDownVocab (mru-lm's inverted_id_map.pt), all run by the `tokenizers` library
  world:    WorldVocab (RWKV's World vocabulary, greedy longest match)
  vocab_files: load_vocab(path) for every kind; checkpoint_vocab (the tokenizer a conversion carries)
  corpus:   load_corpus(path, vocab=..., layout=..., cache_dir=...) -> Corpus (.train/.valid/.test memory-mapped)
  batching: BatchSampler (random windows; state_dict / load_state_dict; Batch.shard(rank, world_size)),
            eval_batches (in-order windows with exact target counts)
  errors:   DataError (a ValueError) for every bad input
  DEFAULT_CORPUS: the embedded default corpus, Jane Austen's six novels (public domain; austen/NOTICE), installed
            with the package, so that training without --data works outside a checkout too
"""
import os

from .batching import Batch, BatchSampler, EvalBatch, eval_batches, steps_per_epoch
from .corpus import Corpus, SplitInfo, default_cache_dir, load_corpus
from .errors import DataError
from .hf_tokenizer import CutDownVocab, Gpt2Vocab, HFTokenizerVocab
from .vocab import ByteVocab, CharVocab, Vocab, WordVocab
from .vocab_files import check_fits, checkpoint_vocab, load_vocab
from .world import WorldVocab

DEFAULT_CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "austen", "austen.txt")

__all__ = ["DEFAULT_CORPUS", "Batch", "BatchSampler", "ByteVocab", "CharVocab", "Corpus", "CutDownVocab", "DataError",
           "EvalBatch", "Gpt2Vocab", "HFTokenizerVocab", "SplitInfo", "Vocab", "WordVocab", "WorldVocab", "check_fits",
           "checkpoint_vocab", "default_cache_dir", "eval_batches", "load_corpus", "load_vocab", "steps_per_epoch"]
