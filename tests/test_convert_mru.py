"""MRU converter: mru-lm's own checkpoint and outputs (tests/fixtures/mru, made with the original model.py) in
parallel, recurrent and chunked modes, float64, and the final state; the way back to an mru-lm train folder,
bit-exact (the xPos buffers: see test_xpos_buffers_are_recomputed); torch.compile's key prefix; model.json forms;
tools/convert.py; bad input, one clear line each."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import paddle
import pytest

from paddle_lrnn.convert import convert
from paddle_lrnn.convert.mru import from_torch, xpos_buffers
from paddle_lrnn.io import load_torch_checkpoint, save_torch_checkpoint
from paddle_lrnn.layers.mru import xpos_tables
from paddle_lrnn.models import AutoModelForCausalLM, ModelFileError
from paddle_lrnn.models.mru import MRUForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURE = os.path.join(HERE, "fixtures", "mru")
CKPT = os.path.join(FIXTURE, "checkpoint-step-100.pt")
MODEL_JSON = os.path.join(FIXTURE, "model.json")
TOLERANCE = 1e-4  # the fixture README's float32 guide; measured: 1.6e-5 (parallel), 1.5e-5, 1.8e-5
STATE_TOLERANCE = 1e-5  # relative to the state's largest value; measured: 1.0e-6 (layer 0), 2.8e-6 (layer 1)


@pytest.fixture(scope="module")
def ref():
    return np.load(os.path.join(FIXTURE, "mru-small-ref.npz"))


@pytest.fixture(scope="module")
def model():
    return from_torch(CKPT)


@pytest.fixture(scope="module")
def original():
    return load_torch_checkpoint(CKPT)


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def run_in_chunks(model, ids, cuts):
    state, parts = None, []
    for a, b in zip([0] + cuts, cuts + [ids.shape[1]]):
        out = model(ids[:, a:b], state=state, use_cache=True)
        state = out.state
        parts.append(out.logits.numpy())
    return np.concatenate(parts, 1), state


# --------------------------------------------------------------------------------------------- against mru-lm
def test_parallel_logits_and_final_state_match_the_original(model, ref):
    out = model(paddle.to_tensor(ref["tokens"]), use_cache=True)
    assert max_diff(out.logits.numpy(), ref["logits"]) < TOLERANCE
    got, want = out.state["mru"].numpy(), ref["final_state"]
    assert got.shape == want.shape == (2, 2, 2, 4, 4)
    for layer in range(2):  # layer 1's state reaches ~1.5e3: compare relative to its largest value
        assert max_diff(got[layer], want[layer]) / np.abs(want[layer]).max() < STATE_TOLERANCE


def test_recurrent_logits_match_the_original(model, ref):
    got, state = run_in_chunks(model, paddle.to_tensor(ref["tokens"]), list(range(1, 37)))
    assert max_diff(got, ref["logits_recurrent"]) < TOLERANCE
    for layer in range(2):
        want = ref["final_state"][layer]
        assert max_diff(state["mru"].numpy()[layer], want) / np.abs(want).max() < STATE_TOLERANCE


def test_chunked_logits_match_the_original(model, ref):
    got, _ = run_in_chunks(model, paddle.to_tensor(ref["tokens"]), [16, 21])
    assert max_diff(got, ref["logits_chunked"]) < TOLERANCE


def test_float64_logits_match_the_original_s_float64_run(ref):
    m = from_torch(CKPT)
    m.to(dtype="float64")
    logits = m(paddle.to_tensor(ref["tokens"])).logits.numpy()  # returned in float32
    assert max_diff(logits, ref["logits_fp64"]) < 1e-6


def test_the_mru_layers_matter(ref):
    m = from_torch(CKPT)
    for i in (0, 2):
        w = m.layers[i].state_matrices_up.weight
        w.set_value(paddle.zeros(w.shape))
    assert max_diff(m(paddle.to_tensor(ref["tokens"])).logits.numpy(), ref["logits"]) > 1.0


def test_config_and_step_are_kept(model):
    with open(MODEL_JSON) as f:
        original = json.load(f)
    assert model.config.to_model_json() == original
    assert model.config.extra == {"checkpoint_step": 100}
    assert model.num_parameters() == 2 * (32 * 32 * 2 + 2 * 4 * 4) + 2 * 2 * 32 * 128 + 59 * 32 + 5 * 32


# -------------------------------------------------------------------------------------------------- round trip
def test_round_trip_is_bit_exact(tmp_path, original):
    convert("mru", CKPT, str(tmp_path / "paddle"), config=MODEL_JSON, log=lambda *_: None)
    assert isinstance(AutoModelForCausalLM.from_pretrained(str(tmp_path / "paddle")), MRUForCausalLM)
    convert("mru", str(tmp_path / "paddle"), str(tmp_path / "back"), to="torch", log=lambda *_: None)
    path = tmp_path / "back" / "checkpoints" / "checkpoint-step-100.pt"
    with open(tmp_path / "back" / "model.json", "rb") as f, open(MODEL_JSON, "rb") as g:
        assert f.read() == g.read()  # as mru-lm's main.py writes it
    back = load_torch_checkpoint(str(path))
    assert list(back) == ["step", "model_state_dict"] and back["step"] == 100
    sd, want = back["model_state_dict"], original["model_state_dict"]
    assert isinstance(sd, OrderedDict) and list(sd) == list(want)  # the original's keys, in its order
    torch_present = importlib.util.find_spec("torch") is not None
    for key, value in want.items():
        assert sd[key].dtype == value.dtype and sd[key].shape == value.shape, key
        if key != "position_embedding.c" or torch_present:  # see test_xpos_buffers_are_recomputed
            assert sd[key].tobytes() == value.tobytes(), key
    assert sd["lm_head.weight"] is sd["wte.weight"]  # one storage in the file: tied, as torch saves it
    # and back again: the same parameters
    again = from_torch(str(tmp_path / "back"))  # an mru-lm train folder as --src
    for (n, p), (_, q) in zip(from_torch(CKPT).named_parameters(), again.named_parameters()):
        assert p.numpy().tobytes() == q.numpy().tobytes(), n


def test_written_checkpoint_loads_in_torch(model, tmp_path):
    """torch.load (weights_only) reads the train folder's checkpoint, lm_head.weight sharing wte.weight's storage."""
    torch = pytest.importorskip("torch")
    from paddle_lrnn.convert.mru import to_torch

    path = to_torch(model, str(tmp_path / "run"))
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["model_state_dict"]
    assert ckpt["step"] == 100 and sd["lm_head.weight"].data_ptr() == sd["wte.weight"].data_ptr()
    assert np.array_equal(sd["layers.0.mru_out.weight"].numpy(), model.layers[0].mru_out.weight.numpy().T)


def test_xpos_buffers_are_recomputed(original):
    """Without torch: s, t and invt bit-identical to the original's buffers, c within one unit in the last place
    (torch computes cos with MKL's vsCos, which is not correctly rounded: 40 of the 1024 entries differ by 1 ulp).
    With torch: all four bit-identical (torch computes them as the original does)."""
    sd = original["model_state_dict"]
    tables = xpos_buffers(16, 64, use_torch=False)
    assert tables.keys() == {f"position_embedding.{n}" for n in ("c", "s", "t", "invt")}
    np.testing.assert_array_equal(tables["position_embedding.c"], xpos_tables(16, 0, 64, 64)[0])
    for name in ("s", "t", "invt"):
        key = f"position_embedding.{name}"
        assert tables[key].tobytes() == sd[key].tobytes(), name
    c, ref_c = tables["position_embedding.c"], sd["position_embedding.c"]
    ulp = np.abs(c.view(np.int32).astype(np.int64) - ref_c.view(np.int32).astype(np.int64))
    assert ulp.max() <= 1 and 0 < (ulp > 0).sum() <= 64
    if importlib.util.find_spec("torch") is not None:
        for key, table in xpos_buffers(16, 64, use_torch=True).items():
            assert table.tobytes() == sd[key].tobytes(), key


def test_compiled_model_keys_and_a_model_json_without_vocab_size(tmp_path, original, ref, model):
    """torch.compile'd models save every key as _orig_mod.<key>; the repository's config/*/model.json has no
    vocab_size (main.py injects it from the tokenizer): it comes from wte.weight."""
    sd = OrderedDict((f"_orig_mod.{k}", v) for k, v in original["model_state_dict"].items())
    save_torch_checkpoint(str(tmp_path / "compiled.pt"), {"step": 7, "model_state_dict": sd})
    with open(MODEL_JSON) as f:
        cfg = json.load(f)
    del cfg["vocab_size"]
    (tmp_path / "model.json").write_text(json.dumps(cfg))
    m = from_torch(str(tmp_path / "compiled.pt"))  # model.json found beside the checkpoint
    ids = paddle.to_tensor(ref["tokens"][:, :9])
    np.testing.assert_array_equal(m(ids).logits.numpy(), model(ids).logits.numpy())
    assert m.config.vocab_size == 59 and m.config.extra["checkpoint_step"] == 7


def test_train_folder_layout_finds_model_json_in_the_parent(tmp_path, ref, model):
    run = tmp_path / "trains" / "train-0"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(MODEL_JSON, run)
    shutil.copy(CKPT, run / "checkpoints" / "checkpoint-step-100.pt")
    shutil.copy(CKPT, run / "checkpoints" / "checkpoint-step-20.pt")
    ids = paddle.to_tensor(ref["tokens"][:, :5])
    for src in (run / "checkpoints" / "checkpoint-step-100.pt", run):
        np.testing.assert_array_equal(from_torch(str(src))(ids).logits.numpy(), model(ids).logits.numpy())


@pytest.mark.slow
def test_tools_convert_both_ways(tmp_path):
    tool = os.path.join(REPO, "tools", "convert.py")
    r = subprocess.run([sys.executable, tool, "--model", "mru", "--src", CKPT, "--config", MODEL_JSON, "--out",
                        str(tmp_path / "m")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "MRUForCausalLM" in r.stdout
    r = subprocess.run([sys.executable, tool, "--model", "mru", "--to", "torch", "--src", str(tmp_path / "m"),
                        "--out", str(tmp_path / "t")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t" / "checkpoints" / "checkpoint-step-100.pt").is_file()
    r = subprocess.run([sys.executable, tool, "--model", "mru", "--src", CKPT, "--config", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: --config") and "no such file" in r.stderr


# --------------------------------------------------------------------------------------------------- bad input
def write_case(d, original, config=None, tensors=None, drop_state=False):
    """A copy of the fixture in d with model.json fields and state-dict entries changed (None removes)."""
    d.mkdir()
    with open(MODEL_JSON) as f:
        cfg = json.load(f)
    for k, v in (config or {}).items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (d / "model.json").write_text(json.dumps(cfg))
    sd = OrderedDict(original["model_state_dict"])
    for k, v in (tensors or {}).items():
        if v is None:
            sd.pop(k)
        else:
            sd[k] = v
    obj = {"step": 100} if drop_state else {"step": 100, "model_state_dict": sd}
    save_torch_checkpoint(str(d / "ckpt.pt"), obj)
    return str(d / "ckpt.pt")


@pytest.mark.parametrize("case,match", [
    (dict(config=dict(layers=["mru", "mlp", "rnn", "mlp"])), r"unknown layer type\(s\) 'rnn'; known: mru, mlp, attn"),
    (dict(drop_state=True), r"not an mru-lm training checkpoint: it has no 'model_state_dict' entry \(found step\)"),
    (dict(tensors={"layers.1.mlp.0.weight": np.zeros((64, 32), np.float32)}),
     r"layers.1.mlp.0.weight has shape \[64, 32\], but .*model.json needs \[128, 32\]"),
    (dict(tensors={"position_embedding.c": np.zeros((32, 1, 16), np.float32)}),
     r"position_embedding.c has shape \[32, 1, 16\], but .* needs \[64, 1, 16\]"),
    (dict(config=dict(state_size=24)), r"model.json: MRUConfig: the state head size .* = 12 must be a perfect square"),
    (dict(config=dict(vocab_size=60)), "says vocab_size 60 but the checkpoint's wte.weight has 59 rows"),
    (dict(config=dict(n_layers=4)), "has field\\(s\\) mru-lm's model.json does not have: n_layers"),
    (dict(config=dict(layers=None)), "lacks the field\\(s\\) layers"),
    (dict(config=dict(layers=["mru", "mlp"])),
     r"has 7 weight\(s\) .*model.json does not have, e.g. \[.*'layers.2.state_matrices_down"),
    (dict(tensors={"layers.0.mru_out.weight": None}), r"lacks 1 weight\(s\) .*model.json needs, e.g. \['layers.0.mru_out.weight"),
    (dict(tensors={"lm_head.weight": np.zeros((59, 32), np.float32)}), "lm_head.weight differs from wte.weight"),
])
def test_bad_input_gives_one_clear_error(tmp_path, original, case, match):
    path = write_case(tmp_path / "c", original, **case)
    with pytest.raises(ModelFileError, match=match) as err:
        from_torch(path)
    assert "\n" not in str(err.value)


def test_missing_or_broken_model_json(tmp_path, original):
    d = tmp_path / "alone"
    d.mkdir()
    shutil.copy(CKPT, d / "ckpt.pt")
    with pytest.raises(ModelFileError, match="no model.json beside .* pass the run's model.json with --config"):
        from_torch(str(d / "ckpt.pt"))
    (d / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="is not valid JSON"):
        from_torch(str(d / "ckpt.pt"))
    with pytest.raises(ModelFileError, match="holds no mru-lm checkpoint"):
        from_torch(str(tmp_path))
    with pytest.raises(ValueError, match="--config is read only with --model mru"):
        convert("hgrn2", CKPT, str(tmp_path / "x"), config=MODEL_JSON)
    # the old branch's layout (blocks.*) is named as such
    old = OrderedDict([("lm_head_weights", np.zeros((59, 32), np.float32)),
                       ("blocks.0.state_matrices_up", np.zeros((2, 4, 4), np.float32)),
                       ("wte.weight", np.zeros((59, 32), np.float32))])
    save_torch_checkpoint(str(d / "old.pt"), {"step": 1, "model_state_dict": old})
    shutil.copy(MODEL_JSON, d / "model.json")
    with pytest.raises(ModelFileError, match="'old' branch"):
        from_torch(str(d / "old.pt"))
    # not a torch file at all
    with pytest.raises(ModelFileError, match="refusing to load"):
        from_torch(str(d / "model.json"), config=MODEL_JSON)
