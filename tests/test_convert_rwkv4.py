"""RWKV-4 converter: the converted fixture checkpoints (bfloat16, as released; both variants) give the logits and the
state of RWKV-LM's own RNN runner in parallel and step mode; the hyper-parameters come off the names and shapes;
--to torch writes the original's layout back; bad checkpoints get one clear error."""
import os

import numpy as np
import paddle
import pytest
from helpers import run_tool

from paddle_lrnn.convert import convert, converter
from paddle_lrnn.io import CheckpointError, cast, load_torch_checkpoint, save_torch_checkpoint
from paddle_lrnn.models import AutoModelForCausalLM, ModelFileError

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "rwkv4")
RWKV2_PTH = os.path.join(HERE, "fixtures", "rwkv2", "rwkv2-small.pth")
CHECKPOINTS = {"RWKV": "rwkv4-small", "RWKV-ffnPre": "rwkv4-ffnpre"}


def pth(variant):
    return os.path.join(FIXTURE, CHECKPOINTS[variant] + ".pth")


@pytest.fixture(scope="module", params=list(CHECKPOINTS))
def case(request):
    """(variant, converted model, the original runner's reference arrays)."""
    variant = request.param
    reference = np.load(os.path.join(FIXTURE, CHECKPOINTS[variant] + "-ref.npz"))
    return variant, converter("rwkv4").from_torch(pth(variant), dtype="float32"), reference


def step_by_step(model, tokens):
    state, rows = None, []
    for t in range(tokens.shape[1]):
        out = model(tokens[:, t:t + 1], state=state, use_cache=True)
        state = out.state
        rows.append(out.logits.numpy()[0, 0])
    return np.stack(rows), state


def test_converted_fixture_matches_the_original_runner(case):
    variant, model, reference = case
    tokens = paddle.to_tensor(reference["tokens"][None])
    expected = reference["logits"]
    assert np.abs(reference["logits_fp64"] - expected).max() < 2e-6  # the original's own float32 rounding
    parallel = model(tokens, use_cache=True)
    assert np.abs(parallel.logits.numpy()[0] - expected).max() <= 1e-4
    steps, state = step_by_step(model, tokens)
    assert np.abs(steps - expected).max() <= 1e-4
    for out_state in (parallel.state, state):
        for key in ("att_shift", "ffn_shift"):
            assert np.abs(out_state[key].numpy()[:, 0] - reference[f"state_{key}_fp64"]).max() <= 1e-5, key
        wkv, expected_wkv = out_state["wkv"].numpy()[:, 0], reference["state_wkv_fp64"]
        has_att = ~np.isnan(expected_wkv[:, 0, 0])  # block 0 of RWKV-ffnPre has no time-mix
        assert has_att.sum() == (2 if variant == "RWKV-ffnPre" else 3)
        # aa, bb and pp reach ~10: 1e-5 of the largest (the original's float32 run is 2.7e-6 of it from float64)
        scale = np.abs(expected_wkv[has_att]).max()
        assert np.abs(wkv[has_att] - expected_wkv[has_att]).max() <= 1e-5 * scale


def test_config_is_read_off_the_names_and_shapes(case):
    variant, model, _ = case
    c = model.config
    assert (c.vocab_size, c.n_embd, c.n_layer, c.ctx_len, c.variant, c.dim_att, c.dim_ffn) == (
        97, 64, 3, 1024, variant, None, None)


def test_round_trip_is_the_released_file_bit_for_bit(case, tmp_path):
    """Converted with its dtype kept (bfloat16) and written back: the same keys in the same order, shapes, dtype and
    bits (what RWKV_RNN loaded for the fixture); converted to float32, the same values widened exactly."""
    variant, widened, _ = case
    original = load_torch_checkpoint(pth(variant))
    for model in (converter("rwkv4").from_torch(pth(variant)), widened):
        out = str(tmp_path / "back.pth")
        converter("rwkv4").to_torch(model, out)
        back = load_torch_checkpoint(out)
        assert list(original) == list(back)
        for key in original:
            expected = original[key] if back[key].dtype == np.uint16 else cast(original[key], "float32")
            assert back[key].shape == expected.shape and np.array_equal(back[key], expected), key


def test_round_trip_file_loads_in_torch(case, tmp_path):
    torch = pytest.importorskip("torch")
    variant, model, _ = case
    out = str(tmp_path / "back.pth")
    converter("rwkv4").to_torch(model, out)
    sd = torch.load(out, weights_only=True)
    assert sd["blocks.1.att.time_decay"].shape == (64,) and sd["blocks.1.ffn.time_mix_k"].shape == (1, 1, 64)
    assert sd["emb.weight"].dtype == torch.float32
    assert np.array_equal(sd["blocks.2.att.key.weight"].numpy(), model.blocks[2].att.key.weight.numpy().T)


