"""Fault injection for the mailing engine: ``kill -9`` of real ``mailfleet mailing run``
processes in a loop, and the figures that say whether delivery held.

Used by the test suite (a few dozen kills) and by ``bench/chaos.py`` (``make chaos``: 100
kills in a 3,000-letter mailing). Every figure is counted on the server side, from the
``X-Mailfleet-Letter-Id`` header of each message a FakeSMTP server kept:

- ``lost``: letters of the mailing no server has (must be 0);
- ``duplicates``: copies beyond the first; at most ``in_data_at_kills``, the letters the store
  had marked as inside DATA right after each kill (one per connection at most);
- ``failed``: letters marked failed (the servers here never refuse: must be 0);
- ``quota_used`` against ``copies``: every charge belongs to a letter a server was handed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mailfleet.plugins.providers import Limits
from mailfleet.store.base import Store
from mailfleet_testing.smtpd import FakeSMTP

__all__ = ["KillReport", "copies", "kill_loop", "mailfleet_command", "quota_used",
           "write_config"]

_LETTER_ID = re.compile(rb"X-Mailfleet-Letter-Id: (\S+)")


@attrs.frozen
class KillReport:
    """What a kill loop did and what the servers got (see the module docstring)."""

    letters: int
    kills: int
    in_data_at_kills: int
    lost: int
    duplicates: int
    most_copies: int
    failed: int
    quota_used: int
    copies: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def mailfleet_command() -> list[str]:
    """The installed ``mailfleet`` console script of this interpreter's environment."""
    return [str(Path(sys.executable).parent / "mailfleet")]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def write_config(path: Path, store: str, servers: Sequence[Mapping[str, Any]], *,
                 deployment: Mapping[str, Any] | None = None,
                 retry: Mapping[str, Any] | None = None) -> Path:
    """A config file for the child processes: ``store``, ``servers`` and extra tables."""
    lines = ["[deployment]", f"store = {_toml(store)}"]
    lines += [f"{k} = {_toml(v)}" for k, v in (deployment or {}).items()]
    if retry:
        lines += ["", "[retry]"] + [f"{k} = {_toml(v)}" for k, v in retry.items()]
    for server in servers:
        lines += ["", "[[servers]]"] + [f"{k} = {_toml(v)}" for k, v in server.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def copies(smtps: Sequence[FakeSMTP]) -> Counter[str]:
    """Copies of each letter id kept by the servers."""
    found: Counter[str] = Counter()
    for smtp in smtps:
        for message in smtp.messages:
            match = _LETTER_ID.search(message.data)
            if match is not None:
                found[match.group(1).decode()] += 1
    return found


def quota_used(store: Store, servers: Sequence[str], now: float | None = None) -> int:
    """Charges in the store's ledger over the last day, for every server named."""
    at = (time.time() if now is None else now) + 1
    return sum(store.quota(name, Limits(), at).day.used for name in servers)


def _delivered(smtps: Sequence[FakeSMTP]) -> int:
    return sum(len(s.messages) for s in smtps)


def start_run(config: Path, mailing_id: str) -> subprocess.Popen[bytes]:
    """A ``mailfleet mailing run ID`` process (output discarded)."""
    return subprocess.Popen([*mailfleet_command(), "--config", str(config), "mailing", "run",
                             mailing_id], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def kill_loop(config: Path, store: Store, mailing_id: str, smtps: Sequence[FakeSMTP],
              servers: Sequence[str], *, kills: int, letters: int,
              rng: random.Random | None = None, most_between: int = 20,
              timeout: float = 120.0) -> KillReport:
    """Start ``mailing run``, let it deliver a random 1..``most_between`` letters, SIGKILL it,
    count the letters the store had inside DATA; ``kills`` times (fewer if the mailing ends
    first). Then one last run finishes the mailing, and the servers' copies are counted."""
    rng = rng or random.Random(8)
    start = time.monotonic()
    done = in_data = 0
    while done < kills:
        target = _delivered(smtps) + rng.randint(1, most_between)
        child = start_run(config, mailing_id)
        deadline = time.monotonic() + timeout
        try:
            while _delivered(smtps) < target and child.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kill {done + 1}: nothing sent in {timeout:g} s")
                time.sleep(0.002)
            if child.poll() is not None:  # the mailing ended before this kill
                break
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        done += 1
        in_data += store.counts(mailing_id).get("sending", 0)
    final = start_run(config, mailing_id)
    _, err = final.communicate(timeout=timeout * 5)
    if final.returncode != 0:
        raise RuntimeError(f"the last run failed ({final.returncode}): {err.decode()[-2000:]}")
    kept = copies(smtps)
    counts = store.counts(mailing_id)
    ids = {f"{mailing_id}-{i}" for i in range(1, letters + 1)}
    return KillReport(
        letters=letters, kills=done, in_data_at_kills=in_data,
        lost=len(ids - set(kept)), duplicates=sum(kept.values()) - len(set(kept)),
        most_copies=max(kept.values(), default=0), failed=counts.get("failed", 0),
        quota_used=quota_used(store, servers), copies=sum(kept.values()),
        seconds=round(time.monotonic() - start, 1))
