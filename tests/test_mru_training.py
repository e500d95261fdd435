"""MRU training: the shakespeare-char recipe as mru-lm's configs establish it (schedule with its warm-up, 5000-step
cosine and 10-step staircase), the three parameter groups (LR multiplier (1/o) sqrt(2/T), per-group weight decay and
clipping) and that the optimizer really applies them, other families' optimizers unchanged, a short run with exact
resume, eval-only, the shakespeare-char split, byte-level and GPT-2 BPE data, generation (library and tools)."""
import json
import math
import os
from pathlib import Path

import numpy as np
import paddle
import pytest
from helpers import run_tool as tool

from paddle_lrnn.data import DEFAULT_CORPUS, DataError
from paddle_lrnn.generation import generate_ids, generate_text
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.models.mru import MRUConfig, MRUForCausalLM
from paddle_lrnn.training import metrics
from paddle_lrnn.training.evaluation import evaluate_model_dir
from paddle_lrnn.training.recipes import model_config, resolve
from paddle_lrnn.training.schedule import lr_at
from paddle_lrnn.training.trainer import make_optimizer
from tokenizer_files import hand_gpt2_files
from training_helpers import austen_excerpt, records, run

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return austen_excerpt(tmp_path_factory, 100_000)


def tiny(data, out, **overrides):
    settings = dict(model="mru", data=data, out=str(out), device="cpu", n_layer=1, n_embd=16, ctx_len=24,
                    batch_size=4, max_steps=8, warmup_steps=2, eval_interval=4, eval_iters=2, lr=1e-2, lr_final=1e-3,
                    sample_length=10, seed=3,
                    model_options=dict(n_state_heads=1, state_size=16, n_attn_heads=2, key_size=8, value_size=8,
                                       max_sequence_length=32, dropout_rate=0.0))
    settings.update(overrides)
    return resolve(settings)


# ------------------------------------------------------------------------------------------------------- recipes
def test_shakespeare_char_preset_is_mru_lm_s_default_run():
    cfg = resolve(dict(model="mru", preset="shakespeare-char", device="cpu"))
    established = dict(ctx_len=256, batch_size=64, grad_accum=1, max_steps=5000, optimizer="adamw", beta1=0.9,
                       beta2=0.99, weight_decay=0.1, grad_clip=1.0, lr=1e-3, lr_start=1e-4, lr_final=1e-4,
                       warmup_steps=100, decay_steps=5000, schedule_interval=10, schedule="cosine", eval_interval=200,
                       vocab="chars", layout="shakespeare-char")
    assert {k: getattr(cfg, k) for k in established} == established
    assert resolve(dict(model="mru", device="gpu")).to_dict() == {
        **cfg.to_dict(), "preset": None, "layout": "auto", "device": "gpu"}  # the gpu defaults are the same run
    model_cfg = model_config(cfg, 65)
    with open(os.path.join(HERE, "fixtures", "mru", "model.json")) as f:
        fixture_fields = set(json.load(f))
    assert set(model_cfg.to_model_json()) == fixture_fields
    assert model_cfg.to_model_json() == dict(embedding_size=384, dropout_rate=0.2, n_state_heads=6, state_size=384,
                                             n_attn_heads=6, key_size=384, value_size=384, max_sequence_length=1024,
                                             layers=["mru", "mlp"] * 6, vocab_size=65)
    # --model-option adds to the recipe's model options, e.g. an attention layer
    cfg = resolve(dict(model="mru", preset="shakespeare-char", model_options=dict(layers=["mru", "attn", "mlp"])))
    assert model_config(cfg, 65).layers == ["mru", "attn", "mlp"] and cfg.model_options["state_size"] == 384


