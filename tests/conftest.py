"""The test process computes as the command-line tools do: importing paddle_lrnn.cli sets MKL_DEBUG_CPU_TYPE on AMD
processors before Paddle starts MKL, and that setting changes the rounding of Paddle's matrix products, so a run of
tools/train.py is bit-identical to one in this process only with it (tests/test_crash_resume.py compares them)."""
import paddle_lrnn.cli  # noqa: F401
