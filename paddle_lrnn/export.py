"""Export a model as Paddle inference programs (paddle.jit.to_static + paddle.jit.save), for paddle.jit.load and
Paddle Inference (paddle.inference.create_predictor), with the batch and time dimensions left open.

    export(model, "exported/austen")          # or: python tools/export.py --model-dir out/austen --out exported/austen

writes a directory with
    model.json + model.pdiparams       input_ids [B, T] int64 -> logits [B, T, vocab] float32
    prefill.json + prefill.pdiparams   input_ids -> logits, *state                  (with_state=True, the default)
    step.json + step.pdiparams         input_ids, *state -> logits, *state          (continues from the state)
    export.json                        the model's type and config, and each program's inputs and outputs in order
                                       (name, shape with -1 for an open dimension, dtype)
The state of a family (a dict of tensors in Python, see the family's modeling.py) travels as a flat list of tensors
in the alphabetical order of its keys; export.json lists them. Generation: prefill on the prompt, then step on each
new token with the state the previous call returned, as paddle_lrnn.generation does with the eager model.

The programs call paddle_lrnn's custom operators: a process that loads them must register the operator library
first (`import paddle_lrnn._C`; load() and inference_config() do it), else Paddle fails with "op [] kernel output
args (0) defs should equal op outputs".

Paddle Inference on CPU: turn oneDNN off (inference_config() does). With it on (3.3.1's CPU default) Paddle
Inference computed wrong logits for these programs without any error (a layer_norm with a scale and no bias, and
two unary operators reading one tensor after an in-place pass), and failed on others ("onednn_op.slice raises an
exception dnnl::error" for an empty or clipped slice, a failed reorder after a pylayer op).
"""
import json
import os
import warnings

import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from .io import read_json
from .io.atomic import atomic_directory, atomic_write
from .models.modeling_utils import PretrainedModel
from .ops.library import library

MANIFEST = "export.json"
FORMAT = "paddle_lrnn.export/1"


class _Logits(nn.Layer):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids).logits


class _Prefill(nn.Layer):
    def __init__(self, model, state_names):
        super().__init__()
        self.model, self.state_names = model, list(state_names)

    def forward(self, input_ids):
        out = self.model(input_ids, use_cache=True)
        return [out.logits] + [out.state[name] for name in self.state_names]


class _Step(_Prefill):
    def forward(self, input_ids, state):
        out = self.model(input_ids, state=dict(zip(self.state_names, state)), use_cache=True)
        return [out.logits] + [out.state[name] for name in self.state_names]


def _spec(name, shape, dtype):
    return {"name": name, "shape": [int(d) for d in shape], "dtype": str(dtype).replace("paddle.", "")}


def _save(layer, input_spec, path):
    """Traces layer.forward for input_spec (full graph, AST translation) and saves it; returns the traced outputs'
    (shape, dtype) pairs, -1 for an open dimension."""
    static = paddle.jit.to_static(layer, input_spec=input_spec, full_graph=True)
    outputs = static.forward.concrete_program.outputs
    paddle.jit.save(static, path)
    return [(list(v.shape), v.dtype) for v in outputs]


def export(model, directory, with_state=True, overwrite=False):
    """Writes `model` (a paddle_lrnn PretrainedModel) as inference programs into `directory` (see the module
    docstring) and returns the manifest written to export.json. The directory appears complete or not at all; an
    existing one is kept unless overwrite=True. The model is traced in eval mode (no dropout) and left in the mode
    it was in."""
    if not isinstance(model, PretrainedModel):
        raise TypeError(f"export needs a paddle_lrnn model (PretrainedModel), got {type(model).__name__}")
    if os.path.exists(directory) and not overwrite:
        raise FileExistsError(f"{directory} already exists; choose another path or pass overwrite=True (--overwrite)")
    if getattr(model.config, "time_mix_kernel", None) == "timex":
        raise ValueError("time_mix_kernel 'timex' takes at most ctx_len tokens per call, which a program with an open "
                         "length cannot check; export the model with time_mix_kernel 'wkv' (set it in config.json: "
                         "the same weights compute the same function, for any length)")
    library()  # a clear error now if the operator library is not built, rather than one from inside the tracer
    manifest = {"format": FORMAT, "paddle_version": paddle.__version__, "model_type": model.config.model_type,
                "config": model.config.to_dict()}
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), atomic_directory(directory) as staging:
            # Paddle's own tensor-creation functions ask a traced value for its place, and warn each time
            warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface")
            manifest["programs"] = _write_programs(model, staging, with_state)
            with atomic_write(os.path.join(staging, MANIFEST), "w") as f:
                json.dump(manifest, f, indent=2)
                f.write("\n")
    finally:
        model.train(was_training)
    return manifest


def _write_programs(model, directory, with_state):
    """Saves the programs into directory; returns {program: {"inputs": [...], "outputs": [...]}} for export.json."""
    ids = InputSpec([None, None], "int64", "input_ids")
    ids_entry = _spec("input_ids", [-1, -1], "int64")
    outputs = _save(_Logits(model), [ids], os.path.join(directory, "model"))
    programs = {"model": {"inputs": [ids_entry], "outputs": [_spec("logits", *outputs[0])]}}
    if with_state:
        with paddle.no_grad():  # the state's keys, from one token (they do not depend on the length)
            names = sorted(model(paddle.zeros([1, 1], "int64"), use_cache=True).state)
        outputs = _save(_Prefill(model, names), [ids], os.path.join(directory, "prefill"))
        logits = _spec("logits", *outputs[0])
        state = [_spec(name, shape, dtype) for name, (shape, dtype) in zip(names, outputs[1:])]
        state_spec = [InputSpec(entry["shape"], entry["dtype"], entry["name"]) for entry in state]
        _save(_Step(model, names), [ids, state_spec], os.path.join(directory, "step"))
        programs["prefill"] = {"inputs": [ids_entry], "outputs": [logits, *state]}
        programs["step"] = {"inputs": [ids_entry, *state], "outputs": [logits, *state]}
    return programs


def read_manifest(directory):
    """export.json of an exported directory, with a clear error for anything else."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} has no {MANIFEST}; expected a directory written by paddle_lrnn.export")
    manifest = read_json(path, lambda problem: ValueError(f"{path} {problem}"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a paddle_lrnn export manifest (format {FORMAT})")
    return manifest


def load(directory, program="model"):
    """Registers the operator library and loads one exported program with paddle.jit.load. The result is called
    with the program's inputs in export.json's order: model(input_ids) -> logits; prefill(input_ids) -> [logits,
    *state]; step(input_ids, *state) -> [logits, *state]."""
    return paddle.jit.load(_program(directory, program))


def inference_config(directory, program="model"):
    """A paddle.inference.Config for one exported program on CPU, with the operator library registered and oneDNN
    off (see the module docstring); adjust it (threads, GPU) and pass it to paddle.inference.create_predictor. The
    predictor's inputs and outputs are in export.json's order (its outputs are named fetch_name_0, 1, ...)."""
    prefix = _program(directory, program)
    config = paddle.inference.Config(f"{prefix}.json", f"{prefix}.pdiparams")
    config.disable_onednn()
    return config


def _program(directory, program):
    """The path prefix of an exported program, once the operator library its programs call is registered."""
    programs = read_manifest(directory)["programs"]
    if program not in programs:
        raise ValueError(f"{directory} has no program {program!r}; it has {', '.join(programs)}")
    library()
    return os.path.join(directory, program)
