"""Learning-rate schedules as plain functions of the step (0-based index of the update about to run), so that a
resumed run recomputes exactly the same rates. Each family's recipe picks one (see recipes.py)."""
import math


def lr_at(step, *, schedule, lr, lr_final, warmup_steps, max_steps, lr_start=None, decay_steps=0, interval=1):
    """The learning rate for update `step` (0-based).

    schedule:
      "cosine"       linear warm-up from lr_start (default lr_final) to lr over warmup_steps, then a cosine from lr
                     to lr_final over the remaining steps (RWKV-v2 uses no warm-up: update 1 runs at lr), or over
                     decay_steps when that is > 0 (mru-lm's lr_decay_steps, counted from the end of the warm-up),
                     then lr_final.
      "exponential"  RWKV-4's: linear warm-up from lr_start (default lr_final) to lr, then lr * (lr_final / lr)^progress
                     with progress going from 0 to 1 over the remaining steps (or decay_steps), then lr_final.
      "inverse_sqrt" fairseq's: linear warm-up from lr_start (default 1e-7) to lr, then lr * sqrt(warmup / step).
      "constant"     lr after the warm-up.
    interval > 1: the rate changes only every `interval` updates, update s running at the rate of update
    interval * floor(s / interval) (mru-lm steps its scheduler every schedule_interval micro-steps).
    """
    if interval > 1:
        step = (step // interval) * interval
    if warmup_steps > 0 and step < warmup_steps:
        start = lr_start if lr_start is not None else (1e-7 if schedule == "inverse_sqrt" else lr_final)
        return start + (lr - start) * step / warmup_steps
    if schedule in ("cosine", "exponential"):
        span = decay_steps if decay_steps > 0 else max(max_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        if schedule == "exponential":
            return lr * (lr_final / lr) ** progress  # (recipes.validate asks for lr_final > 0 with it)
        return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "inverse_sqrt":
        return lr * math.sqrt(max(warmup_steps, 1) / max(step, 1)) if warmup_steps > 0 else lr / math.sqrt(max(step, 1))
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected cosine, exponential, inverse_sqrt or "
                     f"constant")
