"""paddle_lrnn.export: for each family, the exported programs, loaded in a fresh process that imports only paddle and
the operator library, give the eager model's logits and state (the whole sequence at once; prefill then steps with
the state) for a batch size and lengths the export never traced, through paddle.jit.load and through Paddle
Inference on CPU; tools/export.py; and what export refuses."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from helpers import SMALL_MODELS as FAMILIES
from helpers import small_model

from paddle_lrnn.export import export, inference_config, load, read_manifest

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, CHUNKS = 3, (4, 1, 5, 1)  # prefill 4 tokens, then steps of 1, 5 and 1 (the export traces [1, 1] only)

# The fresh process: paddle and the operator library, nothing else of paddle_lrnn.
CHILD = r"""
import sys, numpy as np, paddle, paddle.inference as pi
import paddle_lrnn._C
assert not any(m.startswith("paddle_lrnn.") and m != "paddle_lrnn._C" for m in sys.modules), sorted(sys.modules)

def predictor(directory, program):
    config = pi.Config(f"{directory}/{program}.json", f"{directory}/{program}.pdiparams")
    config.disable_onednn()
    return pi.create_predictor(config)

def run(pred, arrays):
    for name, array in zip(pred.get_input_names(), arrays):
        handle = pred.get_input_handle(name)
        handle.reshape(array.shape)
        handle.copy_from_cpu(array)
    pred.run()
    return [pred.get_output_handle(name).copy_to_cpu() for name in pred.get_output_names()]

for directory in sys.argv[1:]:
    inputs = np.load(f"{directory}/inputs.npz")
    ids, cuts = inputs["ids"], np.cumsum(inputs["chunks"])[:-1]
    chunks = np.split(ids, cuts, axis=1)
    out = {"jit_model": paddle.jit.load(f"{directory}/model")(paddle.to_tensor(ids)).numpy(),
           "inference_model": run(predictor(directory, "model"), [ids])[0]}
    for mode in ("jit", "inference"):
        if mode == "jit":
            prefill, step = (paddle.jit.load(f"{directory}/{p}") for p in ("prefill", "step"))
            call = lambda program, arrays: [t.numpy() for t in program(*map(paddle.to_tensor, arrays))]
        else:
            prefill, step = predictor(directory, "prefill"), predictor(directory, "step")
            call = run
        outs = call(prefill, [chunks[0]])
        logits = [outs[0]]
        for chunk in chunks[1:]:
            outs = call(step, [chunk, *outs[1:]])
            logits.append(outs[0])
        out[f"{mode}_steps"] = np.concatenate(logits, axis=1)
        for i, state in enumerate(outs[1:]):
            out[f"{mode}_state_{i}"] = state
    np.savez(f"{directory}/results.npz", **out)
