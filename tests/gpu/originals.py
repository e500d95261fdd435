"""The original projects' kernels, loaded at run time for bench.py's comparisons. Their code is not part of this
repository: tests/gpu/fetch_originals.sh copies it, from pinned commits, into a git-ignored folder (default:
originals/ at the repository root; $LRNN_ORIGINALS or bench.py --originals to change).

  in the folder                 original                                               compared with ours
  rwkv4/wkv_{cuda.cu,op.cpp}    RWKV-4's wkv CUDA kernel (BlinkDL/RWKV-LM RWKV-v4/cuda)  wkv, float32
  rwkv2/timex_{cuda.cu,op.cpp}  RWKV-v2's TimeX CUDA kernel (RWKV-v2-RNN/cuda)          timex, float32
  mru-lm/{hs,bk}_mru.py         mru-lm's Hillis-Steele and Brent-Kung scans (torch)     mru, any dtype and device
  mru-lm/cuda_mru/              mru-lm's default CUDA scan (mikayahlevi/cuda_mru)       mru, float32, on a GPU
  py/fla (+ einops, packaging)  fla-core 0.6.0's chunk_gla (Triton)                     gla, on a GPU

Each original is built and called as its own project does (the CUDA ones with the flags of their model.py), from the
same inputs as ours. Original.prepare() gives what bench.py times (the original's forward, and forward + backward:
what its autograd Function does, allocations and reductions included) and the original's outputs and gradients in
ops.py's names and conventions, for comparing values with ours.

  python3 tests/gpu/originals.py --prepare wkv,timex,mru,gla   # build, compile and autotune ahead of bench.py
"""
import argparse
import importlib.util
import os
import re
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import ext as ext_module  # noqa: E402
import ops as ops_module  # noqa: E402


class Unavailable(Exception):
    """An original that cannot run here (files missing, no GPU, a shape or dtype it does not support)."""


def folder(path=None):
    return path or os.environ.get("LRNN_ORIGINALS") or os.path.join(ROOT, "originals")


def need_files(root, *names):
    paths = [os.path.join(root, n) for n in names]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise Unavailable(f"missing {', '.join(missing)} (run tests/gpu/fetch_originals.sh)")
    return paths


def build(name, sources, cuda_flags, backend):
    """torch.utils.cpp_extension.load of an original's sources (in $LRNN_TORCH_EXT_DIR/originals-<name>-<backend>).
    With the emulated backend, its .cu is compiled by g++ under tests/cuda_emu's emulation of CUDA (for dry runs without a
    GPU): a copy with each `kernel<<<grid, block>>>(` written as the emulation's launch (the originals are float-only
    templates), and the -D flags of cuda_flags."""
    from torch.utils import cpp_extension

    build_dir = os.path.join(os.environ.get("LRNN_TORCH_EXT_DIR") or os.path.join(tempfile.gettempdir(), "lrnn_ext"),
                             f"originals-{name}-{backend}")
    os.makedirs(build_dir, exist_ok=True)
    if backend == "cuda":
        if not torch.cuda.is_available():
            raise Unavailable(f"{name}: no GPU")
        ext_module.set_torch_arch_list()  # the same -gencode as ours, so that later loads reuse the build
        return cpp_extension.load(name=f"original_{name}", sources=sources, extra_cuda_cflags=cuda_flags,
                                  build_directory=build_dir)
    if backend != "emulated":
        raise Unavailable(f"{name}: a CUDA kernel (needs --backend cuda or emulated)")
    copies = []
    for src in sources:
        if src.endswith(".cu"):
            with open(src) as f:
                text = f.read()
            text = re.sub(r"(\w+)<<<([^,>]+),([^>]+)>>>\(", r"LRNN_LAUNCH(\2, \3, 0, 0, \1<float>)(", text)
            src = os.path.join(build_dir, os.path.basename(src)[:-3] + "_emulated.cpp")
            with open(src, "w") as f:
                f.write('#include "kernels/common.cuh"  // the emulation and LRNN_LAUNCH\n' + text)
        copies.append(src)
    defines = [f for f in cuda_flags if f.startswith("-D")]
    return cpp_extension.load(
        name=f"original_{name}_emulated", sources=copies, build_directory=build_dir,
        extra_cflags=["-O2", "-DLRNN_CUDA_EMULATION", "-Wno-unknown-pragmas", *defines],
        extra_include_paths=[os.path.join(ROOT, "tests", "cuda_emu"), os.path.join(ROOT, "custom_ops")])


