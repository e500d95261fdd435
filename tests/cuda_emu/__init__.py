"""CPU emulation of the CUDA subset our kernels use; see build.py and cuda_emulation.h."""
