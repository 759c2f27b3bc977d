"""``make demo``: a real mailing end to end on embedded defaults, in a few seconds.

Two SMTP servers on 127.0.0.1 (aiosmtpd, STARTTLS with a throwaway CA, AUTH) with small hourly
limits, 20 recipients, a temporary SQLite store and config file. Prints the quota table before
and after, the letters that wait for the next window, and where each letter went.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from mailfleet.app import Mailfleet
from mailfleet.cli.output import iso, print_table

PASSWORD = "demo-password"  # noqa: S105  (a throwaway server's password)
TEMPLATE = """\
subject = "Новости для {{ name }}"
text = "Hello {{ name }},\\nyour plan is {{ plan }}.\\n"
html = "<p>Hello <b>{{ name }}</b>, your plan is {{ plan }}.</p>"
sender = "news@shop.example"
sender_name = "Shop News"
unsubscribe_url = "https://shop.example/unsubscribe?e={{ email }}"
"""


def _quota(app: Mailfleet, title: str) -> None:
    click.echo(f"\n== {title}")
    rows = [(q.server, q.priority, q.hour.used, q.hour.limit, q.hour.remaining,
             iso(q.hour.frees_at) or "now", q.blocked_reason or "-") for q in app.quotas()]
    print_table(rows, ["server", "priority", "used/hour", "limit", "remaining", "frees at",
                       "blocked"])


def main() -> None:
    try:
        from mailfleet_testing.certs import make_certs
        from mailfleet_testing.smtpd import FakeSMTP
    except ImportError as exc:  # the embedded servers come with the testing extra
        raise SystemExit(f"the demo needs `pip install mailfleet[testing]` ({exc})") from None

    with tempfile.TemporaryDirectory(prefix="mailfleet-demo-") as tmp:
        base = Path(tmp)
        certs = make_certs(base / "certs")
        servers = [FakeSMTP(certs, users={"office@shop.example": PASSWORD}).start(),
                   FakeSMTP(certs, users={"backup@shop.example": PASSWORD}).start()]
        try:
            config = base / "mailfleet.toml"
            entries = [("office", servers[0], 10, 8, "true"),
                       ("backup", servers[1], 20, 6, "false")]
            lines = ['[deployment]', 'store = "mailfleet.db"']
            for name, smtp, priority, per_hour, override in entries:
                lines += ["[[servers]]", f'name = "{name}"', f'sender = "{name}@shop.example"',
                          'host = "127.0.0.1"', f"port = {smtp.port}",
                          'security = "starttls"', f'login = "{name}@shop.example"',
                          f'password = "{PASSWORD}"', f"ca_file = {json.dumps(str(certs.ca_file))}",
                          f"priority = {priority}", f"allow_sender_override = {override}",
                          "[servers.limits]", f"per_hour = {per_hour}"]
            config.write_text("\n".join(lines) + "\n")
            (base / "template.toml").write_text(TEMPLATE, encoding="utf-8")
            with (base / "recipients.csv").open("w") as out:
                out.write("email,name,plan\n")
                for i in range(1, 21):
                    out.write(f"client{i}@example.org,Клиент {i},{'pro' if i % 3 else 'free'}\n")
            click.echo(f"config: {config}")
            with Mailfleet.from_file(config) as app:
                created = app.create_mailing(base / "template.toml", base / "recipients.csv")
                click.echo(f"mailing {created.id}: {created.letters} letters queued")
                _quota(app, "quota before")
                report = app.send_blocking(until_idle=True, batch_size=5)
                _quota(app, "quota after")
                click.echo(f"\nsent {report.sent}, failed {report.failed}, waiting "
                           f"{report.waiting}; sending resumes at {iso(report.resume_at)} "
                           f"when the first hourly window frees a letter")
                click.echo("\n== where each letter went")
                print_table([(number, r.email, r.state, r.server or "-", r.from_addr or "-")
                             for number, r in enumerate(app.letters(created.id), 1)],
                            ["#", "recipient", "state", "server", "from"])
            received = sum(len(s.messages) for s in servers)
            click.echo(f"\nthe two servers received {received} letters "
                       f"(office {len(servers[0].messages)}, backup {len(servers[1].messages)})")
        finally:
            for smtp in servers:
                smtp.stop()


if __name__ == "__main__":
    main()