def original_lr(step, interval=10, warmup=100, decay=5000, start=1e-4, peak=1e-3, end=1e-4):
    """mru-lm's rate for micro-step `step` (0-based): its LambdaLR is stepped after every `interval` micro-steps and
    maps scheduler step k to train step k * interval, warm-up then cosine over `decay` steps after it."""
    train_step = (step // interval) * interval
    if train_step < warmup:
        return start + train_step / warmup * (peak - start)
    if train_step - warmup < decay:
        return end + 0.5 * (1 + math.cos(math.pi * (train_step - warmup) / decay)) * (peak - end)
    return end


def test_schedule_is_mru_lm_s():
    cfg = resolve(dict(model="mru", preset="shakespeare-char"))
    kw = dict(schedule=cfg.schedule, lr=cfg.lr, lr_final=cfg.lr_final, warmup_steps=cfg.warmup_steps,
              max_steps=cfg.max_steps, lr_start=cfg.lr_start, decay_steps=cfg.decay_steps,
              interval=cfg.schedule_interval)
    for step in [0, 1, 9, 10, 55, 99, 100, 101, 110, 2549, 2550, 4999, 5099, 5100, 6000]:
        assert lr_at(step, **kw) == pytest.approx(original_lr(step), rel=1e-12), step
    assert lr_at(9, **kw) == 1e-4 and lr_at(10, **kw) == pytest.approx(1.9e-4)
    assert lr_at(4999, **kw) > 1e-4  # the cosine spans steps 100..5100, so training ends just above end_lr
    # the other families' schedules are unchanged by the new options' defaults
    base = dict(schedule="cosine", lr=6e-4, lr_final=1e-5, warmup_steps=0, max_steps=100)
    assert [lr_at(s, **base) for s in (0, 50, 100)] == pytest.approx([6e-4, (6e-4 + 1e-5) / 2, 1e-5])


# ------------------------------------------------------------------------------------------- parameter groups
def test_parameter_groups_of_shakespeare_char():
    cfg = resolve(dict(model="mru", preset="shakespeare-char"))
    model = MRUForCausalLM(model_config(cfg, 65))
    groups = {g["name"]: g for g in model.parameter_groups(cfg.weight_decay, cfg.ctx_len, cfg.grad_clip)}
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in groups["no_decay"]["params"]) == sorted(
        ["wte.weight", "final_ln.weight"] + [f"pre_lns.{i}.weight" for i in range(12)])
    assert sorted(names[id(p)] for p in groups["state_matrices_up"]["params"]) == sorted(
        f"layers.{i}.state_matrices_up.weight" for i in range(0, 12, 2))
    assert len(groups["decay"]["params"]) == 6 * 2 + 6 * 2  # mlp.0, mlp.2 / state_matrices_down, mru_out
    assert (groups["no_decay"]["weight_decay"], groups["no_decay"]["lr_scale"], groups["no_decay"]["max_grad_norm"]) \
        == (0.0, 1.0, 1.0)
    assert (groups["decay"]["weight_decay"], groups["decay"]["lr_scale"], groups["decay"]["max_grad_norm"]) == \
        (0.1, 1.0, 1.0)
    up = groups["state_matrices_up"]
    assert up["weight_decay"] == 0.1 and round(up["lr_scale"], 5) == 0.01105  # (1/8) sqrt(2/256)
    assert up["max_grad_norm"] == pytest.approx(math.sqrt(128))
    # attention weights are weight-decayed and clipped at 1.0 with the MLPs
    attn = MRUForCausalLM(MRUConfig(embedding_size=16, n_state_heads=1, state_size=16, n_attn_heads=2, key_size=8,
                                    value_size=8, layers=["attn", "mlp"], vocab_size=5))
    groups = {g["name"]: g for g in attn.parameter_groups(0.1, 64)}
    assert set(groups) == {"no_decay", "decay"} and len(groups["decay"]["params"]) == 4 + 2


