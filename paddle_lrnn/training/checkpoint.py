"""Training checkpoints that survive crashes: everything a run needs to continue exactly (model, optimizer, step,
data position, RNG), written so that a kill at any moment leaves the previous good checkpoint intact.

Layout under <out>/checkpoints/:
    step-00000100/model.safetensors, optimizer.safetensors, trainer_state.json, MANIFEST.json
    latest                                   the name of the newest complete checkpoint (for people and scripts)
A checkpoint is built in a temporary directory, every file fsynced, MANIFEST.json (the SHA-256 of every file)
written last, then renamed into place in one step; only then does `latest` move (atomically) and older checkpoints
get pruned. A kill at any point thus leaves the previous checkpoint whole. On resume the manifest is verified, and
a damaged checkpoint is refused (named, with the reason) in favour of the newest intact one. No pickle is
involved: tensors are safetensors, the rest JSON.
"""
import hashlib
import json
import os
import shutil

import paddle

from ..io.atomic import atomic_write
from ..io.safetensors import load_safetensors, save_safetensors
from ..models.modeling_utils import load_arrays

MANIFEST = "MANIFEST.json"
LATEST = "latest"
FILES = ("model.safetensors", "optimizer.safetensors", "trainer_state.json")  # what a checkpoint must hold


class ResumeError(ValueError):
    """No usable checkpoint: missing, damaged, or written for another configuration."""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state():
    """Paddle's generator states as JSON-serialisable lists."""
    return [list(s.__getstate__()) for s in paddle.get_rng_state()]


def set_rng_state(states):
    restored = []
    for s in states:
        g = paddle.base.libpaddle.GeneratorState.__new__(paddle.base.libpaddle.GeneratorState)
        g.__setstate__(tuple(s))
        restored.append(g)
    paddle.set_rng_state(restored)


def _param_names(model):
    """Paddle's internal parameter name (e.g. linear_3.w_0, which depends on creation order) -> structured name."""
    return {p.name: n for n, p in model.named_parameters()}


def optimizer_arrays(optimizer, model):
    """The optimizer state keyed by structured parameter names ("blocks.0.att.key.weight@moment1_0"), so that it
    loads into a model built in another process, whose internal names differ. Under optimizer-state sharding each
    rank's optimizer gives its own parameters' entries; their union is the unsharded optimizer's state."""
    names = _param_names(model)
    by_length = sorted(names, key=len, reverse=True)

    def structured(key):
        for internal in by_length:
            if key == internal or key.startswith(internal + "_"):
                return names[internal] + "@" + key[len(internal) + 1:]
        raise ValueError(f"optimizer state entry {key!r} belongs to no parameter of the model")

    arrays = {}
    for key, value in optimizer.state_dict().items():
        if isinstance(value, paddle.Tensor):
            arrays[structured(key)] = value.numpy()
        elif isinstance(value, dict):  # master_weights under AMP O2: internal name -> tensor
            arrays.update({f"{key}/{structured(k)}": v.numpy() for k, v in value.items()})
        else:
            raise TypeError(f"optimizer state entry {key!r} of type {type(value).__name__} is not supported")
    return arrays


def _optimizer_parameters(optimizer):
    """The parameters an optimizer updates (Paddle keeps a list of them, or of parameter-group dicts)."""
    items = list(optimizer._parameter_list or [])
    if items and isinstance(items[0], dict):
        return [p for group in items for p in group["params"]]
    return items


def _set_optimizer_arrays(optimizer, model, arrays):
    """Loads the entries of the parameters the optimizer updates (all of them, or this rank's share under
    optimizer-state sharding, which is how a checkpoint resumes with any number of processes)."""
    internal = {n: p.name for n, p in model.named_parameters()}
    held = {p.name for p in _optimizer_parameters(optimizer)}

    def parameter_of(structured):
        name = structured.partition("@")[0]
        if name not in internal:
            raise ResumeError(f"the checkpoint's optimizer state names parameter {name!r}, which the model lacks")
        return internal[name]

    state = {}
    for key, array in arrays.items():
        group, sep, rest = key.partition("/")
        structured = rest if sep else key
        param = parameter_of(structured)
        if param not in held:
            continue
        suffix = structured.partition("@")[2]
        entry = param + ("_" + suffix if suffix else "")
        if sep:
            state.setdefault(group, {})[entry] = paddle.to_tensor(array)
        else:
            state[entry] = paddle.to_tensor(array)
    optimizer.set_state_dict(state)


