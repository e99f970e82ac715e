"""Test-wide settings: one intra-op thread per test process (pytest-xdist runs two of them on
the two cores the suite is sized for), and Triton's interpreter on a machine without a GPU (set
before any test imports the kernels, whose ``@triton.jit`` reads it when they are defined).

The environment carries the thread settings to the processes the tests start: a script that
does not set its threads runs on one (``OMP_NUM_THREADS``), and ``torch.compile`` compiles in
its own process instead of starting a pool of compile workers, each a Python with torch loaded
(``TORCHINDUCTOR_COMPILE_THREADS``). A second thread would only wait for a core the other test
process holds."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # after the environment it reads

torch.set_num_threads(1)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
