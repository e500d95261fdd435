"""What the tests of emulated CUDA kernels against the CPU kernels share (tests/test_cuda_emulated_<op>.py): the
emulation library of an operator as a module fixture, tensors and gradients on the Paddle (CPU kernel) side,
comparisons, and runs under several schedules."""
import numpy as np
import paddle
import pytest
from helpers import assert_close

from . import build

HALF = ["float16", "bfloat16"]


def library_fixture(op, schedule=None):
    """A module-scoped pytest fixture: the emulation library of `op` (tests/cuda_emu/<op>_glue.cc) under `schedule`
    (None: the library's default), put back to its default after the module."""
    @pytest.fixture(scope="module")
    def lib():
        lib = build.load(op)
        lib.set_schedule(schedule)
        yield lib
        lib.set_schedule()

    return lib


def acc_of(dtype):
    """The accumulator dtype of the kernels for inputs of `dtype` (states, checkpoints, weight gradients)."""
    return "float64" if dtype == "float64" else "float32"


def np_acc(dtype):
    return np.float64 if dtype == "float64" else np.float32


def leaf(x, dtype):
    """A Paddle tensor of `dtype` holding x (already representable in dtype) that gradients flow to."""
    t = paddle.to_tensor(np.asarray(x, np_acc(dtype))).astype(dtype)
    t.stop_gradient = False
    return t


def f64(t):
    return t.astype("float64").numpy()


def gradients(outputs, cotangents, inputs):
    """The gradients w.r.t. `inputs` (Paddle leaves) of sum(output * cotangent) over the outputs whose cotangent (a
    float64 array, representable in the output's dtype) is not None, as float64 arrays: zeros for an input the
    outputs do not reach, or when no cotangent is given."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if c is not None]
    if not pairs:
        return [np.zeros(x.shape) for x in inputs]
    cots = [paddle.to_tensor(c.astype(np.float64 if o.dtype == paddle.float64 else np.float32)).astype(o.dtype)
            for o, c in pairs]
    grads = paddle.grad([o for o, _ in pairs], inputs, cots, allow_unused=True)
    return [np.zeros(x.shape) if g is None else f64(g) for x, g in zip(inputs, grads)]


def compare(actual, expected, names, tol, what):
    """Each named array within tol = (rtol, atol relative to the largest expected magnitude)."""
    for name, a, e in zip(names, actual, expected):
        assert_close(a, e, tol[0], tol[1], f"{what}: {name}")


def under_schedules(libs, schedules, run, restore=None, seed=5):
    """run() once under each schedule (set on every library in `libs`); the libraries go back to `restore` (None:
    their default) afterwards, whatever happens. Returns the results, one per schedule."""
    results = []
    try:
        for schedule in schedules:
            for lib in libs:
                lib.set_schedule(schedule, seed=seed)
            results.append(run())
    finally:
        for lib in libs:
            lib.set_schedule(restore)
    return results
