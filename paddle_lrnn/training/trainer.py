"""The training loop behind paddle-lrnn-train (tools/train.py): random windows from the training split, Adam(W) with
global-norm clipping and a step-indexed learning-rate schedule, periodic evaluation into metrics.jsonl (evaluation.py),
crash-safe checkpoints, exact resume, a loss-curve PNG, and a generated sample at the end (sampling.py).

Gradient accumulation: batch_size is the number of sequences per update; with grad_accum = k each update runs the
batch as k micro-batches of batch_size / k sequences (mean losses scaled by 1/k, gradients summed), so k changes the
memory needed, not what is trained: the same windows, the same update up to float rounding (fairseq's update-freq).

Data parallel (distributed.py): batch_size is the global batch; each of N ranks trains on batch_size / N of its rows
(in grad_accum micro-batches), the gradients and the loss are averaged over the ranks, and only rank 0 prints and
writes. The sampler's position is the global batch's, so a run may resume with another number of processes.
Mixed precision: amp.py.

    out/metrics.jsonl   one JSON object per evaluation
    out/loss.png        the loss curve
    out/checkpoints/    see checkpoint.py
    out/config.json, out/model.safetensors, out/paddle_lrnn_vocab.json, ...   the final model and its vocabulary
"""
import json
import math
import os
import signal
import time

import numpy as np
import paddle
import paddle.nn.functional as F

from ..data import DEFAULT_CORPUS, BatchSampler, load_corpus
from ..io.atomic import atomic_files
from ..models import AutoModelForCausalLM
from . import checkpoint, metrics
from .amp import MixedPrecision
from .distributed import Parallel, partition
from .evaluation import evaluate
from .recipes import model_config, validate
from .sampling import sample_text
from .schedule import lr_at

# Settings that may differ when resuming: they do not change what the finished steps computed (out: the run's
# directory may have been moved or copied since).
RESUMABLE_CHANGES = {"max_steps", "eval_interval", "eval_iters", "sample_length", "skip_nonfinite", "device",
                     "grad_accum", "deterministic", "amp", "sharding", "out"}
STOP_SIGNALS = ("SIGINT", "SIGTERM")


class TrainingError(ValueError):
    """Training cannot go on (a non-finite loss, or a resume that does not match the run)."""


