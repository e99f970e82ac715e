"""The C allocator under PyTorch's CPU tensors: keep freed memory, as timing needs.

PyTorch allocates a CPU tensor's memory with the C library's ``malloc``. glibc's ``malloc``
serves a large request from a fresh ``mmap`` and gives it back to the operating system when it
is freed, and trims the top of its heap once enough is free there; each time, the next
allocation of that size starts with the kernel zeroing new pages, one page fault each. Eager
PyTorch allocates and frees every activation at every call, so in a fresh process a
MobileNetV2 at batch 1 (224x224) takes thousands of minor page faults per call, and the call
takes longer for it; in a process that earlier allocated and freed larger buffers (an ONNX
export, say) glibc has raised its thresholds on its own and the same call takes none. The same
model then times differently depending on what its process did before.

PyTorch's CPU performance tuning guide advises an allocator that reuses freed memory (jemalloc
or TCMalloc, preloaded). :func:`keep_freed_memory` gets the same from glibc itself, with
``mallopt``: freed blocks up to :data:`KEPT_BYTES` stay in the process. sepconv's measuring
commands (``sepconv bench``, ``sepconv calibrate``) and its benchmarks call it before they
time anything; the environment they record says what the allocator was
(:func:`allocator_state`). Memory the process has freed is then not returned to the system
until it exits, up to the largest working set it reached.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

__all__ = ["KEPT_BYTES", "allocator_state", "keep_freed_memory"]

#: Freed blocks up to this size stay in the process: glibc's largest ``mmap`` threshold on a
#: 64-bit machine (``DEFAULT_MMAP_THRESHOLD_MAX``), above which ``mallopt`` refuses it.
KEPT_BYTES = 32 * 2**20
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Free memory at the top of the heap kept before it is trimmed.
_TRIM_BYTES = 2**30

_state = "default"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (the only one whose ``mallopt`` this module knows), found
    once per process: ``find_library`` runs ``ldconfig``, and every result record asks."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory in the process (up to :data:`KEPT_BYTES` a
    block) instead of returning it to the system at every free; whether it did (``False``
    where the C library is not glibc). Affects the whole process, from this call on; calling it
    again changes nothing.

    Example:
        >>> keep_freed_memory() in (True, False)
        True
    """
    global _state
    libc = _glibc()
    if libc is None:
        return False
    trimmed = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
    mapped = libc.mallopt(_M_MMAP_THRESHOLD, KEPT_BYTES)
    if trimmed != 1 or mapped != 1:  # mallopt returns 1 on success
        return False
    _state = "kept"
    return True


def allocator_state() -> str:
    """How the C allocator handles freed memory in this process, for result records.

    Example:
        >>> allocator_state().startswith(("glibc", "not glibc"))
        True
    """
    preloaded = [
        name for name in os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
        if "malloc" in os.path.basename(name)
    ]  # fmt: skip
    if preloaded:
        return f"{os.path.basename(preloaded[0])} (preloaded)"
    if _glibc() is None:
        return "not glibc: the C library's defaults"
    if _state == "kept":
        return f"glibc malloc, freed memory kept (mmap threshold {KEPT_BYTES // 2**20} MiB)"
    return "glibc malloc, defaults (freed memory returned to the system)"