def save_checkpoint(out_dir, step, model, optimizer, trainer_state, keep=2):
    """Writes checkpoint `step` (see the module docstring) and returns its directory. optimizer: a Paddle optimizer,
    or the dict optimizer_arrays() makes (merged from the ranks under optimizer-state sharding)."""
    root = os.path.join(out_dir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    name = f"step-{step:08d}"
    final, tmp = os.path.join(root, name), os.path.join(root, f".tmp-{name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        save_safetensors(os.path.join(tmp, "model.safetensors"), {n: p.numpy() for n, p in model.named_parameters()})
        arrays = optimizer if isinstance(optimizer, dict) else optimizer_arrays(optimizer, model)
        save_safetensors(os.path.join(tmp, "optimizer.safetensors"), arrays)
        with atomic_write(os.path.join(tmp, "trainer_state.json"), "w") as f:
            json.dump({"step": step, **trainer_state}, f)
        files = sorted(os.listdir(tmp))
        with atomic_write(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump({"step": step, "sha256": {fn: _sha256(os.path.join(tmp, fn)) for fn in files}}, f, indent=1)
        _fsync_dir(tmp)
    except BaseException:  # a full disk, say: nothing half-written stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(final):  # a damaged one of the same step: moved aside (and removed below), never left missing
        os.rename(final, tmp + "-old")
    os.rename(tmp, final)
    _fsync_dir(root)
    with atomic_write(os.path.join(root, LATEST), "w") as f:
        f.write(name + "\n")
    # keep the newest `keep` up to this one; newer ones are damaged (else the run would have resumed from them)
    steps = checkpoint_names(out_dir)
    for old in steps[:max(steps.index(name) + 1 - keep, 0)] + steps[steps.index(name) + 1:]:
        shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    for stale in (d for d in os.listdir(root) if d.startswith(".tmp-")):
        shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
    return final


def verify(path):
    """Raises ResumeError naming the problem if the checkpoint at `path` is incomplete or altered."""
    manifest = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest):
        raise ResumeError(f"{path} is incomplete: {MANIFEST} is missing")
    try:
        with open(manifest) as f:
            expected = json.load(f)["sha256"]
        missing = [fn for fn in FILES if fn not in expected]
    except (ValueError, KeyError, TypeError):
        raise ResumeError(f"{manifest} is damaged") from None
    if missing:
        raise ResumeError(f"{manifest} does not list {', '.join(missing)}")
    for fn, digest in expected.items():
        fp = os.path.join(path, fn)
        if not os.path.isfile(fp):
            raise ResumeError(f"{path} is incomplete: {fn} is missing")
        if _sha256(fp) != digest:
            raise ResumeError(f"{fp} does not match its checksum (truncated or altered)")


def checkpoint_names(out_dir):
    """The checkpoint directories under out_dir/checkpoints (complete or not), oldest first."""
    root = os.path.join(out_dir, "checkpoints")
    return sorted(d for d in os.listdir(root) if d.startswith("step-")) if os.path.isdir(root) else []


def find_checkpoint(out_dir, log=print):
    """The newest intact checkpoint directory under out_dir/checkpoints. Damaged ones are skipped, each reported
    through `log` in one line that names the file at fault and the checkpoint used instead. Raises ResumeError if
    there is none."""
    root = os.path.join(out_dir, "checkpoints")
    problems = []
    for name in reversed(checkpoint_names(out_dir)):
        try:
            verify(os.path.join(root, name))
        except ResumeError as err:
            problems.append(str(err))
            continue
        for problem in problems:
            log(f"warning: skipped a damaged checkpoint: {problem}; using {name} instead")
        return os.path.join(root, name)
    detail = ("; ".join(problems)) if problems else "none was written"
    raise ResumeError(f"no usable checkpoint in {root}: {detail}")


def load_checkpoint(path, model, optimizer):
    """Restores model and optimizer from a verified checkpoint directory; returns its trainer state dict."""
    verify(path)
    load_arrays(model, load_safetensors(os.path.join(path, "model.safetensors")), path, dtype="float32")
    _set_optimizer_arrays(optimizer, model, load_safetensors(os.path.join(path, "optimizer.safetensors")))
    with open(os.path.join(path, "trainer_state.json")) as f:
        return json.load(f)

