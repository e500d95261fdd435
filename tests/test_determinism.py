"""Determinism on CPU: every operator gives bit-identical values and gradients whatever the number of kernel threads
(PADDLE_LRNN_NUM_THREADS), at every instruction-set level the processor has (PADDLE_LRNN_ISA), two training runs with the same seed log the same losses and print the same sample
(--deterministic changes nothing on CPU; another seed changes everything), and RWKV-v2's copy head computes the
same sums as a scatter-add or as a one-hot product (the fixed-order form --deterministic selects on a GPU)."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_lrnn.layers.rwkv2 import add_at_ids, deterministic_gpu
from paddle_lrnn.training import metrics
from paddle_lrnn.training.recipes import resolve
from paddle_lrnn.training.trainer import Trainer
from training_helpers import austen_excerpt, without_timing

HERE = os.path.dirname(os.path.abspath(__file__))


def op_digests():
    """{operator@level: SHA-256 of its float32 outputs and input gradients} at every instruction-set level the
    processor has, on shapes big enough for the thread pool (and with a state passed between two calls)."""
    from paddle_lrnn.ops import library

    levels = library.ISA_LEVELS[:library.ISA_LEVELS.index(library.cpu_isa_supported()) + 1]
    out = {}
    for level in levels:
        library.set_cpu_isa_cap(level)
        out.update({f"{name}@{level}": digest for name, digest in level_digests().items()})
    return out


def level_digests():
    from paddle_lrnn import ops

    rng = np.random.default_rng(0)

    def t(*shape, scale=1.0, offset=0.0):
        return paddle.to_tensor((offset + scale * rng.standard_normal(shape)).astype(np.float32), stop_gradient=False)

    def digest(tensors):
        h = hashlib.sha256()
        for x in tensors:
            h.update(x.numpy().tobytes())
        return h.hexdigest()

    def run(fn, inputs):
        outs = fn(*inputs)
        loss = sum((o * paddle.to_tensor(rng.standard_normal(o.shape).astype(np.float32))).sum() for o in outs)
        return digest([*outs, *paddle.grad(loss, inputs)])

    def weight_products():  # inference only: outputs (several tiles along K and N, 17 rows: two passes)
        w = t(1000, 1500).detach()
        x = t(17, 1000).detach()
        q, scale = ops.quantize_int8(w)
        products = [ops.weight_matmul(x, v, s) for v, s in ((w.astype("bfloat16"), None),
                                                            (w.astype("float16"), None), (q, scale))]
        tied = ops.weight_matmul(x[:, :1000], q.t().contiguous(), scale, transpose_weight=True)  # rows of w^T
        return [q, scale, *products, tied]

    def wkv_twice(w, u, k, v):
        y1, s1 = ops.wkv(paddle.exp(w), u, k[:, :40], v[:, :40], eps=1e-16)
        y2, s2 = ops.wkv(paddle.exp(w), u, k[:, 40:], v[:, 40:], s1, eps=1e-16)
        return y1, y2, s2

    def gla_twice(q, k, v, g):
        g = -paddle.nn.functional.softplus(g)
        o1, s1 = ops.gla(q[:, :60], k[:, :60], v[:, :60], g[:, :60])
        o2, s2 = ops.gla(q[:, 60:], k[:, 60:], v[:, 60:], g[:, 60:], s1)
        return o1, o2, s2

    def mru_twice(m):
        p1, s1 = ops.mru_scan(m[:, :, :30])
        p2, s2 = ops.mru_scan(m[:, :, 30:], s1)
        return p1, p2, s2

    B, T, C = 3, 96, 40
    return {
        "wkv": run(wkv_twice, [t(C, scale=0.5), t(C), t(B, T, C), t(B, T, C)]),
        "timex": run(lambda w, x: [ops.timex(w, x)], [t(C, 64), t(B, C, 64)]),
        "depthwise_conv1d": run(lambda w, x: [ops.depthwise_conv1d(w, x)], [t(C, 4), t(B, C, 300)]),
        "gla": run(gla_twice, [t(2, 130, 3, 16), t(2, 130, 3, 16), t(2, 130, 3, 16), t(2, 130, 3, 16, offset=2.0)]),
        "mru_scan": run(mru_twice, [t(2, 3, 70, 8, 8, scale=0.1) + paddle.eye(8)]),
        "weight_matmul": digest(weight_products()),
    }


def digests_with_threads(n):
    env = dict(os.environ, PADDLE_LRNN_NUM_THREADS=str(n))
    code = f"import json, sys; sys.path.insert(0, {HERE!r}); import test_determinism as m; " \
           f"print(json.dumps(m.op_digests()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_operators_do_not_depend_on_the_thread_count():
    one, three = digests_with_threads(1), digests_with_threads(3)
    assert sorted({key.split("@")[0] for key in one}) == ["depthwise_conv1d", "gla", "mru_scan", "timex",
                                                          "weight_matmul", "wkv"]
    assert one == three


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return austen_excerpt(tmp_path_factory, 60_000)


def train(corpus_file, out, **overrides):
    cfg = resolve(dict(dict(model="rwkv2", data=corpus_file, out=str(out), device="cpu", n_layer=1, n_embd=16,
                            ctx_len=16, batch_size=4, max_steps=6, eval_interval=2, eval_iters=1, sample_length=24,
                            seed=4), **overrides))
    log = []
    Trainer(cfg, log=log.append, progress=False).train()
    records = metrics.read_records(str(out / "metrics.jsonl"))
    return without_timing(records), log[-1]


@pytest.mark.slow
def test_same_seed_same_losses_and_sample(corpus_file, tmp_path):
    records, sample = train(corpus_file, tmp_path / "a")
    again, sample_again = train(corpus_file, tmp_path / "b", deterministic=True)
    assert sample.startswith("sample:\n") and len(records) == 3
    assert again == records and sample_again == sample
    other, other_sample = train(corpus_file, tmp_path / "c", seed=5)
    assert all(o["train_loss"] != r["train_loss"] for o, r in zip(other, records)) and other_sample != sample


def test_copy_head_one_hot_form_computes_the_scatter_sums():
    rng = np.random.default_rng(1)
    B, T, U, V = 2, 5, 9, 7
    ids = rng.integers(0, 3, (B, U))  # many repeats: several scores add into one logit
    logits0 = rng.standard_normal((B, T, V)).astype(np.float32)
    scores0 = rng.standard_normal((B, T, U)).astype(np.float32)
    cot = rng.standard_normal((B, T, V)).astype(np.float32)
    expected = logits0.astype(np.float64)
    for b in range(B):
        for u in range(U):
            expected[b, :, ids[b, u]] += scores0[b, :, u]
    for one_hot in (False, True):
        logits, scores = (paddle.to_tensor(a, stop_gradient=False) for a in (logits0, scores0))
        out = add_at_ids(logits, scores, paddle.to_tensor(ids), one_hot=one_hot)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6, err_msg=f"one_hot={one_hot}")
        g_logits, g_scores = paddle.grad((out * paddle.to_tensor(cot)).sum(), [logits, scores])
        np.testing.assert_array_equal(g_logits.numpy(), cot)
        np.testing.assert_array_equal(g_scores.numpy(), np.take_along_axis(cot, ids[:, None, :].repeat(T, 1), 2))
    assert not deterministic_gpu(paddle.zeros([1]))  # on a CPU tensor: the scatter
