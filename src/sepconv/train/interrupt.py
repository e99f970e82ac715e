"""Ctrl-C between two training steps: the run stops on a whole step, its files saved."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupt_between_steps(*, enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """Within the block, a first SIGINT (Ctrl-C) only asks the loop to stop; yield the
    function that says whether it was asked. A second SIGINT raises ``KeyboardInterrupt`` at
    once. The previous handler is restored on exit.

    Off (nothing asked, ever) when ``enabled`` is false, outside the main thread (where Python
    cannot set a handler) or under another handler than Python's default: a distributed run,
    whose ranks must stop together, or an embedding program keep their own handling.

    Example:
        >>> with interrupt_between_steps() as interrupted:
        ...     interrupted()
        False
    """
    asked = threading.Event()
    usable = (
        enabled
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if not usable:
        yield asked.is_set
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print(
            "\ninterrupted: stopping after this step and saving the run (Ctrl-C again to stop "
            "at once, unsaved)",
            file=sys.stderr,
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
