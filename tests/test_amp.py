"""Mixed precision (--amp): refused on CPU in one line (Paddle 3.3.1 runs no mixed precision there); what CPU can
check of the fp16 path: dynamic loss scaling changes no bit of training (scales are powers of two), an update whose
gradients overflow is skipped on every parameter and halves the scale, and the scale is checkpointed and resumed
exactly; the custom operators are exactly those kept in float32 under auto_cast. The half-precision arithmetic
itself only runs on a GPU."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_lrnn.ops.library import library
from paddle_lrnn.training.amp import FP32_OPS, LossScaler, MixedPrecision
from paddle_lrnn.training.recipes import resolve
from paddle_lrnn.training.trainer import Trainer, resume_config
from training_helpers import austen_excerpt, records, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = {
    "rwkv2": dict(n_layer=1, n_embd=16),
    "rwkv4": dict(n_layer=2, n_embd=16),
    "hgrn2": dict(n_layer=2, n_embd=16, model_options=dict(expand_ratio=8)),
    "mru": dict(n_layer=1, n_embd=32, model_options=dict(n_state_heads=2, state_size=32)),
}
# auto_cast on CPU only warns that it does nothing; the fp16 path's loss scaling is what runs here
pytestmark = pytest.mark.filterwarnings("ignore:amp_guard can only be enabled")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return austen_excerpt(tmp_path_factory, 60_000)


def config(corpus_file, out, family="rwkv2", amp="off", **overrides):
    """A CPU run; amp is set after resolve() (which refuses it on CPU) to exercise the fp16 plumbing here."""
    s = dict(model=family, data=corpus_file, out=str(out), device="cpu", ctx_len=16, batch_size=8, max_steps=4,
             warmup_steps=1, eval_interval=2, eval_iters=1, lr=1e-2, lr_final=1e-3, sample_length=0, seed=5,
             **FAMILIES[family])
    s.update(overrides)
    cfg = resolve(s)
    cfg.amp = amp
    return cfg


class InfGradientAt(Trainer):
    """Puts an inf into one gradient at the given updates (1-based) and keeps the parameters around those updates."""

    bad_steps = (3,)

    def _accumulate_gradients(self, x, y):
        loss = super()._accumulate_gradients(x, y)
        self.before = [p.numpy().copy() for p in self.model.parameters()]
        if self.state["step"] + 1 in self.bad_steps:
            g = self.model.parameters()[0].grad
            g.set_value(paddle.full_like(g, float("inf")))
        return loss

    def _update(self):
        super()._update()
        if self.state["step"] + 1 in self.bad_steps:
            self.unchanged = all(np.array_equal(a, p.numpy()) for a, p in zip(self.before, self.model.parameters()))


@pytest.mark.slow
def test_amp_on_cpu_is_refused_in_one_line(corpus_file, tmp_path):
    with pytest.raises(ValueError, match="--amp bf16 needs --device gpu: Paddle runs no mixed precision on CPU"):
        resolve(dict(model="rwkv2", device="cpu", amp="bf16"))
    with pytest.raises(ValueError, match="--amp must be one of off, bf16, fp16, got 'fp8'"):
        resolve(dict(model="rwkv2", device="gpu", amp="fp8"))
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--device", "cpu", "--amp",
                             "fp16", "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --amp fp16 needs --device gpu")
    assert not (tmp_path / "x").exists()
    run(config(corpus_file, tmp_path / "run", max_steps=2))  # a run that --resume would continue on CPU
    with pytest.raises(ValueError, match="--amp bf16 needs --device gpu"):
        resume_config(str(tmp_path / "run"), {"amp": "bf16", "out": str(tmp_path / "run")})


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fp16_loss_scaling_changes_no_bit(corpus_file, tmp_path, family):
    _, plain = run(config(corpus_file, tmp_path / "off", family))
    _, scaled = run(config(corpus_file, tmp_path / "fp16", family, amp="fp16"))
    fp16 = records(tmp_path / "fp16")
    assert [r.pop("loss_scale") for r in fp16] == [2.0 ** 16] * 2
    assert fp16 == records(tmp_path / "off")
    for (name, p), q in zip(plain.model.named_parameters(), scaled.model.parameters()):
        assert q.dtype == paddle.float32  # O1: the parameters are the float32 master copy
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


@pytest.mark.slow
def test_overflow_skips_the_update_halves_the_scale_and_resumes_exactly(corpus_file, tmp_path):
    cfg = dict(amp="fp16", max_steps=6)
    _, t = run(config(corpus_file, tmp_path / "full", **cfg), trainer_class=InfGradientAt)
    assert t.unchanged  # no parameter moved in update 3
    full = records(tmp_path / "full")
    assert [r["loss_scale"] for r in full] == [2.0 ** 16, 2.0 ** 15, 2.0 ** 15]
    assert all(np.isfinite(p.numpy()).all() for p in t.model.parameters())
    state, _ = run(config(corpus_file, tmp_path / "part", **cfg), trainer_class=InfGradientAt, stop_after=3)
    assert state["step"] == 4
    with open(os.path.join(tmp_path, "part", "checkpoints", "step-00000004", "trainer_state.json")) as f:
        assert json.load(f)["amp"] == {"mode": "fp16", "scaler": {"scale": 2.0 ** 15, "good_steps": 1}}
    run(config(corpus_file, tmp_path / "part", **cfg), trainer_class=InfGradientAt, resume=True)
    assert records(tmp_path / "part") == full


def test_loss_scaler_moves_by_powers_of_two_within_bounds():
    s = LossScaler(scale=4.0, growth_interval=3, min_scale=2.0, max_scale=8.0)
    for finite, expected in [(True, 4), (True, 4), (True, 8), (True, 8), (True, 8), (True, 8), (False, 4),
                             (False, 2), (False, 2), (True, 2)]:
        s.update(finite)
        assert s.scale == expected
    again = LossScaler()
    again.load_state_dict(s.state_dict())
    assert again.state_dict() == {"scale": 2.0, "good_steps": 1}
    assert MixedPrecision("fp16").scaler is not None
    assert MixedPrecision("bf16").scaler is None and MixedPrecision("off").scaler is None
    assert MixedPrecision("bf16").loss_scale == 1.0


def test_the_float32_operators_are_the_custom_operators():
    assert FP32_OPS == {name for name in dir(library()) if name.startswith("lrnn_")}
