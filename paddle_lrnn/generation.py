"""Sampling and the streaming generation loop: the prompt goes through the parallel kernels once, then one token at
a time in step mode with the model's state."""
import math
import time

import numpy as np
import paddle


def check_sampling(temperature=1.0, top_p=1.0, top_a=0.0, top_k=0, alpha_presence=0.0, alpha_frequency=0.0):
    """One clear error for a sampling setting out of range (NaN included), before anything is generated."""
    if not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not 0 <= top_a < math.inf:
        raise ValueError(f"top_a must be a finite number >= 0 (0: off), got {top_a}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0: off), got {top_k}")
    for name, value in (("alpha_presence", alpha_presence), ("alpha_frequency", alpha_frequency)):
        if not -math.inf < value < math.inf:
            raise ValueError(f"{name} must be a finite number (0: off), got {value}")


def check_token_ban(token_ban, vocab_size):
    """The banned ids as a list, or one clear error for an id outside the vocabulary."""
    banned = [int(t) for t in token_ban]
    if any(not 0 <= t < vocab_size for t in banned):
        raise ValueError(f"token_ban holds ids outside the vocabulary [0, {vocab_size}): {banned}")
    return banned


def sample_logits(logits, rng, temperature=1.0, top_p=1.0, top_a=0.0, top_k=0):
    """Draws one token id from a [vocab] float array of logits.

    top_p: keep the most probable tokens until their cumulative probability exceeds top_p (the token that crosses
    the threshold, and ties with it, are kept; RWKV's rule). top_a: drop tokens whose probability is below
    top_a * p_max^2 (RWKV's "top-a"). top_k > 0: then keep at most the top_k most probable (ChatRWKV's order).
    temperature: applied to the kept probabilities as p^(1/temperature), as RWKV does; 0 means greedy."""
    check_sampling(temperature, top_p, top_a, top_k)
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1:
        ordered = np.sort(probs)[::-1]
        crossing = int(np.searchsorted(np.cumsum(ordered), top_p, side="right"))
        probs = np.where(probs < ordered[min(crossing, len(ordered) - 1)], 0.0, probs)
    if top_a > 0:
        probs = np.where(probs < top_a * probs.max() ** 2, 0.0, probs)
    if 0 < top_k < len(probs):
        probs[np.argsort(probs, kind="stable")[:-top_k]] = 0.0
    if temperature != 1:
        probs = probs ** (1.0 / temperature)
    return int(rng.choice(len(probs), p=probs / probs.sum()))


@paddle.no_grad()
def generate_ids(model, prompt_ids, length, *, temperature=1.0, top_p=1.0, top_a=0.0, top_k=0, alpha_presence=0.0,
                 alpha_frequency=0.0, token_ban=(), seed=0, chunk=None):
    """Yields `length` new token ids continuing `prompt_ids` (a non-empty list of ints).

    The prompt is fed through the model's parallel mode in chunks of at most `chunk` tokens (default: the model's
    ctx_len if it has one, else all at once), carrying the state; then each new token is fed alone with the state.
    As ChatRWKV's pipeline does before sampling: the tokens in token_ban are never drawn (e.g. 0, end of text, for
    RWKV-4 Pile models), and a token generated n times so far has alpha_presence + n * alpha_frequency subtracted
    from its logit (the prompt's tokens are not counted)."""
    if not prompt_ids:
        raise ValueError("the prompt must contain at least one token")
    check_sampling(temperature, top_p, top_a, top_k, alpha_presence, alpha_frequency)
    banned = check_token_ban(token_ban, model.config.vocab_size)
    model.eval()
    rng = np.random.default_rng(seed)
    chunk = chunk or getattr(model.config, "ctx_len", None) or len(prompt_ids)
    state = None
    for start in range(0, len(prompt_ids), chunk):
        ids = paddle.to_tensor([prompt_ids[start:start + chunk]], dtype="int64")
        out = model(ids, state=state, use_cache=True)
        state = out.state
    logits = out.logits[0, -1]
    counts = {}
    for i in range(length):
        scores = logits.numpy()
        if banned or counts:
            scores = scores.astype(np.float64)  # (a copy)
            scores[banned] = -np.inf
            for t, n in counts.items():
                scores[t] -= alpha_presence + n * alpha_frequency
        token = sample_logits(scores, rng, temperature, top_p, top_a, top_k)
        if alpha_presence or alpha_frequency:
            counts[token] = counts.get(token, 0) + 1
        yield token
        if i + 1 < length:
            # paddle.full: half the cost of to_tensor from a list (0.1 of 0.2 ms per token, measured)
            out = model(paddle.full([1, 1], token, dtype="int64"), state=state, use_cache=True)
            state, logits = out.state, out.logits[0, -1]



