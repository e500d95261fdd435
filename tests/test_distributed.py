"""Data-parallel training on CPU (Paddle's gloo backend), started as the README says, with
`python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py ...`: two processes train what one process
trains with the same global batch, only rank 0 writes, optimizer-state sharding changes no bit, a checkpoint resumes
with another number of processes, and a signal to one rank stops all of them at the same step with a checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_lrnn.io.safetensors import load_safetensors
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.training import checkpoint
from paddle_lrnn.training.distributed import Parallel, partition
from paddle_lrnn.training.recipes import resolve
from paddle_lrnn.training.trainer import Trainer, TrainingError, clip_gradients, make_optimizer
from training_helpers import austen_excerpt, records, run

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILY_SETTINGS = {
    "rwkv2": dict(n_layer=1, n_embd=16),
    "rwkv4": dict(n_layer=2, n_embd=16),
    "hgrn2": dict(n_layer=2, n_embd=16, model_options=dict(expand_ratio=8)),
    # layers [mru, mlp]: its three parameter groups with their own clipping
    "mru": dict(n_layer=1, n_embd=32, model_options=dict(n_state_heads=2, state_size=32)),
}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return austen_excerpt(tmp_path_factory, 60_000)


def settings(corpus_file, out, family, **overrides):
    s = dict(model=family, data=corpus_file, out=str(out), device="cpu", ctx_len=16, batch_size=8, max_steps=4,
             warmup_steps=1, eval_interval=2, eval_iters=2, lr=1e-2, lr_final=1e-3, sample_length=0, seed=3,
             **FAMILY_SETTINGS[family])
    s.update(overrides)
    return s


def cli(s):
    """tools/train.py flags for a settings dict."""
    args = []
    for key, value in s.items():
        if key == "model_options":
            for k, v in value.items():
                args += ["--model-option", f"{k}={v}"]
        elif value is True:
            args.append("--" + key.replace("_", "-"))
        else:
            args += ["--" + key.replace("_", "-"), str(value)]
    return args + ["--no-progress"]


def launch(args, log_dir, world=2):
    """Starts tools/train.py under paddle.distributed.launch (gloo on CPU); returns the launcher's Popen."""
    env = dict(os.environ, PADDLE_LRNN_NUM_THREADS="1")  # two ranks on the machine's cores
    return subprocess.Popen([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(world),
                             "--log_dir", str(log_dir), os.path.join(REPO, "tools", "train.py"), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, log_dir):
    out, _ = proc.communicate(timeout=600)
    worker_logs = {n: open(os.path.join(log_dir, n), errors="replace").read() for n in sorted(os.listdir(log_dir))
                   if n.startswith("workerlog.")}
    assert proc.returncode == 0, out + "".join(worker_logs.values())
    return worker_logs


def train_here(s, resume=False, stop_after=None):
    """One process, in this one (no collective is called)."""
    return run(resolve(s), resume=resume, stop_after=stop_after)


def assert_same_run(a, b, rel):
    """Two runs logged the same steps and tokens and losses within `rel` (0: identical)."""
    assert [(r["step"], r["tokens"]) for r in a] == [(r["step"], r["tokens"]) for r in b]
    for key in ("train_loss", "val_loss"):
        if rel == 0:
            assert [r[key] for r in a] == [r[key] for r in b]
        else:
            np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b], rtol=rel, err_msg=key)


def model_arrays(out):
    return load_safetensors(os.path.join(out, "model.safetensors"))


def test_two_processes_resume_a_one_process_run_and_train_what_it_trains(corpus_file, tmp_path):
    """MRU (three parameter groups with their own clipping) with the optimizer state sharded; two processes continue
    a one-process checkpoint and log what the uninterrupted one-process run logs."""
    s = settings(corpus_file, tmp_path / "whole", "mru")
    train_here(s)
    part = tmp_path / "part"
    state, _ = train_here(dict(s, out=str(part)), stop_after=1)  # stopped after 2 updates
    assert state["step"] == 2
    logs = finish(launch(cli(dict(s, out=str(part), resume=True, sharding=True)), tmp_path / "log"), tmp_path / "log")
    # the same windows and the same updates; the mean over two halves of each batch and the all-reduced gradients
    # differ from one process's only by float32 rounding
    assert_same_run(records(tmp_path / "whole"), records(part), rel=2e-6)
    whole, two = model_arrays(tmp_path / "whole"), model_arrays(part)
    assert sorted(whole) == sorted(two)
    for name in whole:
        np.testing.assert_allclose(two[name], whole[name], rtol=1e-4, atol=1e-6, err_msg=name)
    optimizer = [load_safetensors(os.path.join(checkpoint.find_checkpoint(str(d)), "optimizer.safetensors"))
                 for d in (tmp_path / "whole", part)]
    assert sorted(optimizer[1]) == sorted(optimizer[0])  # rank 0 saved the moments of both shards
    for key in optimizer[0]:
        np.testing.assert_allclose(optimizer[1][key], optimizer[0][key], rtol=1e-3, atol=1e-7, err_msg=key)
    # only rank 0 prints and writes
    first = logs["workerlog.0"]
    assert "resumed from" in first and "(saved by 1 process, now 2 processes)" in first
    assert "2 processes of 4 sequences" in first and "optimizer state sharded" in first
    assert "step 4: train loss" in first and "step 4" not in logs["workerlog.1"]
    assert [r["step"] for r in records(part)] == [2, 4]
    with open(os.path.join(checkpoint.find_checkpoint(str(part)), "trainer_state.json")) as f:
        saved = json.load(f)
    assert saved["world_size"] == 2 and len(saved["rank_rng"]) == 1  # rank 1's random state is kept too


