"""The one exception class of paddle_lrnn.io (no imports beyond os, so importing it is free)."""
import os

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint or model file was refused (or could not be written).

    Every refusal in paddle_lrnn.io raises this class, with a one-line message that names the file and the
    problem, e.g. ``refusing to load ckpt.pth: it references os.system, which is not a tensor, storage or plain
    container``. Attributes: ``path`` (str, the file as given) and ``problem`` (the message without the file part).
    It subclasses ValueError, so code that already catches ValueError keeps working.
    """

    def __init__(self, path, problem, *, action="load"):
        self.path = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the problem text held
        self.action = action
        verb = "refusing to load" if action == "load" else f"cannot {action}"
        super().__init__(f"{verb} {self.path}: {self.problem}")
