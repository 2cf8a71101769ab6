"""`PR_SET_PDEATHSIG`: a child told to die when the thread that forked it does."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl  # type: ignore[no-any-return]


_PRCTL = _prctl()


def die_with_parent(sig: int, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A pre-exec function: `sig` to the child when the thread that forks it
    ends (its process dying included), then `then`. It makes only system
    calls on values prepared here (see `engine.limits` on why that is safe
    between fork and exec)."""
    parent = os.getpid()
    prctl, getppid, exit_now = _PRCTL, os.getppid, os._exit

    def apply() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if getppid() != parent:
                exit_now(128 + sig)  # the parent died while we forked
        if then is not None:
            then()

    return apply
