"""The command-line tools end to end: a short training run then generation, and every kind of bad input answered
with one line on stderr, exit status 2, no traceback and nothing overwritten."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURE = os.path.join(HERE, "fixtures", "rwkv2")


def tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    text = root / "small.txt"
    with open(os.path.join(REPO, "data", "austen", "austen.txt"), encoding="utf-8") as f:
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


def bad_cases(w):
    empty = w / "empty.txt"
    empty.write_text("")
    foreign = w / "foreign.txt"
    foreign.write_text("Ein schöner Tag. " * 2000, encoding="utf-8")
    binary = w / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 400)
    m = w / "model"
    return [
        ("train", ["--data", w / "missing.txt", "--out", w / "o1"], "missing.txt: no such file"),
        ("train", ["--data", empty, "--out", w / "o2"], "empty"),
        ("train", ["--data", binary, "--out", w / "o3"], "UTF-8"),
        ("train", ["--model", "gpt2", "--out", w / "o4"], "unknown --model 'gpt2'"),
        ("train", ["--max-steps", "-5", "--out", w / "o5"], "--max-steps must be a positive integer"),
        ("train", ["--out", m, "--resume", "--lr", "0.5"], "cannot resume"),
        ("train", ["--eval-only", "--model-dir", m, "--data", foreign], "'ö' (U+00F6)"),
        ("train", ["--eval-only", "--model-dir", m, "--data", w / "small.txt", "--ctx-len", 64],
         "--ctx-len 64 exceeds the model's context length 16"),
        ("train", ["--eval-only", "--model-dir", w / "nowhere", "--data", w / "small.txt"], "does not exist"),
        ("generate", ["--model-dir", m, "--prompt", "Miss ü"], "'ü' (U+00FC) at line 1, column 6"),
        ("generate", ["--model-dir", m, "--length", "-1"], "--length must be >= 0"),
        ("generate", ["--model-dir", w / "nowhere"], "does not exist"),
        ("convert", ["--model", "rwkv2", "--src", os.path.join(FIXTURE, "rwkv2-small.pth"), "--out", m],
         "already exists"),
        ("convert", ["--model", "rwkv2", "--src", w / "small.txt", "--out", w / "o6"], "refusing to load"),
    ]


def test_bad_input_gets_one_clear_line(workspace):
    weights = (workspace / "model" / "model.safetensors").read_bytes()
    failures = []  # collected, so that one run reports every case that misbehaves
    for name, args, message in bad_cases(workspace):
        result = tool(name, *args)
        lines = result.stderr.strip().splitlines()
        ok = (result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1
              and lines[0].startswith("error: ") and message in lines[0])
        if not ok:
            failures.append((name, [str(a) for a in args], result.returncode, result.stderr[-800:]))
    assert not failures, failures
    assert (workspace / "model" / "model.safetensors").read_bytes() == weights


def test_output_directory_that_cannot_be_created(workspace):
    # A path through a regular file cannot be created, whoever runs the test (root ignores permission bits).
    blocker = workspace / "a-file"
    blocker.write_text("not a directory")
    result = tool("train", "--data", workspace / "small.txt", "--out", blocker / "run", "--max-steps", 1)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Not a directory" in lines[0], result.stderr
