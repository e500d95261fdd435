"""Builds paddle_lrnn and its operator library, paddle_lrnn._C, with paddle.utils.cpp_extension.

CPU kernels are always built; CUDA kernels too when the installed Paddle has CUDA (set PADDLE_LRNN_CPU_ONLY=1 to
skip them). The build imports paddle, so install with `pip install --no-build-isolation -e .` (README).
Needs PaddlePaddle 3.3 or newer (MIN_PADDLE; README, "Supported Paddle versions"), refused here in one line rather
than by the compiler or at run time: Paddle 2.x lacks Tensor::is_contiguous, which the bindings use; with Paddle 3.0.0
the operators build but models fail at run time (no paddle.frombuffer for safetensors, an optional operator output).
Environment:
  PADDLE_LRNN_CUDA_ARCH   e.g. "80;90": GPU architectures to build for (default: the visible GPUs, else 70-90)
  PADDLE_LRNN_NATIVE=1    compile the CPU kernels for this machine's processor only (-march=native)
  PADDLE_LRNN_MARCH=LEVEL compile them for another baseline, e.g. x86-64-v3 (the default, x86-64, runs on any
                          x86-64 processor; the kernels pick AVX2 or AVX-512 at run time either way)
"""
import glob
import os
import platform
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
MIN_PADDLE = (3, 3)


def check_paddle():
    """One line instead of a traceback or a compiler error: Paddle missing (e.g. a build in pip's isolated
    environment), or older than MIN_PADDLE. Development builds of Paddle call themselves 0.0.0 and pass."""
    want = ".".join(map(str, MIN_PADDLE))
    try:
        import paddle
    except ImportError:
        sys.exit(f"error: building paddle_lrnn needs PaddlePaddle >= {want} installed first (pip install "
                 f"paddlepaddle==3.3.1, or a GPU build), then pip install --no-build-isolation .")
    found = tuple(int(x) for x in re.findall(r"\d+", paddle.__version__)[:2])
    if found < MIN_PADDLE and found != (0, 0):
        sys.exit(f"error: paddle_lrnn needs PaddlePaddle >= {want}; this environment has {paddle.__version__} "
                 f"(README: supported Paddle versions)")


check_paddle()

import paddle  # noqa: E402
from paddle.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402
from setuptools import find_packages, setup  # noqa: E402

VERSION = re.search(r'__version__ = "([^"]+)"', open(os.path.join(ROOT, "paddle_lrnn", "__init__.py")).read()).group(1)


def cuda_arch_flags():
    archs = os.environ.get("PADDLE_LRNN_CUDA_ARCH")
    if archs:
        archs = [a.replace(".", "") for a in archs.split(";") if a]
    else:
        found = []
        try:
            for i in range(paddle.device.cuda.device_count()):
                p = paddle.device.cuda.get_device_properties(i)
                found.append(f"{p.major}{p.minor}")
        except Exception:  # no driver at build time: build for the common data-centre and desktop GPUs
            pass
        archs = sorted(set(found)) or ["70", "75", "80", "86", "89", "90"]
    return [f for a in archs for f in ("-gencode", f"arch=compute_{a},code=sm_{a}")]


with_cuda = paddle.is_compiled_with_cuda() and os.environ.get("PADDLE_LRNN_CPU_ONLY") != "1"
sources = sorted(glob.glob("custom_ops/paddle/*.cc"))
# -fno-trapping-math lets gcc if-convert float comparisons, which the vectorised CPU loops need (IEEE results are
# unchanged; only floating-point exception flags could differ). -fno-math-errno likewise for math calls.
# -fno-semantic-interposition: calls between the library's own functions go direct (and may be inlined), not
# through the PLT.
cxx_flags = ["-O3", "-fopenmp-simd", "-std=c++17", "-fno-trapping-math", "-fno-math-errno", "-pthread",
             "-fno-semantic-interposition"]
# Portable by default: x86-64 baseline code, plus copies of the kernels for AVX2 and AVX-512 that run only where the
# processor has them (custom_ops/kernels/cpu_isa.h), so that a wheel built here runs on any x86-64 machine.
x86 = platform.machine().lower() in ("x86_64", "amd64")
march = "native" if os.environ.get("PADDLE_LRNN_NATIVE") == "1" else os.environ.get("PADDLE_LRNN_MARCH",
                                                                                       "x86-64" if x86 else "")
if march:
    cxx_flags.append(f"-march={march}")
cxx_flags.append(f'-DLRNN_BUILD_MARCH="{march or "default"}"')
extra = {"cxx": cxx_flags}
Extension = CppExtension
if with_cuda:
    sources += sorted(glob.glob("custom_ops/paddle/*.cu"))
    # -std=c++17 explicitly: Paddle 3.x adds it to nvcc's flags itself, but the kernels need it whatever Paddle does.
    extra["nvcc"] = ["-std=c++17", "-O3", "-lineinfo", "--expt-relaxed-constexpr", *cuda_arch_flags()]
    Extension = CUDAExtension

ext = Extension(sources=sources, include_dirs=[os.path.join(ROOT, "custom_ops")], extra_compile_args=extra,
                extra_link_args=["-pthread"])
ext.name = "paddle_lrnn._C"


class Build(BuildExtension.with_options(no_python_abi_suffix=True)):
    def run(self):
        super().run()
        # Paddle's build leaves its object files under build_lib/build; keep them out of the installed package.
        shutil.rmtree(os.path.join(self.build_lib, "build"), ignore_errors=True)
        # paddle_lrnn._C is a stub Python module (_C.py, generated by Paddle) that defines the operators' functions and
        # loads the library as _C_pd_.so; Paddle renames the library so only in an in-place (editable) build, and a
        # wheel held _C.so, which Python imports instead of the stub and fails on ("dynamic module does not define
        # module export function"). Measured with Paddle 3.3.1.
        library = self.get_ext_fullpath(self.extensions[0].name)
        if os.path.exists(library):
            stem, suffix = os.path.splitext(library)
            os.replace(library, f"{stem}_pd_{suffix}")


setup(
    name="paddle_lrnn",
    version=VERSION,
    description="Linear-RNN language models (RWKV-v2, RWKV-4, HGRN2, MRU) for PaddlePaddle with custom C++/CUDA "
                "operators",
    packages=find_packages(include=["paddle_lrnn", "paddle_lrnn.*"]),
    package_data={"paddle_lrnn.data": ["austen/austen.txt", "austen/NOTICE"]},  # the default corpus
    ext_modules=[ext],
    cmdclass={"build_ext": Build},
    python_requires=">=3.9",
    install_requires=["numpy", "safetensors>=0.8", "tokenizers>=0.21", "tqdm", "matplotlib"],
    # Optional integrations (paddle_lrnn.integrations; README "PaddleNLP and PaddleFormers"), pinned to the versions
    # they were tested with and to the dependency pins without which they do not install or import next to Paddle
    # 3.3.1 (unpinned, visualdl pulls an httpx that breaks `import paddle`). Both bring numpy <= 1.26.4; the core
    # package alone runs on numpy 2 as well.
    extras_require={
        "paddlenlp": ["paddlenlp==3.0.0b4", "aistudio-sdk==0.2.6", "datasets<3.2", "pyarrow<19", "visualdl<3"],
        "paddleformers": ["paddleformers==1.2.0", "pyarrow<26"],
    },
    entry_points={"console_scripts": [f"paddle-lrnn-{tool} = paddle_lrnn.cli.{tool}:cli"
                                      for tool in ("train", "convert", "generate", "export", "bench")]},
    zip_safe=False,
)
