"""Evaluation: the mean loss of a model over in-order windows of a split (evaluate, used by the training loop and by
`paddle-lrnn-train --eval-only`), and of a saved model on a corpus encoded with its own vocabulary
(evaluate_model_dir)."""
import math

import paddle
import paddle.nn.functional as F

from ..data import check_fits, eval_batches, load_corpus, load_vocab
from ..models import AutoModelForCausalLM
from .amp import MixedPrecision
from .distributed import Parallel


def evaluate(model, tokens, batch_size, ctx_len, max_batches, parallel=None, precision=None):
    """Mean cross-entropy (nats per token) over in-order windows of `tokens`, each window from a fresh state.
    parallel: a distributed.Parallel; rank r evaluates batches r, r + N, ... and the sums are all-reduced, so every
    rank returns the mean over all batches. precision: an amp.MixedPrecision to evaluate under (default float32)."""
    parallel = parallel or Parallel()
    model.eval()
    total, count = 0.0, 0
    with paddle.no_grad():
        for i, batch in enumerate(eval_batches(tokens, batch_size, ctx_len, max_batches=max_batches)):
            if i % parallel.world_size != parallel.rank:
                continue
            with (precision or MixedPrecision()).autocast():
                logits = model(paddle.to_tensor(batch.x)).logits
                loss = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]),
                                       paddle.to_tensor(batch.y).reshape([-1]), reduction="sum", ignore_index=-100)
            total += float(loss)
            count += batch.n_tokens
    model.train()
    total, count = parallel.all_reduce_sum([total, count])
    return total / count


def evaluate_model_dir(model_dir, data, split=None, batch_size=8, max_batches=None, layout="auto", ctx_len=None,
                       dtype=None, quantize=None, log=print):
    """Loads a saved model and its vocabulary, encodes `data` with that vocabulary and returns a dict with the mean
    loss on `split` (windows of ctx_len tokens, default the model's, each from a fresh state) in nats per token,
    bits per char or byte, and perplexity per token. split None: "test", or "valid" for a layout without a test
    split (shakespeare-char). The model is loaded as stored, or cast to `dtype`, or quantized (quantize="int8"),
    as from_pretrained does; 16-bit and int8 weights compute with float32 activations on CPU."""
    for flag, value in (("--eval-iters", max_batches), ("--ctx-len", ctx_len)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, quantize=quantize)
    vocab = load_vocab(model_dir)
    check_fits(vocab, model.config.vocab_size, f"the tokenizer in {model_dir}", holder="the model's")
    # a hard context limit of the model (RWKV-v2's ctx_len, MRU's max_sequence_length); recurrent models without
    # one (HGRN2) are evaluated on windows of --ctx-len tokens, 1024 by default
    limit = getattr(model.config, "ctx_len", None) or getattr(model.config, "max_sequence_length", None)
    if ctx_len is not None and limit and ctx_len > limit:
        raise ValueError(f"--ctx-len {ctx_len} exceeds the model's context length {limit}")
    ctx_len = ctx_len or limit or 1024
    corpus = load_corpus(data, vocab=vocab, layout=layout, ctx_len=ctx_len)
    if split is None:
        split = "test" if corpus.test is not None else "valid"
    tokens = corpus[split]
    if tokens is None:
        raise ValueError(f"{data} has no {split} split ({corpus.layout} layout)")
    loss = evaluate(model, tokens, batch_size, ctx_len, max_batches)
    unit = "char" if corpus.unit == "char" else "byte"
    ppl = math.exp(min(loss, 700.0))
    result = dict(split=split, loss=loss, bpc=corpus.bits_per(split, loss, per=unit), bpc_unit=unit, ppl=ppl,
                  ppl_unit=vocab.unit, tokenization=vocab.kind, ctx_len=ctx_len, tokens=int(len(tokens)))
    result[f"{split}_loss"], result[f"{split}_ppl"] = loss, ppl
    log(f"{split}: loss {loss:.4f} nats/token, {result['bpc']:.4f} bits per {unit}, perplexity {result['ppl']:.3f} "
        f"per {vocab.unit}")
    return result
