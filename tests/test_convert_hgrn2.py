"""HGRN2 converter: fla's own checkpoint and logits (tests/fixtures/hgrn2, made with fla 0.6.0) in parallel, step and
prefill+decode modes; the way back to an fla-loadable directory, bit-exact; every weight-file form (safetensors,
sharded index, pytorch_model.bin); tied embeddings, short convolutions, bfloat16; tools/convert.py; bad input."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_lrnn.convert import convert
from paddle_lrnn.convert.hgrn2 import from_torch, to_torch
from paddle_lrnn.io import cast, load_safetensors, safetensors_entries, safetensors_metadata, \
    save_torch_checkpoint
from paddle_lrnn.io.safetensors import save_safetensors
from paddle_lrnn.models import AutoModelForCausalLM, ModelFileError
from paddle_lrnn.models.hgrn2 import HGRN2Config, HGRN2ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURE = os.path.join(HERE, "fixtures", "hgrn2")
CKPT = os.path.join(FIXTURE, "hgrn2-small")
TOLERANCE = 1e-4  # the fixture README's float32 guide; measured: about 3e-6


@pytest.fixture(scope="module")
def ref():
    return np.load(os.path.join(FIXTURE, "hgrn2-small-ref.npz"))


@pytest.fixture(scope="module")
def model():
    return from_torch(CKPT)


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ------------------------------------------------------------------------------------------------- against fla
def test_parallel_logits_match_fla(model, ref):
    logits = model(paddle.to_tensor(ref["tokens"])).logits.numpy()
    assert max_diff(logits, ref["logits"]) < TOLERANCE


def test_step_logits_match_fla_recurrent(model, ref):
    ids, state, rows = paddle.to_tensor(ref["tokens"]), None, []
    for t in range(ids.shape[1]):
        out = model(ids[:, t:t + 1], state=state, use_cache=True)
        state = out.state
        rows.append(out.logits.numpy())
    assert max_diff(np.concatenate(rows, 1), ref["logits_recurrent"]) < TOLERANCE


def test_prefill_then_decode_matches_fla(model, ref):
    ids = paddle.to_tensor(ref["tokens"])
    out = model(ids[:, :66], use_cache=True)
    parts, state = [out.logits.numpy()], out.state
    for t in range(66, 70):
        out = model(ids[:, t:t + 1], state=state, use_cache=True)
        parts.append(out.logits.numpy())
        state = out.state
    assert max_diff(np.concatenate(parts, 1), ref["logits_prefill_decode"]) < TOLERANCE


def test_the_model_depends_on_fla_s_quirks(model, ref):
    """g_norm's eps of 1e-5 (not norm_eps) and the lower bounds both move the logits beyond the tolerance."""
    import paddle_lrnn.layers.hgrn2 as layer_module

    ids = paddle.to_tensor(ref["tokens"])
    saved = layer_module.G_NORM_EPS
    layer_module.G_NORM_EPS = model.config.norm_eps
    try:
        assert max_diff(model(ids).logits.numpy(), ref["logits"]) > 1e-3
    finally:
        layer_module.G_NORM_EPS = saved
    assert max_diff(model(ids).logits.numpy(), ref["logits"]) < TOLERANCE


def test_config_fields_are_kept(model):
    with open(os.path.join(CKPT, "config.json")) as f:
        original = json.load(f)
    assert model.config.to_dict() == original
    assert (model.config.num_heads, model.config.expand_ratio, model.config.mlp_intermediate_size) == (4, 24, 256)


# -------------------------------------------------------------------------------------------------- round trip
def assert_same_checkpoint(a, b):
    with open(os.path.join(a, "config.json")) as f, open(os.path.join(b, "config.json")) as g:
        assert json.load(f) == json.load(g)
    wa, wb = os.path.join(a, "model.safetensors"), os.path.join(b, "model.safetensors")
    assert safetensors_entries(wa) == safetensors_entries(wb)  # names, dtypes, shapes
    ta, tb = load_safetensors(wa), load_safetensors(wb)
    for name in ta:
        assert ta[name].tobytes() == tb[name].tobytes(), name
    assert safetensors_metadata(wb) == {"format": "pt"}


def test_round_trip_is_bit_exact(tmp_path):
    convert("hgrn2", CKPT, str(tmp_path / "paddle"), log=lambda *_: None)
    convert("hgrn2", str(tmp_path / "paddle"), str(tmp_path / "back"), to="torch", log=lambda *_: None)
    assert_same_checkpoint(CKPT, str(tmp_path / "back"))
    again = from_torch(str(tmp_path / "back"))
    for (n, p), (_, q) in zip(AutoModelForCausalLM.from_pretrained(str(tmp_path / "paddle")).named_parameters(),
                              again.named_parameters()):
        assert p.numpy().tobytes() == q.numpy().tobytes(), n


