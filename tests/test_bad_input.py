"""Every bad input answered: one table of the kinds of bad input for each tool (train, convert, generate, bench,
export), each public operator and the models' entry points, across the four families.

A row builds its input in a shared workspace (three tiny trained models, the original checkpoints of tests/fixtures,
files that are missing, empty, binary, not UTF-8, hostile...), then runs the tool in-process through its
main(argv) under run_cli, or calls the function. It asserts exit status 2 or the exception type, exactly one line
that names the problem (a regex), no traceback, no output on stdout for generate (nothing partial printed), and,
after every row, that no good file of the workspace changed and no temporary file was left. Rows marked `process`
run once more as real processes (exit status and stderr as a user sees them)."""
import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import paddle
import pytest
from hostile import craft_zip, hostile_pickles, one_tensor_file, write_raw_safetensors, zip_bomb
from tokenizer_files import neox_json

from paddle_lrnn import ops
from paddle_lrnn.cli import run_cli
from paddle_lrnn.data import DEFAULT_CORPUS
from paddle_lrnn.io import atomic as atomic_module
from paddle_lrnn.io import cast
from paddle_lrnn.models import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
RWKV2_PTH = os.path.join(FIXTURES, "rwkv2", "rwkv2-small.pth")
RWKV4_PTH = os.path.join(FIXTURES, "rwkv4", "rwkv4-small.pth")
HGRN2_DIR = os.path.join(FIXTURES, "hgrn2", "hgrn2-small")
MRU_PT = os.path.join(FIXTURES, "mru", "checkpoint-step-100.pt")
MRU_JSON = os.path.join(FIXTURES, "mru", "model.json")
FAMILIES = ("rwkv2", "rwkv4", "hgrn2", "mru")
TINY = ["--max-steps", 1, "--n-layer", 1, "--n-embd", 16, "--ctx-len", 16, "--batch-size", 2, "--eval-interval", 1,
        "--eval-iters", 1, "--warmup-steps", 0, "--sample-length", 0, "--no-progress", "--device", "cpu"]
OPTIONS = {"rwkv2": [], "rwkv4": [], "hgrn2": ["--model-option", "expand_ratio=8"], "mru": []}  # (16 / 8 = 2 heads)


def permission_bits_enforced():
    """False for root (with CAP_DAC_OVERRIDE), whom a read-only directory does not stop."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o555)
        try:
            open(os.path.join(d, "probe"), "w").close()
            return False
        except PermissionError:
            return True
        finally:
            os.chmod(d, 0o755)


NO_PERMISSIONS = None if permission_bits_enforced() else "permission bits are not enforced for this user (root)"
HAS_GPU = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOLS = {name: load_tool(name) for name in ("train", "convert", "generate", "bench", "export")}


class Workspace:
    """Paths of the shared inputs; the files in `good` must never change."""

    def __init__(self, root):
        self.root = root
        self.models = {f: os.path.join(root, "models", f) for f in FAMILIES}
        self.small_txt, self.empty_txt, self.binary_bin, self.latin1_txt, self.foreign_txt = (
            self.path(n) for n in ("small.txt", "empty.txt", "binary.bin", "latin1.txt", "foreign.txt"))
        self.good = {}

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def copy(self, family, name):
        """A fresh private copy of a trained model directory (for rows that may change it)."""
        dst = self.path("copies", name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.models[family], dst)
        return dst


def digests(root):
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                out[p] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad-input"))
    w = Workspace(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADDLE_LRNN_CACHE", w.path("cache"))
        with open(DEFAULT_CORPUS, encoding="utf-8") as f:
            text = f.read(20_000)
        open(w.small_txt, "w", encoding="utf-8").write(text)
        open(w.empty_txt, "w").close()
        open(w.binary_bin, "wb").write(bytes(range(256)) * 400)
        open(w.latin1_txt, "wb").write("café au lait, s'il vous plaît. ".encode("latin-1") * 500)
        open(w.foreign_txt, "w", encoding="utf-8").write("Ein schöner Tag. " * 2000)
        open(w.path("a-file"), "w").write("not a directory")
        os.makedirs(w.path("not-wikitext"))
        os.makedirs(w.path("empty-dir"))
        for family in FAMILIES:
            TOOLS["train"].main(["--model", family, "--data", w.small_txt, "--out", w.models[family], *OPTIONS[family],
                                 *map(str, TINY)])
        TOOLS["convert"].main(["--model", "hgrn2", "--src", HGRN2_DIR, "--out", w.path("converted-hgrn2")])
        w.good = {p: d for p, d in digests(root).items() if not p.startswith(w.path("cache"))}
        w.good.update(digests(FIXTURES))
        yield w


# ---------------------------------------------------------------------------------------------------------------
# helpers the rows use

def disk_full(pattern):
    """Makes every atomic write of a path matching `pattern` fail with ENOSPC after some of its data, as on a full
    disk, by patching atomic_write wherever paddle_lrnn imported it; returns the MonkeyPatch (undo() restores)."""

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(memoryview(data).cast("B")[:7]) if not isinstance(data, str) else data[:7])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    real = atomic_module.atomic_write

    @contextlib.contextmanager
    def full(path, mode="wb", **kwargs):
        with real(path, mode, **kwargs) as f:
            yield FullFile(f) if re.search(pattern, os.fspath(path)) else f

    mp = pytest.MonkeyPatch()
    for name, module in list(sys.modules.items()):
        if name.startswith("paddle_lrnn") and getattr(module, "atomic_write", None) is real:
            mp.setattr(module, "atomic_write", full)
    return mp


def hostile(ws, name, case):
    """A checkpoint <name>.pth whose pickle would create the file <name>.pwned (see nothing_ran)."""
    return craft_zip(ws.path(f"{name}.pth"), hostile_pickles(ws.path(f"{name}.pwned"))[case][0])


def nothing_ran(name):
    def check(ws):
        assert not os.path.exists(ws.path(f"{name}.pwned")), "the checkpoint's code ran"
    return check


def unchanged(path_of, *names):
    """Check that the files `names` under the directory path_of(ws) are as the row's build left them."""
    saved = {}

    def snapshot(ws):
        saved.update({n: open(os.path.join(path_of(ws), n), "rb").read() for n in names})

    def check(ws):
        for n in names:
            assert open(os.path.join(path_of(ws), n), "rb").read() == saved[n], f"{n} changed"
    return snapshot, check


def hgrn2_dir_with(ws, name, weights_name, write):
    d = ws.path(name)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(HGRN2_DIR, "config.json"), d)
    write(os.path.join(d, weights_name))
    return d


def rwkv4_pth_with(ws, name, change):
    """The RWKV-4 fixture checkpoint with change(state dict) applied, saved as <name>.pth."""
    from paddle_lrnn.io import load_torch_checkpoint, save_torch_checkpoint

    sd = load_torch_checkpoint(RWKV4_PTH)
    change(sd)
    save_torch_checkpoint(ws.path(f"{name}.pth"), sd)
    return ws.path(f"{name}.pth")


def hgrn2_sharded_with(ws, name, change):
    """The hgrn2 fixture as two safetensors shards and their index, then change(directory) applied."""
    from paddle_lrnn.io import load_safetensors, save_sharded

    d = ws.path(name)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(HGRN2_DIR, "config.json"), d)
    save_sharded(d, load_safetensors(os.path.join(HGRN2_DIR, "model.safetensors")), {"format": "pt"},
                 max_shard_size=600_000)  # (two shards)
    change(d)
    return d


