"""The command-line tools end to end: a short training run, then generation and evaluation of the trained model, as
real processes. (Bad input to every tool: tests/test_bad_input.py.)"""
import os
import subprocess
import sys

import pytest
from helpers import REPO, run_tool as tool

from paddle_lrnn.data import DEFAULT_CORPUS

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    text = root / "small.txt"
    with open(DEFAULT_CORPUS, encoding="utf-8") as f:
        text.write_text(f.read(60_000), encoding="utf-8")
    model = root / "model"
    result = tool("train", "--data", text, "--out", model, "--max-steps", 4, "--eval-interval", 2, "--eval-iters", 1,
                  "--n-layer", 2, "--n-embd", 16, "--ctx-len", 16, "--batch-size", 2, "--sample-length", 10,
                  "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "sample:" in result.stdout and "saved the model" in result.stdout
    return root


def test_train_then_generate_and_evaluate(workspace):
    result = tool("generate", "--model-dir", workspace / "model", "--prompt", "It is", "--length", 20, "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("It is") and len(result.stdout.rstrip("\n")) == len("It is") + 20
    again = tool("generate", "--model-dir", workspace / "model", "--prompt", "It is", "--length", 20, "--seed", 3)
    assert again.stdout == result.stdout
    result = tool("train", "--eval-only", "--model-dir", workspace / "model", "--data", workspace / "small.txt")
    assert result.returncode == 0, result.stderr
    assert '"split": "test"' in result.stdout and "bits per char" in result.stdout


@pytest.mark.parametrize("name", ["train", "convert", "generate", "export", "bench"])
def test_console_scripts_are_installed_and_print_their_help(name):
    """setup.py's entry points: the installed paddle-lrnn-NAME runs the tool's main (tools/NAME.py's in a checkout)."""
    from importlib.metadata import entry_points

    script = f"paddle-lrnn-{name}"
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == script]
    assert entry.value == f"paddle_lrnn.cli.{name}:cli"
    path = os.path.join(os.path.dirname(sys.executable), script)
    result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script} ") and "paddle-lrnn-" in result.stdout
    checkout = subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{name}.py"), "--help"],
                              capture_output=True, text=True, timeout=600)
    assert checkout.returncode == 0 and checkout.stdout.startswith(f"usage: {name}.py ")
    assert checkout.stdout.split("\n\n", 1)[1] == result.stdout.split("\n\n", 1)[1]  # after the usage lines
