"""metrics.jsonl (one JSON object per evaluation) and the loss-curve PNG drawn from it."""
import json
import os

from ..io.atomic import atomic_write


def append_record(path, record):
    """Appends one line and forces it to disk, so that a crash never leaves half a line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path):
    """The records in `path`; a last line without its newline (a write cut short by a crash) is left out."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def truncate_after(path, step):
    """Drops records logged after `step` (a run resumed from that checkpoint logs them again)."""
    records = [r for r in read_records(path) if r["step"] <= step]
    with atomic_write(path, "w") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
    return records


def plot_losses(records, path, title=""):
    """Train and validation loss against tokens seen, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    tokens = [r["tokens"] for r in records]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(t, r[key]) for t, r in zip(tokens, records) if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