def test_the_optimizer_applies_the_groups_lr_decay_and_clipping():
    cfg = tiny(None, "unused", optimizer="adamw", weight_decay=0.1, lr=1e-3, grad_clip=1.0, ctx_len=32)
    paddle.seed(0)
    model = MRUForCausalLM(model_config(cfg, 11))
    for _, p in model.named_parameters():
        p.set_value(p + 0.1)  # every parameter non-zero, so that weight decay shows
    groups = {g["name"]: g for g in model.parameter_groups(cfg.weight_decay, cfg.ctx_len, cfg.grad_clip)}
    o, T = model.config.state_order, cfg.ctx_len
    scale = (1 / o) * math.sqrt(2 / T)
    assert groups["state_matrices_up"]["lr_scale"] == pytest.approx(0.0625)
    opt = make_optimizer(cfg, model)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    # no_decay: norm 10 -> clipped to 1; decay: 0.5, under its clip; state_matrices_up: 100 -> clipped to sqrt(T/2)
    norms = {"no_decay": 10.0, "decay": 0.5, "state_matrices_up": 100.0}
    clipped = {"no_decay": 1.0, "decay": 0.5, "state_matrices_up": math.sqrt(T / 2)}
    rng = np.random.default_rng(0)
    grads = {}
    loss = 0
    for name, g in groups.items():
        gs = [rng.normal(size=p.shape) for p in g["params"]]
        total = math.sqrt(sum(float((x ** 2).sum()) for x in gs))
        for p, x in zip(g["params"], gs):
            x = (x * norms[name] / total).astype(np.float32)
            grads[id(p)] = (name, x)
            loss = loss + (p * paddle.to_tensor(x)).sum()
    loss.backward()
    opt.step()
    state = opt.state_dict()
    lr, wd, beta1, eps = cfg.lr, cfg.weight_decay, cfg.beta1, cfg.eps
    for pname, p in model.named_parameters():
        group, g = grads[id(p)]
        # the first moment holds (1 - beta1) x the CLIPPED gradient: each group clipped by its own norm
        m1 = state[next(k for k in state if k.startswith(p.name + "_moment1"))].numpy()
        np.testing.assert_allclose(m1, (1 - beta1) * g * (clipped[group] / norms[group]), rtol=2e-5, atol=1e-12,
                                   err_msg=pname)
        # the first AdamW step: p <- p (1 - lr_g wd_g) - lr_g g/(|g| + eps), lr_g = lr x the group's multiplier
        lr_g = lr * (scale if group == "state_matrices_up" else 1.0)
        wd_g = 0.0 if group == "no_decay" else wd
        gc = g * (clipped[group] / norms[group])
        want = before[pname] * (1 - lr_g * wd_g) - lr_g * gc / (np.abs(gc) + eps)
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-5, atol=1e-9, err_msg=pname)


def legacy_optimizer(cfg, model):
    """make_optimizer as it was before families could define parameter groups."""
    clip = paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip) if cfg.grad_clip > 0 else None
    kwargs = dict(learning_rate=cfg.lr, parameters=model.parameters(), beta1=cfg.beta1, beta2=cfg.beta2,
                  epsilon=cfg.eps, grad_clip=clip)
    if cfg.optimizer == "adamw":
        return paddle.optimizer.AdamW(weight_decay=cfg.weight_decay, **kwargs)
    return paddle.optimizer.Adam(weight_decay=cfg.weight_decay or None, **kwargs)


@pytest.mark.parametrize("family,options", [("rwkv2", {}), ("hgrn2", dict(expand_ratio=8))])
def test_other_families_optimizers_are_unchanged(family, options):
    settings = dict(model=family, device="cpu", n_layer=1, n_embd=16, ctx_len=8, batch_size=2, max_steps=4,
                    warmup_steps=0, eval_interval=2, eval_iters=1, lr=1e-2, model_options=options)
    for extra in (dict(optimizer="adamw", weight_decay=0.1, grad_clip=0.05), dict(optimizer="adam", grad_clip=0.0)):
        cfg = resolve({**settings, **extra})
        models, params = [], []
        for make in (make_optimizer, legacy_optimizer):
            paddle.seed(1)
            model = AutoModelForCausalLM.from_config(model_config(cfg, 13))
            opt = make(cfg, model)
            assert not hasattr(model, "parameter_groups")
            assert not isinstance(opt._param_groups[0], dict)  # one plain parameter list, one global clip
            for step in range(2):
                ids = paddle.to_tensor(np.random.default_rng(step).integers(0, 13, (2, 8)), dtype="int64")
                logits = model(ids).logits
                paddle.nn.functional.cross_entropy(logits.reshape([-1, 13]), ids.reshape([-1])).backward()
                opt.step()
                opt.clear_grad()
            models.append(model)
            params.append({n: p.numpy() for n, p in model.named_parameters()})
        assert type(make_optimizer(cfg, models[0])) is type(legacy_optimizer(cfg, models[1]))
        for name in params[0]:
            np.testing.assert_array_equal(params[0][name], params[1][name], err_msg=f"{family} {extra} {name}")


