"""The command-line tools, one module each (train, convert, generate, export, bench): argument parsing and a call
into the package. Each module's main(argv=None) runs the tool, cli() is its console script (paddle-lrnn-train, ...,
setup.py) and `python tools/NAME.py` runs the same from a checkout.

What they share is here: bad input ends in one clear line and a non-zero exit, never a traceback (run_cli,
ArgumentParser), and the MKL setting that must come before Paddle is imported (importing any tool module imports
this package first)."""
import argparse
import logging
import os
import sys
import warnings

# Paddle warns about a missing compiler cache on every import, which is noise for users of the tools.
warnings.filterwarnings("ignore", message="No ccache found")


def _mkl_on_amd():
    """Paddle's CPU wheel multiplies matrices with Intel MKL, which takes a slow generic path on AMD processors
    unless told that AVX2 is there (measured here: 2.5x faster float32 matmul on an AMD EPYC). The variable must
    be set before paddle is imported; a value the user set is kept."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read(1 << 16)
    except OSError:
        return
    if "AuthenticAMD" in info and " avx2" in info:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


_mkl_on_amd()


class UsageError(ValueError):
    """A command line argparse refuses (unknown flag, missing value, a value of the wrong type or not a choice)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line through run_cli (`error: argument --length: invalid int value:
    'x' (see --help)`, exit status 2) instead of the usage text followed by the message."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def run_cli(main):
    """Runs main(); user errors (ValueError, OSError, ImportError and their subclasses: bad data, bad files, bad
    flags, an unwritable directory, a full disk, a missing optional package or an unbuilt operator library; and
    MemoryError, e.g. from absurd sizes) print `error: ...` to stderr and exit with status 2; Ctrl-C exits with 130.
    Anything else is a bug and keeps its traceback."""
    # Progress messages of the library (e.g. "encoding enwik8 ...") go to stdout as plain lines; stderr is kept for
    # the one line that explains a failure.
    logger = logging.getLogger("paddle_lrnn")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError as err:  # Paddle's adds hints on further lines: the first names the allocation
        first = str(err).strip().splitlines()[:1]
        print(f"error: out of memory{': ' + first[0] if first else ''}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError, ImportError) as err:
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename and err.filename not in message:
            message = f"{message}: {err.filename}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    finally:
        logger.removeHandler(handler)  # several runs in one process (tests) would otherwise log each line repeatedly
