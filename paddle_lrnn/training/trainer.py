"""The training loop behind tools/train.py: random windows from the training split, Adam(W) with global-norm
clipping and a step-indexed learning-rate schedule, periodic evaluation into metrics.jsonl, crash-safe checkpoints,
exact resume, a loss-curve PNG, and a generated sample at the end.

Gradient accumulation: batch_size is the number of sequences per update; with grad_accum = k each update runs the
batch as k micro-batches of batch_size / k sequences (mean losses scaled by 1/k, gradients summed), so k changes the
memory needed, not what is trained: the same windows, the same update up to float rounding (fairseq's update-freq).

    out/metrics.jsonl   one JSON object per evaluation
    out/loss.png        the loss curve
    out/checkpoints/    see checkpoint.py
    out/config.json, out/model.safetensors, out/tokenizer_config.json, ...   the final model and its vocabulary
"""
import json
import math
import os
import signal
import time

import numpy as np
import paddle
import paddle.nn.functional as F

from ..data import BatchSampler, eval_batches, load_corpus
from ..generation import generate_ids
from ..models import AutoModelForCausalLM
from . import checkpoint, metrics
from .recipes import DEFAULT_CORPUS, model_config
from .schedule import lr_at

# Settings that may differ when resuming: they do not change what the finished steps computed.
RESUMABLE_CHANGES = {"max_steps", "eval_interval", "eval_iters", "sample_length", "skip_nonfinite", "device",
                     "grad_accum"}


class TrainingError(ValueError):
    """Training cannot go on (a non-finite loss, or a resume that does not match the run)."""


def resume_config(out_dir, explicit, log=print):
    """The TrainConfig of the run checkpointed in out_dir, for --resume: settings the user gives again must match
    the run's, except those in RESUMABLE_CHANGES, which they may change. Raises TrainingError naming the conflicts."""
    from .recipes import TrainConfig

    path = checkpoint.find_checkpoint(out_dir, log=log)
    with open(os.path.join(path, "trainer_state.json")) as f:
        saved = _with_defaults(json.load(f)["config"])
    changed = sorted(k for k, v in explicit.items() if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {explicit[k]!r}" for k in changed)
        raise TrainingError(f"cannot resume {path}: the run was started with other settings ({detail}); "
                            f"drop those flags or train into a new --out")
    return TrainConfig(**{**saved, **explicit})


def _with_defaults(saved):
    """A saved run's settings, with the defaults of settings added since it was saved (they are what it ran with)."""
    from .recipes import TrainConfig

    return {**TrainConfig().to_dict(), **saved}


def evaluate(model, tokens, batch_size, ctx_len, max_batches):
    """Mean cross-entropy (nats per token) over in-order windows of `tokens`, each window from a fresh state."""
    model.eval()
    total, count = 0.0, 0
    with paddle.no_grad():
        for batch in eval_batches(tokens, batch_size, ctx_len, max_batches=max_batches):
            logits = model(paddle.to_tensor(batch.x)).logits
            loss = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), paddle.to_tensor(batch.y).reshape([-1]),
                                   reduction="sum", ignore_index=-100)
            total += float(loss)
            count += batch.n_tokens
    model.train()
    return total / count