def generate_text(model_dir, prompt, length, *, ignore_eos=False, stats=None, **sampling):
    """Loads the model and vocabulary saved in model_dir and yields the prompt, then the generated text piece by
    piece (a piece is empty while a character is incomplete: one split over byte tokens is printed whole, once).
    Generation stops at the vocabulary's end-of-text token (not printed) unless ignore_eos. Prompt characters
    outside the vocabulary are an error, raised before anything is yielded, as is a vocabulary with more ids than
    the model has rows. stats: a dict that receives prompt_tokens, prompt_seconds (the prompt's forward pass and
    the first sample), decode_tokens, decode_seconds (every later token) and stopped_at_eos."""
    from .data import check_fits, load_vocab
    from .models import AutoModelForCausalLM

    check_sampling(**{k: v for k, v in sampling.items() if k in ("temperature", "top_p", "top_a", "top_k",
                                                                  "alpha_presence", "alpha_frequency")})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")  # (no 16-bit CPU matmul yet)
    check_token_ban(sampling.get("token_ban", ()), model.config.vocab_size)
    try:
        vocab = load_vocab(model_dir)
    except ValueError as err:
        raise ValueError(f"{model_dir} has no usable vocabulary ({err}); convert with --vocab or train with "
                         f"tools/train.py, which saves one") from None
    check_fits(vocab, model.config.vocab_size, f"the tokenizer in {model_dir}", holder="the model's")
    ids = vocab.encode(prompt).tolist()
    if not ids:
        raise ValueError("the prompt is empty after encoding; give at least one character")
    stop = None if ignore_eos else vocab.eot_id
    stats = {} if stats is None else stats
    stats.update(prompt_tokens=len(ids), prompt_seconds=0.0, decode_tokens=0, decode_seconds=0.0,
                 stopped_at_eos=False)
    yield prompt
    decoder = vocab.decoder()
    decoder.decode(ids)  # the decoder continues after the prompt: a word vocabulary then puts a space before the
    # first new word unless the prompt ended a line, a tokenizer that strips the first space (Llama's) keeps it
    start = time.perf_counter()
    first = None
    for token in generate_ids(model, ids, length, **sampling):
        now = time.perf_counter()
        if first is None:
            first = now
            stats["prompt_seconds"] = now - start
        else:
            stats["decode_tokens"] += 1
            stats["decode_seconds"] = now - first
        if token == stop:
            stats["stopped_at_eos"] = True
            break
        yield decoder.decode([token])
    yield decoder.flush()


def speed_report(stats):
    """generate_text's stats as one line: prompt and decoding tokens/s."""
    def rate(n, seconds):
        return f"{n / seconds:,.1f} tokens/s" if seconds > 0 else "- tokens/s"

    line = (f"prompt: {stats['prompt_tokens']} tokens in {stats['prompt_seconds']:.3f} s "
            f"({rate(stats['prompt_tokens'], stats['prompt_seconds'])}); decode: {stats['decode_tokens']} tokens in "
            f"{stats['decode_seconds']:.3f} s ({rate(stats['decode_tokens'], stats['decode_seconds'])})")
    return line + ("; stopped at the end-of-text token" if stats.get("stopped_at_eos") else "")

