"""Checks every operator's CUDA kernels (custom_ops/kernels/*.cuh) on a GPU, through the torch extension of ext.py:
values and gradients against the CPU kernels (kernels/*.h) in the same dtype, and against a float64 reference
written in torch (ops.py) where that is cheap, for float32, float16, bfloat16 (and float64 on the small shapes), on
the operator tests' shapes and the long benchmark shapes. Outputs are NaN-poisoned before the kernels write them.
Prints one line per case and dtype with the worst errors and PASS/FAIL, writes every number to --json, and exits
with 1 if anything failed.

  python3 tests/gpu/check.py                      # on the GPU machine (backend cuda)
  python3 tests/gpu/check.py --quick --no-reference   # small shapes only, e.g. under compute-sanitizer
  python3 tests/gpu/check.py --backend emulated   # no GPU: the CUDA kernels under the CPU emulation (small shapes;
                                                  # --schedule: the emulation's thread schedule, default forward)
  python3 tests/gpu/check.py --backend cpu        # no GPU: CPU kernels against the float64 reference only
Errors: norm = ||a - b|| / ||b||, max = max|a - b| / max|b|.
"""
import argparse
import contextlib
import json
import os
import signal
import sys
import time
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ext as ext_module  # noqa: E402
import ops as ops_module  # noqa: E402

# (norm, max) tolerances by what is compared and the kernels' dtype.
TOL = {
    # Same inputs, same accumulation order: exp and FMA differ, and a half output may round the other way.
    "cpu kernel": {"float32": (2e-5, 2e-4), "float64": (1e-12, 1e-10), "float16": (2e-3, 1.5e-2),
                   "bfloat16": (1.5e-2, 8e-2)},
    # float64 from the same (rounded) inputs: the kernel's float32 accumulation and the output's rounding.
    # float32 accumulates ~4e-5 over T = 4096 (gw) on the CPU kernels; the margin is for the GPU rounding.
    "f64 reference": {"float32": (3e-4, 3e-3), "float64": (1e-10, 1e-8), "float16": (4e-3, 3e-2),
                      "bfloat16": (3e-2, 1.5e-1)},
}


EMULATION_SCHEDULES = {"parallel": 0, "forward": 1, "reverse": 2, "random": 3}  # tests/cuda_emu/README.md


class TimeLimit(BaseException):
    """SIGTERM (run_all.sh's time limit): stop, and report and save what was checked."""


def on_sigterm(signum, frame):
    raise TimeLimit()


class Backend:
    """Where the 'device' kernels run: cuda (a GPU), emulated (CPU tensors, tests/cuda_emu) or cpu (none)."""

    def __init__(self, name, ext):
        self.name, self.ext = name, ext
        self.device = torch.device("cuda") if name == "cuda" else torch.device("cpu")

    @property
    def has_device_kernels(self):
        return self.name != "cpu"

    def stream(self):
        return torch.cuda.current_stream().cuda_stream if self.name == "cuda" else 0

    @contextlib.contextmanager
    def device_kernels(self):
        if self.name == "emulated":
            self.ext.set_emulated_device(True)
        try:
            yield
            if self.name == "cuda":
                torch.cuda.synchronize()  # asynchronous errors surface here
        finally:
            if self.name == "emulated":
                self.ext.set_emulated_device(False)


