"""What the whole suite shares.

The test process computes as the command-line tools do: importing paddle_lrnn.cli sets MKL_DEBUG_CPU_TYPE on AMD
processors before Paddle starts MKL, and that setting changes the rounding of Paddle's matrix products, so a run of
tools/train.py is bit-identical to one in this process only with it (tests/test_crash_resume.py compares them).

Hypothesis profiles: "ci" (the default) runs a bounded number of examples per property test, derandomized: every run
draws the same examples, so a failure in CI reproduces on any machine and a pass means the same thing every time
(random fuzzing belongs to the long mode). "long" draws 1000 examples per operator property, from new random seeds
each run, with wider shapes: `python -m pytest tests/test_fuzz_ops.py --fuzz-long`, or LRNN_FUZZ=long.
"""
import os

from hypothesis import settings

import paddle_lrnn.cli  # noqa: F401

CI_EXAMPLES = 100
LONG_EXAMPLES = 1000

settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=LONG_EXAMPLES, deadline=None, print_blob=True)


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true",
                     help="long property-based fuzzing (hypothesis profile 'long'; also LRNN_FUZZ=long)")


def pytest_configure(config):
    if config.getoption("--fuzz-long"):
        os.environ["LRNN_FUZZ"] = "long"  # read by the fuzz tests to widen their shapes
    settings.load_profile("long" if os.environ.get("LRNN_FUZZ") == "long" else "ci")
