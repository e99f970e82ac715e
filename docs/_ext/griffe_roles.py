"""Griffe extension for the API reference: Sphinx roles in docstrings become links.

sepconv's docstrings name other objects the Sphinx way (``:func:`save_model```,
``:class:`~sepconv.bench.Timing```); Markdown shows those roles raw. Once the package is
loaded, each role is resolved from the scope of the docstring that holds it and written as a
cross-reference to the object's entry on the API page (``[`save_model()`][sepconv.save_model]``),
or to the entry of the class that holds it. A name the page has no entry for (a private helper, a
module) is written as plain code, so that no role is ever shown raw and no link leads nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(func|meth|class|data|attr|mod|exc|obj):`(~?)([^`<>]+)`")
_PAGE = Path("docs/reference/api.md")


def _documented() -> list[str]:
    """The identifiers the API page has an entry for (its ``::: path`` lines)."""
    lines = _PAGE.read_text(encoding="utf-8").splitlines()
    return [line.split()[1] for line in lines if line.startswith("::: ")]


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`name``` in every docstring as a link or as plain code."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        entries: dict[str, str] = {}  # canonical path -> identifier of its entry on the page
        for identifier in _documented():
            try:
                target = pkg.modules_collection[identifier]
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            entries.setdefault(_canonical(target), identifier)
        for obj in _walk(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = _ROLE.sub(
                    lambda match, o=obj: _replacement(match, o, entries), obj.docstring.value
                )


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object defined in it (aliases left out: their target is walked)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += _walk(member)  # type: ignore[arg-type]
    return found


def _canonical(obj: griffe.Object | griffe.Alias) -> str:
    """Where ``obj`` is defined, following import aliases by hand: they are not resolved yet
    when the package has just been loaded."""
    seen = set()
    while obj.is_alias and obj.path not in seen:
        seen.add(obj.path)
        target = obj.target_path  # type: ignore[union-attr]
        try:
            obj = obj.modules_collection[target]
        except KeyError:
            return target
    return obj.path


def _replacement(match: re.Match[str], scope: griffe.Object, entries: dict[str, str]) -> str:
    role, short, name = match.groups()
    name = name.strip()
    shown = name.rsplit(".", 1)[-1] if short else name
    if role in ("func", "meth"):
        shown += "()"
    link = _entry(name, scope, entries, module=role == "mod")
    return f"[`{shown}`][{link}]" if link else f"`{shown}`"


def _entry(
    name: str, scope: griffe.Object, entries: dict[str, str], *, module: bool = False
) -> str | None:
    """The page identifier of ``name`` as seen from ``scope``: its own entry, or the entry of
    the class that holds it; ``None`` when the page has neither."""
    target: griffe.Object | griffe.Alias | None = None
    collection = scope.modules_collection
    head, _, rest = name.partition(".")
    for candidate in (name, f"sepconv.{name}"):
        try:
            target = collection[candidate]
            break
        except KeyError:
            continue
    holder: griffe.Object | None = scope
    while target is None and holder is not None:
        # A dotted name (``InferenceModel.timings``) resolves its first part in scope.
        try:
            resolved = holder.resolve(head)
            target = collection[f"{resolved}.{rest}" if rest else resolved]
        except (KeyError, griffe.NameResolutionError):
            holder = holder.parent
    if target is None:
        return None
    path = _canonical(target)
    last = name.rsplit(".", 1)[-1]
    try:
        found = collection[path]
    except KeyError:
        found = None
    if not module and found is not None and found.is_module:
        # A package that re-exports a function of its same-named module (``sepconv.fuse``,
        # defined in ``sepconv.deploy.fuse``) names the function, not the module.
        inner = found.members.get(last)
        if inner is not None:
            path = _canonical(inner)
    if path in entries:
        return entries[path]
    owner = path.rpartition(".")[0]
    # A member (a method, a dataclass field) links to its class's entry, which documents it.
    return entries.get(owner)
