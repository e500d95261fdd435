"""Models with 16-bit or int8 weights on CPU (float32 activations, matrices through ops.weight_matmul), for every
family: logits against the float32 model whose weights are the rounded or dequantized values (isolates the operator:
float32 rounding only) and against the plain float32 model (the weights' rounding); parallel == step == chunked with
the state; the fused decoding step (RWKV-v2, RWKV-4, HGRN2 with its head tied or not) == the layer-by-layer step;
int8 at conversion == int8 at load, bit for bit, and the quantized directory round-trips; a small bf16 layout
decodes within 1.3x its weight bytes of the floor.

Tolerances (u: the unit roundoff of the weights' format, the largest relative error of one rounded weight):
- bfloat16 u = 2**-8 (8 significant bits), float16 u = 2**-11 (11 bits); int8 with one scale per output (the
  largest |w| of that output / 127) errs by at most half a step, 1/254 of that largest |w|, so u = 1/254.
- Same rounded weights, other operator: both sides sum in float32 in another order; a dot product of K <= 64 terms
  differs by at most K * 2**-24 ~ 4e-6 of the sum of its terms' magnitudes, which the small models carry through
  a handful of layers: 1e-5 of the logits' magnitude (as the fused-step tests allow).
- Against the plain float32 model: every matrix's output moves by at most u of the sum of its terms' magnitudes;
  along a path of n matrices, with layers of gain about 1 (small random models, weights ~0.1), the relative errors
  add: |dlogits| <= n * u * max|logits|, n the matrices on the deepest path (depth()). The measured errors are
  0.12 to 0.72 of that bound (the most: HGRN2 with its tied int8 embedding, 7.2 u of 10 u).
"""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from helpers import assert_close, assert_same_steps, count_calls, logits_in_chunks, random_ids, small_model

from paddle_lrnn.convert import convert
from paddle_lrnn.layers.linear import weight_only_layers
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.models.quantization import SCALE_SUFFIX, quantized_layers

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
UNIT_ROUNDOFF = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11, "int8": 1 / 254}
FORMATS = list(UNIT_ROUNDOFF)
OPERATOR_TOL = 1e-5
# (family, extra config): HGRN2 tied as well, so that its head is the int8 embedding (scales per row)
MODELS = {"rwkv2": {}, "rwkv4": {}, "hgrn2": {}, "hgrn2-tied": {"tie_word_embeddings": True}, "mru": {}}
T = 10  # past every window of SMALL_MODELS


def family_of(name):
    return name.split("-")[0]


def depth(model):
    """Rounded matrices on the deepest path from the token to its logits: two in sequence per sub-layer (RWKV's
    time-mix key/value/receptance then output, channel-mix key then value; HGRN2's projections then o_proj, its MLP
    up then down; MRU's and attention's in and out projections, its MLP's up and down), the embedding and the
    head."""
    c = model.config
    blocks = getattr(c, "n_layer", None) or getattr(c, "num_hidden_layers", None)
    sublayers = 2 * blocks if blocks else len(c.layers)
    return 2 * sublayers + 2


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{model name: the float32 model's directory}."""
    root = tmp_path_factory.mktemp("weight-only")
    dirs = {}
    for name, config in MODELS.items():
        dirs[name] = str(root / name)
        small_model(family_of(name), **config).save_pretrained(dirs[name])
    return dirs


def load(directory, fmt):
    return AutoModelForCausalLM.from_pretrained(directory, quantize="int8") if fmt == "int8" else \
        AutoModelForCausalLM.from_pretrained(directory, dtype=fmt)


def rounded_float32(model, directory):
    """The float32 model whose weights are `model`'s widened (and dequantized: q * scale) values."""
    ref = AutoModelForCausalLM.from_pretrained(directory, dtype="float32")
    matrices, params = weight_only_layers(model), dict(model.named_parameters())
    with paddle.no_grad():
        for name, p in ref.named_parameters():
            p.set_value(matrices[name].dequantized_weight() if name in matrices else params[name].astype("float32"))
    return ref


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_logits_against_the_float32_model(saved, name, fmt):
    model = load(saved[name], fmt)
    params = model.state_dict()
    matrices = quantized_layers(model) if fmt == "int8" else weight_only_layers(model)
    assert {params[n].dtype for n in matrices} == {getattr(paddle, fmt)}
    if fmt == "int8":  # (an embedding that is only looked up keeps its dtype)
        assert {params[n + SCALE_SUFFIX].dtype for n in matrices} == {paddle.float32}
    ids = random_ids(2, T, model.config.vocab_size)
    with paddle.no_grad():
        logits = model(ids).logits.numpy()
        rounded = rounded_float32(model, saved[name])(ids).logits.numpy()
        plain = AutoModelForCausalLM.from_pretrained(saved[name])(ids).logits.numpy()
    assert logits.dtype == np.float32
    assert_close(logits, rounded, OPERATOR_TOL, OPERATOR_TOL, "against the rounded float32 model")
    bound = depth(model) * UNIT_ROUNDOFF[fmt] * np.abs(plain).max()
    err = np.abs(logits - plain).max()
    assert err <= bound, f"{err:.3g} > {bound:.3g}"
    assert err > 0  # (the weights were rounded: equality would mean the float32 model ran)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_parallel_step_and_chunked_modes_agree(saved, name, fmt):
    model = load(saved[name], fmt)
    ids = random_ids(2, T, model.config.vocab_size, seed=2)
    with paddle.no_grad():
        parallel = model(ids).logits.numpy()
        steps, step_state = logits_in_chunks(model, ids, list(range(1, T)))
        chunked, chunk_state = logits_in_chunks(model, ids, [3, 4, 8])
    assert_close(steps, parallel, OPERATOR_TOL, OPERATOR_TOL, "steps")
    assert_close(chunked, parallel, OPERATOR_TOL, OPERATOR_TOL, "chunks")
    for key, value in step_state.items():
        assert value.dtype == chunk_state[key].dtype and value.dtype in (paddle.float32, paddle.int64), key
        assert_close(value.numpy(), chunk_state[key].numpy(), OPERATOR_TOL, OPERATOR_TOL, key)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["rwkv2", "rwkv4", "hgrn2", "hgrn2-tied"])