def test_float16_and_float32_checkpoints_and_other_shapes(tmp_path):
    """Released files come in bfloat16, float16 and float32; time vectors may be [C], [C, 1] or [1, 1, C]; ctx_len
    comes from the file name."""
    sd = load_torch_checkpoint(pth("RWKV"))
    reference = converter("rwkv4").from_torch(pth("RWKV"), dtype="float32")
    tokens = paddle.to_tensor(np.load(os.path.join(FIXTURE, "rwkv4-small-ref.npz"))["tokens"][None])
    expected = reference(tokens).logits.numpy()
    variants = {
        "fp32-ctx4096.pth": {k: cast(v, "float32") for k, v in sd.items()},
        "fp16.pth": {k: cast(v, "float16") for k, v in sd.items()},
        "column.pth": {k: (v.reshape(-1, 1) if k.endswith(("time_decay", "time_first")) else v)
                       for k, v in sd.items()},
    }
    for name, arrays in variants.items():
        save_torch_checkpoint(str(tmp_path / name), arrays)
        model = converter("rwkv4").from_torch(str(tmp_path / name), dtype="float32")
        tolerance = 5e-3 if name.startswith("fp16") else 0  # bfloat16 -> float16 rounds the mantissa
        assert np.abs(model(tokens).logits.numpy() - expected).max() <= tolerance, name
    assert converter("rwkv4").from_torch(str(tmp_path / "fp32-ctx4096.pth")).config.ctx_len == 4096


def test_dim_att_and_dim_ffn_are_read_off_the_shapes(tmp_path):
    from paddle_lrnn.models.rwkv4 import RWKV4Config, RWKV4ForCausalLM

    model = RWKV4ForCausalLM(RWKV4Config(vocab_size=11, n_embd=16, n_layer=2, dim_att=32, dim_ffn=40))
    path = str(tmp_path / "wide.pth")
    converter("rwkv4").to_torch(model, path)
    back = converter("rwkv4").from_torch(path)
    assert (back.config.dim_att, back.config.dim_ffn) == (32, 40)


@pytest.mark.slow  # tools as processes
def test_convert_tool_round_trip(tmp_path):
    out = tmp_path / "m"
    ok = run_tool("convert", "--model", "rwkv4", "--src", pth("RWKV-ffnPre"), "--out", out)
    assert ok.returncode == 0, ok.stderr
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.model_type == "rwkv4" and model.config.variant == "RWKV-ffnPre"
    assert model.emb.weight.dtype == paddle.bfloat16  # the checkpoint's dtype, kept
    back = str(tmp_path / "back.pth")
    convert("rwkv4", str(out), back, to="torch", log=lambda *_: None)
    original = load_torch_checkpoint(pth("RWKV-ffnPre"))
    assert all(np.array_equal(original[k], v) for k, v in load_torch_checkpoint(back).items())


def edited(tmp_path, change):
    sd = load_torch_checkpoint(pth("RWKV"))
    change(sd)
    path = str(tmp_path / "edited.pth")
    save_torch_checkpoint(path, sd)
    return path


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.pop("blocks.0.ln0.weight"), r"is not an RWKV-4 checkpoint: it lacks blocks.0.ln0.weight"),
    (lambda sd: sd.update({"blocks.1.att.ln_x.weight": np.ones(64, np.float32)}),
     r"has blocks.1.att.ln_x.weight, a tensor of RWKV-5 and later"),
    (lambda sd: sd.update({"head_q.weight": np.ones((8, 64), np.float32)}), r"uses the head_qk copy head"),
    (lambda sd: sd.update({"blocks.1.ffn.value.weight": np.zeros((64, 128), np.float32)}),
     r"blocks.1.ffn.value.weight has shape \[128, 64\], but the model needs \[256, 64\]"),
    (lambda sd: sd.update({"blocks.5.ln1.weight": np.ones(64, np.float32)}), r"blocks are numbered \[0, 1, 2, 5\]"),
    (lambda sd: sd.update({"blocks.0.extra": np.ones(64, np.float32)}), r"1 weight\(s\) the model does not have"),
])
def test_bad_checkpoints(tmp_path, change, message):
    with pytest.raises(ModelFileError, match=message):
        converter("rwkv4").from_torch(edited(tmp_path, change))


def test_other_files_given_as_rwkv4(tmp_path):
    with pytest.raises(ModelFileError, match=r"is an RWKV-v2 checkpoint .*convert it with --model rwkv2"):
        converter("rwkv4").from_torch(RWKV2_PTH)
    data = open(pth("RWKV"), "rb").read()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        converter("rwkv4").from_torch(str(tmp_path / "truncated.pth"))
    save_torch_checkpoint(str(tmp_path / "nested.pth"), {"state_dict": {"emb.weight": np.zeros((3, 4), np.float32)}})
    with pytest.raises(ModelFileError, match="expected a state dict of tensors"):
        converter("rwkv4").from_torch(str(tmp_path / "nested.pth"))