# -------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(corpus_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("mru-chars")
    state, t = run(tiny(corpus_file, out, model_options=dict(
        n_state_heads=1, state_size=16, n_attn_heads=2, key_size=8, value_size=8, max_sequence_length=32,
        dropout_rate=0.1, layers=["mru", "mlp", "attn", "mlp"])))
    return str(out), t


def test_short_run_learns_and_saves(trained):
    out, t = trained
    records = metrics.read_records(os.path.join(out, "metrics.jsonl"))
    assert [r["step"] for r in records] == [4, 8]
    assert records[-1]["val_loss"] < records[0]["val_loss"] < math.log(t.corpus.vocab_size) + 0.5
    assert records[0]["tokenization"] == "chars" and records[-1]["tokens"] == 8 * 4 * 24
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, MRUForCausalLM) and model.config.layers == ["mru", "mlp", "attn", "mlp"]
    ids = paddle.to_tensor(np.asarray(t.corpus.valid[:24], np.int64)[None])
    t.model.eval()
    np.testing.assert_array_equal(model(ids).logits.numpy(), t.model(ids).logits.numpy())
    # training moved state_matrices_up off zero, slowly (its rate is lr x (1/4) sqrt(2/24))
    up = model.layers[0].state_matrices_up.weight.numpy()
    assert 0 < np.abs(up).max() < 8 * 1e-2 * 0.25 * math.sqrt(2 / 24) * 1.5


@pytest.mark.slow
def test_interrupted_run_resumes_exactly(corpus_file, tmp_path):
    full_state, full = run(tiny(corpus_file, tmp_path / "full", max_steps=6, eval_interval=3))
    run(tiny(corpus_file, tmp_path / "part", max_steps=3, eval_interval=3))
    resumed_state, resumed = run(tiny(corpus_file, tmp_path / "part", max_steps=6, eval_interval=3), resume=True)
    assert resumed_state["step"] == 6
    assert records(tmp_path / "full") == records(tmp_path / "part")
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_eval_only(trained, corpus_file):
    out, t = trained
    result = evaluate_model_dir(out, corpus_file, log=lambda *_: None)
    assert result["split"] == "test" and result["ctx_len"] == 32  # the model's max_sequence_length
    assert result["tokens"] == len(t.corpus.test) and 0 < result["bpc"] < 8
    # shakespeare-char has no test split: the validation split is evaluated
    result = evaluate_model_dir(out, corpus_file, layout="shakespeare-char", ctx_len=24, log=lambda *_: None)
    assert result["split"] == "valid" and result["tokens"] == 100_000 - int(100_000 * 0.9)


def test_shakespeare_char_layout_trains_on_the_first_90_percent(corpus_file, tmp_path):
    state, t = run(tiny(corpus_file, tmp_path, layout="shakespeare-char", max_steps=2, eval_interval=2,
                        sample_length=0))
    text = open(corpus_file, encoding="utf-8").read()
    k = int(len(text) * 0.9)
    assert t.corpus.test is None and len(t.corpus.train) == k and len(t.corpus.valid) == len(text) - k
    assert t.corpus.vocab.decode(t.corpus.valid[:50]) == text[k:k + 50]
    assert t.corpus.vocab_size == len(set(text))  # sorted distinct characters of the whole file, as mru-lm


def test_byte_level_data_trains(tmp_path):
    data = tmp_path / "enwik-tiny"
    with open(DEFAULT_CORPUS, "rb") as f:
        data.write_bytes(f.read(30_000) + "<page> naïve café – ünïcödé </page>\n".encode("utf-8") * 40)
    state, t = run(tiny(str(data), tmp_path / "out", vocab="bytes", max_steps=2, eval_interval=2,
                        sample_length=0))
    assert t.corpus.vocab_size == 256 and t.model.config.vocab_size == 256
    record = metrics.read_records(str(tmp_path / "out" / "metrics.jsonl"))[-1]
    assert record["tokenization"] == "bytes" and record["bpc_unit"] == "byte"
    assert record["val_bpc"] == pytest.approx(record["val_loss"] / math.log(2))