def leaves(x, names):
    return {k: (v.detach().clone().requires_grad_(True) if k in names else v) for k, v in x.items()}


class Original:
    """name: as printed; op: the ops.py operator it is compared with; dtypes: the dtypes it runs; drop: the cotangents
    of ours that it has no output for (ours then gets none either when values are compared)."""

    drop = ()

    def load(self, root, backend):
        """Raises Unavailable, or makes the original ready to run with ops of this ext.py backend."""
        raise NotImplementedError

    def check_shape(self, shape, dtype_name):
        """Raises Unavailable if the original cannot run this shape and dtype (before anything is allocated)."""
        if dtype_name not in self.dtypes:
            raise Unavailable(f"{self.name} runs {', '.join(self.dtypes)} only")

    def prepare(self, x, cot, eps):
        """(fwd, fwd_bwd, result): closures; result() -> (outputs, gradients), dicts keyed by ops.py's names."""
        raise NotImplementedError

    def traffic(self, shape, dtype_name):
        """(forward bytes, backward bytes) the original must move at least, or None: the same as ours."""
        raise NotImplementedError


# ----- RWKV-4 wkv -----------------------------------------------------------------------------------------------------
class Rwkv4Wkv(Original):
    """w = -exp(time_decay) per channel (ours: w = exp(time_decay) > 0), no state in or out, float32 only. Its
    backward gives d/d time_decay (gw * w) per batch row, which its wrapper sums over the batch. The backward kernel
    keeps three Tmax-long arrays per thread, so Tmax is the longest T bench.py runs (RWKV-4's model.py: 1024)."""

    name, op, dtypes = "RWKV-4 wkv_cuda", "wkv", ("float32",)
    drop = ("gs1",)
    T_MAX = 4096

    def load(self, root, backend):
        sources = need_files(root, "rwkv4/wkv_op.cpp", "rwkv4/wkv_cuda.cu")
        # RWKV-v4/src/model.py's flags
        self.mod = build("wkv", sources, ["-res-usage", "--maxrregcount", "60", "--use_fast_math", "-O3",
                                          "-Xptxas", "-O3", f"-DTmax={self.T_MAX}"], backend)

    def check_shape(self, shape, dtype_name):
        super().check_shape(shape, dtype_name)
        B, T, C = shape["B"], shape["T"], shape["C"]
        if T > self.T_MAX or (B * C) % min(C, 32):  # the wrapper's and the launcher's asserts
            raise Unavailable(f"{self.name} needs T <= {self.T_MAX} and B * C % min(C, 32) == 0")

    def prepare(self, x, cot, eps):
        w, u, k, v, s0 = x["w"], x["u"], x["k"], x["v"], x["s0"]
        if eps != 0 or s0[:, :2].any() or not (s0[:, 2] <= -1e38).all():
            raise Unavailable(f"{self.name} has no eps and no initial state")
        B, T, C = k.shape
        gy = cot["gy"]
        out = {}

        def fwd():
            wn = -w  # the wrapper's w = -exp(time_decay)
            y = torch.empty((B, T, C), device=k.device)
            self.mod.forward(B, T, C, wn, u, k, v, y)
            out["y"] = y
            return y

        def fwd_bwd():
            fwd()
            wn = -w
            gw, gu = torch.zeros((B, C), device=k.device), torch.zeros((B, C), device=k.device)
            gk, gv = torch.zeros((B, T, C), device=k.device), torch.zeros((B, T, C), device=k.device)
            self.mod.backward(B, T, C, wn, u, k, v, gy, gw, gu, gk, gv)
            out.update(gw=gw.sum(0), gu=gu.sum(0), gk=gk, gv=gv)

        def result():
            fwd_bwd()
            # d/d time_decay = dL/dw * w with ours w = exp(time_decay)
            return {"y": out["y"]}, {"gw": out["gw"] / w, "gu": out["gu"], "gk": out["gk"], "gv": out["gv"]}

        return fwd, fwd_bwd, result

    def traffic(self, shape, dtype_name):
        """Bytes of one forward and of one backward: inputs read once, outputs written once (no state)."""
        B, T, C = shape["B"], shape["T"], shape["C"]
        return 4 * (3 * B * T * C + 2 * C), 4 * (5 * B * T * C + 2 * C + 2 * B * C)


