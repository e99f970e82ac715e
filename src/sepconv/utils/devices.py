"""The device a user asks for, checked to exist before any work."""

from __future__ import annotations

import torch

from sepconv.utils.validation import invalid


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """Return ``device`` as a ``torch.device`` if this machine has it, else raise naming ``name``.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise invalid(name, "a device such as 'cpu', 'cuda' or 'cuda:0'", device) from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise invalid(name, "a device this machine has (no CUDA GPU here; use 'cpu')", device)
        count = torch.cuda.device_count()
        if (resolved.index or 0) >= count:
            raise invalid(name, f"a CUDA device index below {count}", device)
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise invalid(
                name, "a device this machine has (MPS is not available; use 'cpu')", device
            )
    elif resolved.type != "cpu":
        raise invalid(name, "'cpu', 'cuda' or 'cuda:N'", device)
    return resolved
