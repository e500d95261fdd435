"""PaddleNLP and PaddleFormers stay optional: no module of the core imports either (checked with both made
unimportable, so the check means something where neither is installed), and importing an integration without its
library is one ImportError that says what to install. The integrations themselves are tested in a virtualenv per
library: tests/integrations (.ci/run)."""
import os
import subprocess
import sys

import paddle_lrnn

INTEGRATIONS = {"paddlenlp": "paddle_lrnn.integrations.paddlenlp",
                "paddleformers": "paddle_lrnn.integrations.paddleformers"}


def core_modules():
    package = os.path.dirname(paddle_lrnn.__file__)
    names = []
    for directory, _, files in os.walk(package):
        for f in files:
            if f.endswith(".py") and f != "_C.py":  # _C.py: the operator library's loader stub, made by the build
                name = os.path.relpath(os.path.join(directory, f), os.path.dirname(package))[:-3]
                names.append(name.replace(os.sep, ".").removesuffix(".__init__"))
    return sorted(n for n in names if n not in INTEGRATIONS.values())


def run_without_libraries(code):
    """Runs code in a fresh interpreter in which importing paddlenlp or paddleformers raises ImportError."""
    prelude = "import sys\nsys.modules['paddlenlp'] = None\nsys.modules['paddleformers'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True)


def test_no_core_module_imports_either_library():
    names = core_modules()
    assert "paddle_lrnn.integrations._adapter" in names and "paddle_lrnn.cli" in names
    out = run_without_libraries(f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)\n"
                                f"print(sorted(m for m in sys.modules if m.split('.')[0] in "
                                f"('paddlenlp', 'paddleformers') and sys.modules[m] is not None))")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_integration_without_its_library_says_what_to_install():
    for library, module in INTEGRATIONS.items():
        out = run_without_libraries(f"try:\n    import {module}\nexcept ImportError as err:\n"
                                    f"    print(err.name, '|', err)\n")
        assert out.returncode == 0, out.stderr[-3000:]
        name, message = out.stdout.strip().splitlines()[-1].split(" | ")
        assert name.split(".")[0] == library and f'pip install "paddle_lrnn[{library}]"' in message
