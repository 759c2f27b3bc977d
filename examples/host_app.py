"""A host application embedding mailfleet: only the public ``mailfleet`` API is used.

It builds its fleet from Python data (as a CRM would from its own database) with the
password handed over directly, creates a mailing of 10 letters from Python rows, and sends
them inside its own asyncio loop, next to a task of its own, while it reads the delivery
events as an async iterator. At the end it prints one JSON line::

    {"sent": 10, "failed": 0, "waiting": 0, "events": 10, ...}

    python examples/host_app.py --smtp 127.0.0.1:2525   # through that server (plain SMTP)
    python examples/host_app.py                         # through its own loopback server

Without ``--smtp`` it starts a loopback SMTP server (aiosmtpd, a dev dependency) that asks
for the login and the password the host handed over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mailfleet

LOGIN = "crm@example.com"
PASSWORD = "from-the-crm-database"  # noqa: S105  (a CRM reads it from its secret store)


def fleet_data(host: str, port: int, store: Path, *, login: str | None) -> dict[str, Any]:
    """The fleet as the CRM keeps it: the keys of mailfleet.toml, as Python data."""
    server: dict[str, Any] = {"name": "relay", "kind": "internal", "sender": LOGIN,
                              "host": host, "port": port, "security": "none",
                              "timeout": 10.0, "connections": 2}
    if login is not None:  # the loopback server asks for AUTH (plain text on loopback)
        server |= {"login": login, "allow_insecure_auth": True}
    return {"deployment": {"store": str(store)}, "servers": [server]}


def customers() -> Iterator[dict[str, str]]:
    """The CRM's rows, produced one at a time (the mailing never holds them all)."""
    for i in range(1, 11):
        yield {"email": f"customer{i}@example.net", "name": f"Customer {i}"}


TEMPLATE = {"subject": "Your October news, {{ name }}",
            "text": "Dear {{ name }},\n\nhere is what is new this month.\n",
            "sender": LOGIN, "sender_name": "Example CRM"}


async def other_work(stop: asyncio.Event) -> int:
    """The host's own task, running in the same loop while mailfleet sends."""
    ticks = 0
    while not stop.is_set():
        ticks += 1
        await asyncio.sleep(0.01)
    return ticks


async def main(host: str, port: int, store: Path, login: str | None) -> dict[str, Any]:
    seen: list[str] = []
    app = mailfleet.Mailfleet.from_data(
        fleet_data(host, port, store, login=login), source="crm",
        passwords={"relay": PASSWORD}, on_event=lambda event: seen.append(str(event.type)))
    with app:
        created = app.create_mailing(TEMPLATE, customers(), name="october news")
        stream = app.events()

        async def read_events() -> Counter[str]:
            kinds: Counter[str] = Counter()
            async for event in stream:
                kinds[str(event.type)] += 1
            return kinds

        stop = asyncio.Event()
        reader = asyncio.create_task(read_events())
        ticker = asyncio.create_task(other_work(stop))
        report = await app.send([created.id])
        stop.set()
        stream.close()
        kinds, ticks = await reader, await ticker
        status = app.status(created.id)
        return {"sent": report.sent, "failed": report.failed, "waiting": report.waiting,
                "events": sum(kinds.values()), "event_types": dict(kinds),
                "callback_events": len(seen), "mailing": created.id,
                "state": status.state, "delivered": status.counts.sent,
                "other_task_ticks": ticks, "api": mailfleet.API_VERSION}


def loopback_server(login: str, password: str) -> tuple[Any, int]:
    """A loopback SMTP server asking for ``login`` and ``password`` (aiosmtpd)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # its plain-text AUTH warning
    warnings.filterwarnings("ignore", module="aiosmtpd")

    class Accept:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    def check(server: Any, session: Any, envelope: Any, mechanism: str,
              data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            login.encode(), password.encode())
        return AuthResult(success=ok)

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(Accept(), hostname="127.0.0.1", port=port, authenticator=check,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    return controller, port


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smtp", metavar="HOST:PORT",
                        help="send through this plain SMTP server (no AUTH)")
    args = parser.parse_args()
    controller = None
    if args.smtp:
        host, _, port_text = args.smtp.rpartition(":")
        if not host or not port_text.isdigit():
            parser.error("--smtp takes HOST:PORT, such as 127.0.0.1:2525")
        port, login = int(port_text), None
    else:
        controller, port = loopback_server(LOGIN, PASSWORD)
        host, login = "127.0.0.1", LOGIN
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(main(host, port, Path(tmp) / "crm-mail.db", login))
    except mailfleet.MailfleetError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    finally:
        if controller is not None:
            controller.stop()
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["sent"] == 10 else 1


if __name__ == "__main__":
    sys.exit(cli())
