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
    """Yields `length` new token ids continuing `prompt_ids`, a non-empty list of ints; or, for a batch, a list of
    such lists (of any lengths), and then each step yields a list with one new id per prompt.

    The prompt is fed through the model's parallel mode in chunks of at most `chunk` tokens (default: the model's
    ctx_len if it has one, else all at once), carrying the state; then each new token is fed alone with the state.
    A batch's prompts are fed in groups of equal length, each row's state taken after its own last token, and the
    states are then decoded together, one call per step for all rows, so that every step reads the weights once
    (rows whose states cannot share a batch, e.g. an MRU with attention at different positions, are decoded in
    as many calls as there are such groups). Each row gets what it would get alone, up to float32 rounding of
    batched products (exactly so with 16-bit or int8 weights on CPU, whose products do not depend on other rows).
    seed: an int (every row samples from a generator seeded with it, as it would alone) or one per prompt.
    As ChatRWKV's pipeline does before sampling: the tokens in token_ban are never drawn (e.g. 0, end of text, for
    RWKV-4 Pile models), and a token generated n times so far in a row has alpha_presence + n * alpha_frequency
    subtracted from its logit (the prompt's tokens are not counted)."""
    batched = len(prompt_ids) > 0 and np.ndim(prompt_ids[0]) > 0
    prompts = [[int(t) for t in p] for p in prompt_ids] if batched else [[int(t) for t in prompt_ids]]
    if not prompts or any(not p for p in prompts):
        raise ValueError("the prompt must contain at least one token" + (" (in every row)" if batched else ""))
    seeds = [int(s) for s in seed] if np.ndim(seed) > 0 else [seed] * len(prompts)  # (a list, tuple or array)
    if len(seeds) != len(prompts):
        raise ValueError(f"seed: {len(seeds)} seeds for {len(prompts)} prompts; give one per prompt, or one int")
    check_sampling(temperature, top_p, top_a, top_k, alpha_presence, alpha_frequency)
    banned = check_token_ban(token_ban, model.config.vocab_size)
    model.eval()
    rngs = [np.random.default_rng(s) for s in seeds]
    groups = _prefilled_groups(model, prompts, chunk or getattr(model.config, "ctx_len", None))
    counts = [{} for _ in prompts]
    tokens = [0] * len(prompts)
    for i in range(length):
        for rows, logits, _ in groups:
            for row, scores in zip(rows, logits.numpy()):
                if banned or counts[row]:
                    scores = scores.astype(np.float64)  # (a copy)
                    scores[banned] = -np.inf
                    for t, n in counts[row].items():
                        scores[t] -= alpha_presence + n * alpha_frequency
                tokens[row] = sample_logits(scores, rngs[row], temperature, top_p, top_a, top_k)
                if alpha_presence or alpha_frequency:
                    counts[row][tokens[row]] = counts[row].get(tokens[row], 0) + 1
        yield list(tokens) if batched else tokens[0]
        if i + 1 < length:
            for g, (rows, _, state) in enumerate(groups):
                # paddle.full: half the cost of to_tensor from a list (0.1 of 0.2 ms per token, measured)
                ids = paddle.full([1, 1], tokens[rows[0]], dtype="int64") if len(rows) == 1 else \
                    paddle.to_tensor([[tokens[r]] for r in rows], dtype="int64")
                out = model(ids, state=state, use_cache=True)
                groups[g] = (rows, out.logits[:, -1], out.state)


def _prefilled_groups(model, prompts, chunk):
    """[(rows, logits of each row's last token [n, V], state of the n rows)]: the prompts fed in groups of equal
    length, their states then batched as far as model.state_layout() allows."""
    by_length = {}
    for row, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(row)
    fed = []
    for n, rows in by_length.items():
        step = chunk or n
        state = None
        for start in range(0, n, step):
            ids = paddle.to_tensor([prompts[r][start:start + step] for r in rows], dtype="int64")
            out = model(ids, state=state, use_cache=True)
            state = out.state
        fed.append((rows, out.logits[:, -1], state))
    if len(fed) == 1:
        return fed
    layout = model.state_layout()
    merged = {}  # the shared entries' bytes -> the groups that can be batched together
    for group in fed:
        shared = tuple(group[2][k].numpy().tobytes() for k in sorted(group[2]) if layout[k][0] is None)
        merged.setdefault(shared, []).append(group)
    return [_batch_groups(layout, parts) for parts in merged.values()]


def _batch_groups(layout, parts):
    """One (rows, logits, state) of several, the states concatenated along their batch axes (see state_layout)."""
    rows = [r for part in parts for r in part[0]]
    logits = paddle.concat([part[1] for part in parts], axis=0)
    state = {}
    for key, value in parts[0][2].items():
        batch_axis, length_axis = layout[key]
        values = [part[2][key] for part in parts]
        if batch_axis is None:
            state[key] = value
            continue
        if length_axis is not None:
            longest = max(v.shape[length_axis] for v in values)
            values = [_pad_front(v, length_axis, longest) for v in values]
        state[key] = paddle.concat(values, axis=batch_axis)
    return rows, logits, state


def _pad_front(value, axis, length):
    missing = length - value.shape[axis]
    if missing == 0:
        return value
    shape = list(value.shape)
    shape[axis] = missing
    return paddle.concat([paddle.zeros(shape, value.dtype), value], axis=axis)


def generate_text(model_dir, prompt, length, *, dtype=None, quantize=None, ignore_eos=False, stats=None,
                  **sampling):
    """Loads the model and vocabulary saved in model_dir and yields the prompt, then the generated text piece by
    piece (a piece is empty while a character is incomplete: one split over byte tokens is printed whole, once).
    The model is loaded as stored (16-bit and int8 weights compute with float32 activations on CPU), or cast to
    `dtype`, or quantized with quantize="int8" (from_pretrained's arguments).
    Generation stops at the vocabulary's end-of-text token (not printed) unless ignore_eos. Prompt characters
    outside the vocabulary are an error, raised before anything is yielded, as is a vocabulary with more ids than
    the model has rows. stats: a dict that receives prompt_tokens, prompt_seconds (the prompt's forward pass and
    the first sample), decode_tokens, decode_seconds (every later token) and stopped_at_eos."""
    from .data import check_fits, load_vocab
    from .models import AutoModelForCausalLM

    check_sampling(**{k: v for k, v in sampling.items() if k in ("temperature", "top_p", "top_a", "top_k",
                                                                  "alpha_presence", "alpha_frequency")})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, quantize=quantize)
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