def test_fused_step_equals_the_layer_by_layer_step(saved, name, fmt, monkeypatch):
    model, family = load(saved[name], fmt), family_of(name)
    module = importlib.import_module(f"paddle_lrnn.models.{family}.modeling")
    calls = count_calls(monkeypatch, module, f"{family}_step")
    assert_same_steps(model, random_ids(3, T, model.config.vocab_size, seed=3))
    assert len(calls) == T  # (the fused runs took the operator at every step)


# --------------------------------------------------------------------------------------------- int8 conversion
CHECKPOINTS = {  # family: (source, extra arguments of convert)
    "rwkv2": (os.path.join(FIXTURES, "rwkv2", "rwkv2-small.pth"), {}),
    "rwkv4": (os.path.join(FIXTURES, "rwkv4", "rwkv4-small.pth"), {}),
    "hgrn2": (os.path.join(FIXTURES, "hgrn2", "hgrn2-small"), {}),
    "mru": (os.path.join(FIXTURES, "mru", "checkpoint-step-100.pt"),
            {"config": os.path.join(FIXTURES, "mru", "model.json")}),
}


def quiet_convert(family, out, **kw):
    src, extra = CHECKPOINTS[family]
    convert(family, src, out, **extra, **kw, log=lambda *_: None)
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", list(CHECKPOINTS))
def test_int8_at_conversion_equals_int8_at_load(tmp_path, family, dtype):
    plain = quiet_convert(family, str(tmp_path / "plain"), dtype=dtype)
    quantized = quiet_convert(family, str(tmp_path / "q"), dtype=dtype, quantize="int8")
    assert json.load(open(os.path.join(quantized, "config.json")))["quantization"] == "int8"
    assert "quantization" not in json.load(open(os.path.join(plain, "config.json")))
    at_load = AutoModelForCausalLM.from_pretrained(plain, quantize="int8")
    converted = AutoModelForCausalLM.from_pretrained(quantized)
    a, b = at_load.state_dict(), converted.state_dict()
    assert sorted(a) == sorted(b)
    scales = [n for n in a if n.endswith(SCALE_SUFFIX)]
    assert scales and all(a[n[:-len(SCALE_SUFFIX)]].dtype == paddle.int8 for n in scales)
    for n in a:
        assert a[n].dtype == b[n].dtype, n
        np.testing.assert_array_equal(a[n].numpy(), b[n].numpy(), err_msg=n)
    # a model quantized at load saves as the converted one would
    at_load.save_pretrained(str(tmp_path / "saved"))
    assert json.load(open(tmp_path / "saved" / "config.json"))["quantization"] == "int8"
    saved = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved")).state_dict()
    for n in a:
        np.testing.assert_array_equal(saved[n].numpy(), b[n].numpy(), err_msg=n)
    # the quantized model saves and loads again as it was
    ids = random_ids(1, 7, converted.config.vocab_size)
    with paddle.no_grad():
        before = converted(ids).logits.numpy()
        converted.save_pretrained(str(tmp_path / "again"))
        again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "again"))
        np.testing.assert_array_equal(again(ids).logits.numpy(), before)
    assert json.load(open(tmp_path / "again" / "config.json"))["quantization"] == "int8"


