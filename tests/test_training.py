"""Training: a short run writes metrics, plot, checkpoints and a loadable model; an interrupted run resumes exactly;
damaged checkpoints are skipped; non-finite losses stop (or are skipped) and non-finite weights are never saved,
the last good checkpoint untouched; a new run does not mix with an old one in the same directory; the
learning-rate schedule follows RWKV-v2's; evaluation of a saved model. (Runs killed in child processes:
test_crash_resume.py.)"""
import json
import math
import os

import numpy as np
import paddle
import pytest

from paddle_lrnn.io.safetensors import load_safetensors
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.training import checkpoint, metrics
from paddle_lrnn.training.evaluation import evaluate_model_dir
from paddle_lrnn.training.recipes import resolve
from paddle_lrnn.training.schedule import lr_at
from paddle_lrnn.training.trainer import Trainer, TrainingError
from training_helpers import austen_excerpt, run, without_timing



@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return austen_excerpt(tmp_path_factory, 120_000)


def tiny(corpus_file, out, **overrides):
    settings = dict(model="rwkv2", data=corpus_file, out=str(out), device="cpu", n_layer=2, n_embd=32, ctx_len=32,
                    batch_size=4, max_steps=12, eval_interval=3, eval_iters=2, lr=3e-3, lr_final=1e-4,
                    sample_length=20, seed=7)
    settings.update(overrides)
    return resolve(settings)


def test_short_run_writes_everything_and_the_model_loads(corpus_file, tmp_path):
    state, t = run(tiny(corpus_file, tmp_path))
    assert state["step"] == 12 and state["tokens"] == 12 * 4 * 32
    records = metrics.read_records(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    for r in records:
        assert set(r) >= {"step", "tokens", "train_loss", "val_loss", "val_bpc", "bpc_unit", "lr", "tokens_per_s",
                          "elapsed_s", "val_ppl", "tokenization"}
        assert r["bpc_unit"] == "char" and r["tokenization"] == "chars"
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / math.log(2), rel=1e-6)  # one char per token
    assert records[-1]["val_loss"] < records[0]["val_loss"] < math.log(t.corpus.vocab_size) + 0.5
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    ids = paddle.to_tensor(np.asarray(t.corpus.valid[:32], np.int64)[None])
    np.testing.assert_array_equal(model(ids).logits.numpy(), t.model(ids).logits.numpy())
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", "step-00000009", "step-00000012"]


def test_interrupted_run_resumes_exactly(corpus_file, tmp_path):
    full_state, full = run(tiny(corpus_file, tmp_path / "full"))
    part_state, _ = run(tiny(corpus_file, tmp_path / "part"), stop_after=4)  # stops after 5 updates
    assert part_state["step"] == 5
    assert checkpoint.find_checkpoint(str(tmp_path / "part")).endswith("step-00000005")
    resumed_state, resumed = run(tiny(corpus_file, tmp_path / "part"), resume=True)
    assert resumed_state["step"] == 12
    a = without_timing(metrics.read_records(str(tmp_path / "full" / "metrics.jsonl")))
    b = without_timing(metrics.read_records(str(tmp_path / "part" / "metrics.jsonl")))
    assert a == b  # every logged loss identical, bit for bit
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_resume_refuses_changed_settings_and_missing_checkpoints(corpus_file, tmp_path):
    run(tiny(corpus_file, tmp_path, max_steps=3))
    with pytest.raises(TrainingError, match=r"other settings \(lr: 0.003 -> 0.01\)"):
        run(tiny(corpus_file, tmp_path, max_steps=3, lr=0.01), resume=True)
    with pytest.raises(checkpoint.ResumeError, match="none was written"):
        run(tiny(corpus_file, tmp_path / "empty"), resume=True)


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(corpus_file, tmp_path):
    run(tiny(corpus_file, tmp_path, max_steps=6))
    newest = tmp_path / "checkpoints" / "step-00000006" / "model.safetensors"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) - 10])
    warnings = []
    path = checkpoint.find_checkpoint(str(tmp_path), log=warnings.append)
    assert path.endswith("step-00000003")
    assert len(warnings) == 1 and "step-00000006" in warnings[0] and "checksum" in warnings[0]
    state, _ = run(tiny(corpus_file, tmp_path, max_steps=6), resume=True)
    assert state["step"] == 6


class NanAtStep(Trainer):
    """Returns NaN logits on the given training forward calls (1-based)."""

    bad_calls = (4,)

    def _setup(self):
        super()._setup()
        forward, calls = self.model.forward, [0]

        def poisoned(*args, **kwargs):
            out = forward(*args, **kwargs)
            calls[0] += self.model.training
            if self.model.training and calls[0] in self.bad_calls:
                out.logits = out.logits * float("nan")
            return out

        self.model.forward = poisoned


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(corpus_file, tmp_path):
    t = NanAtStep(tiny(corpus_file, tmp_path), log=lambda *_: None, progress=False)
    with pytest.raises(TrainingError, match="the loss is nan at step 4; training stopped"):
        t.train()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", "step-00000003"]
    saved = json.load(open(tmp_path / "checkpoints" / "step-00000003" / "trainer_state.json"))
    assert saved["step"] == 3
    # the checkpoint holds the weights after step 3, which the bad step did not touch
    weights = load_safetensors(str(tmp_path / "checkpoints" / "step-00000003" / "model.safetensors"))
    for name, p in t.model.named_parameters():
        np.testing.assert_array_equal(weights[name], p.numpy(), err_msg=name)
    checkpoint.verify(str(tmp_path / "checkpoints" / "step-00000003"))