def test_rwkv4_in_two_processes_trains_what_one_process_trains(corpus_file, tmp_path):
    """RWKV-4's L2Wrap term over each rank's half of the batch, averaged over the ranks, is the whole batch's: two
    processes log the one-process run's losses and end with its weights (up to float32 rounding)."""
    s = settings(corpus_file, tmp_path / "one", "rwkv4")  # the recipe's exponential decay
    train_here(s)
    finish(launch(cli(dict(s, out=str(tmp_path / "two"))), tmp_path / "log"), tmp_path / "log")
    assert_same_run(records(tmp_path / "one"), records(tmp_path / "two"), rel=2e-6)
    one, two = model_arrays(tmp_path / "one"), model_arrays(tmp_path / "two")
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_sharded_optimizers_update_what_one_optimizer_updates_bit_for_bit(corpus_file, tmp_path):
    """Both ranks' shards stepped in one process, after clip_gradients, against one unsharded optimizer: MRU's three
    parameter groups with their own clipping (clipping active: grad_clip 0.05), AdamW with weight decay."""
    cfg = resolve(settings(corpus_file, tmp_path, "mru", grad_clip=0.05, lr=3e-2))
    t = Trainer(cfg, log=lambda *_: None, progress=False)
    t._setup()
    sharded, whole = t.model, AutoModelForCausalLM.from_config(t.model.config)
    whole.set_state_dict(sharded.state_dict())
    params = sharded.parameters()
    owners = partition(params, 2)
    shards = [make_optimizer(cfg, sharded, {id(p) for p, o in zip(params, owners) if o == r}) for r in (0, 1)]
    optimizer = make_optimizer(cfg, whole)
    for opt in (*shards, optimizer):
        opt.set_lr(cfg.lr)
    norms = []
    for _ in range(3):
        x, y = t.sampler.next_batch().shard(0, 1)
        for model in (sharded, whole):
            logits = model(paddle.to_tensor(x)).logits
            F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), paddle.to_tensor(y).reshape([-1])).backward()
        norms.append(float(paddle.sqrt(sum((p.grad ** 2).sum() for p in params))))
        clip_gradients(cfg, sharded)
        for opt in shards:
            opt.step()
        optimizer.step()
        sharded.clear_gradients()
        whole.clear_gradients()
    assert min(norms) > 0.05  # the clip acted
    for (name, p), q in zip(sharded.named_parameters(), whole.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(corpus_file, tmp_path):
    s = settings(corpus_file, tmp_path / "run", "hgrn2", max_steps=100_000, eval_interval=5, warmup_steps=0)
    proc = launch(cli(s), tmp_path / "log")
    latest = tmp_path / "run" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGTERM)  # rank 1 alone; rank 0 must stop with it
    logs = finish(proc, tmp_path / "log")
    stopped = [line for line in logs["workerlog.0"].splitlines() if line.startswith("stopped by SIGTERM at step")]
    assert len(stopped) == 1
    step = int(stopped[0].split("at step ")[1].split(";")[0].replace(",", ""))
    assert checkpoint.find_checkpoint(str(tmp_path / "run")).endswith(f"step-{step:08d}")
    state, _ = train_here(dict(s, max_steps=step + 2), resume=True)  # one process continues it
    assert state["step"] == step + 2


def _rank_pid(launcher_pid, rank):
    """The process of `rank` among the launcher's children (Linux /proc)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        for task in os.listdir(f"/proc/{launcher_pid}/task"):
            with open(f"/proc/{launcher_pid}/task/{task}/children") as f:
                for pid in f.read().split():
                    try:
                        with open(f"/proc/{pid}/environ", "rb") as e:
                            env = e.read().split(b"\0")
                    except OSError:
                        continue
                    if f"PADDLE_TRAINER_ID={rank}".encode() in env:
                        return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no process of rank {rank} under {launcher_pid}")


def test_batch_and_sharding_checks_name_the_problem(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setattr(Parallel, "from_environment", classmethod(lambda cls: Parallel(0, 3)))
    with pytest.raises(TrainingError, match=r"--batch-size 8 \(the global batch\) is not divisible by 3 processes x "
                                            r"--grad-accum 1"):
        Trainer(resolve(settings(corpus_file, tmp_path, "rwkv2")), log=lambda *_: None).train()
    monkeypatch.setattr(Parallel, "from_environment", classmethod(lambda cls: Parallel()))
    with pytest.raises(TrainingError, match="--sharding splits the optimizer state over data-parallel processes, and "
                                            "this run has one"):
        Trainer(resolve(settings(corpus_file, tmp_path, "rwkv2", sharding=True)), log=lambda *_: None).train()


def test_partition_balances_elements_and_the_shards_hold_only_their_parameters(corpus_file, tmp_path):
    class P:
        def __init__(self, size):
            self.size = size

    assert partition([P(s) for s in (10, 1, 7, 3, 3)], 2) == [0, 1, 1, 1, 0]  # 10 + 3 | 7 + 3 + 1
    assert partition([P(4)] * 4, 3) == [0, 1, 2, 0]
    cfg = resolve(settings(corpus_file, tmp_path, "mru"))
    t = Trainer(cfg, log=lambda *_: None, progress=False)
    t._setup()
    params = t.model.parameters()
    owners = partition(params, 2)
    shards = [make_optimizer(cfg, t.model, {id(p) for p, o in zip(params, owners) if o == r}) for r in (0, 1)]
    held = [{p.name for p in checkpoint._optimizer_parameters(opt)} for opt in shards]
    assert held[0].isdisjoint(held[1]) and held[0] | held[1] == {p.name for p in params}
    sizes = [sum(p.size for p in params if p.name in h) for h in held]
    assert max(sizes) - min(sizes) <= max(p.size for p in params)