def model_dir_with(ws, name, family, change):
    d = ws.copy(family, name)
    change(d)
    return d


def mru_json_with(ws, **fields):
    cfg = json.load(open(MRU_JSON))
    cfg.update(fields)
    path = ws.path("model-changed.json")
    json.dump(cfg, open(path, "w"))
    return path


def tokenizer_file(ws, name, change=None, data=None):
    """A GPT-NeoX-shaped tokenizer.json of 723 entries at ws/name (made once), its JSON changed by `change`, or the
    bytes `data` in its place."""
    good = ws.path("neox-tokenizer.json")
    if not os.path.exists(good):
        neox_json(good)
    path = ws.path(name)
    if data is not None:
        open(path, "wb").write(data)
    else:
        spec = json.load(open(good, encoding="utf-8"))
        if change:
            change(spec)
        json.dump(spec, open(path, "w", encoding="utf-8"))
    return path


def model_with_tokenizer(ws, name, family):
    """A trained model whose vocabulary is replaced by a tokenizer.json larger than its embedding."""
    def change(d):
        for n in ("vocab.json", "paddle_lrnn_vocab.json"):
            os.remove(f"{d}/{n}")
        shutil.copy(tokenizer_file(ws, "big-tokenizer.json"), f"{d}/tokenizer.json")
    return model_dir_with(ws, name, family, change)


def quantized_hgrn2(ws, name, change=None):
    """The hgrn2 fixture converted with --quantize int8 into ws/name, its weights then changed by change({name:
    array}) (written back in place)."""
    from paddle_lrnn.convert import convert
    from paddle_lrnn.io import load_safetensors, save_safetensors

    d = convert("hgrn2", HGRN2_DIR, ws.path(name), quantize="int8", quiet=True, log=lambda *_: None)
    if change is not None:
        path = os.path.join(d, "model.safetensors")
        arrays = {k: np.array(v) for k, v in load_safetensors(path).items()}
        change(arrays)
        save_safetensors(path, arrays)
    return d


def t(*shape, dtype="float32"):
    return paddle.zeros(list(shape), dtype)


def needing_grad(x):
    x.stop_gradient = False
    return x


def other_rwkv2_model():
    from paddle_lrnn.models.rwkv2 import RWKV2Config, RWKV2ForCausalLM

    return RWKV2ForCausalLM(RWKV2Config(vocab_size=64, n_embd=8, n_layer=2, ctx_len=16))


# ---------------------------------------------------------------------------------------------------------------
# the table

@dataclass
class Row:
    id: str
    target: str  # a tool (train, convert, generate, bench), an operator's name, or "model"
    build: Callable  # ws -> argv for a tool, or a function of no arguments to call
    expect: Any  # 2 (the exit status) for a tool, else the exception type
    pattern: str  # regex that the one error line must match
    check: Optional[Callable] = None  # ws -> None: further assertions after the run
    before: Optional[Callable] = None  # ws -> None: run after build (e.g. a snapshot for check)
    disk_full: Optional[str] = None  # writes of paths matching this fail with ENOSPC
    process: bool = False  # also run as a real process
    skip: Optional[str] = None


def tool_row(id, target, build, pattern, **kw):
    return Row(id, target, build, 2, pattern, **kw)


_ckpt_snapshot, _ckpt_check = unchanged(lambda ws: ws.path("copies", "resume-rwkv2"), "model.safetensors",
                                        "config.json", "vocab.json", "paddle_lrnn_vocab.json",
                                        "checkpoints/latest", "checkpoints/step-00000001/model.safetensors")
_final_snapshot, _final_check = unchanged(lambda ws: ws.path("copies", "resume-mru"), "model.safetensors",
                                          "config.json", "vocab.json", "paddle_lrnn_vocab.json")
_save_snapshot, _save_check = unchanged(lambda ws: ws.path("copies", "save-over"), "model.safetensors",
                                        "config.json")

