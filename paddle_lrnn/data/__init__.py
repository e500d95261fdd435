"""Data layer: vocabularies (tokenizers), corpora with their splits, and batching. numpy only: importing this
package does not import paddle (the trainer turns the int64 batches into tensors).

  vocab:    ByteVocab, CharVocab (RWKV-v2's vocab.json), WordVocab (WikiText), Gpt2Vocab (GPT-2 byte-level BPE),
            load_vocab(directory)
  corpus:   load_corpus(path, vocab=..., layout=..., cache_dir=...) -> Corpus (.train/.valid/.test memory-mapped)
  batching: BatchSampler (random windows; state_dict / load_state_dict; Batch.shard(rank, world_size)),
            eval_batches (in-order windows with exact target counts)
  errors:   DataError (a ValueError) for every bad input
"""
from .batching import Batch, BatchSampler, EvalBatch, eval_batches, steps_per_epoch
from .bpe import Gpt2Vocab
from .corpus import Corpus, SplitInfo, default_cache_dir, load_corpus
from .errors import DataError
from .vocab import ByteVocab, CharVocab, Vocab, WordVocab, load_vocab

__all__ = ["Batch", "BatchSampler", "ByteVocab", "CharVocab", "Corpus", "DataError", "EvalBatch", "Gpt2Vocab",
           "SplitInfo", "Vocab", "WordVocab", "default_cache_dir", "eval_batches", "load_corpus", "load_vocab",
           "steps_per_epoch"]
