"""Files written atomically: readers see the old file or the new one, never half of one.

Every file sepconv writes (weights, checkpoints, ONNX models, result tables and plots) goes
through :func:`write_atomic`, so an error or an interrupt in the middle leaves the destination
untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sepconv.utils.validation import invalid


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


def check_writable(path: str | Path, name: str, *, is_dir: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a ``Path``.

    A file path needs an existing, writable parent directory and must not be a directory; a
    directory path (``is_dir=True``) must be a directory or creatable under a writable existing
    ancestor. Raises ``ValueError`` naming the argument ``name``, so a long run never ends by
    failing to save its result.
    """
    target = Path(path)
    if is_dir:
        if target.exists() and not target.is_dir():
            raise invalid(name, "a directory (this path is a file)", str(target))
        probe = target
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise invalid(
                name, f"a directory that can be created ({str(probe)!r} is a file)", str(target)
            )
    else:
        if target.is_dir():
            raise invalid(name, "a file path (this path is a directory)", str(target))
        probe = target.parent
        if not probe.is_dir():
            raise invalid(
                name, f"a path in an existing directory ({str(probe)!r} is not one)", str(target)
            )
    # Try it: permission bits say nothing to root, and a read-only mount says no to everyone.
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".sepconv-write-check.")
    except OSError as err:
        raise invalid(
            name, f"a writable location ({str(probe)!r}: {err.strerror})", str(target)
        ) from err
    os.close(fd)
    os.unlink(tmp)
    return target
