"""One entry per operator for check.py and bench.py: shapes, inputs, how to call the kernels through the torch
extension (ext.py), a float64 reference written in torch, and the bytes and flops a pass must move.

Adding an operator (HGRN2's gated outer-product recurrence, MRU's scan): bind its CPU and CUDA kernels in
torch_ops.cpp / launchers.h / torch_ops_cuda.cu, then add a class here with the same methods as Wkv and put an
instance in OPS. check.py and bench.py need no change. Conventions: inputs() returns a dict in the order of
input_names, and grad_names follow that order; cotangents() returns a dict in the order of the outputs (None for a
dropped one); reference() returns the first ref_outs outputs, differentiable w.r.t. every input.
The benchmark shapes to use then:
  HGRN2  B=4 T=4096 H=16 K=V=128      MRU  B=8 H=8 T=2048 d=16
"""
import math

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


class Case:
    """One configuration to check: `shape` (dict), a `variant` of the inputs, cotangents to drop (None: keep all),
    and whether the float64 reference is cheap enough to run."""

    def __init__(self, shape, variant="default", drop=(), reference=True, long=False):
        self.shape, self.variant, self.drop, self.reference, self.long = shape, variant, tuple(drop), reference, long

    def label(self):
        s = ",".join(f"{k}={v}" for k, v in self.shape.items())
        extra = [self.variant] if self.variant != "default" else []
        extra += [f"no {d}" for d in self.drop]
        return s + (f" [{'; '.join(extra)}]" if extra else "")


def randn(shape, gen, dtype, scale=1.0):
    """Normal values rounded to `dtype`, returned in that dtype (on the CPU: the same bits for every backend)."""
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def uniform(shape, gen, lo, hi, dtype):
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


# ----- WKV -----------------------------------------------------------------------------------------------------------
class Wkv:
    name = "wkv"
    out_names = ("y", "state", "checkpoints")
    grad_names = ("gw", "gu", "gk", "gv", "gstate")
    input_names = ("w", "u", "k", "v", "s0")
    ref_outs = 2  # the reference gives (y, state); the checkpoints are compared kernel to kernel only
    eps = 0.0

    def cases(self, quick=False):
        S = lambda B, T, C: dict(B=B, T=T, C=C)  # noqa: E731
        if quick:  # for compute-sanitizer: small, but several blocks, chunks and a partial block
            return [Case(S(3, 40, 129), "state"), Case(S(2, 33, 19), drop=["gy"])]
        shapes = [S(1, 1, 1), S(2, 1, 5), S(3, 17, 7), S(2, 16, 16), S(2, 33, 19), S(1, 100, 37), S(4, 15, 33),
                  S(3, 40, 129)]
        cases = [Case(s) for s in shapes] + [Case(s, "state") for s in shapes[2:]]
        cases += [
            Case(S(2, 33, 19), "state", drop=["gy"]),
            Case(S(2, 33, 19), "state", drop=["gs1"]),
            Case(S(2, 40, 9), "extreme keys"),
            Case(S(2, 65, 11), "tiny decay"),
            Case(S(2, 65, 11), "large decay"),
            Case(S(2, 40, 9), "eps"),
            Case(S(2, 2048, 5), "slow decay", long=True),
            Case(S(2, 4096, 64), "slow decay", long=True),  # a benchmark-length sequence the reference can afford
            Case(S(8, 4096, 2048), reference=False, long=True),  # the benchmark shape
        ]
        return cases

    bench_shapes = [dict(B=8, T=4096, C=2048)]
    bench_dtypes = ["float32", "bfloat16"]

    def inputs(self, case, dtype, gen):
        B, T, C = case.shape["B"], case.shape["T"], case.shape["C"]
        acc = acc_dtype(dtype)
        w_range = {"tiny decay": (1e-6, 1e-4), "large decay": (20.0, 60.0), "slow decay": (1e-3, 0.1)}.get(
            case.variant, (0.05, 3.0))
        k_scale = 30.0 if case.variant == "extreme keys" else 1.0
        w = uniform((C,), gen, *w_range, acc)
        u = randn((C,), gen, acc)
        k = randn((B, T, C), gen, dtype, k_scale)
        v = randn((B, T, C), gen, dtype)
        if case.variant == "extreme keys":
            k[0, 3] = 60.0
            k[-1, 5] = -60.0
            k[-1, 6:9] = 88.0
        if case.variant in ("state", "tiny decay", "large decay"):
            aa, bb = randn((B, C), gen, acc), uniform((B, C), gen, 0.2, 3.0, acc)
            s0 = torch.stack([aa, bb, randn((B, C), gen, acc, 2.0)], dim=1)
        else:
            s0 = torch.cat([torch.zeros(B, 2, C, dtype=acc), torch.full((B, 1, C), -1e38, dtype=acc)], dim=1)
        return dict(w=w, u=u, k=k, v=v, s0=s0)

    def case_eps(self, case):
        return 1e-2 if case.variant == "eps" else self.eps

    def cotangents(self, case, dtype, gen):
        B, T, C = case.shape["B"], case.shape["T"], case.shape["C"]
        gy = None if "gy" in case.drop else randn((B, T, C), gen, dtype)
        gs1 = None if "gs1" in case.drop else randn((B, 3, C), gen, acc_dtype(dtype))
        return dict(gy=gy, gs1=gs1)

    def forward(self, ext, x, eps, stream):
        return tuple(ext.wkv_forward(x["w"], x["u"], x["k"], x["v"], x["s0"], eps, stream))

    def backward(self, ext, x, outs, cot, eps, stream):
        return tuple(ext.wkv_backward(x["w"], x["u"], x["k"], x["v"], x["s0"], outs[1], outs[2], eps, cot["gy"],
                                      cot["gs1"], stream))

    def reference(self, x, eps):
        """The recurrence one step at a time in log-scaled form (float64, differentiable): (y, state)."""
        w, u, k, v, s0 = x["w"], x["u"], x["k"], x["v"], x["s0"]
        aa, bb, pp = s0[:, 0], s0[:, 1], s0[:, 2]
        ys = []
        for t in range(k.shape[1]):
            kt, vt = k[:, t], v[:, t]
            uk = u + kt
            p = torch.maximum(pp, uk)
            e1, e2 = torch.exp(pp - p), torch.exp(uk - p)
            den = e1 * bb + e2
            if eps > 0:
                den = den + eps * torch.exp(-p)
            ys.append((e1 * aa + e2 * vt) / den)
            decayed = pp - w
            p = torch.maximum(decayed, kt)
            e1, e2 = torch.exp(decayed - p), torch.exp(kt - p)
            aa, bb, pp = e1 * aa + e2 * vt, e1 * bb + e2, p
        return torch.stack(ys, dim=1), torch.stack([aa, bb, pp], dim=1)

    def traffic(self, shape, dtype):
        """(bytes, flops) of one forward and of one backward pass: each input read once, each output written once."""
        B, T, C = shape["B"], shape["T"], shape["C"]
        s = torch.finfo(DTYPES[dtype]).bits // 8
        a = 8 if dtype == "float64" else 4
        ck = B * math.ceil(T / 16) * 3 * C * a
        fwd = 3 * B * T * C * s + ck + 2 * B * 3 * C * a
        bwd = 5 * B * T * C * s + ck + 4 * B * 3 * C * a + 2 * B * C * a
        return (fwd, 20 * B * T * C), (bwd, 60 * B * T * C)


