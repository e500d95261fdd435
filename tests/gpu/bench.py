"""Times every operator's CUDA kernels (through the torch extension of ext.py) at the benchmark shapes of ops.py, and
the original projects' kernels on the same inputs (originals.py; those not fetched are skipped, ours timed anyway):
forward, and forward + backward, with CUDA events around each run, --warmup runs first, the median of --reps.
Reports the achieved bandwidth (the bytes a pass must move at least: each input read once, each output written
once; ops.py's traffic()) and arithmetic rate, next to a device-to-device copy as the bandwidth ceiling; the speed-up
over each original; times against T (ops.py's sweep_T) for a plot (plot.py); and the errors of ours and of each
original against the float64 reference at ops.py's compare_shape. Prints markdown tables to paste into BENCHMARKS.md,
writes --json, and next to it the tables (bench.md) and the plot (bench.png).

  python3 tests/gpu/bench.py --json out/bench.json      # on the GPU machine
  python3 tests/gpu/bench.py --backend emulated          # smoke test without a GPU: small shapes, host timer
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
import check as check_module  # noqa: E402
import ext as ext_module  # noqa: E402
import ops as ops_module  # noqa: E402
import originals as originals_module  # noqa: E402


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


def time_pair(fwd, fwd_bwd, warmup, reps, cuda):
    f_med, f_min, f_max = timed(fwd, warmup, reps, cuda)
    b_med, b_min, b_max = timed(fwd_bwd, warmup, reps, cuda)
    return dict(fwd_ms=f_med, fwd_min_ms=f_min, fwd_max_ms=f_max, fwd_bwd_ms=b_med, fwd_bwd_min_ms=b_min,
                fwd_bwd_max_ms=b_max)


def rates(t, traffic):
    """GB/s and TFLOP/s of timings t given ((fwd bytes, fwd flops), (bwd bytes, bwd flops))."""
    (fb, ff), (bb, bf) = traffic
    return dict(fwd_gbs=fb / (t["fwd_ms"] * 1e-3) / 1e9, fwd_bwd_gbs=(fb + bb) / (t["fwd_bwd_ms"] * 1e-3) / 1e9,
                fwd_tflops=ff / (t["fwd_ms"] * 1e-3) / 1e12, fwd_bwd_tflops=(ff + bf) / (t["fwd_bwd_ms"] * 1e-3) / 1e12)


class Runner:
    """Runs ours (through ext, on one backend) and the loaded originals on the same inputs."""

    def __init__(self, args, ext, device, cuda, stream, loaded):
        self.args, self.ext, self.device, self.cuda, self.stream, self.loaded = args, ext, device, cuda, stream, loaded

    def inputs(self, op, shape, dtype_name, drop=()):
        case = ops_module.Case(shape)
        gen = torch.Generator().manual_seed(0)
        dtype = ops_module.DTYPES[dtype_name]
        x = {k: v.to(self.device) for k, v in op.inputs(case, dtype, gen).items()}
        cot = {k: None if v is None or k in drop else v.to(self.device)
               for k, v in op.cotangents(case, dtype, gen).items()}
        return x, cot, op.case_eps(case)

    def ours(self, op, x, cot, eps):
        def fwd():
            return op.forward(self.ext, x, eps, self.stream)

        def fwd_bwd():
            return op.backward(self.ext, x, fwd(), cot, eps, self.stream)

        return fwd, fwd_bwd

    def originals(self, op, shape, dtype_name):
        """The loaded originals of op that run this shape and dtype."""
        usable = []
        for o in originals_module.for_op(op.name):
            if o not in self.loaded:
                continue
            try:
                o.check_shape(shape, dtype_name)
                usable.append(o)
            except originals_module.Unavailable:
                pass
        return usable

    def run_original(self, o, shape, dtype_name, fn):
        """fn() for one original, or None with one line printed if it cannot run or fails (ours go on)."""
        try:
            return fn()
        except originals_module.Unavailable as err:
            print(f"# {o.name} at {shape_text(shape)} {dtype_name}: {err}", flush=True)
        except Exception as err:  # a compile or launch error in the original's code
            print(f"# {o.name} at {shape_text(shape)} {dtype_name} FAILED: {type(err).__name__}: {err}", flush=True)
        return None

    def time_all(self, op, shape, dtype_name, warmup, reps):
        """{'ours': timings, original name: timings} at one shape and dtype."""
        x, cot, eps = self.inputs(op, shape, dtype_name)
        out = {"ours": time_pair(*self.ours(op, x, cot, eps), warmup, reps, self.cuda)}
        for o in self.originals(op, shape, dtype_name):
            t = self.run_original(o, shape, dtype_name,
                                  lambda: time_pair(*o.prepare(x, cot, eps)[:2], warmup, reps, self.cuda))
            if t is not None:
                out[o.name] = t
        return out

    def accuracy(self, op, shape, dtype_name):
        """Errors (norm, max) of ours and of each original against the float64 reference, and of ours against each
        original, per output and gradient, at one shape and dtype; cotangents of outputs an original lacks dropped."""
        rows, ours_and_ref = [], {}
        for o in self.originals(op, shape, dtype_name):
            x, cot, eps = self.inputs(op, shape, dtype_name, drop=o.drop)
            theirs = self.run_original(o, shape, dtype_name, lambda: o.prepare(x, cot, eps)[2]())
            if theirs is None:
                continue
            if o.drop not in ours_and_ref:
                ours_and_ref[o.drop] = self.ours_and_reference(op, x, cot, eps)
            ours, ref, scales = ours_and_ref[o.drop]
            for name, t in (theirs[0] | theirs[1]).items():
                rows.append(dict(op=op.name, shape=shape, dtype=dtype_name, original=o.name, tensor=name,
                                 ours=check_module.errors(ours[name], ref[name], scales.get(name))[:2],
                                 theirs=check_module.errors(t, ref[name], scales.get(name))[:2],
                                 ours_vs_theirs=check_module.errors(ours[name], t)[:2]))
        return rows

    def ours_and_reference(self, op, x, cot, eps):
        """Our outputs and gradients, the float64 reference's, and the op's error scales: dicts by name."""
        outs = op.forward(self.ext, x, eps, self.stream)
        grads = op.backward(self.ext, x, outs, cot, eps, self.stream)
        ref_device = self.device if self.cuda else torch.device("cpu")
        x64 = {k: v.to(ref_device, torch.float64) for k, v in x.items()}
        cot64 = {k: None if v is None else v.to(ref_device, torch.float64) for k, v in cot.items()}
        r_outs, r_grads = check_module.reference_grads(op, x64, cot64, eps)
        ours = dict(zip(op.out_names, outs)) | dict(zip(op.grad_names, grads))
        ref = dict(zip(op.out_names, r_outs)) | dict(zip(op.grad_names, r_grads))
        return ours, ref, check_module.error_scales(op, x64, r_grads) or {}


def shape_text(shape):
    return " ".join(f"{k}={v}" for k, v in shape.items())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["cuda", "emulated", "cpu"], default=os.environ.get("LRNN_GPU_BACKEND", "cuda"),
                   help="default: $LRNN_GPU_BACKEND or cuda")
    p.add_argument("--ops", default="", help="comma-separated operator names (default: all)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--small", action="store_true", help="small shapes (a smoke test; the default off a GPU)")
    p.add_argument("--originals", default="",
                   help="folder of the originals (default: $LRNN_ORIGINALS or originals/ at the repository root)")
    p.add_argument("--no-originals", action="store_true", help="time ours only")
    p.add_argument("--no-sweep", action="store_true", help="skip the times against T")
    p.add_argument("--no-accuracy", action="store_true", help="skip the errors against the float64 reference")
    p.add_argument("--json", default="", help="write every number here, the tables (bench.md) and the plot (bench.png) "
                   "next to it")
    args = p.parse_args()

    cuda = args.backend == "cuda"
    if not cuda and not args.small:
        print("# not on a GPU: small shapes (--small)")
        args.small = True
    t_start = time.time()
    ext = ext_module.load(args.backend)
    ext.set_poison(False)
    device = torch.device("cuda" if cuda else "cpu")
    stream = torch.cuda.current_stream().cuda_stream if cuda else 0
    if args.backend == "emulated":
        ext.set_emulated_device(True)
        ext.set_emulation_schedule(check_module.EMULATION_SCHEDULES["forward"])  # fibers: the fastest
    what = torch.cuda.get_device_name() if cuda else f"{args.backend} (host timer; not a GPU timing)"
    header = [f"# {what}; torch {torch.__version__}, CUDA {torch.version.cuda}; median of {args.reps} runs after "
              f"{args.warmup} warm-up runs"]
    print(header[0], flush=True)
    op_list = ops_module.by_name(args.ops)
    status = {}
    if not args.no_originals:
        root = originals_module.folder(args.originals)
        status = originals_module.load_all(root, {op.name for op in op_list}, args.backend)
    loaded = {o for o, why in status.items() if why is None}
    ceiling = copy_bandwidth(device, args.warmup, args.reps, cuda)
    header.append(f"# device-to-device copy: {ceiling:.0f} GB/s (bytes read + written)")
    print(header[1], flush=True)
    run = Runner(args, ext, device, cuda, stream, loaded)

    result = dict(device=what, torch=torch.__version__, cuda=torch.version.cuda, copy_gbs=ceiling, rows=[],
                  comparisons=[], sweep=[], accuracy=[],
                  originals={o.name: why or "loaded" for o, why in status.items()})
    for op in op_list:
        bench_op(run, op, result)
        save(args, result, header, status, final=op is op_list[-1])  # what is done survives a time limit
    if args.backend == "emulated":
        ext.set_emulated_device(False)
    print(f"# bench done in {time.time() - t_start:.0f} s")
    return 0


def bench_op(run, op, result):
    """Times ours and the originals at the benchmark shapes (or the small one) and along sweep_T, and compares their
    values with the float64 reference at compare_shape; appends to result's lists."""
    args = run.args
    small = op.small_shape
    for shape in [small] if args.small else op.bench_shapes:
        for dtype_name in op.bench_dtypes:
            times = run.time_all(op, shape, dtype_name, args.warmup, args.reps)
            ours = times.pop("ours")
            ours_rates = rates(ours, op.traffic(shape, dtype_name))
            result["rows"].append(dict(op=op.name, shape=shape, dtype=dtype_name, **ours, **ours_rates,
                                       copy_gbs=result["copy_gbs"]))
            for name, t in times.items():
                o = next(o for o in originals_module.ORIGINALS if o.name == name)
                traffic = o.traffic(shape, dtype_name) or [b for b, _ in op.traffic(shape, dtype_name)]
                theirs_rates = rates(t, [(traffic[0], 0), (traffic[1], 0)])
                result["comparisons"].append(dict(
                    op=op.name, shape=shape, dtype=dtype_name, original=name, ours=ours, theirs=t,
                    fwd_speedup=t["fwd_ms"] / ours["fwd_ms"], fwd_bwd_speedup=t["fwd_bwd_ms"] / ours["fwd_bwd_ms"],
                    ours_fwd_gbs=ours_rates["fwd_gbs"], ours_fwd_bwd_gbs=ours_rates["fwd_bwd_gbs"],
                    theirs_fwd_gbs=theirs_rates["fwd_gbs"], theirs_fwd_bwd_gbs=theirs_rates["fwd_bwd_gbs"]))
            print(f"# timed {op.name} {shape_text(shape)} {dtype_name}: ours {ours['fwd_ms']:.3f} / "
                  f"{ours['fwd_bwd_ms']:.3f} ms" + "".join(f", {n} {t['fwd_ms']:.3f} / {t['fwd_bwd_ms']:.3f} ms"
                                                          for n, t in times.items()), flush=True)
    if not args.no_sweep:
        base = small if args.small else op.bench_shapes[0]
        lengths = [max(1, base["T"] // 2), base["T"]] if args.small else op.sweep_T
        for T in lengths:
            shape = op.shape_at(base, T)
            times = run.time_all(op, shape, "float32", min(args.warmup, 3), min(args.reps, 10))
            for name, t in times.items():
                result["sweep"].append(dict(op=op.name, shape=shape, T=T, dtype="float32", impl=name, **t))
        print(f"# swept {op.name} over T = {lengths}", flush=True)
    if not args.no_accuracy and run.loaded.intersection(originals_module.for_op(op.name)):
        shape = small if args.small else op.compare_shape
        for dtype_name in op.bench_dtypes:
            result["accuracy"] += run.accuracy(op, shape, dtype_name)
        print(f"# compared {op.name} with its originals at {shape_text(shape)}", flush=True)


def save(args, result, header, status, final):
    """Writes --json, bench.md and bench.png next to it; prints the tables when final."""
    text = header + [""] + tables(result["rows"], result["comparisons"], result["accuracy"])
    text += [f"# not compared: {o.name} ({why})" for o, why in status.items() if why is not None]
    if final:
        print("\n" + "\n".join(text))
    if not args.json:
        return
    out_dir = os.path.dirname(os.path.abspath(args.json))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out_dir, "bench.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    if result["sweep"]:
        png = os.path.join(out_dir, "bench.png")
        try:
            import plot
            plot.plot(result, png)
            if final:
                print(f"# plot: {png}")
        except ImportError as err:
            if final:
                print(f"# no plot here ({err}): python tests/gpu/plot.py {args.json}")


def tables(rows, comparisons, accuracy):
    """The markdown tables, as lines."""
    out = ["| op | shape | dtype | fwd ms | fwd GB/s | fwd TFLOP/s | fwd+bwd ms | fwd+bwd GB/s | fwd+bwd TFLOP/s |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['op']} | {shape_text(r['shape'])} | {r['dtype']} | {r['fwd_ms']:.3f} | {r['fwd_gbs']:.0f} "
                   f"| {r['fwd_tflops']:.2f} | {r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_gbs']:.0f} "
                   f"| {r['fwd_bwd_tflops']:.2f} |")
    out += ["", "(min-max fwd ms: " + ", ".join(f"{r['op']} {r['dtype']} {r['fwd_min_ms']:.3f}-{r['fwd_max_ms']:.3f}"
                                               for r in rows) + ")"]
    if comparisons:
        out += ["", "| op | shape | dtype | original | fwd ms: original / ours | speed-up "
                "| fwd+bwd ms: original / ours | speed-up | fwd+bwd GB/s: original / ours |",
                "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for c in comparisons:
            out.append(f"| {c['op']} | {shape_text(c['shape'])} | {c['dtype']} | {c['original']} "
                       f"| {c['theirs']['fwd_ms']:.3f} / {c['ours']['fwd_ms']:.3f} | {c['fwd_speedup']:.1f}x "
                       f"| {c['theirs']['fwd_bwd_ms']:.3f} / {c['ours']['fwd_bwd_ms']:.3f} "
                       f"| {c['fwd_bwd_speedup']:.1f}x | {c['theirs_fwd_bwd_gbs']:.0f} / {c['ours_fwd_bwd_gbs']:.0f} |")
    if accuracy:
        out += ["", "Errors against the float64 reference (norm = ||a - b|| / ||b||, max = max|a - b| / max|b|):", "",
                "| op | shape | dtype | original | tensor | ours: norm, max | original: norm, max "
                "| ours vs original: norm, max |",
                "|---|---|---|---|---|---:|---:|---:|"]
        for a in accuracy:
            out.append(f"| {a['op']} | {shape_text(a['shape'])} | {a['dtype']} | {a['original']} | {a['tensor']} | "
                       + " | ".join(f"{e[0]:.1e}, {e[1]:.1e}" for e in (a["ours"], a["theirs"], a["ours_vs_theirs"]))
                       + " |")
    return out


if __name__ == "__main__":
    sys.exit(main())
