"""Files written atomically: readers see the old file or the new one, never half of one.

Every file sepconv writes (weights, checkpoints, ONNX models, result tables and plots) goes
through :func:`write_atomic`, so an error or an interrupt in the middle leaves the destination
untouched. Only a regular file is ever replaced: a directory, a device or a named pipe at the
path is refused, and a symbolic link is followed, as a shell redirection follows it (the file it
points to is replaced, the link kept).
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sepconv.utils.validation import invalid

#: Marks the temporary files of :func:`write_atomic`: ``.<name>.sepconv-tmp.<host>.<pid>.*``.
TEMP_MARK = ".sepconv-tmp."

# The kinds of file that are not regular, as a user would name them.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(path: str | Path) -> str | None:
    """What is at ``path`` when it is not a regular file: ``"a directory"``, ``"a named pipe"``,
    ``"a character device"``...; ``None`` for a regular file or nothing at all.

    Symbolic links are followed; nothing is opened (opening a named pipe would block).

    Example:
        >>> file_kind("/dev/null")
        'a character device'
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def output_target(path: str | Path) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or the file its symbolic links
    lead to (which may not exist yet).

    Raises:
        IsADirectoryError: the target is a directory.
        ValueError: the target is a device, a named pipe or a socket: sepconv writes only
            regular files.
    """
    target = Path(os.path.realpath(path))
    kind = file_kind(target)
    if kind == "a directory":
        raise IsADirectoryError(
            errno.EISDIR, "Is a directory; give the path of a file to write", str(path)
        )
    if kind is not None:
        raise ValueError(
            f"Cannot write {str(path)!r}: it is {kind}, not a regular file; sepconv writes only "
            "regular files (give the path of a file)."
        )
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file (hard and symbolic links included), whether
    or not it exists yet."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temporary_prefix(target: Path, pid: int | None) -> str:
    """How the temporary files of :func:`write_atomic` for ``target`` in process ``pid`` begin:
    ``.<name>.sepconv-tmp.<host>.<pid>.`` (without ``<pid>.`` for ``None``: any process)."""
    # The target's name is shortened so that the temporary name stays within NAME_MAX.
    start = f".{target.name[:100]}{TEMP_MARK}{_host()}."
    return start if pid is None else f"{start}{pid}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Remove the temporary files that :func:`write_atomic` left beside ``target`` in a process
    of this machine that no longer runs (killed mid-write); return them.

    The temporaries of running processes, of other machines and every other file are kept.
    """
    target = Path(target)
    start = temporary_prefix(target, None)
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(start):
            continue
        pid = name[len(start) :].partition(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale = target.parent / name
            try:
                stale.unlink()
            except OSError:
                continue
            removed.append(stale)
    return removed


def io_error(err: BaseException, path: str | os.PathLike[str]) -> OSError:
    """An ``OSError`` naming ``path`` with the reason ``err`` gives (no space left, read-only
    file system, permission denied...), whichever library raised it.

    Its ``errno`` is ``err``'s (read from the message of a Rust ``io::Error``, as safetensors
    raises it; ``EIO`` when unknown) and its ``filename`` is ``path``: the command line prints
    ``"<reason>: <path>"``.
    """
    code = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None)
    if not isinstance(code, int):
        found = re.search(r"\bcode: (\d+)", str(err))
        code = int(found[1]) if found else None
    if not reason:
        reason = os.strerror(code) if code is not None else str(err) or type(err).__name__
    return OSError(errno.EIO if code is None else code, reason, str(path))


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX and Windows, so readers see the old file or the new one, and a
    failure in ``write`` removes the temporary file and leaves ``path`` untouched. A symbolic
    link at ``path`` is followed: its target is replaced and the link kept. Temporaries that a
    killed process left beside ``path`` are removed first (:func:`remove_stale_temporaries`).

    Args:
        path: Destination: a regular file, a path to create (its directory must exist), or a
            symbolic link to one of those.
        write: Writes the content to the path it receives (keeps ``path``'s suffix, so format
            detection such as matplotlib's still works).

    Returns:
        ``path``.

    Raises:
        FileNotFoundError: the directory does not exist.
        IsADirectoryError, ValueError: ``path`` is a directory or a special file
            (:func:`output_target`).
        OSError: the file system refused the write (full, read-only, permissions): the error
            names ``path`` and the reason, whatever library raised it.
    """
    given = Path(path)
    target = output_target(given)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {str(given)!r}: directory {str(target.parent)!r} does not exist; "
            "create it first."
        )
    remove_stale_temporaries(target)
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=temporary_prefix(target, os.getpid()), suffix=target.suffix
        )
    except OSError as err:
        raise io_error(err, given) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates owner-only files; give the result the mode a plain open() would.
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        tmp.chmod(mode)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise io_error(err, given) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return given


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8), atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_writable(
    path: str | Path,
    name: str,
    *,
    is_dir: bool = False,
    inputs: Mapping[str, str | Path | None] | None = None,
) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a ``Path``.

    A file path needs an existing, writable parent directory and must be a regular file or not
    exist yet (a symbolic link is judged by its target); a directory path (``is_dir=True``)
    must be a directory or creatable under a writable existing ancestor. Raises ``ValueError``
    naming the argument ``name``, so a long run never ends by failing to save its result.

    Args:
        path: The output.
        name: The argument (or flag) that gave it.
        is_dir: Whether ``path`` is a folder to write files into.
        inputs: The files the same call reads, by argument (``{"--weights": path}``; ``None``
            values are skipped): the output may be none of them, or the work would destroy its
            own input.
    """
    target = Path(path)
    resolved = Path(os.path.realpath(target))
    kind = file_kind(resolved)
    for other_name, other in (inputs or {}).items():
        if other is not None and same_file(other, target):
            raise invalid(
                name,
                f"a path other than that of `{other_name}` (which it would replace)",
                str(target),
            )
    if is_dir:
        if kind not in (None, "a directory") or (kind is None and resolved.exists()):
            raise invalid(name, f"a directory (this path is {kind or 'a file'})", str(target))
        probe = resolved
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise invalid(
                name, f"a directory that can be created ({str(probe)!r} is a file)", str(target)
            )
    else:
        if kind == "a directory":
            raise invalid(name, "a file path (this path is a directory)", str(target))
        if kind is not None:
            raise invalid(name, f"the path of a regular file (this path is {kind})", str(target))
        probe = resolved.parent
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


def existing_file(path: str | Path, name: str, suffixes: Sequence[str] = ()) -> Path:
    """Return ``path`` if it is an existing regular file, else raise naming ``name``.

    The message says what is there instead (nothing, a directory, a named pipe...) and which
    files of the folder could be meant (:func:`nearby_files`).

    Raises:
        ValueError: ``path`` is not a regular file.
    """
    file = Path(path)
    if file.is_file():
        return file
    raise invalid(name, "an existing file", str(file), note=missing_note(file, suffixes))


def nearby_files(path: str | Path, suffixes: Sequence[str] = ()) -> list[str]:
    """The files (with one of ``suffixes``, or any) in the folder ``path`` names, or beside
    ``path`` when it is not a folder: what a user who typed ``path`` may have meant."""
    where = Path(path)
    folder = where if where.is_dir() else where.parent
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        str(entry)
        for entry in entries
        if not entry.name.startswith(".")
        and (not suffixes or entry.suffix in suffixes)
        and entry.is_file()
    ][:5]


def missing_note(path: str | Path, suffixes: Sequence[str] = ()) -> str:
    """Text to follow the name of a file that is not there: ``" (no such file; did you mean
    'runs/x/last.safetensors'?)"``, ``" (a directory holding 'a', 'b')"``..."""
    kind = file_kind(path)
    nearby = nearby_files(path, suffixes)
    meant = ", ".join(repr(f) for f in nearby)
    if kind == "a directory":
        return f" (a directory, holding {meant})" if nearby else " (a directory)"
    what = f"{kind}, not a regular file" if kind is not None else "no such file"
    if not Path(path).parent.is_dir() and kind is None:
        what = f"no such file: {str(Path(path).parent)!r} is not a directory"
    return f" ({what}; did you mean {meant}?)" if nearby else f" ({what})"
