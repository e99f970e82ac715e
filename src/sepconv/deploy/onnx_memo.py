"""Translations remembered: a model exported again with the same options is not traced again.

Capturing a model with ``torch.export`` and translating it to ONNX takes seconds for a
MobileNet, and a deployment build exports the same model several times: once for the fp32
runtimes, again for each int8 file, again for a bf16 build. :class:`TranslationMemo`
keeps the serialized ONNX graph of recent exports under a :func:`fingerprint` of the exported
module and the export options. A remembered graph is never trusted on its fingerprint alone:
:func:`sepconv.export_onnx` checks the file it writes against the model in ONNX Runtime either
way, and translates afresh when a remembered graph fails that check (a change the fingerprint
cannot see, such as a plain attribute that ``forward`` reads).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from itertools import chain

import torch
from torch import nn

__all__ = ["MEMO_BYTES", "TranslationMemo", "fingerprint"]

#: Serialized graphs kept at most, in bytes (the oldest go first); a graph larger than a quarter
#: of this (VGG-16, ResNet-50 at full width) is not kept.
MEMO_BYTES = 256 * 2**20


def fingerprint(model: nn.Module, *options: object) -> str | None:
    """A digest of what an export of ``model`` with ``options`` depends on: every submodule's
    name, class, ``extra_repr`` (strides, groups, ...), training flag and ``forward`` function,
    and every parameter's and buffer's name, dtype, shape and bytes; ``None`` when a tensor has
    no plain bytes to read (quantized, sparse, meta), and then nothing is remembered."""
    digest = hashlib.blake2b(repr(options).encode(), digest_size=20)
    for name, module in model.named_modules():
        cls = type(module)
        forward = module.__dict__.get("forward", cls.forward)
        code = getattr(forward, "__code__", forward)
        digest.update(
            f"{name}|{cls.__module__}.{cls.__qualname__}|{module.extra_repr()}|"
            f"{module.training}|{id(code)}\n".encode()
        )
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
            return None
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(data.view(torch.uint8).numpy().data)
    return digest.hexdigest()


class TranslationMemo:
    """Serialized ONNX graphs by fingerprint, the most recent first, within ``max_bytes``.

    Safe to share between threads.
    """

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self._graphs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, model: nn.Module, *options: object) -> str | None:
        """``fingerprint(model, *options)``, or ``None`` for a model whose weights alone are too
        large to be kept (not worth hashing)."""
        size = sum(t.numel() * t.element_size() for t in chain(model.parameters(), model.buffers()))
        return None if size > self.max_bytes // 4 else fingerprint(model, *options)

    def get(self, key: str) -> bytes | None:
        """The graph remembered under ``key``, or ``None``."""
        with self._lock:
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
            return graph

    def put(self, key: str, graph: bytes) -> None:
        """Remember ``graph`` (unless it is larger than a quarter of ``max_bytes``), dropping
        the least recently used graphs beyond ``max_bytes``."""
        if len(graph) > self.max_bytes // 4:
            return
        with self._lock:
            self._graphs[key] = graph
            self._graphs.move_to_end(key)
            while sum(map(len, self._graphs.values())) > self.max_bytes:
                self._graphs.popitem(last=False)

    def discard(self, key: str) -> None:
        """Forget the graph under ``key`` (one that failed its check)."""
        with self._lock:
            self._graphs.pop(key, None)

    def clear(self) -> None:
        """Forget every graph."""
        with self._lock:
            self._graphs.clear()

    def __len__(self) -> int:
        return len(self._graphs)