def errors(actual, expected, scale=None):
    """(norm, max, note) of actual against expected, both compared in float64 on the CPU. With `scale` (a tensor of
    expected's shape: the magnitude an error of each element is relative to), norm and max are relative to it
    instead of to expected."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.shape != e.shape:
        return float("inf"), float("inf"), f"shape {tuple(a.shape)} != {tuple(e.shape)}"
    bad = ~torch.isfinite(a)
    if bad.any() and not torch.equal(bad, ~torch.isfinite(e)):
        return float("inf"), float("inf"), f"{int(bad.sum())} non-finite (unwritten or overflow)"
    a, e = torch.where(bad, 0.0, a), torch.where(bad, 0.0, e)
    if a.numel() == 0:
        return 0.0, 0.0, ""
    diff = (a - e).abs()
    ref = e if scale is None else scale.detach().double().cpu()
    scale, norm = ref.abs().max().item(), ref.norm().item()
    if scale == 0:
        return (0.0, 0.0, "") if diff.max().item() == 0 else (float("inf"), float("inf"), "expected all zeros")
    return (diff.norm().item() / norm, diff.max().item() / scale, "")


def compare(results, names, got, want, dtype, against, scales=None):
    """scales: {name: tensor} for the tensors whose errors are measured against something other than their own
    magnitude (ops.py's error_scales)."""
    tol = TOL[against][dtype]
    rows = []
    for name, a, b in zip(names, got, want):
        if b is None:
            continue
        n, m, note = errors(a, b, (scales or {}).get(name))
        rows.append(dict(tensor=name, against=against, norm=n, max=m, note=note, ok=n <= tol[0] and m <= tol[1],
                         tol=tol))
    results.extend(rows)
    return rows


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


def reference_grads(op, x64, cot, eps):
    """The reference's outputs and the gradients of sum(out * cotangent) w.r.t. every input (zeros if unused)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x64.items()}
    outs = op.reference(leaves, eps)
    cots = list(cot.values())[: op.ref_outs]
    pairs = [(o, c) for o, c in zip(outs, cots) if c is not None]
    inputs = [leaves[k] for k in op.input_names]
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c.to(o.dtype) for o, c in pairs], allow_unused=True)
    grads = [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads)]
    return [o.detach() for o in outs], grads


def error_scales(op, x, grads):
    """The op's own error scales for some gradients (GLA's dg), from the inputs and the expected gradients."""
    fn = getattr(op, "error_scales", None)
    return fn(x, dict(zip(op.grad_names, grads))) if fn else None


def check_case(op, case, dtype_name, backend, args, results):
    dtype = ops_module.DTYPES[dtype_name]
    gen = torch.Generator().manual_seed(seed_of(op.name, case.label(), dtype_name))
    x = op.inputs(case, dtype, gen)
    cot = op.cotangents(case, dtype, gen)
    eps = op.case_eps(case)
    line = {"op": op.name, "case": case.label(), "dtype": dtype_name, "rows": []}
    t0 = time.time()
    # CPU kernels
    outs_c = op.forward(backend.ext, x, eps, 0)
    grads_c = op.backward(backend.ext, x, outs_c, cot, eps, 0)
    got_outs, got_grads = outs_c, grads_c
    if backend.has_device_kernels:
        xd = {k: v.to(backend.device) for k, v in x.items()}
        cotd = {k: None if v is None else v.to(backend.device) for k, v in cot.items()}
        with backend.device_kernels():
            outs_d = op.forward(backend.ext, xd, eps, backend.stream())
            grads_d = op.backward(backend.ext, xd, outs_d, cotd, eps, backend.stream())
        got_outs, got_grads = outs_d, grads_d
        compare(line["rows"], op.out_names, outs_d, outs_c, dtype_name, "cpu kernel")
        compare(line["rows"], op.grad_names, grads_d, grads_c, dtype_name, "cpu kernel", error_scales(op, x, grads_c))
    if case.reference and not args.no_reference:
        ref_device = backend.device if backend.name == "cuda" else torch.device("cpu")
        x64 = {k: v.to(ref_device, torch.float64) for k, v in x.items()}
        cot64 = {k: None if v is None else v.to(ref_device, torch.float64) for k, v in cot.items()}
        outs_r, grads_r = reference_grads(op, x64, cot64, eps)
        compare(line["rows"], op.out_names[: op.ref_outs], got_outs[: op.ref_outs], outs_r, dtype_name,
                "f64 reference")
        compare(line["rows"], op.grad_names, got_grads, grads_r, dtype_name, "f64 reference",
                error_scales(op, x64, grads_r))
    line["seconds"] = time.time() - t0
    line["ok"] = all(r["ok"] for r in line["rows"])
    results.append(line)
    return line


def summary_text(line):
    parts = []
    for against in ("cpu kernel", "f64 reference"):
        rows = [r for r in line["rows"] if r["against"] == against]
        if rows:
            worst = max(rows, key=lambda r: (r["max"] / r["tol"][1], r["norm"] / r["tol"][0]))
            parts.append(f"vs {against}: {worst['tensor']} norm {worst['norm']:.1e} max {worst['max']:.1e}"
                         + (f" ({worst['note']})" if worst["note"] else ""))
    return "; ".join(parts) if parts else "nothing compared"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["cuda", "emulated", "cpu"], default=os.environ.get("LRNN_GPU_BACKEND", "cuda"),
                   help="default: $LRNN_GPU_BACKEND or cuda")
    p.add_argument("--ops", default="", help="comma-separated operator names (default: all)")
    p.add_argument("--dtypes", default="float32,float16,bfloat16,float64")
    p.add_argument("--quick", action="store_true", help="a few small cases (for compute-sanitizer)")
    p.add_argument("--long", action="store_true", help="include the long cases with --backend emulated")
    p.add_argument("--no-reference", action="store_true", help="skip the float64 torch reference")
    p.add_argument("--schedule", choices=list(EMULATION_SCHEDULES), default="forward",
                   help="--backend emulated: the emulation's schedule (forward: one thread at a time as fibers, ten "
                        "times faster than parallel OS threads on kernels that synchronise often)")
    p.add_argument("--json", default="", help="write every comparison here")
    p.add_argument("--verbose-build", action="store_true")
    args = p.parse_args()

    torch.manual_seed(0)
    t0 = time.time()
    ext = ext_module.load(args.backend, verbose=args.verbose_build)
    print(f"# torch {torch.__version__}, CUDA {torch.version.cuda}, backend {args.backend}"
          + (f", {torch.cuda.get_device_name()}" if args.backend == "cuda" else "")
          + f"; extension built/loaded in {time.time() - t0:.1f} s", flush=True)
    backend = Backend(args.backend, ext)
    if args.backend == "emulated":
        ext.set_emulation_schedule(EMULATION_SCHEDULES[args.schedule], 5)
    ext.set_poison(True)
    results, failed = [], []
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return check_all(args, backend, results, failed, t0)
    except TimeLimit:
        print("# stopped by SIGTERM (a time limit)", flush=True)
        finish(args, results, failed, t0)
        return 124


def check_all(args, backend, results, failed, t0):
    for op in ops_module.by_name(args.ops):
        for case in op.cases(quick=args.quick):
            if case.long and args.backend == "emulated" and not args.long:
                continue
            if not case.reference and not backend.has_device_kernels:
                continue  # nothing to compare the CPU kernel with
            for dtype_name in args.dtypes.split(","):
                if dtype_name == "float64" and case.long:
                    continue
                try:
                    line = check_case(op, case, dtype_name, backend, args, results)
                except Exception as err:  # a launch error, or an illegal access surfacing at synchronize
                    line = {"op": op.name, "case": case.label(), "dtype": dtype_name, "ok": False,
                            "rows": [], "error": f"{type(err).__name__}: {err}"}
                    results.append(line)
                    print(f"FAIL {op.name:6s} {case.label():44s} {dtype_name:9s} {line['error']}", flush=True)
                    failed.append(line)
                    if args.backend == "cuda" and "CUDA" in str(err):
                        print("# a CUDA error leaves the context unusable: stopping", flush=True)
                        return finish(args, results, failed, t0)
                    continue
                status = "PASS" if line["ok"] else "FAIL"
                if not line["ok"]:
                    failed.append(line)
                print(f"{status} {op.name:6s} {case.label():44s} {dtype_name:9s} {summary_text(line)}", flush=True)
    return finish(args, results, failed, t0)


def finish(args, results, failed, t0):
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    print(f"# {len(results) - len(failed)} passed, {len(failed)} failed, {time.time() - t0:.1f} s")
    for line in failed:
        bad = [r for r in line["rows"] if not r["ok"]]
        detail = line.get("error") or ", ".join(
            f"{r['tensor']} vs {r['against']}: norm {r['norm']:.2e} max {r['max']:.2e} {r['note']}" for r in bad)
        print(f"#   FAILED {line['op']} {line['case']} {line['dtype']}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