def resume_config(out_dir, explicit, log=print):
    """The TrainConfig of the run checkpointed in out_dir, for --resume: settings the user gives again must match
    the run's, except those in RESUMABLE_CHANGES, which they may change. Raises TrainingError naming the conflicts."""
    from .recipes import TrainConfig

    path = checkpoint.find_checkpoint(out_dir, log=log)
    with open(os.path.join(path, "trainer_state.json")) as f:
        saved = _with_defaults(json.load(f)["config"])
    if "model_options" in explicit:  # --model-option given again: the options named, over the run's others
        explicit = dict(explicit, model_options={**saved["model_options"], **explicit["model_options"]})
    changed = sorted(k for k, v in explicit.items() if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {explicit[k]!r}" for k in changed)
        raise TrainingError(f"cannot resume {path}: the run was started with other settings ({detail}); "
                            f"drop those flags or train into a new --out")
    cfg = TrainConfig(**{**saved, **explicit})
    validate(cfg)
    return cfg


def _with_defaults(saved):
    """A saved run's settings, with the defaults of settings added since it was saved (they are what it ran with)."""
    from .recipes import TrainConfig

    return {**TrainConfig().to_dict(), **saved}


def set_deterministic():
    """--deterministic: on a GPU, Paddle's kernels that add with atomics in an order that varies from run to run
    switch to fixed-order ones where Paddle has them (embedding gradients; cuDNN), and RWKV-v2's copy head, which
    follows FLAGS_cudnn_deterministic, adds with a one-hot matrix product instead of a scatter. Our own kernels need
    nothing: they use no atomics. CPU runs are deterministic without it."""
    if paddle.is_compiled_with_cuda():
        paddle.set_flags({"FLAGS_cudnn_deterministic": True, "FLAGS_embedding_deterministic": 1})


def make_optimizer(cfg, model, owned=None):
    """Adam or AdamW over the model's parameters with one global-norm clip, unless the model's family defines
    parameter groups (a `parameter_groups(weight_decay, sequence_length, grad_clip)` method returning dicts with
    params, weight_decay, lr_scale and max_grad_norm, as MRUForCausalLM does after mru-lm's train.py): then each
    group gets its own weight decay, a learning rate of lr_scale x the scheduled rate, and its own global-norm clip
    over the group's gradients (None: no clipping), as torch's per-group clip_grad_norm_ does.
    owned: for optimizer-state sharding, the ids of the parameters this rank updates (None: all). The optimizer then
    holds only those and clips nothing: the clip needs every gradient, and clip_gradients applies it before the
    step."""
    def mine(params):
        return [p for p in params if owned is None or id(p) in owned]

    def clip(max_norm):
        return paddle.nn.ClipGradByGlobalNorm(max_norm) if max_norm and owned is None else None

    groups = getattr(model, "parameter_groups", None)
    if groups is None:
        kwargs = dict(learning_rate=cfg.lr, parameters=mine(model.parameters()), beta1=cfg.beta1, beta2=cfg.beta2,
                      epsilon=cfg.eps, grad_clip=clip(cfg.grad_clip))
        if cfg.optimizer == "adamw":
            return paddle.optimizer.AdamW(weight_decay=cfg.weight_decay, **kwargs)
        return paddle.optimizer.Adam(weight_decay=cfg.weight_decay or None, **kwargs)
    groups = groups(weight_decay=cfg.weight_decay, sequence_length=cfg.ctx_len, grad_clip=cfg.grad_clip)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if not p.stop_gradient]
    if sorted(grouped) != sorted(trainable):
        raise RuntimeError(f"{type(model).__name__}.parameter_groups must name every trainable parameter exactly once")
    params = [dict(params=mine(g["params"]), weight_decay=float(g["weight_decay"]), learning_rate=float(g["lr_scale"]),
                   grad_clip=clip(g["max_grad_norm"])) for g in groups]
    params = [g for g in params if g["params"]]  # a shard may own nothing of a group
    kwargs = dict(learning_rate=cfg.lr, parameters=params, beta1=cfg.beta1, beta2=cfg.beta2, epsilon=cfg.eps)
    if cfg.optimizer == "adamw":
        return paddle.optimizer.AdamW(weight_decay=cfg.weight_decay, **kwargs)
    return paddle.optimizer.Adam(**kwargs)  # a group's weight_decay is then an L2 term in its gradients


def clip_gradients(cfg, model):
    """The global-norm clipping make_optimizer's optimizer would apply, done on every gradient in place (for
    optimizer-state sharding, whose optimizers see only their own parameters): per parameter group with its
    max_grad_norm, or over all parameters with cfg.grad_clip, with Paddle's ClipGradByGlobalNorm on the same
    gradients in the same order, so the result is the unsharded optimizer's, bit for bit."""
    groups = getattr(model, "parameter_groups", None)
    if groups is None:
        clips = [(model.parameters(), cfg.grad_clip)]
    else:
        clips = [(g["params"], g["max_grad_norm"])
                 for g in groups(weight_decay=cfg.weight_decay, sequence_length=cfg.ctx_len, grad_clip=cfg.grad_clip)]
    for params, max_norm in clips:
        if not max_norm:
            continue
        params_grads = [(p, p.grad) for p in params if p.grad is not None]
        with paddle.no_grad():
            for (_, grad), (_, clipped) in zip(params_grads, paddle.nn.ClipGradByGlobalNorm(max_norm)(params_grads)):
                grad.set_value(clipped)


