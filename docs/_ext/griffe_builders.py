"""Griffe extension for the API reference: model builders documented as the functions they are.

A model family registers one builder per row of its variant table at import time
(``efficientnet_b0 = _BUILDERS["efficientnet_b0"]``); read as source, those are attributes
with no signature or docstring. Each module-level name of ``sepconv.models`` whose object is a
function once the module is imported is replaced by the function as Python sees it: its
signature (keyword-only arguments with their defaults) and its docstring.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe


class ModelBuilders(griffe.Extension):
    """Replace generated builders (attributes in source) by their runtime functions."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "sepconv":
            return
        models = pkg.members.get("models")
        if not isinstance(models, griffe.Module):
            return
        for module in models.modules.values():
            attributes = [
                name for name, member in module.members.items()
                if not member.is_alias and member.is_attribute
            ]  # fmt: skip
            if not attributes:
                continue
            runtime = importlib.import_module(module.path)
            generated = [n for n in attributes if inspect.isfunction(getattr(runtime, n, None))]
            if not generated:
                continue
            inspected = griffe.inspect(module.path)
            for name in generated:
                function = inspected.members[name]
                function.docstring = griffe.Docstring(
                    inspect.getdoc(getattr(runtime, name)) or "", parent=function
                )
                module.set_member(name, function)