ROWS = [
    # ---- train: data
    tool_row("train/rwkv2/missing-data", "train", lambda ws: ["--data", ws.path("missing.txt"), "--out", ws.path("o")],
             r"missing\.txt: no such file"),
    tool_row("train/hgrn2/empty-data", "train",
             lambda ws: ["--model", "hgrn2", "--data", ws.empty_txt, "--out", ws.path("o")],
             r"empty\.txt: the file is empty \(0 bytes\)"),
    tool_row("train/mru/binary-data", "train", lambda ws: ["--model", "mru", "--data", ws.binary_bin, "--out",
                                                           ws.path("o")],
             r"binary\.bin: not UTF-8 text: invalid start byte at byte offset 128 .*byte vocabulary", process=True),
    tool_row("train/rwkv2/latin-1-data", "train", lambda ws: ["--data", ws.latin1_txt, "--out", ws.path("o")],
             r"latin1\.txt: not UTF-8 text: invalid continuation byte at byte offset 3 \(byte 0xe9, line 1\)"),
    tool_row("train/hgrn2/directory-without-wikitext", "train",
             lambda ws: ["--model", "hgrn2", "--data", ws.path("not-wikitext"), "--out", ws.path("o")],
             r"not-wikitext: not a WikiText directory: missing wiki\.train\.tokens"),
    tool_row("train/mru/context-longer-than-the-data", "train",
             lambda ws: ["--model", "mru", "--data", ws.small_txt, "--out", ws.path("o"), "--ctx-len", 100_000],
             r"the train split has 18,000 tokens .* too few for ctx_len 100000, which needs at least 100,001"),
    # ---- train: flags
    tool_row("train/unknown-model", "train", lambda ws: ["--model", "gpt2", "--out", ws.path("o")],
             r"unknown --model 'gpt2'; expected one of hgrn2, mru, rwkv2, rwkv4"),
    tool_row("train/mru/unknown-preset", "train", lambda ws: ["--model", "mru", "--preset", "enwik8", "--out",
                                                              ws.path("o")],
             r"unknown --preset 'enwik8' for mru; known: shakespeare-char"),
    tool_row("train/rwkv2/negative-max-steps", "train", lambda ws: ["--max-steps", -1, "--out", ws.path("o")],
             r"--max-steps must be a positive integer, got -1"),
    tool_row("train/hgrn2/batch-size-0", "train", lambda ws: ["--model", "hgrn2", "--batch-size", 0, "--out",
                                                              ws.path("o")],
             r"--batch-size must be a positive integer, got 0"),
    tool_row("train/rwkv2/lr-nan", "train", lambda ws: ["--lr", "nan", "--out", ws.path("o")],
             r"--lr must be a finite positive number, got nan"),
    tool_row("train/mru/negative-seed", "train", lambda ws: ["--model", "mru", "--seed", -1, "--out", ws.path("o")],
             r"--seed must be an integer in \[0, 2\*\*64\), got -1"),
    tool_row("train/rwkv2/not-a-number", "train", lambda ws: ["--max-steps", "ten", "--out", ws.path("o")],
             r"^error: argument --max-steps: invalid int value: 'ten' \(see --help\)$", process=True),
    tool_row("train/rwkv2/absurd-width", "train",
             lambda ws: ["--data", ws.small_txt, "--n-embd", 10 ** 11, "--out", ws.path("o")],
             r"--n-embd 100000000000 is too large \(at most 2\*\*31 - 1\)"),
    tool_row("train/hgrn2/unknown-model-option", "train",
             lambda ws: ["--model", "hgrn2", "--data", ws.small_txt, "--model-option", "heads=2", "--out",
                         ws.path("o")],
             r"--model-option: HGRN2Config got unknown field\(s\) \['heads'\]"),
    tool_row("train/hgrn2/no-head-fits", "train",
             lambda ws: ["--model", "hgrn2", "--data", ws.small_txt, "--n-embd", 16, "--warmup-steps", 0, "--out",
                         ws.path("o")],
             r"expand_ratio 32 is larger than hidden_size 16: no head fits"),
    # ---- train: output
    tool_row("train/rwkv2/out-holds-a-run", "train",
             lambda ws: ["--data", ws.small_txt, "--out", ws.models["rwkv2"], *TINY],
             r"models/rwkv2 holds another run's checkpoints: continue it with --resume, or train into a new --out"),
    tool_row("train/rwkv2/out-through-a-file", "train",
             lambda ws: ["--data", ws.small_txt, "--out", ws.path("a-file", "run"), *TINY],
             r"Not a directory: '.*a-file/run'"),
    tool_row("train/hgrn2/out-not-writable", "train",
             lambda ws: ["--model", "hgrn2", "--data", ws.small_txt, "--out", ws.path("read-only", "run"),
                         *OPTIONS["hgrn2"], *TINY],
             r"Permission denied: '.*read-only/run'", before=lambda ws: os.makedirs(ws.path("read-only"), 0o555),
             skip=NO_PERMISSIONS),
    tool_row("train/mru/resume-with-other-settings", "train",
             lambda ws: ["--out", ws.copy("mru", "resume-lr"), "--resume", "--lr", 0.5],
             r"cannot resume .*step-00000001: the run was started with other settings \(lr: 0\.004 -> 0\.5\)"),
    tool_row("train/hgrn2/resume-without-checkpoint", "train",
             lambda ws: ["--model", "hgrn2", "--out", ws.path("empty-dir"), "--resume"],
             r"no usable checkpoint in .*empty-dir/checkpoints: none was written"),
    tool_row("train/rwkv2/disk-full-while-checkpointing", "train",
             lambda ws: ["--out", ws.copy("rwkv2", "resume-rwkv2"), "--resume", "--max-steps", 2, "--no-progress"],
             r"No space left on device: '.*checkpoints/\.tmp-step-00000002-\d+/model\.safetensors'",
             disk_full=r"\.tmp-step-.*model\.safetensors$", before=_ckpt_snapshot, check=_ckpt_check),
    tool_row("train/mru/disk-full-while-saving-the-model", "train",
             lambda ws: ["--out", ws.copy("mru", "resume-mru"), "--resume", "--max-steps", 2, "--no-progress"],
             r"No space left on device: '.*/\.staging-.*/model\.safetensors'",
             disk_full=r"\.staging-.*model\.safetensors$", before=_final_snapshot, check=_final_check),
    # ---- train --eval-only
    tool_row("eval/rwkv2/characters-outside-the-vocabulary", "train",
             lambda ws: ["--eval-only", "--model-dir", ws.models["rwkv2"], "--data", ws.foreign_txt],
             r"'ö' \(U\+00F6\) at line 1, column 8 .* is not in the vocabulary"),
    tool_row("eval/mru/tokenizer-larger-than-the-model", "train",
             lambda ws: ["--eval-only", "--model-dir", model_with_tokenizer(ws, "bigtok-mru", "mru"), "--data",
                         ws.small_txt],
             r"the tokenizer in .*bigtok-mru has 723 entries but the model's embedding has \d+ rows"),
    tool_row("train/rwkv2/vocab-path-missing", "train",
             lambda ws: ["--data", ws.small_txt, "--vocab", ws.path("nowhere", "tokenizer.json"), "--out", ws.path("o")],
             r"--vocab .*nowhere/tokenizer\.json: neither a vocabulary kind \(.*\) nor an existing tokenizer file"),
    tool_row("eval/mru/context-beyond-the-model", "train",
             lambda ws: ["--eval-only", "--model-dir", ws.models["mru"], "--data", ws.small_txt, "--ctx-len", 4096],
             r"--ctx-len 4096 exceeds the model's context length 128"),
    tool_row("eval/hgrn2/eval-iters-0", "train",
             lambda ws: ["--eval-only", "--model-dir", ws.models["hgrn2"], "--data", ws.small_txt, "--eval-iters", 0],
             r"--eval-iters must be a positive integer, got 0"),
    tool_row("eval/model-dir-is-a-file", "train",
             lambda ws: ["--eval-only", "--model-dir", ws.small_txt, "--data", ws.small_txt],
             r"small\.txt is a file, not a model directory"),
    tool_row("eval/hgrn2/wrong-model-type", "train",
             lambda ws: ["--eval-only", "--data", ws.small_txt, "--model-dir", model_dir_with(
                 ws, "llama", "hgrn2", lambda d: json.dump({"model_type": "llama"}, open(f"{d}/config.json", "w")))],
             r"config\.json has model_type 'llama'; paddle_lrnn knows hgrn2, mru, rwkv2, rwkv4"),
    tool_row("eval/rwkv2/config-and-weights-disagree", "train",
             lambda ws: ["--eval-only", "--data", ws.small_txt, "--model-dir", model_dir_with(
                 ws, "mixed", "rwkv2", lambda d: shutil.copy(f"{ws.models['hgrn2']}/model.safetensors", d))],
             r"mixed/model\.safetensors lacks \d+ weight\(s\) the model needs, e\.g\. \['blocks\.0\."),
    # ---- generate
    tool_row("generate/missing-model-dir", "generate", lambda ws: ["--model-dir", ws.path("nowhere")],
             r"model directory .*nowhere does not exist"),
    tool_row("generate/hgrn2/prompt-outside-the-vocabulary", "generate",
             lambda ws: ["--model-dir", ws.models["hgrn2"], "--prompt", "Miss ü"],
             r"'ü' \(U\+00FC\) at line 1, column 6 .* is not in the vocabulary \(\d+ characters\)"),
    tool_row("generate/mru/negative-length", "generate", lambda ws: ["--model-dir", ws.models["mru"], "--length", -5],
             r"--length must be >= 0, got -5"),
    tool_row("generate/rwkv2/negative-temperature", "generate",
             lambda ws: ["--model-dir", ws.models["rwkv2"], "--temperature", -1],
             r"temperature must be a finite number >= 0 \(0: greedy\), got -1\.0"),
    tool_row("generate/hgrn2/temperature-nan", "generate",
             lambda ws: ["--model-dir", ws.models["hgrn2"], "--temperature", "nan"], r"temperature .* got nan"),
    tool_row("generate/mru/top-p-above-1", "generate", lambda ws: ["--model-dir", ws.models["mru"], "--top-p", 2],
             r"top_p must be in \(0, 1\], got 2\.0", process=True),
    tool_row("generate/rwkv2/negative-seed", "generate", lambda ws: ["--model-dir", ws.models["rwkv2"], "--seed", -3],
             r"--seed must be an integer in \[0, 2\*\*64\), got -3"),
    tool_row("generate/rwkv2/bad-escape", "generate", lambda ws: ["--model-dir", ws.models["rwkv2"], "--prompt",
                                                                  "It is\\"],
             r"--prompt has a bad backslash escape \(\\ at end of string\)"),
    tool_row("generate/mru/empty-prompt", "generate", lambda ws: ["--model-dir", ws.models["mru"], "--prompt", ""],
             r"the prompt is empty after encoding"),
    tool_row("generate/hgrn2/no-vocabulary", "generate",
             lambda ws: ["--model-dir", model_dir_with(ws, "novocab", "hgrn2", lambda d: [
                 os.remove(f"{d}/{n}") for n in ("vocab.json", "paddle_lrnn_vocab.json")])],
             r"novocab has no usable vocabulary .*; convert with --vocab or train with tools/train\.py"),
    tool_row("generate/hgrn2/tokenizer-larger-than-the-model", "generate",
             lambda ws: ["--model-dir", model_with_tokenizer(ws, "bigtok", "hgrn2")],
             r"the tokenizer in .*bigtok has 723 entries but the model's embedding has \d+ rows"),
    tool_row("generate/rwkv2/truncated-weights", "generate",
             lambda ws: ["--model-dir", model_dir_with(ws, "truncated", "rwkv2", lambda d: os.truncate(
                 f"{d}/model.safetensors", 1000))],
             r"refusing to load .*truncated/model\.safetensors: .*(outside|truncated|larger than the file)"),
    tool_row("generate/mru/binary-config", "generate",
             lambda ws: ["--model-dir", model_dir_with(ws, "binconfig", "mru", lambda d: open(
                 f"{d}/config.json", "wb").write(bytes(range(256))))],
             r"binconfig/config\.json is not valid JSON"),
    # ---- convert
    tool_row("convert/rwkv2/not-a-checkpoint", "convert",
             lambda ws: ["--model", "rwkv2", "--src", ws.small_txt, "--out", ws.path("c")],
             r"refusing to load .*small\.txt: it is not a torch checkpoint"),
    tool_row("convert/rwkv2/truncated", "convert",
             lambda ws: ["--model", "rwkv2", "--src", ws.path("half.pth"), "--out", ws.path("c")],
             r"refusing to load .*half\.pth: it is not a readable zip archive \(truncated or corrupt\?\)",
             before=lambda ws: open(ws.path("half.pth"), "wb").write(open(RWKV2_PTH, "rb").read()[:400_000])),
    tool_row("convert/rwkv2/wrong-model-type", "convert",
             lambda ws: ["--model", "rwkv2", "--src", MRU_PT, "--out", ws.path("c")],
             r"checkpoint-step-100\.pt is not an RWKV-v2 checkpoint: expected a state dict of tensors"),
    tool_row("convert/mru/wrong-model-type", "convert",
             lambda ws: ["--model", "mru", "--src", RWKV2_PTH, "--config", MRU_JSON, "--out", ws.path("c")],
             r"rwkv2-small\.pth is not an mru-lm training checkpoint: it has no 'model_state_dict' entry"),
    tool_row("convert/mru/config-and-weights-disagree", "convert",
             lambda ws: ["--model", "mru", "--src", MRU_PT, "--config", mru_json_with(ws, vocab_size=60), "--out",
                         ws.path("c")],
             r"says vocab_size 60 but the checkpoint's wte\.weight has 59 rows"),
    tool_row("convert/hgrn2/vocabulary-of-another-size", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--vocab", f"{ws.models['rwkv2']}/vocab.json",
                         "--out", ws.path("c")],
             r"--vocab .*vocab\.json has \d+ entries but the checkpoint's embedding has 53 rows"),
    tool_row("convert/hgrn2/tokenizer-larger-than-the-model", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--vocab", tokenizer_file(ws, "big-tokenizer.json"),
                         "--out", ws.path("c")],
             r"--vocab .*big-tokenizer\.json has 723 entries but the checkpoint's embedding has 53 rows"),
    tool_row("convert/hgrn2/missing-tokenizer", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--vocab", ws.path("nowhere", "tokenizer.json"),
                         "--out", ws.path("c")],
             r"nowhere/tokenizer\.json: no such vocabulary file or directory"),
    tool_row("convert/hgrn2/unreadable-tokenizer", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--vocab",
                         tokenizer_file(ws, "junk-tokenizer.json", data=bytes(range(256))), "--out", ws.path("c")],
             r"junk-tokenizer\.json: a Hugging Face tokenizer\.json is not valid JSON"),
    tool_row("convert/hgrn2/unknown-tokenizer-model", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--vocab", tokenizer_file(
                 ws, "bigram-tokenizer.json", lambda spec: spec["model"].update(type="Bigram")), "--out", ws.path("c")],
             r"a tokenizer\.json of model type 'Bigram', which the tokenizers library does not run \(expected one "
             r"of BPE, Unigram, WordPiece, WordLevel\)", process=True),
    tool_row("convert/hgrn2/world-vocabulary-malformed-line", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--vocab", ws.path("rwkv_vocab_bad.txt"), "--out",
                         ws.path("c")],
             r"rwkv_vocab_bad\.txt: line 2 is not a World vocabulary entry .*\(the token has 2 bytes, the line says 3\)",
             before=lambda ws: open(ws.path("rwkv_vocab_bad.txt"), "w").write("1 'a' 1\n2 'bc' 3\n")),
    tool_row("convert/hgrn2/unusable-tokenizer-beside-the-checkpoint", "convert",
             lambda ws: ["--model", "hgrn2", "--src", ws.path("hgrn2-badtok"), "--out", ws.path("c")],
             r"the tokenizer beside the checkpoint is unusable \(.*hgrn2-badtok/tokenizer\.json: a Hugging Face "
             r"tokenizer\.json is not valid JSON: .*\); name another with --vocab",
             before=lambda ws: (shutil.copytree(HGRN2_DIR, ws.path("hgrn2-badtok"), dirs_exist_ok=True),
                                open(ws.path("hgrn2-badtok", "tokenizer.json"), "w").write("{"))),
    tool_row("convert/rwkv2/runs-os-system", "convert",
             lambda ws: ["--model", "rwkv2", "--src", hostile(ws, "system", "os.system reduce"), "--out",
                         ws.path("c")],
             r"refusing to load .*system\.pth: it references (posix|os|nt)\.system, which is not a tensor",
             check=nothing_ran("system")),
    tool_row("convert/hgrn2/bin-runs-eval", "convert",
             lambda ws: ["--model", "hgrn2", "--src", hgrn2_dir_with(
                 ws, "evil-hgrn2", "pytorch_model.bin",
                 lambda p: craft_zip(p, hostile_pickles(ws.path("eval.pwned"))["builtins.eval"][0])),
                 "--out", ws.path("c")],
             r"refusing to load .*pytorch_model\.bin: it references (__builtin__|builtins)\.eval, which is not",
             check=nothing_ran("eval"),
             process=True),
    tool_row("convert/mru/getattr-chain", "convert",
             lambda ws: ["--model", "mru", "--src", hostile(ws, "getattr", "getattr chain"), "--config", MRU_JSON,
                         "--out", ws.path("c")],
             r"refusing to load .*getattr\.pth: it references builtins\.getattr", check=nothing_ran("getattr")),
    tool_row("convert/mru/zip-bomb", "convert",
             lambda ws: ["--model", "mru", "--src", zip_bomb(ws.path("bomb.pt"), mib=16), "--config", MRU_JSON,
                         "--out", ws.path("c")],
             r"refusing to load .*bomb\.pt: .*is compressed"),
    tool_row("convert/rwkv2/absurd-tensor", "convert",
             lambda ws: ["--model", "rwkv2", "--src", one_tensor_file(ws.path("huge.pth"), numel=10 ** 15), "--out",
                         ws.path("c")],
             r"storage '0' is declared as 1000000000000000 x float32 \(4000000000000000 bytes\)"),
    tool_row("convert/hgrn2/safetensors-offsets-outside", "convert",
             lambda ws: ["--model", "hgrn2", "--src", hgrn2_dir_with(
                 ws, "bad-offsets", "model.safetensors",
                 lambda p: write_raw_safetensors(p, {"model.embeddings.weight": {
                     "dtype": "F32", "shape": [53, 96], "data_offsets": [0, 53 * 96 * 4]}}, b"\0" * 64)),
                 "--out", ws.path("c")],
             r"refusing to load .*bad-offsets/model\.safetensors: .*outside the data section"),
    tool_row("convert/hgrn2/dtype-not-in-the-list", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--dtype", "float64", "--out", ws.path("c")],
             r"argument --dtype: invalid choice: 'float64' \(choose from 'float32', 'bfloat16', 'float16'\)"),
    tool_row("convert/hgrn2/index-names-a-missing-shard", "convert",
             lambda ws: ["--model", "hgrn2", "--src", hgrn2_sharded_with(
                 ws, "missing-shard", lambda d: os.remove(f"{d}/model-00002-of-00002.safetensors")), "--out",
                 ws.path("c")],
             r"refusing to load .*model\.safetensors\.index\.json: shard 'model-00002-of-00002\.safetensors' is "
             r"missing or not a regular file"),
    tool_row("convert/hgrn2/shard-disagrees-with-the-index", "convert",
             lambda ws: ["--model", "hgrn2", "--src", hgrn2_sharded_with(ws, "moved-tensor", lambda d: (lambda m: open(
                 f"{d}/model.safetensors.index.json", "w").write(json.dumps({"weight_map": dict.fromkeys(
                     m, "model-00001-of-00002.safetensors")})))(json.load(open(
                         f"{d}/model.safetensors.index.json"))["weight_map"])), "--out", ws.path("c")],
             r"refusing to load .*model-00001-of-00002\.safetensors: the index assigns '.*' to this shard, which "
             r"lacks it"),
    tool_row("convert/hgrn2/truncated-shard", "convert",
             lambda ws: ["--model", "hgrn2", "--src", hgrn2_sharded_with(ws, "cut-shard", lambda d: os.truncate(
                 f"{d}/model-00002-of-00002.safetensors", 5000)), "--out", ws.path("c")],
             r"refusing to load .*model-00002-of-00002\.safetensors: .*truncated"),
    tool_row("convert/rwkv2/out-exists", "convert",
             lambda ws: ["--model", "rwkv2", "--src", RWKV2_PTH, "--out", ws.models["rwkv2"]],
             r"--out .*rwkv2 already exists; choose another path or pass --overwrite"),
    tool_row("convert/rwkv2/out-through-a-file", "convert",
             lambda ws: ["--model", "rwkv2", "--src", RWKV2_PTH, "--out", ws.path("a-file", "m")],
             r"cannot create .*a-file/m: .*a-file is not a directory"),
    tool_row("convert/hgrn2/to-torch-from-another-family", "convert",
             lambda ws: ["--model", "rwkv2", "--to", "torch", "--src", ws.models["hgrn2"], "--out", ws.path("c.pth")],
             r"hgrn2 holds a hgrn2 model, not rwkv2"),
    tool_row("convert/hgrn2/disk-full-while-overwriting", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--out", ws.path("converted-hgrn2"), "--overwrite"],
             r"No space left on device: '.*model\.safetensors'", disk_full=r"model\.safetensors$"),
    tool_row("convert/mru/out-not-writable", "convert",
             lambda ws: ["--model", "mru", "--src", MRU_PT, "--config", MRU_JSON, "--out", ws.path("ro-c", "m")],
             r"cannot create .*ro-c/m: cannot write into .*ro-c \(Permission denied\)",
             before=lambda ws: os.makedirs(ws.path("ro-c"), 0o555, exist_ok=True),
             skip=NO_PERMISSIONS),
    tool_row("convert/unknown-direction", "convert",
             lambda ws: ["--model", "mru", "--to", "onnx", "--src", MRU_PT, "--out", ws.path("c")],
             r"argument --to: invalid choice: 'onnx' \(choose from 'paddle', 'torch'\) \(see --help\)"),
    tool_row("convert/rwkv4/rwkv2-checkpoint", "convert",
             lambda ws: ["--model", "rwkv4", "--src", RWKV2_PTH, "--out", ws.path("c")],
             r"rwkv2-small\.pth is an RWKV-v2 checkpoint \(it has blocks\.0\.att\.time_mix, RWKV-4 has "
             r"time_mix_k/v/r and no copy head\): convert it with --model rwkv2", process=True),
    tool_row("convert/rwkv4/vocabulary-larger-than-the-model", "convert",
             lambda ws: ["--model", "rwkv4", "--src", RWKV4_PTH, "--vocab", tokenizer_file(ws, "big-tokenizer.json"),
                         "--out", ws.path("c")],
             r"--vocab .*big-tokenizer\.json has 723 entries but the checkpoint's embedding has 97 rows"),
    tool_row("convert/rwkv4/truncated", "convert",
             lambda ws: ["--model", "rwkv4", "--src", ws.path("half-rwkv4.pth"), "--out", ws.path("c")],
             r"refusing to load .*half-rwkv4\.pth: it is not a readable zip archive \(truncated or corrupt\?\)",
             before=lambda ws: open(ws.path("half-rwkv4.pth"), "wb").write(open(RWKV4_PTH, "rb").read()[:200_000])),
    tool_row("convert/rwkv4/rwkv5-checkpoint", "convert",
             lambda ws: ["--model", "rwkv4", "--src", rwkv4_pth_with(
                 ws, "rwkv5", lambda sd: sd.update({"blocks.0.att.ln_x.weight": np.ones(64, np.float32)})),
                 "--out", ws.path("c")],
             r"rwkv5\.pth is not an RWKV-4 checkpoint: it has blocks\.0\.att\.ln_x\.weight, a tensor of RWKV-5 "
             r"and later"),
    tool_row("convert/rwkv4/shapes-do-not-fit", "convert",
             lambda ws: ["--model", "rwkv4", "--src", rwkv4_pth_with(
                 ws, "narrow", lambda sd: sd.update({"blocks.2.ffn.value.weight": np.zeros((64, 128), np.float32)})),
                 "--out", ws.path("c")],
             r"narrow\.pth: weight blocks\.2\.ffn\.value\.weight has shape \[128, 64\], but the model needs "
             r"\[256, 64\]"),
    tool_row("convert/rwkv4/to-torch-from-another-family", "convert",
             lambda ws: ["--model", "rwkv4", "--to", "torch", "--src", ws.models["rwkv2"], "--out", ws.path("c.pth")],
             r"rwkv2 holds a rwkv2 model, not rwkv4"),
    tool_row("train/rwkv4/enwik8-preset-on-cpu", "train",
             lambda ws: ["--model", "rwkv4", "--preset", "enwik8", "--device", "cpu", "--out", ws.path("o")],
             r"--amp bf16 needs --device gpu: .* train on CPU with --amp off"),
    tool_row("train/rwkv4/exponential-to-zero", "train",
             lambda ws: ["--model", "rwkv4", "--lr-final", 0, "--out", ws.path("o")],
             r"--lr-final must be > 0 with the exponential schedule"),
    tool_row("train/rwkv4/unknown-variant", "train",
             lambda ws: ["--model", "rwkv4", "--data", ws.small_txt, "--model-option", "variant=RWKV-5", "--out",
                         ws.path("o"), *TINY],
             r"RWKV4Config\.variant must be 'RWKV' or 'RWKV-ffnPre', got 'RWKV-5'"),
    tool_row("generate/rwkv4/ban-outside-the-vocabulary", "generate",
             lambda ws: ["--model-dir", ws.models["rwkv4"], "--ban", 0, "--ban", 100_000],
             r"token_ban holds ids outside the vocabulary \[0, \d+\): \[0, 100000\]"),
    tool_row("generate/rwkv4/top-p-0", "generate", lambda ws: ["--model-dir", ws.models["rwkv4"], "--top-p", 0],
             r"top_p must be in \(0, 1\], got 0\.0"),
    # ---- bench
    tool_row("bench/unknown-section", "bench", lambda ws: ["--section", "nope"],
             r"argument --section: invalid choice: 'nope'", process=True),
    tool_row("bench/repeat-0", "bench", lambda ws: ["--repeat", 0], r"--repeat and --tokens must be positive, got 0"),
    tool_row("bench/train-steps-0", "bench", lambda ws: ["--section", "quantization", "--train-steps", 0],
             r"--train-steps must be positive, got 0"),
    tool_row("bench/rows-0", "bench", lambda ws: ["--section", "weight_matmul", "--rows", 1, 0],
             r"--rows must be positive, got 1 0"),
    tool_row("bench/original-without-runner", "bench",
             lambda ws: ["--section", "generation", "--original-rwkv2", ws.path("empty-dir")],
             r"--original-rwkv2 .*empty-dir has no model_run\.py"),
    tool_row("bench/rwkv4/original-without-runner", "bench",
             lambda ws: ["--section", "rwkv4-generation", "--original-rwkv4", ws.path("empty-dir")],
             r"--original-rwkv4 .*empty-dir has no model_run\.py; expected RWKV-LM's RWKV-v4/src directory"),
    # ---- export
    tool_row("export/missing-model-dir", "export", lambda ws: ["--model-dir", ws.path("nowhere"), "--out",
                                                               ws.path("e")],
             r"model directory .*nowhere does not exist"),
    tool_row("export/hgrn2/out-exists", "export", lambda ws: ["--model-dir", ws.models["hgrn2"], "--out",
                                                              ws.models["mru"]],
             r"--out .*models/mru already exists; choose another path or pass --overwrite"),
    tool_row("export/mru/out-through-a-file", "export",
             lambda ws: ["--model-dir", ws.models["mru"], "--out", ws.path("a-file", "e")],
             r"cannot create .*a-file/e: .*a-file is not a directory"),
    tool_row("export/rwkv2/weights-of-another-model", "export",
             lambda ws: ["--model-dir", model_dir_with(ws, "mixed-export", "rwkv2", lambda d: shutil.copy(
                 f"{ws.models['mru']}/model.safetensors", d)), "--out", ws.path("e")],
             r"mixed-export/model\.safetensors lacks \d+ weight\(s\) the model needs"),
    tool_row("export/unknown-flag", "export", lambda ws: ["--model-dir", ws.models["rwkv2"], "--onnx"],
             r"the following arguments are required: --out|unrecognized arguments: --onnx"),
    # ---- operators (rwkv2: wkv, timex; hgrn2: depthwise_conv1d, gla; mru: mru_scan)
    Row("wkv/rank", "wkv", lambda ws: lambda: ops.wkv(t(4), t(4), t(3, 4), t(3, 4)), ValueError,
        r"wkv: k must have 3 dimensions \[B, T, C\], got shape \[3, 4\]"),
    Row("wkv/int32", "wkv", lambda ws: lambda: ops.wkv(t(4), t(4), t(2, 3, 4, dtype="int32"), t(2, 3, 4)),
        TypeError, r"wkv: k has dtype int32, expected one of float32, float64, float16, bfloat16"),
    Row("wkv/float64-with-float32", "wkv",
        lambda ws: lambda: ops.wkv(t(4), t(4), t(2, 3, 4), t(2, 3, 4, dtype="float64")), TypeError,
        r"wkv: inputs must share one dtype, got k float32, v float64"),
    Row("wkv/T=0", "wkv", lambda ws: lambda: ops.wkv(t(4), t(4), t(2, 0, 4), t(2, 0, 4)), ValueError,
        r"wkv: k is empty \(shape \[2, 0, 4\]\)"),
    Row("wkv/state-shape", "wkv", lambda ws: lambda: ops.wkv(t(4), t(4), t(2, 3, 4), t(2, 3, 4), t(2, 2, 4)),
        ValueError, r"wkv: state has shape \[2, 2, 4\], expected \[2, 3, 4\]"),
    Row("wkv/negative-eps", "wkv", lambda ws: lambda: ops.wkv(t(4), t(4), t(2, 3, 4), t(2, 3, 4), eps=-1e-16),
        ValueError, r"wkv: eps must be a finite number >= 0\.0, got -1e-16"),
    Row("wkv/numpy-array", "wkv", lambda ws: lambda: ops.wkv(np.zeros(4, np.float32), t(4), t(2, 3, 4), t(2, 3, 4)),
        TypeError, r"wkv: w must be a paddle\.Tensor \[C\], got ndarray"),
    Row("timex/longer-than-the-kernel", "timex", lambda ws: lambda: ops.timex(t(3, 8), t(2, 3, 9)), ValueError,
        r"timex: sequence length 9 exceeds the kernel length 8"),
    Row("timex/eps-nan", "timex", lambda ws: lambda: ops.timex(t(3, 8), t(2, 3, 5), eps=float("nan")), ValueError,
        r"timex: eps must be a finite number, got nan"),
    Row("depthwise_conv1d/B=0", "depthwise_conv1d", lambda ws: lambda: ops.depthwise_conv1d(t(3, 4), t(0, 3, 5)),
        ValueError, r"depthwise_conv1d: x is empty \(shape \[0, 3, 5\]\)"),
    Row("depthwise_conv1d/channels", "depthwise_conv1d",
        lambda ws: lambda: ops.depthwise_conv1d(t(4, 3), t(2, 3, 5)), ValueError,
        r"depthwise_conv1d: w has shape \[4, 3\], expected \[3, L\]"),
    Row("gla/rank", "gla", lambda ws: lambda: ops.gla(t(2, 3, 5), t(2, 3, 4, 5), t(2, 3, 4, 6), t(2, 3, 4, 5)),
        ValueError, r"gla: q must have 4 dimensions \[B, T, H, K\], got shape \[2, 3, 5\]"),
    Row("gla/batch-of-v", "gla", lambda ws: lambda: ops.gla(t(2, 3, 4, 5), t(2, 3, 4, 5), t(1, 3, 4, 6),
                                                            t(2, 3, 4, 5)),
        ValueError, r"gla: v has shape \[1, 3, 4, 6\], expected \[2, 3, 4, 6\]"),
    Row("gla/state-shape", "gla",
        lambda ws: lambda: ops.gla(t(2, 3, 4, 5), t(2, 3, 4, 5), t(2, 3, 4, 6), t(2, 3, 4, 5), t(2, 4, 6, 5)),
        ValueError, r"gla: state has shape \[2, 4, 6, 5\], expected \[2, 4, 5, 6\]"),
    Row("gla/float16-with-float32", "gla",
        lambda ws: lambda: ops.gla(t(2, 3, 4, 5, dtype="float16"), t(2, 3, 4, 5), t(2, 3, 4, 6), t(2, 3, 4, 5)),
        TypeError, r"gla: inputs must share one dtype, got q float16, k float32"),
    Row("gla/scale-inf", "gla",
        lambda ws: lambda: ops.gla(t(2, 3, 4, 5), t(2, 3, 4, 5), t(2, 3, 4, 6), t(2, 3, 4, 5), scale=float("inf")),
        ValueError, r"gla: scale must be a finite number, got inf"),
    Row("mru_scan/not-square", "mru_scan", lambda ws: lambda: ops.mru_scan(t(2, 3, 4, 5, 6)), ValueError,
        r"mru_scan: the matrices of m must be square, got m of shape \[2, 3, 4, 5, 6\]"),
    Row("mru_scan/T=0", "mru_scan", lambda ws: lambda: ops.mru_scan(t(2, 3, 0, 5, 5)), ValueError,
        r"mru_scan: m is empty \(shape \[2, 3, 0, 5, 5\]\)"),
    Row("mru_scan/bool", "mru_scan", lambda ws: lambda: ops.mru_scan(t(2, 3, 4, 5, 5, dtype="bool")), TypeError,
        r"mru_scan: m has dtype bool"),
    Row("mru_scan/state-shape", "mru_scan", lambda ws: lambda: ops.mru_scan(t(2, 3, 4, 5, 5), t(2, 3, 4, 5)),
        ValueError, r"mru_scan: state has shape \[2, 3, 4, 5\], expected \[2, 3, 5, 5\]"),
    Row("weight_matmul/float32-weight", "weight_matmul", lambda ws: lambda: ops.weight_matmul(t(2, 4), t(4, 3)),
        TypeError, r"weight_matmul: weight has dtype float32, expected one of bfloat16, float16, int8"),
    Row("weight_matmul/float16-x", "weight_matmul",
        lambda ws: lambda: ops.weight_matmul(t(2, 4, dtype="float16"), t(4, 3, dtype="bfloat16")), TypeError,
        r"weight_matmul: x has dtype float16, expected float32"),
    Row("weight_matmul/K-disagrees", "weight_matmul",
        lambda ws: lambda: ops.weight_matmul(t(2, 5), t(4, 3, dtype="bfloat16")), ValueError,
        r"weight_matmul: x has shape \[2, 5\], expected \[\.\.\., 4\] \(the inputs of weight \[4, 3\], "
        r"stored \[in, out\]"),
    Row("weight_matmul/int8-without-scale", "weight_matmul",
        lambda ws: lambda: ops.weight_matmul(t(2, 4), t(4, 3, dtype="int8")), ValueError,
        r"weight_matmul: int8 weights need their scale"),
    Row("weight_matmul/scale-with-bfloat16", "weight_matmul",
        lambda ws: lambda: ops.weight_matmul(t(2, 4), t(4, 3, dtype="bfloat16"), t(3)), ValueError,
        r"weight_matmul: scale goes with int8 weights only; weight is bfloat16"),
    Row("weight_matmul/scale-shape", "weight_matmul",
        lambda ws: lambda: ops.weight_matmul(t(2, 4), t(4, 3, dtype="int8"), t(4)), ValueError,
        r"weight_matmul: scale has shape \[4\], expected \[3\]"),
    Row("weight_matmul/needs-gradient", "weight_matmul",
        lambda ws: lambda: ops.weight_matmul(needing_grad(t(2, 4)), t(4, 3, dtype="float16")), ValueError,
        r"weight_matmul is inference only \(no backward\), but x require\(s\) gradients"),
    Row("quantize_int8/int8", "quantize_int8", lambda ws: lambda: ops.quantize_int8(t(4, 3, dtype="int8")), TypeError,
        r"quantize_int8: weight has dtype int8, expected one of float32, bfloat16, float16"),
    Row("quantize_int8/rank", "quantize_int8", lambda ws: lambda: ops.quantize_int8(t(4)), ValueError,
        r"quantize_int8: weight must have 2 dimensions \[K, N\], got shape \[4\]"),
    Row("quantize_int8/nan", "quantize_int8",
        lambda ws: lambda: ops.quantize_int8(paddle.full([4, 3], float("nan"))), ValueError,
        r"quantize_int8: weight holds infinite or NaN values"),
    Row("wkv/devices", "wkv", lambda ws: lambda: ops.wkv(t(4).cuda(), t(4), t(2, 3, 4), t(2, 3, 4)), ValueError,
        r"wkv: inputs must be on one device, got w on Place\(gpu:0\), u on Place\(cpu\)",
        skip=None if HAS_GPU else "needs a GPU"),
    # ---- 16-bit and int8 weights
    tool_row("convert/hgrn2/quantize-int4", "convert",
             lambda ws: ["--model", "hgrn2", "--src", HGRN2_DIR, "--quantize", "int4", "--out", ws.path("c")],
             r"argument --quantize: invalid choice: 'int4' \(choose from 'int8'\)"),
    tool_row("convert/rwkv2/quantize-to-torch", "convert",
             lambda ws: ["--model", "rwkv2", "--to", "torch", "--src", ws.models["rwkv2"], "--quantize", "int8",
                         "--out", ws.path("c.pth")],
             r"--quantize applies to conversions to paddle \(the originals have no int8 weights\)"),
    tool_row("convert/hgrn2/quantized-to-torch", "convert",
             lambda ws: ["--model", "hgrn2", "--to", "torch", "--src", quantized_hgrn2(ws, "q-to-torch"), "--out",
                         ws.path("c")],
             r"q-to-torch is quantized to int8, which the original cannot load; convert the original checkpoint"),
    tool_row("generate/hgrn2/quantize-a-quantized-model", "generate",
             lambda ws: ["--model-dir", quantized_hgrn2(ws, "q-again"), "--quantize", "int8"],
             r"q-again is already quantized to int8; load it without -*quantize"),
    tool_row("eval/hgrn2/unknown-quantization", "train",
             lambda ws: ["--eval-only", "--data", ws.small_txt, "--model-dir", model_dir_with(
                 ws, "q-int4", "hgrn2", lambda d: json.dump({**json.load(open(f"{d}/config.json")),
                                                             "quantization": "int4"}, open(f"{d}/config.json", "w")))],
             r"q-int4/config\.json names the quantization 'int4'; paddle_lrnn knows int8"),
    tool_row("generate/hgrn2/bfloat16-scales", "generate",
             lambda ws: ["--model-dir", quantized_hgrn2(ws, "q-bf16-scale", lambda a: a.update({
                 "model.layers.0.attn.q_proj.weight_scale": cast(a["model.layers.0.attn.q_proj.weight_scale"],
                                                                 "bfloat16")}))],
             r"model\.safetensors: model\.layers\.0\.attn\.q_proj\.weight_scale has dtype bfloat16, but "
             r"config\.json says the model is quantized to int8 \(.* must be float32\)"),
    tool_row("generate/hgrn2/float32-weight-in-a-quantized-model", "generate",
             lambda ws: ["--model-dir", quantized_hgrn2(ws, "q-f32-weight", lambda a: a.update({
                 "model.layers.1.mlp.down_proj.weight": a["model.layers.1.mlp.down_proj.weight"].astype("float32")}))],
             r"model\.layers\.1\.mlp\.down_proj\.weight has dtype float32, but config\.json says the model is "
             r"quantized to int8 \(.* must be int8\)"),
    tool_row("train/rwkv4/dtype-without-eval-only", "train",
             lambda ws: ["--model", "rwkv4", "--data", ws.small_txt, "--dtype", "bfloat16", "--out", ws.path("o")],
             r"--dtype applies to --eval-only \(training keeps float32 weights\)"),
    Row("model/mru/quantize-int4", "model",
        lambda ws: lambda: AutoModelForCausalLM.from_pretrained(ws.models["mru"], quantize="int4"), ValueError,
        r"quantize must be one of int8 \(or None: as stored\), got 'int4'"),
    # ---- models and their files
    Row("model/rwkv2/token-outside-the-vocabulary", "model",
        lambda ws: lambda: AutoModelForCausalLM.from_pretrained(ws.models["rwkv2"])(
            paddle.to_tensor([[1, 2, 999]])), ValueError, r"token id 999 is outside the vocabulary \[0, \d+\)"),
    Row("model/rwkv4/state-of-another-batch-size", "model",
        lambda ws: (lambda m: lambda: m(paddle.to_tensor([[1], [2]]), state=m(paddle.to_tensor([[1, 2]]),
                                                                              use_cache=True).state))(
            AutoModelForCausalLM.from_pretrained(ws.models["rwkv4"])),
        ValueError, r"state\['wkv'\] has shape \[1, 1, 3, 16\], expected \[1, 2, 3, 16\]"),
    Row("model/hgrn2/float-ids", "model",
        lambda ws: lambda: AutoModelForCausalLM.from_pretrained(ws.models["hgrn2"])(paddle.zeros([1, 3])),
        TypeError, r"input_ids must be int64 or int32, got paddle\.float32"),
    Row("model/mru/batch-0", "model",
        lambda ws: lambda: AutoModelForCausalLM.from_pretrained(ws.models["mru"])(
            paddle.zeros([0, 3], "int64")), ValueError, r"input_ids is empty \(shape \[0, 3\]\)"),
    Row("model/rwkv2/disk-full-over-a-saved-model", "model",  # (another config: config.json would differ too)
        lambda ws: (lambda d: lambda: other_rwkv2_model().save_pretrained(d))(ws.copy("rwkv2", "save-over")),
        OSError, r"No space left on device: '.*save-over/\.staging-.*/model\.safetensors'",
        disk_full=r"model\.safetensors$", before=_save_snapshot, check=_save_check),
]


