"""Small shared helpers: free ports, readiness probes, process-group teardown."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

LOCALHOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """A server binary (or the privileges it needs) is missing on this machine."""


class PrivateServer:
    """A test server living in a private directory; ``with Server(...) as s:`` starts it and
    stops it. Subclasses set ``_directory`` in ``start`` and implement ``start``/``stop``."""

    _directory: Path | None = None

    @property
    def directory(self) -> Path:
        """The instance's private directory (created by :meth:`start`)."""
        if self._directory is None:
            raise RuntimeError("server not started")
        return self._directory

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def servers_required() -> bool:
    """True when a missing server must fail: ``CI=true`` or ``MAILFLEET_SERVERS_REQUIRED=1``."""
    yes = {"true", "1", "yes"}
    ci = os.environ.get("CI", "").strip().lower() in yes
    required = os.environ.get("MAILFLEET_SERVERS_REQUIRED", "").strip().lower() in yes
    return ci or required


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (bind to port 0; a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (sockets stay open until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOCALHOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = LOCALHOST) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_for_ports(
    ports: list[int],
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    what: str = "server",
    log_file: Path | None = None,
) -> None:
    """Block until every port accepts connections; else RuntimeError with the log tail."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if port_open(pending[0]):
            pending.pop(0)
            continue
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{log_tail(log_file)}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} did not listen on {pending} in {timeout}s{log_tail(log_file)}")
        time.sleep(0.01)


def log_tail(path: Path | None, lines: int = 30) -> str:
    """Last lines of a log file, formatted for an error message ('' if unreadable)."""
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- " + str(path) + " ---\n" + "\n".join(text)


def make_server_dir(prefix: str) -> Path:
    """A fresh temp dir with mode 0755, so unprivileged daemon users can traverse it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def is_root() -> bool:
    """True when running as uid 0."""
    return os.geteuid() == 0


def user_ids(name: str) -> tuple[int, int] | None:
    """(uid, gid) of a system user, or None if it does not exist."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def find_binary(name: str, *extra_dirs: str) -> str | None:
    """Locate an executable on PATH, /usr/sbin, /usr/local/sbin or the given dirs."""
    dirs = [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", *extra_dirs]
    search = os.pathsep.join(dirs)
    return shutil.which(name, path=search)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group led by ``pid`` (falls back to the process alone)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def remove_tree(path: Path) -> None:
    """Remove a directory tree, ignoring errors (teardown helper)."""
    shutil.rmtree(path, ignore_errors=True)
