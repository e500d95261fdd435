"""Smoke test of an installed paddle_lrnn wheel, run by .ci/wheel_smoke.sh with the virtualenv the wheel went into,
from a directory outside the checkout: what a user of `pip install paddle_lrnn-*.whl` does first.

  python wheel_smoke.py REPO WORKDIR

REPO (the checkout) provides only the list of modules the package must have and the fixtures: the code under test
is the installed one, run through its console scripts. Each step prints one line; any failure raises (non-zero
exit status).
  1. paddle_lrnn comes from site-packages, not from REPO, with its embedded corpus;
  2. every module of REPO's paddle_lrnn/ imports from the wheel (a subpackage missing from it fails here; an optional
     integration whose library is not installed must at least be in it), the operator library loads and registers
     every operator, and every console script answers --help;
  3. paddle-lrnn-convert converts each family's original checkpoint (tests/fixtures), and the converted model
     reproduces the original's logits, so every kernel of the wheel runs;
  4. paddle-lrnn-generate continues a prompt with the converted RWKV-v2, the same for the same seed;
  5. paddle-lrnn-train trains a few steps on the embedded corpus, and the trained model generates.
"""
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO, WORK = (os.path.abspath(p) for p in sys.argv[1:3])
FIXTURES = os.path.join(REPO, "tests", "fixtures")
BIN = os.path.dirname(sys.executable)  # the virtualenv's console scripts
TOOLS = ("train", "convert", "generate", "export", "bench")
TOLERANCE = 1e-4  # the converter tests' bound against the originals' float32 logits
T0 = time.time()


def tool(name, *args):
    """Runs console script paddle-lrnn-NAME; returns its stdout, raising with its stderr on failure."""
    out = subprocess.run([os.path.join(BIN, f"paddle-lrnn-{name}"), *map(str, args)], capture_output=True, text=True,
                         cwd=WORK, timeout=900)
    assert out.returncode == 0, f"paddle-lrnn-{name} {' '.join(map(str, args))} failed:\n{out.stderr}"
    return out.stdout


def step(message):
    print(f"[{time.time() - T0:5.1f} s] {message}", flush=True)


