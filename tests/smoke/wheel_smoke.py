"""Smoke test of an installed paddle_lrnn wheel, run by .ci/wheel_smoke.sh with the virtualenv the wheel went into,
from a directory outside the checkout: what a user of `pip install paddle_lrnn-*.whl` does first.

  python wheel_smoke.py REPO WORKDIR

REPO (the checkout) provides only the list of modules the package must have, the fixtures and the corpus: the code
under test is the installed one. Each step prints one line; any failure raises (non-zero exit status).
  1. paddle_lrnn comes from site-packages, not from REPO;
  2. every module of REPO's paddle_lrnn/ imports from the wheel (a subpackage missing from it fails here), and the
     operator library loads and registers every operator;
  3. each family's original checkpoint (tests/fixtures) converts, and the converted model reproduces the original's
     logits, so every kernel of the wheel runs;
  4. the converted RWKV-v2 generates a few tokens, the same for the same seed;
  5. a few training steps on the corpus, then the saved model generates.
"""
import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO, WORK = (os.path.abspath(p) for p in sys.argv[1:3])
FIXTURES = os.path.join(REPO, "tests", "fixtures")
CORPUS = os.path.join(REPO, "data", "austen", "austen.txt")
TOLERANCE = 1e-4  # the converter tests' bound against the originals' float32 logits
T0 = time.time()


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
step(f"paddle_lrnn {paddle_lrnn.__version__} from {where}, paddle {paddle.__version__}")

# 2. every module, then the operator library
modules = repo_modules()
assert "paddle_lrnn.models" in modules, modules
missing = []
for name in modules:
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        missing.append(f"{name}: {err}")
        continue
    assert os.path.abspath(module.__file__).startswith(where), f"{name} imported from {module.__file__}"
assert not missing, "modules missing from the wheel:\n  " + "\n  ".join(missing)
from paddle_lrnn.ops._library import library  # noqa: E402

operators = sorted(n for n in dir(library()) if n.startswith("lrnn_"))
assert len(operators) >= 5, operators
step(f"imported {len(modules)} modules; operator library: {', '.join(operators)}")

# 3. convert each family's original checkpoint and compare with the original's logits
from paddle_lrnn.convert import convert  # noqa: E402
from paddle_lrnn.models import AutoModelForCausalLM  # noqa: E402

FAMILIES = {  # family: (source checkpoint, extra convert arguments, reference outputs)
    "rwkv2": ("rwkv2/rwkv2-small.pth", {"vocab": "rwkv2/vocab.json"}, "rwkv2/rwkv2-small-ref.npz"),
    "hgrn2": ("hgrn2/hgrn2-small", {}, "hgrn2/hgrn2-small-ref.npz"),
    "mru": ("mru/checkpoint-step-100.pt", {"config": "mru/model.json"}, "mru/mru-small-ref.npz"),
}
for family, (src, extra, ref) in FAMILIES.items():
    out = os.path.join(WORK, f"converted-{family}")
    convert(family, os.path.join(FIXTURES, src), out, log=lambda *_: None,
            **{k: os.path.join(FIXTURES, v) for k, v in extra.items()})
    model = AutoModelForCausalLM.from_pretrained(out)
    model.eval()
    ref = np.load(os.path.join(FIXTURES, ref))
    tokens = ref["tokens"] if ref["tokens"].ndim == 2 else ref["tokens"][None]
    if family == "rwkv2":  # RWKV-LM's runner: row t after feeding tokens 0..t, i.e. causal logits of one sequence
        expected = ref["logits"][None]
    else:
        expected = ref["logits"]
    with paddle.no_grad():
        logits = model(paddle.to_tensor(tokens)).logits.numpy()
    diff = float(np.abs(logits - expected).max())
    assert diff < TOLERANCE, f"{family}: converted model's logits differ from the original's by {diff}"
    step(f"converted {family} ({src}); logits within {diff:.1e} of the original's")

# 4. generation from the converted RWKV-v2
from paddle_lrnn.generation import generate_text  # noqa: E402

rwkv2_dir = os.path.join(WORK, "converted-rwkv2")
text = "".join(generate_text(rwkv2_dir, "The family", 24, seed=1))
again = "".join(generate_text(rwkv2_dir, "The family", 24, seed=1))
assert text.startswith("The family") and len(text) == len("The family") + 24 and text == again, (text, again)
step(f"generated {text!r}")

# 5. a few training steps, then generation from the trained model
from paddle_lrnn.training.recipes import resolve  # noqa: E402
from paddle_lrnn.training.trainer import Trainer  # noqa: E402

data = os.path.join(WORK, "corpus.txt")
with open(CORPUS, encoding="utf-8") as f, open(data, "w", encoding="utf-8") as g:
    g.write(f.read(60_000))
run = os.path.join(WORK, "trained")
cfg = resolve({"data": data, "out": run, "device": "cpu", "max_steps": 4, "eval_interval": 2, "eval_iters": 1,
               "n_layer": 2, "n_embd": 16, "ctx_len": 16, "batch_size": 2, "sample_length": 10})
Trainer(cfg, log=lambda *_: None, progress=False).train()
with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
assert records and records[-1]["step"] == 4 and np.isfinite(records[-1]["val_loss"]), records
text = "".join(generate_text(run, "It is", 16, seed=0))
assert text.startswith("It is") and len(text) == len("It is") + 16, text
step(f"trained 4 steps (val_loss {records[-1]['val_loss']:.3f}); generated {text!r}")
print("wheel smoke test passed")