def make_optimizer(cfg, model):
    """Adam or AdamW over the model's parameters with one global-norm clip, unless the model's family defines
    parameter groups (a `parameter_groups(weight_decay, sequence_length, grad_clip)` method returning dicts with
    params, weight_decay, lr_scale and max_grad_norm, as MRUForCausalLM does after mru-lm's train.py): then each
    group gets its own weight decay, a learning rate of lr_scale x the scheduled rate, and its own global-norm clip
    over the group's gradients (None: no clipping), as torch's per-group clip_grad_norm_ does."""
    groups = getattr(model, "parameter_groups", None)
    if groups is None:
        clip = paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip) if cfg.grad_clip > 0 else None
        kwargs = dict(learning_rate=cfg.lr, parameters=model.parameters(), beta1=cfg.beta1, beta2=cfg.beta2,
                      epsilon=cfg.eps, grad_clip=clip)
        if cfg.optimizer == "adamw":
            return paddle.optimizer.AdamW(weight_decay=cfg.weight_decay, **kwargs)
        return paddle.optimizer.Adam(weight_decay=cfg.weight_decay or None, **kwargs)
    groups = groups(weight_decay=cfg.weight_decay, sequence_length=cfg.ctx_len, grad_clip=cfg.grad_clip)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if not p.stop_gradient]
    if sorted(grouped) != sorted(trainable):
        raise RuntimeError(f"{type(model).__name__}.parameter_groups must name every trainable parameter exactly once")
    params = [dict(params=g["params"], weight_decay=float(g["weight_decay"]), learning_rate=float(g["lr_scale"]),
                   grad_clip=None if g["max_grad_norm"] is None else paddle.nn.ClipGradByGlobalNorm(g["max_grad_norm"]))
              for g in groups]
    kwargs = dict(learning_rate=cfg.lr, parameters=params, beta1=cfg.beta1, beta2=cfg.beta2, epsilon=cfg.eps)
    if cfg.optimizer == "adamw":
        return paddle.optimizer.AdamW(weight_decay=cfg.weight_decay, **kwargs)
    return paddle.optimizer.Adam(**kwargs)  # a group's weight_decay is then an L2 term in its gradients