"""


def eager_reference(model, ids):
    """Logits of the whole sequence in one call, of the same chunks with the state, and the final state."""
    whole = model(paddle.to_tensor(ids)).logits.numpy()
    state, parts = None, []
    for chunk in np.split(ids, np.cumsum(CHUNKS)[:-1], axis=1):
        out = model(paddle.to_tensor(chunk), state=state, use_cache=True)
        state = out.state
        parts.append(out.logits.numpy())
    return whole, np.concatenate(parts, axis=1), state


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{family: (directory, manifest, whole logits, chunked logits, final state)}; the fresh process has run."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    found = {}
    for family in FAMILIES:
        model = small_model(family)
        directory = str(root / family)
        manifest = export(model, directory)
        ids = rng.integers(0, model.config.vocab_size, (BATCH, sum(CHUNKS))).astype("int64")
        np.savez(os.path.join(directory, "inputs.npz"), ids=ids, chunks=np.array(CHUNKS))
        found[family] = (directory, manifest, *eager_reference(model, ids))
    child = subprocess.run([sys.executable, "-c", CHILD, *(d for d, *_ in found.values())], capture_output=True,
                           text=True, cwd=REPO, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    return found


@pytest.mark.parametrize("family", list(FAMILIES))
def test_exported_programs_give_the_eager_logits_in_a_fresh_process(exported, family):
    directory, manifest, whole, chunked, state = exported[family]
    results = np.load(os.path.join(directory, "results.npz"))
    for mode in ("jit", "inference"):
        np.testing.assert_allclose(results[f"{mode}_model"], whole, rtol=0, atol=1e-5, err_msg=mode)
        np.testing.assert_allclose(results[f"{mode}_steps"], chunked, rtol=0, atol=1e-5, err_msg=mode)
        names = [entry["name"] for entry in manifest["programs"]["step"]["inputs"][1:]]
        assert names == sorted(state)
        for i, name in enumerate(names):
            np.testing.assert_allclose(results[f"{mode}_state_{i}"], state[name].numpy(), rtol=0, atol=1e-5,
                                       err_msg=f"{mode} {name}")
    # the logits of a chunk do not depend on how the sequence was cut (so the programs carry the state right)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)


def test_manifest_lists_programs_inputs_and_outputs(exported):
    directory, manifest, *_ = exported["mru"]
    assert read_manifest(directory) == manifest == json.load(open(os.path.join(directory, "export.json")))
    assert sorted(os.listdir(directory)) == sorted(
        ["export.json", "inputs.npz", "results.npz"] + [f"{p}.{ext}" for p in ("model", "prefill", "step")
                                                        for ext in ("json", "pdiparams")])
    assert manifest["model_type"] == "mru" and manifest["config"]["max_sequence_length"] == 8
    programs = manifest["programs"]
    ids = {"name": "input_ids", "shape": [-1, -1], "dtype": "int64"}
    logits = {"name": "logits", "shape": [-1, -1, 23], "dtype": "float32"}
    assert programs["model"] == {"inputs": [ids], "outputs": [logits]}
    state = [{"name": "attn_keys", "shape": [1, -1, -1, 2, 4], "dtype": "float32"},
             {"name": "attn_position", "shape": [1], "dtype": "int64"},
             {"name": "attn_values", "shape": [1, -1, -1, 2, 6], "dtype": "float32"},
             {"name": "mru", "shape": [2, -1, 2, 3, 3], "dtype": "float32"}]
    assert programs["prefill"] == {"inputs": [ids], "outputs": [logits, *state]}
    assert programs["step"] == {"inputs": [ids, *state], "outputs": [logits, *state]}


def test_load_and_inference_config_register_the_operators(exported):
    directory, _, whole, *_ = exported["hgrn2"]
    ids = np.load(os.path.join(directory, "inputs.npz"))["ids"]
    np.testing.assert_allclose(load(directory)(paddle.to_tensor(ids)).numpy(), whole, rtol=0, atol=1e-5)
    config = inference_config(directory, "step")
    assert config.prog_file().endswith("step.json") and not config.onednn_enabled()
    with pytest.raises(ValueError, match="has no program 'decode'; it has model, prefill, step"):
        load(directory, "decode")
    with pytest.raises(FileNotFoundError, match="has no export.json"):
        load(os.path.dirname(directory))


def test_export_refuses_and_keeps(tmp_path):
    model = small_model("rwkv2")
    model.train()
    export(model, str(tmp_path / "a"), with_state=False)
    assert model.training  # traced in eval mode, left as it was
    assert sorted(os.listdir(tmp_path / "a")) == ["export.json", "model.json", "model.pdiparams"]
    before = (tmp_path / "a" / "model.pdiparams").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        export(small_model("rwkv2", seed=1), str(tmp_path / "a"))
    assert (tmp_path / "a" / "model.pdiparams").read_bytes() == before
    model.config.time_mix_kernel = "timex"
    with pytest.raises(ValueError, match="time_mix_kernel 'timex' takes at most ctx_len tokens"):
        export(model, str(tmp_path / "b"))
    with pytest.raises(TypeError, match="needs a paddle_lrnn model"):
        export(paddle.nn.Linear(2, 2), str(tmp_path / "c"))
    assert sorted(os.listdir(tmp_path)) == ["a"]  # nothing partial left behind


def test_export_tool(tmp_path, capsys):
    small_model("hgrn2").save_pretrained(str(tmp_path / "model"))
    spec = importlib.util.spec_from_file_location("export_tool", os.path.join(REPO, "tools", "export.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--model-dir", str(tmp_path / "model"), "--out", str(tmp_path / "out"), "--no-state"])
    assert capsys.readouterr().out == f"exported {tmp_path / 'model'} (hgrn2) to {tmp_path / 'out'}: model.json\n"
    assert list(read_manifest(str(tmp_path / "out"))["programs"]) == ["model"]
    again = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--model-dir",
                            str(tmp_path / "model"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                           cwd=REPO, timeout=600)
    assert again.returncode == 2
    assert again.stderr == f"error: --out {tmp_path / 'out'} already exists; choose another path or pass --overwrite\n"
