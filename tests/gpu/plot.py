"""Plots bench.py's times against the sequence length (its JSON's "sweep"): one panel per operator (two a row), forward (solid)
and forward + backward (dashed) for ours and each original, log-log. bench.py calls plot() when matplotlib is
importable; otherwise, on any machine with matplotlib:

  python tests/gpu/plot.py out/bench.json [out/bench.png]
"""
import json
import os
import sys


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r["op"] for r in result["sweep"]))
    cols = min(2, len(ops))
    rows = (len(ops) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.remove()
    for ax, op in zip(axes.flat, ops):
        rows = [r for r in result["sweep"] if r["op"] == op]
        impls = list(dict.fromkeys(r["impl"] for r in rows))
        for i, impl in enumerate(impls):
            pts = sorted((r["T"], r["fwd_ms"], r["fwd_bwd_ms"]) for r in rows if r["impl"] == impl)
            T = [p[0] for p in pts]
            color = f"C{i}"
            ax.plot(T, [p[1] for p in pts], "o-", color=color, label=f"{impl} fwd")
            ax.plot(T, [p[2] for p in pts], "s--", color=color, label=f"{impl} fwd+bwd")
        shape = {k: v for k, v in rows[0]["shape"].items() if k not in ("T", "L")}
        ax.set_title(f"{op} ({' '.join(f'{k}={v}' for k, v in shape.items())}, {rows[0]['dtype']})", fontsize=9)
        ax.set_xscale("log", base=2)
        lengths = sorted({r["T"] for r in rows})
        ax.set_xticks(lengths, [str(T) for T in lengths])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(result["device"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        result = json.load(f)
    path = sys.argv[2] if len(sys.argv) == 3 else os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])),
                                                               "bench.png")
    plot(result, path)
    print(path)


if __name__ == "__main__":
    main()
