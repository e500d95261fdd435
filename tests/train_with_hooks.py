"""tools/train.py with test hooks, for the crash tests (tests/test_crash_resume.py). Not a test module.

    python tests/train_with_hooks.py [train.py arguments]

prints "update N" (N = updates done so far) before every update, so that a test can interrupt at a point it
chooses from the progress it sees rather than from the clock. With HOOK_WAIT=N it waits after "update N" until a
signal arrives (then the run stops after update N + 1 whatever the machine's load). With HOOK_PAUSE=PHASE:STEP it
stops inside the writing of checkpoint STEP, prints "paused PHASE STEP" and waits to be killed; PHASE is
  partial    model.safetensors written into the temporary directory, nothing else yet
  renamed    the complete checkpoint renamed into place, `latest` still naming the previous one
The waits end after 10 minutes, should a test forget its child.
"""
import os
import runpy
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from paddle_lrnn.training import checkpoint, trainer  # noqa: E402

phase, _, step = os.environ.get("HOOK_PAUSE", "").partition(":")
wait_at = int(os.environ.get("HOOK_WAIT", "-1"))
signals = []


def pause(name, path):
    if name == phase and os.path.basename(path.rstrip(os.sep)).endswith(f"step-{int(step):08d}"):
        print(f"paused {name} {int(step)}", flush=True)
        time.sleep(600)  # the test kills us long before; a forgotten child still ends
        sys.exit(3)


real_lr_at, real_save_safetensors, real_fsync_dir = trainer.lr_at, checkpoint.save_safetensors, checkpoint._fsync_dir
real_on_signal = trainer.Trainer._on_signal


def on_signal(self, signum, frame):
    signals.append(signum)
    real_on_signal(self, signum, frame)


def lr_at(update, **kwargs):
    print(f"update {update}", flush=True)
    for _ in range(60_000 if update == wait_at else 0):
        if signals:
            break
        time.sleep(0.01)
    return real_lr_at(update, **kwargs)


def save_safetensors(path, arrays):
    real_save_safetensors(path, arrays)
    if os.path.basename(path) == "model.safetensors":
        pause("partial", os.path.dirname(path).rsplit("-", 1)[0])  # the temporary directory: .tmp-step-N-PID


def fsync_dir(path):
    real_fsync_dir(path)
    if os.path.basename(path) == "checkpoints":  # the fsync after the rename, before `latest` moves
        latest_file = os.path.join(path, checkpoint.LATEST)
        latest = open(latest_file).read().strip() if os.path.exists(latest_file) else None
        newest = max(d for d in os.listdir(path) if d.startswith("step-"))
        if newest != latest:
            pause("renamed", newest)


trainer.lr_at, checkpoint.save_safetensors, checkpoint._fsync_dir = lr_at, save_safetensors, fsync_dir
trainer.Trainer._on_signal = on_signal
sys.argv = [os.path.join(os.path.dirname(HERE), "tools", "train.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
