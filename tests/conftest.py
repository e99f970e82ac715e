"""Test-wide settings: one intra-op thread per test process (pytest-xdist runs two of them)."""

import torch

torch.set_num_threads(1)