def run_row(row, ws, capsys):
    """Runs the row; returns its one error line (asserting everything common to all rows)."""
    target = row.build(ws)
    if row.before is not None:
        row.before(ws)
    patch = disk_full(row.disk_full) if row.disk_full else None
    try:
        if row.target in TOOLS:
            argv = [str(a) for a in target]
            out_dir = argv[argv.index("--out") + 1] if "--out" in argv else None
            out_existed = out_dir is not None and os.path.lexists(out_dir)
            with pytest.raises(SystemExit) as exit_info:
                run_cli(lambda: TOOLS[row.target].main(argv))
            out, err = capsys.readouterr()
            assert exit_info.value.code == row.expect, (exit_info.value.code, err)
            assert "Traceback" not in err
            lines = err.strip("\n").split("\n")
            assert len(lines) == 1 and lines[0].startswith("error: "), err
            if out_dir is not None:
                assert os.path.lexists(out_dir) == out_existed, "a failed run created its --out"
            if row.target == "generate":
                assert out == "", "generate printed something before failing"
            return lines[0]
        with pytest.raises(row.expect) as info:
            target()
        assert "\n" not in str(info.value)
        return str(info.value)
    finally:
        if patch is not None:
            patch.undo()


def leftovers(root):
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.endswith((".tmp", ".old")) or ".tmp-" in n or n.startswith(".staging-")]


