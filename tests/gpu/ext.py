"""Builds and loads the torch extension of the harness (torch_ops.cpp + the CUDA side) with
torch.utils.cpp_extension.load.

Backends:
  cuda      torch_ops.cpp (g++) + torch_ops_cuda*.cu (nvcc, -gencode for sm_90 by default; LRNN_CUDA_ARCH="90;100"
            to change): the real thing, on a GPU machine.
  emulated  torch_ops.cpp + torch_ops_emulated*.cpp (the same .cu compiled by g++ under tests/cuda_emu's emulation):
            "device" tensors are CPU tensors, so the whole harness runs without a GPU (small shapes: it is slow).
  cpu       torch_ops.cpp alone: CPU kernels only.
The build goes to $LRNN_TORCH_EXT_DIR (default: torch's extension cache); set MAX_JOBS to bound the compile jobs
(ninja compiles the sources in parallel: the CUDA side is split into several, the MRU scan's kernels per dtype).
"""
import glob
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def cuda_arch_flags():
    archs = [a.strip().replace(".", "") for a in os.environ.get("LRNN_CUDA_ARCH", "90").split(";") if a.strip()]
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return archs, flags


def set_torch_arch_list():
    """torch adds -gencode flags of its own from TORCH_CUDA_ARCH_LIST (or from the visible GPU): keep them to ours, for
    every extension built in the process (the originals' too), so that a later process rebuilds nothing."""
    archs, _ = cuda_arch_flags()
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(f"{a[:-1]}.{a[-1]}" for a in archs)


def load(backend="cuda", verbose=False):
    import torch
    from torch.utils import cpp_extension

    sources = [os.path.join(HERE, "torch_ops.cpp")]
    cflags = ["-O3", "-fopenmp"]  # torch picks the C++ standard its headers need
    includes = [os.path.join(ROOT, "custom_ops"), HERE]
    kwargs = {}
    if backend == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("backend 'cuda' needs a CUDA device and a CUDA build of torch")
        _, arch_flags = cuda_arch_flags()
        set_torch_arch_list()
        sources += sorted(glob.glob(os.path.join(HERE, "torch_ops_cuda*.cu")))
        cflags.append("-DLRNN_WITH_CUDA")
        kwargs["extra_cuda_cflags"] = ["-O3", "-std=c++17", "-lineinfo", "--expt-relaxed-constexpr", *arch_flags]
    elif backend == "emulated":
        sources += sorted(glob.glob(os.path.join(HERE, "torch_ops_emulated*.cpp")))
        cflags += ["-DLRNN_WITH_CUDA", "-DLRNN_TORCH_EMULATION", "-DLRNN_CUDA_EMULATION", "-Wno-unknown-pragmas",
                   "-fno-strict-aliasing"]
        includes.append(os.path.join(ROOT, "tests", "cuda_emu"))
    elif backend != "cpu":
        raise ValueError(f"unknown backend {backend!r}: cuda, emulated or cpu")
    build_dir = os.environ.get("LRNN_TORCH_EXT_DIR")
    if build_dir:
        build_dir = os.path.join(build_dir, backend)
        os.makedirs(build_dir, exist_ok=True)
        kwargs["build_directory"] = build_dir
    return cpp_extension.load(
        name=f"lrnn_torch_ops_{backend}",
        sources=sources,
        extra_cflags=cflags,
        extra_ldflags=["-fopenmp"],
        extra_include_paths=includes,
        verbose=verbose,
        **kwargs,
    )


if __name__ == "__main__":  # python3 tests/gpu/ext.py [BACKEND]: build (or find built) and load
    import sys
    import time

    t0 = time.time()
    load(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LRNN_GPU_BACKEND", "cuda"))
    print(f"# extension built and loaded in {time.time() - t0:.0f} s")