# ----- RWKV-v2 TimeX --------------------------------------------------------------------------------------------------
class Rwkv2Timex(Original):
    """The causal depthwise convolution with a kernel as long as the sequence: w [C, T] (it indexes w with row stride
    T, so L must equal T), float32, T % 4 == 0, T <= Tmax, B a multiple of both batch groups. Its backward writes gw
    per batch row, which its wrapper sums over the batch. Built with RWKV-v2-RNN/src/model.py's flags (Tmax 1024,
    batch groups 4 forward and 2 backward)."""

    name, op, dtypes = "RWKV-v2 timex_cuda", "timex", ("float32",)
    T_MAX, BF, BB = 1024, 4, 2

    def load(self, root, backend):
        sources = need_files(root, "rwkv2/timex_op.cpp", "rwkv2/timex_cuda.cu")
        self.mod = build("timex", sources, ["--use_fast_math", "--extra-device-vectorization", f"-DTmax={self.T_MAX}",
                                            f"-DBF={self.BF}", f"-DBB={self.BB}"], backend)

    def check_shape(self, shape, dtype_name):
        super().check_shape(shape, dtype_name)
        B, T, L = shape["B"], shape["T"], shape["L"]
        if T != L or T % 4 or T > self.T_MAX or B % self.BF or B % self.BB:
            raise Unavailable(f"{self.name} needs T == L <= {self.T_MAX}, T % 4 == 0, B % {self.BF} == 0")

    def prepare(self, x, cot, eps):
        w, k = x["w"], x["x"]
        B, C, T = k.shape
        g = cot["g"]
        out = {}

        def fwd():
            y = torch.empty((B, C, T), device=k.device)
            self.mod.forward(w, k, y, eps, B, C, T)
            out["out"] = y

        def fwd_bwd():
            fwd()
            gw, gk = torch.empty((B, C, T), device=k.device), torch.empty((B, C, T), device=k.device)
            self.mod.backward(w, k, g, gw, gk, B, C, T)
            out.update(gw=gw.sum(0), gx=gk)

        def result():
            fwd_bwd()
            return {"out": out["out"]}, {"gw": out["gw"], "gx": out["gx"]}

        return fwd, fwd_bwd, result

    def traffic(self, shape, dtype_name):
        B, C, T = shape["B"], shape["C"], shape["T"]
        return 4 * (2 * B * C * T + C * T), 4 * (3 * B * C * T + C * T + B * C * T)  # gw per batch row