class Trainer:
    def __init__(self, cfg, log=print, progress=True):
        self.cfg, self.log, self.progress = cfg, log, progress
        self.stop_signal = None

    # ----------------------------------------------------------------------------------------------- set-up
    def _setup(self):
        cfg = self.cfg
        paddle.set_device(cfg.device)
        paddle.seed(cfg.seed)
        data = cfg.data or DEFAULT_CORPUS
        self.corpus = load_corpus(data, vocab=training_vocab(cfg), layout=cfg.layout, ctx_len=cfg.ctx_len)
        self.log(self.corpus.summary())
        self.model = AutoModelForCausalLM.from_config(model_config(cfg, self.corpus.vocab_size))
        self.model.train()
        self.optimizer = make_optimizer(cfg, self.model)
        if hasattr(self.model, "parameter_groups"):
            self.log("parameter groups: " + "; ".join(
                f"{g['name']} ({len(g['params'])} tensors, weight decay {g['weight_decay']:g}, lr x {g['lr_scale']:.4g}"
                f", clip {'none' if g['max_grad_norm'] is None else format(g['max_grad_norm'], '.4g')})"
                for g in self.model.parameter_groups(cfg.weight_decay, cfg.ctx_len, cfg.grad_clip)))
        self.sampler = BatchSampler(self.corpus.train, cfg.batch_size, cfg.ctx_len, seed=cfg.seed)
        self.metrics_path = os.path.join(cfg.out, "metrics.jsonl")
        self.state = dict(step=0, tokens=0, elapsed_s=0.0, loss_sum=0.0, loss_steps=0, skipped=0,
                          config=cfg.to_dict())
        self.log(f"model: {type(self.model).__name__}, {self.model.num_parameters():,} parameters; "
                 f"{cfg.max_steps:,} steps of {cfg.batch_size} x {cfg.ctx_len} tokens on {cfg.device}"
                 + (f" ({cfg.grad_accum} micro-batches of {cfg.batch_size // cfg.grad_accum})"
                    if cfg.grad_accum > 1 else ""))

    def _resume(self):
        path = checkpoint.find_checkpoint(self.cfg.out, log=self.log)
        state = checkpoint.load_checkpoint(path, self.model, self.optimizer)
        saved, now = _with_defaults(state["config"]), self.cfg.to_dict()
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
            raise TrainingError(f"cannot resume {path}: the run was started with other settings ({detail}); "
                                f"drop those flags or train into a new --out")
        self.sampler.load_state_dict(state["sampler"])
        checkpoint.set_rng_state(state["rng"])
        state["config"] = now
        self.state = {k: v for k, v in state.items() if k not in ("sampler", "rng")}
        metrics.truncate_after(self.metrics_path, self.state["step"])
        self.log(f"resumed from {path} at step {self.state['step']:,}")

    # --------------------------------------------------------------------------------------------- the loop
    def train(self, resume=False):
        cfg = self.cfg
        os.makedirs(cfg.out, exist_ok=True)
        self._setup()
        if resume:
            self._resume()
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        if self.stop_signal is None:
            self._finish()
        return self.state

    def _on_signal(self, signum, frame):
        self.stop_signal = signal.Signals(signum).name

    def _loop(self):
        cfg, st = self.cfg, self.state
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=st["step"], unit="step", dynamic_ncols=True)
        since_eval_tokens, since_eval_time = 0, 0.0
        self.wall_start, self.wall_base = time.perf_counter(), st["elapsed_s"]
        while st["step"] < cfg.max_steps and self.stop_signal is None:
            t0 = time.perf_counter()
            lr = lr_at(st["step"], schedule=cfg.schedule, lr=cfg.lr, lr_final=cfg.lr_final,
                       warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps, lr_start=cfg.lr_start,
                       decay_steps=cfg.decay_steps, interval=cfg.schedule_interval)
            self.optimizer.set_lr(lr)
            batch = self.sampler.next_batch()
            loss_value = self._accumulate_gradients(batch.x, batch.y)
            if not math.isfinite(loss_value):
                self._nonfinite(loss_value)
                continue
            self.optimizer.step()
            self.optimizer.clear_grad()
            n_tokens = batch.x.size
            st["step"] += 1
            st["tokens"] += n_tokens
            st["loss_sum"] += loss_value
            st["loss_steps"] += 1
            dt = time.perf_counter() - t0
            since_eval_tokens += n_tokens
            since_eval_time += dt
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{n_tokens / dt:,.0f}")
            if st["step"] % cfg.eval_interval == 0 or st["step"] == cfg.max_steps:
                self._evaluate_and_save(lr, since_eval_tokens / max(since_eval_time, 1e-9))
                since_eval_tokens, since_eval_time = 0, 0.0
        if bar is not None:
            bar.close()
        if self.stop_signal is not None:
            self._save()
            self.log(f"stopped by {self.stop_signal} at step {st['step']:,}; checkpoint saved. Continue with the "
                     f"same command and --resume.")

    def _accumulate_gradients(self, x, y):
        """Forward and backward over the batch (numpy int64 [batch_size, ctx_len]) in cfg.grad_accum micro-batches;
        leaves the summed gradients of the batch's mean loss in the parameters. Returns the batch's mean loss; a
        non-finite one stops at the micro-batch that made it (the caller then discards the gradients)."""
        k = self.cfg.grad_accum
        rows = x.shape[0] // k
        total = 0.0
        for i in range(k):
            xs, ys = paddle.to_tensor(x[i * rows:(i + 1) * rows]), paddle.to_tensor(y[i * rows:(i + 1) * rows])
            logits = self.model(xs).logits
            loss = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), ys.reshape([-1]))
            value = float(loss)
            if not math.isfinite(value):
                return value
            (loss / k if k > 1 else loss).backward()
            total += value
        return total / k

    def _nonfinite(self, loss_value):
        st = self.state
        self.optimizer.clear_grad()
        if not self.cfg.skip_nonfinite:
            raise TrainingError(f"the loss is {loss_value} at step {st['step'] + 1}; training stopped. The last good "
                                f"checkpoint in {os.path.join(self.cfg.out, 'checkpoints')} is kept: resume from it "
                                f"with --resume (perhaps with a lower --lr), or pass --skip-nonfinite to skip such "
                                f"batches.")
        st["skipped"] += 1
        self.log(f"warning: loss {loss_value} at step {st['step'] + 1}; batch skipped ({st['skipped']} so far)")

    def _evaluate_and_save(self, lr, tokens_per_s):
        cfg, st = self.cfg, self.state
        st["elapsed_s"] = self.wall_base + time.perf_counter() - self.wall_start
        # eval_iters batches of batch_size windows, run as micro-batches (the same windows whatever grad_accum is)
        val_loss = evaluate(self.model, self.corpus.valid, cfg.batch_size // cfg.grad_accum, cfg.ctx_len,
                            cfg.eval_iters * cfg.grad_accum)
        unit = "char" if self.corpus.unit == "char" else "byte"
        record = dict(step=st["step"], tokens=st["tokens"], train_loss=st["loss_sum"] / max(st["loss_steps"], 1),
                      val_loss=val_loss, val_bpc=self.corpus.bits_per("valid", val_loss, per=unit), bpc_unit=unit,
                      val_ppl=math.exp(min(val_loss, 700.0)), ppl_unit=self.corpus.vocab.unit,
                      tokenization=self.corpus.vocab.kind, lr=lr,
                      tokens_per_s=tokens_per_s, elapsed_s=st["elapsed_s"])
        metrics.append_record(self.metrics_path, record)
        self.log(f"step {st['step']:,}: train loss {record['train_loss']:.4f}, val loss {val_loss:.4f}, "
                 f"val {record['val_bpc']:.4f} bits per {unit}, {tokens_per_s:,.0f} tokens/s")
        st["loss_sum"], st["loss_steps"] = 0.0, 0
        self._save()

    def _save(self):
        self.state["elapsed_s"] = self.wall_base + time.perf_counter() - self.wall_start
        state = dict(self.state, sampler=self.sampler.state_dict(), rng=checkpoint.rng_state())
        checkpoint.save_checkpoint(self.cfg.out, self.state["step"], self.model, self.optimizer, state)

    def _finish(self):
        cfg = self.cfg
        records = metrics.read_records(self.metrics_path)
        if records:
            metrics.plot_losses(records, os.path.join(cfg.out, "loss.png"), title=f"{cfg.model} on {self.corpus.name}")
        self.model.eval()
        self.model.save_pretrained(cfg.out)
        self.corpus.vocab.save(cfg.out)
        self.log(f"saved the model to {cfg.out}")
        if cfg.sample_length:
            self.log(f"sample:\n{sample_text(self.model, self.corpus, cfg.sample_length, cfg.seed)}")