def assert_nothing_partial(ws, before=()):
    assert sorted(set(leftovers(ws.root)) - set(before)) == []
    changed = [p for p, digest in ws.good.items() if not os.path.exists(p) or digest_of(p) != digest]
    assert changed == [], "good files changed"


def digest_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def params(rows):
    return [pytest.param(r, id=r.id, marks=[pytest.mark.skip(reason=r.skip)] if r.skip else []) for r in rows]


@pytest.mark.parametrize("row", params(ROWS))
def test_bad_input_is_answered_in_one_line(row, ws, capsys):
    before = leftovers(ws.root)
    line = run_row(row, ws, capsys)
    assert re.search(row.pattern, line), f"{line!r} does not match {row.pattern!r}"
    if row.check is not None:
        row.check(ws)
    assert_nothing_partial(ws, before)


@pytest.mark.slow
@pytest.mark.parametrize("row", params([r for r in ROWS if r.process]))
def test_bad_input_in_a_real_process(row, ws):
    before = leftovers(ws.root)
    argv = [str(a) for a in row.build(ws)]
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{row.target}.py"), *argv],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env=dict(os.environ, PADDLE_LRNN_CACHE=ws.path("cache")))
    lines = result.stderr.strip("\n").split("\n")
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert re.search(row.pattern, lines[0]), lines[0]
    if row.check is not None:
        row.check(ws)
    assert_nothing_partial(ws, before)