# ----- mru-lm scans ---------------------------------------------------------------------------------------------------
class MruLmScan(Original):
    """An autograd Function over [..., T, o, o] returning every inclusive prefix product, with no initial state (ours
    with s0 = I computes the same) and no final-state output. Its backward writes into the incoming gradient, so
    fwd_bwd passes a copy (one extra read and write of the prefixes' size)."""

    op, dtypes = "mru", ("float32", "bfloat16", "float16", "float64")
    drop = ("gs1",)

    def __init__(self, name, file):
        self.name, self.file = name, file

    def load(self, root, backend):
        (path,) = need_files(root, f"mru-lm/{self.file}")
        spec = importlib.util.spec_from_file_location(f"original_{self.file[:-3]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.fn = module.op

    def prepare(self, x, cot, eps):
        m, s0 = x["m"], x["s0"]
        eye = torch.eye(m.shape[-1], dtype=s0.dtype, device=s0.device).expand_as(s0)
        if not torch.equal(s0, eye):
            raise Unavailable(f"{self.name} has no initial state (ours must start from the identity)")
        gp = cot["gp"]
        out = {}

        def fwd():
            with torch.no_grad():
                out["prefix"] = self.fn(m)

        def fwd_bwd():
            leaf = m.detach().requires_grad_(True)
            prefix = self.fn(leaf)
            (out["gm"],) = torch.autograd.grad(prefix, leaf, gp.clone())
            out["prefix"] = prefix.detach()

        def result():
            fwd_bwd()
            return {"prefix": out["prefix"]}, {"gm": out["gm"]}

        return fwd, fwd_bwd, result

    def traffic(self, shape, dtype_name):
        B, H, T, d = shape["B"], shape["H"], shape["T"], shape["d"]
        seq = B * H * T * d * d * (torch.finfo(ops_module.DTYPES[dtype_name]).bits // 8)
        return 2 * seq, 4 * seq  # m read, prefixes written; m, prefixes and gp read, gm written


class MruLmCuda(MruLmScan):
    """mru-lm's default scan: mru_scans/cuda_mru, a torch extension that its package builds with its own flags when
    imported (CUDA only). The same calls as the torch scans; its limits (its README and launcher): T a power of two,
    d a multiple of 4, float32 (its backward allocates float32 buffers)."""

    dtypes = ("float32",)

    def __init__(self):
        super().__init__("mru-lm CUDA scan (cuda_mru)", "cuda_mru/__init__.py")

    def load(self, root, backend):
        if backend != "cuda":
            raise Unavailable(f"{self.name} needs a GPU (a torch CUDA extension)")
        (path,) = need_files(root, f"mru-lm/{self.file}")
        spec = importlib.util.spec_from_file_location("cuda_mru", path,
                                                      submodule_search_locations=[os.path.dirname(path)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["cuda_mru"] = module  # its `from .extension import ...` resolves through this entry
        spec.loader.exec_module(module)
        self.fn = module.op

    def check_shape(self, shape, dtype_name):
        super().check_shape(shape, dtype_name)
        T, d = shape["T"], shape["d"]
        if T & (T - 1) or d % 4:
            raise Unavailable(f"{self.name} needs T a power of two and d a multiple of 4")


# ----- fla chunk_gla --------------------------------------------------------------------------------------------------
class FlaChunkGla(Original):
    """fla's chunk_gla(q, k, v, g, scale, initial_state, output_final_state=True): the same layout as ours (q, k, g
    [B, T, H, K], v [B, T, H, V], state [B, H, K, V] in float32, g the log decay). Triton compiles and autotunes its
    kernels at the first call of each dtype (cached on disk: `--prepare gla` does it ahead of bench.py)."""

    name, op, dtypes = "fla 0.6.0 chunk_gla", "gla", ("float32", "bfloat16", "float16")

    def load(self, root, backend):
        if backend != "cuda":
            raise Unavailable(f"{self.name} needs a GPU (Triton)")
        (py,) = need_files(root, "py/fla")
        py = os.path.dirname(py)
        if py not in sys.path:
            sys.path.append(py)  # after site-packages: an installed einops / packaging wins
        try:
            from fla.ops.gla import chunk_gla
        except ImportError as err:
            raise Unavailable(f"{self.name}: {type(err).__name__}: {err}") from err
        import fla

        self.version = fla.__version__
        self.fn = chunk_gla

    def prepare(self, x, cot, scale):
        names = ("q", "k", "v", "g", "s0")
        go, gs1 = cot["go"], cot["gs1"]
        out = {}

        def call(a):
            return self.fn(a["q"], a["k"], a["v"], a["g"], scale=scale, initial_state=a["s0"],
                           output_final_state=True)

        def fwd():
            with torch.no_grad():
                out["o"], out["state"] = call(x)

        def fwd_bwd():
            a = leaves(x, names)
            o, ht = call(a)
            pairs = [(t, c) for t, c in ((o, go), (ht, gs1)) if c is not None]
            grads = torch.autograd.grad([t for t, _ in pairs], [a[n] for n in names], [c for _, c in pairs])
            out.update(zip(("gq", "gk", "gv", "gg", "gstate"), grads))
            out["o"], out["state"] = o.detach(), ht.detach()

        def result():
            fwd_bwd()
            return ({"o": out["o"], "state": out["state"]},
                    {n: out[n] for n in ("gq", "gk", "gv", "gg", "gstate")})

        return fwd, fwd_bwd, result

    def traffic(self, shape, dtype_name):
        return None  # the same tensors as ours: ops.py's traffic()


ORIGINALS = [Rwkv4Wkv(), Rwkv2Timex(), MruLmScan("mru-lm Brent-Kung", "bk_mru.py"),
             MruLmScan("mru-lm Hillis-Steele", "hs_mru.py"), MruLmCuda(), FlaChunkGla()]


def for_op(op_name):
    return [o for o in ORIGINALS if o.op == op_name]


def load_all(root, op_names, backend, log=print):
    """{original: None if loaded, else why not}; prints one line per original."""
    status = {}
    for o in ORIGINALS:
        if o.op not in op_names:
            continue
        try:
            o.load(root, backend)
            status[o] = None
            log(f"# original {o.name}: loaded from {root}")
        except Unavailable as err:
            status[o] = str(err)
            log(f"# original {o.name}: not compared ({err})")
        except Exception as err:  # a build error: report it, time ours anyway
            status[o] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            log(f"# original {o.name}: failed to load: {status[o]}")
    return status


def prepare_main():
    """Builds the originals and runs fla's Triton compilation and autotuning at bench.py's shapes and dtypes, so that
    bench.py (a later process) finds them in the caches: run_all.sh starts this next to the harness's own build."""
    p = argparse.ArgumentParser(description=prepare_main.__doc__.split("\n")[0])
    p.add_argument("--prepare", required=True, help="comma-separated operators (wkv, timex, mru, gla)")
    p.add_argument("--backend", choices=["cuda", "emulated", "cpu"], default=os.environ.get("LRNN_GPU_BACKEND", "cuda"))
    p.add_argument("--originals", default="", help="default: $LRNN_ORIGINALS or originals/ at the repository root")
    args = p.parse_args()
    status = load_all(folder(args.originals), args.prepare.split(","), args.backend)
    for o, why in status.items():
        if why is not None or o.op != "gla":
            continue
        op = ops_module.by_name("gla")[0]
        for shape in op.bench_shapes + [op.compare_shape]:  # the autotuning keys include H
            for dtype_name in op.bench_dtypes:
                case = ops_module.Case(shape)
                gen = torch.Generator().manual_seed(0)
                dtype = ops_module.DTYPES[dtype_name]
                x = {k: v.cuda() for k, v in op.inputs(case, dtype, gen).items()}
                cot = {k: v.cuda() for k, v in op.cotangents(case, dtype, gen).items()}
                fwd, fwd_bwd, _ = o.prepare(x, cot, op.case_eps(case))
                fwd()
                fwd_bwd()
                torch.cuda.synchronize()
                print(f"# {o.name} compiled and tuned for {dtype_name} at H={shape['H']}", flush=True)
    return 0 if all(why is None for why in status.values()) else 1


if __name__ == "__main__":
    sys.exit(prepare_main())
