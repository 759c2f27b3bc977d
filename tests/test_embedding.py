"""The embedding API (mailfleet.Mailfleet) and the two examples, against real servers."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_mailing_support as support

import mailfleet
from mailfleet.cli.main import main
from mailfleet.clock import FakeClock
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.dovecot import Mailbox
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.smtp_sink import SmtpSink
from mailfleet_testing.smtpd import FakeSMTP

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
certs = support.certs
servers = support.servers

ROWS = [{"email": f"user{i}@dest.test", "name": f"User {i}"} for i in range(1, 7)]
TEMPLATE = {"subject": "Hello {{ name }}", "text": "Dear {{ name }}\n",
            "sender": "news@example.net"}


def run_example(name: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def data(tmp_path: Path, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"deployment": {"store": str(tmp_path / "mf.db")}, "servers": list(entries),
            "retry": {"connect_attempts": 1}}


def entry(name: str, smtp: FakeSMTP, certs: TLSCerts, **extra: Any) -> dict[str, Any]:
    found = support.server_entry(name, smtp, certs, **extra)
    found.pop("password")
    return found


def states(app: mailfleet.Mailfleet, mailing_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for letter in app.letters(mailing_id):
        out[letter.state] = out.get(letter.state, 0) + 1
    return out


# -- the examples ------------------------------------------------------------------------------
def test_host_app_sends_ten_letters_through_a_plain_smtp_server(smtp_sink: SmtpSink) -> None:
    result = run_example("host_app.py", "--smtp", f"127.0.0.1:{smtp_sink.port}")
    assert result["sent"] == 10 and result["failed"] == 0 and result["waiting"] == 0
    assert result["events"] >= 10 and result["event_types"]["sent"] == 10
    assert result["callback_events"] >= 10 and result["state"] == "done"
    assert result["other_task_ticks"] >= 1  # the host's own task ran in the same loop


def test_host_app_without_smtp_sends_through_its_own_server_with_the_handed_password(
        ) -> None:
    result = run_example("host_app.py")
    assert result["sent"] == 10 and result["events"] >= 10


def test_job_step_example_sends_in_bounded_steps_until_done(smtp_sink: SmtpSink) -> None:
    result = run_example("job_step.py", "--smtp", f"127.0.0.1:{smtp_sink.port}")
    assert result["sent"] == 25 and result["state"] == "done" and result["waiting"] == 0
    assert [s["sent"] for s in result["steps"]] == [10, 10, 5]
    assert [s["stopped"] for s in result["steps"]] == ["letters", "letters", "done"]


@pytest.mark.parametrize("name", ["host_app.py", "job_step.py"])
def test_examples_import_nothing_of_mailfleet_but_its_public_api(name: str) -> None:
    tree = ast.parse((EXAMPLES / name).read_text(encoding="utf-8"))
    allowed = set(sys.stdlib_module_names) | {"mailfleet", "aiosmtpd", "host_app", "__future__"}
    public = set(mailfleet.__all__)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name in allowed, alias.name  # `import mailfleet.x` is refused
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "mailfleet":
                assert {a.name for a in node.names} <= public, module
            assert module.split(".")[0] in allowed, module
            assert not module.startswith("mailfleet."), module
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "mailfleet"):
            assert node.attr in public, f"mailfleet.{node.attr} is not public API"


def test_the_public_api_lists_only_names_it_has() -> None:
    for name in mailfleet.__all__:
        assert getattr(mailfleet, name) is not None


# -- building a fleet -------------------------------------------------------------------------
def test_a_fleet_from_python_data_is_checked_like_the_file(tmp_path: Path) -> None:
    bad = data(tmp_path, {"name": "x", "sender": "a@example.com", "host": "smtp.example.com",
                          "prot": 587})
    with pytest.raises(mailfleet.ConfigError, match=r"crm: servers\[0\]\.prot"):
        mailfleet.Mailfleet.from_data(bad, source="crm")


def test_a_password_for_an_unknown_server_names_the_servers(tmp_path: Path) -> None:
    good = data(tmp_path, {"name": "office", "sender": "a@example.com",
                           "host": "smtp.example.com"})
    with pytest.raises(mailfleet.ConfigError, match=r"no server named 'ofice'.*office"):
        mailfleet.Mailfleet.from_data(good, passwords={"ofice": "pw"})


def test_the_secret_callback_is_asked_at_each_connection(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    asked: list[str] = []

    def secret_store(name: str) -> str:
        asked.append(name)
        return support.PASSWORD

    app = mailfleet.Mailfleet.from_data(data(tmp_path, entry("a", servers[0], certs)),
                                        secrets=secret_store, entry_points=False)
    with app:
        created = app.create_mailing(TEMPLATE, iter(ROWS))
        report = app.send_blocking([created.id])
    assert report.sent == 6 and report.stopped == "done"
    assert asked and set(asked) == {"a"}
    assert support.PASSWORD not in repr(app.fleet.servers[0])


# -- failures stay with the letter ------------------------------------------------------------
def _claimed_or_sending(app: mailfleet.Mailfleet, mailing_id: str) -> int:
    found = states(app, mailing_id)
    return found.get("claimed", 0) + found.get("sending", 0)


@pytest.mark.parametrize("case", ["unset", "store-fails", "ca-file-gone"])
def test_a_configuration_problem_found_while_sending_releases_the_letters_with_a_reason(
        case: str, tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(certs.ca_file).read_bytes())
    events: list[mailfleet.DeliveryEvent] = []

    def secret_store(name: str) -> str | None:
        if case == "store-fails":
            raise KeyError(support.PASSWORD)  # its message must not reach the letter
        return None if case == "unset" else support.PASSWORD

    app = mailfleet.Mailfleet.from_data(
        data(tmp_path, entry("a", servers[0], certs, ca_file=str(ca))),
        secrets=secret_store, on_event=events.append, entry_points=False)
    if case == "ca-file-gone":
        ca.unlink()
    with app:
        created = app.create_mailing(TEMPLATE, iter(ROWS))
        report = app.send_blocking([created.id], until_idle=True)
        letters = list(app.letters(created.id))
    assert report.sent == 0 and report.waiting == 6
    assert {letter.state for letter in letters} == {"queued"}
    expected = {"unset": "no password", "store-fails": "secret store failed",
                "ca-file-gone": "ca_file"}[case]
    assert all(expected in (letter.error or "") for letter in letters)
    assert all(support.PASSWORD not in (letter.error or "") for letter in letters)
    down = [e for e in events if e.type is mailfleet.EventType.SERVER_DOWN]
    assert down and expected in down[0].detail and support.PASSWORD not in down[0].detail


# -- sending ---------------------------------------------------------------------------------
def test_a_step_sends_at_most_its_letters_and_the_next_step_goes_on(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    config = data(tmp_path, entry("a", servers[0], certs, connections=2))
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       entry_points=False) as app:
        app.create_mailing(TEMPLATE, iter(ROWS))
        first = app.step_blocking(max_letters=4)
        assert (first.sent, first.waiting, first.stopped) == (4, 2, "letters")
        assert len(servers[0].messages) == 4
        second = app.step_blocking(max_letters=4)
        assert (second.sent, second.waiting, second.stopped) == (2, 0, "done")


def test_a_step_returns_at_its_time_bound_and_leaves_no_letter_claimed(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    servers[0].add_rule("DATA", "250 2.0.0 ok", delay=0.3)
    config = data(tmp_path, entry("a", servers[0], certs))
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       entry_points=False) as app:
        created = app.create_mailing(TEMPLATE, iter(ROWS))
        report = app.step_blocking(max_seconds=0.5, batch_size=1, grace=5)
        assert report.stopped == "seconds" and 1 <= report.sent < 6
        assert report.waiting == 6 - report.sent
        assert _claimed_or_sending(app, created.id) == 0


def test_cancelling_a_send_inside_the_host_loop_leaves_no_letter_claimed(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    servers[0].add_rule("DATA", "250 2.0.0 ok", delay=0.2)
    config = data(tmp_path, entry("a", servers[0], certs))

    async def host() -> tuple[int, dict[str, int]]:
        with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                           entry_points=False) as app:
            created = app.create_mailing(TEMPLATE, iter(ROWS))
            task = asyncio.create_task(app.send([created.id]))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return _claimed_or_sending(app, created.id), states(app, created.id)

    held, found = asyncio.run(host())
    assert held == 0 and found.get("queued", 0) >= 1
    assert found.get("sent", 0) + found.get("queued", 0) == 6


def test_a_blocking_send_inside_a_running_loop_is_refused(tmp_path: Path) -> None:
    config = data(tmp_path, {"name": "x", "sender": "a@example.com", "host": "127.0.0.1"})

    async def host() -> None:
        with mailfleet.Mailfleet.from_data(config, entry_points=False) as app:
            app.send_blocking()

    with pytest.raises(RuntimeError, match="await send"):
        asyncio.run(host())


def test_a_failing_event_callback_is_logged_and_the_others_still_hear(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        caplog: pytest.LogCaptureFixture) -> None:
    config = data(tmp_path, entry("a", servers[0], certs))
    heard: list[str] = []

    def broken(event: mailfleet.DeliveryEvent) -> None:
        raise ValueError("host bug")

    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       on_event=broken, entry_points=False) as app:
        app.subscribe(lambda e: heard.append(str(e.type)))
        created = app.create_mailing(TEMPLATE, iter(ROWS))
        assert app.send_blocking([created.id]).sent == 6
    assert heard == ["sent"] * 6
    assert "host event callback failed" in caplog.text


def test_events_reach_the_callback_and_the_async_iterator(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    config = data(tmp_path, entry("a", servers[0], certs))
    heard: list[str] = []

    async def host() -> list[str]:
        with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                           on_event=lambda e: heard.append(e.type),
                                           entry_points=False) as app:
            created = app.create_mailing(TEMPLATE, iter(ROWS))
            stream = app.events()
            app.pause(created.id)
            app.resume(created.id)
            await app.send([created.id])
            stream.close()
            return [str(e.type) async for e in stream]

    streamed = asyncio.run(host())
    assert streamed == ["paused", "resumed"] + ["sent"] * 6
    assert heard == streamed


# -- status, the same rule as the CLI's ---------------------------------------------------------
def test_status_and_resume_time_agree_with_the_cli(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = data(tmp_path, entry("a", servers[0], certs, limits={"per_hour": 2}))
    toml = tmp_path / "mailfleet.toml"
    toml.write_text(f'[deployment]\nstore = "{tmp_path / "mf.db"}"\n[[servers]]\n'
                    f'name = "a"\nsender = "a@example.org"\nhost = "127.0.0.1"\n'
                    f'port = {servers[0].port}\nsecurity = "starttls"\n'
                    f'ca_file = "{certs.ca_file}"\nlimits = {{ per_hour = 2 }}\n',
                    encoding="utf-8")
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       entry_points=False) as app:
        created = app.create_mailing(TEMPLATE, iter(ROWS))
        report = app.send_blocking([created.id], until_idle=True)
        status = app.status(created.id)
    assert report.sent == 2 and report.stopped == "idle"
    assert status.resume_at is not None and status.counts.waiting == 4
    assert [s.server for s in status.stopped_servers] == ["a"]
    capsys.readouterr()
    main(["--config", str(toml), "mailing", "status", created.id, "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["resume_at"] == status.resume_at.isoformat(timespec="seconds")
    assert (shown["sent"], shown["waiting"]) == (status.counts.sent, status.counts.waiting)
    assert report.resume_at == status.resume_at


def test_pause_resume_cancel_and_suppression(tmp_path: Path, servers: list[FakeSMTP],
                                             certs: TLSCerts) -> None:
    config = data(tmp_path, entry("a", servers[0], certs))
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       entry_points=False, clock=FakeClock()) as app:
        assert app.suppress("User1@Dest.test") == "user1@dest.test"
        created = app.create_mailing(TEMPLATE, iter(ROWS), start=False)
        assert app.send_blocking(until_idle=True).sent == 0  # paused: nothing goes
        app.resume(created.id)
        report = app.send_blocking([created.id])
        assert (report.sent, report.skipped) == (5, 1)
        assert [s.email for s in app.suppressed()] == ["user1@dest.test"]
        assert app.unsuppress("user1@dest.test") and not app.is_suppressed("user1@dest.test")
        other = app.create_mailing(TEMPLATE, iter(ROWS))
        app.cancel(other.id)
        assert app.status(other.id).state == "cancelled"
        assert [q.server for q in app.quotas()] == ["a"] and app.blocked() == []
        with pytest.raises(mailfleet.MailingStateError, match="cancelled") as refused:
            app.pause(other.id)
        assert (refused.value.mailing_id, refused.value.state) == (other.id, "cancelled")


def test_a_send_tells_its_progress_and_what_it_waits_for_before_each_sleep(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    config = data(tmp_path, entry("a", servers[0], certs, limits={"per_hour": 4}))
    clock = FakeClock()
    progress: list[tuple[str, int]] = []
    waits: list[mailfleet.SendReport] = []
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       entry_points=False, clock=clock) as app:
        created = app.create_mailing(TEMPLATE, iter(ROWS))
        report = app.send_blocking(on_progress=lambda m, n: progress.append((m, n)),
                                   on_wait=waits.append)
        assert app.holders(created.id) == []  # nothing left claimed
    assert (report.sent, report.waiting, report.stopped) == (6, 0, "done")
    assert {m for m, _ in progress} == {created.id} and sum(n for _, n in progress) == 6
    [wait] = waits  # one sleep: 4 sent in the first hour, 2 wait for the next
    assert (wait.sent, wait.waiting) == (4, 2) and wait.resume_at is not None
    assert clock.slept and clock.slept[-1] >= 1.0


def test_bad_rows_from_python_data_queue_nothing_and_name_the_row(tmp_path: Path) -> None:
    config = data(tmp_path, {"name": "x", "sender": "a@example.com", "host": "127.0.0.1"})
    rows: list[dict[str, str]] = [*ROWS, {"email": "not-an-address", "name": "Bad"}]
    with mailfleet.Mailfleet.from_data(config, entry_points=False) as app:
        with pytest.raises(mailfleet.BadRowsError, match="row 7"):
            app.create_mailing(TEMPLATE, iter(rows))
        assert app.mailings() == []


def test_rows_are_read_as_they_are_consumed(tmp_path: Path) -> None:
    config = data(tmp_path, {"name": "x", "sender": "a@example.com", "host": "127.0.0.1"})
    produced: list[int] = []

    def rows() -> Any:
        for i in range(20_000):
            produced.append(i)
            yield {"email": f"u{i}@dest.test", "name": "n"}

    with mailfleet.Mailfleet.from_data(config, entry_points=False) as app:
        created = app.create_mailing(TEMPLATE, rows())
        assert created.letters == 20_000 and len(produced) == 20_000



def test_bounces_are_fetched_with_the_mailbox_password_handed_over(
        tmp_path: Path, postfix: PostfixServer, smtp_server: FakeSMTP,
        mailbox: Mailbox) -> None:
    dead = "gone@dest.test"
    smtp_server.reset()
    smtp_server.add_rule("RCPT", f"550 5.1.1 <{dead}>: Recipient address rejected: "
                                 "User unknown in virtual mailbox table", match=dead)
    config = {"deployment": {"store": str(tmp_path / "mf.db")},
              "servers": [{"name": "local-mta", "kind": "internal", "sender": mailbox.address,
                           "host": "127.0.0.1", "port": postfix.port}],
              "bounces": {"protocol": "imap", "host": "127.0.0.1", "port": mailbox.imaps_port,
                          "security": "ssl", "login": mailbox.login,
                          "ca_file": str(mailbox.ca_file)}}
    seen: list[mailfleet.DeliveryEvent] = []
    with mailfleet.Mailfleet.from_data(config, passwords={"bounces": mailbox.password},
                                       on_event=seen.append) as app:
        created = app.create_mailing({"subject": "News", "text": "Hello",
                                      "sender": mailbox.address},
                                     [{"email": "alive@dest.test"}, {"email": dead}])
        assert app.send_blocking([created.id]).sent == 2
        mailbox.wait_for_messages(1, timeout=15)
        fetched = app.fetch_bounces()
        assert (fetched.read, fetched.bounces, fetched.marked) == (1, 1, 1)
        assert fetched.suppressed == (dead,) and app.is_suppressed(dead)
        bounced = list(app.letters(created.id, states=["bounced"]))
        assert [letter.email for letter in bounced] == [dead]
        assert app.status(created.id).counts.bounced == 1
    assert any(e.type is mailfleet.EventType.BOUNCED and e.recipient == dead for e in seen)


def test_check_probes_each_server_and_leaves_a_blocked_one_alone(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    config = data(tmp_path, entry("a", servers[0], certs), entry("b", servers[1], certs))
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD, "b": "wrong"},
                                       entry_points=False) as app:
        good, bad = asyncio.run(app.check())
        assert good.ok and not bad.ok and bad.stage == "auth"
        app.store.block_server("a", app.clock.now() + 3600, "provider quota: test")
        servers[0].reset()
        [blocked] = asyncio.run(app.check(["a"]))
        assert not blocked.ok and blocked.classification == "quota"
        assert "blocked until" in (blocked.diagnosis or "") and servers[0].events == []
        [forced] = asyncio.run(app.check(["a"], force=True))
        assert forced.ok


def test_send_one_counts_in_the_quota_and_refuses_a_suppressed_address(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    config = data(tmp_path, entry("a", servers[0], certs, limits={"per_day": 1}))
    with mailfleet.Mailfleet.from_data(config, passwords={"a": support.PASSWORD},
                                       entry_points=False) as app:
        sent = asyncio.run(app.send_one("a", to="one@dest.test", subject="Hi", text="Hello"))
        assert sent.server == "a" and sent.message_id
        assert app.quotas()[0].day.used == 1
        with pytest.raises(mailfleet.ServerBusyError, match="cannot send now") as busy:
            asyncio.run(app.send_one("a", to="two@dest.test", subject="Hi", text="Hello"))
        assert (busy.value.quota.server, busy.value.quota.day.remaining) == ("a", 0)
        app.suppress("three@dest.test")
        with pytest.raises(mailfleet.SuppressedError, match="suppression list") as refused:
            asyncio.run(app.send_one("a", to="Three@dest.test", subject="Hi", text="Hello",
                                     count_in_quota=False))
        assert refused.value.address == "Three@dest.test"
    assert len(servers[0].messages) == 1


def test_each_letter_name_has_one_format_that_its_parser_reads_back() -> None:
    from mailfleet.sending import identity

    lid = identity.letter_id("m0123456789ab", 42)
    assert identity.parse_letter_id(lid) == ("m0123456789ab", 42)
    assert identity.parse_letter_id("not-a-letter") is None
    assert identity.message_id(lid, "shop.example") == f"<{lid}@shop.example>"
    assert identity.parse_message_id(identity.message_id(lid, "shop.example")) == lid
    assert identity.parse_message_id("<CAF1x=abc@mail.gmail.com>") is None
    verp = identity.verp_address("bounces@shop.example", lid)
    assert verp == f"bounces+mf-{lid}@shop.example"
    assert identity.parse_verp(f"Final-Recipient: rfc822; {verp}") == lid
    header = f"{identity.LETTER_ID_HEADER}: {lid}\r\n"
    found = identity.LETTER_ID_RE.search(header)
    assert found is not None and found.group(1) == lid