@pytest.mark.slow
def test_file_size_limit_in_a_real_process(ws):
    """A real write failure (RLIMIT_FSIZE: writes past 64 KiB fail with EFBIG) while a finished run resumes: one line
    naming the file, the run's files as they were, nothing half-written left."""
    out = ws.copy("rwkv2", "file-size-limit")
    before = {n: digest_of(os.path.join(out, n)) for n in ("model.safetensors", "config.json",
                                                           "checkpoints/step-00000001/optimizer.safetensors")}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (else the signal kills the process)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    import resource

    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--out", out, "--resume",
                             "--max-steps", "2", "--no-progress"], capture_output=True, text=True, cwd=REPO,
                            timeout=300, preexec_fn=limit, env=dict(os.environ, PADDLE_LRNN_CACHE=ws.path("cache")))
    lines = result.stderr.strip("\n").split("\n")
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert re.search(r"^error: \[Errno 27\] File too large: '.*file-size-limit/checkpoints/\.tmp-step-00000002-\d+/"
                     r"optimizer\.safetensors'$", lines[0]), lines[0]
    assert {n: digest_of(os.path.join(out, n)) for n in before} == before
    assert_nothing_partial(ws)


def test_the_table_covers_every_tool_operator_and_family():
    assert {r.target for r in ROWS} >= {"train", "convert", "generate", "bench", "export", "wkv", "timex",
                                        "depthwise_conv1d", "gla", "mru_scan", "weight_matmul", "quantize_int8",
                                        "model"}
    for family in FAMILIES:
        assert sum(f"/{family}/" in f"/{r.id}/" for r in ROWS) >= 10, family


def test_out_of_memory_is_one_line(capsys):
    def main():  # what Paddle raises when an allocation fails
        raise MemoryError("(ResourceExhausted) Fail to alloc memory of 256000000000 size, error code is 12.\n"
                          "  [Hint: Expected error == 0, but received error:12 != 0:0.] (at cpu_allocator.cc:44)")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: out of memory: (ResourceExhausted) Fail to alloc memory of "
                                       "256000000000 size, error code is 12.\n")