class Trainer:
    def __init__(self, cfg, log=print, progress=True):
        self.cfg, self.log, self.progress = cfg, log, progress
        self.stop_signal = None  # a SIGINT / SIGTERM this process received
        self.stopped_by = None  # the signal all ranks agreed to stop for (see _agree)

    # ----------------------------------------------------------------------------------------------- set-up
    def _setup(self):
        cfg = self.cfg
        paddle.set_device(cfg.device)
        self.parallel = par = Parallel.from_environment()
        if not par.is_main:
            self.log, self.progress = (lambda *_: None), False
        if cfg.batch_size % (par.world_size * cfg.grad_accum):
            raise TrainingError(f"--batch-size {cfg.batch_size} (the global batch) is not divisible by "
                                f"{par.world_size} processes x --grad-accum {cfg.grad_accum}: each process trains "
                                f"batch_size / processes sequences as grad_accum micro-batches")
        if cfg.sharding and par.world_size == 1:
            raise TrainingError("--sharding splits the optimizer state over data-parallel processes, and this run "
                                "has one: start it with python -m paddle.distributed.launch --gpus 0,1,... "
                                "tools/train.py ..., or drop --sharding")
        self.precision = MixedPrecision(cfg.amp)
        if cfg.deterministic:
            set_deterministic()
        paddle.seed(cfg.seed)
        data = cfg.data or DEFAULT_CORPUS
        self.corpus = load_corpus(data, vocab=training_vocab(cfg), layout=cfg.layout, ctx_len=cfg.ctx_len)
        self.log(self.corpus.summary())
        self.model = AutoModelForCausalLM.from_config(model_config(cfg, self.corpus.vocab_size))
        self.model.train()
        params = self.model.parameters()
        par.broadcast_parameters(params)  # one seed makes them equal already; this makes sure
        self.owners, owned = None, None
        if cfg.sharding:
            if len(params) < par.world_size:
                raise TrainingError(f"--sharding: the model has {len(params)} parameter tensors, fewer than the "
                                    f"{par.world_size} processes that would share them")
            self.owners = partition(params, par.world_size)
            owned = {id(p) for p, o in zip(params, self.owners) if o == par.rank}
        self.optimizer = make_optimizer(cfg, self.model, owned)
        if par.rank > 0:  # rank 0 keeps the seed's stream (a single process's); the others draw their own dropout
            paddle.seed(rank_seed(cfg.seed, par.rank, 0))
        if hasattr(self.model, "parameter_groups"):
            self.log("parameter groups: " + "; ".join(
                f"{g['name']} ({len(g['params'])} tensors, weight decay {g['weight_decay']:g}, lr x {g['lr_scale']:.4g}"
                f", clip {'none' if g['max_grad_norm'] is None else format(g['max_grad_norm'], '.4g')})"
                for g in self.model.parameter_groups(cfg.weight_decay, cfg.ctx_len, cfg.grad_clip)))
        self.sampler = BatchSampler(self.corpus.train, cfg.batch_size, cfg.ctx_len, seed=cfg.seed)
        self.metrics_path = os.path.join(cfg.out, "metrics.jsonl")
        self.state = dict(step=0, tokens=0, elapsed_s=0.0, loss_sum=0.0, loss_steps=0, skipped=0,
                          world_size=par.world_size, config=cfg.to_dict())
        self.saved_step = None  # the step of the newest checkpoint this run wrote or resumed from
        per_rank = cfg.batch_size // par.world_size
        self.log(f"model: {type(self.model).__name__}, {self.model.num_parameters():,} parameters; "
                 f"{cfg.max_steps:,} steps of {cfg.batch_size} x {cfg.ctx_len} tokens on {cfg.device}"
                 + (f", {_processes(par.world_size)} of {per_rank} sequences" if par.world_size > 1 else "")
                 + (f" ({cfg.grad_accum} micro-batches of {per_rank // cfg.grad_accum})" if cfg.grad_accum > 1 else "")
                 + (f", mixed precision {cfg.amp}" if cfg.amp != "off" else "")
                 + (", optimizer state sharded" if cfg.sharding else ""))

    def _resume(self):
        par = self.parallel
        path = checkpoint.find_checkpoint(self.cfg.out, log=self.log)
        state = checkpoint.load_checkpoint(path, self.model, self.optimizer)
        saved, now = _with_defaults(state["config"]), self.cfg.to_dict()
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
            raise TrainingError(f"cannot resume {path}: the run was started with other settings ({detail}); "
                                f"drop those flags or train into a new --out")
        self.sampler.load_state_dict(state["sampler"])
        saved_world = state.get("world_size", 1)
        if par.rank == 0:
            checkpoint.set_rng_state(state["rng"])
        elif saved_world == par.world_size:
            checkpoint.set_rng_state(state["rank_rng"][par.rank - 1])
        else:  # no saved stream for this rank: a fresh one, a function of the step
            paddle.seed(rank_seed(self.cfg.seed, par.rank, state["step"]))
        self.precision.load_state_dict(state.get("amp"))
        state["config"], state["world_size"] = now, par.world_size
        self.state = {k: v for k, v in state.items() if k not in ("sampler", "rng", "rank_rng", "amp")}
        self.saved_step = self.state["step"]
        if par.is_main:
            metrics.truncate_after(self.metrics_path, self.state["step"])
        self.log(f"resumed from {path} at step {self.state['step']:,}"
                 + (f" (saved by {_processes(saved_world)}, now {_processes(par.world_size)})"
                    if saved_world != par.world_size else ""))

    # --------------------------------------------------------------------------------------------- the loop
    def train(self, resume=False):
        cfg = self.cfg
        if not resume and checkpoint.checkpoint_names(cfg.out):
            # a second run would mix its metrics and checkpoints with the first one's
            raise TrainingError(f"{cfg.out} holds another run's checkpoints: continue it with --resume, or train "
                                f"into a new --out")
        self._setup()
        os.makedirs(cfg.out, exist_ok=True)  # after the set-up: bad data or settings leave no empty directory behind
        if resume:
            self._resume()
        elif self.parallel.is_main and os.path.exists(self.metrics_path):  # a run killed before its first checkpoint
            metrics.truncate_after(self.metrics_path, 0)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        if self.stopped_by is None:
            self._finish()
        return self.state

    def _on_signal(self, signum, frame):
        self.stop_signal = signal.Signals(signum).name

    def _loop(self):
        cfg, st, par = self.cfg, self.state, self.parallel
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=st["step"], unit="step", dynamic_ncols=True)
        since_eval_tokens, since_eval_time = 0, 0.0
        self.wall_start, self.wall_base = time.perf_counter(), st["elapsed_s"]
        while st["step"] < cfg.max_steps and self.stopped_by is None:
            t0 = time.perf_counter()
            lr = lr_at(st["step"], schedule=cfg.schedule, lr=cfg.lr, lr_final=cfg.lr_final,
                       warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps, lr_start=cfg.lr_start,
                       decay_steps=cfg.decay_steps, interval=cfg.schedule_interval)
            self.optimizer.set_lr(lr)
            x, y = self.sampler.next_batch().shard(par.rank, par.world_size)
            loss_value = self._agree(self._accumulate_gradients(x, y))
            if not math.isfinite(loss_value):
                self._nonfinite(loss_value)
                continue
            self._update()
            n_tokens = cfg.batch_size * cfg.ctx_len
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
        if self.stopped_by is not None:
            if self.saved_step != st["step"]:
                self._save()
            self.log(f"stopped by {self.stopped_by} at step {st['step']:,}; checkpoint saved. Continue with the "
                     f"same command and --resume.")

    def _accumulate_gradients(self, x, y):
        """Forward and backward over this rank's rows of the batch (numpy int64 [rows, ctx_len]) in cfg.grad_accum
        micro-batches; leaves the summed gradients of their mean loss (times the fp16 loss scale) in the parameters.
        Returns that mean loss; a non-finite one stops at the micro-batch that made it (the caller then discards the
        gradients)."""
        k = self.cfg.grad_accum
        rows = x.shape[0] // k
        scale = self.precision.loss_scale
        penalty = getattr(self.model, "loss_penalty", None)  # a family's extra loss term (RWKV-4's L2Wrap)
        total = 0.0
        for i in range(k):
            xs, ys = paddle.to_tensor(x[i * rows:(i + 1) * rows]), paddle.to_tensor(y[i * rows:(i + 1) * rows])
            with self.precision.autocast():
                logits = self.model(xs).logits
                loss = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), ys.reshape([-1]))
            value = float(loss)
            if not math.isfinite(value):
                return value
            if penalty is not None:
                loss = loss + penalty(logits)
            loss = loss / k if k > 1 else loss
            (loss * scale if scale != 1.0 else loss).backward()
            total += value
        return total / k

    def _agree(self, loss_value):
        """The batch's mean loss over all ranks (non-finite if any rank's is), and whether any rank received a stop
        signal: then all stop after this update, since a rank that stopped alone would leave the others waiting in
        the next all-reduce. One all-reduce of three numbers; nothing is communicated in a single process."""
        loss_sum, *counts = self.parallel.all_reduce_sum([loss_value] + [self.stop_signal == s for s in STOP_SIGNALS])
        received = [s for s, n in zip(STOP_SIGNALS, counts) if n > 0]
        if received:
            self.stopped_by = self.stop_signal or received[0]
        return loss_sum / self.parallel.world_size

    def _update(self):
        """Averages the gradients over the ranks, unscales them (fp16), clips them and steps the optimizer; under
        --sharding each rank steps its own parameters and broadcasts them. An fp16 update with an inf or NaN
        gradient is skipped (and lowers the loss scale), on every rank alike."""
        params = self.model.parameters()
        self.parallel.all_reduce_gradients(params)
        scaler = self.precision.scaler
        finite = scaler.unscale(params) if scaler is not None else True
        if finite:
            if self.owners is not None:
                clip_gradients(self.cfg, self.model)
            self.optimizer.step()
            if self.owners is not None:
                self.parallel.broadcast_from_owners(params, self.owners)
        if scaler is not None:
            scaler.update(finite)
        self.model.clear_gradients()  # not optimizer.clear_grad(): under --sharding it holds only its own share

    def _nonfinite(self, loss_value):
        st = self.state
        self.model.clear_gradients()
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
                            cfg.eval_iters * cfg.grad_accum, self.parallel, self.precision)
        if not math.isfinite(val_loss):  # the same on every rank (all-reduced): all stop
            self._stop_unsaved(f"the validation loss is {val_loss} after step {st['step']}")
        unit = "char" if self.corpus.unit == "char" else "byte"
        record = dict(step=st["step"], tokens=st["tokens"], train_loss=st["loss_sum"] / max(st["loss_steps"], 1),
                      val_loss=val_loss, val_bpc=self.corpus.bits_per("valid", val_loss, per=unit), bpc_unit=unit,
                      val_ppl=math.exp(min(val_loss, 700.0)), ppl_unit=self.corpus.vocab.unit,
                      tokenization=self.corpus.vocab.kind, lr=lr,
                      tokens_per_s=tokens_per_s, elapsed_s=st["elapsed_s"])
        if self.precision.scaler is not None:
            record["loss_scale"] = self.precision.loss_scale
        if self.parallel.is_main:
            metrics.append_record(self.metrics_path, record)
        self.log(f"step {st['step']:,}: train loss {record['train_loss']:.4f}, val loss {val_loss:.4f}, "
                 f"val {record['val_bpc']:.4f} bits per {unit}, {tokens_per_s:,.0f} tokens/s")
        st["loss_sum"], st["loss_steps"] = 0.0, 0
        self._save()

    def _save(self):
        """Every rank takes part (their random states, and under --sharding their optimizer shards, go to rank 0);
        rank 0 writes."""
        par, step = self.parallel, self.state["step"]
        # a finite loss does not make finite weights (an infinite gradient does not show in the loss of its step);
        # the weights are the same on every rank, so all stop
        bad = next((n for n, p in self.model.named_parameters() if not bool(paddle.isfinite(p).all())), None)
        if bad is not None:
            self._stop_unsaved(f"the weights are not finite after step {step} ({bad})")
        self.state["elapsed_s"] = self.wall_base + time.perf_counter() - self.wall_start
        rngs = par.gather(checkpoint.rng_state())
        optimizer = self.optimizer
        if self.owners is not None:
            shards = par.gather(checkpoint.optimizer_arrays(self.optimizer, self.model))
            optimizer = None if shards is None else {k: v for shard in shards for k, v in shard.items()}
        if par.is_main:
            state = dict(self.state, sampler=self.sampler.state_dict(), rng=rngs[0], rank_rng=rngs[1:],
                         amp=self.precision.state_dict())
            checkpoint.save_checkpoint(self.cfg.out, step, self.model, optimizer, state)
        par.barrier()
        self.saved_step = step

    def _stop_unsaved(self, problem):
        raise TrainingError(f"{problem}; training stopped without saving this state. The last good checkpoint in "
                            f"{os.path.join(self.cfg.out, 'checkpoints')} is kept: resume from it with --resume "
                            f"(perhaps with a lower --lr).")

    def _finish(self):
        cfg = self.cfg
        if not self.parallel.is_main:
            return
        records = metrics.read_records(self.metrics_path)
        if records:
            metrics.plot_losses(records, os.path.join(cfg.out, "loss.png"), title=f"{cfg.model} on {self.corpus.name}")
        self.model.eval()
        with atomic_files(cfg.out) as staging:  # the model and its vocabulary replace an earlier pair together
            self.model.save_pretrained(staging)
            self.corpus.vocab.save(staging)
        self.log(f"saved the model to {cfg.out}")
        if cfg.sample_length:
            self.log(f"sample:\n{sample_text(self.model, self.corpus, cfg.sample_length, cfg.seed)}")


