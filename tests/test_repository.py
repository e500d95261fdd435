"""The repository keeps its promises: README's test command is the one CI runs, the embedded corpus and its notice
ship inside the package, every folder of Python modules is a package (so that a wheel holds it), and importing the
package stays fast and compiles nothing."""
import os
import re
import subprocess
import sys

import pytest

from paddle_lrnn.data import DEFAULT_CORPUS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Set-up and first run", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_readme_gives_two_setup_commands_and_ci_runs_the_test_one():
    main_job, tests = readme_commands()
    assert "tools/train.py" in main_job and "tools/generate.py" in main_job
    assert tests.endswith("python -m pytest -q")
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    assert tests in ci.splitlines()


def test_embedded_corpus_ships_with_its_notice():
    assert os.path.getsize(DEFAULT_CORPUS) == 4_025_029
    notice = os.path.join(os.path.dirname(DEFAULT_CORPUS), "NOTICE")
    assert "public domain" in open(notice, encoding="utf-8").read()


def test_every_folder_of_modules_is_a_package():
    package = os.path.join(REPO, "paddle_lrnn")
    folders = [d for d, _, files in os.walk(package) if "__pycache__" not in d and any(f.endswith(".py") for f in files)]
    assert len(folders) >= 10
    assert [d for d in folders if not os.path.isfile(os.path.join(d, "__init__.py"))] == []


@pytest.mark.slow
def test_import_is_cheap_and_loads_no_operator_library():
    code = ("import time, sys; import paddle; t = time.perf_counter(); import paddle_lrnn, paddle_lrnn.models, "
            "paddle_lrnn.ops; print(time.perf_counter() - t, 'paddle_lrnn._C' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    seconds, loaded = out.stdout.split()
    assert float(seconds) < 1.0 and loaded == "False"
