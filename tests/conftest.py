"""Test-wide settings: one intra-op thread per test process (pytest-xdist runs two of them),
and Triton's interpreter on a machine without a GPU (set before any test imports the kernels,
whose ``@triton.jit`` reads it when they are defined)."""

import os

import torch

torch.set_num_threads(1)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