def _processes(n):
    return f"{n} process" + ("es" if n != 1 else "")


def rank_seed(seed, rank, step):
    """Paddle's seed on data-parallel rank > 0 from update `step` on (its dropout masks): rank 0 keeps the run's own
    random stream, as a single process would; the others get independent ones."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def training_vocab(cfg):
    """What load_corpus gets as the vocabulary of a run: cfg.vocab, a kind (built from the data, or with
    cfg.tokenizer read from that path, which must hold that kind) or the path of a tokenizer's files (any kind
    load_vocab reads: a Hugging Face tokenizer.json or folder, GPT-2's files, a World vocabulary, a saved one)."""
    from ..data import DataError, load_vocab
    from ..data.corpus import VOCAB_KINDS
    from ..data.vocab_files import saved_kind

    kind = VOCAB_KINDS.get(str(cfg.vocab).lower())
    if kind is None:
        if cfg.tokenizer:
            raise ValueError(f"--vocab {cfg.vocab} is a path, which names the tokenizer itself: drop --tokenizer")
        if not os.path.exists(cfg.vocab):
            raise DataError(f"--vocab {cfg.vocab}: neither a vocabulary kind ({', '.join(sorted(set(VOCAB_KINDS)))}) "
                            f"nor an existing tokenizer file or directory")
        return load_vocab(cfg.vocab)
    if not cfg.tokenizer:
        return cfg.vocab
    if kind == "gpt2" and os.path.isdir(cfg.tokenizer) and saved_kind(cfg.tokenizer) is None:
        missing = [n for n in ("vocab.json", "merges.txt") if not os.path.isfile(os.path.join(cfg.tokenizer, n))]
        if missing:
            raise DataError(f"--tokenizer {cfg.tokenizer} lacks {' and '.join(missing)}: --vocab gpt2 reads GPT-2's "
                            f"vocab.json and merges.txt from that directory")
    vocab = load_vocab(cfg.tokenizer)
    if vocab.kind != kind:
        raise ValueError(f"--tokenizer {cfg.tokenizer} holds a {vocab.kind} vocabulary, but --vocab is {cfg.vocab}")
    return vocab
