"""The integration tests run once per library given with --library (each CI virtualenv names its own), or else once
per library installed here; with none installed they stop with a usage error instead of passing vacuously. The main
suite does not collect this folder (pyproject.toml: norecursedirs): the core never needs either library."""
import importlib.util

import pytest

LIBRARIES = ("paddlenlp", "paddleformers")


def pytest_addoption(parser):
    parser.addoption("--library", action="append", choices=LIBRARIES,
                     help="the library whose integration to test (repeatable; default: every one installed)")


def _libraries(config):
    named = config.getoption("--library")
    if named:
        missing = [name for name in named if importlib.util.find_spec(name) is None]
        if missing:
            raise pytest.UsageError(f"--library {', '.join(missing)}: not installed here; pip install "
                                    f"--no-build-isolation -e \".[{missing[0]}]\"")
        return named
    found = [name for name in LIBRARIES if importlib.util.find_spec(name) is not None]
    if not found:
        raise pytest.UsageError("tests/integrations needs PaddleNLP or PaddleFormers: pip install "
                                "--no-build-isolation -e \".[paddlenlp]\" (or .[paddleformers]) in a virtualenv")
    return found


def pytest_generate_tests(metafunc):
    if "library" in metafunc.fixturenames:
        metafunc.parametrize("library", _libraries(metafunc.config), scope="module")


@pytest.fixture(scope="module")
def integration(library):
    """The paddle_lrnn.integrations module of the library (importing it registers the families)."""
    return importlib.import_module(f"paddle_lrnn.integrations.{library}")


@pytest.fixture(scope="module")
def auto(library, integration):
    """The library's own (AutoConfig, AutoModelForCausalLM)."""
    transformers = importlib.import_module(f"{library}.transformers")
    return transformers.AutoConfig, transformers.AutoModelForCausalLM
