"""Dispatcher leases, the same for every store: when a dispatcher counts as dead, and what a
letter it left inside DATA is told."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

#: A dispatcher on another host that has not renewed its lease for this long is dead.
LEASE_SECONDS = 600.0
HELD_IN_DATA = ("the sending process stopped while this letter was in DATA; held for review "
                "(it may have been delivered)")


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_dispatchers(rows: Iterable[Iterable[Any]], host: str, now: float,
                     lease: float = LEASE_SECONDS) -> list[str]:
    """The ids among ``(id, host, pid, seen_at)`` rows whose dispatcher is gone: on this host
    its process has ended; on another host its lease ran out."""
    dead = []
    for did, their_host, pid, seen in rows:
        if their_host == host:
            if not pid_alive(int(pid)):
                dead.append(str(did))
        elif seen < now - lease:
            dead.append(str(did))
    return dead
