"""Postfix ``smtp-sink`` (a very fast plain-SMTP sink for benchmarks) and ``smtp-source``.

``smtp-sink`` has no STARTTLS/SMTPS, and answers AUTH with ``250`` (so ``smtplib.login()`` raises):
it runs with ``-a`` (no AUTH advertised) by default. Fault flags (``-r``/``-f``/``-Q``/``-W``...)
can be passed through ``extra_args``.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mailfleet_testing._util import (
    LOCALHOST,
    ServerUnavailable,
    find_binary,
    free_port,
    is_root,
    kill_group,
    make_server_dir,
    remove_tree,
    user_ids,
    wait_for_ports,
)

__all__ = ["SmtpSink", "SourceResult", "run_smtp_source"]

_LETTER_ID = re.compile(rb"X-Mailfleet-Letter-Id: (\S+)")


class SmtpSink:
    """``smtp-sink -a [-u nobody] [extra_args] 127.0.0.1:PORT backlog`` in its own session."""

    host = LOCALHOST

    def __init__(self, extra_args: list[str] | None = None, backlog: int = 256,
                 start_timeout: float = 10.0, *, dump: bool = False) -> None:
        self.extra_args = list(extra_args or [])
        self.dump = dump
        self.backlog = backlog
        self.start_timeout = start_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None

    @property
    def log_file(self) -> Path | None:
        """smtp-sink's stdout/stderr."""
        return self.directory / "smtp-sink.log" if self.directory else None

    def start(self) -> SmtpSink:
        """Start on a free port and wait until it accepts connections."""
        binary = find_binary("smtp-sink")
        if binary is None:
            raise ServerUnavailable("smtp-sink not installed (package postfix, see "
                                    "tests/infra/ci_install.sh)")
        self.directory = make_server_dir("mailfleet-smtp-sink-")
        self.port = free_port()
        cmd = [binary, "-a"]
        if is_root():
            cmd += ["-u", "nobody" if user_ids("nobody") else "postfix"]
        if self.dump:  # one file per message, for counting what arrived (-d)
            (self.directory / "dump").mkdir(mode=0o777)
            (self.directory / "dump").chmod(0o777)
            cmd += ["-d", str(self.directory / "dump" / "%H%M/")]
        cmd += [*self.extra_args, f"{LOCALHOST}:{self.port}", str(self.backlog)]
        assert self.log_file is not None
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, cwd=self.directory)
        try:
            wait_for_ports([self.port], self.start_timeout, self.proc, "smtp-sink", self.log_file)
        except RuntimeError:
            self.stop()
            raise
        return self

    def dumped(self) -> Counter[str]:
        """With ``dump``: the copies of each ``X-Mailfleet-Letter-Id`` the sink received."""
        assert self.directory is not None and self.dump
        found: Counter[str] = Counter()
        for path in (self.directory / "dump").rglob("*"):
            if path.is_file():
                match = _LETTER_ID.search(path.read_bytes())
                found[match.group(1).decode() if match else ""] += 1
        return found

    def stop(self) -> None:
        """Kill the sink and remove its directory."""
        if self.proc is not None:
            kill_group(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc = None
        if self.directory is not None:
            remove_tree(self.directory)
            self.directory = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class SourceResult:
    """Outcome of one ``smtp-source`` run."""

    returncode: int
    seconds: float
    messages: int
    output: str

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def run_smtp_source(port: int, messages: int = 100, sessions: int = 4, size: int = 1024,
                    sender: str = "bench@test.local", recipient: str = "sink@example.com",
                    recipients_per_message: int = 1, extra_args: list[str] | None = None,
                    timeout: float = 120.0) -> SourceResult:
    """Send ``messages`` with ``smtp-source`` over ``sessions`` parallel sessions to 127.0.0.1."""
    binary = find_binary("smtp-source")
    if binary is None:
        raise ServerUnavailable("smtp-source not installed (package postfix)")
    cmd = [binary, "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", sender, "-t", recipient, "-r", str(recipients_per_message),
           *(extra_args or []), f"{LOCALHOST}:{port}"]
    start = time.monotonic()
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                         timeout=timeout)
    elapsed = time.monotonic() - start
    out = (res.stdout + res.stderr).decode(errors="replace")
    return SourceResult(res.returncode, elapsed, messages, out)