# ------------------------------------------------------------------------------------------------- the tools
@pytest.fixture(scope="module")
def converted_rwkv2(tmp_path_factory):
    """The RWKV-v2 fixture converted with its vocabulary, and a text in that vocabulary to evaluate on."""
    from paddle_lrnn.data import DEFAULT_CORPUS, load_vocab

    root = tmp_path_factory.mktemp("tools")
    out = quiet_convert("rwkv2", str(root / "model"), vocab=os.path.join(FIXTURES, "rwkv2", "vocab.json"))
    vocab = load_vocab(out)
    with open(DEFAULT_CORPUS, encoding="utf-8") as f:
        text = "".join(c for c in f.read(40_000) if vocab.encode(c).size == 1)
    (root / "text.txt").write_text(text, encoding="utf-8")
    return out, str(root / "text.txt")


def loaded_formats(monkeypatch):
    """Records the dtypes of the matrices of every model AutoModelForCausalLM.from_pretrained returns."""
    seen, real = [], AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        int8 = any(p.dtype == paddle.int8 for p in model.parameters())
        matrices = quantized_layers(model) if int8 else weight_only_layers(model)
        seen.append({str(p.dtype).split(".")[-1] for n, p in model.named_parameters() if n in matrices})
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", staticmethod(spy))
    return seen


FLAGS = {"float32": [], "bfloat16": ["--dtype", "bfloat16"], "float16": ["--dtype", "float16"],
         "int8": ["--quantize", "int8"]}


def test_generate_and_evaluate_tools_take_dtype_and_quantize(converted_rwkv2, capsys, monkeypatch):
    from paddle_lrnn.cli import generate, train
    from paddle_lrnn.generation import generate_text

    out, text = converted_rwkv2
    seen = loaded_formats(monkeypatch)
    losses = {}
    for fmt, flags in FLAGS.items():
        generate.main(["--model-dir", out, "--prompt", "\nIn the", "--length", "12", "--temperature", "0",
                       "--quiet", *flags])
        printed = capsys.readouterr().out
        kwargs = {"quantize": "int8"} if fmt == "int8" else {"dtype": fmt}
        assert printed == "".join(generate_text(out, "\nIn the", 12, temperature=0, **kwargs)) + "\n"
        train.main(["--eval-only", "--model-dir", out, "--data", text, "--eval-iters", "2", *flags])
        losses[fmt] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["loss"]
        assert seen[-1] == seen[-2] == seen[-3] == {fmt}
    # the loss is a mean of log-softmax values, each moved by at most twice the largest logit change
    model = AutoModelForCausalLM.from_pretrained(out)
    with paddle.no_grad():
        largest = np.abs(model(random_ids(1, 16, model.config.vocab_size)).logits.numpy()).max()
    for fmt in ("bfloat16", "float16", "int8"):
        bound = 2 * depth(model) * UNIT_ROUNDOFF[fmt] * largest
        assert 0 < abs(losses[fmt] - losses["float32"]) <= bound, (fmt, losses, bound)


# ------------------------------------------------------------------------------------------------------ memory
# argv: the model directory, or nothing for the floor (the same imports, no model)
DECODE = """import sys
import paddle
import paddle_lrnn
from paddle_lrnn.generation import generate_ids
from paddle_lrnn.models import AutoModelForCausalLM
if sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], quiet=True)
    assert {str(p.dtype) for p in model.parameters()} == {'paddle.bfloat16'}
    tokens = list(generate_ids(model, [1, 2, 3], 4, temperature=0))
print([int(line.split()[1]) * 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')][0])
"""


def peak_rss(*args):
    """VmHWM of a fresh process running DECODE (ru_maxrss would carry the parent's size over fork and exec)."""
    run = subprocess.run([sys.executable, "-c", DECODE, *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split()[-1])


def test_bf16_decoding_stays_within_the_weights_bytes(tmp_path):
    # Paddle's first kernels and allocator add about 20 MiB above the floor whatever the model's size: with 75 MiB
    # of weights (Llama-2's vocabulary, two blocks of width 512) that constant stays well inside the 0.3x margin
    model = small_model("hgrn2", vocab_size=32000, hidden_size=512, num_hidden_layers=2, expand_ratio=128,
                        use_short_conv=False)
    model.to(dtype="bfloat16")
    weights = sum(int(np.prod(p.shape)) * 2 for p in model.parameters())
    assert 60 << 20 < weights < 100 << 20
    model.save_pretrained(str(tmp_path / "m"))
    del model
    floor, peak = peak_rss(), peak_rss(str(tmp_path / "m"))
    print(f"decoding: {(peak - floor) / weights:.2f}x the weight bytes above the floor")
    assert peak - floor <= 1.3 * weights, (peak - floor) / weights
