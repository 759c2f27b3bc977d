"""Dispatcher leases, the same for every store: when a dispatcher counts as dead, and what a
letter it left inside DATA is told."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

#: A dispatcher on another host that has not renewed its lease for this long is dead
#: (``deployment.lease_seconds``; a dispatcher renews it every third of that).
LEASE_SECONDS = 15.0
HELD_IN_DATA = ("the sending process stopped while this letter was in DATA; held for review "
                "(it may have been delivered)")
RESENT_IN_DATA = ("the sending process stopped while this letter was in DATA; sending again "
                  "with the same Message-ID")


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def takeback_at(host: str, pid: int, seen_at: float, here: str, lease: float,
                now: float) -> tuple[bool | None, float | None]:
    """Whether a dispatcher lives (``None``: another host, its lease decides) and when its
    letters are taken back (``None``: not while it lives)."""
    if host == here:
        alive = pid_alive(pid)
        return alive, (None if alive else now)
    return None, max(now, seen_at + lease)


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
