"""RWKV-v2 converter: the converted fixture checkpoint gives the original RNN runner's logits in every mode and with
both kernels, the round trip back to the original layout is bit-exact, and bad checkpoints are refused safely."""
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import paddle
import pytest

from paddle_lrnn.convert import convert, converter
from paddle_lrnn.io import CheckpointError, load_torch_checkpoint, save_torch_checkpoint
from paddle_lrnn.models import AutoModelForCausalLM, ModelFileError

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "rwkv2")
PTH = os.path.join(FIXTURE, "rwkv2-small.pth")
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(FIXTURE, "rwkv2-small-ref.npz"))


@pytest.fixture(scope="module")
def model():
    return converter("rwkv2").from_torch(PTH)


@pytest.mark.parametrize("kernel", ["wkv", "timex"])
def test_converted_fixture_matches_the_original_runner(model, reference, kernel):
    for block in model.blocks:
        block.att.kernel = kernel
    tokens = paddle.to_tensor(reference["tokens"][None])
    expected = reference["logits"]
    parallel = model(tokens).logits.numpy()[0]
    assert np.abs(parallel - expected).max() <= 1e-4
    state, rows = None, []
    for t in range(tokens.shape[1]):
        out = model(tokens[:, t:t + 1], state=state, use_cache=True)
        state = out.state
        rows.append(out.logits.numpy()[0, 0])
    assert np.abs(np.stack(rows) - expected).max() <= 1e-4


def test_config_is_read_off_the_shapes(model):
    c = model.config
    assert (c.vocab_size, c.n_embd, c.n_layer, c.ctx_len, c.variant, c.head_qk_dim) == (77, 64, 3, 40, "RWKV", 256)


def test_round_trip_to_the_original_layout_is_bit_exact(model, tmp_path):
    out = str(tmp_path / "back.pth")
    converter("rwkv2").to_torch(model, out)
    original, back = load_torch_checkpoint(PTH), load_torch_checkpoint(out)
    assert sorted(original) == sorted(back)
    for key in original:
        assert original[key].dtype == back[key].dtype and np.array_equal(original[key], back[key]), key


def test_round_trip_file_loads_in_torch(model, tmp_path):
    torch = pytest.importorskip("torch")
    out = str(tmp_path / "back.pth")
    converter("rwkv2").to_torch(model, out)
    sd = torch.load(out, weights_only=True)
    assert np.array_equal(sd["blocks.1.att.key.weight"].numpy(), model.blocks[1].att.key.weight.numpy().T)


def test_convert_writes_model_and_vocabulary(tmp_path, reference):
    out = str(tmp_path / "converted")
    convert("rwkv2", PTH, out, vocab=os.path.join(FIXTURE, "vocab.json"), log=lambda *_: None)
    from paddle_lrnn.data import load_vocab

    vocab = load_vocab(out)
    assert vocab.encode(str(reference["text"])).tolist() == reference["tokens"].tolist()
    loaded = AutoModelForCausalLM.from_pretrained(out)
    np.testing.assert_allclose(loaded(paddle.to_tensor(reference["tokens"][None])).logits.numpy()[0],
                               reference["logits"], atol=1e-4)
    back = str(tmp_path / "back.pth")
    convert("rwkv2", out, back, to="torch", log=lambda *_: None)
    assert np.array_equal(load_torch_checkpoint(back)["emb.weight"], load_torch_checkpoint(PTH)["emb.weight"])


def test_checkpoint_that_is_not_rwkv2(tmp_path):
    mru = os.path.join(HERE, "fixtures", "mru", "checkpoint-step-100.pt")
    other = str(tmp_path / "other.pth")
    save_torch_checkpoint(other, {"model.embeddings.weight": np.zeros((3, 4), np.float32)})
    with pytest.raises(ModelFileError, match="is not an RWKV-v2 checkpoint: it lacks emb.weight"):
        converter("rwkv2").from_torch(other)
    save_torch_checkpoint(other, {"step": 1, "model_state_dict": {}})
    with pytest.raises(ModelFileError, match="expected a state dict of tensors"):
        converter("rwkv2").from_torch(other)
    with pytest.raises(ModelFileError, match="is not an RWKV-v2 checkpoint"):
        converter("rwkv2").from_torch(mru)


@pytest.mark.slow
def test_checkpoint_whose_shapes_do_not_fit(tmp_path):
    sd = load_torch_checkpoint(PTH)
    sd["blocks.1.ffn.value.weight"] = np.zeros((64, 128), np.float32)
    bad = str(tmp_path / "bad.pth")
    save_torch_checkpoint(bad, sd)
    with pytest.raises(ModelFileError, match=r"blocks.1.ffn.value.weight has shape \[128, 64\], but the model needs "
                                              r"\[256, 64\]"):
        converter("rwkv2").from_torch(bad)


def test_truncated_checkpoint(tmp_path):
    data = open(PTH, "rb").read()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        converter("rwkv2").from_torch(str(bad))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    bad = tmp_path / "evil.pth"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", pickle.dumps({"emb.weight": payload}, protocol=2))
        z.writestr("evil/version", "3\n")
    with pytest.raises(CheckpointError, match="system"):
        converter("rwkv2").from_torch(str(bad))
    assert not marker.exists()


def run_tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "convert.py"), *args], capture_output=True,
                          text=True, cwd=REPO)


@pytest.mark.slow
def test_tool_converts_and_refuses_bad_input_in_one_line(tmp_path):
    out = tmp_path / "m"
    ok = run_tool("--model", "rwkv2", "--src", PTH, "--out", str(out), "--vocab", os.path.join(FIXTURE, "vocab.json"))
    assert ok.returncode == 0, ok.stderr
    assert "204,032 parameters" in ok.stdout and (out / "model.safetensors").exists()
    before = (out / "model.safetensors").read_bytes()
    cases = [
        (["--model", "rwkv2", "--src", PTH, "--out", str(out)], "already exists"),
        (["--model", "rwkv3", "--src", PTH, "--out", str(tmp_path / "x")], "unknown --model 'rwkv3'"),
        (["--model", "rwkv2", "--src", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "y")], "does not exist"),
        (["--model", "rwkv2", "--src", PTH, "--out", str(tmp_path / "z"), "--vocab",
          os.path.join(HERE, "fixtures", "README.md")], "vocab"),
    ]
    for args, message in cases:
        result = run_tool(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert (out / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "z").exists()