def repo_modules():
    """Every module of the package as the repository holds it (tracked and new files, not the build's stub)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "paddle_lrnn"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    names = []
    for path in sorted(f for f in files if f.endswith(".py") and os.path.exists(os.path.join(REPO, f))):
        parts = path[:-3].split("/")
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# 1. the installed package, not the checkout
import paddle  # noqa: E402

import paddle_lrnn  # noqa: E402

where = os.path.dirname(os.path.abspath(paddle_lrnn.__file__))
assert not where.startswith(REPO + os.sep) and "site-packages" in where, f"paddle_lrnn imported from {where}"
from paddle_lrnn.data import DEFAULT_CORPUS  # noqa: E402

assert DEFAULT_CORPUS.startswith(where) and os.path.getsize(DEFAULT_CORPUS) > 4_000_000, DEFAULT_CORPUS
step(f"paddle_lrnn {paddle_lrnn.__version__} from {where}, paddle {paddle.__version__}, corpus {DEFAULT_CORPUS}")

# 2. every module, then the operator library
modules = repo_modules()
assert "paddle_lrnn.models" in modules, modules
missing, optional = [], []
for name in modules:
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        # an optional integration whose library is not installed here: its file must still be in the wheel
        if err.name and not err.name.startswith("paddle_lrnn") and importlib.util.find_spec(name) is not None:
            optional.append(f"{name} (needs {err.name.split('.')[0]})")
        else:
            missing.append(f"{name}: {err}")
        continue
    assert os.path.abspath(module.__file__).startswith(where), f"{name} imported from {module.__file__}"
assert not missing, "modules missing from the wheel:\n  " + "\n  ".join(missing)
from paddle_lrnn.ops.library import library  # noqa: E402

operators = sorted(n for n in dir(library()) if n.startswith("lrnn_"))
assert len(operators) >= 5, operators
for name in TOOLS:
    assert "usage: paddle-lrnn-" + name in tool(name, "--help")
step(f"imported {len(modules) - len(optional)} modules; present, with an optional library missing: "
     f"{', '.join(optional) or 'none'}; operator library: {', '.join(operators)}; console scripts: "
     + ", ".join(f"paddle-lrnn-{name}" for name in TOOLS))

# 3. convert each family's original checkpoint and compare with the original's logits
from paddle_lrnn.models import AutoModelForCausalLM  # noqa: E402

FAMILIES = {  # family: (source checkpoint, extra convert arguments, reference outputs)
    "rwkv2": ("rwkv2/rwkv2-small.pth", ("--vocab", "rwkv2/vocab.json"), "rwkv2/rwkv2-small-ref.npz"),
    "rwkv4": ("rwkv4/rwkv4-small.pth", (), "rwkv4/rwkv4-small-ref.npz"),  # bfloat16, kept, run as stored
    "hgrn2": ("hgrn2/hgrn2-small", (), "hgrn2/hgrn2-small-ref.npz"),
    "mru": ("mru/checkpoint-step-100.pt", ("--config", "mru/model.json"), "mru/mru-small-ref.npz"),
}
for family, (src, extra, ref) in FAMILIES.items():
    out = os.path.join(WORK, f"converted-{family}")
    flag, value = extra or (None, None)
    tool("convert", "--model", family, "--src", os.path.join(FIXTURES, src), "--out", out, "--quiet",
         *((flag, os.path.join(FIXTURES, value)) if flag else ()))
    model = AutoModelForCausalLM.from_pretrained(out)  # as stored (rwkv4: bfloat16 matrices, float32 arithmetic)
    model.eval()
    ref = np.load(os.path.join(FIXTURES, ref))
    tokens = ref["tokens"] if ref["tokens"].ndim == 2 else ref["tokens"][None]
    expected = ref["logits"] if ref["logits"].ndim == 3 else ref["logits"][None]  # RWKV-LM's runner: one sequence
    with paddle.no_grad():
        logits = model(paddle.to_tensor(tokens)).logits.numpy()
    diff = float(np.abs(logits - expected).max())
    assert diff < TOLERANCE, f"{family}: converted model's logits differ from the original's by {diff}"
    step(f"paddle-lrnn-convert {family} ({src}); logits within {diff:.1e} of the original's")

# 4. generation from the converted RWKV-v2
rwkv2_dir = os.path.join(WORK, "converted-rwkv2")
text = tool("generate", "--model-dir", rwkv2_dir, "--prompt", "The family", "--length", 24, "--seed", 1)
again = tool("generate", "--model-dir", rwkv2_dir, "--prompt", "The family", "--length", 24, "--seed", 1)
assert text.startswith("The family") and len(text) == len("The family") + 24 + 1 and text == again, (text, again)
step(f"paddle-lrnn-generate: {text[:-1]!r}")

# 5. a few training steps on the embedded corpus, then generation from the trained model
run = os.path.join(WORK, "trained")
tool("train", "--out", run, "--max-steps", 4, "--eval-interval", 2, "--eval-iters", 1, "--n-layer", 2,
     "--n-embd", 16, "--ctx-len", 16, "--batch-size", 2, "--sample-length", 10, "--device", "cpu", "--no-progress")
with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
assert records and records[-1]["step"] == 4 and np.isfinite(records[-1]["val_loss"]), records
text = tool("generate", "--model-dir", run, "--prompt", "It is", "--length", 16, "--seed", 0)
assert text.startswith("It is") and len(text) == len("It is") + 16 + 1, text  # and print()'s newline
step(f"paddle-lrnn-train: 4 steps on the embedded corpus (val_loss {records[-1]['val_loss']:.3f}); "
     f"paddle-lrnn-generate: {text[:-1]!r}")
print("wheel smoke test passed")