@pytest.fixture
def tiny_bpe(tmp_path):
    """A GPT-2-format vocab.json + merges.txt: the 256 byte symbols, a few merges, <|endoftext|>."""
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("an", "d"), ("Ġ", "and"), ("i", "n")]
    return Path(hand_gpt2_files(tmp_path / "gpt2", merges))


@pytest.mark.slow
def test_gpt2_bpe_trains_and_missing_files_are_named(corpus_file, tiny_bpe, tmp_path):
    state, t = run(tiny(corpus_file, tmp_path / "bpe", vocab="gpt2", tokenizer=str(tiny_bpe), max_steps=2,
                        eval_interval=2, sample_length=5))
    assert t.corpus.vocab.kind == "gpt2" and t.model.config.vocab_size == 256 + 7 + 1
    assert metrics.read_records(str(tmp_path / "bpe" / "metrics.jsonl"))[-1]["ppl_unit"] == "bpe token"
    with pytest.raises(ValueError, match="--vocab gpt2 needs the GPT-2 tokenizer files: pass --tokenizer DIR"):
        tiny(corpus_file, tmp_path / "x", vocab="gpt2")
    (tiny_bpe / "merges.txt").unlink()
    with pytest.raises(DataError, match="lacks merges.txt: --vocab gpt2 reads GPT-2's vocab.json and merges.txt"):
        run(tiny(corpus_file, tmp_path / "y", vocab="gpt2", tokenizer=str(tiny_bpe)))
    result = tool("train", "--model", "mru", "--vocab", "gpt2", "--tokenizer", tmp_path / "nowhere", "--data",
                  corpus_file, "--out", tmp_path / "z", "--max-steps", 1, "--warmup-steps", 0, "--device", "cpu")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nowhere" in result.stderr


# ------------------------------------------------------------------------------------------------ generation
def test_generation_in_step_mode_equals_recomputing_the_whole_sequence(trained):
    out, t = trained
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = np.asarray(t.corpus.valid[:20]).tolist()
    fast = list(generate_ids(model, prompt, 20, temperature=0))  # 40 tokens: past the attention window of 32
    ids = list(prompt)
    for _ in range(20):
        ids.append(int(np.argmax(model(paddle.to_tensor([ids])).logits.numpy()[0, -1])))
    assert fast == ids[len(prompt):]
    text = "".join(generate_text(out, "Elinor", 15, seed=1))
    assert text.startswith("Elinor") and len(text) == len("Elinor") + 15


@pytest.mark.slow
def test_tools_train_evaluate_and_generate(corpus_file, tmp_path):
    out = tmp_path / "m"
    result = tool("train", "--model", "mru", "--data", corpus_file, "--out", out, "--n-layer", 1, "--n-embd", 16,
                  "--model-option", "n_state_heads=1", "--model-option", "state_size=16", "--model-option",
                  "dropout_rate=0.0", "--ctx-len", 16, "--batch-size", 4, "--max-steps", 2, "--warmup-steps", 1,
                  "--eval-interval", 2, "--eval-iters", 1, "--sample-length", 5, "--device", "cpu", "--no-progress",
                  "--layout", "shakespeare-char")
    assert result.returncode == 0, result.stderr
    assert "parameter groups: no_decay" in result.stdout and "lr x 0.08839" in result.stdout  # (1/4) sqrt(2/16)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "mru" and cfg["layers"] == ["mru", "mlp"] and cfg["state_size"] == 16
    result = tool("train", "--eval-only", "--model-dir", out, "--data", corpus_file, "--layout", "shakespeare-char",
                  "--ctx-len", 16, "--eval-iters", 2)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["split"] == "valid" and report["bpc_unit"] == "char" and report["ctx_len"] == 16
    result = tool("generate", "--model-dir", out, "--prompt", "She said", "--length", 12, "--seed", 1)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("She said") and len(result.stdout) == len("She said") + 12 + 1