def test_other_weight_files_give_the_same_model(tmp_path, model, ref):
    sd = load_safetensors(os.path.join(CKPT, "model.safetensors"))
    ids = paddle.to_tensor(ref["tokens"][:, :9])
    want = model(ids).logits.numpy()
    # pytorch_model.bin (read by the safe torch.save reader)
    d = tmp_path / "bin"
    d.mkdir()
    shutil.copy(os.path.join(CKPT, "config.json"), d)
    save_torch_checkpoint(str(d / "pytorch_model.bin"), sd)
    np.testing.assert_array_equal(from_torch(str(d))(ids).logits.numpy(), want)
    # a sharded safetensors index
    d = tmp_path / "sharded"
    d.mkdir()
    shutil.copy(os.path.join(CKPT, "config.json"), d)
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for shard, keys in shards.items():
        save_safetensors(str(d / shard), {k: sd[k] for k in keys}, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    np.testing.assert_array_equal(from_torch(str(d))(ids).logits.numpy(), want)
    # the weight file itself as --src
    np.testing.assert_array_equal(from_torch(os.path.join(CKPT, "model.safetensors"))(ids).logits.numpy(), want)


def small_checkpoint(tmp_path, name, dtype="float32", **options):
    """An fla-layout directory written by to_torch from a perturbed model."""
    paddle.seed(4)
    cfg = HGRN2Config(vocab_size=29, hidden_size=32, num_hidden_layers=2, expand_ratio=8, **options)
    cfg.extra.update(architectures=["HGRN2ForCausalLM"], dtype=dtype)
    m = HGRN2ForCausalLM(cfg)
    for _, p in m.named_parameters():
        value = p + paddle.randn(p.shape) * 0.1
        if dtype == "bfloat16":
            value = paddle.to_tensor(cast(cast(value.numpy(), "bfloat16"), "float32"))
        p.set_value(value)
    m.eval()
    return m, to_torch(m, str(tmp_path / name))


def test_short_conv_and_tied_checkpoints_round_trip(tmp_path):
    m, path = small_checkpoint(tmp_path, "conv", use_short_conv=True, conv_size=3, tie_word_embeddings=True)
    entries = safetensors_entries(os.path.join(path, "model.safetensors"))
    assert entries["model.layers.1.attn.q_conv1d.weight"] == ("float32", (32, 1, 3))
    assert entries["model.layers.0.attn.q_proj.weight"] == ("float32", (32, 32))
    assert "lm_head.weight" not in entries  # tied: fla's save_pretrained does not write it either
    back = from_torch(path)
    ids = paddle.to_tensor([[1, 5, 7, 2, 28]], dtype="int64")
    np.testing.assert_array_equal(back(ids).logits.numpy(), m(ids).logits.numpy())
    to_torch(back, str(tmp_path / "again"))
    assert_same_checkpoint(path, str(tmp_path / "again"))
    # a tied checkpoint that also stores lm_head.weight (equal to the embedding) is accepted
    sd = load_safetensors(os.path.join(path, "model.safetensors"))
    sd["lm_head.weight"] = sd["model.embeddings.weight"]
    save_safetensors(os.path.join(path, "model.safetensors"), sd)
    np.testing.assert_array_equal(from_torch(path)(ids).logits.numpy(), m(ids).logits.numpy())
    sd["lm_head.weight"] = sd["model.embeddings.weight"] + 1
    save_safetensors(os.path.join(path, "model.safetensors"), sd)
    with pytest.raises(ModelFileError, match="lm_head.weight differs from model.embeddings.weight"):
        from_torch(path)


def test_bfloat16_checkpoints_round_trip_in_bfloat16(tmp_path):
    m, path = small_checkpoint(tmp_path, "bf16", dtype="bfloat16")
    entries = safetensors_entries(os.path.join(path, "model.safetensors"))
    assert {dtype for dtype, _ in entries.values()} == {"bfloat16"}
    back = from_torch(path)
    assert {p.dtype for p in back.parameters()} == {paddle.bfloat16}  # kept as stored
    to_torch(back, str(tmp_path / "again"))
    assert_same_checkpoint(path, str(tmp_path / "again"))
    # converted to float32, written back in bfloat16 where it holds the values exactly
    back = from_torch(path, dtype="float32")
    assert {p.dtype for p in back.parameters()} == {paddle.float32}
    to_torch(back, str(tmp_path / "again32"))
    assert_same_checkpoint(path, str(tmp_path / "again32"))
    # values that bfloat16 cannot hold are written in float32 (and the config says so), never rounded
    p = back.model.norm.weight
    p.set_value(p + 1e-4)
    to_torch(back, str(tmp_path / "f32"))
    with open(tmp_path / "f32" / "config.json") as f:
        assert json.load(f)["dtype"] == "float32"
    assert safetensors_entries(str(tmp_path / "f32" / "model.safetensors"))["model.norm.weight"][0] == "float32"
    np.testing.assert_array_equal(from_torch(str(tmp_path / "f32")).model.norm.weight.numpy(), p.numpy())


# --------------------------------------------------------------------------------------------------- bad input
def write_checkpoint(d, config=None, tensors=None):
    d.mkdir()
    with open(os.path.join(CKPT, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(config or {})
    (d / "config.json").write_text(json.dumps(cfg))
    sd = load_safetensors(os.path.join(CKPT, "model.safetensors"))
    for k, v in (tensors or {}).items():
        if v is None:
            del sd[k]
        else:
            sd[k] = v
    save_safetensors(str(d / "model.safetensors"), sd, metadata={"format": "pt"})
    return str(d)


def test_bad_checkpoints_are_one_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="has no config.json and no weights"):
        from_torch(str(empty))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(os.path.join(CKPT, "config.json"), no_weights)
    with pytest.raises(ModelFileError, match="has a config.json but no weights: expected one of model.safetensors"):
        from_torch(str(no_weights))
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    shutil.copy(os.path.join(CKPT, "model.safetensors"), no_config)
    with pytest.raises(ModelFileError, match="has no config.json"):
        from_torch(str(no_config))
    with pytest.raises(ModelFileError, match="has model_type 'llama', not 'hgrn2'"):
        from_torch(write_checkpoint(tmp_path / "llama", {"model_type": "llama"}))
    with pytest.raises(ModelFileError, match=r"lacks 1 weight\(s\) the config in config.json needs, e.g. \['model.layers.1.attn.f_proj"):
        from_torch(write_checkpoint(tmp_path / "missing", tensors={"model.layers.1.attn.f_proj.weight": None}))
    bad = np.zeros((96, 95), np.float32)
    with pytest.raises(ModelFileError, match=r"weight model.layers.0.attn.q_proj.weight has shape \[96, 95\], but "
                                             r"the config in config.json needs \[96, 96\]"):
        from_torch(write_checkpoint(tmp_path / "shape", tensors={"model.layers.0.attn.q_proj.weight": bad}))
    with pytest.raises(ModelFileError, match=r"weight model.lower_bounds has shape \[2, 96\], but the config in "
                                             r"config.json needs \[2, 120\]"):
        from_torch(write_checkpoint(tmp_path / "wider", {"hidden_size": 120, "expand_ratio": 30, "num_heads": 4}))
    with pytest.raises(ModelFileError, match=r"the config in config.json does not have, e.g. \['model.layers.0.attn.q_conv1d.weight"):
        from_torch(write_checkpoint(tmp_path / "extra", tensors={
            "model.layers.0.attn.q_conv1d.weight": np.zeros((96, 1, 4), np.float32)}))
    with pytest.raises(ModelFileError, match="attnres_block_size"):
        from_torch(write_checkpoint(tmp_path / "attnres", {"attnres_block_size": 2}))


def tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "convert.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.slow
def test_tool_both_ways_and_errors(tmp_path, ref):
    result = tool("--model", "hgrn2", "--src", CKPT, "--out", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    assert "HGRN2ForCausalLM" in result.stdout
    logits = AutoModelForCausalLM.from_pretrained(str(tmp_path / "p"))(paddle.to_tensor(ref["tokens"])).logits
    assert max_diff(logits.numpy(), ref["logits"]) < TOLERANCE
    result = tool("--model", "hgrn2", "--to", "torch", "--src", tmp_path / "p", "--out", tmp_path / "t")
    assert result.returncode == 0, result.stderr
    assert_same_checkpoint(CKPT, str(tmp_path / "t"))
    (tmp_path / "empty").mkdir()
    for args, message in [(["--src", tmp_path / "empty", "--out", tmp_path / "x"], "has no config.json"),
                          (["--src", tmp_path / "p", "--out", tmp_path / "x"], "paddle_lrnn model directory"),
                          (["--src", CKPT, "--out", tmp_path / "p"], "already exists")]:
        result = tool("--model", "hgrn2", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "x").exists()
