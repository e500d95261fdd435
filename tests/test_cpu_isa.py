"""The portable build and its run-time instruction-set dispatch (custom_ops/kernels/cpu_isa.h): the compiled
library holds AVX instructions only inside the AVX2 and AVX-512 copies of the kernels, so it runs on any x86-64
processor; every operator gives its reference's values and gradients at every level this processor has (the
suite's other tests run at the highest); PADDLE_LRNN_ISA caps the level, and a value that names no level is
refused in one line. The per-level tolerances are the operator tests' own (rounding differs between levels in the
last bits: vector widths and fused multiply-adds)."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
from helpers import assert_close, ldu_matrices, log_gates, run_with_grads

from paddle_lrnn import ops
from paddle_lrnn.ops import library, reference

LEVELS = library.ISA_LEVELS
# Instructions beyond the x86-64 baseline (SSE2): anything VEX/EVEX-encoded (AVX and later, including the scalar
# BMI forms), 256/512-bit or mask registers, and the SSE3/SSSE3/SSE4 and bit-manipulation instructions.
BEYOND_BASELINE = re.compile(
    r"\t(v[a-z0-9]+|kmov[bwdq]|popcnt|lzcnt|tzcnt|andn|bextr|blsi|blsr|blsmsk|bzhi|mulx|pdep|pext|rorx|sarx|shlx|"
    r"shrx|movbe|pshufb|palignr|pabs[bwd]|phadd[wd]|phsub[wd]|psign[bwd]|pmaddubsw|pmulhrsw|pblendw|pblendvb|"
    r"blendv?p[sd]|ptest|pmulld|pmuldq|pmin[su][bwd]|pmax[su][bwd]|pmov[sz]x[bwd][wdq]|round[ps][sd]|insertps|"
    r"extractps|pextr[bdq]|pinsr[bdq]|pcmpeqq|pcmpgtq|packusdw|dpp[sd]|mpsadbw|phminposuw|crc32|haddp[sd]|"
    r"hsubp[sd]|addsubp[sd]|movddup|movs[hl]dup|lddqu|fisttp|pcmp[ei]str[im])\b|%[yz]mm|%k[0-7]")
FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")


def supported_levels():
    return LEVELS[:LEVELS.index(library.cpu_isa_supported()) + 1]


@pytest.fixture
def restore_level():
    before = library.cpu_isa()
    yield
    library.set_cpu_isa_cap(before)


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_only_the_avx_copies_hold_instructions_beyond_x86_64():
    """Disassembles the library: every function holding an instruction beyond the x86-64 baseline belongs to
    lrnn::isa_avx2 or lrnn::isa_avx512 (the copies that run only where cpu_isa_supported found the instructions),
    and both copies are there."""
    if library.build_march() != "x86-64":
        pytest.skip(f"the library was built for -march={library.build_march()}, not the portable x86-64 baseline")
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", library.library().so_path],
                          capture_output=True, text=True, check=True).stdout
    beyond, current = set(), None
    for line in text.splitlines():
        match = FUNCTION.match(line)
        if match:
            current = match.group(1)
        elif current is not None and BEYOND_BASELINE.search(line):
            beyond.add(current)
    outside = sorted(f for f in beyond if "lrnn::isa_avx2::" not in f and "lrnn::isa_avx512::" not in f)
    assert outside == [], f"{len(outside)} function(s) outside the AVX copies need more than x86-64: {outside[:5]}"
    for level in ("isa_avx2", "isa_avx512"):
        for kernel in ("wkv_forward_cpu", "timex_backward_cpu", "gla_forward_cpu", "mru_scan_forward_cpu",
                       "rwkv2_step_cpu", "rwkv4_step_cpu", "hgrn2_step_cpu", "weight_matmuls"):
            assert any(f"lrnn::{level}::" in f and kernel in f for f in beyond), f"{level} {kernel}"


def operator_cases(rng):
    """(name, kernel, reference, float64 inputs (None: not given), tolerance (rtol, atol relative to the largest
    value)) for every operator with a backward, on shapes that cross the kernels' blocks."""
    B, T, C = 2, 37, 21
    wkv_in = [rng.uniform(0.05, 2.0, C), rng.normal(0, 1, C), rng.normal(0, 1, (B, T, C)),
              rng.normal(0, 1, (B, T, C)), None]
    gla_in = [rng.normal(0, 1, (B, T, 3, 5)), rng.normal(0, 1, (B, T, 3, 5)), rng.normal(0, 1, (B, T, 3, 7)),
              log_gates(rng, (B, T, 3, 5)), None]
    return [
        ("wkv", lambda *a: ops.wkv(*a, eps=1e-16), lambda *a: reference.wkv(*a, eps=1e-16), wkv_in, (2e-4, 2e-5)),
        ("timex", ops.timex, reference.timex, [rng.normal(0, 0.3, (C, 40)), rng.normal(0, 1, (B, C, T))],
         (1e-4, 1e-5)),
        ("depthwise_conv1d", ops.depthwise_conv1d, reference.depthwise_conv1d,
         [rng.normal(0, 0.3, (C, 4)), rng.normal(0, 1, (B, C, T))], (1e-4, 1e-5)),
        ("gla", ops.gla, reference.gla, gla_in, (2e-4, 2e-5)),
        ("mru_scan", ops.mru_scan, reference.mru_scan, [ldu_matrices((B, 2, T, 8, 8), 3).astype(np.float64), None],
         (1e-4, 1e-5)),
    ]


@pytest.mark.parametrize("level", LEVELS)
def test_every_operator_matches_its_reference_at_every_level(level, restore_level):
    if level not in supported_levels():
        pytest.skip(f"this processor has no {level}")
    assert library.set_cpu_isa_cap(level) == level and ops.cpu_isa() == level
    rng = np.random.default_rng(LEVELS.index(level))
    for name, kernel, ref, inputs, (rtol, atol) in operator_cases(rng):
        inputs = [None if a is None else a.astype(np.float32) for a in inputs]
        probe = kernel(*[None if a is None else paddle.to_tensor(a) for a in inputs])
        outs = probe if isinstance(probe, (tuple, list)) else [probe]
        cot = [rng.normal(0, 1, o.shape) for o in outs]
        out_k, g_k = run_with_grads(kernel, inputs, cot)
        out_r, g_r = run_with_grads(ref, inputs, cot)
        for i, (a, b) in enumerate(zip(out_k + g_k, out_r + g_r)):
            assert_close(a, b, rtol, atol, f"{level} {name} #{i}")


def run_python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, **env))
    return result.returncode, result.stdout.strip().splitlines()[-1:] , result.stderr


def test_the_variable_caps_the_level_and_a_wrong_one_is_refused():
    code = "from paddle_lrnn import ops; print(ops.cpu_isa())"
    status, out, err = run_python(code, PADDLE_LRNN_ISA="baseline")
    assert status == 0 and out == ["baseline"], err[-2000:]
    status, out, err = run_python(code, PADDLE_LRNN_ISA="sse9")
    assert status != 0
    assert re.search(r"ValueError: PADDLE_LRNN_ISA='sse9' is not an instruction-set level; expected one of "
                     r"baseline, avx2, avx512", err), err[-2000:]
