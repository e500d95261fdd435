"""Builds paddle_lrnn and its operator library, paddle_lrnn._C, with paddle.utils.cpp_extension.

CPU kernels are always built; CUDA kernels too when the installed Paddle has CUDA (set PADDLE_LRNN_CPU_ONLY=1 to
skip them). The build imports paddle, so install with `pip install --no-build-isolation -e .` (README).
Environment:
  PADDLE_LRNN_CUDA_ARCH   e.g. "80;90": GPU architectures to build for (default: the visible GPUs, else 70-90)
  PADDLE_LRNN_PORTABLE=1  build the CPU kernels for generic x86-64 instead of this machine's instruction set
"""
import glob
import os
import re
import shutil

import paddle
from paddle.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
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
cxx_flags = ["-O3", "-fopenmp-simd", "-std=c++17", "-fno-trapping-math", "-fno-math-errno", "-pthread"]
if os.environ.get("PADDLE_LRNN_PORTABLE") != "1":
    cxx_flags.append("-march=native")
extra = {"cxx": cxx_flags}
Extension = CppExtension
if with_cuda:
    sources += sorted(glob.glob("custom_ops/paddle/*.cu"))
    extra["nvcc"] = ["-O3", "-lineinfo", "--expt-relaxed-constexpr", *cuda_arch_flags()]
    Extension = CUDAExtension

ext = Extension(sources=sources, include_dirs=[os.path.join(ROOT, "custom_ops")], extra_compile_args=extra,
                extra_link_args=["-pthread"])
ext.name = "paddle_lrnn._C"


class Build(BuildExtension.with_options(no_python_abi_suffix=True)):
    def run(self):
        super().run()
        # Paddle's build leaves its object files under build_lib/build; keep them out of the installed package.
        shutil.rmtree(os.path.join(self.build_lib, "build"), ignore_errors=True)


setup(
    name="paddle_lrnn",
    version=VERSION,
    description="Linear-RNN language models (RWKV-v2, RWKV-4, HGRN2, MRU) for PaddlePaddle with custom C++/CUDA "
                "operators",
    packages=find_packages(include=["paddle_lrnn", "paddle_lrnn.*"]),
    package_data={"paddle_lrnn.data": ["austen/austen.txt", "austen/NOTICE"]},  # the default corpus
    ext_modules=[ext],
    cmdclass={"build_ext": Build},
    python_requires=">=3.8",
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
