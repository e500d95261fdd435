"""paddle_lrnn: linear-RNN language models (RWKV-v2, RWKV-4, HGRN2, MRU) for PaddlePaddle, with custom C++/CUDA
operators.

Layers depend downwards only: ops -> layers -> models -> convert / data / training / generation / export -> cli
(the command lines; tools/*.py run them from a checkout). Where each piece lives: README, "Layout".
"""
__version__ = "0.1.0"
