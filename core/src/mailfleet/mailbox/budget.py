"""The per-message time budget: no single message may hold up the bounce mailbox.

The parser is pure-Python CPU work, so a thread cannot be interrupted and a signal is not
delivered while a regex runs in C. The production parse (``Plugins.parse_bounce``) therefore
runs in a worker process, forked from the reader so it holds the very same plugins (a host's
own parse hooks included). The reader sends it one message at a time over a pipe and waits at
most ``budget`` seconds for the report. When the budget is spent, or the worker dies, the
worker is killed (SIGKILL), the message is set aside with the reason, and a fresh worker is
forked for the next message. The worker's address space is capped too
(:data:`WORKER_MEMORY`). A message can therefore cost at most ``budget`` seconds and never the
reader's memory: whatever it did to the worker goes with the worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from mailfleet.bounces.report import BounceReport

PARSE_BUDGET = 10.0
"""Seconds one message may take to parse (a report takes milliseconds)."""

WORKER_MEMORY = 1 << 30
"""Address space the worker may add to what it inherited (RLIMIT_AS, where the system has
it): a message that makes the parser allocate more gets a MemoryError in the worker, never
the machine's memory."""


class SetAside(Exception):
    """Raised by a message handler: leave this message aside (flagged, not processed)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@attrs.frozen
class SetAsideMessage:
    """A message the reader set aside: its id in the mailbox (UID or UIDL) and why."""

    id: str
    reason: str


class ParseWorker:
    """Runs ``parse`` in a forked worker process, each call within ``budget`` seconds."""

    def __init__(self, parse: Callable[[bytes], BounceReport],
                 budget: float = PARSE_BUDGET) -> None:
        if not budget > 0:
            raise ValueError("the parse budget must be a positive number of seconds")
        self.parse_function = parse
        self.budget = budget
        self._context = multiprocessing.get_context("fork")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def parse(self, raw: bytes) -> BounceReport:
        """The report for ``raw``; :class:`SetAside` when the budget is spent or the worker
        died on this message."""
        conn = self._connection()
        try:
            conn.send_bytes(raw)
        except OSError:  # the idle worker is gone (killed from outside): start another
            self.close()
            conn = self._connection()
            conn.send_bytes(raw)
        if not conn.poll(self.budget):
            self.close()
            raise SetAside(f"parsing took longer than {self.budget:g} s; the parser was "
                           f"stopped")
        try:
            status, value = conn.recv()
        except (EOFError, OSError):
            code = None
            if self._process is not None:
                self._process.join(1)
                code = self._process.exitcode
            self.close()
            raise SetAside(f"the parser process died on this message (exit code {code})"
                           ) from None
        if status != "ok":
            raise SetAside(f"the parser failed: {value}")
        assert isinstance(value, BounceReport)
        return value

    def close(self) -> None:
        """Stop the worker (if any); the next :meth:`parse` starts a new one."""
        process, conn, self._process, self._conn = self._process, self._conn, None, None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5)

    def _connection(self) -> Connection:
        if self._conn is None:
            ours, theirs = self._context.Pipe()
            process = self._context.Process(target=_serve, args=(theirs, self.parse_function),
                                            name="mailfleet-bounce-parser", daemon=True)
            process.start()
            theirs.close()
            self._process, self._conn = process, ours
        return self._conn

    def __enter__(self) -> ParseWorker:
        self._connection()  # forked now, before the reader opens its connection
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _limit_memory() -> None:
    """Cap the worker's address space at what it has now plus :data:`WORKER_MEMORY`
    (Linux: the size is read from /proc; elsewhere the worker runs without the cap)."""
    with contextlib.suppress(OSError, ValueError):
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        limit = pages * os.sysconf("SC_PAGE_SIZE") + WORKER_MEMORY
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _serve(conn: Connection, parse: Callable[[bytes], BounceReport]) -> None:
    """The worker's loop: one message in, one ``(status, report or reason)`` out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reader's to handle
    _limit_memory()
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):  # the reader closed the pipe
            return
        result: tuple[str, Any]
        try:
            result = ("ok", parse(raw))
        except BaseException as exc:  # reported to the reader, never raised here
            result = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(result)
