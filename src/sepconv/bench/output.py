"""Result files, written atomically (nothing half-written is ever left at the destination), and
the tables they and the terminal show."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX and Windows, so readers see the old file or the new one, and a
    failure in ``write`` removes the temporary file and leaves ``path`` untouched.

    Args:
        path: Destination; its directory must exist.
        write: Writes the content to the path it receives (keeps ``path``'s suffix, so format
            detection such as matplotlib's still works).
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {str(target)!r}: directory {str(target.parent)!r} does not exist; "
            "create it first."
        )
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates owner-only files; give the result the mode a plain open() would.
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        tmp.chmod(mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8), atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a GitHub Markdown table; numbers are written as given (format them first).

    Example:
        >>> print(markdown_table(["a", "b"], [[1, "x"]]))
        | a | b |
        |---|---|
        | 1 | x |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def terminal_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """The rows of :func:`markdown_table` as a rich table: first column left, the rest right."""
    table = Table(title=title)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def markdown_environment(env: Mapping[str, Any], command: str) -> str:
    """The header every committed result starts with: command, machine, versions, threads."""
    return (
        f"Command: `{command}`  \n"
        f"Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs "
        f"({env['cpu_capability']}, native bf16: {env['bf16_native']}), {env['platform']}  \n"
        f"PyTorch {env['torch']}, Python {env['python']}, {env['threads']} intra-op thread(s)"
    )