def test_nonfinite_batches_can_be_skipped(corpus_file, tmp_path):
    log = []
    t = NanAtStep(tiny(corpus_file, tmp_path, skip_nonfinite=True), log=log.append, progress=False)
    state = t.train()
    assert state["step"] == 12 and state["skipped"] == 1
    assert "warning: loss nan at step 4; batch skipped (1 so far)" in log
    assert t.sampler.step == 13  # the skipped batch is not drawn again
    assert all(np.isfinite(p.numpy()).all() for p in t.model.parameters())


class InfGradientAt(Trainer):
    """Makes the gradient of the first parameter infinite in the given update (1-based): the loss of that update
    stays finite, the weights after it do not."""

    bad_update = 4

    def _setup(self):
        super()._setup()
        calls = [0]

        def poison(grad):
            calls[0] += 1
            return grad * float("inf") if calls[0] == self.bad_update else grad

        self.model.parameters()[0].register_hook(poison)


@pytest.mark.parametrize("stop_by_signal", [False, True])
def test_nonfinite_weights_are_never_saved(corpus_file, tmp_path, stop_by_signal):
    # caught by the evaluation after update 4, or, with a SIGTERM during update 4, by the check before the checkpoint
    good = 3 if stop_by_signal else 2
    expected = r"the weights are not finite after step 4 \(emb.weight\)" if stop_by_signal else \
        "the validation loss is nan after step 4"
    with pytest.raises(TrainingError, match=expected + "; training stopped without saving this state"):
        run(tiny(corpus_file, tmp_path, eval_interval=good), stop_after=3 if stop_by_signal else None,
            trainer_class=InfGradientAt)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", f"step-{good:08d}"]
    assert checkpoint.find_checkpoint(str(tmp_path)).endswith(f"step-{good:08d}")
    assert [r["step"] for r in metrics.read_records(str(tmp_path / "metrics.jsonl"))] == [good]


def test_a_new_run_does_not_mix_with_an_old_one(corpus_file, tmp_path):
    run(tiny(corpus_file, tmp_path, max_steps=3))
    with pytest.raises(TrainingError, match="holds another run's checkpoints: continue it with --resume"):
        run(tiny(corpus_file, tmp_path, max_steps=3))
    # a run killed before its first checkpoint leaves records (and a torn line) that a new run drops
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"step": 3, "train_loss": 1.0}\n{"step": 6, "tra')
    assert metrics.read_records(str(other / "metrics.jsonl")) == [{"step": 3, "train_loss": 1.0}]
    run(tiny(corpus_file, other, max_steps=3))
    assert [r["step"] for r in metrics.read_records(str(other / "metrics.jsonl"))] == [3]
    assert metrics.read_records(str(other / "metrics.jsonl"))[0]["train_loss"] != 1.0


def test_learning_rate_follows_rwkv_v2():
    # lr = lr_init * [(0.5 + f/2) + (0.5 - f/2) cos(pi * progress)], f = lr_final / lr_init; update 1 at lr_init.
    kw = dict(schedule="cosine", lr=6e-4, lr_final=1e-5, warmup_steps=0, max_steps=1000)
    f = 1e-5 / 6e-4
    for step in (0, 1, 250, 500, 999, 1000):
        expected = 6e-4 * ((0.5 + f / 2) + (0.5 - f / 2) * math.cos(math.pi * step / 1000))
        assert lr_at(step, **kw) == pytest.approx(expected, rel=1e-12)
    inv = dict(schedule="inverse_sqrt", lr=5e-4, lr_final=0.0, warmup_steps=4000, max_steps=50000)
    assert lr_at(0, **inv) == pytest.approx(1e-7)
    assert lr_at(4000, **inv) == pytest.approx(5e-4)
    assert lr_at(16000, **inv) == pytest.approx(2.5e-4)


def test_recipes_follow_the_original_on_gpu_and_scale_down_on_cpu():
    gpu = resolve(dict(model="rwkv2", device="gpu"))
    assert (gpu.n_layer, gpu.n_embd, gpu.ctx_len, gpu.batch_size, gpu.lr, gpu.lr_final) == (6, 512, 1024, 12, 6e-4, 1e-5)
    assert (gpu.beta1, gpu.beta2, gpu.eps, gpu.grad_clip, gpu.weight_decay) == (0.9, 0.99, 4e-9, 1.0, 0.0)
    cpu = resolve(dict(model="rwkv2", device="cpu"))
    assert cpu.ctx_len < gpu.ctx_len and cpu.max_steps < gpu.max_steps
    assert resolve(dict(model="rwkv2", device="cpu", preset="enwik8")).ctx_len == 1024
    with pytest.raises(ValueError, match="unknown --model 'gpt'"):
        resolve(dict(model="gpt"))
    with pytest.raises(ValueError, match="unknown --preset 'wt103' for rwkv2"):
        resolve(dict(model="rwkv2", preset="wt103"))
    with pytest.raises(ValueError, match="--batch-size must be a positive integer, got 0"):
        resolve(dict(model="rwkv2", batch_size=0))


def test_eval_only_reports_test_loss_of_a_saved_model(corpus_file, tmp_path):
    run(tiny(corpus_file, tmp_path, max_steps=3))
    result = evaluate_model_dir(str(tmp_path), corpus_file, max_batches=3, log=lambda *_: None)
    assert result["split"] == "test" and result["bpc_unit"] == "char"
    assert result["bpc"] == pytest.approx(result["loss"] / math.log(2), rel=1e-6) and 0 < result["loss"] < 6
