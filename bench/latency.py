"""Send rate over a 20 ms round trip: mailfleet over DATA, over CHUNKING, and smtp-source.

A delaying TCP proxy of this script's own (asyncio, in a child process; 10 ms each way, so a
20 ms round trip, on 127.0.0.1) stands in front of a private Postfix ``smtpd`` (3.4+ offers
CHUNKING; it discards what it accepts, so the run measures the wire, not delivery). Through the
same proxy, with the same number of sessions, in one run: the full mailfleet path (store,
quota, dispatcher, SMTP client) over DATA with PIPELINING, then over CHUNKING (``BDAT n
LAST``, a batch per write), then ``smtp-source -d`` (which waits for every reply). Not a test.

    .venv/bin/python bench/latency.py [--letters 2000] [--sessions 16] [--delay 0.010]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailfleet.config import parse_config
from mailfleet.mailings.mailing import create_mailing
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.smtp import client as smtp_client
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing._util import make_server_dir, remove_tree
from mailfleet_testing.certs import make_certs
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.smtp_sink import run_smtp_source

sys.path.insert(0, str(Path(__file__).parent))
from send_rate import TEMPLATE  # the same ~5.3 KB letter


class DiscardingPostfix(PostfixServer):
    """The test Postfix, accepting every letter and discarding it (no relay, no bounce)."""

    def _write_config(self) -> None:
        super()._write_config()
        main = self.config_dir / "main.cf"
        with main.open("a") as out:
            out.write("default_transport = discard\nsmtpd_client_connection_count_limit = 0\n"
                      "smtpd_client_message_rate_limit = 0\n")
        past = time.time() - 10
        os.utime(main, (past, past))


# -- the proxy (a child process, so its work is not on the sender's CPU) ---------------------
async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    """Forward what ``reader`` gives to ``writer``, each chunk ``delay`` seconds later."""
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    arrived = asyncio.Event()
    done = False

    async def forward() -> None:
        while True:
            while not queue:
                if done:
                    writer.close()
                    return
                arrived.clear()
                await arrived.wait()
            at, chunk = queue.popleft()
            if (wait := at - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    task = asyncio.ensure_future(forward())
    try:
        while chunk := await reader.read(256 * 1024):
            queue.append((loop.time() + delay, chunk))
            arrived.set()
    except OSError:
        pass
    done = True
    arrived.set()
    with contextlib.suppress(OSError):
        await task


async def _proxy(upstream: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def start_proxy(upstream: int, delay: float) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen([sys.executable, __file__, "--proxy-child", str(upstream),
                              "--delay", str(delay)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, int(child.stdout.readline())


# -- the runs ----------------------------------------------------------------------------------
def mailfleet_rate(port: int, letters: int, sessions: int, batch: int, chunking: bool
                   ) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "latency.db"
        store = SqliteStore(db)
        rows = ({"email": f"user{i}@example.org", "name": f"User {i}", "account": f"A-{i:07d}"}
                for i in range(letters))
        create_mailing(store, TEMPLATE, rows)
        config = parse_config({"deployment": {"store": str(db)}, "servers": [{
            "name": "postfix", "sender": "news@example.com", "host": "127.0.0.1",
            "port": port, "security": "none", "auth": "none", "connections": sessions,
            "limits": {"per_hour": 10_000_000, "per_day": 100_000_000}}]})
        # the client's own memory of servers that refuse BDAT: here, DATA on purpose
        smtp_client._NO_CHUNKING.clear()
        if not chunking:
            smtp_client._NO_CHUNKING.add(("127.0.0.1", port))
        dispatcher = Dispatcher(Fleet(config, load_plugins(entry_points=False)), store,
                                batch_size=batch)
        start = time.perf_counter()
        report = dispatcher.run(until_idle=True)
        elapsed = time.perf_counter() - start
        store.close()
        assert report.sent == letters, report
        return letters / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.010, help="seconds each way")
    parser.add_argument("--proxy-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy_child:
        asyncio.run(_proxy(args.proxy_child, args.delay))
        return
    directory = make_server_dir("mailfleet-latency-")
    try:
        certs = make_certs(directory)
        with DiscardingPostfix(certs.trusted, None) as postfix:
            proxy, port = start_proxy(postfix.port, args.delay)
            try:
                data = mailfleet_rate(port, args.letters, args.sessions, args.batch, False)
                chunked = mailfleet_rate(port, args.letters, args.sessions, args.batch, True)
                source = run_smtp_source(port, messages=args.letters, sessions=args.sessions,
                                         size=5000, extra_args=["-d"], timeout=600)
            finally:
                proxy.kill()
                proxy.wait()
    finally:
        remove_tree(directory)
    print(f"through a {args.delay * 2000:.0f} ms round trip into Postfix smtpd, "
          f"{args.letters} letters of ~5.3 KB, {args.sessions} sessions, batch {args.batch}")
    print(f"mailfleet over DATA:     {data:,.0f} letters/s ({data / source.rate:.2f} x "
          f"smtp-source)")
    print(f"mailfleet over CHUNKING: {chunked:,.0f} letters/s ({chunked / source.rate:.2f} x "
          f"smtp-source, {chunked / data:.2f} x DATA)")
    print(f"smtp-source -d -s {args.sessions} -l 5000: {source.rate:,.0f} letters/s "
          f"(rc {source.returncode})")


if __name__ == "__main__":
    main()
