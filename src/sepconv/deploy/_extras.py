"""Optional runtimes: import them on demand, or say which extra installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

# Module name -> the sepconv extra that installs it ([project.optional-dependencies]).
EXTRAS: dict[str, str] = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise an ImportError naming what needs it and the extra to install.

    Args:
        module: Top-level module name, a key of :data:`EXTRAS`.
        purpose: What the caller was about to do, e.g. ``"ONNX export"``.

    Example:
        >>> ort = require("onnxruntime", "ONNX Runtime inference")
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module, module)
        raise ImportError(
            f"{purpose} needs the `{module}` package, which is not installed: "
            f"run `pip install 'sepconv[{extra}]'`."
        ) from err
