"""Griffe extension for the API reference: read ``Example:`` sections as ``Examples:``.

sepconv's docstrings head their doctests ``Example:``; Google-style parsers only treat the plural
``Examples:`` as code, and would render ``>>>`` lines as nested Markdown quotes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename each ``Example:`` section header to ``Examples:`` before parsing."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
