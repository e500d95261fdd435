"""Shared by the training tests: a slice of the embedded corpus, a quiet in-process training run (optionally
stopped as if SIGTERM arrived), and metrics records without their timing fields (which differ between runs)."""
import os

from paddle_lrnn.data import DEFAULT_CORPUS
from paddle_lrnn.training import metrics, trainer as trainer_module
from paddle_lrnn.training.trainer import Trainer

TIMING = {"tokens_per_s", "elapsed_s"}


def austen_excerpt(tmp_path_factory, chars):
    """Path of a text file holding the embedded corpus's first `chars` characters."""
    path = tmp_path_factory.mktemp("data") / "austen-excerpt.txt"
    with open(DEFAULT_CORPUS, encoding="utf-8") as f:
        path.write_text(f.read(chars), encoding="utf-8")
    return str(path)


def run(cfg, resume=False, stop_after=None, trainer_class=Trainer):
    """Trains cfg in this process; returns (the trainer's final state, the trainer). With stop_after, behaves as if
    SIGTERM arrived during update `stop_after` (0-based)."""
    t = trainer_class(cfg, log=lambda *_: None, progress=False)
    real = trainer_module.lr_at
    if stop_after is not None:
        def lr_then_stop(step, **kw):
            if step == stop_after:
                t.stop_signal = "SIGTERM"
            return real(step, **kw)

        trainer_module.lr_at = lr_then_stop
    try:
        return t.train(resume=resume), t
    finally:
        trainer_module.lr_at = real


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def records(out):
    """The run's metrics.jsonl rows in `out`, without timing fields."""
    return without_timing(metrics.read_records(os.path.join(out, "metrics.jsonl")))
