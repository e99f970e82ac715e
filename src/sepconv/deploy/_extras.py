"""Optional packages: import them on demand, or say which extra installs them.

Each optional package deployment uses is one :class:`Extra`; a backend's row in
:data:`sepconv.deploy.registry.BACKEND_TABLE` names the one its runtime needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Extra:
    """An optional package and the sepconv extra that installs it.

    Attributes:
        name: The extra of ``[project.optional-dependencies]``: ``pip install 'sepconv[name]'``.
        module: The top-level module the package provides, as imported.
    """

    name: str
    module: str


ONNX = Extra(name="onnx", module="onnx")
ONNXSCRIPT = Extra(name="onnx", module="onnxscript")
ONNXRUNTIME = Extra(name="onnx", module="onnxruntime")
OPENVINO = Extra(name="openvino", module="openvino")
NNCF = Extra(name="openvino", module="nncf")
TRITON = Extra(name="kernels", module="triton")


def require(package: Extra, purpose: str) -> ModuleType:
    """Import ``package``, or raise an ImportError naming what needs it and the extra to install.

    Args:
        package: The optional package, e.g. :data:`ONNXRUNTIME`.
        purpose: What the caller was about to do, e.g. ``"ONNX export"``.

    Example:
        >>> ort = require(ONNXRUNTIME, "ONNX Runtime inference")
    """
    try:
        return importlib.import_module(package.module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the `{package.module}` package, which is not installed: "
            f"run `pip install 'sepconv[{package.name}]'`."
        ) from err
