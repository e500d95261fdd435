"""What a user installing the project meets: setup.py refuses an unsupported Paddle in one line before anything is
compiled; the repository holds no path of one machine; every fixture comes with the generator that made it.
(The wheel itself is built, installed outside the checkout and smoke-tested by .ci/wheel_smoke.sh.)"""
import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def setup_py_with_paddle(tmp_path, version):
    """Runs `setup.py --version` with a stand-in paddle package of the given version in front of the real one."""
    fake = tmp_path / "paddle"
    fake.mkdir()
    (fake / "__init__.py").write_text(f"__version__ = {version!r}\n")
    return subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)), timeout=120)


@pytest.mark.parametrize("version", ["3.2.2", "3.0.0", "2.6.2", "1.8.5"])
def test_setup_refuses_an_older_paddle_in_one_line(tmp_path, version):
    out = setup_py_with_paddle(tmp_path, version)
    assert out.returncode != 0
    assert out.stderr.strip() == (f"error: paddle_lrnn needs PaddlePaddle >= 3.3; this environment has {version} "
                                  "(README: supported Paddle versions)")
    assert out.stdout == ""


def test_setup_without_paddle_says_to_install_it_first(tmp_path):
    (tmp_path / "paddle.py").write_text("raise ImportError('No module named paddle')\n")
    out = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)), timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "error: building paddle_lrnn needs PaddlePaddle >= 3.3 installed first (pip install paddlepaddle==3.3.1, "
        "or a GPU build), then pip install --no-build-isolation ."]


@pytest.mark.slow
def test_setup_accepts_the_installed_paddle():
    out = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    init = open(os.path.join(REPO, "paddle_lrnn", "__init__.py"), encoding="utf-8").read()
    assert out.stdout.strip().splitlines()[-1] == re.search(r'__version__ = "([^"]+)"', init).group(1)


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f]


# Absolute paths of one machine (a user's checkout lives anywhere; the repository names paths relative to itself).
FORBIDDEN = re.compile(r"(?<![\w.~$])/(?:work|root|home)/")


def test_no_tracked_file_names_a_path_of_one_machine():
    hits = []
    for name in tracked_files():
        path = os.path.join(REPO, name)
        if not os.path.isfile(path) or name.startswith("data/"):  # the corpus is a book
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        hits += [f"{name}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)]
    assert hits == []


def test_every_fixture_has_its_generator():
    """Each folder of tests/fixtures comes with the script that made it: generators/make_<folder>.py, whose command
    generators/README.md gives with the original's commit, or make_*.py scripts of its own beside it."""
    readme = open(os.path.join(FIXTURES, "generators", "README.md"), encoding="utf-8").read()
    folders = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)) and d != "generators")
    assert {"rwkv2", "hgrn2", "mru"} <= set(folders)
    for folder in folders:
        script = f"make_{folder}.py"
        if os.path.isfile(os.path.join(FIXTURES, "generators", script)):
            assert re.search(rf"python tests/fixtures/generators/{script} .*tests/fixtures/{folder}\n", readme), script
        else:
            assert glob.glob(os.path.join(FIXTURES, folder, "make_*.py")), f"tests/fixtures/{folder} has no generator"
    assert len(re.findall(r"checkout [0-9a-f]{40}", readme)) >= 2  # the git originals, at full commits
