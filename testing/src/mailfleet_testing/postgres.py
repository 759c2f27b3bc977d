"""A private PostgreSQL (``initdb`` + ``pg_ctl`` in a temp dir, fsync off) on 127.0.0.1.

As root everything runs as the ``postgres`` user (initdb refuses root); otherwise as the current
user. Auth is ``trust``; the superuser is ``postgres``. DSNs look like
``postgresql://postgres@127.0.0.1:PORT/DB``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from pathlib import Path

from mailfleet_testing._util import (
    LOCALHOST,
    PrivateServer,
    ServerUnavailable,
    free_port,
    is_root,
    log_tail,
    make_server_dir,
    remove_tree,
    user_ids,
)

__all__ = ["PostgresServer", "find_pg_bindir"]

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_pg_bindir() -> Path | None:
    """Directory with initdb/pg_ctl/psql: newest /usr/lib/postgresql/N/bin, else ``pg_config``."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0)
    if candidates:
        return candidates[-1].parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


class PostgresServer(PrivateServer):
    """A throwaway cluster; :meth:`create_database` / :meth:`drop_database` per test."""

    host = LOCALHOST
    user = "postgres"

    def __init__(self, directory: Path | None = None) -> None:
        self._own_dir = directory is None
        self._directory = directory  # created by start() when None
        self.port = 0
        self.bindir: Path | None = None
        self._started = False

    @property
    def data_dir(self) -> Path:
        """PGDATA."""
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        """Server log."""
        return self.directory / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if is_root():
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _run(self, cmd: list[str], what: str) -> None:
        res = subprocess.run(self._as_owner(cmd), stdin=subprocess.DEVNULL, capture_output=True,
                             check=False, timeout=120, cwd=self.directory)
        if res.returncode != 0:
            out = (res.stdout + res.stderr).decode(errors="replace")
            raise RuntimeError(f"{what} failed (rc={res.returncode}): {out}"
                               f"{log_tail(self.log_file)}")

    def start(self) -> PostgresServer:
        """initdb + pg_ctl start (listen on 127.0.0.1 only, socket in the temp dir)."""
        self.bindir = find_pg_bindir()
        if self.bindir is None:
            raise ServerUnavailable("PostgreSQL server binaries not installed (apt-get install "
                                    "postgresql, see tests/infra/ci_install.sh)")
        if self._directory is None:
            self._directory = make_server_dir("mailfleet-pg-")
        if is_root():
            ids = user_ids("postgres")
            if ids is None:
                remove_tree(self.directory)
                self._directory = None
                raise ServerUnavailable("system user 'postgres' missing")
            os.chown(self.directory, *ids)
        self.port = free_port()
        opts = (f"-c listen_addresses={LOCALHOST} -p {self.port} -k {self.directory} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        try:
            self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                       "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], "initdb")
            self._started = True  # from here on, stop() tries pg_ctl stop
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                       str(self.log_file), "-w", "-t", "60", "start", "-o", opts],
                      "pg_ctl start")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m immediate`` and remove the directory."""
        if self._started and self.bindir is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m",
                           "immediate", "-w", "stop"], "pg_ctl stop")
            self._started = False
        if self._own_dir and self._directory is not None:
            remove_tree(self._directory)
            self._directory = None


    # -- databases -----------------------------------------------------------------------------
    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement in autocommit mode (psycopg if installed, else ``psql``)."""
        try:
            import psycopg
        except ImportError:
            assert self.bindir is not None
            res = subprocess.run(
                [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                 "-d", self.dsn(dbname), "-c", sql],
                stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=60)
            if res.returncode != 0:
                raise RuntimeError(res.stderr.decode(errors="replace")) from None
            return
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str | None = None) -> str:
        """``CREATE DATABASE`` (default name ``t_<hex>``, from template0); returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not _DB_NAME.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        # template0 copies in ~0.03 s; template1 takes ~0.2 s right after initdb.
        self.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS ... WITH (FORCE)`` (closes leftover connections)."""
        if not _DB_NAME.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
