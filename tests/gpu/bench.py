"""Times every operator's CUDA kernels (through the torch extension of ext.py) at the benchmark shapes of ops.py:
forward, and forward + backward, with CUDA events around each run, --warmup runs first, the median of --reps.
Reports the achieved bandwidth (the bytes a pass must move at least: each input read once, each output written
once; ops.py's traffic()) and arithmetic rate, next to a device-to-device copy as the bandwidth ceiling. Prints a
markdown table to paste into BENCHMARKS.md and writes --json.

  python3 tests/gpu/bench.py                       # on the GPU machine
  python3 tests/gpu/bench.py --backend cpu --small   # smoke test of the script without a GPU (host timer)
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ext as ext_module  # noqa: E402
import ops as ops_module  # noqa: E402


def timed(fn, warmup, reps, cuda):
    """Milliseconds of fn(): (median, min, max) over reps runs after warmup runs."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    else:
        ms = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), min(ms), max(ms)


def copy_bandwidth(device, warmup, reps, cuda):
    """GB/s of a 1 GiB device-to-device copy, counting bytes read and written: the practical ceiling."""
    n = (1 << 30) // 4 if cuda else (1 << 26) // 4
    a = torch.randn(n, device=device)
    b = torch.empty_like(a)
    med, _, _ = timed(lambda: b.copy_(a), warmup, reps, cuda)
    return 2 * a.numel() * 4 / (med * 1e-3) / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["cuda", "emulated", "cpu"], default=os.environ.get("LRNN_GPU_BACKEND", "cuda"),
                   help="default: $LRNN_GPU_BACKEND or cuda")
    p.add_argument("--ops", default="", help="comma-separated operator names (default: all)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--small", action="store_true", help="time a small check shape instead (smoke test)")
    p.add_argument("--json", default="")
    args = p.parse_args()

    cuda = args.backend == "cuda"
    if not cuda and not args.small:
        print("# not on a GPU: timing the small shapes (--small)")
        args.small = True
    ext = ext_module.load(args.backend)
    ext.set_poison(False)
    device = torch.device("cuda" if cuda else "cpu")
    stream = torch.cuda.current_stream().cuda_stream if cuda else 0
    if args.backend == "emulated":
        ext.set_emulated_device(True)
    what = torch.cuda.get_device_name() if cuda else f"{args.backend} (host timer; not a GPU timing)"
    print(f"# {what}; torch {torch.__version__}, CUDA {torch.version.cuda}; median of {args.reps} runs after "
          f"{args.warmup} warm-up runs")
    ceiling = copy_bandwidth(device, args.warmup, args.reps, cuda)
    print(f"# device-to-device copy: {ceiling:.0f} GB/s (bytes read + written)")
    rows = []
    for op in ops_module.by_name(args.ops):
        shapes = [op.cases(quick=True)[0].shape] if args.small else op.bench_shapes
        for shape in shapes:
            for dtype_name in op.bench_dtypes:
                dtype = ops_module.DTYPES[dtype_name]
                case = ops_module.Case(shape)
                gen = torch.Generator().manual_seed(0)
                x = {k: v.to(device) for k, v in op.inputs(case, dtype, gen).items()}
                cot = {k: None if v is None else v.to(device) for k, v in op.cotangents(case, dtype, gen).items()}
                eps = op.case_eps(case)

                def fwd():
                    return op.forward(ext, x, eps, stream)

                def fwd_bwd():
                    return op.backward(ext, x, fwd(), cot, eps, stream)

                f_med, f_min, f_max = timed(fwd, args.warmup, args.reps, cuda)
                b_med, b_min, b_max = timed(fwd_bwd, args.warmup, args.reps, cuda)
                (fb, ff), (bb, bf) = op.traffic(shape, dtype_name)
                rows.append(dict(op=op.name, shape=shape, dtype=dtype_name, fwd_ms=f_med, fwd_min_ms=f_min,
                                 fwd_max_ms=f_max, fwd_bwd_ms=b_med, fwd_bwd_min_ms=b_min, fwd_bwd_max_ms=b_max,
                                 fwd_gbs=fb / (f_med * 1e-3) / 1e9, fwd_bwd_gbs=(fb + bb) / (b_med * 1e-3) / 1e9,
                                 fwd_tflops=ff / (f_med * 1e-3) / 1e12,
                                 fwd_bwd_tflops=(ff + bf) / (b_med * 1e-3) / 1e12, copy_gbs=ceiling))
    if args.backend == "emulated":
        ext.set_emulated_device(False)
    print()
    print("| op | shape | dtype | fwd ms | fwd GB/s | fwd TFLOP/s | fwd+bwd ms | fwd+bwd GB/s | fwd+bwd TFLOP/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        shape = " ".join(f"{k}={v}" for k, v in r["shape"].items())
        print(f"| {r['op']} | {shape} | {r['dtype']} | {r['fwd_ms']:.3f} | {r['fwd_gbs']:.0f} | {r['fwd_tflops']:.2f} "
              f"| {r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_gbs']:.0f} | {r['fwd_bwd_tflops']:.2f} |")
    print("\n(min-max fwd ms: " + ", ".join(f"{r['op']} {r['dtype']} {r['fwd_min_ms']:.3f}-{r['fwd_max_ms']:.3f}"
                                            for r in rows) + ")")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(device=what, torch=torch.__version__, cuda=torch.version.cuda, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