# ----- TimeX ---------------------------------------------------------------------------------------------------------
class Timex:
    name = "timex"
    out_names = ("out",)
    grad_names = ("gw", "gx")
    input_names = ("w", "x")
    ref_outs = 1
    eps = 0.0

    def cases(self, quick=False):
        S = lambda B, C, T, L: dict(B=B, C=C, T=T, L=L)  # noqa: E731
        if quick:
            return [Case(S(2, 3, 300, 520))]
        return [Case(S(1, 1, 1, 1)), Case(S(2, 3, 1, 8)), Case(S(2, 5, 7, 7)), Case(S(3, 4, 13, 40)),
                Case(S(2, 17, 255, 256)), Case(S(1, 3, 300, 513)), Case(S(2, 3, 300, 520), "eps"),
                Case(S(2, 3, 2048, 2048), long=True), Case(S(12, 512, 1024, 1024), reference=False, long=True)]

    bench_shapes = [dict(B=12, C=512, T=1024, L=1024)]  # RWKV-v2 enwik8: batch 12, n_embd 512, ctx_len 1024
    bench_dtypes = ["float32"]

    def inputs(self, case, dtype, gen):
        s = case.shape
        return dict(w=randn((s["C"], s["L"]), gen, dtype), x=randn((s["B"], s["C"], s["T"]), gen, dtype))

    def case_eps(self, case):
        return 0.5 if case.variant == "eps" else self.eps

    def cotangents(self, case, dtype, gen):
        s = case.shape
        return dict(g=randn((s["B"], s["C"], s["T"]), gen, dtype))

    def forward(self, ext, x, eps, stream):
        return (ext.timex_forward(x["w"], x["x"], eps, stream),)

    def backward(self, ext, x, outs, cot, eps, stream):
        return tuple(ext.timex_backward(x["w"], x["x"], cot["g"], stream))

    def reference(self, x, eps):
        w, inp = x["w"], x["x"]
        B, C, T = inp.shape
        kernel = w[:, w.shape[1] - T:].unsqueeze(1)  # [C, 1, T]: index j holds lag T-1-j
        return (F.conv1d(F.pad(inp, (T - 1, 0)), kernel, groups=C) + eps,)

    def traffic(self, shape, dtype):
        B, C, T, L = shape["B"], shape["C"], shape["T"], shape["L"]
        s = torch.finfo(DTYPES[dtype]).bits // 8
        macs = B * C * T * (T + 1) // 2
        return ((2 * B * C * T + C * T) * s, 2 * macs), ((3 * B * C * T + C * T + C * L) * s, 4 * macs)


OPS = [Wkv(), Timex()]


def by_name(names):
    if not names:
        return OPS
    wanted = set(names.split(","))
    unknown = wanted - {op.name for op in OPS}
    if unknown:
        raise SystemExit(f"unknown operator(s) {sorted(unknown)}; known: {[op.name for op in OPS]}")
    return [op for op in OPS if op.name in wanted]
