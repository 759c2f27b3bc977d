"""What a template with defaults or conditions costs next to plain merge fields.

Two measurements, each side by side in the same run (ratios, not absolute times):

1. render only: CPU per letter of ``CompiledTemplate.render`` for the ~5 KB letter of
   ``send_rate.py`` with plain ``{{ field }}`` merge fields (the precompiled byte-piece path),
   and for the same letter with a default and a conditional block (Jinja2's sandbox);
2. the full path (store, quota, dispatcher, pipelined SMTP into Postfix's ``smtp-sink``) for
   both templates, as ``send_rate.py`` measures it, and the ratio of their send rates.

    .venv/bin/python bench/template_render.py [--letters 20000] [--renders 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import attrs
from send_rate import PARAGRAPH, TEMPLATE, sink_fleet

from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import CompiledTemplate, DateCache, Template
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.smtp_sink import SmtpSink

CONDITIONAL = ('Dear {{ name | default("customer") }}{% if company %} of {{ company }}'
               '{% endif %}, this month we have news about your account {{ account }}. '
               "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
               "incididunt ut labore et dolore magna aliqua.\n")
CONDITIONAL_TEMPLATE = attrs.evolve(
    TEMPLATE, subject='News for {{ name | default("you") }}', text=CONDITIONAL * 14,
    html="<html><body><p>" + CONDITIONAL * 10 + "</p></body></html>")
assert PARAGRAPH in TEMPLATE.text


def row(i: int) -> dict[str, str]:
    return {"email": f"user{i}@example.org", "name": f"User {i}", "account": f"A-{i:07d}",
            "company": "Acme" if i % 2 else ""}


def render_cost(template: Template, renders: int) -> tuple[float, int]:
    """CPU seconds per letter and the letter size."""
    compiled = CompiledTemplate(template.checked(), from_addr="news@example.com",
                                from_name="Example News")
    date = DateCache()(time.time())
    rows = [row(i) for i in range(1000)]
    size = len(compiled.render(to="user1@example.org", fields=rows[1], letter_id="x-1",
                               message_id="<x-1@example.com>", date=date))
    cpu0 = time.process_time()
    for i in range(renders):
        fields = rows[i % 1000]
        compiled.render(to=fields["email"], fields=fields, letter_id=f"x-{i}",
                        message_id=f"<x-{i}@example.com>", date=date)
    return (time.process_time() - cpu0) / renders, size


def send_rate(template: Template, letters: int) -> tuple[float, float]:
    """Letters per second and CPU seconds per letter of the full path."""
    with SmtpSink() as sink, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        store = SqliteStore(db)
        create_mailing(store, template, (row(i) for i in range(letters)))
        dispatcher = Dispatcher(sink_fleet(db, sink.port, 16), store, batch_size=100)
        cpu0, start = time.process_time(), time.perf_counter()
        report = dispatcher.run(until_idle=True)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        assert report.sent == letters, report
        return letters / elapsed, cpu / letters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=20_000)
    parser.add_argument("--renders", type=int, default=20_000)
    args = parser.parse_args()
    plain, size = render_cost(TEMPLATE, args.renders)
    conditional, size_c = render_cost(CONDITIONAL_TEMPLATE, args.renders)
    print(f"render only ({args.renders} letters, ~{size} / ~{size_c} bytes):")
    print(f"  plain fields (precompiled): {plain * 1e6:.1f} us CPU per letter")
    print(f"  default + if (Jinja2 sandbox): {conditional * 1e6:.1f} us CPU per letter "
          f"({conditional / plain:.1f} x plain)")
    rate, cpu = send_rate(TEMPLATE, args.letters)
    rate_c, cpu_c = send_rate(CONDITIONAL_TEMPLATE, args.letters)
    print(f"full path into smtp-sink ({args.letters} letters, 16 connections):")
    print(f"  plain fields: {rate:,.0f} letters/s ({cpu * 1e6:.0f} us CPU per letter)")
    print(f"  default + if: {rate_c:,.0f} letters/s ({cpu_c * 1e6:.0f} us CPU per letter)")
    print(f"  ratio: {rate_c / rate:.2f} x the plain-field send rate")


if __name__ == "__main__":
    main()