def evaluate_model_dir(model_dir, data, split=None, batch_size=8, max_batches=None, layout="auto", ctx_len=None,
                       log=print):
    """Loads a saved model and its vocabulary, encodes `data` with that vocabulary and returns a dict with the mean
    loss on `split` (windows of ctx_len tokens, default the model's, each from a fresh state) in nats per token,
    bits per char or byte, and perplexity per token. split None: "test", or "valid" for a layout without a test
    split (shakespeare-char)."""
    from ..data import load_vocab

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    vocab = load_vocab(model_dir)
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


def training_vocab(cfg):
    """What load_corpus gets as the vocabulary of a run: cfg.vocab (a kind), or with cfg.tokenizer the vocabulary
    saved in that directory (GPT-2's vocab.json + merges.txt, or one a paddle_lrnn run saved), which must be of
    kind cfg.vocab."""
    if not cfg.tokenizer:
        return cfg.vocab
    from ..data import DataError, load_vocab
    from ..data.corpus import VOCAB_KINDS
    from ..data.vocab import CONFIG_NAME

    kind = VOCAB_KINDS.get(cfg.vocab.lower(), cfg.vocab)
    if kind == "gpt2" and os.path.isdir(cfg.tokenizer) \
            and not os.path.isfile(os.path.join(cfg.tokenizer, CONFIG_NAME)):
        missing = [n for n in ("vocab.json", "merges.txt") if not os.path.isfile(os.path.join(cfg.tokenizer, n))]
        if missing:
            raise DataError(f"--tokenizer {cfg.tokenizer} lacks {' and '.join(missing)}: --vocab gpt2 reads GPT-2's "
                            f"vocab.json and merges.txt from that directory")
    vocab = load_vocab(cfg.tokenizer)
    if vocab.kind != kind:
        raise ValueError(f"--tokenizer {cfg.tokenizer} holds a {vocab.kind} vocabulary, but --vocab is {cfg.vocab}")
    return vocab


def sample_text(model, corpus, length, seed):
    """A continuation of the first line of the validation split (at most 64 tokens of it), as text."""
    prompt = np.asarray(corpus.valid[:64]).tolist()
    decoder = corpus.vocab.decoder()
    text = decoder.decode(prompt)
    text += decoder.decode(list(generate_ids(model, prompt, length, top_p=0.85, seed=seed)))
    return text + decoder.flush()
