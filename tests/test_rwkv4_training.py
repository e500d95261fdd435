"""RWKV-4 training: the enwik8 recipe of RWKV-v4/train.py (as --preset enwik8 and the GPU default), the CPU default,
the exponential learning-rate decay, the L2Wrap term the trainer adds to the loss, and a short run on the embedded
corpus through tools/train.py that learns, saves a model that generates, and exports."""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from helpers import run_tool

from paddle_lrnn.generation import generate_text
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.models.rwkv4 import RWKV4ForCausalLM
from paddle_lrnn.training import metrics
from paddle_lrnn.training.recipes import model_config, resolve
from paddle_lrnn.training.schedule import lr_at
from paddle_lrnn.training.trainer import Trainer
from training_helpers import austen_excerpt


def test_enwik8_preset_is_the_originals():
    cfg = resolve(dict(model="rwkv4", preset="enwik8", device="gpu"))
    established = dict(n_layer=6, n_embd=512, ctx_len=1024, batch_size=12, lr=8e-4, lr_final=1e-5, warmup_steps=0,
                       schedule="exponential", optimizer="adam", beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0,
                       grad_clip=0.0, amp="bf16", vocab="chars")
    assert {k: getattr(cfg, k) for k in established} == established
    assert cfg.max_steps == 500 * (10000 // 12)  # 500 mini-epochs of 9,996 samples at batch 12
    assert resolve(dict(model="rwkv4", device="gpu")).to_dict() == dict(cfg.to_dict(), preset=None)
    assert model_config(cfg, 6064).variant == "RWKV"
    kw = dict(schedule=cfg.schedule, lr=cfg.lr, lr_final=cfg.lr_final, warmup_steps=0, max_steps=cfg.max_steps)
    # trainer.py: lr = lr_init * exp(ln(lr_final / lr_init) * tokens / final_tokens), set after each update
    assert lr_at(0, **kw) == 8e-4
    assert lr_at(cfg.max_steps // 2, **kw) == pytest.approx(math.sqrt(8e-4 * 1e-5))
    assert lr_at(cfg.max_steps, **kw) == pytest.approx(1e-5) and lr_at(10 ** 9, **kw) == pytest.approx(1e-5)


def test_cpu_default_is_small_and_float32():
    cfg = resolve(dict(model="rwkv4", device="cpu"))
    assert (cfg.amp, cfg.schedule, cfg.data, cfg.vocab) == ("off", "exponential", None, "chars")
    model = RWKV4ForCausalLM(model_config(cfg, 81))
    assert model.num_parameters() < 1_000_000
    with pytest.raises(ValueError, match="--amp bf16 needs --device gpu"):
        resolve(dict(model="rwkv4", preset="enwik8", device="cpu"))
    assert resolve(dict(model="rwkv4", preset="enwik8", device="cpu", amp="off")).n_embd == 512


def test_the_trainer_adds_the_l2wrap_term(tmp_path_factory, tmp_path):
    """The gradients of a training step are those of cross-entropy plus RWKV4ForCausalLM.loss_penalty, and the
    logged loss is the cross-entropy alone."""
    cfg = resolve(dict(model="rwkv4", data=austen_excerpt(tmp_path_factory, 20_000), out=str(tmp_path),
                       device="cpu", n_layer=1, n_embd=16, ctx_len=16, batch_size=4, max_steps=1, eval_interval=1,
                       eval_iters=1, sample_length=0))
    t = Trainer(cfg, log=lambda *_: None, progress=False)
    t._setup()
    model = t.model
    for p in model.parameters():  # off the init, where the head's inputs are tiny
        p.set_value(p + paddle.randn(p.shape) * 0.3)
    x, y = t.sampler.next_batch().shard(0, 1)
    loss = t._accumulate_gradients(x, y)
    with_term = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    model.clear_gradients()
    logits = model(paddle.to_tensor(x)).logits
    ce = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), paddle.to_tensor(y).reshape([-1]))
    assert float(ce) == pytest.approx(loss, rel=1e-6)
    (ce + RWKV4ForCausalLM.loss_penalty(logits)).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(with_term[name], p.grad.numpy(), rtol=1e-5, atol=1e-9, err_msg=name)
    model.clear_gradients()
    logits = model(paddle.to_tensor(x)).logits
    F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), paddle.to_tensor(y).reshape([-1])).backward()
    assert np.abs(with_term["head.weight"] - model.head.weight.grad.numpy()).max() > 1e-7  # the term is there


@pytest.mark.slow  # a training run as a process
def test_a_short_run_learns_generates_and_exports(tmp_path_factory, tmp_path):
    data = austen_excerpt(tmp_path_factory, 60_000)
    out = tmp_path / "run"
    args = ["--model", "rwkv4", "--data", data, "--out", out, "--n-layer", 2, "--n-embd", 32, "--ctx-len", 32,
            "--batch-size", 8, "--max-steps", 30, "--eval-interval", 15, "--eval-iters", 4, "--sample-length", 20,
            "--model-option", "variant=RWKV-ffnPre", "--no-progress"]
    result = run_tool("train", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    records = metrics.read_records(str(out / "metrics.jsonl"))
    assert [r["step"] for r in records] == [15, 30]
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert isinstance(model, RWKV4ForCausalLM) and model.config.variant == "RWKV-ffnPre"
    text = "".join(generate_text(str(out), "Elinor", 10, seed=1))
    assert text.startswith("Elinor") and len(text) == 16
    exported = tmp_path / "exported"
    result = run_tool("export", "--model-dir", out, "--out", exported)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (exported / "step.json").exists() and (exported / "export.json").exists()
